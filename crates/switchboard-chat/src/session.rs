//! Saved sessions: the token and the cursors of one user on one server, in
//! `$XDG_CONFIG_HOME/switchboard/session-<host>_<port>-<user>` (else `~/.config/switchboard/...`),
//! readable by the owner only.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};

/// What is kept between runs.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Saved {
    pub url: String,
    pub user: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// When the token stops working (ms), 0 if unknown.
    #[serde(default)]
    pub expires_at: u64,
    #[serde(default)]
    pub cursors: BTreeMap<String, u64>,
}

impl Saved {
    /// The token, unless it has expired.
    pub fn usable_token(&self, now_ms: u64) -> Option<&str> {
        self.token.as_deref().filter(|_| self.expires_at == 0 || self.expires_at > now_ms)
    }
}

/// The saved sessions of one server.
#[derive(Debug, Clone)]
pub struct SessionStore {
    dir: PathBuf,
    /// `session-<host>_<port>-`.
    prefix: String,
}

impl SessionStore {
    /// The store for `server` (`host:port`) in the user's configuration directory, if there is one.
    pub fn for_server(server: &str) -> Option<SessionStore> {
        let dir = match std::env::var_os("XDG_CONFIG_HOME").map(PathBuf::from) {
            Some(dir) if dir.is_absolute() => dir,
            _ => PathBuf::from(std::env::var_os("HOME")?).join(".config"),
        };
        Some(SessionStore::in_dir(dir.join("switchboard"), server))
    }

    pub fn in_dir(dir: PathBuf, server: &str) -> SessionStore {
        let server: String =
            server.chars().map(|c| if c.is_ascii_alphanumeric() || c == '.' || c == '-' { c } else { '_' }).collect();
        SessionStore { dir, prefix: format!("session-{server}-") }
    }

    pub fn path(&self, user: &str) -> PathBuf {
        self.dir.join(format!("{}{user}", self.prefix))
    }

    /// The saved session of `user`.
    pub fn load(&self, user: &str) -> Option<Saved> {
        read(&self.path(user))
    }

    /// The only session saved for this server, when there is exactly one.
    pub fn load_only(&self) -> Option<Saved> {
        let mut found = fs::read_dir(&self.dir)
            .ok()?
            .filter_map(|entry| entry.ok())
            .filter(|entry| entry.file_name().to_str().is_some_and(|name| name.starts_with(&self.prefix)))
            .filter_map(|entry| read(&entry.path()));
        let only = found.next()?;
        found.next().is_none().then_some(only)
    }

    /// Writes the session (atomically: a temporary file renamed over the old one).
    pub fn save(&self, saved: &Saved) -> anyhow::Result<()> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)
            .with_context(|| format!("creating {}", self.dir.display()))?;
        let path = self.path(&saved.user);
        let temporary = self.dir.join(format!(".{}{}.tmp", self.prefix, saved.user));
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&temporary)
            .with_context(|| format!("writing {}", temporary.display()))?;
        file.write_all(&serde_json::to_vec_pretty(saved)?)?;
        file.sync_all()?;
        fs::rename(&temporary, &path).with_context(|| format!("writing {}", path.display()))?;
        Ok(())
    }

    /// Drops the saved token of `user` (keeping the cursors).
    pub fn forget_token(&self, user: &str) {
        if let Some(mut saved) = self.load(user) {
            saved.token = None;
            let _ = self.save(&saved);
        }
    }
}

fn read(path: &Path) -> Option<Saved> {
    serde_json::from_slice(&fs::read(path).ok()?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn save_load_and_forget() {
        let dir = std::env::temp_dir().join(format!("switchboard-chat-test-{}", std::process::id()));
        let store = SessionStore::in_dir(dir.clone(), "127.0.0.1:8080");
        assert!(store.path("alice").ends_with("session-127.0.0.1_8080-alice"));
        assert!(store.load_only().is_none());
        let saved = Saved {
            url: "ws://127.0.0.1:8080/ws".into(),
            user: "alice".into(),
            token: Some("t".into()),
            expires_at: 10,
            cursors: BTreeMap::from([("dm:alice:bob".into(), 3)]),
        };
        store.save(&saved).unwrap();
        let mode = fs::metadata(store.path("alice")).unwrap().permissions();
        assert_eq!(std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777, 0o600);
        assert_eq!(store.load_only().unwrap().user, "alice");
        assert_eq!(store.load("alice").unwrap().usable_token(5), Some("t"));
        assert_eq!(store.load("alice").unwrap().usable_token(11), None, "expired");
        store.save(&Saved { user: "bob".into(), ..saved.clone() }).unwrap();
        assert!(store.load_only().is_none(), "two users saved: none is the only one");
        store.forget_token("alice");
        let alice = store.load("alice").unwrap();
        assert_eq!(alice.token, None);
        assert_eq!(alice.cursors["dm:alice:bob"], 3);
        fs::remove_dir_all(dir).unwrap();
    }
}

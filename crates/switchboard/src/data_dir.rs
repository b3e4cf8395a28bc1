//! One server per data folder. A second `serve` on the folder of a running one would write the
//! same SQLite file beside it, and sends then fail on UNIQUE constraints. So `serve` takes an
//! exclusive lock on a file in the folder and holds it while it runs; a second one finds it taken
//! and refuses to start, naming the folder and the holder. The OS drops the lock when its process
//! ends, even on `kill -9`, so a crash never leaves the folder locked.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::Path;

use anyhow::{bail, Context};

/// The lock file, in the data folder. It holds the holder's pid and listen address, for the error
/// the next one shows.
pub const LOCK_FILE: &str = "switchboard.lock";

/// Held for the life of the server: dropping it releases the folder.
pub struct DataDirLock {
    _file: File,
}

impl DataDirLock {
    /// Locks `folder` (creating it if missing) for this process, or says who holds it.
    pub fn acquire(folder: &Path, listen: SocketAddr) -> anyhow::Result<DataDirLock> {
        std::fs::create_dir_all(folder).with_context(|| format!("creating the data folder {}", folder.display()))?;
        let path = folder.join(LOCK_FILE);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = holder.trim();
                let holder = if holder.is_empty() { String::new() } else { format!(" ({holder})") };
                bail!(
                    "the data folder {} is in use by another switchboard server{holder}; stop it, or give this one \
                     another --data-dir",
                    folder.display()
                );
            }
            Err(std::fs::TryLockError::Error(error)) => {
                return Err(error).with_context(|| format!("locking {}", path.display()));
            }
        }
        file.set_len(0).with_context(|| format!("writing {}", path.display()))?;
        write!(file, "pid {}, listening on {listen}", std::process::id())
            .with_context(|| format!("writing {}", path.display()))?;
        Ok(DataDirLock { _file: file })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_folder_is_locked_once_until_its_lock_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let folder = dir.path().join("data");
        let listen: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        let first = DataDirLock::acquire(&folder, listen).unwrap();
        let second = DataDirLock::acquire(&folder, listen).err().expect("the folder is taken");
        let message = second.to_string();
        assert!(message.contains(&folder.display().to_string()), "{message}");
        assert!(message.contains(&format!("pid {}", std::process::id())), "{message}");
        drop(first);
        DataDirLock::acquire(&folder, listen).expect("free again once dropped");
    }
}

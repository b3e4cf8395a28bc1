//! The terminal client's pty harness, shared by its test files: `switchboard chat` in a real
//! pseudo-terminal, typed at and read back (ANSI sequences stripped, the screen rendered by a
//! terminal emulator), and run as a script with stdin piped.
#![allow(dead_code)] // each test file uses part of it

use std::io::{Read, Write};
use std::num::NonZeroU16;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use portable_pty::{native_pty_system, Child, CommandBuilder, MasterPty, PtySize};
use switchboard_testkit::{TestClient, TestServer};
use tokio::sync::mpsc;

pub const BINARY: &str = env!("CARGO_BIN_EXE_switchboard");
/// How long to wait for expected output (a debug build on a busy machine).
pub const WAIT: Duration = Duration::from_secs(30);
pub const ROWS: u16 = 60;
pub const COLS: u16 = 140;
pub const PASSWORD: &str = "hunter2-secret";

/// The client running in a pseudo-terminal.
pub struct Chat {
    child: Box<dyn Child + Send + Sync>,
    writer: Option<Box<dyn Write + Send>>,
    _master: Box<dyn MasterPty + Send>,
    chunks: mpsc::UnboundedReceiver<Vec<u8>>,
    /// Every byte the client wrote to the terminal.
    pub raw: Vec<u8>,
    /// The same with escape sequences and carriage returns stripped.
    pub text: String,
    /// How far `expect` has consumed `text`.
    seen: usize,
    screen: vt100::Parser,
    pub exit: Option<u32>,
}

impl Chat {
    /// Starts `switchboard chat ARGS` in a new pseudo-terminal, with `config` as its
    /// configuration directory (where sessions are saved) and colours allowed.
    pub fn spawn(args: &[&str], config: &Path) -> Chat {
        Self::spawn_with_env(args, config, &[])
    }

    pub fn spawn_with_env(args: &[&str], config: &Path, env: &[(&str, &str)]) -> Chat {
        let pair = native_pty_system()
            .openpty(PtySize { rows: ROWS, cols: COLS, pixel_width: 0, pixel_height: 0 })
            .expect("open a pseudo-terminal");
        let mut command = CommandBuilder::new(BINARY);
        command.arg("chat");
        command.args(args);
        command.env("XDG_CONFIG_HOME", config);
        command.env("HOME", config);
        command.env("TERM", "xterm-256color");
        command.env_remove("NO_COLOR");
        for (name, value) in env {
            command.env(name, value);
        }
        let child = pair.slave.spawn_command(command).expect("spawn switchboard chat");
        drop(pair.slave);
        let mut reader = pair.master.try_clone_reader().expect("pty reader");
        let writer = pair.master.take_writer().expect("pty writer");
        let (sender, chunks) = mpsc::unbounded_channel();
        std::thread::spawn(move || {
            let mut buffer = [0u8; 4096];
            // Ends when the client has exited and the terminal is closed (read fails or gives 0).
            while let Ok(count @ 1..) = reader.read(&mut buffer) {
                if sender.send(buffer[..count].to_vec()).is_err() {
                    break;
                }
            }
        });
        let size = |n| NonZeroU16::new(n).expect("non-zero size");
        Chat {
            child,
            writer: Some(writer),
            _master: pair.master,
            chunks,
            raw: Vec::new(),
            text: String::new(),
            seen: 0,
            screen: vt100::Parser::new(size(ROWS), size(COLS), 0),
            exit: None,
        }
    }

    /// Waits up to `limit` for more output; false if none came (or the terminal is closed).
    pub async fn pump(&mut self, limit: Duration) -> bool {
        match tokio::time::timeout(limit, self.chunks.recv()).await {
            Ok(Some(chunk)) => {
                self.screen.process(&chunk);
                self.raw.extend_from_slice(&chunk);
                self.text = strip_ansi(&self.raw);
                true
            }
            Ok(None) => {
                // The terminal is closed: wait (bounded) for the process to be reaped.
                tokio::time::sleep(Duration::from_millis(10)).await;
                false
            }
            Err(_) => false,
        }
    }

    /// Waits until `needle` appears after what earlier `expect`s consumed; returns the text up to
    /// and including it.
    pub async fn expect(&mut self, needle: &str) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(at) = self.text[self.seen..].find(needle) {
                let end = self.seen + at + needle.len();
                let found = self.text[self.seen..end].to_owned();
                self.seen = end;
                return found;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "no {needle:?} within {WAIT:?}; the terminal showed:\n{}", self.text);
            self.pump(left).await;
        }
    }

    /// Waits until the rendered screen satisfies `check`; returns its rows.
    pub async fn wait_screen(&mut self, what: &str, check: impl Fn(&[String]) -> bool) -> Vec<String> {
        let deadline = Instant::now() + WAIT;
        loop {
            let rows = self.rows();
            if check(&rows) {
                return rows;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "the screen never showed {what} within {WAIT:?}:\n{}", rows.join("\n"));
            self.pump(left).await;
        }
    }

    /// The screen's rows, without trailing blank rows.
    pub fn rows(&self) -> Vec<String> {
        let mut rows: Vec<String> = self.screen.screen().rows(0, COLS).map(|row| row.trim_end().to_owned()).collect();
        while rows.last().is_some_and(|row| row.is_empty()) {
            rows.pop();
        }
        rows
    }

    /// Types characters (no Enter).
    pub fn type_text(&mut self, text: &str) {
        let writer = self.writer.as_mut().expect("terminal open");
        writer.write_all(text.as_bytes()).expect("type into the terminal");
        writer.flush().expect("flush the terminal");
    }

    /// Types a line and Enter.
    pub fn line(&mut self, text: &str) {
        self.type_text(&format!("{text}\r"));
    }

    /// Types a command and waits until the client has echoed it back (the editor read it).
    pub async fn command(&mut self, text: &str) {
        self.line(text);
        self.expect(text).await;
    }

    /// Waits for the client to exit; returns its exit code.
    pub async fn wait_exit(&mut self) -> u32 {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = self.child.try_wait().expect("poll the client") {
                while self.pump(Duration::from_millis(50)).await {}
                self.exit = Some(status.exit_code());
                return status.exit_code();
            }
            assert!(Instant::now() < deadline, "the client did not exit within {WAIT:?}:\n{}", self.text);
            self.pump(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Chat {
    fn drop(&mut self) {
        if self.exit.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Terminal output as text: CSI and OSC sequences, other escapes, carriage returns and other
/// control characters but the newline removed.
pub fn strip_ansi(raw: &[u8]) -> String {
    let text = String::from_utf8_lossy(raw);
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\u{1b}' => match chars.next() {
                Some('[') => {
                    for c in chars.by_ref() {
                        if ('\u{40}'..='\u{7e}').contains(&c) {
                            break;
                        }
                    }
                }
                Some(']') => {
                    while let Some(c) = chars.next() {
                        if c == '\u{7}' || (c == '\u{1b}' && chars.next_if_eq(&'\\').is_some()) {
                            break;
                        }
                    }
                }
                _ => {}
            },
            '\n' => out.push('\n'),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

/// A server whose node is called `n1`.
pub async fn server() -> TestServer {
    TestServer::builder().chat(|c| c.node_id = "n1".into()).start().await
}

/// Registers `user` with a test client and returns a session token for the chat client.
pub async fn token_of(url: &str, user: &str) -> String {
    let client = TestClient::register(url, user, PASSWORD).await;
    let token = client.token();
    client.close().await;
    token
}

/// Starts the chat client for `user` resuming `token`, and waits for its first prompt.
pub async fn resumed(url: &str, user: &str, token: &str, config: &Path) -> Chat {
    resumed_on(url, "n1", user, token, config).await
}

/// A server, bob on a test client, and alice's terminal client on a fresh session (the server and
/// the configuration folder live as long as the caller keeps them).
pub async fn alice_and_bob() -> (TestServer, tempfile::TempDir, TestClient, Chat) {
    let server = server().await;
    let url = server.ws_url();
    let config = tempfile::tempdir().expect("temp dir");
    let bob = TestClient::register(&url, "bob", PASSWORD).await;
    let token = token_of(&url, "alice").await;
    let chat = resumed(&url, "alice", &token, config.path()).await;
    (server, config, bob, chat)
}

/// Like `resumed`, on a server whose node is `node`.
pub async fn resumed_on(url: &str, node: &str, user: &str, token: &str, config: &Path) -> Chat {
    let mut chat = Chat::spawn(&["--url", url, "--user", user, "--token", token], config);
    chat.expect(&format!("resumed the session of {user}, connected to node {node}")).await;
    chat.expect("> ").await;
    chat
}

/// Runs `switchboard chat ARGS` as a script would, stdin piped; returns status, stdout, stderr.
pub async fn script(args: &[&str], stdin: &str, config: &Path) -> (i32, String, String) {
    let mut child = tokio::process::Command::new(BINARY)
        .arg("chat")
        .args(args)
        .env("XDG_CONFIG_HOME", config)
        .env("HOME", config)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn switchboard chat");
    let mut input = child.stdin.take().expect("stdin");
    tokio::io::AsyncWriteExt::write_all(&mut input, stdin.as_bytes()).await.expect("write stdin");
    drop(input);
    let output = tokio::time::timeout(WAIT, child.wait_with_output())
        .await
        .expect("the client exits in time")
        .expect("client output");
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
    (output.status.code().unwrap_or(-1), text(&output.stdout), text(&output.stderr))
}

//! One server per data folder: a second `switchboard serve` on the folder of a running one refuses
//! to start (it would write the same SQLite file), and the folder is free again once the first ends.
//! Its log, written to a pipe, carries no colour codes.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use switchboard_testkit::services::{free_port, http_status};

const BINARY: &str = env!("CARGO_BIN_EXE_switchboard");

/// A server process, killed when the test ends however it ends.
struct Server(Option<Child>);

impl Server {
    fn child(&mut self) -> &mut Child {
        self.0.as_mut().expect("a running server")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn serve(data_dir: &Path, port: u16) -> Command {
    let mut command = Command::new(BINARY);
    command
        .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--data-dir"])
        .arg(data_dir)
        .env_remove("RUST_LOG")
        .envs(std::env::vars().filter(|(name, _)| !name.starts_with("SWITCHBOARD_")).collect::<Vec<_>>())
        .stdin(Stdio::null());
    command
}

/// Starts a server and waits until it answers `/readyz`.
fn start_ready(data_dir: &Path) -> Server {
    let port = free_port();
    let child = serve(data_dir, port).stdout(Stdio::null()).stderr(Stdio::null()).spawn().expect("start switchboard");
    let mut server = Server(Some(child));
    let deadline = Instant::now() + Duration::from_secs(20);
    while http_status(SocketAddr::from(([127, 0, 0, 1], port)), "/readyz") != Some(200) {
        if let Ok(Some(status)) = server.child().try_wait() {
            panic!("the server exited during start: {status}");
        }
        assert!(Instant::now() < deadline, "the server was not ready within 20 s");
        std::thread::sleep(Duration::from_millis(20));
    }
    server
}

/// Runs a second server to its end (it must not start), bounded in time.
fn run_to_end(data_dir: &Path) -> Output {
    let child =
        serve(data_dir, free_port()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("start switchboard");
    let mut server = Server(Some(child));
    let deadline = Instant::now() + Duration::from_secs(20);
    while server.child().try_wait().expect("poll the second server").is_none() {
        assert!(Instant::now() < deadline, "the second server on the same data folder kept running");
        std::thread::sleep(Duration::from_millis(20));
    }
    server.0.take().expect("the second server").wait_with_output().expect("the second server's output")
}

#[test]
fn a_second_server_on_the_same_data_folder_refuses_to_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data_dir = dir.path().join("data");
    let first = start_ready(&data_dir);

    let second = run_to_end(&data_dir);
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(!second.status.success(), "the second server must fail: {stderr}");
    let expected = format!(
        "the data folder {} is in use by another switchboard server (pid {}, listening on 127.0.0.1:",
        data_dir.display(),
        first.0.as_ref().expect("the first server").id()
    );
    assert!(stderr.contains(&expected), "expected {expected:?} in:\n{stderr}");
    assert!(stderr.contains("another --data-dir"), "{stderr}");
    let stdout = String::from_utf8_lossy(&second.stdout);
    assert!(stdout.contains("starting switchboard"), "it logged its start: {stdout}");
    assert!(!stdout.contains('\u{1b}'), "no colour codes in a log that goes to a pipe: {stdout:?}");

    drop(first);
    let _again = start_ready(&data_dir);
}

//! Runs the Node tests of `tests/compat` (real socket.io-client and `ws` packages from npm, node's
//! test runner) against running nodes. `npm ci` runs there first when its node_modules is
//! missing; a missing node or npm fails the test rather than skipping it.
// Each test binary uses a part of these helpers.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A whole file of the suite runs well under a minute; this bounds a hang.
const FILE_LIMIT: Duration = Duration::from_secs(300);

fn compat_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/compat")
}

/// Installs the client libraries from package-lock.json unless they are there already. Test
/// binaries may run this at the same time: a lock file makes the second wait for the first.
fn install(dir: &Path) {
    let lock = std::fs::File::create(std::env::temp_dir().join("switchboard-compat-npm.lock")).expect("lock file");
    lock.lock().expect("lock npm install");
    if dir.join("node_modules/.package-lock.json").is_file() {
        return;
    }
    let output = Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund"])
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .expect("run npm (node and npm must be on PATH)");
    assert!(
        output.status.success(),
        "npm ci in {} failed:\n{}{}",
        dir.display(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The virtualenv's python with `tests/compat/requirements.txt` (python-socketio, schemathesis)
/// installed from PyPI, made on first use under the target folder. Test binaries may run this at
/// the same time: a lock file makes the second wait for the first.
pub fn python() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let venv = root.join("target/compat-venv");
    let python = venv.join("bin/python");
    let requirements = root.join("tests/compat/requirements.txt");
    let lock = std::fs::File::create(std::env::temp_dir().join("switchboard-compat-venv.lock")).expect("lock file");
    lock.lock().expect("lock the virtualenv");
    let installed = || {
        Command::new(&python)
            .args(["-c", "import socketio, schemathesis"])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success())
    };
    if !installed() {
        let made = Command::new("python3").arg("-m").arg("venv").arg(&venv).status().expect("python3 -m venv");
        assert!(made.success(), "python3 -m venv failed");
        let pip = Command::new(venv.join("bin/pip"))
            .args(["install", "-q", "-r"])
            .arg(&requirements)
            .stdin(Stdio::null())
            .output()
            .expect("pip install");
        assert!(pip.status.success(), "pip install failed:\n{}", String::from_utf8_lossy(&pip.stderr));
    }
    python
}

/// Runs `node --test FILE` with the nodes' HTTP base URLs in `SB_URLS` and asserts it passed.
pub fn run_node_tests(file: &str, urls: &[String], open_auth: bool, extra_env: &[(&str, String)]) {
    let dir = compat_dir();
    install(&dir);
    // Into a file, not a pipe: a test file's process left behind must not hold the output open.
    static RUNS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let run = RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let log_path = std::env::temp_dir().join(format!("switchboard-compat-{}-{run}-{file}.log", std::process::id()));
    let log = std::fs::File::create(&log_path).expect("node log file");
    let mut command = Command::new("node");
    command
        .args(["--test", "--test-concurrency=1", "--test-force-exit", file])
        .current_dir(&dir)
        .env("SB_URLS", urls.join(","))
        .env("SB_OPEN_AUTH", if open_auth { "1" } else { "0" })
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("log file"))
        .stderr(log);
    for (name, value) in extra_env {
        command.env(name, value);
    }
    let mut child = command.spawn().expect("run node (node must be on PATH)");
    let deadline = Instant::now() + FILE_LIMIT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for node") {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let report = std::fs::read_to_string(&log_path).unwrap_or_default();
    let _ = std::fs::remove_file(&log_path);
    assert!(status.is_some_and(|status| status.success()), "node --test {file} failed ({status:?}):\n{report}");
    assert!(report.contains("# fail 0"), "node --test {file} reported failures:\n{report}");
    assert!(report.contains("# pass ") && !report.contains("# pass 0\n"), "node --test {file} ran no test:\n{report}");
}

/// The HTTP base URL of a node listening on `addr`.
pub fn http_url(addr: std::net::SocketAddr) -> String {
    format!("http://{addr}")
}

//! The web client (crates/switchboard-server/web) in a real browser: the tests in `tests/web` at the
//! repository root, run by node's built-in test runner, drive Debian's chromium through
//! playwright-core against the switchboard binary.
//!
//! This test starts one server process (SQLite store in its own data directory) for the chat tests
//! and passes its URL in `SWITCHBOARD_WEB_URL`. The restart test needs to kill a server and start it
//! again on the same port and data, so it runs a server of its own: this test passes the binary
//! (`SWITCHBOARD_BIN`) and a scratch directory (`SWITCHBOARD_WEB_TMP`), and the JS side starts and
//! stops `switchboard serve` itself. The cluster tests (`tests/web/cluster.test.mjs`) likewise run
//! their own nodes, to kill one of them: this test starts a `redis-server` for their bus and creates
//! a PostgreSQL database for their store, and passes them in `SWITCHBOARD_WEB_BUS` and
//! `SWITCHBOARD_WEB_STORE`. Screenshots (desktop and phone) go to
//! `target/tmp/web-client-screenshots`.
//!
//! Needs chromium (`apt-get install chromium`, as .ci/run does), node and npm; `npm ci` runs in
//! `tests/web` when its node_modules is missing; and, like the other cluster tests, `redis-server` on
//! PATH and the PostgreSQL at 127.0.0.1:5432 (`SWITCHBOARD_TEST_POSTGRES`). A missing tool fails the
//! test rather than skipping it, so the client is never left untested without anyone noticing.

use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use switchboard_testkit::services::{NodeProcess, ServiceProcess, TestDatabase};

const BINARY: &str = env!("CARGO_BIN_EXE_switchboard");
/// The whole browser suite takes well under a minute on an idle machine; this bounds a hang.
const SUITE_LIMIT: Duration = Duration::from_secs(600);

fn web_tests_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/web")
}

fn on_path(program: &str) -> bool {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path).any(|dir| dir.join(program).is_file())
}

/// Installs playwright-core (from package-lock.json) unless it is there already.
fn install_test_dependencies(dir: &Path) {
    if dir.join("node_modules/playwright-core/package.json").is_file() {
        return;
    }
    let command = if dir.join("package-lock.json").is_file() { "ci" } else { "install" };
    let output = Command::new("npm")
        .args([command, "--no-audit", "--no-fund"])
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .expect("run npm");
    assert!(
        output.status.success(),
        "npm {command} in {} failed:\n{}{}",
        dir.display(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The `node --test` process, in a process group of its own so that everything it started (test
/// file processes, the restart test's server) can be stopped together; dropping it does that.
struct TestRun {
    child: Child,
}

impl TestRun {
    fn signal_group(&self, signal: &str) {
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill").args([signal, "--", &group]).stderr(Stdio::null()).status();
    }

    /// Waits for the run to end; past `limit` it is stopped (SIGTERM lets playwright close the
    /// browsers and the harness kill its servers; SIGKILL follows) and None is returned.
    fn wait(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait for node") {
                return Some(status);
            }
            if Instant::now() > deadline {
                self.stop();
                return None;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn stop(&mut self) {
        if self.child.try_wait().ok().flatten().is_some() {
            return;
        }
        self.signal_group("-TERM");
        let grace = Instant::now() + Duration::from_secs(5);
        while Instant::now() < grace && self.child.try_wait().ok().flatten().is_none() {
            std::thread::sleep(Duration::from_millis(50));
        }
        self.signal_group("-KILL");
        let _ = self.child.wait();
    }
}

impl Drop for TestRun {
    fn drop(&mut self) {
        self.stop();
    }
}

#[test]
fn web_client_in_chromium() {
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        Path::new(&chromium).is_file(),
        "{chromium} is missing: the web client tests need a browser (Debian: apt-get install chromium, as .ci/run does)"
    );
    assert!(on_path("node") && on_path("npm"), "node and npm are needed on PATH to run tests/web");
    let dir = web_tests_dir();
    install_test_dependencies(&dir);

    // Presence about everyone: the tests see users they have no conversation with come online in
    // the sidebar (the servers the JS side starts inherit SWITCHBOARD_PRESENCE below).
    let server = NodeProcess::start(BINARY, "n1", &["--store", "sqlite", "--presence", "everyone"]);
    // Dropped after the run (declared before it): the cluster tests' nodes are gone by then.
    let redis = ServiceProcess::redis();
    let database = TestDatabase::create();
    let scratch = tempfile::tempdir().expect("scratch directory");
    let screenshots = Path::new(env!("CARGO_TARGET_TMPDIR")).join("web-client-screenshots");
    let _ = std::fs::remove_dir_all(&screenshots);
    std::fs::create_dir_all(&screenshots).expect("screenshot directory");
    let output_path = scratch.path().join("node-test-output.txt");
    let output = File::create(&output_path).expect("output file");

    let mut run = TestRun {
        child: Command::new("node")
            .args(["--test", "--test-concurrency=1", "--test-reporter=spec"])
            .current_dir(&dir)
            .env("SWITCHBOARD_WEB_URL", format!("http://127.0.0.1:{}", server.port))
            .env("SWITCHBOARD_BIN", BINARY)
            .env("SWITCHBOARD_PRESENCE", "everyone")
            .env("SWITCHBOARD_WEB_BUS", redis.url())
            .env("SWITCHBOARD_WEB_STORE", database.url())
            .env("SWITCHBOARD_WEB_TMP", scratch.path())
            .env("SWITCHBOARD_WEB_SCREENSHOTS", &screenshots)
            .env("CHROMIUM", &chromium)
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(output.try_clone().expect("output handle"))
            .stderr(output)
            .process_group(0)
            .spawn()
            .expect("start node --test"),
    };
    let status = run.wait(SUITE_LIMIT);
    let text = std::fs::read_to_string(&output_path).unwrap_or_default();
    println!("{text}");
    println!("screenshots: {}", screenshots.display());
    match status {
        Some(status) => assert!(
            status.success(),
            "the browser tests failed ({status}); output above. server log:\n{}",
            server.log_text()
        ),
        None => panic!("the browser tests did not finish within {SUITE_LIMIT:?}; output above"),
    }
}

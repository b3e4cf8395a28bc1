//! Runs `tests/web/ops-browser.mjs` (chromium through playwright-core) and returns what it saw.

use std::path::{Path, PathBuf};
use std::process::Stdio;

/// The browser's limit for one script run.
const LIMIT: std::time::Duration = std::time::Duration::from_secs(120);

fn web_tests_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/web")
}

/// Installs playwright-core in `tests/web` when missing (`npm ci`), then runs the script with
/// `env` and parses the JSON line it prints. A missing browser or node fails the test.
pub async fn run_ops_script(env: &[(&str, String)]) -> serde_json::Value {
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        Path::new(&chromium).is_file(),
        "{chromium} is missing (Debian: apt-get install chromium, as .ci/run does)"
    );
    let dir = web_tests_dir();
    if !dir.join("node_modules/playwright-core/package.json").is_file() {
        let status = tokio::process::Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(&dir)
            .stdin(Stdio::null())
            .status()
            .await
            .expect("run npm");
        assert!(status.success(), "npm ci in {} failed", dir.display());
    }
    let mut command = tokio::process::Command::new("node");
    command.arg("ops-browser.mjs").current_dir(&dir).env("CHROMIUM", chromium).stdin(Stdio::null()).kill_on_drop(true);
    for (name, value) in env {
        command.env(name, value);
    }
    let output =
        tokio::time::timeout(LIMIT, command.output()).await.expect("browser script in time").expect("run node");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "ops-browser.mjs failed:\n{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    let line = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(line).unwrap_or_else(|error| panic!("{error}: {stdout}"))
}

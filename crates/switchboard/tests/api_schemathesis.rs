//! schemathesis (from PyPI, in the compatibility tests' virtualenv) generates requests from
//! `/api/openapi.json`, valid and invalid, and sends them to a real node with an API key: every
//! answer must be listed in the document with a matching body and content type, and none a 5xx.

mod compat_support;

use std::process::Stdio;
use std::time::Duration;

use switchboard_testkit::services::NodeProcess;

const BINARY: &str = env!("CARGO_BIN_EXE_switchboard");
const KEY: &str = "schemathesis-api-key-0123456789";

#[tokio::test]
async fn generated_requests_get_answers_the_openapi_document_allows() {
    let node = NodeProcess::start(BINARY, "api", &["--api-keys", KEY]);
    let python = compat_support::python();
    // Its working folder (schemathesis keeps a cache there) and reports, out of the source tree.
    let report = std::env::temp_dir().join(format!("switchboard-schemathesis-{}", std::process::id()));
    std::fs::create_dir_all(&report).expect("schemathesis folder");
    let child = tokio::process::Command::new(python)
        .args(["-m", "schemathesis.cli", "run"])
        .arg(format!("http://{}/api/openapi.json", node.addr()))
        .args(["--header", &format!("Authorization: Bearer {KEY}")])
        .args([
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,\
             negative_data_rejection",
        ])
        .args(["--phases", "examples,coverage,fuzzing", "--max-examples", "30", "--seed", "1", "--workers", "1"])
        .args(["--generation-database", "none", "--no-color", "--report-dir"])
        .arg(&report)
        .current_dir(&report)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("run schemathesis");
    let output = tokio::time::timeout(Duration::from_secs(240), child.wait_with_output())
        .await
        .expect("schemathesis hung")
        .expect("schemathesis");
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "schemathesis found answers the document does not allow:\n{text}");
    assert!(text.contains("passed"), "schemathesis ran no test:\n{text}");
    assert!(!node.log_text().contains(KEY), "the API key is never logged");
    let _ = std::fs::remove_dir_all(report);
}

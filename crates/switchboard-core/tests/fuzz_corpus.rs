//! Replays the committed login fuzz corpus (`fuzz/corpus/login/`) through the check the fuzz
//! target runs, on the same kind of node, so every input the fuzzer kept stays covered.

use std::path::PathBuf;

use switchboard_core::fuzzing::LoginHarness;

#[test]
fn login_corpus_answers_every_frame_with_a_session_or_an_error() {
    let folder = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/login");
    let entries = std::fs::read_dir(&folder).unwrap_or_else(|error| panic!("{}: {error}", folder.display()));
    let files: Vec<PathBuf> = entries.map(|entry| entry.expect("read corpus folder").path()).collect();
    assert!(!files.is_empty(), "{} holds no corpus files", folder.display());
    let harness = LoginHarness::new();
    for path in files {
        let bytes = std::fs::read(&path).unwrap_or_else(|error| panic!("{}: {error}", path.display()));
        // The target feeds only UTF-8 (a text message is UTF-8 by the time it reaches login).
        let Ok(text) = std::str::from_utf8(&bytes) else { continue };
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| harness.check_login(text)));
        assert!(outcome.is_ok(), "{} fails the login checks", path.display());
    }
}

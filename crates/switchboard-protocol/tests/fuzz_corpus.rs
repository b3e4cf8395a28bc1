//! Replays the committed fuzz corpus (`fuzz/corpus/<target>/`) through the checks the fuzz
//! targets run, so every input the fuzzers kept stays covered by `cargo test`.

use std::path::PathBuf;

use switchboard_protocol::fuzzing;

/// Every file of a target's corpus; fails when the folder is missing or empty, so a moved or
/// emptied corpus cannot pass unnoticed.
fn corpus(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let folder = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus").join(target);
    let entries = std::fs::read_dir(&folder).unwrap_or_else(|error| panic!("{}: {error}", folder.display()));
    let files: Vec<(PathBuf, Vec<u8>)> = entries
        .map(|entry| entry.expect("read corpus folder").path())
        .filter(|path| path.is_file())
        .map(|path| {
            let bytes = std::fs::read(&path).unwrap_or_else(|error| panic!("{}: {error}", path.display()));
            (path, bytes)
        })
        .collect();
    assert!(!files.is_empty(), "{} holds no corpus files", folder.display());
    files
}

#[test]
fn ws_decoder_corpus_decodes_the_same_however_it_is_split() {
    for (path, bytes) in corpus("ws_decoder") {
        let outcome = std::panic::catch_unwind(|| fuzzing::check_decoder(&bytes));
        assert!(outcome.is_ok(), "{} fails the decoder checks", path.display());
    }
}

#[test]
fn request_corpus_parses_without_panicking_and_round_trips() {
    for (path, bytes) in corpus("request") {
        // The target feeds only UTF-8 (a text message is UTF-8 by the time it is parsed).
        let Ok(text) = std::str::from_utf8(&bytes) else { continue };
        let outcome = std::panic::catch_unwind(|| fuzzing::check_request(text));
        assert!(outcome.is_ok(), "{} fails the request checks", path.display());
    }
}

//! The request parser on any text message; see `switchboard_protocol::fuzzing::check_request`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // A text message is UTF-8 by the time it is parsed: the decoder checked it.
    if let Ok(text) = std::str::from_utf8(data) {
        switchboard_protocol::fuzzing::check_request(text);
    }
});

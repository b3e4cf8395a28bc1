//! A not-yet-logged-in connection's first frame through `ChatNode::login` on a real node; see
//! `switchboard_core::fuzzing::LoginHarness` for the node and the properties.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use switchboard_core::fuzzing::LoginHarness;

/// One runtime and node per fuzz process: starting them costs far more than a login.
static HARNESS: OnceLock<LoginHarness> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    // A text message is UTF-8 by the time it reaches login: the decoder checked it.
    if let Ok(text) = std::str::from_utf8(data) {
        HARNESS.get_or_init(LoginHarness::new).check_login(text);
    }
});

//! The WebSocket frame decoder on any client byte stream, split anywhere; see
//! `switchboard_protocol::fuzzing::check_decoder` for the input layout and the properties.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| switchboard_protocol::fuzzing::check_decoder(data));

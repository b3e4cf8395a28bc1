//! A server-side WebSocket (RFC 6455) handshake helper and frame codec, with no I/O.
//!
//! - [`frame`]: outgoing frames, built once into a [`WireFrame`] and shared by every recipient.
//! - [`header`]: the client frame header, parsed as its bytes trickle in, and unmasking.
//! - [`decoder`]: a [`Decoder`] that consumes bytes as they arrive and keeps nothing once a
//!   frame is done, so an idle connection holds no buffer. Oversized messages are skipped as they
//!   stream in rather than buffered.
//! - [`utf8`]: the streaming UTF-8 check that fails a text message at its first bad byte.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use sha1::{Digest, Sha1};

mod decoder;
mod frame;
mod header;
mod utf8;

pub use decoder::{is_valid_close_code, DecodeError, Decoder, Incoming};
pub use frame::{WireFrame, MAX_HEADER};

/// The GUID RFC 6455 appends to the client's key to prove the server speaks WebSocket.
const HANDSHAKE_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// RFC 6455 caps control frame payloads so they always fit in a single short header.
const MAX_CONTROL_PAYLOAD: usize = 125;

const FIN: u8 = 0x80;
const RSV: u8 = 0x70;
const OPCODE: u8 = 0x0F;
const MASKED: u8 = 0x80;
const SHORT_LEN: u8 = 0x7F;
const LEN_16: u8 = 126;
const LEN_64: u8 = 127;

const OP_CONTINUATION: u8 = 0x0;
const OP_TEXT: u8 = 0x1;
const OP_BINARY: u8 = 0x2;
const OP_CLOSE: u8 = 0x8;
const OP_PING: u8 = 0x9;
const OP_PONG: u8 = 0xA;

/// Value of Sec-WebSocket-Accept for a client's Sec-WebSocket-Key (base64(sha1(key + GUID))).
pub fn accept_key(client_key: &str) -> String {
    let mut sha1 = Sha1::new();
    sha1.update(client_key.as_bytes());
    sha1.update(HANDSHAKE_GUID.as_bytes());
    BASE64.encode(sha1.finalize())
}

#[cfg(test)]
mod tests;

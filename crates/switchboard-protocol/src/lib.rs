//! Switchboard's wire protocol, with no I/O.
//!
//! - [`names`]: what a valid user or room name is, and conversation ids (`dm:a:b`, `room:x`).
//! - [`request`]: client frames, parsed in one pass into a typed [`Request`].
//! - [`event`]: server frames, serialised once and shared between recipients.
//! - [`error`]: the protocol's error codes and WebSocket close codes.
//! - `fuzzing` (feature `fuzzing`): the properties the fuzz targets and the corpus replay check.
//! - [`ws`]: a server-side WebSocket (RFC 6455) handshake helper and frame codec that keeps no
//!   buffer while a connection is idle.
//!
//! `docs/protocol.md` is the contract; this crate is its implementation.
#![forbid(unsafe_code)]

pub mod error;
pub mod event;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
pub mod names;
pub mod request;
pub mod ws;

pub use error::{CloseCode, ErrorCode};
pub use names::{ActivityCursor, ConvId, NameError};
pub use request::{AuthOptions, ModAction, ParseError, RefValue, Request, Target};

/// The protocol version this server speaks, announced in `hello`.
pub const PROTOCOL_VERSION: u32 = 1;

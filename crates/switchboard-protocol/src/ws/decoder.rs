//! Client->server frames in, complete messages out.

use bytes::{Buf, Bytes, BytesMut};

use super::header::{unmask, FrameHeader, Opcode, PartialHeader};
use super::utf8::StreamingUtf8;
use crate::CloseCode;

/// How far over `max_message_bytes` a message may claim to be before it is not worth skipping.
const FAR_TOO_LARGE_FACTOR: u64 = 16;

/// What the decoder produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incoming {
    /// A complete (possibly reassembled from fragments) valid UTF-8 text message.
    Text(String),
    /// A complete binary message. Its payload is empty unless the decoder was asked to keep
    /// binary payloads ([`Decoder::keeping_binary`]): the chat protocol is text-only.
    Binary(Bytes),
    /// A message over `max_message_bytes`; its payload was skipped without buffering it.
    TooLarge {
        len: u64,
    },
    Ping(Bytes),
    Pong,
    /// The client's close frame; its code, when present, is one a client may send.
    Close {
        code: Option<u16>,
        reason: String,
    },
}

/// Why the decoder gave up on a connection. Either way the caller should close it, with
/// [`DecodeError::close_code`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The client broke RFC 6455; close with 1002.
    #[error("websocket protocol error: {0}")]
    Protocol(&'static str),
    /// A text message or a close reason that is not UTF-8; close with 1007. Found at the first
    /// byte that makes it invalid, not at the end of the message.
    #[error("text that is not valid utf-8")]
    InvalidUtf8,
    /// A message declared so large that skipping it is not worth the bandwidth; close with 1009.
    #[error("frame of {len} bytes is far over the limit")]
    FarTooLarge { len: u64 },
}

impl DecodeError {
    /// The close code RFC 6455 asks for on this failure.
    pub fn close_code(&self) -> CloseCode {
        match self {
            DecodeError::Protocol(_) => CloseCode::ProtocolError,
            DecodeError::InvalidUtf8 => CloseCode::InvalidPayload,
            DecodeError::FarTooLarge { .. } => CloseCode::TooBig,
        }
    }
}

/// Whether a client may put this code in a close frame: RFC 6455 section 7.4's defined codes
/// but those that must never be sent (1004 reserved, 1005 and 1006 only reported locally, 1015
/// for TLS), the IANA registry's 1012-1014, and the 3000-4999 ranges for libraries and
/// applications. Anything else is a protocol error.
pub fn is_valid_close_code(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

/// Where the decoder is within the current frame.
#[derive(Debug)]
enum FrameState {
    /// Between frames, or part way through a header.
    Header(PartialHeader),
    /// A control frame's payload; small (at most 125 bytes) and never fragmented.
    Control { opcode: Opcode, mask: [u8; 4], payload: Vec<u8>, remaining: usize },
    /// A data frame's payload, going wherever [`Message`] says.
    Data { fin: bool, mask: [u8; 4], remaining: u64, phase: usize },
    /// The connection broke the protocol; the same error is returned from then on.
    Failed(DecodeError),
}

impl FrameState {
    fn between_frames() -> FrameState {
        FrameState::Header(PartialHeader::default())
    }
}

/// The data message being received, which may span several fragments.
#[derive(Debug, Default)]
enum Message {
    #[default]
    Idle,
    /// The unmasked payload so far, checked as UTF-8 as each piece arrives.
    Text { payload: Vec<u8>, utf8: StreamingUtf8 },
    /// Binary payloads are counted; kept only if the decoder keeps binary payloads.
    Binary { kept: Vec<u8>, total: u64 },
    /// Over the limit: counted while skipped.
    TooLarge { total: u64 },
}

impl Message {
    fn received_len(&self) -> u64 {
        match self {
            Message::Idle => 0,
            Message::Text { payload, .. } => payload.len() as u64,
            Message::Binary { total, .. } | Message::TooLarge { total } => *total,
        }
    }
}

/// Incremental decoder of client->server frames. Feed it bytes as they arrive; it keeps only what
/// it must (a partial header, a partial payload, or the fragments of an unfinished message).
#[derive(Debug)]
pub struct Decoder {
    max_message_bytes: u64,
    /// Whether binary payloads are kept for the caller (an echo server) or only counted.
    keep_binary: bool,
    frame: FrameState,
    message: Message,
}

impl Decoder {
    /// A decoder that accepts messages of up to `max_message_bytes` payload bytes.
    pub fn new(max_message_bytes: usize) -> Decoder {
        Decoder {
            max_message_bytes: max_message_bytes as u64,
            keep_binary: false,
            frame: FrameState::between_frames(),
            message: Message::Idle,
        }
    }

    /// The same decoder, but [`Incoming::Binary`] carries the message's payload.
    pub fn keeping_binary(mut self) -> Decoder {
        self.keep_binary = true;
        self
    }

    /// Consumes bytes from `buf` (advancing it) and returns the next complete item, or Ok(None)
    /// when more bytes are needed; `buf` is then empty, as everything useful has been taken in.
    /// After `Some`, `buf` may hold further frames: call again until `None`.
    ///
    /// Oversized messages: once the header says the payload (or the fragment total) exceeds
    /// `max_message_bytes`, the payload is discarded as it arrives and [`Incoming::TooLarge`] is
    /// returned once the whole message has been skipped, unless it exceeds 16 times the limit,
    /// which is [`DecodeError::FarTooLarge`] at once.
    ///
    /// Text is checked as it arrives: the first byte that no continuation can make valid UTF-8
    /// is [`DecodeError::InvalidUtf8`] then and there, whether or not the message is complete.
    ///
    /// After an error the connection should be closed; further calls return the same error.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Incoming>, DecodeError> {
        let result = self.decode_frames(buf);
        if let Err(error) = &result {
            self.frame = FrameState::Failed(error.clone());
            self.message = Message::Idle;
        }
        result
    }

    /// Whether the decoder gave up on the stream: nothing after the error can be read.
    pub fn has_failed(&self) -> bool {
        matches!(self.frame, FrameState::Failed(_))
    }

    /// True when the decoder holds no partial state (so the caller may free its read buffer).
    pub fn is_idle(&self) -> bool {
        matches!(&self.frame, FrameState::Header(partial) if partial.is_empty())
            && matches!(self.message, Message::Idle)
    }

    fn decode_frames(&mut self, buf: &mut BytesMut) -> Result<Option<Incoming>, DecodeError> {
        loop {
            match &mut self.frame {
                FrameState::Header(partial) => {
                    let Some(header) = partial.read(buf)? else {
                        return Ok(None);
                    };
                    self.frame = self.begin_frame(header)?;
                }
                FrameState::Control { opcode, mask, payload, remaining } => {
                    let take = (*remaining).min(buf.len());
                    if *opcode != Opcode::Pong {
                        let start = payload.len();
                        payload.extend_from_slice(&buf[..take]);
                        unmask(&mut payload[start..], *mask, start);
                    }
                    buf.advance(take);
                    *remaining -= take;
                    if *remaining > 0 {
                        return Ok(None);
                    }
                    let opcode = *opcode;
                    let payload = std::mem::take(payload);
                    self.frame = FrameState::between_frames();
                    return control_message(opcode, payload).map(Some);
                }
                FrameState::Data { fin, mask, remaining, phase } => {
                    let take = usize::try_from(*remaining).map_or(buf.len(), |r| r.min(buf.len()));
                    match &mut self.message {
                        Message::Text { payload, utf8 } => {
                            let start = payload.len();
                            payload.extend_from_slice(&buf[..take]);
                            unmask(&mut payload[start..], *mask, *phase);
                            utf8.check(payload).map_err(|_| DecodeError::InvalidUtf8)?;
                        }
                        Message::Binary { kept, .. } if self.keep_binary => {
                            let start = kept.len();
                            kept.extend_from_slice(&buf[..take]);
                            unmask(&mut kept[start..], *mask, *phase);
                        }
                        _ => {}
                    }
                    buf.advance(take);
                    *remaining -= take as u64;
                    *phase = (*phase + take) % 4;
                    if *remaining > 0 {
                        return Ok(None);
                    }
                    let fin = *fin;
                    self.frame = FrameState::between_frames();
                    if fin {
                        if let Some(incoming) = self.finish_message()? {
                            return Ok(Some(incoming));
                        }
                    }
                }
                FrameState::Failed(error) => return Err(error.clone()),
            }
        }
    }

    /// Checks a frame against the message in progress and the size limits, and says where its
    /// payload goes.
    fn begin_frame(&mut self, header: FrameHeader) -> Result<FrameState, DecodeError> {
        let FrameHeader { fin, opcode, payload_len, mask } = header;
        if opcode.is_control() {
            // The header check capped control payloads at 125 bytes.
            let remaining = payload_len as usize;
            let payload = match opcode {
                Opcode::Pong => Vec::new(),
                _ => Vec::with_capacity(remaining),
            };
            return Ok(FrameState::Control { opcode, mask, payload, remaining });
        }
        let continues = opcode == Opcode::Continuation;
        match (&self.message, continues) {
            (Message::Idle, true) => {
                return Err(DecodeError::Protocol("continuation frame without a message to continue"))
            }
            (Message::Idle, false) | (_, true) => {}
            (_, false) => return Err(DecodeError::Protocol("new data frame while a fragmented message is unfinished")),
        }
        let total = self.message.received_len().saturating_add(payload_len);
        if total > self.max_message_bytes.saturating_mul(FAR_TOO_LARGE_FACTOR) {
            return Err(DecodeError::FarTooLarge { len: total });
        }
        self.message = if total > self.max_message_bytes {
            Message::TooLarge { total }
        } else {
            match std::mem::take(&mut self.message) {
                Message::Idle if opcode == Opcode::Text => {
                    Message::Text { payload: Vec::new(), utf8: StreamingUtf8::default() }
                }
                Message::Idle => Message::Binary { kept: Vec::new(), total },
                Message::Binary { kept, .. } => Message::Binary { kept, total },
                text @ Message::Text { .. } => text,
                Message::TooLarge { .. } => Message::TooLarge { total },
            }
        };
        Ok(FrameState::Data { fin, mask, remaining: payload_len, phase: 0 })
    }

    /// The completed message; None only if there was none, which the frame checks rule out.
    fn finish_message(&mut self) -> Result<Option<Incoming>, DecodeError> {
        Ok(match std::mem::take(&mut self.message) {
            Message::Idle => None,
            Message::Text { payload, utf8 } => {
                if !utf8.is_complete(&payload) {
                    return Err(DecodeError::InvalidUtf8);
                }
                // Checked piece by piece already; this only converts.
                Some(Incoming::Text(String::from_utf8(payload).map_err(|_| DecodeError::InvalidUtf8)?))
            }
            Message::Binary { kept, .. } => Some(Incoming::Binary(Bytes::from(kept))),
            Message::TooLarge { total } => Some(Incoming::TooLarge { len: total }),
        })
    }
}

fn control_message(opcode: Opcode, mut payload: Vec<u8>) -> Result<Incoming, DecodeError> {
    match opcode {
        Opcode::Ping => Ok(Incoming::Ping(Bytes::from(payload))),
        Opcode::Pong => Ok(Incoming::Pong),
        _ => match payload.len() {
            0 => Ok(Incoming::Close { code: None, reason: String::new() }),
            1 => Err(DecodeError::Protocol("close frame with a one-byte payload")),
            _ => {
                let code = u16::from_be_bytes([payload[0], payload[1]]);
                if !is_valid_close_code(code) {
                    return Err(DecodeError::Protocol("close code a client may not send"));
                }
                payload.drain(..2);
                let reason = String::from_utf8(payload).map_err(|_| DecodeError::InvalidUtf8)?;
                Ok(Incoming::Close { code: Some(code), reason })
            }
        },
    }
}

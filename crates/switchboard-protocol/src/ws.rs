//! A server-side WebSocket (RFC 6455) handshake helper and frame codec, with no I/O.
//!
//! Outgoing frames are built once into a [`WireFrame`] and shared by every recipient. Incoming
//! frames go through a [`Decoder`] that consumes bytes as they arrive and keeps nothing once a
//! frame is done, so an idle connection holds no buffer. Oversized messages are skipped as they
//! stream in rather than buffered.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use bytes::{Buf, Bytes, BytesMut};
use sha1::{Digest, Sha1};

/// The GUID RFC 6455 appends to the client's key to prove the server speaks WebSocket.
const HANDSHAKE_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// The longest server frame header: two bytes plus a 64-bit length (server frames carry no mask).
pub const MAX_HEADER: usize = 10;

/// RFC 6455 caps control frame payloads so they always fit in a single short header.
const MAX_CONTROL_PAYLOAD: usize = 125;

/// A close payload is a two-byte code followed by the reason, within the control frame cap.
const MAX_CLOSE_REASON: usize = MAX_CONTROL_PAYLOAD - 2;

/// Client headers add a four-byte mask to the longest server header.
const MAX_CLIENT_HEADER: usize = MAX_HEADER + 4;

/// How far over `max_message_bytes` a message may claim to be before it is not worth skipping.
const FAR_TOO_LARGE_FACTOR: u64 = 16;

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

/// A complete server->client WebSocket frame (header + unmasked payload), built once and shared
/// by every recipient (cloning is a refcount increment).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WireFrame {
    bytes: Bytes,
    header_len: u8,
}

impl WireFrame {
    /// Builds a text frame around a JSON payload without copying: `build` writes the payload into
    /// a Vec that already has [`MAX_HEADER`] bytes reserved at the front; the header is then
    /// written right-aligned into that space and the frame is a slice of the same allocation.
    ///
    /// `build` must only append. If it shrinks the Vec into the reserved space the payload cannot
    /// be told apart from it, so the frame is sent empty (and debug builds panic).
    pub fn text_with(build: impl FnOnce(&mut Vec<u8>)) -> WireFrame {
        let mut buf = Vec::with_capacity(MAX_HEADER + 128);
        buf.resize(MAX_HEADER, 0);
        build(&mut buf);
        if buf.len() < MAX_HEADER {
            debug_assert!(false, "WireFrame::text_with: build removed the reserved header space");
            return WireFrame::text(&[]);
        }
        let (header, header_len) = header(OP_TEXT, buf.len() - MAX_HEADER);
        let start = MAX_HEADER - header_len;
        buf[start..MAX_HEADER].copy_from_slice(&header[..header_len]);
        WireFrame { bytes: Bytes::from(buf).slice(start..), header_len: header_len as u8 }
    }

    /// A text frame holding a copy of `payload`; for small or static frames.
    pub fn text(payload: &[u8]) -> WireFrame {
        WireFrame::encode(OP_TEXT, payload)
    }

    /// A close frame. The reason is cut at a char boundary so the payload fits a control frame.
    pub fn close(code: u16, reason: &str) -> WireFrame {
        let reason = truncate_on_char_boundary(reason, MAX_CLOSE_REASON);
        let mut payload = Vec::with_capacity(2 + reason.len());
        payload.extend_from_slice(&code.to_be_bytes());
        payload.extend_from_slice(reason.as_bytes());
        WireFrame::encode(OP_CLOSE, &payload)
    }

    /// A ping frame; a payload over 125 bytes is truncated, as control frames allow no more.
    pub fn ping(payload: &[u8]) -> WireFrame {
        WireFrame::encode(OP_PING, truncate_control_payload(payload))
    }

    /// A pong frame; a payload over 125 bytes is truncated, as control frames allow no more.
    pub fn pong(payload: &[u8]) -> WireFrame {
        WireFrame::encode(OP_PONG, truncate_control_payload(payload))
    }

    /// The whole frame, ready for the socket.
    pub fn as_bytes(&self) -> &Bytes {
        &self.bytes
    }

    /// The whole frame, ready for the socket.
    pub fn into_bytes(self) -> Bytes {
        self.bytes
    }

    /// The payload, as a slice of the frame (no copy).
    pub fn payload(&self) -> Bytes {
        self.bytes.slice(usize::from(self.header_len)..)
    }

    /// Length of the whole frame on the wire, header included: what it costs an outbound queue.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Always false, since every frame has a header; kept for the `len`/`is_empty` convention.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    fn encode(opcode: u8, payload: &[u8]) -> WireFrame {
        let (header, header_len) = header(opcode, payload.len());
        let mut buf = Vec::with_capacity(header_len + payload.len());
        buf.extend_from_slice(&header[..header_len]);
        buf.extend_from_slice(payload);
        WireFrame { bytes: Bytes::from(buf), header_len: header_len as u8 }
    }
}

/// A final, unmasked server frame header, left-aligned in the array, and its length.
fn header(opcode: u8, payload_len: usize) -> ([u8; MAX_HEADER], usize) {
    let mut header = [0u8; MAX_HEADER];
    header[0] = FIN | opcode;
    if payload_len <= MAX_CONTROL_PAYLOAD {
        header[1] = payload_len as u8;
        (header, 2)
    } else if let Ok(len) = u16::try_from(payload_len) {
        header[1] = LEN_16;
        header[2..4].copy_from_slice(&len.to_be_bytes());
        (header, 4)
    } else {
        header[1] = LEN_64;
        header[2..10].copy_from_slice(&(payload_len as u64).to_be_bytes());
        (header, 10)
    }
}

fn truncate_control_payload(payload: &[u8]) -> &[u8] {
    &payload[..payload.len().min(MAX_CONTROL_PAYLOAD)]
}

fn truncate_on_char_boundary(text: &str, max_bytes: usize) -> &str {
    if text.len() <= max_bytes {
        return text;
    }
    let end = (0..=max_bytes).rev().find(|&index| text.is_char_boundary(index)).unwrap_or(0);
    &text[..end]
}

/// Undoes the client's XOR mask in place. `phase` is how many bytes of the frame's payload came
/// before `data`, so a payload unmasked in pieces lines up with the mask. Works a word at a time.
fn unmask(data: &mut [u8], mask: [u8; 4], phase: usize) {
    let mask: [u8; 4] = std::array::from_fn(|index| mask[(index + phase) % 4]);
    let wide = u64::from_ne_bytes([mask[0], mask[1], mask[2], mask[3], mask[0], mask[1], mask[2], mask[3]]);
    let mut words = data.chunks_exact_mut(8);
    for word in &mut words {
        let mut value = [0u8; 8];
        value.copy_from_slice(word);
        word.copy_from_slice(&(u64::from_ne_bytes(value) ^ wide).to_ne_bytes());
    }
    for (byte, mask_byte) in words.into_remainder().iter_mut().zip(mask.iter().cycle()) {
        *byte ^= mask_byte;
    }
}

/// What the decoder produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incoming {
    /// A complete (possibly reassembled from fragments) valid UTF-8 text message.
    Text(String),
    /// A complete text message whose payload was not UTF-8 (payload discarded).
    InvalidUtf8,
    /// A complete binary message (payload discarded: the protocol is text-only).
    Binary,
    /// A message over `max_message_bytes`; its payload was skipped without buffering it.
    TooLarge {
        len: u64,
    },
    Ping(Bytes),
    Pong,
    Close {
        code: Option<u16>,
        reason: String,
    },
}

/// Why the decoder gave up on a connection. Either way the caller should close it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The client broke RFC 6455; close with 1002.
    #[error("websocket protocol error: {0}")]
    Protocol(&'static str),
    /// A message declared so large that skipping it is not worth the bandwidth; close with 1009.
    #[error("frame of {len} bytes is far over the limit")]
    FarTooLarge { len: u64 },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Opcode {
    Continuation,
    Text,
    Binary,
    Close,
    Ping,
    Pong,
}

impl Opcode {
    fn from_bits(bits: u8) -> Option<Opcode> {
        match bits {
            OP_CONTINUATION => Some(Opcode::Continuation),
            OP_TEXT => Some(Opcode::Text),
            OP_BINARY => Some(Opcode::Binary),
            OP_CLOSE => Some(Opcode::Close),
            OP_PING => Some(Opcode::Ping),
            OP_PONG => Some(Opcode::Pong),
            _ => None,
        }
    }

    fn is_control(self) -> bool {
        matches!(self, Opcode::Close | Opcode::Ping | Opcode::Pong)
    }
}

#[derive(Debug, Clone, Copy)]
struct FrameHeader {
    fin: bool,
    opcode: Opcode,
    payload_len: u64,
    mask: [u8; 4],
}

/// Header bytes received so far; inline, so a header split across reads costs no allocation.
#[derive(Debug, Clone, Copy, Default)]
struct PartialHeader {
    bytes: [u8; MAX_CLIENT_HEADER],
    filled: usize,
}

impl PartialHeader {
    /// Moves bytes from `buf` until `needed` are held; false if `buf` ran out first.
    fn fill_to(&mut self, needed: usize, buf: &mut BytesMut) -> bool {
        if self.filled < needed {
            let take = (needed - self.filled).min(buf.len());
            self.bytes[self.filled..self.filled + take].copy_from_slice(&buf[..take]);
            buf.advance(take);
            self.filled += take;
        }
        self.filled >= needed
    }

    /// Parses the header once it is all here. Rules that only need the first two bytes are
    /// checked as soon as those arrive, so a bad frame is refused before its length is read.
    fn read(&mut self, buf: &mut BytesMut) -> Result<Option<FrameHeader>, DecodeError> {
        if !self.fill_to(2, buf) {
            return Ok(None);
        }
        let (first, second) = (self.bytes[0], self.bytes[1]);
        let fin = first & FIN != 0;
        if first & RSV != 0 {
            return Err(DecodeError::Protocol("reserved bits set without a negotiated extension"));
        }
        let opcode = Opcode::from_bits(first & OPCODE).ok_or(DecodeError::Protocol("unknown opcode"))?;
        if second & MASKED == 0 {
            return Err(DecodeError::Protocol("client frame is not masked"));
        }
        let short_len = second & SHORT_LEN;
        if opcode.is_control() && !fin {
            return Err(DecodeError::Protocol("fragmented control frame"));
        }
        if opcode.is_control() && usize::from(short_len) > MAX_CONTROL_PAYLOAD {
            return Err(DecodeError::Protocol("control frame payload over 125 bytes"));
        }
        let extended_len = match short_len {
            LEN_16 => 2,
            LEN_64 => 8,
            _ => 0,
        };
        if !self.fill_to(2 + extended_len + 4, buf) {
            return Ok(None);
        }
        let bytes = &self.bytes;
        let payload_len = match extended_len {
            2 => u64::from(u16::from_be_bytes([bytes[2], bytes[3]])),
            8 => {
                let mut len = [0u8; 8];
                len.copy_from_slice(&bytes[2..10]);
                let len = u64::from_be_bytes(len);
                if len >> 63 != 0 {
                    return Err(DecodeError::Protocol("64-bit payload length with the most significant bit set"));
                }
                len
            }
            _ => u64::from(short_len),
        };
        let mask_at = 2 + extended_len;
        let mask = [bytes[mask_at], bytes[mask_at + 1], bytes[mask_at + 2], bytes[mask_at + 3]];
        Ok(Some(FrameHeader { fin, opcode, payload_len, mask }))
    }
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
    /// The unmasked payload so far; validated as UTF-8 only once complete, since a fragment may
    /// end inside a character.
    Text(Vec<u8>),
    /// Binary payloads are counted, not kept: the protocol is text-only.
    Binary { total: u64 },
    /// Over the limit: counted while skipped.
    TooLarge { total: u64 },
}

impl Message {
    fn received_len(&self) -> u64 {
        match self {
            Message::Idle => 0,
            Message::Text(payload) => payload.len() as u64,
            Message::Binary { total } | Message::TooLarge { total } => *total,
        }
    }
}

/// Incremental decoder of client->server frames. Feed it bytes as they arrive; it keeps only what
/// it must (a partial header, a partial payload, or the fragments of an unfinished message).
#[derive(Debug)]
pub struct Decoder {
    max_message_bytes: u64,
    frame: FrameState,
    message: Message,
}

impl Decoder {
    /// A decoder that accepts messages of up to `max_message_bytes` payload bytes.
    pub fn new(max_message_bytes: usize) -> Decoder {
        Decoder {
            max_message_bytes: max_message_bytes as u64,
            frame: FrameState::between_frames(),
            message: Message::Idle,
        }
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
    /// After an error the connection should be closed; further calls return the same error.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Incoming>, DecodeError> {
        let result = self.decode_frames(buf);
        if let Err(error) = &result {
            self.frame = FrameState::Failed(error.clone());
            self.message = Message::Idle;
        }
        result
    }

    /// True when the decoder holds no partial state (so the caller may free its read buffer).
    pub fn is_idle(&self) -> bool {
        matches!(&self.frame, FrameState::Header(partial) if partial.filled == 0)
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
                    if let Message::Text(text) = &mut self.message {
                        let start = text.len();
                        text.extend_from_slice(&buf[..take]);
                        unmask(&mut text[start..], *mask, *phase);
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
                        if let Some(incoming) = self.finish_message() {
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
                Message::Idle if opcode == Opcode::Text => Message::Text(Vec::new()),
                Message::Idle | Message::Binary { .. } => Message::Binary { total },
                Message::Text(payload) => Message::Text(payload),
                Message::TooLarge { .. } => Message::TooLarge { total },
            }
        };
        Ok(FrameState::Data { fin, mask, remaining: payload_len, phase: 0 })
    }

    /// The completed message; None only if there was none, which the frame checks rule out.
    fn finish_message(&mut self) -> Option<Incoming> {
        match std::mem::take(&mut self.message) {
            Message::Idle => None,
            Message::Text(payload) => Some(match String::from_utf8(payload) {
                Ok(text) => Incoming::Text(text),
                Err(_) => Incoming::InvalidUtf8,
            }),
            Message::Binary { .. } => Some(Incoming::Binary),
            Message::TooLarge { total } => Some(Incoming::TooLarge { len: total }),
        }
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
                payload.drain(..2);
                let reason =
                    String::from_utf8(payload).map_err(|_| DecodeError::Protocol("close reason is not valid utf-8"))?;
                Ok(Incoming::Close { code: Some(code), reason })
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];
    const LIMIT: usize = 1 << 20;

    /// A masked client frame, built byte by byte independently of the codec under test.
    fn client_frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
        let mut frame = vec![if fin { 0x80 } else { 0 } | opcode];
        let len = payload.len();
        if len <= 125 {
            frame.push(0x80 | len as u8);
        } else if len <= 0xFFFF {
            frame.push(0x80 | 126);
            frame.extend_from_slice(&(len as u16).to_be_bytes());
        } else {
            frame.push(0x80 | 127);
            frame.extend_from_slice(&(len as u64).to_be_bytes());
        }
        frame.extend_from_slice(&MASK);
        frame.extend(payload.iter().enumerate().map(|(index, byte)| byte ^ MASK[index % 4]));
        frame
    }

    fn text_frame(payload: &[u8]) -> Vec<u8> {
        client_frame(true, OP_TEXT, payload)
    }

    /// A masked frame header declaring `len` bytes, with no payload after it.
    fn header_only(fin: bool, opcode: u8, len: u64) -> Vec<u8> {
        let mut frame = vec![if fin { 0x80 } else { 0 } | opcode, 0x80 | 127];
        frame.extend_from_slice(&len.to_be_bytes());
        frame.extend_from_slice(&MASK);
        frame
    }

    /// Decodes everything in `bytes` fed at once; stops at the first error.
    fn decode_all(decoder: &mut Decoder, bytes: &[u8]) -> Vec<Result<Incoming, DecodeError>> {
        let mut buf = BytesMut::from(bytes);
        let mut out = Vec::new();
        loop {
            match decoder.decode(&mut buf) {
                Ok(Some(incoming)) => out.push(Ok(incoming)),
                Ok(None) => {
                    assert!(buf.is_empty(), "Ok(None) must leave nothing in buf");
                    return out;
                }
                Err(error) => {
                    out.push(Err(error));
                    return out;
                }
            }
        }
    }

    /// Decodes `bytes` fed in pieces of `piece` bytes; stops at the first error.
    fn decode_in_pieces(decoder: &mut Decoder, bytes: &[u8], piece: usize) -> Vec<Result<Incoming, DecodeError>> {
        let mut out = Vec::new();
        let mut buf = BytesMut::new();
        for chunk in bytes.chunks(piece) {
            buf.extend_from_slice(chunk);
            loop {
                match decoder.decode(&mut buf) {
                    Ok(Some(incoming)) => out.push(Ok(incoming)),
                    Ok(None) => {
                        assert!(buf.is_empty(), "Ok(None) must leave nothing in buf");
                        break;
                    }
                    Err(error) => {
                        out.push(Err(error));
                        return out;
                    }
                }
            }
        }
        out
    }

    fn one(decoder: &mut Decoder, bytes: &[u8]) -> Result<Incoming, DecodeError> {
        let mut out = decode_all(decoder, bytes);
        assert_eq!(out.len(), 1, "expected exactly one item, got {out:?}");
        out.remove(0)
    }

    fn reference_server_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
        let mut frame = vec![0x80 | opcode];
        let len = payload.len();
        if len <= 125 {
            frame.push(len as u8);
        } else if len <= 0xFFFF {
            frame.push(126);
            frame.extend_from_slice(&(len as u16).to_be_bytes());
        } else {
            frame.push(127);
            frame.extend_from_slice(&(len as u64).to_be_bytes());
        }
        frame.extend_from_slice(payload);
        frame
    }

    fn pattern(len: usize) -> Vec<u8> {
        (0..len).map(|index| b'a' + (index % 26) as u8).collect()
    }

    /// A small deterministic xorshift64 generator, so the fuzz tests need no extra crate.
    struct XorShift(u64);

    impl XorShift {
        fn next(&mut self) -> u64 {
            let mut x = self.0;
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            self.0 = x;
            x
        }

        fn below(&mut self, bound: usize) -> usize {
            (self.next() % bound as u64) as usize
        }
    }

    /// The example handshake from RFC 6455 section 1.3.
    #[test]
    fn accept_key_matches_rfc_example() {
        assert_eq!(accept_key("dGhlIHNhbXBsZSBub25jZQ=="), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    }

    #[test]
    fn unmask_matches_bytewise_xor_at_every_length_and_phase() {
        for len in 0..40 {
            for phase in 0..4 {
                let original = pattern(len);
                let expected: Vec<u8> =
                    original.iter().enumerate().map(|(index, byte)| byte ^ MASK[(index + phase) % 4]).collect();
                let mut data = original.clone();
                unmask(&mut data, MASK, phase);
                assert_eq!(data, expected, "len {len} phase {phase}");
            }
        }
    }

    #[test]
    fn text_at_length_boundaries() {
        for len in [0, 1, 5, 125, 126, 127, 65535, 65536, 70000] {
            let payload = pattern(len);
            let mut decoder = Decoder::new(LIMIT);
            let expected = Incoming::Text(String::from_utf8(payload.clone()).unwrap());
            assert_eq!(one(&mut decoder, &text_frame(&payload)), Ok(expected));
            assert!(decoder.is_idle());
        }
    }

    #[test]
    fn message_exactly_at_the_limit_is_accepted() {
        let mut decoder = Decoder::new(100);
        let payload = pattern(100);
        assert_eq!(one(&mut decoder, &text_frame(&payload)), Ok(Incoming::Text(String::from_utf8(payload).unwrap())));
    }

    fn mixed_stream() -> Vec<u8> {
        let mut stream = Vec::new();
        stream.extend(text_frame(b"hello"));
        stream.extend(client_frame(true, OP_PING, b"are you there"));
        stream.extend(text_frame(&pattern(300)));
        stream.extend(client_frame(false, OP_TEXT, "caf".as_bytes()));
        stream.extend(client_frame(true, OP_PONG, b"pong data"));
        stream.extend(client_frame(false, OP_CONTINUATION, &[0xC3]));
        stream.extend(client_frame(true, OP_CONTINUATION, &[0xA9, b'!']));
        stream.extend(client_frame(true, OP_BINARY, &[1, 2, 3]));
        stream.extend(text_frame(&[0xFF, 0xFE]));
        stream.extend(text_frame(&pattern(70_000)));
        stream.extend(text_frame(b""));
        stream.extend(client_frame(true, OP_CLOSE, b"\x03\xe8bye"));
        stream
    }

    fn mixed_expected() -> Vec<Result<Incoming, DecodeError>> {
        vec![
            Ok(Incoming::Text("hello".into())),
            Ok(Incoming::Ping(Bytes::from_static(b"are you there"))),
            Ok(Incoming::Text(String::from_utf8(pattern(300)).unwrap())),
            Ok(Incoming::Pong),
            Ok(Incoming::Text("café!".into())),
            Ok(Incoming::Binary),
            Ok(Incoming::InvalidUtf8),
            Ok(Incoming::TooLarge { len: 70_000 }),
            Ok(Incoming::Text(String::new())),
            Ok(Incoming::Close { code: Some(1000), reason: "bye".into() }),
        ]
    }

    #[test]
    fn mixed_stream_decodes_the_same_whole_and_one_byte_at_a_time() {
        let stream = mixed_stream();
        let mut whole = Decoder::new(65536);
        assert_eq!(decode_all(&mut whole, &stream), mixed_expected());
        assert!(whole.is_idle());
        let mut bytewise = Decoder::new(65536);
        assert_eq!(decode_in_pieces(&mut bytewise, &stream, 1), mixed_expected());
        assert!(bytewise.is_idle());
        for piece in [2, 3, 7, 64, 1000] {
            let mut decoder = Decoder::new(65536);
            assert_eq!(decode_in_pieces(&mut decoder, &stream, piece), mixed_expected(), "pieces of {piece}");
        }
    }

    #[test]
    fn every_split_point_gives_the_same_result() {
        let mut stream = Vec::new();
        stream.extend(text_frame(&pattern(130)));
        stream.extend(client_frame(false, OP_TEXT, b"ab"));
        stream.extend(client_frame(true, OP_PING, b"x"));
        stream.extend(client_frame(true, OP_CONTINUATION, b"cd"));
        stream.extend(client_frame(true, OP_CLOSE, b""));
        let expected = vec![
            Ok(Incoming::Text(String::from_utf8(pattern(130)).unwrap())),
            Ok(Incoming::Ping(Bytes::from_static(b"x"))),
            Ok(Incoming::Text("abcd".into())),
            Ok(Incoming::Close { code: None, reason: String::new() }),
        ];
        for split in 0..=stream.len() {
            let mut decoder = Decoder::new(LIMIT);
            let mut out = decode_all(&mut decoder, &stream[..split]);
            out.extend(decode_all(&mut decoder, &stream[split..]));
            assert_eq!(out, expected, "split at {split}");
            assert!(decoder.is_idle());
        }
    }

    #[test]
    fn fragmented_text_with_interleaved_ping() {
        let mut decoder = Decoder::new(LIMIT);
        assert_eq!(decode_all(&mut decoder, &client_frame(false, OP_TEXT, b"Hel")), vec![]);
        assert!(!decoder.is_idle());
        assert_eq!(
            one(&mut decoder, &client_frame(true, OP_PING, b"ping!")),
            Ok(Incoming::Ping(Bytes::from_static(b"ping!")))
        );
        assert!(!decoder.is_idle());
        assert_eq!(decode_all(&mut decoder, &client_frame(false, OP_CONTINUATION, b"lo ")), vec![]);
        assert_eq!(
            one(&mut decoder, &client_frame(true, OP_CONTINUATION, b"world")),
            Ok(Incoming::Text("Hello world".into()))
        );
        assert!(decoder.is_idle());
    }

    #[test]
    fn utf8_split_across_fragments_is_valid_once_assembled() {
        let euro = "€".as_bytes();
        let mut stream = client_frame(false, OP_TEXT, &euro[..1]);
        stream.extend(client_frame(false, OP_CONTINUATION, &euro[1..2]));
        stream.extend(client_frame(true, OP_CONTINUATION, &euro[2..]));
        let mut decoder = Decoder::new(LIMIT);
        assert_eq!(one(&mut decoder, &stream), Ok(Incoming::Text("€".into())));
    }

    #[test]
    fn invalid_utf8_is_reported_and_decoding_continues() {
        let mut stream = text_frame(&[b'o', b'k', 0xC3, 0x28]);
        stream.extend(text_frame(b"next"));
        let mut decoder = Decoder::new(LIMIT);
        assert_eq!(
            decode_all(&mut decoder, &stream),
            vec![Ok(Incoming::InvalidUtf8), Ok(Incoming::Text("next".into()))]
        );
        assert!(decoder.is_idle());
    }

    #[test]
    fn binary_message_is_reported_without_its_payload() {
        let mut stream = client_frame(false, OP_BINARY, &[0; 10]);
        stream.extend(client_frame(true, OP_CONTINUATION, &[1; 10]));
        let mut decoder = Decoder::new(LIMIT);
        assert_eq!(one(&mut decoder, &stream), Ok(Incoming::Binary));
        assert!(decoder.is_idle());
    }

    fn protocol_error(bytes: &[u8]) -> DecodeError {
        let mut decoder = Decoder::new(LIMIT);
        match decode_all(&mut decoder, bytes).pop() {
            Some(Err(error @ DecodeError::Protocol(_))) => error,
            other => panic!("expected a protocol error, got {other:?}"),
        }
    }

    #[test]
    fn unmasked_frame_is_a_protocol_error() {
        let error = protocol_error(&reference_server_frame(OP_TEXT, b"hi"));
        assert_eq!(error, DecodeError::Protocol("client frame is not masked"));
    }

    #[test]
    fn protocol_violations_are_errors() {
        let mut rsv = text_frame(b"x");
        rsv[0] |= 0x40;
        protocol_error(&rsv);
        protocol_error(&client_frame(true, 0x3, b""));
        protocol_error(&client_frame(true, 0xB, b""));
        protocol_error(&client_frame(false, OP_PING, b""));
        protocol_error(&client_frame(true, OP_PING, &[0; 126]));
        protocol_error(&client_frame(true, OP_CONTINUATION, b"x"));
        protocol_error(&client_frame(true, OP_CLOSE, &[3]));
        protocol_error(&client_frame(true, OP_CLOSE, &[3, 232, 0xFF]));
        protocol_error(&header_only(true, OP_TEXT, 1 << 63));

        let mut open_then_new = client_frame(false, OP_TEXT, b"a");
        open_then_new.extend(text_frame(b"b"));
        protocol_error(&open_then_new);
        let mut open_then_binary = client_frame(false, OP_TEXT, b"a");
        open_then_binary.extend(client_frame(true, OP_BINARY, b"b"));
        protocol_error(&open_then_binary);
    }

    #[test]
    fn bad_frame_is_refused_from_its_first_two_bytes() {
        let mut decoder = Decoder::new(LIMIT);
        let unmasked = reference_server_frame(OP_TEXT, &pattern(1000));
        assert!(matches!(decode_all(&mut decoder, &unmasked[..2]).pop(), Some(Err(DecodeError::Protocol(_)))));
    }

    #[test]
    fn errors_are_sticky() {
        let mut decoder = Decoder::new(LIMIT);
        let error = one(&mut decoder, &client_frame(true, OP_CONTINUATION, b"x")).unwrap_err();
        assert_eq!(one(&mut decoder, &text_frame(b"fine")), Err(error));
    }

    #[test]
    fn too_large_is_skipped_in_pieces_then_next_frame_decodes() {
        let max = 100;
        let stream = text_frame(&pattern(1000));
        let next = text_frame(b"after");
        let mut decoder = Decoder::new(max);
        let mut buf = BytesMut::new();
        for chunk in stream.chunks(7) {
            buf.extend_from_slice(chunk);
            let result = decoder.decode(&mut buf);
            assert!(buf.is_empty(), "skipped bytes must be consumed");
            if let Ok(Some(item)) = result {
                assert_eq!(item, Incoming::TooLarge { len: 1000 });
                assert!(decoder.is_idle());
                assert_eq!(one(&mut decoder, &next), Ok(Incoming::Text("after".into())));
                return;
            }
            assert_eq!(result, Ok(None));
            assert!(matches!(decoder.message, Message::Idle | Message::TooLarge { .. }));
        }
        panic!("the oversized frame never completed");
    }

    #[test]
    fn fragmented_message_over_the_limit_is_skipped() {
        let mut stream = client_frame(false, OP_TEXT, &pattern(60));
        stream.extend(client_frame(true, OP_PING, b""));
        stream.extend(client_frame(false, OP_CONTINUATION, &pattern(60)));
        stream.extend(client_frame(true, OP_CONTINUATION, &pattern(30)));
        stream.extend(text_frame(b"ok"));
        let expected = vec![
            Ok(Incoming::Ping(Bytes::new())),
            Ok(Incoming::TooLarge { len: 150 }),
            Ok(Incoming::Text("ok".into())),
        ];
        for piece in [1, 5, stream.len()] {
            let mut decoder = Decoder::new(100);
            assert_eq!(decode_in_pieces(&mut decoder, &stream, piece), expected);
            assert!(decoder.is_idle());
        }
    }

    #[test]
    fn far_too_large_fails_on_the_header_alone() {
        let mut decoder = Decoder::new(100);
        assert_eq!(one(&mut decoder, &header_only(true, OP_TEXT, 1601)), Err(DecodeError::FarTooLarge { len: 1601 }));
        let mut decoder = Decoder::new(100);
        assert_eq!(decode_all(&mut decoder, &header_only(true, OP_BINARY, 1600)), vec![]);
        assert!(!decoder.is_idle());
    }

    #[test]
    fn far_too_large_counts_the_fragment_total() {
        let mut stream = client_frame(false, OP_TEXT, &pattern(1000));
        stream.extend(header_only(false, OP_CONTINUATION, 601));
        let mut decoder = Decoder::new(100);
        assert_eq!(decode_all(&mut decoder, &stream), vec![Err(DecodeError::FarTooLarge { len: 1601 })]);
    }

    #[test]
    fn close_frames() {
        let mut decoder = Decoder::new(LIMIT);
        assert_eq!(
            one(&mut decoder, &client_frame(true, OP_CLOSE, b"\x03\xe9going away")),
            Ok(Incoming::Close { code: Some(1001), reason: "going away".into() })
        );
        assert_eq!(
            one(&mut decoder, &client_frame(true, OP_CLOSE, b"\x03\xe8")),
            Ok(Incoming::Close { code: Some(1000), reason: String::new() })
        );
        assert_eq!(
            one(&mut decoder, &client_frame(true, OP_CLOSE, b"")),
            Ok(Incoming::Close { code: None, reason: String::new() })
        );
    }

    #[test]
    fn ping_and_pong() {
        let mut decoder = Decoder::new(LIMIT);
        let payload = pattern(125);
        assert_eq!(one(&mut decoder, &client_frame(true, OP_PING, &payload)), Ok(Incoming::Ping(Bytes::from(payload))));
        assert_eq!(one(&mut decoder, &client_frame(true, OP_PONG, b"whatever")), Ok(Incoming::Pong));
        assert!(decoder.is_idle());
    }

    #[test]
    fn partial_header_makes_the_decoder_busy() {
        let mut decoder = Decoder::new(LIMIT);
        assert!(decoder.is_idle());
        let frame = text_frame(b"hi");
        assert_eq!(decode_all(&mut decoder, &frame[..3]), vec![]);
        assert!(!decoder.is_idle());
        assert_eq!(one(&mut decoder, &frame[3..]), Ok(Incoming::Text("hi".into())));
        assert!(decoder.is_idle());
    }

    #[test]
    fn text_with_matches_reference_encoding() {
        for len in [0, 1, 125, 126, 65535, 65536, 100_000] {
            let payload = pattern(len);
            let frame = WireFrame::text_with(|buf| buf.extend_from_slice(&payload));
            let reference = reference_server_frame(OP_TEXT, &payload);
            assert_eq!(frame.as_bytes().as_ref(), reference.as_slice(), "len {len}");
            assert_eq!(frame.payload().as_ref(), payload.as_slice(), "len {len}");
            assert_eq!(frame.len(), reference.len());
            assert!(!frame.is_empty());
            assert_eq!(WireFrame::text(&payload), frame, "len {len}");
            assert_eq!(frame.clone().into_bytes(), Bytes::from(reference));
        }
    }

    #[test]
    fn control_frames_encode_and_truncate() {
        let ping = WireFrame::ping(&pattern(200));
        assert_eq!(ping.as_bytes().as_ref(), reference_server_frame(OP_PING, &pattern(125)).as_slice());
        let pong = WireFrame::pong(b"abc");
        assert_eq!(pong.as_bytes().as_ref(), reference_server_frame(OP_PONG, b"abc").as_slice());
        let close = WireFrame::close(1000, "bye");
        assert_eq!(close.as_bytes().as_ref(), reference_server_frame(OP_CLOSE, b"\x03\xe8bye").as_slice());
        assert_eq!(close.payload().as_ref(), b"\x03\xe8bye");
    }

    #[test]
    fn close_reason_is_truncated_on_a_char_boundary() {
        let reason = "é".repeat(100);
        let close = WireFrame::close(1008, &reason);
        let payload = close.payload();
        assert_eq!(payload.len(), 2 + 122);
        assert_eq!(&payload[..2], &1008u16.to_be_bytes());
        assert_eq!(std::str::from_utf8(&payload[2..]).unwrap(), "é".repeat(61));

        let exact = "x".repeat(123);
        assert_eq!(WireFrame::close(1000, &exact).payload().len(), 125);
    }

    #[test]
    fn server_frames_decode_with_our_own_decoder_once_masked() {
        let payload = pattern(300);
        let frame = WireFrame::text(&payload);
        let client = client_frame(true, OP_TEXT, &frame.payload());
        let mut decoder = Decoder::new(LIMIT);
        assert_eq!(one(&mut decoder, &client), Ok(Incoming::Text(String::from_utf8(payload).unwrap())));
    }

    #[test]
    fn random_garbage_never_panics() {
        let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
        for _ in 0..2000 {
            let mut decoder = Decoder::new(1 + rng.below(4096));
            let len = rng.below(512);
            let garbage: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
            let piece = 1 + rng.below(64);
            let _ = decode_in_pieces(&mut decoder, &garbage, piece);
            let _ = decoder.is_idle();
        }
    }

    #[test]
    fn mutated_valid_streams_never_panic() {
        let base = mixed_stream();
        let mut rng = XorShift(0xDEAD_BEEF_CAFE_F00D);
        for _ in 0..300 {
            let mut stream = base.clone();
            for _ in 0..1 + rng.below(8) {
                let at = rng.below(stream.len());
                stream[at] = rng.next() as u8;
            }
            let cut = rng.below(stream.len() + 1);
            stream.truncate(cut);
            let mut decoder = Decoder::new(1 + rng.below(100_000));
            let piece = 1 + rng.below(4096);
            let _ = decode_in_pieces(&mut decoder, &stream, piece);
        }
    }
}

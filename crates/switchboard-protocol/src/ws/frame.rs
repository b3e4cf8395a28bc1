//! Server->client frames: unmasked, unfragmented, built once and shared by every recipient.

use bytes::Bytes;

use super::{FIN, LEN_16, LEN_64, MAX_CONTROL_PAYLOAD, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG, OP_TEXT};

/// The longest server frame header: two bytes plus a 64-bit length (server frames carry no mask).
pub const MAX_HEADER: usize = 10;

/// A close payload is a two-byte code followed by the reason, within the control frame cap.
const MAX_CLOSE_REASON: usize = MAX_CONTROL_PAYLOAD - 2;

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

    /// A binary frame holding a copy of `payload` (the chat protocol never sends one; the codec's
    /// echo example does).
    pub fn binary(payload: &[u8]) -> WireFrame {
        WireFrame::encode(OP_BINARY, payload)
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

//! The client frame header, read as its bytes arrive, and the client's payload mask.

use bytes::{Buf, BytesMut};

use super::frame::MAX_HEADER;
use super::{
    DecodeError, FIN, LEN_16, LEN_64, MASKED, MAX_CONTROL_PAYLOAD, OPCODE, OP_BINARY, OP_CLOSE, OP_CONTINUATION,
    OP_PING, OP_PONG, OP_TEXT, RSV, SHORT_LEN,
};

/// Client headers add a four-byte mask to the longest server header.
const MAX_CLIENT_HEADER: usize = MAX_HEADER + 4;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Opcode {
    Continuation,
    Text,
    Binary,
    Close,
    Ping,
    Pong,
}

impl Opcode {
    pub(super) fn from_bits(bits: u8) -> Option<Opcode> {
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

    pub(super) fn is_control(self) -> bool {
        matches!(self, Opcode::Close | Opcode::Ping | Opcode::Pong)
    }
}

#[derive(Debug, Clone, Copy)]
pub(super) struct FrameHeader {
    pub(super) fin: bool,
    pub(super) opcode: Opcode,
    pub(super) payload_len: u64,
    pub(super) mask: [u8; 4],
}

/// Header bytes received so far; inline, so a header split across reads costs no allocation.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct PartialHeader {
    bytes: [u8; MAX_CLIENT_HEADER],
    filled: usize,
}

impl PartialHeader {
    /// True before the first byte of a header arrived.
    pub(super) fn is_empty(&self) -> bool {
        self.filled == 0
    }

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
    pub(super) fn read(&mut self, buf: &mut BytesMut) -> Result<Option<FrameHeader>, DecodeError> {
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

/// Undoes the client's XOR mask in place. `phase` is how many bytes of the frame's payload came
/// before `data`, so a payload unmasked in pieces lines up with the mask. Works a word at a time.
pub(super) fn unmask(data: &mut [u8], mask: [u8; 4], phase: usize) {
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

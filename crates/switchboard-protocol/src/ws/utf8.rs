//! UTF-8 checked as a text message streams in, so a bad byte fails the connection when it
//! arrives, not when the message is complete (RFC 6455 section 8.1: fail fast).

/// How far a growing payload has been found valid. The payload itself stays with the caller, who
/// appends to it and calls [`StreamingUtf8::check`] after each piece.
#[derive(Debug, Default)]
pub(super) struct StreamingUtf8 {
    /// Bytes known to be whole, valid characters; after them at most an unfinished character.
    valid_up_to: usize,
}

/// The payload holds a byte sequence that no continuation can make valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct InvalidUtf8;

impl StreamingUtf8 {
    /// Checks what was appended since the last call. A character cut by the end of `payload` is
    /// fine for now (a fragment, or a read, may end inside one): it is checked again with the
    /// bytes that complete it. Only the new bytes (and at most three before them) are looked at.
    pub(super) fn check(&mut self, payload: &[u8]) -> Result<(), InvalidUtf8> {
        match std::str::from_utf8(&payload[self.valid_up_to..]) {
            Ok(_) => {
                self.valid_up_to = payload.len();
                Ok(())
            }
            // `error_len` is None when the input ended inside a character that may still be valid.
            Err(error) if error.error_len().is_none() => {
                self.valid_up_to += error.valid_up_to();
                Ok(())
            }
            Err(_) => Err(InvalidUtf8),
        }
    }

    /// Whether the whole message is valid: no character may be left unfinished at its end.
    pub(super) fn is_complete(&self, payload: &[u8]) -> bool {
        self.valid_up_to == payload.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `bytes` in pieces of `piece` and says at which byte count it failed, if it did.
    fn fails_after(bytes: &[u8], piece: usize) -> Option<usize> {
        let mut payload = Vec::new();
        let mut utf8 = StreamingUtf8::default();
        for chunk in bytes.chunks(piece) {
            payload.extend_from_slice(chunk);
            if utf8.check(&payload).is_err() {
                return Some(payload.len());
            }
        }
        (!utf8.is_complete(&payload)).then_some(payload.len())
    }

    #[test]
    fn valid_text_split_anywhere_is_valid() {
        let text = "κόσμε €𝄞 ascii".as_bytes();
        for piece in 1..=text.len() {
            assert_eq!(fails_after(text, piece), None, "pieces of {piece}");
        }
    }

    #[test]
    fn a_bad_byte_fails_as_soon_as_it_arrives() {
        // Autobahn case 6.4.1's message: U+10FFFF + 1 is out of range from its second byte.
        let mut bytes = "κόσμε".as_bytes().to_vec();
        let bad_at = bytes.len() + 2; // the count of bytes read when 0x90 arrives
        bytes.extend_from_slice(&[0xF4, 0x90, 0x80, 0x80]);
        bytes.extend_from_slice(b"edited");
        assert_eq!(fails_after(&bytes, 1), Some(bad_at));
        for bad in [&[0xFF][..], &[0xC0, 0xAF], &[0xED, 0xA0, 0x80], &[0xE0, 0x80]] {
            assert!(fails_after(bad, 1).is_some(), "{bad:x?}");
        }
    }

    #[test]
    fn an_unfinished_character_at_the_end_is_invalid() {
        assert_eq!(fails_after(&[b'a', 0xE2, 0x82], 1), Some(3));
        assert_eq!(fails_after(&[b'a', 0xE2, 0x82], 3), Some(3));
    }
}

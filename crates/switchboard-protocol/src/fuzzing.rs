//! The properties the fuzz targets (`fuzz/`) check, shared with the corpus replay in `cargo test`
//! so both run the very same code. Each `check_*` panics when a property fails.
//!
//! Only built with the `fuzzing` feature: it is test code, not part of the protocol.

use bytes::BytesMut;
use serde_json::{json, Map, Value};

use crate::request::{self, ClientFrame, Request, Target};
use crate::ws::{is_valid_close_code, DecodeError, Decoder, Incoming};
use crate::{AuthOptions, CloseCode, ErrorCode, RefValue};

/// Message limits the decoder target picks from: below, at and above the 125-byte control cap
/// and the 126/127 length encodings, so size checks are reachable with small inputs.
const MAX_MESSAGE_CHOICES: [usize; 4] = [16, 125, 1000, 70_000];

/// The decoder target's input: byte 0 picks the decoder (bits 0-1 the message limit from
/// [`MAX_MESSAGE_CHOICES`], bit 2 whether binary payloads are kept), byte 1 seeds the split
/// points, the rest is the client's byte stream.
///
/// The stream is decoded three ways, whole, in pseudo-random chunks and one byte at a time, and
/// must give the same messages and the same error: where reads split the stream never changes
/// what it means. Every error maps to a close code RFC 6455 allows for it, and a failed decoder
/// stays failed.
pub fn check_decoder(data: &[u8]) {
    let [config, seed, stream @ ..] = data else {
        return;
    };
    let max_message_bytes = MAX_MESSAGE_CHOICES[usize::from(config & 0b11)];
    let keep_binary = config & 0b100 != 0;
    let new_decoder = || {
        let decoder = Decoder::new(max_message_bytes);
        if keep_binary {
            decoder.keeping_binary()
        } else {
            decoder
        }
    };

    let whole = decode_in_chunks(new_decoder(), stream, std::iter::repeat(usize::MAX), max_message_bytes);
    let chunked = decode_in_chunks(new_decoder(), stream, chunk_sizes(*seed), max_message_bytes);
    let bytewise = decode_in_chunks(new_decoder(), stream, std::iter::repeat(1), max_message_bytes);
    assert_eq!(whole, chunked, "split points changed the outcome (seed {seed})");
    assert_eq!(whole, bytewise, "byte-at-a-time reads changed the outcome");
}

/// Pseudo-random chunk sizes of 1 to 16 bytes (xorshift, so a seed always splits the same way).
fn chunk_sizes(seed: u8) -> impl Iterator<Item = usize> {
    let mut state = u32::from(seed) | 0x9E37_7900;
    std::iter::from_fn(move || {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        Some((state % 16) as usize + 1)
    })
}

/// Everything the decoder produced, and the error it stopped at, if any.
type Outcome = (Vec<Incoming>, Option<DecodeError>);

fn decode_in_chunks(
    mut decoder: Decoder,
    mut stream: &[u8],
    chunk_sizes: impl Iterator<Item = usize>,
    max_message_bytes: usize,
) -> Outcome {
    let mut messages = Vec::new();
    let mut buf = BytesMut::new();
    for size in chunk_sizes {
        if stream.is_empty() {
            break;
        }
        let (chunk, rest) = stream.split_at(size.min(stream.len()));
        stream = rest;
        buf.extend_from_slice(chunk);
        loop {
            match decoder.decode(&mut buf) {
                Ok(Some(incoming)) => {
                    check_incoming(&incoming, max_message_bytes);
                    messages.push(incoming);
                }
                Ok(None) => {
                    assert!(buf.is_empty(), "decoder asked for more bytes but left {} unread", buf.len());
                    break;
                }
                Err(error) => {
                    check_decode_error(&mut decoder, &error);
                    return (messages, Some(error));
                }
            }
        }
    }
    (messages, None)
}

fn check_incoming(incoming: &Incoming, max_message_bytes: usize) {
    match incoming {
        Incoming::Text(text) => assert!(text.len() <= max_message_bytes, "text over the limit"),
        Incoming::Binary(payload) => assert!(payload.len() <= max_message_bytes, "binary over the limit"),
        Incoming::TooLarge { len } => assert!(*len > max_message_bytes as u64, "too large but within the limit"),
        Incoming::Ping(payload) => assert!(payload.len() <= 125, "ping payload over the control cap"),
        Incoming::Pong => {}
        Incoming::Close { code, reason } => {
            if let Some(code) = code {
                // Written out again rather than asking the decoder's own rule, so that rule is checked.
                let allowed = matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999);
                assert!(allowed, "close code {code} a client may not send was accepted");
                assert!(is_valid_close_code(*code));
            } else {
                assert!(reason.is_empty(), "a reason without a code");
            }
            assert!(reason.len() <= 123, "close reason over the control cap");
        }
    }
}

fn check_decode_error(decoder: &mut Decoder, error: &DecodeError) {
    let expected = match error {
        DecodeError::Protocol(_) => CloseCode::ProtocolError,
        DecodeError::InvalidUtf8 => CloseCode::InvalidPayload,
        DecodeError::FarTooLarge { .. } => CloseCode::TooBig,
    };
    assert_eq!(error.close_code(), expected);
    assert!(matches!(error.close_code().code(), 1002 | 1007 | 1009));
    assert!(decoder.has_failed(), "an error left the decoder usable");
    let mut more = BytesMut::from(&[0x81, 0x80, 0, 0, 0, 0][..]);
    assert_eq!(decoder.decode(&mut more).as_ref(), Err(error), "a failed decoder answered differently");
}

/// The request target's input is any string a client could send as a text message.
///
/// `request::parse` never panics; an error carries a code the parser may give and a message;
/// `reference_of` finds the same `ref` as the parser; and a parsed request written back as JSON
/// (with its names already normalised) parses to the same request: normalising is idempotent.
pub fn check_request(text: &str) {
    let frame = match request::parse(text) {
        Ok(frame) => frame,
        Err(error) => {
            assert!(
                matches!(
                    error.code,
                    ErrorCode::BadFrame
                        | ErrorCode::InvalidField
                        | ErrorCode::UnknownType
                        | ErrorCode::InvalidName
                        | ErrorCode::UnsupportedProtocol
                ),
                "parser gave {:?}",
                error.code
            );
            assert!(!error.message.is_empty(), "error without a message");
            return;
        }
    };
    assert_eq!(request::reference_of(text), frame.reference, "reference_of disagrees with parse");
    let rendered = render(&frame);
    let again = request::parse(&rendered).unwrap_or_else(|error| panic!("{rendered} no longer parses: {error:?}"));
    assert_eq!(again, frame, "{rendered} parses to a different request");
}

/// Writes a parsed frame back as the JSON a client would send for it.
pub fn render(frame: &ClientFrame) -> String {
    let mut fields = Map::new();
    fields.insert("type".into(), json!(frame.request.kind()));
    match &frame.reference {
        Some(RefValue::Number(number)) => fields.insert("ref".into(), json!(number)),
        Some(RefValue::Text(text)) => fields.insert("ref".into(), json!(text)),
        None => None,
    };
    let mut set = |name: &str, value: Value| {
        fields.insert(name.into(), value);
    };
    match &frame.request {
        Request::Register { username, password, options } | Request::Login { username, password, options } => {
            set("username", json!(username));
            set("password", json!(password));
            render_options(options, &mut set);
        }
        Request::Resume { token, options } => {
            set("token", json!(token));
            render_options(options, &mut set);
        }
        Request::LoginJwt { jwt, options } => {
            set("jwt", json!(jwt));
            render_options(options, &mut set);
        }
        Request::LoginOpen { username, options } => {
            set("username", json!(username));
            render_options(options, &mut set);
        }
        Request::Send { target, text, key, reply_to } => {
            render_target(target, &mut set);
            set("text", json!(text));
            if let Some(key) = key {
                set("key", json!(key));
            }
            if let Some(reply_to) = reply_to {
                set("reply_to", json!(reply_to));
            }
        }
        Request::Edit { target, seq, text } => {
            render_target(target, &mut set);
            set("seq", json!(seq));
            set("text", json!(text));
        }
        Request::Delete { target, seq } => {
            render_target(target, &mut set);
            set("seq", json!(seq));
        }
        Request::React { target, seq, emoji } => {
            render_target(target, &mut set);
            set("seq", json!(seq));
            set("emoji", json!(emoji));
        }
        Request::History { target, before, after, limit } => {
            render_target(target, &mut set);
            for (name, value) in [("before", before), ("after", after)] {
                if let Some(value) = value {
                    set(name, json!(value));
                }
            }
            if let Some(limit) = limit {
                set("limit", json!(limit));
            }
        }
        Request::Typing { target } => render_target(target, &mut set),
        Request::Read { target, seq } | Request::Delivered { target, seq } => {
            render_target(target, &mut set);
            set("seq", json!(seq));
        }
        Request::CreateRoom { room, private } => {
            set("room", json!(room));
            if *private {
                set("private", json!(true));
            }
        }
        Request::Join { room } | Request::Leave { room } => {
            set("room", json!(room));
        }
        Request::Members { room, after, limit } => {
            set("room", json!(room));
            render_page(after, limit, &mut set);
        }
        Request::Users { prefix, after, limit } => {
            if !prefix.is_empty() {
                set("prefix", json!(prefix));
            }
            render_page(after, limit, &mut set);
        }
        Request::Conversations { after, limit } | Request::Rooms { after, limit } => {
            render_page(after, limit, &mut set);
        }
        Request::Popular { n, seconds } => {
            for (name, value) in [("n", n), ("seconds", seconds)] {
                if let Some(value) = value {
                    set(name, json!(value));
                }
            }
        }
        Request::Stats { user } | Request::Block { user } | Request::Unblock { user } => set("user", json!(user)),
        Request::Moderate { room, user, .. } => {
            set("room", json!(room));
            set("user", json!(user));
        }
        Request::Watch { users } | Request::Unwatch { users } => set("users", json!(users)),
        Request::Logout | Request::Online | Request::Whoami | Request::Ping | Request::Blocked => {}
    }
    Value::Object(fields).to_string()
}

/// A paged listing's `cursor` and `limit`.
fn render_page(after: &Option<String>, limit: &Option<u32>, set: &mut impl FnMut(&str, Value)) {
    if let Some(after) = after {
        set("cursor", json!(after));
    }
    if let Some(limit) = limit {
        set("limit", json!(limit));
    }
}

fn render_options(options: &AuthOptions, set: &mut impl FnMut(&str, Value)) {
    set("presence", json!(options.presence));
    let cursors: Map<String, Value> =
        options.cursors.iter().map(|(conv, seq)| (conv.to_string(), json!(seq))).collect();
    set("cursors", Value::Object(cursors));
}

fn render_target(target: &Target, set: &mut impl FnMut(&str, Value)) {
    match target {
        Target::User(user) => set("to", json!(user)),
        Target::Room(room) => set("room", json!(room)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_masked_text_frame_decodes_the_same_however_it_is_split() {
        let mask = [1, 2, 3, 4];
        let mut frame = vec![0x81, 0x80 | 5, 1, 2, 3, 4];
        frame.extend(b"hello".iter().enumerate().map(|(index, byte)| byte ^ mask[index % 4]));
        for seed in 0..=255 {
            let mut input = vec![0, seed];
            input.extend_from_slice(&frame);
            check_decoder(&input);
        }
    }

    #[test]
    fn every_documented_request_round_trips() {
        for text in [
            r#"{"type":"login","ref":1,"username":" Alice ","password":"pw","cursors":{"dm:b:a":3,"room:X":1}}"#,
            r#"{"type":"history","room":"lobby","before":10,"limit":5}"#,
            r#"{"type":"users","cursor":"m","limit":2}"#,
            r#"{"type":"users","prefix":"Ma","cursor":"m"}"#,
            r#"{"type":"popular","n":3,"seconds":60,"ref":"r"}"#,
        ] {
            assert!(request::parse(text).is_ok(), "{text}");
            check_request(text);
        }
    }
}

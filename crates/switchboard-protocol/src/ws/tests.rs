//! The codec against frames built byte by byte, independently of it.

use bytes::{Bytes, BytesMut};

use super::header::unmask;
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
        Ok(Incoming::Binary(Bytes::new())),
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
fn binary_message_is_reported_without_its_payload() {
    let mut stream = client_frame(false, OP_BINARY, &[0; 10]);
    stream.extend(client_frame(true, OP_CONTINUATION, &[1; 10]));
    let mut decoder = Decoder::new(LIMIT);
    assert_eq!(one(&mut decoder, &stream), Ok(Incoming::Binary(Bytes::new())), "the payload is not kept");
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
    let expected =
        vec![Ok(Incoming::Ping(Bytes::new())), Ok(Incoming::TooLarge { len: 150 }), Ok(Incoming::Text("ok".into()))];
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

/// Autobahn cases 7.9.x and 7.13.x: close codes no client may send fail the connection.
#[test]
fn a_close_code_a_client_may_not_send_is_a_protocol_error() {
    for code in [0u16, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535] {
        let mut decoder = Decoder::new(LIMIT);
        let error = one(&mut decoder, &client_frame(true, OP_CLOSE, &code.to_be_bytes())).unwrap_err();
        assert!(matches!(error, DecodeError::Protocol(_)), "code {code}: {error:?}");
        assert_eq!(error.close_code().code(), 1002, "code {code}");
    }
    for code in [1000u16, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 3999, 4000, 4999] {
        let mut decoder = Decoder::new(LIMIT);
        let mut payload = code.to_be_bytes().to_vec();
        payload.extend_from_slice(b"why");
        assert_eq!(
            one(&mut decoder, &client_frame(true, OP_CLOSE, &payload)),
            Ok(Incoming::Close { code: Some(code), reason: "why".into() }),
            "code {code}"
        );
    }
}

#[test]
fn a_close_reason_that_is_not_utf8_is_invalid_utf8() {
    let mut decoder = Decoder::new(LIMIT);
    let error = one(&mut decoder, &client_frame(true, OP_CLOSE, &[3, 232, b'o', 0xFF])).unwrap_err();
    assert_eq!(error, DecodeError::InvalidUtf8);
    assert_eq!(error.close_code().code(), 1007);
    let mut decoder = Decoder::new(LIMIT);
    assert_eq!(one(&mut decoder, &client_frame(true, OP_CLOSE, &[3])).unwrap_err().close_code().code(), 1002);
}

#[test]
fn invalid_utf8_in_a_text_message_fails_the_connection_with_1007() {
    let mut stream = text_frame(&[b'o', b'k', 0xC3, 0x28]);
    stream.extend(text_frame(b"never read"));
    let mut decoder = Decoder::new(LIMIT);
    assert_eq!(decode_all(&mut decoder, &stream), vec![Err(DecodeError::InvalidUtf8)]);
    assert_eq!(DecodeError::InvalidUtf8.close_code().code(), 1007);
    assert!(decoder.has_failed());
    assert_eq!(one(&mut decoder, &text_frame(b"fine")), Err(DecodeError::InvalidUtf8), "errors are sticky");
}

/// "κόσμε" as Autobahn spells it (with U+1F79, three bytes): 11 bytes.
const KOSME: &[u8] = b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5";

/// Autobahn cases 6.4.x: the fragment (or the byte) that makes a message invalid fails it at
/// once, before the message is complete.
#[test]
fn invalid_utf8_fails_at_the_fragment_that_breaks_it() {
    let first = client_frame(false, OP_TEXT, KOSME);
    let second = client_frame(false, OP_CONTINUATION, &[0xF4, 0x90, 0x80, 0x80]);
    let mut decoder = Decoder::new(LIMIT);
    assert_eq!(decode_all(&mut decoder, &first), vec![]);
    assert_eq!(decode_all(&mut decoder, &second), vec![Err(DecodeError::InvalidUtf8)]);

    // Within one frame, read a byte at a time: fails on the byte 0x90 (13th of the payload).
    let mut payload = KOSME.to_vec();
    payload.extend_from_slice(&[0xF4, 0x90, 0x80, 0x80]);
    payload.extend_from_slice(b"edited");
    let frame = text_frame(&payload);
    let header_len = frame.len() - payload.len();
    let mut decoder = Decoder::new(LIMIT);
    let mut buf = BytesMut::new();
    for (index, byte) in frame.iter().enumerate() {
        buf.extend_from_slice(&[*byte]);
        match decoder.decode(&mut buf) {
            Ok(None) => {}
            Err(DecodeError::InvalidUtf8) => {
                assert_eq!(index - header_len, 12, "failed at the first impossible byte");
                return;
            }
            other => panic!("unexpected {other:?} at byte {index}"),
        }
    }
    panic!("the invalid message was never refused");
}

#[test]
fn a_character_cut_by_a_fragment_end_waits_for_the_rest_but_not_past_the_message() {
    let euro = "€".as_bytes();
    let mut decoder = Decoder::new(LIMIT);
    assert_eq!(decode_all(&mut decoder, &client_frame(false, OP_TEXT, &euro[..2])), vec![]);
    assert_eq!(one(&mut decoder, &client_frame(true, OP_CONTINUATION, &euro[2..])), Ok(Incoming::Text("€".into())));

    let mut decoder = Decoder::new(LIMIT);
    let cut = client_frame(true, OP_TEXT, &euro[..2]);
    assert_eq!(decode_all(&mut decoder, &cut), vec![Err(DecodeError::InvalidUtf8)]);
}

#[test]
fn binary_payloads_are_kept_when_asked() {
    let mut stream = client_frame(false, OP_BINARY, &[0, 1, 2]);
    stream.extend(client_frame(true, OP_PING, b""));
    stream.extend(client_frame(true, OP_CONTINUATION, &[0xFF, 0xFE]));
    let expected =
        vec![Ok(Incoming::Ping(Bytes::new())), Ok(Incoming::Binary(Bytes::from_static(&[0, 1, 2, 0xFF, 0xFE])))];
    for piece in [1, 3, stream.len()] {
        let mut decoder = Decoder::new(LIMIT).keeping_binary();
        assert_eq!(decode_in_pieces(&mut decoder, &stream, piece), expected, "pieces of {piece}");
        assert!(decoder.is_idle());
    }
    let frame = WireFrame::binary(&[1, 2, 3]);
    assert_eq!(frame.as_bytes().as_ref(), reference_server_frame(OP_BINARY, &[1, 2, 3]).as_slice());
}

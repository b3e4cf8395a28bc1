//! The WebSocket closing handshake and RFC 6455's failure rules, seen from a raw TCP client that
//! builds its frames by hand: close codes, UTF-8, and that a close never loses the answers queued
//! before it nor reaches a well-behaved client as a reset.

use std::time::Duration;

use serde_json::{json, Value};
use switchboard_testkit::{eventually, TestServer, WAIT};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::watch;

const OP_CONTINUATION: u8 = 0x0;
const OP_TEXT: u8 = 0x1;
const OP_CLOSE: u8 = 0x8;
const MASK: [u8; 4] = [0x5a, 0x13, 0xc7, 0x81];

/// A masked client frame.
fn client_frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut frame = vec![if fin { 0x80 } else { 0 } | opcode];
    match payload.len() {
        len @ 0..=125 => frame.push(0x80 | len as u8),
        len @ 126..=0xFFFF => {
            frame.push(0x80 | 126);
            frame.extend_from_slice(&(len as u16).to_be_bytes());
        }
        len => {
            frame.push(0x80 | 127);
            frame.extend_from_slice(&(len as u64).to_be_bytes());
        }
    }
    frame.extend_from_slice(&MASK);
    frame.extend(payload.iter().enumerate().map(|(index, byte)| byte ^ MASK[index % 4]));
    frame
}

fn json_frame(value: Value) -> Vec<u8> {
    client_frame(true, OP_TEXT, value.to_string().as_bytes())
}

fn close_frame(code: u16) -> Vec<u8> {
    client_frame(true, OP_CLOSE, &code.to_be_bytes())
}

/// What the server sent: a text message, or its close frame.
#[derive(Debug)]
enum ServerMessage {
    Text(Value),
    Close(u16, String),
}

/// How the server's side of the stream ended after its close frame.
#[derive(Debug, PartialEq, Eq)]
enum StreamEnd {
    /// A FIN: everything the server sent was read.
    Eof,
    /// The connection was reset (or failed otherwise).
    Failed(std::io::ErrorKind),
}

/// Reads unmasked server frames.
struct FrameReader {
    read: OwnedReadHalf,
    buf: Vec<u8>,
}

impl FrameReader {
    async fn fill(&mut self, needed: usize) -> std::io::Result<()> {
        while self.buf.len() < needed {
            let mut chunk = [0u8; 4096];
            let read = self.read.read(&mut chunk).await?;
            if read == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            self.buf.extend_from_slice(&chunk[..read]);
        }
        Ok(())
    }

    async fn next(&mut self) -> std::io::Result<ServerMessage> {
        loop {
            self.fill(2).await?;
            let opcode = self.buf[0] & 0x0F;
            let (header, len) = match self.buf[1] & 0x7F {
                126 => {
                    self.fill(4).await?;
                    (4, u16::from_be_bytes([self.buf[2], self.buf[3]]) as usize)
                }
                127 => {
                    self.fill(10).await?;
                    (10, u64::from_be_bytes(self.buf[2..10].try_into().expect("8 bytes")) as usize)
                }
                len => (2, len as usize),
            };
            self.fill(header + len).await?;
            let payload: Vec<u8> = self.buf.drain(..header + len).skip(header).collect();
            match opcode {
                0x1 => return Ok(ServerMessage::Text(serde_json::from_slice(&payload).expect("json text"))),
                0x8 => {
                    let code = u16::from_be_bytes([payload[0], payload[1]]);
                    return Ok(ServerMessage::Close(code, String::from_utf8(payload[2..].to_vec()).expect("reason")));
                }
                // Pings and pongs are not what these tests look at.
                _ => {}
            }
        }
    }

    /// How the stream ends after the server's close frame (nothing may follow that frame).
    async fn end(&mut self) -> StreamEnd {
        let mut chunk = [0u8; 4096];
        let read =
            tokio::time::timeout(WAIT, self.read.read(&mut chunk)).await.expect("the server never ended the stream");
        match read {
            Ok(0) => StreamEnd::Eof,
            Ok(_) => panic!("bytes after the close frame"),
            Err(error) => StreamEnd::Failed(error.kind()),
        }
    }
}

/// Opens a WebSocket by hand and logs in with `login_open`; returns once the sync is over.
async fn connect_logged_in(server: &TestServer, user: &str) -> (FrameReader, OwnedWriteHalf) {
    let stream = TcpStream::connect(server.addr).await.expect("connect");
    let (read, mut write) = stream.into_split();
    let request = format!(
        "GET /ws HTTP/1.1\r\nHost: {}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
        server.addr
    );
    write.write_all(request.as_bytes()).await.expect("upgrade request");
    let mut reader = FrameReader { read, buf: Vec::new() };
    let response_end = loop {
        if let Some(at) = reader.buf.windows(4).position(|window| window == b"\r\n\r\n") {
            break at + 4;
        }
        let len = reader.buf.len();
        reader.fill(len + 1).await.expect("upgrade response");
    };
    let response: Vec<u8> = reader.buf.drain(..response_end).collect();
    assert!(response.starts_with(b"HTTP/1.1 101"), "{}", String::from_utf8_lossy(&response));
    write.write_all(&json_frame(json!({"type": "login_open", "username": user, "presence": false}))).await.unwrap();
    loop {
        match next_message(&mut reader).await {
            ServerMessage::Text(frame) if frame["type"] == "synced" => return (reader, write),
            ServerMessage::Text(frame) => assert_ne!(frame["type"], "error", "{frame}"),
            ServerMessage::Close(code, reason) => panic!("closed while logging in: {code} {reason}"),
        }
    }
}

async fn next_message(reader: &mut FrameReader) -> ServerMessage {
    tokio::time::timeout(WAIT, reader.next()).await.expect("no frame from the server").expect("read a frame")
}

/// Reads up to the server's close frame: the text messages before it, and its code and reason.
async fn messages_until_close(reader: &mut FrameReader) -> (Vec<Value>, u16, String) {
    let mut texts = Vec::new();
    loop {
        match next_message(reader).await {
            ServerMessage::Text(frame) => texts.push(frame),
            ServerMessage::Close(code, reason) => return (texts, code, reason),
        }
    }
}

/// Autobahn 7.9.x and 7.13.x: a close code no endpoint may send fails the connection with 1002.
#[tokio::test]
async fn a_close_frame_with_an_invalid_code_fails_the_connection_with_1002() {
    let server = TestServer::with_open_auth().await;
    for code in [0u16, 999, 1004, 1005, 1006, 1016, 1100, 2000, 2999, 5000, 65535] {
        let (mut reader, mut write) = connect_logged_in(&server, "alice").await;
        write.write_all(&close_frame(code)).await.unwrap();
        let (texts, close, reason) = messages_until_close(&mut reader).await;
        assert!(texts.is_empty(), "{texts:?}");
        assert_eq!(close, 1002, "close code {code} answered with {close} {reason}");
        assert_eq!(reader.end().await, StreamEnd::Eof);
    }
    let (mut reader, mut write) = connect_logged_in(&server, "alice").await;
    write.write_all(&close_frame(4000)).await.unwrap();
    assert_eq!(messages_until_close(&mut reader).await.1, 1000, "a valid application code is answered with 1000");
}

#[tokio::test]
async fn a_text_message_that_is_not_utf8_closes_with_1007_at_its_first_bad_fragment() {
    let server = TestServer::with_open_auth().await;
    let (mut reader, mut write) = connect_logged_in(&server, "alice").await;
    // The first fragment is valid; the second holds a byte no continuation can make valid. The
    // message is never finished: the server must not wait for its end.
    write.write_all(&client_frame(false, OP_TEXT, "κόσμε".as_bytes())).await.unwrap();
    write.write_all(&client_frame(false, OP_CONTINUATION, &[0xF4, 0x90, 0x80, 0x80])).await.unwrap();
    let (texts, code, reason) = messages_until_close(&mut reader).await;
    assert!(texts.is_empty(), "no error frame: {texts:?}");
    assert_eq!((code, reason.as_str()), (1007, "invalid utf-8"));
    write.write_all(&close_frame(1007)).await.unwrap();
    assert_eq!(reader.end().await, StreamEnd::Eof);

    let (mut reader, mut write) = connect_logged_in(&server, "alice").await;
    write.write_all(&client_frame(true, OP_CLOSE, &[0x03, 0xE8, 0xFF])).await.unwrap();
    assert_eq!(messages_until_close(&mut reader).await.1, 1007, "a close reason that is not utf-8");
}

/// Requests read in the same read as the client's close frame, or as a frame that breaks the
/// protocol, are answered before the close frame.
#[tokio::test]
async fn replies_to_requests_read_with_a_close_are_written_before_it() {
    let server = TestServer::with_open_auth().await;
    let unmasked_frame = [0x81, 0x02, b'h', b'i'];
    for (last, expected_code) in [(close_frame(1000), 1000), (unmasked_frame.to_vec(), 1002)] {
        let (mut reader, mut write) = connect_logged_in(&server, "alice").await;
        let mut burst = Vec::new();
        for n in 1..=20 {
            burst.extend(json_frame(json!({"type": "ping", "ref": n})));
        }
        burst.extend(json_frame(json!({"type": "send", "ref": 21, "to": "alice", "text": "last words"})));
        burst.extend(last);
        write.write_all(&burst).await.unwrap();
        let (texts, code, _) = messages_until_close(&mut reader).await;
        assert_eq!(code, expected_code);
        let refs: Vec<u64> = texts.iter().filter_map(|frame| frame["ref"].as_u64()).collect();
        assert_eq!(refs, (1..=21).collect::<Vec<u64>>(), "every request answered before the close: {texts:?}");
        let answer = texts.iter().find(|frame| frame["ref"] == 21).unwrap();
        assert_eq!(answer["type"], "ack", "the send's ack too: {answer}");
        if expected_code != 1000 {
            write.write_all(&close_frame(1000)).await.unwrap();
        }
        assert_eq!(reader.end().await, StreamEnd::Eof);
    }
}

/// A flooding client still writing when the server closes it with 4029: it gets the acks of the
/// messages that were stored, then the close frame, then the end of the stream, and no reset.
#[tokio::test]
async fn a_client_closed_for_flooding_while_writing_gets_its_acks_the_close_frame_and_no_reset() {
    let server = TestServer::builder()
        .chat(|c| {
            c.open_auth = true;
            c.rate_per_sec = 1.0;
            c.rate_burst = 5.0;
            c.flood_strikes = 5;
        })
        .start()
        .await;
    let (mut reader, mut write) = connect_logged_in(&server, "alice").await;
    let mut burst = Vec::new();
    for n in 1..=5 {
        burst.extend(json_frame(json!({"type": "send", "ref": n, "to": "alice", "text": format!("m{n}")})));
    }
    for n in 6..=20 {
        burst.extend(json_frame(json!({"type": "ping", "ref": n})));
    }
    write.write_all(&burst).await.unwrap();

    // The client goes on writing until it reads the close frame, as a busy client would; then it
    // answers with its own close frame and stops.
    let (stop, stopped) = watch::channel(false);
    let writer = tokio::spawn(async move {
        let ping = json_frame(json!({"type": "ping", "pad": "x".repeat(1000)}));
        // Checked between frames, so that a frame is never cut by the stop.
        for _ in 0..5_000 {
            if *stopped.borrow() {
                break;
            }
            if write.write_all(&ping).await.is_err() {
                return Err("the server reset the connection while the client wrote");
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        write.write_all(&close_frame(4029)).await.map_err(|_| "the close frame could not be sent")?;
        Ok(write)
    });

    let (texts, code, reason) = messages_until_close(&mut reader).await;
    stop.send(true).unwrap();
    assert_eq!((code, reason.as_str()), (4029, "flooding"));
    let acks: Vec<u64> = texts.iter().filter(|f| f["type"] == "ack").map(|f| f["ref"].as_u64().unwrap()).collect();
    assert_eq!(acks, [1, 2, 3, 4, 5], "the acks of the stored messages come before the close: {texts:?}");
    let _write = writer.await.unwrap().expect("the client wrote until it had read the close frame");
    // Once the server has let the socket go, a reset would have arrived: the stream still ends
    // with the FIN.
    eventually("the server let the socket go", WAIT, || async { server.metric("switchboard_sockets").await == 0.0 })
        .await;
    assert_eq!(reader.end().await, StreamEnd::Eof, "the stream ends with a FIN, not a reset");
}

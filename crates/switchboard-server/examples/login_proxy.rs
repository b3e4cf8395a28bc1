//! Puts a WebSocket client on a logged-in connection of a real `switchboard serve`, for the
//! Autobahn|Testsuite fuzzing client (`scripts/autobahn.sh`), which can only open a WebSocket and
//! fuzz it: for each client this opens a WebSocket to the server, logs in (`login_open`, a fresh
//! user each time), reads up to `synced`, answers the client's upgrade itself and from then on
//! only copies bytes both ways. Every frame the client sends, and every answer, close frame, FIN or
//! reset, is the server's own.
//!
//! ```sh
//! switchboard serve --open-auth --listen 127.0.0.1:9010 &
//! cargo run -p switchboard-server --example login_proxy -- 127.0.0.1:9011 127.0.0.1:9010
//! ```

use std::sync::atomic::{AtomicU64, Ordering};

use bytes::{Buf, BytesMut};
use switchboard_protocol::ws::accept_key;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The longest upgrade request or response taken.
const MAX_HEAD_BYTES: usize = 16 * 1024;
/// Any mask will do: the server only needs client frames to be masked.
const MASK: [u8; 4] = [0x21, 0x9e, 0x4b, 0x07];

static USERS: AtomicU64 = AtomicU64::new(0);

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let (Some(listen), Some(upstream)) = (args.next(), args.next()) else {
        eprintln!("usage: login_proxy LISTEN_ADDR SERVER_ADDR");
        std::process::exit(2);
    };
    let listener = TcpListener::bind(&listen).await?;
    println!("login_proxy listening on {} for {upstream}", listener.local_addr()?);
    loop {
        let (client, _) = listener.accept().await?;
        let upstream = upstream.clone();
        tokio::spawn(async move {
            if let Err(error) = relay(client, &upstream).await {
                eprintln!("relay ended: {error}");
            }
        });
    }
}

async fn relay(mut client: TcpStream, upstream: &str) -> std::io::Result<()> {
    client.set_nodelay(true)?;
    let mut from_client = BytesMut::new();
    let request = read_head(&mut client, &mut from_client).await?;
    let key = header_value(&request, "sec-websocket-key").ok_or_else(|| invalid("no Sec-WebSocket-Key"))?;

    let mut server = TcpStream::connect(upstream).await?;
    server.set_nodelay(true)?;
    let upgrade = format!(
        "GET /ws HTTP/1.1\r\nHost: {upstream}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    );
    server.write_all(upgrade.as_bytes()).await?;
    let mut from_server = BytesMut::new();
    let response = read_head(&mut server, &mut from_server).await?;
    if !response.starts_with("HTTP/1.1 101") {
        return Err(invalid("the server refused the upgrade"));
    }
    let user = format!("autobahn{}", USERS.fetch_add(1, Ordering::Relaxed));
    let login = format!(r#"{{"type":"login_open","username":"{user}","presence":false}}"#);
    server.write_all(&masked_text(login.as_bytes())).await?;
    loop {
        let text = read_server_text(&mut server, &mut from_server).await?;
        if text.contains(r#""type":"error""#) {
            return Err(invalid("login refused (is --open-auth on?)"));
        }
        if text.contains(r#""type":"synced""#) {
            break;
        }
    }

    let accept = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {}\r\n\r\n",
        accept_key(&key)
    );
    client.write_all(accept.as_bytes()).await?;
    client.write_all(&from_server).await?;
    server.write_all(&from_client).await?;
    tokio::io::copy_bidirectional(&mut client, &mut server).await?;
    Ok(())
}

/// Reads an HTTP head (up to the blank line); bytes after it stay in `buf`.
async fn read_head(stream: &mut TcpStream, buf: &mut BytesMut) -> std::io::Result<String> {
    loop {
        if let Some(at) = buf.windows(4).position(|window| window == b"\r\n\r\n") {
            let head = buf.split_to(at + 4);
            return Ok(String::from_utf8_lossy(&head).into_owned());
        }
        if buf.len() > MAX_HEAD_BYTES || stream.read_buf(buf).await? == 0 {
            return Err(invalid("no complete HTTP head"));
        }
    }
}

fn header_value(head: &str, wanted: &str) -> Option<String> {
    head.lines().find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.trim().eq_ignore_ascii_case(wanted).then(|| value.trim().to_owned())
    })
}

/// A masked, unfragmented client text frame.
fn masked_text(payload: &[u8]) -> Vec<u8> {
    let mut frame = vec![0x81];
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

/// The next text message from the server (its frames are unmasked and unfragmented).
async fn read_server_text(server: &mut TcpStream, buf: &mut BytesMut) -> std::io::Result<String> {
    loop {
        if buf.len() >= 2 {
            let (header, len) = match buf[1] & 0x7F {
                126 if buf.len() >= 4 => (4, usize::from(u16::from_be_bytes([buf[2], buf[3]]))),
                127 if buf.len() >= 10 => (10, u64::from_be_bytes(buf[2..10].try_into().expect("8 bytes")) as usize),
                126 | 127 => (usize::MAX, 0),
                len => (2, usize::from(len)),
            };
            if header != usize::MAX && buf.len() >= header + len {
                let opcode = buf[0] & 0x0F;
                buf.advance(header);
                let payload = buf.split_to(len);
                match opcode {
                    0x1 => return Ok(String::from_utf8_lossy(&payload).into_owned()),
                    0x8 => return Err(invalid("the server closed during the login")),
                    _ => continue,
                }
            }
        }
        if server.read_buf(buf).await? == 0 {
            return Err(invalid("the server ended the stream during the login"));
        }
    }
}

fn invalid(what: &'static str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, what)
}

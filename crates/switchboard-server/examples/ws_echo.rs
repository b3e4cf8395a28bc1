//! A WebSocket echo server on Switchboard's own codec (`switchboard_protocol::ws`), for the
//! Autobahn|Testsuite fuzzing client (`scripts/autobahn.sh`): every text and binary message comes
//! back as it was, pings are answered, and every failure closes with the code the codec gives.
//!
//! ```sh
//! cargo run -p switchboard-server --example ws_echo -- 127.0.0.1:9002
//! ```
//!
//! It closes the way the real server does (see `src/websocket.rs`): its own close frame, then a
//! FIN, then it reads until the client's close frame or the end of the stream.

use std::time::Duration;

use bytes::BytesMut;
use switchboard_protocol::ws::{accept_key, Decoder, Incoming, WireFrame};
use switchboard_protocol::CloseCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Autobahn's largest messages (cases 9.x) are 16 MiB.
const MAX_MESSAGE_BYTES: usize = 64 << 20;
/// How long the server waits for the client's close frame after its own.
const CLOSE_LINGER: Duration = Duration::from_secs(2);
/// The longest upgrade request taken.
const MAX_REQUEST_BYTES: usize = 16 * 1024;

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::io::Result<()> {
    let listen = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:9002".to_owned());
    let listener = TcpListener::bind(&listen).await?;
    println!("ws_echo listening on {}", listener.local_addr()?);
    loop {
        let (stream, _) = listener.accept().await?;
        tokio::spawn(async move {
            if let Err(error) = serve(stream).await {
                eprintln!("connection ended: {error}");
            }
        });
    }
}

async fn serve(mut stream: TcpStream) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    let mut buf = BytesMut::with_capacity(8 * 1024);
    let Some(key) = read_upgrade(&mut stream, &mut buf).await? else {
        stream.write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n").await?;
        return Ok(());
    };
    let response = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {}\r\n\r\n",
        accept_key(&key)
    );
    stream.write_all(response.as_bytes()).await?;

    let mut decoder = Decoder::new(MAX_MESSAGE_BYTES).keeping_binary();
    loop {
        loop {
            let reply = match decoder.decode(&mut buf) {
                Ok(None) => break,
                Ok(Some(Incoming::Text(text))) => WireFrame::text(text.as_bytes()),
                Ok(Some(Incoming::Binary(payload))) => WireFrame::binary(&payload),
                Ok(Some(Incoming::Ping(payload))) => WireFrame::pong(&payload),
                Ok(Some(Incoming::Pong)) => continue,
                Ok(Some(Incoming::TooLarge { .. })) => {
                    return close(stream, &mut decoder, &mut buf, CloseCode::TooBig.code()).await
                }
                Ok(Some(Incoming::Close { code, .. })) => {
                    // The client closed first: echo its code, and the TCP connection ends here.
                    let frame = WireFrame::close(code.unwrap_or(1000), "");
                    stream.write_all(frame.as_bytes()).await?;
                    return stream.shutdown().await;
                }
                Err(error) => return close(stream, &mut decoder, &mut buf, error.close_code().code()).await,
            };
            stream.write_all(reply.as_bytes()).await?;
        }
        if stream.read_buf(&mut buf).await? == 0 {
            return Ok(());
        }
    }
}

/// Reads the upgrade request; returns its Sec-WebSocket-Key, leaving any bytes after it in `buf`.
async fn read_upgrade(stream: &mut TcpStream, buf: &mut BytesMut) -> std::io::Result<Option<String>> {
    let end = loop {
        if let Some(at) = buf.windows(4).position(|window| window == b"\r\n\r\n") {
            break at + 4;
        }
        if buf.len() > MAX_REQUEST_BYTES || stream.read_buf(buf).await? == 0 {
            return Ok(None);
        }
    };
    let request = buf.split_to(end);
    let request = String::from_utf8_lossy(&request);
    Ok(request.lines().find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.trim().eq_ignore_ascii_case("sec-websocket-key").then(|| value.trim().to_owned())
    }))
}

/// The server closes first: its close frame, a FIN, then reading (and dropping) until the
/// client's close frame or the end of its stream.
async fn close(mut stream: TcpStream, decoder: &mut Decoder, buf: &mut BytesMut, code: u16) -> std::io::Result<()> {
    stream.write_all(WireFrame::close(code, "").as_bytes()).await?;
    stream.shutdown().await?;
    let linger = async {
        loop {
            while !decoder.has_failed() {
                match decoder.decode(buf) {
                    Ok(Some(Incoming::Close { .. })) => return,
                    Ok(Some(_)) => {}
                    Ok(None) | Err(_) => break,
                }
            }
            buf.clear();
            if !matches!(stream.read_buf(buf).await, Ok(read) if read > 0) {
                return;
            }
        }
    };
    let _ = tokio::time::timeout(CLOSE_LINGER, linger).await;
    Ok(())
}

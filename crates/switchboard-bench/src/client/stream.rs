//! A client connection as the scenarios see it: a WebSocket of native frames whatever the
//! [`Protocol`] on the wire, and reading and closing it.

use std::pin::Pin;
use std::task::{ready, Context as TaskContext, Poll};
use std::time::Duration;

use futures_util::{Sink, Stream, StreamExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::socketio;

/// A client connection's socket: TCP, or TLS over TCP for a `wss://` target.
pub(super) type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// How the load generator talks to a server.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Protocol {
    /// Switchboard's JSON frames, one per WebSocket text message (`ws://host:port/ws`).
    #[default]
    Native,
    /// The same JSON frames carried as one Socket.IO 4 event, `42["frame",{...}]`, over Engine.IO
    /// v4 on a WebSocket (`ws://host:port/socket.io/?EIO=4&transport=websocket`): for the
    /// Socket.IO peer server in `bench/peers`.
    #[value(name = "socketio")]
    SocketIo,
    /// Switchboard's own Socket.IO endpoint (docs/socketio.md): Engine.IO v4 on a WebSocket at
    /// `/socket.io/`, the login in the CONNECT packet's auth, each request an event named by its
    /// type with an acknowledgement carrying the answer, every other frame an event.
    #[value(name = "switchboard-socketio")]
    SwitchboardSocketIo,
}

impl Protocol {
    /// Whether connections speak Engine.IO and Socket.IO (on `/socket.io/`).
    pub fn is_socketio(self) -> bool {
        self != Protocol::Native
    }
}

/// A client connection (`ws://`, or `wss://` over TLS): a WebSocket that yields and takes the native
/// protocol's JSON frames as text messages whatever the [`Protocol`]. With [`Protocol::SocketIo`]
/// it unwraps incoming `42["frame",{...}]` packets, wraps outgoing text messages, and answers
/// Engine.IO pings (`2`) with pongs (`3`) while it is read; with [`Protocol::Native`] it passes
/// everything straight through.
pub struct WsStream {
    pub(super) inner: Socket,
    protocol: Protocol,
    /// Engine.IO pongs not yet written.
    pongs_due: u32,
    /// Pongs written but not yet flushed.
    flush_due: bool,
    /// The last acknowledgement id asked for ([`Protocol::SwitchboardSocketIo`]).
    last_ack: u64,
}

impl WsStream {
    pub(super) fn new(inner: Socket, protocol: Protocol) -> Self {
        WsStream { inner, protocol, pongs_due: 0, flush_due: false, last_ack: 0 }
    }

    /// Sends a close frame (the WebSocket's own, whatever the protocol) and flushes it.
    pub async fn close(&mut self, msg: Option<CloseFrame<'_>>) -> Result<(), tungstenite::Error> {
        self.inner.close(msg).await
    }

    /// The TCP socket under the WebSocket (and TLS).
    pub fn get_ref(&self) -> &TcpStream {
        match self.inner.get_ref() {
            MaybeTlsStream::Rustls(tls) => tls.get_ref().0,
            MaybeTlsStream::Plain(tcp) => tcp,
            _ => unreachable!("only plain and rustls connections are opened"),
        }
    }

    pub fn protocol(&self) -> Protocol {
        self.protocol
    }

    /// Writes and flushes the pongs due, as far as the socket takes them now.
    fn poll_pongs(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<(), tungstenite::Error>> {
        while self.pongs_due > 0 {
            ready!(Pin::new(&mut self.inner).poll_ready(cx))?;
            Pin::new(&mut self.inner).start_send(Message::text(socketio::PONG))?;
            self.pongs_due -= 1;
            self.flush_due = true;
        }
        if self.flush_due {
            ready!(Pin::new(&mut self.inner).poll_flush(cx))?;
            self.flush_due = false;
        }
        Poll::Ready(Ok(()))
    }
}

impl Stream for WsStream {
    type Item = Result<Message, tungstenite::Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.protocol == Protocol::Native {
            return Pin::new(&mut this.inner).poll_next(cx);
        }
        loop {
            if let Poll::Ready(Err(error)) = this.poll_pongs(cx) {
                return Poll::Ready(Some(Err(error)));
            }
            let text = match ready!(Pin::new(&mut this.inner).poll_next(cx)) {
                Some(Ok(Message::Text(text))) => text,
                other => return Poll::Ready(other),
            };
            let packet = match this.protocol {
                Protocol::SwitchboardSocketIo => socketio::decode_switchboard(text),
                _ => socketio::decode(text),
            };
            match packet {
                socketio::Packet::Frame(frame) => return Poll::Ready(Some(Ok(Message::Text(frame)))),
                socketio::Packet::Ping => this.pongs_due += 1,
                socketio::Packet::Closed => return Poll::Ready(Some(Ok(Message::Close(None)))),
                socketio::Packet::Other => {}
            }
        }
    }
}

impl Sink<Message> for WsStream {
    type Error = tungstenite::Error;

    fn poll_ready(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Result<(), Self::Error>> {
        Pin::new(&mut self.get_mut().inner).poll_ready(cx)
    }

    fn start_send(self: Pin<&mut Self>, item: Message) -> Result<(), Self::Error> {
        let this = self.get_mut();
        let item = match (this.protocol, item) {
            (Protocol::SocketIo, Message::Text(text)) => Message::Text(socketio::encode(&text)),
            (Protocol::SwitchboardSocketIo, Message::Text(text)) => {
                this.last_ack += 1;
                Message::Text(socketio::encode_switchboard(&text, this.last_ack))
            }
            (_, item) => item,
        };
        Pin::new(&mut this.inner).start_send(item)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Result<(), Self::Error>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Result<(), Self::Error>> {
        Pin::new(&mut self.get_mut().inner).poll_close(cx)
    }
}

/// A frame read from a connection: its text, `None` for a frame that is not text (ping, pong),
/// or why the connection is gone (in words, for counting).
pub fn text_frame(frame: Option<Result<Message, tungstenite::Error>>) -> Result<Option<String>, String> {
    match frame {
        Some(Ok(Message::Text(text))) => Ok(Some(text)),
        Some(Ok(Message::Close(close))) => Err(match close {
            Some(close) => format!("closed by the server ({})", u16::from(close.code)),
            None => "closed by the server".to_string(),
        }),
        Some(Ok(_)) => Ok(None),
        Some(Err(error)) => Err(format!("read error: {error}")),
        None => Err("connection closed".to_string()),
    }
}

/// Sends a close frame and waits briefly for the server's; then drops the connection.
pub async fn close(mut ws: WsStream) {
    let _ = tokio::time::timeout(Duration::from_secs(3), async {
        if ws.close(None).await.is_ok() {
            while let Some(Ok(_)) = ws.next().await {}
        }
    })
    .await;
}

/// Closes many connections at once, giving up after `within`.
pub async fn close_all(connections: Vec<WsStream>, within: Duration) {
    let closing = futures_util::future::join_all(connections.into_iter().map(close));
    let _ = tokio::time::timeout(within, closing).await;
}

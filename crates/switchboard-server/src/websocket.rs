//! One task per WebSocket connection.
//!
//! The task `select!`s over the socket becoming readable, the connection's outbound queue, a ping
//! timer and shutdown. It reads into a stack buffer and keeps a heap buffer only
//! while a frame is incomplete, so an idle connection holds no read or write buffer at all.
//! Queued frames are written together with one vectored write.
//!
//! Closing follows RFC 6455's closing handshake, so that no reset reaches a client that behaves:
//! the frames queued before the close (and the answers to sends still in the message pipeline,
//! for up to [`ANSWER_WAIT`]) are written, then the close frame, then the write half is shut
//! (FIN); the server then reads and discards what the client still sends until its close frame
//! or the end of its stream, for up to [`CLOSE_LINGER`](closing::CLOSE_LINGER), and only then lets the socket go. A
//! socket closed while the client's bytes sit unread in it would answer with a reset, which makes
//! the client lose what it had not read yet, the close frame included.

use std::io::{self, IoSlice};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use switchboard_core::outbound::{DirectWrite, QueueStatus};
use switchboard_core::{ChatNode, Flow, Session};
use switchboard_protocol::ws::{DecodeError, Decoder, Incoming, WireFrame};
use switchboard_protocol::{CloseCode, ErrorCode};
use tokio::io::{AsyncRead, ReadBuf};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::server::ServerContext;
use closing::Linger;

mod closing;
use crate::tls::session::{ReadOutcome, TlsSession};

/// The error a write reports when it gave up because the connection's queue overflowed.
const QUEUE_OVERFLOWED: &str = "outbound queue overflowed";

/// Frames written with one vectored write at most.
const WRITE_BATCH: usize = 64;
/// Bytes read per read call (on the stack, not kept).
const READ_CHUNK: usize = 16 * 1024;

/// How long a closing connection waits for the answers (acks) to its sends still in the message
/// pipeline, and for what is queued to be written, before its close frame.
const ANSWER_WAIT: Duration = Duration::from_secs(1);

/// Why a connection ends.
enum End {
    /// The server closes: what is queued, then a close frame with this code, then it waits for
    /// the client's close frame.
    Close(CloseCode),
    /// The client sent its close frame: what is queued, then the answering close frame, and the
    /// socket is let go.
    Answer(CloseCode),
    /// The client went away or the socket failed: just drop it.
    Gone,
}

struct Socket {
    reader: OwnedReadHalf,
    /// Shared with the connection, which writes into it directly when nothing is queued.
    writer: Arc<SocketWriter>,
    peer: SocketAddr,
    decoder: Decoder,
    /// Bytes of an incomplete frame; empty (no allocation) between frames.
    pending: BytesMut,
    /// When the client last sent anything.
    last_heard: Instant,
    /// Whether a ping is out since `last_heard`.
    ping_sent: bool,
}

/// Serves one upgraded connection; `tls` is its session when the client came over TLS.
pub(crate) async fn serve(
    stream: TcpStream,
    tls: Option<Box<rustls::ServerConnection>>,
    leftover: Bytes,
    peer: SocketAddr,
    context: Arc<ServerContext>,
) {
    let _drain_guard = context.drain.clone();
    context.open_sockets.fetch_add(1, Ordering::Relaxed);
    // `leftover` is a slice of hyper's read buffer and would keep all of it alive for the life of
    // the connection: copy what it holds (usually nothing) and let it go now.
    let mut pending = BytesMut::from(&leftover[..]);
    drop(leftover);
    let tls = tls.map(TlsSession::new);
    if let Some(session) = &tls {
        if session.take_buffered(&mut pending).is_err() {
            context.open_sockets.fetch_sub(1, Ordering::Relaxed);
            return;
        }
    }
    let (reader, writer) = stream.into_split();
    let writer = Arc::new(SocketWriter { half: writer, tls, node: context.node.clone() });
    let mut socket = Socket {
        reader,
        writer,
        peer,
        decoder: Decoder::new(context.config.max_frame_bytes),
        pending,
        last_heard: Instant::now(),
        ping_sent: false,
    };
    // Its own statement: a temporary in the `match` below would live (and hold the hello frame)
    // for the whole connection.
    let hello_written = socket.write_all(&[context.node.hello_frame(context.config.max_frame_bytes)], &context).await;
    let end = match hello_written {
        Ok(()) => match Box::pin(login_phase(&mut socket, &context)).await {
            Ok(session) => session_phase(&mut socket, session, &context).await,
            Err(end) => end,
        },
        Err(_) => End::Gone,
    };
    match end {
        End::Close(code) => socket.close(code, Linger::UntilClientCloses, &context).await,
        End::Answer(code) => socket.close(code, Linger::No, &context).await,
        End::Gone => {}
    }
    context.open_sockets.fetch_sub(1, Ordering::Relaxed);
}

/// Waits for a login frame; answers anything else with an error frame.
async fn login_phase(socket: &mut Socket, context: &ServerContext) -> Result<Session, End> {
    let deadline = Instant::now() + context.config.auth_timeout;
    let mut failures = 0;
    let mut shutdown = context.shutdown.clone();
    loop {
        while let Some(incoming) = socket.next_incoming()? {
            context.node.metrics().frames_in.fetch_add(1, Ordering::Relaxed);
            let answer = match incoming {
                // Boxed: the login's future is large and needed once; the connection's task must not
                // carry its size for its whole life.
                Incoming::Text(text) => match Box::pin(context.node.login(&text, socket.peer.ip())).await {
                    Ok(session) => return Ok(session),
                    Err(error_frame) => error_frame,
                },
                Incoming::Ping(payload) => {
                    socket.write_all(&[WireFrame::pong(&payload)], context).await.map_err(|_| End::Gone)?;
                    continue;
                }
                Incoming::Pong => continue,
                Incoming::Close { .. } => return Err(End::Answer(CloseCode::Normal)),
                other => transport_error_frame(&other, context),
            };
            socket.write_all(&[answer], context).await.map_err(|_| End::Gone)?;
            failures += 1;
            if failures >= context.config.max_login_attempts {
                return Err(End::Close(CloseCode::Flood));
            }
        }
        let wake = tokio::select! {
            readable = socket.reader.readable() => Wake::Readable(readable.is_ok()),
            _ = tokio::time::sleep_until(deadline) => Wake::Timer,
            _ = shutdown.wait_for(|stopping| *stopping) => Wake::Shutdown,
        };
        match wake {
            Wake::Readable(true) => socket.read_available()?,
            Wake::Readable(false) => return Err(End::Gone),
            Wake::Timer => return Err(End::Close(CloseCode::AuthTimeout)),
            Wake::Shutdown | Wake::Queued => return Err(End::Close(CloseCode::ServiceRestart)),
        }
    }
}

async fn session_phase(socket: &mut Socket, mut session: Session, context: &ServerContext) -> End {
    let end = run_session(socket, &mut session, context).await;
    let end = match end {
        // Nothing more reaches these clients: one stopped reading, one stopped answering.
        End::Gone | End::Close(CloseCode::SlowConsumer | CloseCode::PingTimeout) => end,
        End::Close(_) | End::Answer(_) => match socket.deliver_answers(session.connection(), context).await {
            Ok(()) => end,
            Err(cut) => cut,
        },
    };
    session.end();
    end
}

async fn run_session(socket: &mut Socket, session: &mut Session, context: &ServerContext) -> End {
    let connection = session.connection().clone();
    // Over TLS every write goes through the session's lock and buffer: the task writes them all.
    if socket.writer.tls.is_none() {
        connection.set_direct_writer(socket.writer.clone());
    }
    let metrics = context.node.metrics();
    let ping_interval = context.config.ping_interval;
    let mut shutdown = context.shutdown.clone();
    let mut batch: Vec<WireFrame> = Vec::new();
    loop {
        // Frames that arrived with the login, or in the last read.
        loop {
            let incoming = match socket.next_incoming() {
                Ok(Some(incoming)) => incoming,
                Ok(None) => break,
                Err(end) => return end,
            };
            metrics.frames_in.fetch_add(1, Ordering::Relaxed);
            match incoming {
                Incoming::Text(text) => {
                    // Boxed for the same reason: an idle connection's task stays small.
                    if let Flow::Close(code) = Box::pin(session.handle_text(&text)).await {
                        return End::Close(code);
                    }
                }
                Incoming::Ping(payload) => {
                    connection.push(WireFrame::pong(&payload));
                }
                Incoming::Pong => {}
                Incoming::Close { .. } => return End::Answer(CloseCode::Normal),
                other => {
                    let (code, message) = transport_error(&other, context);
                    if let Flow::Close(code) = session.reject_frame(code, &message) {
                        return End::Close(code);
                    }
                }
            }
        }
        match socket.flush_queue(&connection, &mut batch, context).await {
            Ok(QueueStatus::Open) => {}
            Ok(QueueStatus::Overflowed) => {
                metrics.queue_overflows.fetch_add(1, Ordering::Relaxed);
                tracing::info!(user = %connection.user, conn = connection.id, "slow consumer cut off");
                return End::Close(CloseCode::SlowConsumer);
            }
            Ok(QueueStatus::Closed(code)) => return End::Close(code),
            Err(end) => return end,
        }
        let wake_at = socket.last_heard + if socket.ping_sent { ping_interval * 2 } else { ping_interval };
        let event = tokio::select! {
            biased;
            _ = shutdown.wait_for(|stopping| *stopping) => Wake::Shutdown,
            _ = connection.ready() => Wake::Queued,
            readable = socket.reader.readable() => Wake::Readable(readable.is_ok()),
            _ = tokio::time::sleep_until(wake_at) => Wake::Timer,
        };
        match event {
            Wake::Shutdown => return End::Close(CloseCode::ServiceRestart),
            Wake::Queued => {}
            Wake::Readable(false) => return End::Gone,
            Wake::Readable(true) => {
                if let Err(end) = socket.read_available() {
                    return end;
                }
            }
            Wake::Timer => {
                if socket.ping_sent {
                    tracing::debug!(user = %connection.user, conn = connection.id, "ping timeout");
                    return End::Close(CloseCode::PingTimeout);
                }
                socket.ping_sent = true;
                connection.push(WireFrame::ping(b"sb"));
            }
        }
    }
}

/// The write half of a connection's socket, which the node may write into from any thread (see
/// [`DirectWrite`]); it counts what it writes like the connection's task does.
struct SocketWriter {
    half: OwnedWriteHalf,
    /// The TLS session, for a client that came over TLS.
    tls: Option<TlsSession>,
    node: ChatNode,
}

impl SocketWriter {
    /// Writes what the socket (or, over TLS, the session's bounded buffer) takes now.
    fn try_write_vectored(&self, slices: &[IoSlice<'_>]) -> io::Result<usize> {
        match &self.tls {
            None => self.half.try_write_vectored(slices),
            Some(session) => session.try_write_vectored(&self.half, slices),
        }
    }
}

impl DirectWrite for SocketWriter {
    fn try_write(&self, bytes: &[u8]) -> io::Result<usize> {
        let written = self.half.try_write(bytes)?;
        if written == bytes.len() {
            let metrics = self.node.metrics();
            metrics.frames_out.fetch_add(1, Ordering::Relaxed);
            metrics.bytes_out.fetch_add(written as u64, Ordering::Relaxed);
        }
        Ok(written)
    }
}

/// What woke a connection's task.
enum Wake {
    Shutdown,
    Queued,
    Readable(bool),
    Timer,
}

/// The error for a WebSocket message the protocol does not take.
fn transport_error(incoming: &Incoming, context: &ServerContext) -> (ErrorCode, String) {
    match incoming {
        Incoming::Binary(_) => {
            (ErrorCode::BinaryUnsupported, "binary frames are not supported, send json text".to_owned())
        }
        Incoming::TooLarge { len } => (
            ErrorCode::FrameTooLarge,
            format!("frame of {len} bytes is over the {} byte limit", context.config.max_frame_bytes),
        ),
        _ => (ErrorCode::BadFrame, "unexpected frame".to_owned()),
    }
}

/// The error frame for such a message before login.
fn transport_error_frame(incoming: &Incoming, context: &ServerContext) -> WireFrame {
    let (code, message) = transport_error(incoming, context);
    context.node.metrics().errors_sent.fetch_add(1, Ordering::Relaxed);
    switchboard_protocol::event::ServerFrame::Error { reference: None, code, message: &message, retry_after_ms: None }
        .encode()
}

impl Socket {
    /// The next complete message from what has been read so far.
    fn next_incoming(&mut self) -> Result<Option<Incoming>, End> {
        if self.pending.is_empty() {
            return Ok(None);
        }
        let result = self.decoder.decode(&mut self.pending);
        if self.pending.is_empty() && self.pending.capacity() > 0 {
            // Nothing half-read: give the buffer back so an idle connection holds none.
            self.pending = BytesMut::new();
        }
        result.map_err(|error: DecodeError| {
            tracing::debug!(peer = %self.peer, %error, "websocket connection failed");
            End::Close(error.close_code())
        })
    }

    /// Reads whatever the socket has, without waiting. Through `poll_read`, which marks the socket
    /// drained after a short read: the next wait goes to epoll instead of a read that would only
    /// say `WouldBlock`.
    fn read_available(&mut self) -> Result<(), End> {
        if let Some(session) = &self.writer.tls {
            return match session.read_available(&self.reader, &mut self.pending) {
                Ok(ReadOutcome::Drained { heard }) => {
                    if heard {
                        self.last_heard = Instant::now();
                        self.ping_sent = false;
                    }
                    Ok(())
                }
                Ok(ReadOutcome::Closed) | Err(_) => Err(End::Gone),
            };
        }
        // Not zeroed: zeroing 16 KiB per read was 14% of a login's instructions (callgrind).
        let mut chunk = [std::mem::MaybeUninit::<u8>::uninit(); READ_CHUNK];
        let mut context = std::task::Context::from_waker(std::task::Waker::noop());
        loop {
            let mut buffer = ReadBuf::uninit(&mut chunk);
            match Pin::new(&mut self.reader).poll_read(&mut context, &mut buffer) {
                Poll::Pending => return Ok(()),
                Poll::Ready(Ok(())) if buffer.filled().is_empty() => return Err(End::Gone),
                Poll::Ready(Ok(())) => {
                    let read = buffer.filled().len();
                    self.pending.extend_from_slice(buffer.filled());
                    self.last_heard = Instant::now();
                    self.ping_sent = false;
                    if read < READ_CHUNK {
                        return Ok(());
                    }
                }
                Poll::Ready(Err(error)) if error.kind() == io::ErrorKind::Interrupted => continue,
                Poll::Ready(Err(_)) => return Err(End::Gone),
            }
        }
    }

    /// Writes out everything queued for the connection.
    async fn flush_queue(
        &mut self,
        connection: &switchboard_core::Connection,
        batch: &mut Vec<WireFrame>,
        context: &ServerContext,
    ) -> Result<QueueStatus, End> {
        loop {
            let status = connection.drain_into(batch, WRITE_BATCH);
            if batch.is_empty() || status != QueueStatus::Open {
                batch.clear();
                if batch.capacity() > 0 {
                    *batch = Vec::new();
                }
                return Ok(status);
            }
            let written = self.write_all_watching(batch, Some(connection), context).await;
            batch.clear();
            match written {
                Ok(()) => {}
                Err(error) if error.to_string() == QUEUE_OVERFLOWED => return Ok(QueueStatus::Overflowed),
                Err(_) => return Err(End::Gone),
            }
        }
    }

    /// Writes frames with as few syscalls as the kernel allows; waits (bounded by the write
    /// timeout) when the socket is full.
    async fn write_all(&mut self, frames: &[WireFrame], context: &ServerContext) -> io::Result<()> {
        self.write_all_watching(frames, None, context).await
    }

    /// Like `write_all`, but while the socket is full it also watches the connection's queue, so a
    /// reader that stopped reading is cut off as soon as its queue overflows, not after the write
    /// timeout.
    async fn write_all_watching(
        &mut self,
        frames: &[WireFrame],
        watched: Option<&switchboard_core::Connection>,
        context: &ServerContext,
    ) -> io::Result<()> {
        let metrics = context.node.metrics();
        let total: usize = frames.iter().map(WireFrame::len).sum();
        let mut index = 0;
        let mut offset = 0;
        while index < frames.len() {
            let written = {
                let mut slices: [IoSlice<'_>; WRITE_BATCH] = [IoSlice::new(&[]); WRITE_BATCH];
                let mut count = 0;
                for (position, frame) in frames[index..].iter().take(WRITE_BATCH).enumerate() {
                    let bytes = frame.as_bytes();
                    slices[count] = IoSlice::new(if position == 0 { &bytes[offset..] } else { &bytes[..] });
                    count += 1;
                }
                self.writer.try_write_vectored(&slices[..count])
            };
            match written {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(mut written) => {
                    while written > 0 && index < frames.len() {
                        let left = frames[index].len() - offset;
                        if written >= left {
                            written -= left;
                            index += 1;
                            offset = 0;
                        } else {
                            offset += written;
                            written = 0;
                        }
                    }
                }
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                    self.wait_writable(watched, context.config.write_timeout).await?;
                }
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => return Err(error),
            }
        }
        if let Some(session) = &self.writer.tls {
            // The frames are in the session; their records go out before this write counts as done.
            loop {
                match session.flush(&self.writer.half) {
                    Ok(()) => break,
                    Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                        self.wait_writable(watched, context.config.write_timeout).await?;
                    }
                    Err(error) => return Err(error),
                }
            }
        }
        metrics.frames_out.fetch_add(frames.len() as u64, Ordering::Relaxed);
        metrics.bytes_out.fetch_add(total as u64, Ordering::Relaxed);
        Ok(())
    }

    /// Waits until the socket takes bytes again; fails on the write timeout, or with
    /// `QUEUE_OVERFLOWED` when the watched connection's queue overflows meanwhile.
    async fn wait_writable(&self, watched: Option<&switchboard_core::Connection>, timeout: Duration) -> io::Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            let overflow_check = async {
                match watched {
                    Some(connection) => connection.ready().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                ready = self.writer.half.writable() => return ready,
                _ = tokio::time::sleep_until(deadline) => return Err(io::ErrorKind::TimedOut.into()),
                _ = overflow_check => {
                    if watched.is_some_and(|connection| connection.is_overflowed()) {
                        return Err(io::Error::other(QUEUE_OVERFLOWED));
                    }
                }
            }
        }
    }

    /// Before a close frame: waits (up to [`ANSWER_WAIT`]) until every send of the connection
    /// taken into the message pipeline is answered, writing out what is queued meanwhile. A write
    /// still going at the deadline is cut short, and a frame cut in the middle can be followed by
    /// nothing: the connection is then dropped.
    async fn deliver_answers(
        &mut self,
        connection: &switchboard_core::Connection,
        context: &ServerContext,
    ) -> Result<(), End> {
        let deadline = Instant::now() + ANSWER_WAIT;
        connection.await_answers();
        let mut batch = Vec::new();
        loop {
            // Read before the flush: an answer is queued before it stops counting as in flight.
            let answered = connection.sends_in_flight() == 0;
            let flushed = tokio::time::timeout_at(deadline, self.flush_queue(connection, &mut batch, context)).await;
            match flushed {
                Err(_) => return Err(End::Gone),
                Ok(Err(end)) => return Err(end),
                Ok(Ok(QueueStatus::Overflowed)) => return Err(End::Close(CloseCode::SlowConsumer)),
                Ok(Ok(QueueStatus::Open | QueueStatus::Closed(_))) => {}
            }
            if answered {
                return Ok(());
            }
            if tokio::time::timeout_at(deadline, connection.ready()).await.is_err() {
                tracing::debug!(conn = connection.id, "closing without every send answered");
                return Ok(());
            }
        }
    }
}

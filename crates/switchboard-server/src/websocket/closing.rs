//! The closing handshake of a connection (the parent module's doc says why it goes this way).

use std::io;
use std::time::Duration;

use bytes::BytesMut;
use switchboard_protocol::ws::{Incoming, WireFrame};
use switchboard_protocol::CloseCode;

use super::{Socket, READ_CHUNK};
use crate::server::ServerContext;
use crate::tls::session::ReadOutcome;

/// How long writing the close frame may take.
const CLOSE_WRITE_TIMEOUT: Duration = Duration::from_secs(1);
/// How long, after its close frame, the server waits for the client's close frame (or the end of
/// its stream), reading and discarding whatever comes before it.
pub(super) const CLOSE_LINGER: Duration = Duration::from_secs(2);

/// Whether a closing connection waits for the client's close frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Linger {
    /// The server closes first: the client's close frame is still to come.
    UntilClientCloses,
    /// The client's close frame is here already.
    No,
}

impl Socket {
    /// Sends a close frame and ends the connection: at once when it answers the client's close
    /// frame, else after the client's close frame (see the module's doc).
    pub(super) async fn close(&mut self, code: CloseCode, linger: Linger, context: &ServerContext) {
        let frame = WireFrame::close(code.code(), code.reason());
        match tokio::time::timeout(CLOSE_WRITE_TIMEOUT, self.write_all(&[frame], context)).await {
            Ok(Ok(())) => {}
            // Part of a close frame, or none: nothing the client could wait for.
            _ => return,
        }
        if let Some(session) = &self.writer.tls {
            session.close_notify();
            let _ = session.flush(&self.writer.half);
        }
        let _ = socket2::SockRef::from(self.writer.half.as_ref()).shutdown(std::net::Shutdown::Write);
        if linger == Linger::UntilClientCloses {
            let _ = tokio::time::timeout(CLOSE_LINGER, self.await_client_close()).await;
        }
    }

    /// Reads and discards until the client's close frame or the end of its stream. Messages
    /// before the close frame are decoded only to find it; once the stream cannot be decoded
    /// (the connection is being failed for that) only the end of the stream will do.
    async fn await_client_close(&mut self) {
        let mut chunk = vec![0u8; READ_CHUNK];
        loop {
            if self.client_close_in_pending() {
                return;
            }
            if self.reader.readable().await.is_err() {
                return;
            }
            if let Some(session) = &self.writer.tls {
                match session.read_available(&self.reader, &mut self.pending) {
                    Ok(ReadOutcome::Drained { .. }) if !self.decoder.has_failed() => continue,
                    Ok(ReadOutcome::Drained { .. }) => {
                        self.pending = BytesMut::new();
                        continue;
                    }
                    Ok(ReadOutcome::Closed) | Err(_) => return,
                }
            }
            match self.reader.try_read(&mut chunk) {
                Ok(0) => return,
                Ok(read) => {
                    if !self.decoder.has_failed() {
                        self.pending.extend_from_slice(&chunk[..read]);
                    }
                }
                Err(error) if matches!(error.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted) => {}
                Err(_) => return,
            }
        }
    }

    /// Whether what was read holds the client's close frame; everything before it is dropped.
    fn client_close_in_pending(&mut self) -> bool {
        while !self.decoder.has_failed() {
            match self.decoder.decode(&mut self.pending) {
                Ok(Some(Incoming::Close { .. })) => return true,
                Ok(Some(_)) => {}
                Ok(None) => return false,
                Err(_) => break,
            }
        }
        self.pending = BytesMut::new();
        false
    }
}

//! A WebSocket connection's TLS session, driven by the connection task's own loop.
//!
//! The task waits for the TCP socket's readiness and reads and writes without blocking (see
//! `websocket`); a TLS stream would hide that readiness. So the task keeps the socket halves and
//! puts the rustls session between them and its buffers: bytes read are fed to the session and
//! the plaintext taken out at once; frames are encrypted into the session, whose unsent records
//! are bounded by [`TLS_BUFFER_LIMIT`](super::TLS_BUFFER_LIMIT), and written out as the socket
//! takes them.

use std::io::{self, IoSlice, Read, Write};

use bytes::BytesMut;
use parking_lot::Mutex;
use rustls::ServerConnection;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

/// Bytes read from the socket per call.
const READ_CHUNK: usize = 16 * 1024;

/// The rustls session of one connection. The lock is never held across an await. Boxed: a
/// session is about 1.2 KiB, which every plain connection would otherwise reserve too (the
/// socket and the connection task hold an `Option` of it).
pub(crate) struct TlsSession {
    connection: Mutex<Box<ServerConnection>>,
}

/// What a read found.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum ReadOutcome {
    /// Nothing more to read now; whether any bytes came.
    Drained { heard: bool },
    /// The peer closed (TCP end of stream or TLS close_notify).
    Closed,
}

impl TlsSession {
    pub(crate) fn new(mut connection: Box<ServerConnection>) -> TlsSession {
        connection.set_buffer_limit(Some(super::TLS_BUFFER_LIMIT));
        TlsSession { connection: Mutex::new(connection) }
    }

    /// Moves plaintext the session already holds (read during the HTTP upgrade) into `pending`.
    pub(crate) fn take_buffered(&self, pending: &mut BytesMut) -> io::Result<bool> {
        let mut connection = self.connection.lock();
        take_plaintext(&mut connection, pending)
    }

    /// Reads what the socket has without waiting, decrypts it, and appends the plaintext to
    /// `pending`. A TLS error is an `InvalidData` error; the connection is then failed.
    pub(crate) fn read_available(&self, reader: &OwnedReadHalf, pending: &mut BytesMut) -> io::Result<ReadOutcome> {
        let mut chunk = [0u8; READ_CHUNK];
        let mut heard = false;
        loop {
            let read = match reader.try_read(&mut chunk) {
                Ok(0) => return Ok(ReadOutcome::Closed),
                Ok(read) => read,
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => return Ok(ReadOutcome::Drained { heard }),
                Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                Err(error) => return Err(error),
            };
            heard = true;
            let mut connection = self.connection.lock();
            let mut records = &chunk[..read];
            while !records.is_empty() {
                connection.read_tls(&mut records)?;
                connection.process_new_packets().map_err(|error| io::Error::new(io::ErrorKind::InvalidData, error))?;
                if take_plaintext(&mut connection, pending)? {
                    return Ok(ReadOutcome::Closed);
                }
            }
        }
    }

    /// Encrypts as much of `slices` as the session's buffer takes after sending what it held;
    /// `WouldBlock` when the socket takes nothing and the buffer is full.
    pub(crate) fn try_write_vectored(&self, writer: &OwnedWriteHalf, slices: &[IoSlice<'_>]) -> io::Result<usize> {
        let mut connection = self.connection.lock();
        send_records(&mut connection, writer)?;
        let accepted = connection.writer().write_vectored(slices)?;
        match send_records(&mut connection, writer) {
            Ok(()) => {}
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => {}
            Err(error) => return Err(error),
        }
        if accepted == 0 {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        Ok(accepted)
    }

    /// Sends the records the session holds; `WouldBlock` when some are left.
    pub(crate) fn flush(&self, writer: &OwnedWriteHalf) -> io::Result<()> {
        send_records(&mut self.connection.lock(), writer)
    }

    /// Queues the TLS close_notify alert; `flush` sends it.
    pub(crate) fn close_notify(&self) {
        self.connection.lock().send_close_notify();
    }
}

/// Moves the decrypted bytes into `pending`; true when the peer sent close_notify.
fn take_plaintext(connection: &mut ServerConnection, pending: &mut BytesMut) -> io::Result<bool> {
    let mut chunk = [0u8; 4096];
    loop {
        match connection.reader().read(&mut chunk) {
            Ok(0) => return Ok(true),
            Ok(read) => pending.extend_from_slice(&chunk[..read]),
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => return Ok(false),
            Err(error) => return Err(error),
        }
    }
}

fn send_records(connection: &mut ServerConnection, writer: &OwnedWriteHalf) -> io::Result<()> {
    let mut socket = NonBlocking(writer);
    while connection.wants_write() {
        match connection.write_tls(&mut socket) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(_) => {}
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => return Err(error),
        }
    }
    Ok(())
}

/// The write half as `io::Write` for rustls: writes what the socket takes now, else `WouldBlock`.
struct NonBlocking<'a>(&'a OwnedWriteHalf);

impl Write for NonBlocking<'_> {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.0.try_write(bytes)
    }

    fn write_vectored(&mut self, slices: &[IoSlice<'_>]) -> io::Result<usize> {
        self.0.try_write_vectored(slices)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

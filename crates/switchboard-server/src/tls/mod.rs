//! TLS for the client port and the HTTP endpoints, with rustls.
//!
//! - [`Certificates`]: the certificate and key from PEM files, behind a lock that a reload swaps:
//!   every new handshake asks it for the current pair, so live connections keep theirs and new ones
//!   get the new one.
//! - [`watch`]: reloads on SIGHUP and when either file changes (checked every
//!   [`FILE_CHECK_INTERVAL`]); a pair that fails to load is logged and the old one stays.
//! - [`session`]: reading and writing a WebSocket connection's bytes through its TLS session without
//!   giving up the connection task's readiness-driven loop.

pub(crate) mod session;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use parking_lot::RwLock;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio::sync::watch;

/// How often the files are checked for changes.
pub const FILE_CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// Bytes of TLS records a connection may hold unsent; writes past it wait for the socket, as
/// plain writes do.
pub(crate) const TLS_BUFFER_LIMIT: usize = 64 * 1024;

/// Where the certificate chain and its private key are, both PEM.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("reading {path}: {source}")]
    Read { path: PathBuf, source: rustls::pki_types::pem::Error },
    #[error("{0} holds no certificate")]
    NoCertificate(PathBuf),
    #[error("the key does not fit the certificate: {0}")]
    Key(rustls::Error),
    #[error("tls configuration: {0}")]
    Config(rustls::Error),
}

/// The current certificate and key; what a handshake is answered with.
pub struct Certificates {
    files: TlsFiles,
    provider: Arc<CryptoProvider>,
    current: RwLock<Arc<CertifiedKey>>,
}

impl fmt::Debug for Certificates {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.debug_struct("Certificates").field("files", &self.files).finish_non_exhaustive()
    }
}

impl ResolvesServerCert for Certificates {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.read().clone())
    }
}

impl Certificates {
    /// Loads the pair; fails when a file is missing, holds no certificate, or the key does not fit.
    pub fn load(files: TlsFiles) -> Result<Arc<Certificates>, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let pair = load_pair(&files, &provider)?;
        Ok(Arc::new(Certificates { files, provider, current: RwLock::new(Arc::new(pair)) }))
    }

    /// Loads the files again; on success new handshakes get the new pair.
    pub fn reload(&self) -> Result<(), TlsError> {
        let pair = load_pair(&self.files, &self.provider)?;
        *self.current.write() = Arc::new(pair);
        Ok(())
    }

    /// The acceptor for the listener: HTTP/1.1 only (WebSocket upgrades need it).
    pub fn acceptor(self: &Arc<Self>) -> Result<tokio_rustls::TlsAcceptor, TlsError> {
        let mut config = rustls::ServerConfig::builder_with_provider(self.provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(TlsError::Config)?
            .with_no_client_auth()
            .with_cert_resolver(self.clone());
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
    }

    fn modified(&self) -> (Option<SystemTime>, Option<SystemTime>) {
        (modified(&self.files.cert), modified(&self.files.key))
    }
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|metadata| metadata.modified()).ok()
}

fn load_pair(files: &TlsFiles, provider: &CryptoProvider) -> Result<CertifiedKey, TlsError> {
    let chain = CertificateDer::pem_file_iter(&files.cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|source| TlsError::Read { path: files.cert.clone(), source })?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate(files.cert.clone()));
    }
    let key = PrivateKeyDer::from_pem_file(&files.key)
        .map_err(|source| TlsError::Read { path: files.key.clone(), source })?;
    CertifiedKey::from_der(chain, key, provider).map_err(TlsError::Key)
}

/// Reloads the pair on SIGHUP and when a file's modification time changes, until shutdown. The
/// SIGHUP handler is in place when this returns, before the future runs.
pub fn watch(
    certificates: Arc<Certificates>,
    shutdown: watch::Receiver<bool>,
) -> impl std::future::Future<Output = ()> + Send {
    let hangups = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(signal) => Some(signal),
        Err(error) => {
            tracing::warn!(%error, "no SIGHUP handler; the certificate reloads only when its files change");
            None
        }
    };
    reload_loop(certificates, hangups, shutdown)
}

async fn reload_loop(
    certificates: Arc<Certificates>,
    mut hangups: Option<tokio::signal::unix::Signal>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut seen = certificates.modified();
    let mut ticks = tokio::time::interval(FILE_CHECK_INTERVAL);
    loop {
        let reason = tokio::select! {
            _ = shutdown.wait_for(|stopping| *stopping) => return,
            Some(()) = async { match hangups.as_mut() { Some(signal) => signal.recv().await, None => None } } => "sighup",
            _ = ticks.tick() => {
                let now = certificates.modified();
                if now == seen {
                    continue;
                }
                seen = now;
                "files changed"
            }
        };
        match certificates.reload() {
            Ok(()) => tracing::info!(reason, "tls certificate reloaded"),
            Err(error) => tracing::warn!(reason, %error, "tls certificate not reloaded, the old one stays"),
        }
    }
}

//! TLS for the load generator: `wss://` targets, and their `/metrics` over https.
//!
//! Servers are trusted by the CA certificates of `--tls-ca` (a PEM file, e.g. the CA that signed
//! a test certificate), or else by the system's roots. One configuration serves the whole run;
//! it resumes no session, so that every connection costs the server a full handshake, as a new
//! client's would.

use std::path::Path;
use std::sync::{Arc, OnceLock};

use anyhow::Context;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::ClientConfig;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

static CLIENT_CONFIG: OnceLock<Arc<ClientConfig>> = OnceLock::new();

/// Trusts the CA certificates of a PEM file for this run's `wss://` targets (`--tls-ca`).
pub fn trust_ca_file(path: &Path) -> anyhow::Result<()> {
    let mut roots = rustls::RootCertStore::empty();
    for certificate in CertificateDer::pem_file_iter(path).with_context(|| format!("reading {}", path.display()))? {
        let certificate = certificate.with_context(|| format!("a certificate in {}", path.display()))?;
        roots.add(certificate).with_context(|| format!("a CA certificate in {}", path.display()))?;
    }
    if roots.is_empty() {
        anyhow::bail!("no certificate in {}", path.display());
    }
    let config = config_with(roots)?;
    CLIENT_CONFIG.set(config).map_err(|_| anyhow::anyhow!("--tls-ca given twice"))
}

/// The configuration of every TLS connection: `--tls-ca`'s, else the system's roots.
pub fn client_config() -> anyhow::Result<Arc<ClientConfig>> {
    if let Some(config) = CLIENT_CONFIG.get() {
        return Ok(config.clone());
    }
    let mut roots = rustls::RootCertStore::empty();
    for certificate in rustls_native_certs::load_native_certs().certs {
        let _ = roots.add(certificate);
    }
    let config = config_with(roots)?;
    Ok(CLIENT_CONFIG.get_or_init(|| config).clone())
}

fn config_with(roots: rustls::RootCertStore) -> anyhow::Result<Arc<ClientConfig>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("tls protocol versions")?
        .with_root_certificates(roots)
        .with_no_client_auth();
    // Every connection stands for a new client: a full handshake, no session resumed.
    config.resumption = rustls::client::Resumption::disabled();
    Ok(Arc::new(config))
}

/// The TLS handshake over a connected socket, checking the certificate against `host`.
pub async fn connect(host: &str, stream: TcpStream) -> std::io::Result<TlsStream<TcpStream>> {
    let config = client_config().map_err(std::io::Error::other)?;
    let name = ServerName::try_from(host.to_owned()).map_err(std::io::Error::other)?;
    tokio_rustls::TlsConnector::from(config).connect(name, stream).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ca_file_without_certificates_is_refused() {
        let path = std::env::temp_dir().join(format!("bench-empty-ca-{}.pem", std::process::id()));
        std::fs::write(&path, "not a certificate\n").unwrap();
        let error = trust_ca_file(&path).unwrap_err();
        assert!(error.to_string().contains("no certificate"), "{error:#}");
        assert!(trust_ca_file(Path::new("/nonexistent/ca.pem")).is_err());
        let _ = std::fs::remove_file(path);
    }
}

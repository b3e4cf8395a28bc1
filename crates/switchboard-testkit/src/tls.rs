//! A test certificate authority (rcgen) and the files a TLS server is started with.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
use rustls::pki_types::CertificateDer;
use switchboard_server::tls::TlsFiles;

/// A CA made for one test; it signs server certificates for `localhost` and `127.0.0.1`.
pub struct TestCa {
    certificate: rcgen::Certificate,
    key: KeyPair,
}

impl Default for TestCa {
    fn default() -> Self {
        Self::new()
    }
}

impl TestCa {
    pub fn new() -> TestCa {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, "Switchboard test CA");
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate().expect("ca key");
        let certificate = params.self_signed(&key).expect("self-signed ca");
        TestCa { certificate, key }
    }

    /// The CA certificate, PEM, for clients to trust.
    pub fn pem(&self) -> String {
        self.certificate.pem()
    }

    pub fn der(&self) -> CertificateDer<'static> {
        self.certificate.der().clone()
    }

    /// Writes a new server certificate (common name `name`) and its key into `folder` as
    /// `server.crt` and `server.key`, replacing what is there; returns the paths and the
    /// certificate's DER, to tell it from another.
    pub fn issue(&self, folder: &Path, name: &str) -> (TlsFiles, Vec<u8>) {
        let (files, der, _) = self.issue_with(folder, name, false);
        (files, der)
    }

    /// Like [`TestCa::issue`]; returns the base64 SHA-256 of the server key's
    /// SubjectPublicKeyInfo instead, what chromium's `--ignore-certificate-errors-spki-list` pins.
    pub fn issue_pinned(&self, folder: &Path, name: &str) -> (TlsFiles, String) {
        use base64::Engine;
        use sha2::Digest;
        let (files, _, spki) = self.issue_with(folder, name, false);
        (files, base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(spki)))
    }

    /// Like [`TestCa::issue`], but the new files keep the old files' modification times, so that
    /// only SIGHUP, not the change check, makes the server load them.
    pub fn issue_keeping_times(&self, folder: &Path, name: &str) -> (TlsFiles, Vec<u8>) {
        let (files, der, _) = self.issue_with(folder, name, true);
        (files, der)
    }

    /// The files, the certificate's DER and the key's SubjectPublicKeyInfo DER.
    fn issue_with(&self, folder: &Path, name: &str, keep_times: bool) -> (TlsFiles, Vec<u8>, Vec<u8>) {
        let mut params =
            CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).expect("server params");
        params.distinguished_name.push(DnType::CommonName, name);
        let key = KeyPair::generate().expect("server key");
        let certificate = params.signed_by(&key, &self.certificate, &self.key).expect("signed server certificate");
        let files = TlsFiles { cert: folder.join("server.crt"), key: folder.join("server.key") };
        write_replacing(&files.cert, certificate.pem().as_bytes(), keep_times);
        write_replacing(&files.key, key.serialize_pem().as_bytes(), keep_times);
        (files, certificate.der().to_vec(), key.public_key_der())
    }

    /// A rustls client configuration that trusts only this CA.
    pub fn client_config(&self) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.der()).expect("add the test ca");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("tls versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        Arc::new(config)
    }
}

/// Writes next to the file and renames over it, as certificate tools do, so that a reader never
/// sees half a file; with `keep_time` the new file gets the old one's modification time first.
fn write_replacing(path: &Path, bytes: &[u8], keep_time: bool) {
    let temporary: PathBuf = path.with_extension("new");
    std::fs::write(&temporary, bytes).expect("write pem");
    if keep_time {
        let old = std::fs::metadata(path).and_then(|metadata| metadata.modified()).expect("old file's time");
        std::fs::File::options()
            .write(true)
            .open(&temporary)
            .and_then(|file| file.set_modified(old))
            .expect("set time");
    }
    std::fs::rename(&temporary, path).expect("rename pem");
}

//! The webhook sender: POSTs the node's hook events (see [`switchboard_core::hooks`]) to the
//! application's URL, one at a time, signed with HMAC-SHA256, retried with backoff.
//!
//! Each POST carries `X-Switchboard-Event`, `X-Switchboard-Timestamp` (Unix seconds) and
//! `X-Switchboard-Signature: sha256=<hex>`, the HMAC-SHA256 of `<timestamp>.<body>` under the
//! secret: the receiver recomputes it and checks the timestamp is recent. A 2xx answer is
//! success; anything else (or no answer in [`ATTEMPT_TIMEOUT`]) is retried up to
//! [`MAX_ATTEMPTS`] times, waiting [`FIRST_BACKOFF`] and doubling. While an event is retried the
//! next ones wait in the node's bounded queue; when it is full new events are dropped and counted
//! (`switchboard_webhook_dropped_total`): message delivery never waits for the webhook.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hmac::{Hmac, Mac};
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;
use sha2::Sha256;
use switchboard_core::hooks::HookEvent;
use switchboard_core::ChatNode;
use tokio::sync::mpsc;

/// Tries per event.
pub const MAX_ATTEMPTS: u32 = 5;
/// Wait before the first retry; doubled for each next one.
pub const FIRST_BACKOFF: Duration = Duration::from_millis(200);
/// How long one POST may take.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);

/// Where hooks go and how they are signed.
#[derive(Clone)]
pub struct WebhookConfig {
    /// `http://` or `https://` URL.
    pub url: String,
    /// HMAC key. Never logged.
    pub secret: String,
    /// Events queued at most; more are dropped.
    pub queue: usize,
}

impl std::fmt::Debug for WebhookConfig {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("WebhookConfig").field("url", &self.url).field("queue", &self.queue).finish()
    }
}

/// What the sender did, for `/metrics`.
#[derive(Debug, Default)]
pub struct WebhookMetrics {
    pub sent: AtomicU64,
    pub retries: AtomicU64,
    /// Events given up after every attempt failed.
    pub failed: AtomicU64,
}

impl WebhookMetrics {
    pub fn render(&self, node: &ChatNode, out: &mut String) {
        let counters = [
            ("switchboard_webhook_sent_total", "Webhook events delivered (2xx).", self.sent.load(Ordering::Relaxed)),
            ("switchboard_webhook_retries_total", "Webhook POSTs retried.", self.retries.load(Ordering::Relaxed)),
            (
                "switchboard_webhook_failed_total",
                "Webhook events given up after every attempt failed.",
                self.failed.load(Ordering::Relaxed),
            ),
            (
                "switchboard_webhook_dropped_total",
                "Webhook events dropped because the queue was full.",
                node.hooks().dropped.load(Ordering::Relaxed),
            ),
        ];
        for (name, help, value) in counters {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}");
        }
    }
}

/// Opens the node's hook queue and starts the sender.
pub fn start(node: &ChatNode, config: WebhookConfig) -> Arc<WebhookMetrics> {
    let receiver = node.hooks().open(config.queue);
    let metrics = Arc::new(WebhookMetrics::default());
    tokio::spawn(run(receiver, config, metrics.clone()));
    metrics
}

async fn run(mut receiver: mpsc::Receiver<HookEvent>, config: WebhookConfig, metrics: Arc<WebhookMetrics>) {
    let tls = tls_connector();
    while let Some(event) = receiver.recv().await {
        let body = match serde_json::to_vec(&event) {
            Ok(body) => Bytes::from(body),
            Err(error) => {
                tracing::error!(%error, "webhook event not encodable");
                continue;
            }
        };
        let name = event_name(&event);
        let mut backoff = FIRST_BACKOFF;
        let mut delivered = false;
        for attempt in 1..=MAX_ATTEMPTS {
            let result = tokio::time::timeout(ATTEMPT_TIMEOUT, post(&config, &tls, name, body.clone())).await;
            match result {
                Ok(Ok(status)) if (200..300).contains(&status) => {
                    delivered = true;
                    break;
                }
                Ok(Ok(status)) => tracing::debug!(status, attempt, event = name, "webhook refused"),
                Ok(Err(error)) => tracing::debug!(%error, attempt, event = name, "webhook post failed"),
                Err(_) => tracing::debug!(attempt, event = name, "webhook post timed out"),
            }
            if attempt < MAX_ATTEMPTS {
                metrics.retries.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(backoff).await;
                backoff *= 2;
            }
        }
        if delivered {
            metrics.sent.fetch_add(1, Ordering::Relaxed);
        } else {
            metrics.failed.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(event = name, url = %config.url, "webhook event given up");
        }
    }
}

fn event_name(event: &HookEvent) -> &'static str {
    match event {
        HookEvent::OfflineMessage { .. } => "message.offline",
        HookEvent::UserOnline { .. } => "user.online",
        HookEvent::UserOffline { .. } => "user.offline",
        HookEvent::RoomCreated { .. } => "room.created",
    }
}

/// `sha256=<hex>` of HMAC-SHA256(secret, "<timestamp>.<body>").
pub fn signature(secret: &str, timestamp: u64, body: &[u8]) -> String {
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.as_bytes()) else {
        return String::new();
    };
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    let digest = mac.finalize().into_bytes();
    let mut hex = String::with_capacity(7 + 64);
    hex.push_str("sha256=");
    for byte in digest {
        let _ = write!(hex, "{byte:02x}");
    }
    hex
}

#[derive(Debug, thiserror::Error)]
enum PostError {
    #[error("bad webhook url")]
    Url,
    #[error("connect: {0}")]
    Io(#[from] std::io::Error),
    #[error("http: {0}")]
    Http(#[from] hyper::Error),
    #[error("request: {0}")]
    Request(#[from] hyper::http::Error),
}

fn tls_connector() -> tokio_rustls::TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    for certificate in rustls_native_certs::load_native_certs().certs {
        let _ = roots.add(certificate);
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map(|builder| builder.with_root_certificates(roots).with_no_client_auth())
        .unwrap_or_else(|_| {
            rustls::ClientConfig::builder().with_root_certificates(rustls::RootCertStore::empty()).with_no_client_auth()
        });
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

/// One POST on a new connection; the answer's status.
async fn post(
    config: &WebhookConfig,
    tls: &tokio_rustls::TlsConnector,
    event: &'static str,
    body: Bytes,
) -> Result<u16, PostError> {
    let uri: hyper::Uri = config.url.parse().map_err(|_| PostError::Url)?;
    let secure = match uri.scheme_str() {
        Some("http") => false,
        Some("https") => true,
        _ => return Err(PostError::Url),
    };
    let host = uri.host().ok_or(PostError::Url)?.to_owned();
    let port = uri.port_u16().unwrap_or(if secure { 443 } else { 80 });
    let path = uri.path_and_query().map_or("/", |path| path.as_str()).to_owned();
    let timestamp =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |since| since.as_secs());
    let request = Request::post(path)
        .header(hyper::header::HOST, uri.authority().map_or(host.as_str(), |authority| authority.as_str()))
        .header(hyper::header::CONTENT_TYPE, "application/json")
        .header("x-switchboard-event", event)
        .header("x-switchboard-timestamp", timestamp.to_string())
        .header("x-switchboard-signature", signature(&config.secret, timestamp, &body))
        .body(Full::new(body))?;
    let stream = tokio::net::TcpStream::connect((host.as_str(), port)).await?;
    if secure {
        let name = rustls::pki_types::ServerName::try_from(host).map_err(|_| PostError::Url)?;
        let stream = tls.connect(name, stream).await?;
        send(TokioIo::new(stream), request).await
    } else {
        send(TokioIo::new(stream), request).await
    }
}

async fn send<Io>(io: Io, request: Request<Full<Bytes>>) -> Result<u16, PostError>
where
    Io: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(io).await?;
    let driver = tokio::spawn(connection);
    let response = sender.send_request(request).await?;
    let status = response.status().as_u16();
    let _ = response.into_body().collect().await;
    driver.abort();
    Ok(status)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_hmac_sha256_of_timestamp_dot_body() {
        // RFC 4231-style check against an independent computation: HMAC-SHA256("key", "1.{}").
        let signed = signature("key", 1, b"{}");
        assert!(signed.starts_with("sha256=") && signed.len() == 7 + 64, "{signed}");
        assert_ne!(signed, signature("other", 1, b"{}"));
        assert_ne!(signed, signature("key", 2, b"{}"));
    }
}

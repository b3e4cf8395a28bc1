//! The Socket.IO endpoint at `/socket.io/`: Engine.IO 3 + Socket.IO rev 4 (socket.io-client 1.x
//! and 2.x) and Engine.IO 4 + rev 5 (socket.io-client 3 and 4) in one service, chosen by the
//! `EIO` query, on top of socketioxide.
//!
//! Every Socket.IO connection is a normal session of the chat core: [`identity`] turns the
//! handshake into one of the native login frames and [`native`] carries requests, answers and
//! events between the socket and the session. docs/socketio.md has the mapping and what was
//! worked around.

mod dialect;
mod identity;
mod native;
mod seed000;
mod seed002;
mod seed003;

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{
    HeaderValue, ACCESS_CONTROL_ALLOW_CREDENTIALS, ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS,
    ACCESS_CONTROL_ALLOW_ORIGIN, ACCESS_CONTROL_MAX_AGE, ACCESS_CONTROL_REQUEST_HEADERS, ORIGIN, VARY,
};
use hyper::service::Service;
use hyper::{Method, Request, Response, StatusCode};
use socketioxide::service::SocketIoService;
use socketioxide::{SocketIo, TransportType};
use switchboard_core::ChatNode;
use switchboard_store::Store;

use crate::config::ServerConfig;
use crate::http::{self, HttpResponse};

/// The path every Socket.IO client library uses by default.
pub const PATH: &str = "/socket.io";

/// One node's Socket.IO service.
#[derive(Clone)]
pub struct Endpoint {
    service: SocketIoService<engineioxide::service::NotFoundService>,
    io: SocketIo,
    /// Origins whose credentialed polling requests are answered; empty: any.
    allowed_origins: Arc<[String]>,
}

impl Endpoint {
    pub fn new(config: &ServerConfig, node: ChatNode, store: Arc<dyn Store>) -> Endpoint {
        let (service, io) = SocketIo::builder()
            .req_path(PATH)
            .ping_interval(config.ping_interval.min(std::time::Duration::from_secs(25)))
            .ping_timeout(std::time::Duration::from_secs(20))
            .max_payload(config.max_frame_bytes as u64)
            .max_buffer_size(native::MAX_QUEUED_PACKETS)
            .transports([TransportType::Polling, TransportType::Websocket])
            .build_svc();
        native::mount(&io, node, store, config.max_frame_bytes);
        Endpoint { service, io, allowed_origins: config.socketio_origins.clone().into() }
    }

    /// Closes every Socket.IO connection (on shutdown).
    pub async fn close(&self) {
        self.io.close().await;
    }

    /// Serves one HTTP request under `/socket.io/`, with CORS for credentialed requests.
    pub async fn serve(&self, request: Request<Incoming>) -> HttpResponse {
        let origin = request.headers().get(ORIGIN).cloned();
        if let Some(origin) = &origin {
            if !self.origin_allowed(origin) {
                return http::text(StatusCode::FORBIDDEN, "text/plain; charset=utf-8", "origin not allowed\n");
            }
        }
        if request.method() == Method::OPTIONS {
            let requested = request.headers().get(ACCESS_CONTROL_REQUEST_HEADERS).cloned();
            let mut response = http::text(StatusCode::NO_CONTENT, "text/plain; charset=utf-8", Bytes::new());
            let headers = response.headers_mut();
            headers.insert(ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static("GET, POST, OPTIONS"));
            if let Some(requested) = requested {
                headers.insert(ACCESS_CONTROL_ALLOW_HEADERS, requested);
            }
            headers.insert(ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("600"));
            return with_cors(response, origin);
        }
        let response = match self.service.call(request).await {
            Ok(response) => response,
            Err(never) => match never {},
        };
        let (parts, body) = response.into_parts();
        // Polling answers are short and complete; a WebSocket upgrade's body is empty.
        let bytes = match body.collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(error) => {
                tracing::debug!(?error, "socket.io response body failed");
                Bytes::new()
            }
        };
        with_cors(Response::from_parts(parts, Full::new(bytes)), origin)
    }

    fn origin_allowed(&self, origin: &HeaderValue) -> bool {
        self.allowed_origins.is_empty()
            || origin.to_str().is_ok_and(|origin| self.allowed_origins.iter().any(|allowed| allowed == origin))
    }
}

/// Echoes the exact `Origin` (`null` too: a page opened from disk) with credentials allowed, as
/// the 1.x clients send cookies with every poll and browsers refuse `*` for those.
fn with_cors(mut response: HttpResponse, origin: Option<HeaderValue>) -> HttpResponse {
    if let Some(origin) = origin {
        let headers = response.headers_mut();
        headers.insert(ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        headers.insert(ACCESS_CONTROL_ALLOW_CREDENTIALS, HeaderValue::from_static("true"));
        headers.append(VARY, HeaderValue::from_static("Origin"));
    }
    response
}

/// Whether a native frame is a change to an earlier message (an edit, deletion or reaction) or
/// a deleted message's tombstone: the seeds' protocols have neither, and their clients would show
/// one as a new message, so their dialects leave these out.
pub(crate) fn is_change(frame: &serde_json::Value) -> bool {
    frame["type"] == "message" && is_change_view(frame)
}

/// [`is_change`] for a message of a history list, which has no `type`.
pub(crate) fn is_change_view(message: &serde_json::Value) -> bool {
    message.get("kind").is_some() || message["deleted"] == true
}

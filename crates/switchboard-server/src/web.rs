//! The web client: the static files of `crates/switchboard-server/web/` embedded in the binary and
//! served at `/` (the page) and `/<file>` (its script modules and style sheet).
//!
//! Every answer carries `Cache-Control: no-cache` and an `ETag` (a hash of the file computed at
//! compile time), so browsers revalidate and get `304 Not Modified` while the binary is the same.

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderMap, HeaderValue, CACHE_CONTROL, CONTENT_TYPE, ETAG, IF_NONE_MATCH};
use hyper::{Response, StatusCode};

use crate::http::HttpResponse;

/// One embedded file.
struct Asset {
    /// The URL path it is served at.
    path: &'static str,
    content_type: &'static str,
    body: &'static [u8],
    /// FNV-1a of `body`: the entity tag.
    hash: u64,
}

const fn asset(path: &'static str, content_type: &'static str, body: &'static [u8]) -> Asset {
    Asset { path, content_type, body, hash: fnv1a(body) }
}

/// 64-bit FNV-1a, evaluated at compile time.
const fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut index = 0;
    while index < bytes.len() {
        hash ^= bytes[index] as u64;
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        index += 1;
    }
    hash
}

const JAVASCRIPT: &str = "text/javascript; charset=utf-8";

const ASSETS: &[Asset] = &[
    asset("/", "text/html; charset=utf-8", include_bytes!("../web/index.html")),
    asset("/app.js", JAVASCRIPT, include_bytes!("../web/app.js")),
    asset("/connection.js", JAVASCRIPT, include_bytes!("../web/connection.js")),
    asset("/dom.js", JAVASCRIPT, include_bytes!("../web/dom.js")),
    asset("/gateway.js", JAVASCRIPT, include_bytes!("../web/gateway.js")),
    asset("/receipts.js", JAVASCRIPT, include_bytes!("../web/receipts.js")),
    asset("/sidebar.js", JAVASCRIPT, include_bytes!("../web/sidebar.js")),
    asset("/composer.js", JAVASCRIPT, include_bytes!("../web/composer.js")),
    asset("/presence.js", JAVASCRIPT, include_bytes!("../web/presence.js")),
    asset("/scroll.js", JAVASCRIPT, include_bytes!("../web/scroll.js")),
    asset("/notify.js", JAVASCRIPT, include_bytes!("../web/notify.js")),
    asset("/changes.js", JAVASCRIPT, include_bytes!("../web/changes.js")),
    asset("/moderation.js", JAVASCRIPT, include_bytes!("../web/moderation.js")),
    asset("/chat.js", JAVASCRIPT, include_bytes!("../web/chat.js")),
    asset("/errors.js", JAVASCRIPT, include_bytes!("../web/errors.js")),
    asset("/storage.js", JAVASCRIPT, include_bytes!("../web/storage.js")),
    asset("/session.js", JAVASCRIPT, include_bytes!("../web/session.js")),
    asset("/history.js", JAVASCRIPT, include_bytes!("../web/history.js")),
    asset("/outbox.js", JAVASCRIPT, include_bytes!("../web/outbox.js")),
    asset("/rooms.js", JAVASCRIPT, include_bytes!("../web/rooms.js")),
    asset("/typing.js", JAVASCRIPT, include_bytes!("../web/typing.js")),
    asset("/header.js", JAVASCRIPT, include_bytes!("../web/header.js")),
    asset("/timeline.js", JAVASCRIPT, include_bytes!("../web/timeline.js")),
    asset("/status.js", JAVASCRIPT, include_bytes!("../web/status.js")),
    asset("/style.css", "text/css; charset=utf-8", include_bytes!("../web/style.css")),
];

/// The page's Content-Security-Policy: its own scripts and styles only, so that even a rendering
/// mistake cannot run injected script. `connect-src` allows its own server (`/api/connect`, `/ws`)
/// and WebSockets to any host: the gateway may send the page to another node of the cluster, whose
/// URL (`--public-url`) is only known at run time and may change as nodes come and go.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
     connect-src 'self' ws: wss:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// The answer for `GET path` if `path` is one of the web client's files.
pub fn serve(path: &str, request_headers: &HeaderMap) -> Option<HttpResponse> {
    let asset = ASSETS.iter().find(|asset| asset.path == path)?;
    let etag = format!("\"{:016x}\"", asset.hash);
    let not_modified = request_headers
        .get_all(IF_NONE_MATCH)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|tag| tag.trim() == etag || tag.trim() == "*");
    let mut response = if not_modified {
        let mut response = Response::new(Full::new(Bytes::new()));
        *response.status_mut() = StatusCode::NOT_MODIFIED;
        response
    } else {
        let mut response = Response::new(Full::new(Bytes::from_static(asset.body)));
        response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static(asset.content_type));
        response
    };
    let headers = response.headers_mut();
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if let Ok(value) = HeaderValue::from_str(&etag) {
        headers.insert(ETAG, value);
    }
    headers.insert("x-content-type-options", HeaderValue::from_static("nosniff"));
    if asset.path == "/" {
        headers.insert("content-security-policy", HeaderValue::from_static(CONTENT_SECURITY_POLICY));
        headers.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    }
    Some(response)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    fn body_text(response: HttpResponse) -> String {
        let collected = block_on(response.into_body().collect()).expect("body").to_bytes();
        String::from_utf8(collected.to_vec()).expect("utf-8 body")
    }

    /// Collects a `Full` body (ready at once) on a throwaway runtime.
    fn block_on<F: std::future::Future>(future: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread().build().expect("runtime").block_on(future)
    }

    #[test]
    fn every_file_is_served_with_its_type_and_revalidation_headers() {
        for (path, content_type) in [
            ("/", "text/html; charset=utf-8"),
            ("/app.js", JAVASCRIPT),
            ("/connection.js", JAVASCRIPT),
            ("/dom.js", JAVASCRIPT),
            ("/gateway.js", JAVASCRIPT),
            ("/receipts.js", JAVASCRIPT),
            ("/sidebar.js", JAVASCRIPT),
            ("/composer.js", JAVASCRIPT),
            ("/presence.js", JAVASCRIPT),
            ("/scroll.js", JAVASCRIPT),
            ("/notify.js", JAVASCRIPT),
            ("/changes.js", JAVASCRIPT),
            ("/moderation.js", JAVASCRIPT),
            ("/chat.js", JAVASCRIPT),
            ("/errors.js", JAVASCRIPT),
            ("/storage.js", JAVASCRIPT),
            ("/session.js", JAVASCRIPT),
            ("/history.js", JAVASCRIPT),
            ("/outbox.js", JAVASCRIPT),
            ("/rooms.js", JAVASCRIPT),
            ("/typing.js", JAVASCRIPT),
            ("/header.js", JAVASCRIPT),
            ("/timeline.js", JAVASCRIPT),
            ("/status.js", JAVASCRIPT),
            ("/style.css", "text/css; charset=utf-8"),
        ] {
            let response = serve(path, &HeaderMap::new()).unwrap_or_else(|| panic!("{path} is not served"));
            assert_eq!(response.status(), StatusCode::OK, "{path}");
            assert_eq!(response.headers()[CONTENT_TYPE], content_type, "{path}");
            assert_eq!(response.headers()[CACHE_CONTROL], "no-cache", "{path}");
            assert!(response.headers()[ETAG].to_str().unwrap().starts_with('"'), "{path}");
            assert!(!body_text(response).is_empty(), "{path}");
        }
        assert!(serve("/nope.js", &HeaderMap::new()).is_none());
        assert!(serve("/index.html", &HeaderMap::new()).is_none(), "the page lives at / only");
    }

    #[test]
    fn a_matching_etag_is_answered_not_modified_without_a_body() {
        let etag = serve("/app.js", &HeaderMap::new()).unwrap().headers()[ETAG].clone();
        let mut headers = HeaderMap::new();
        headers.insert(IF_NONE_MATCH, etag.clone());
        let response = serve("/app.js", &headers).unwrap();
        assert_eq!(response.status(), StatusCode::NOT_MODIFIED);
        assert_eq!(response.headers()[ETAG], etag);
        assert!(body_text(response).is_empty());
        headers.insert(IF_NONE_MATCH, HeaderValue::from_static("\"0000000000000000\""));
        assert_eq!(serve("/app.js", &headers).unwrap().status(), StatusCode::OK, "a stale tag gets the file");
    }

    /// Every file the page and its modules load is one that is served, so a renamed or added file
    /// cannot be forgotten in `ASSETS`.
    #[test]
    fn everything_the_page_references_is_served() {
        let served: Vec<&str> = ASSETS.iter().map(|asset| asset.path).collect();
        let mut references = Vec::new();
        for asset in ASSETS {
            let text = std::str::from_utf8(asset.body).expect("utf-8 file");
            for marker in ["src=\"/", "href=\"/", "from './"] {
                for (start, _) in text.match_indices(marker) {
                    let rest = &text[start + marker.len()..];
                    let end = rest.find(['"', '\'']).expect("closing quote");
                    references.push(format!("/{}", &rest[..end]));
                }
            }
        }
        assert!(references.len() >= 4, "found {references:?}");
        for reference in references {
            assert!(served.contains(&reference.as_str()), "{reference} is referenced but not served");
        }
    }
}

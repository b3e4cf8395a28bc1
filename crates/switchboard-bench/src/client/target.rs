//! The server to load: its URL (`ws://` or `wss://`), resolved once.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use anyhow::{bail, Context};

use super::{socketio, Protocol};

/// The server to load: a `ws://` or `wss://host[:port]/path` URL, resolved once.
#[derive(Debug, Clone)]
pub struct Target {
    /// The WebSocket URL connections open: as given, or for [`Protocol::SocketIo`] the Socket.IO
    /// endpoint on the same host and port (unless the given URL already is one).
    pub url: String,
    /// `host:port` as written in the URL (the HTTP `Host`).
    pub authority: String,
    /// The host as written in the URL: the name a TLS server's certificate is checked against.
    pub host: String,
    /// The resolved address every connection goes to.
    pub addr: SocketAddr,
    /// How connections talk to it.
    pub protocol: Protocol,
    /// `wss://`: connections, and the `/metrics` scrapes, go over TLS (see [`crate::tls`]).
    pub tls: bool,
}

impl Target {
    /// Parses and resolves a `ws://` or `wss://` URL, for the native protocol.
    pub async fn resolve(url: &str) -> anyhow::Result<Self> {
        Self::resolve_as(url, Protocol::Native).await
    }

    /// Parses and resolves a `ws://` or `wss://` URL, for `protocol`. `/metrics` is scraped from
    /// the same host and port whatever the path.
    pub async fn resolve_as(url: &str, protocol: Protocol) -> anyhow::Result<Self> {
        let (scheme, host, port) = split_ws_url(url)?;
        let tls = scheme == "wss";
        if tls {
            crate::tls::client_config()?;
        }
        let addr = tokio::net::lookup_host((host.as_str(), port))
            .await
            .with_context(|| format!("resolving {host}"))?
            .min_by_key(|addr| !addr.is_ipv4()) // prefer IPv4
            .with_context(|| format!("{host} has no address"))?;
        let authority = if host.contains(':') { format!("[{host}]:{port}") } else { format!("{host}:{port}") };
        let url = match protocol {
            protocol if protocol.is_socketio() && !ws_url_path(url).starts_with("/socket.io/") => {
                format!("{scheme}://{authority}{}", socketio::PATH)
            }
            _ => url.to_string(),
        };
        Ok(Target { url, authority, host, addr, protocol, tls })
    }

    /// The source addresses to spread connections over: `127.0.0.1` .. `127.0.0.<count>`, to get
    /// past the ephemeral port limit of one (source, destination) pair. Only for a loopback
    /// target; with one source and a non-loopback target the kernel picks the source (`None`).
    pub fn sources(&self, count: u32) -> anyhow::Result<Vec<Option<IpAddr>>> {
        if !self.addr.ip().is_loopback() || !self.addr.is_ipv4() {
            if count > 1 {
                bail!("--sources > 1 needs an IPv4 loopback target, not {}", self.addr);
            }
            return Ok(vec![None]);
        }
        if !(1..=254).contains(&count) {
            bail!("--sources must be within 1..=254");
        }
        Ok((1..=count).map(|last| Some(IpAddr::V4(Ipv4Addr::new(127, 0, 0, last as u8)))).collect())
    }
}

/// The scheme (`ws` or `wss`) and the rest of a WebSocket URL.
fn split_scheme(url: &str) -> Option<(&'static str, &str)> {
    url.strip_prefix("ws://").map(|rest| ("ws", rest)).or_else(|| url.strip_prefix("wss://").map(|rest| ("wss", rest)))
}

/// The path (and query) of a WebSocket URL, empty if none.
fn ws_url_path(url: &str) -> &str {
    let rest = split_scheme(url).map_or(url, |(_, rest)| rest);
    rest.find(['/', '?', '#']).map_or("", |start| &rest[start..])
}

/// Splits `ws[s]://host[:port][/path]` into scheme, host and port (default 80, or 443 for wss).
fn split_ws_url(url: &str) -> anyhow::Result<(&'static str, String, u16)> {
    let Some((scheme, rest)) = split_scheme(url) else {
        bail!("the url must start with ws:// or wss://, got {url}");
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if authority.is_empty() {
        bail!("no host in {url}");
    }
    let (host, port) = if let Some(bracketed) = authority.strip_prefix('[') {
        let (host, after) = bracketed.split_once(']').with_context(|| format!("unclosed [ in {url}"))?;
        (host, after.strip_prefix(':'))
    } else {
        match authority.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    let port = match port {
        Some(port) => port.parse().with_context(|| format!("bad port in {url}"))?,
        None if scheme == "wss" => 443,
        None => 80,
    };
    Ok((scheme, host.to_string(), port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ws_urls_split_into_scheme_host_and_port() {
        assert_eq!(split_ws_url("ws://127.0.0.1:8080/ws").unwrap(), ("ws", "127.0.0.1".into(), 8080));
        assert_eq!(split_ws_url("ws://localhost/ws").unwrap(), ("ws", "localhost".into(), 80));
        assert_eq!(split_ws_url("ws://[::1]:9000/ws").unwrap(), ("ws", "::1".into(), 9000));
        assert_eq!(split_ws_url("ws://example.org:81").unwrap(), ("ws", "example.org".into(), 81));
        assert_eq!(split_ws_url("wss://example.org/ws").unwrap(), ("wss", "example.org".into(), 443));
        assert!(split_ws_url("http://example.org/ws").is_err());
        assert!(split_ws_url("ws:///ws").is_err());
        assert!(split_ws_url("ws://h:notaport/ws").is_err());
    }

    #[tokio::test]
    async fn socketio_targets_connect_to_the_socketio_path() {
        let native = Target::resolve("ws://127.0.0.1:3000/ws").await.unwrap();
        assert_eq!((native.url.as_str(), native.protocol), ("ws://127.0.0.1:3000/ws", Protocol::Native));
        assert!(!native.tls);
        let socketio = Target::resolve_as("ws://127.0.0.1:3000/ws", Protocol::SocketIo).await.unwrap();
        assert_eq!(socketio.url, "ws://127.0.0.1:3000/socket.io/?EIO=4&transport=websocket");
        assert_eq!(socketio.authority, "127.0.0.1:3000");
        let bare = Target::resolve_as("ws://127.0.0.1:3000", Protocol::SocketIo).await.unwrap();
        assert_eq!(bare.url, socketio.url);
        let given = "ws://127.0.0.1:3000/socket.io/?EIO=4&transport=websocket&x=1";
        assert_eq!(Target::resolve_as(given, Protocol::SocketIo).await.unwrap().url, given);
    }

    #[tokio::test]
    async fn sources_are_loopback_addresses() {
        let target = Target::resolve("ws://127.0.0.1:1/ws").await.unwrap();
        assert_eq!(target.authority, "127.0.0.1:1");
        let sources = target.sources(3).unwrap();
        assert_eq!(sources.len(), 3);
        assert_eq!(sources[2], Some(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 3))));
        assert!(target.sources(0).is_err());
        assert!(target.sources(255).is_err());
    }
}

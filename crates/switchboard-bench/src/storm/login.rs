//! Logging in with a login frame of any kind (`resume` with cursors, a login with presence on): the
//! users' names and JWTs, and the handshakes in flight. `presence` logs its users in with these too.

use std::net::IpAddr;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::sync::Semaphore;
use tokio_tungstenite::tungstenite::Message;

use crate::client::frame;
use crate::client::{self, text_frame, Connector, Failure, JwtSigner, LoadArgs, Stage, Target, WsStream};
use crate::report::{self, Histogram};

/// How long the JWTs stay valid (they are only checked at login).
const JWT_TTL_SECS: u64 = 3600;

/// A login: the frame, at most how many handshakes at once, within how long, and where to record
/// the time from TCP connect to `synced`.
pub(crate) struct LoginWith<'a> {
    request: String,
    handshakes: &'a Semaphore,
    timeout: Duration,
    handshake: &'a Histogram,
}

/// Connects to `target` and logs in with a login frame of any kind (e.g. with cursors or presence,
/// which [`client::login`] does not send). Every frame up to `synced` goes to `on_frame`: a
/// resume's sync carries the missed messages, a presence login the online list. Returns the
/// connection and the session token.
pub(crate) async fn connect_with(
    target: &Target,
    source: Option<IpAddr>,
    login: LoginWith<'_>,
    on_frame: impl FnMut(&str),
) -> Result<(WsStream, String), Failure> {
    let _permit = login.handshakes.acquire().await.map_err(|_| Failure::new(Stage::Local, "closed"))?;
    let started = std::time::Instant::now();
    let attempt = async {
        let mut ws = client::open(target, source).await?;
        let token = log_in(&mut ws, login.request, on_frame).await?;
        Ok((ws, token))
    };
    let timeout = login.timeout;
    let connected = tokio::time::timeout(timeout, attempt).await.unwrap_or_else(|_| Err(Failure::timeout(timeout)))?;
    login.handshake.record(report::micros(started.elapsed()));
    Ok(connected)
}

/// Sends a login frame and reads frames until `synced`, handing each (but an `error`, which fails
/// the login) to `on_frame`. Returns the session token.
pub(crate) async fn log_in(
    ws: &mut WsStream,
    request: String,
    mut on_frame: impl FnMut(&str),
) -> Result<String, Failure> {
    let failed = |reason: String| Failure::new(Stage::Login, reason);
    ws.send(Message::text(request)).await.map_err(|error| failed(format!("sending the login: {error}")))?;
    let mut token = None;
    loop {
        let Some(text) = text_frame(ws.next().await).map_err(failed)? else { continue };
        match frame::kind(&text) {
            Some("error") => {
                let code = frame::str_field(&text, "\"code\":\"").unwrap_or("?");
                return Err(failed(format!("server error {code}")));
            }
            Some("session") => token = frame::str_field(&text, "\"token\":\"").map(str::to_string),
            _ => {}
        }
        on_frame(&text);
        if frame::kind(&text) == Some("synced") {
            return token.ok_or_else(|| failed("synced before session".to_string()));
        }
    }
}

/// How a scenario's users log in: their names, their JWTs, the handshakes in flight and how long
/// one may take.
pub(crate) struct Logins {
    /// Counts first connections as ready or failed and times their handshakes; its own slots serve
    /// [`Connector::connect`] (plain logins) only.
    pub connector: Connector,
    signer: JwtSigner,
    /// Handshakes in flight for [`connect_with`].
    handshakes: Semaphore,
    pub timeout: Duration,
    /// Users are `{prefix}-{i:06}`.
    pub prefix: String,
}

impl Logins {
    pub fn new(load: &LoadArgs, prefix: String) -> Self {
        let timeout = Duration::from_secs(load.timeout_secs);
        Logins {
            connector: Connector::new(&load.jwt_secret, timeout, load.concurrency),
            signer: JwtSigner::new(&load.jwt_secret, JWT_TTL_SECS),
            handshakes: Semaphore::new(load.concurrency as usize),
            timeout,
            prefix,
        }
    }

    pub fn user(&self, index: u32) -> String {
        format!("{}-{index:06}", self.prefix)
    }

    /// A `login_jwt` frame for `user`.
    pub fn jwt_login(&self, user: &str, presence: bool) -> Result<String, Failure> {
        let jwt = self.signer.sign(user)?;
        Ok(serde_json::json!({"type": "login_jwt", "jwt": jwt, "presence": presence}).to_string())
    }

    /// A login with `request` for [`connect_with`], its handshake timed into `handshake`.
    pub fn with<'a>(&'a self, request: String, handshake: &'a Histogram) -> LoginWith<'a> {
        LoginWith { request, handshakes: &self.handshakes, timeout: self.timeout, handshake }
    }
}

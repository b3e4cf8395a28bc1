//! Logging in on an open connection, and signing the JWTs for it.

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

use super::failure::ws_reason;
use super::{Failure, Stage, WsStream};

/// How to log in.
#[derive(Debug, Clone, Copy)]
pub enum Login<'a> {
    /// `login_jwt` with a signed JWT.
    Jwt(&'a str),
    /// `resume` with the token of an earlier `session` frame.
    Resume(&'a str),
    /// `register` with a user name and a password.
    Register { user: &'a str, password: &'a str },
    /// `login` with a user name and a password.
    Password { user: &'a str, password: &'a str },
}

/// What the server said about the new session.
#[derive(Debug, Clone, Default)]
pub struct Session {
    pub user: String,
    pub token: String,
    /// The `messages` count of the `synced` frame.
    pub synced_messages: u64,
}

/// Logs in (without presence) and waits for `synced`. Frames other than `session`, `synced`
/// and `error` are skipped.
pub async fn login(ws: &mut WsStream, login: Login<'_>) -> Result<Session, Failure> {
    let request = match login {
        Login::Jwt(jwt) => serde_json::json!({"type": "login_jwt", "jwt": jwt, "presence": false}),
        Login::Resume(token) => {
            serde_json::json!({"type": "resume", "token": token, "presence": false})
        }
        Login::Register { user, password } => {
            serde_json::json!({"type": "register", "username": user, "password": password, "presence": false})
        }
        Login::Password { user, password } => {
            serde_json::json!({"type": "login", "username": user, "password": password, "presence": false})
        }
    };
    ws.send(Message::text(request.to_string()))
        .await
        .map_err(|error| Failure::new(Stage::Login, format!("sending the login: {}", ws_reason(&error))))?;
    let mut session: Option<Session> = None;
    loop {
        let text = match ws.next().await {
            Some(Ok(Message::Text(text))) => text,
            Some(Ok(Message::Close(frame))) => {
                let reason = match frame {
                    Some(frame) => format!("closed by the server ({})", u16::from(frame.code)),
                    None => "closed by the server".to_string(),
                };
                return Err(Failure::new(Stage::Login, reason));
            }
            Some(Ok(_)) => continue,
            Some(Err(error)) => return Err(Failure::new(Stage::Login, ws_reason(&error))),
            None => return Err(Failure::new(Stage::Login, "connection closed")),
        };
        let frame: serde_json::Value = serde_json::from_str(&text)
            .map_err(|_| Failure::new(Stage::Login, "the server sent a frame that is not JSON"))?;
        match frame["type"].as_str() {
            Some("session") => {
                session = Some(Session {
                    user: frame["user"].as_str().unwrap_or_default().to_string(),
                    token: frame["token"].as_str().unwrap_or_default().to_string(),
                    synced_messages: 0,
                });
            }
            Some("synced") => {
                let Some(mut session) = session else {
                    return Err(Failure::new(Stage::Login, "synced before session"));
                };
                session.synced_messages = frame["messages"].as_u64().unwrap_or(0);
                return Ok(session);
            }
            Some("error") => {
                let code = frame["code"].as_str().unwrap_or("?");
                let message: String = frame["message"].as_str().unwrap_or("").chars().take(120).collect();
                return Err(Failure::new(Stage::Login, format!("server error {code}: {message}")));
            }
            _ => {}
        }
    }
}

/// Signs HS256 JWTs for `login_jwt`.
pub struct JwtSigner {
    key: jsonwebtoken::EncodingKey,
    header: jsonwebtoken::Header,
    ttl_secs: u64,
}

impl JwtSigner {
    /// Tokens are valid for `ttl_secs` from signing (the server only checks them at login).
    pub fn new(secret: &str, ttl_secs: u64) -> Self {
        JwtSigner {
            key: jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
            header: jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
            ttl_secs,
        }
    }

    /// A JWT with `sub = user` and `exp` in the future.
    pub fn sign(&self, user: &str) -> Result<String, Failure> {
        let exp = jsonwebtoken::get_current_timestamp() + self.ttl_secs;
        jsonwebtoken::encode(&self.header, &serde_json::json!({"sub": user, "exp": exp}), &self.key)
            .map_err(|error| Failure::new(Stage::Local, format!("signing the jwt: {error}")))
    }
}

//! Who a Socket.IO connection is: its handshake turned into one of the native login frames, so
//! that the chat core checks it exactly as it checks a native login.
//!
//! EIO4 clients send `auth` in their `40` packet; EIO3 clients have no `auth` and put the same
//! fields in the handshake's query string. A session token (`token`) or a JWT (`jwt`) always
//! works; a bare `username` only when the server runs with `--open-auth`, which then checks it.

use serde_json::{Map, Value};

/// The handshake fields that name a credential, in the order they are tried.
const CREDENTIALS: [(&str, &str); 3] = [("token", "resume"), ("jwt", "login_jwt"), ("username", "login_open")];

/// Why a handshake is refused; its text is the `message` of the client's `connect_error`.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    /// No credential in the handshake.
    #[error("not_authenticated")]
    NoCredential,
    /// The chat core refused the login frame: its error code.
    #[error("{0}")]
    Login(String),
}

/// The login frame for a handshake's `auth` object (EIO4) or query string (EIO3).
pub fn login_frame(auth: Option<&Value>, query: Option<&str>) -> Result<String, Refusal> {
    let mut fields = match auth {
        Some(Value::Object(fields)) => fields.clone(),
        _ => Map::new(),
    };
    if let Some(query) = query {
        for (key, value) in form_pairs(query) {
            if CREDENTIALS.iter().any(|(field, _)| *field == key) && !fields.contains_key(&key) {
                fields.insert(key, Value::String(value));
            }
        }
    }
    let (field, kind) = CREDENTIALS
        .iter()
        .find(|(field, _)| fields.get(*field).is_some_and(Value::is_string))
        .ok_or(Refusal::NoCredential)?;
    let mut frame = Map::new();
    frame.insert("type".to_owned(), Value::String((*kind).to_owned()));
    frame.insert((*field).to_owned(), fields[*field].clone());
    for option in ["presence", "cursors"] {
        if let Some(value) = fields.get(option) {
            frame.insert(option.to_owned(), value.clone());
        }
    }
    Ok(Value::Object(frame).to_string())
}

/// The `error` code of a refused login's error frame.
pub fn refusal(error_frame: &[u8]) -> Refusal {
    let code = serde_json::from_slice::<Value>(error_frame)
        .ok()
        .and_then(|frame| frame.get("code").and_then(Value::as_str).map(str::to_owned))
        .unwrap_or_else(|| "auth_failed".to_owned());
    Refusal::Login(code)
}

/// `application/x-www-form-urlencoded` pairs of a query string.
fn form_pairs(query: &str) -> impl Iterator<Item = (String, String)> + '_ {
    query.split('&').filter_map(|pair| {
        let (key, value) = pair.split_once('=')?;
        Some((percent_decode(key)?, percent_decode(value)?))
    })
}

fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        match bytes[index] {
            b'%' => {
                let hex = text.get(index + 1..index + 3)?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                index += 3;
            }
            b'+' => {
                out.push(b' ');
                index += 1;
            }
            byte => {
                out.push(byte);
                index += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(auth: Option<Value>, query: Option<&str>) -> Value {
        serde_json::from_str(&login_frame(auth.as_ref(), query).unwrap()).unwrap()
    }

    #[test]
    fn handshakes_become_login_frames() {
        let resume = frame(Some(serde_json::json!({"token": "abc", "cursors": {"room:x": 3}})), None);
        assert_eq!(resume, serde_json::json!({"type": "resume", "token": "abc", "cursors": {"room:x": 3}}));
        let jwt = frame(None, Some("EIO=3&transport=polling&jwt=a.b%2Bc"));
        assert_eq!(jwt, serde_json::json!({"type": "login_jwt", "jwt": "a.b+c"}));
        let open = frame(Some(serde_json::json!({"username": "alice"})), None);
        assert_eq!(open["type"], "login_open");
    }

    #[test]
    fn a_handshake_without_credential_is_refused() {
        assert!(matches!(login_frame(None, Some("EIO=4")), Err(Refusal::NoCredential)));
        let numeric = serde_json::json!({"token": 5});
        assert!(matches!(login_frame(Some(&numeric), None), Err(Refusal::NoCredential)));
        assert_eq!(refusal(br#"{"type":"error","code":"invalid_token"}"#).to_string(), "invalid_token");
    }
}

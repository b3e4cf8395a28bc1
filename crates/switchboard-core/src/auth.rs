//! Identities: password hashes (argon2, off the async threads), session tokens (random, stored
//! hashed, expiring) and JWT (HS256).

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::error::ChatError;

/// Longest accepted password, so hashing cost stays bounded.
pub const MAX_PASSWORD_CHARS: usize = 1024;

/// Hashes a password on the blocking pool: argon2 takes tens of milliseconds by design.
pub async fn hash_password(password: String) -> Result<String, ChatError> {
    tokio::task::spawn_blocking(move || {
        let salt = SaltString::generate(&mut OsRng);
        Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map(|hash| hash.to_string())
            .map_err(|error| ChatError::Internal(format!("password hashing failed: {error}")))
    })
    .await
    .map_err(|error| ChatError::Internal(format!("password hashing task failed: {error}")))?
}

/// Checks a password against a stored PHC string, on the blocking pool. With no stored hash (an
/// unknown user, or one without a password) it checks a decoy, so that a wrong user name takes as
/// long as a wrong password and user names cannot be probed by timing.
pub async fn verify_password(password: String, stored_hash: Option<String>) -> Result<bool, ChatError> {
    tokio::task::spawn_blocking(move || {
        let real = stored_hash.is_some();
        let stored = stored_hash.unwrap_or_else(|| decoy_hash().to_owned());
        let Ok(parsed) = PasswordHash::new(&stored) else {
            return false;
        };
        real && Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok()
    })
    .await
    .map_err(|error| ChatError::Internal(format!("password check task failed: {error}")))
}

fn decoy_hash() -> &'static str {
    static DECOY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DECOY.get_or_init(|| {
        let salt = SaltString::generate(&mut OsRng);
        Argon2::default()
            .hash_password(b"switchboard decoy password", &salt)
            .map(|hash| hash.to_string())
            .unwrap_or_default()
    })
}

/// A new session token (32 random bytes, URL-safe base64) and the hash that is stored.
pub fn new_session_token() -> (String, String) {
    let mut raw = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut raw);
    let token = URL_SAFE_NO_PAD.encode(raw);
    let hash = token_hash(&token);
    (token, hash)
}

/// The stored form of a session token: hex SHA-256. Tokens have 256 bits of entropy, so a fast
/// hash is enough; the point is that a leaked database holds no usable token.
pub fn token_hash(token: &str) -> String {
    let digest = Sha256::digest(token.as_bytes());
    let mut hex = String::with_capacity(64);
    for byte in digest {
        hex.push_str(&format!("{byte:02x}"));
    }
    hex
}

#[derive(Debug, serde::Deserialize)]
struct Claims {
    sub: String,
}

/// Verifies an HS256 JWT (signature and `exp` required) and returns its normalised `sub`.
pub fn verify_jwt(jwt: &str, secret: &str) -> Result<String, ChatError> {
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
    validation.set_required_spec_claims(&["exp", "sub"]);
    let key = jsonwebtoken::DecodingKey::from_secret(secret.as_bytes());
    let data = jsonwebtoken::decode::<Claims>(jwt, &key, &validation)
        .map_err(|error| ChatError::InvalidJwt(error.to_string().to_lowercase()))?;
    switchboard_protocol::names::user_name(&data.claims.sub)
        .map_err(|error| ChatError::InvalidJwt(format!("sub is not a valid user name: {error}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_password_verifies_against_its_own_hash_only() {
        let hash = hash_password("correct horse".into()).await.unwrap();
        assert!(verify_password("correct horse".into(), Some(hash.clone())).await.unwrap());
        assert!(!verify_password("wrong".into(), Some(hash)).await.unwrap());
        assert!(!verify_password("switchboard decoy password".into(), None).await.unwrap());
    }

    #[test]
    fn tokens_are_random_and_stored_hashed() {
        let (token_a, hash_a) = new_session_token();
        let (token_b, _) = new_session_token();
        assert_ne!(token_a, token_b);
        assert_eq!(hash_a, token_hash(&token_a));
        assert_eq!(hash_a.len(), 64);
        assert!(!hash_a.contains(&token_a));
    }

    #[test]
    fn jwts_are_checked_for_signature_and_expiry() {
        let header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
        let key = jsonwebtoken::EncodingKey::from_secret(b"s3cret");
        let far = jsonwebtoken::get_current_timestamp() + 3600;
        let good = jsonwebtoken::encode(&header, &serde_json::json!({"sub": "Alice", "exp": far}), &key).unwrap();
        assert_eq!(verify_jwt(&good, "s3cret").unwrap(), "alice");
        assert!(verify_jwt(&good, "other").is_err());
        let past = jsonwebtoken::get_current_timestamp() - 3600;
        let expired = jsonwebtoken::encode(&header, &serde_json::json!({"sub": "alice", "exp": past}), &key).unwrap();
        assert!(verify_jwt(&expired, "s3cret").is_err());
        let no_exp = jsonwebtoken::encode(&header, &serde_json::json!({"sub": "alice"}), &key).unwrap();
        assert!(verify_jwt(&no_exp, "s3cret").is_err());
    }
}

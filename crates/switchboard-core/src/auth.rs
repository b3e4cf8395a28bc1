//! Identities: password hashes (argon2, off the async threads, bounded), session tokens (random,
//! stored hashed, expiring) and JWT (HS256).

use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{Output, ParamsString, PasswordHash, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use parking_lot::Mutex;
use rand::RngCore;
use sha2::{Digest, Sha256};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::error::ChatError;

/// Longest accepted password, so hashing cost stays bounded.
pub const MAX_PASSWORD_CHARS: usize = 1024;

/// Runs the node's argon2 password hashes and checks, a bounded number at once.
///
/// Each argon2 run needs `m_cost` of memory (19 MiB by default): that is what makes it costly to
/// guess at, and what let a burst of logins or registrations take gigabytes when every one ran at
/// once on its own blocking thread (and glibc kept the freed memory in its arenas). Here at most
/// `concurrent` run at once, each on a memory buffer of its permit that is allocated once and then
/// reused, so the node's password memory stays at `concurrent` x 19 MiB whatever arrives. A hash is
/// CPU-bound, so more of them at once than there are cores would not finish sooner; the default is
/// the number of cores. Up to `max_waiting` more wait for a permit (a few bytes each); beyond that
/// a login is refused at once with `overloaded`, to be retried.
pub struct PasswordChecks {
    permits: Arc<Semaphore>,
    /// Argon2 memory: at most one buffer per permit, taken by a check and given back after it.
    memory: Mutex<Vec<Vec<Block>>>,
    /// Checks waiting for a permit.
    waiting: AtomicUsize,
    max_waiting: usize,
    metrics: Arc<PasswordCheckMetrics>,
}

/// What `/metrics` shows of the password checks.
#[derive(Default)]
pub struct PasswordCheckMetrics {
    /// Argon2 runs, hashes and checks (a login for an unknown name included).
    pub total: AtomicU64,
    pub in_flight: AtomicI64,
    /// The most that ever ran at once.
    pub in_flight_max: AtomicI64,
    pub waiting: AtomicI64,
    /// Refused with `overloaded` because too many were waiting.
    pub refused: AtomicU64,
}

impl PasswordCheckMetrics {
    pub fn render(&self, out: &mut String) {
        use std::fmt::Write;
        let mut line = |name: &str, kind: &str, help: &str, value: i64| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}");
        };
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed) as i64;
        line(
            "switchboard_password_checks_total",
            "counter",
            "Argon2 password hashes and checks run.",
            load(&self.total),
        );
        line(
            "switchboard_password_checks_in_flight",
            "gauge",
            "Password hashes and checks running now.",
            self.in_flight.load(Ordering::Relaxed),
        );
        line(
            "switchboard_password_checks_in_flight_max",
            "gauge",
            "The most password hashes and checks that ran at once since the start.",
            self.in_flight_max.load(Ordering::Relaxed),
        );
        line(
            "switchboard_password_checks_waiting",
            "gauge",
            "Logins and registrations waiting for a password check slot.",
            self.waiting.load(Ordering::Relaxed),
        );
        line(
            "switchboard_password_checks_refused_total",
            "counter",
            "Logins and registrations refused with overloaded: too many were waiting.",
            load(&self.refused),
        );
    }
}

/// Counts a check as waiting while it lives, also when the login that waits is dropped.
struct Waiting<'a>(&'a PasswordChecks);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.waiting.fetch_sub(1, Ordering::Relaxed);
        self.0.metrics.waiting.fetch_sub(1, Ordering::Relaxed);
    }
}

impl PasswordChecks {
    pub fn new(concurrent: usize, max_waiting: usize, metrics: Arc<PasswordCheckMetrics>) -> Arc<Self> {
        let concurrent = concurrent.max(1);
        Arc::new(PasswordChecks {
            permits: Arc::new(Semaphore::new(concurrent)),
            memory: Mutex::new(Vec::with_capacity(concurrent)),
            waiting: AtomicUsize::new(0),
            max_waiting,
            metrics,
        })
    }

    /// Hashes a new password into a PHC string (argon2id, the crate's default parameters).
    pub async fn hash(self: &Arc<Self>, password: String) -> Result<String, ChatError> {
        self.run(move |memory| hash_with(memory, password.as_bytes())).await?
    }

    /// Checks a password against a stored PHC string. With no stored hash (an unknown user, or one
    /// without a password) it runs the same argon2 work on a throwaway salt, so that a wrong user
    /// name takes as long as a wrong password and user names cannot be probed by timing.
    pub async fn verify(self: &Arc<Self>, password: String, stored_hash: Option<String>) -> Result<bool, ChatError> {
        self.run(move |memory| match stored_hash {
            Some(stored) => verify_with(memory, password.as_bytes(), &stored),
            None => {
                let _ = hash_with(memory, password.as_bytes());
                false
            }
        })
        .await
    }

    /// Waits for a permit (or refuses when too many wait), then runs `job` on the blocking pool
    /// with the permit's memory. The permit goes with the job: a login dropped meanwhile does not
    /// free it before the hash is done, so the bound holds.
    async fn run<T: Send + 'static>(
        self: &Arc<Self>,
        job: impl FnOnce(&mut Vec<Block>) -> T + Send + 'static,
    ) -> Result<T, ChatError> {
        let permit = match self.permits.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => self.wait_for_permit().await?,
        };
        let checks = self.clone();
        tokio::task::spawn_blocking(move || checks.run_now(permit, job))
            .await
            .map_err(|error| ChatError::Internal(format!("password check task failed: {error}")))
    }

    async fn wait_for_permit(&self) -> Result<OwnedSemaphorePermit, ChatError> {
        if self.waiting.fetch_add(1, Ordering::Relaxed) >= self.max_waiting {
            self.waiting.fetch_sub(1, Ordering::Relaxed);
            self.metrics.refused.fetch_add(1, Ordering::Relaxed);
            return Err(ChatError::PasswordChecksBusy);
        }
        self.metrics.waiting.fetch_add(1, Ordering::Relaxed);
        let _waiting = Waiting(self);
        self.permits.clone().acquire_owned().await.map_err(|_| ChatError::Internal("password checks closed".into()))
    }

    fn run_now<T>(&self, permit: OwnedSemaphorePermit, job: impl FnOnce(&mut Vec<Block>) -> T) -> T {
        let metrics = &self.metrics;
        let running = metrics.in_flight.fetch_add(1, Ordering::Relaxed) + 1;
        metrics.in_flight_max.fetch_max(running, Ordering::Relaxed);
        metrics.total.fetch_add(1, Ordering::Relaxed);
        // There is a buffer for every permit but this one's, so this allocates only until every
        // permit has been used once.
        let mut memory = self.memory.lock().pop().unwrap_or_default();
        let result = job(&mut memory);
        self.memory.lock().push(memory);
        metrics.in_flight.fetch_sub(1, Ordering::Relaxed);
        drop(permit);
        result
    }
}

/// Grows `memory` to `blocks` (once per buffer: every hash here has the same parameters).
fn memory_for(memory: &mut Vec<Block>, blocks: usize) -> &mut [Block] {
    if memory.len() < blocks {
        memory.resize(blocks, Block::default());
    }
    &mut memory[..blocks]
}

fn hash_with(memory: &mut Vec<Block>, password: &[u8]) -> Result<String, ChatError> {
    let failed = |error: &dyn std::fmt::Display| ChatError::Internal(format!("password hashing failed: {error}"));
    let argon2 = Argon2::default();
    let params = argon2.params().clone();
    let salt = SaltString::generate(&mut OsRng);
    let mut salt_bytes = [0u8; 64];
    let salt_bytes = salt.as_salt().decode_b64(&mut salt_bytes).map_err(|error| failed(&error))?;
    let mut output = [0u8; Params::DEFAULT_OUTPUT_LEN];
    argon2
        .hash_password_into_with_memory(password, salt_bytes, &mut output, memory_for(memory, params.block_count()))
        .map_err(|error| failed(&error))?;
    let hash = PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(&params).map_err(|error| failed(&error))?,
        salt: Some(salt.as_salt()),
        hash: Some(Output::new(&output).map_err(|error| failed(&error))?),
    };
    Ok(hash.to_string())
}

/// Recomputes the hash of a stored PHC string with its own parameters and compares the outputs in
/// constant time (`Output`'s equality).
fn verify_with(memory: &mut Vec<Block>, password: &[u8], stored: &str) -> bool {
    let Ok(hash) = PasswordHash::new(stored) else {
        return false;
    };
    let (Some(salt), Some(expected)) = (hash.salt, hash.hash) else {
        return false;
    };
    let Ok(algorithm) = Algorithm::try_from(hash.algorithm) else {
        return false;
    };
    let version = match hash.version.map(Version::try_from) {
        None => Version::default(),
        Some(Ok(version)) => version,
        Some(Err(_)) => return false,
    };
    let Ok(params) = Params::try_from(&hash) else {
        return false;
    };
    let mut salt_bytes = [0u8; 64];
    let Ok(salt_bytes) = salt.decode_b64(&mut salt_bytes) else {
        return false;
    };
    let blocks = params.block_count();
    let mut output = vec![0u8; expected.len()];
    let computed = Argon2::new(algorithm, version, params).hash_password_into_with_memory(
        password,
        salt_bytes,
        &mut output,
        memory_for(memory, blocks),
    );
    computed.is_ok() && Output::new(&output).is_ok_and(|output| output == expected)
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
    // A `format!` per byte was 6% of a token login's instructions (callgrind).
    hex::encode(Sha256::digest(token.as_bytes()))
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

    fn checks(concurrent: usize, max_waiting: usize) -> Arc<PasswordChecks> {
        PasswordChecks::new(concurrent, max_waiting, Arc::default())
    }

    #[tokio::test]
    async fn a_password_verifies_against_its_own_hash_only() {
        let checks = checks(1, 8);
        let hash = checks.hash("correct horse".into()).await.unwrap();
        assert!(checks.verify("correct horse".into(), Some(hash.clone())).await.unwrap());
        assert!(!checks.verify("wrong".into(), Some(hash)).await.unwrap());
        assert!(!checks.verify("correct horse".into(), None).await.unwrap());
        assert_eq!(checks.metrics.total.load(Ordering::Relaxed), 4, "an unknown user costs a hash too");
        assert_eq!(checks.memory.lock().len(), 1, "one permit, one reused buffer");
    }

    #[test]
    fn hashes_on_reused_memory_are_standard_phc_strings() {
        use argon2::password_hash::{PasswordHasher, PasswordVerifier};
        let mut memory = Vec::new();
        let ours = hash_with(&mut memory, b"correct horse").unwrap();
        let again = hash_with(&mut memory, b"correct horse").unwrap();
        assert_ne!(ours, again, "a new salt every time");
        for hash in [&ours, &again] {
            let parsed = PasswordHash::new(hash).unwrap();
            assert!(Argon2::default().verify_password(b"correct horse", &parsed).is_ok(), "{hash}");
        }
        let salt = SaltString::generate(&mut OsRng);
        let theirs = Argon2::default().hash_password(b"correct horse", &salt).unwrap().to_string();
        assert!(verify_with(&mut memory, b"correct horse", &theirs), "hashes stored before still verify");
        assert!(!verify_with(&mut memory, b"correct horsf", &theirs));
        assert!(!verify_with(&mut memory, b"correct horse", "not a phc string"));
    }

    #[tokio::test]
    async fn past_the_waiting_bound_a_check_is_refused_at_once() {
        let checks = checks(1, 1);
        let held = checks.permits.clone().try_acquire_owned().unwrap();
        let waiting = tokio::spawn({
            let checks = checks.clone();
            async move { checks.verify("password".into(), None).await }
        });
        while checks.waiting.load(Ordering::Relaxed) == 0 {
            tokio::task::yield_now().await;
        }
        let refused = checks.verify("password".into(), None).await;
        assert!(matches!(refused, Err(ChatError::PasswordChecksBusy)), "{refused:?}");
        assert_eq!(checks.metrics.refused.load(Ordering::Relaxed), 1);
        drop(held);
        assert!(!waiting.await.unwrap().unwrap(), "the waiting check runs once a permit is free");
        assert_eq!(checks.metrics.waiting.load(Ordering::Relaxed), 0);
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

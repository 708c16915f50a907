//! The auth core: the login password, bearer tokens, login sessions and the login rate
//! limiter — the state behind `web::auth`'s guard and the `hindsight token` CLI (docs/API.md
//! "Auth").
//!
//! - Password: it comes from `http.password` or is generated once
//!   (logged once at warn level); only a PBKDF2-HMAC-SHA256 hash with a random salt is kept
//!   (`{state_dir}/auth.json`), and it is compared in constant time.
//! - Sessions: a random 256-bit cookie value; the server keeps its SHA-256 in RAM and in
//!   `{state_dir}/sessions.json`, written only at login, logout and expiry (last use is kept in
//!   RAM).
//! - Bearer tokens: `{state_dir}/tokens.json` (SHA-256 of each token, mode 0600), shared with
//!   the `hindsight token` CLI; the daemon re-reads the file when it changed (inode, size or
//!   mtime) the next time a token is presented, so a revoke takes effect without a restart.
//! - Login failures are limited per peer address ([`RateLimiter`]).
//!
//! Must never speak HTTP (no warp, no headers, nothing of `crate::web`: `web::auth` reads the
//! requests and calls this), and never log a password (except the generated one, once), a
//! token or a cookie.

mod password;
mod rate_limit;
mod sessions;
mod tokens;

pub use password::{generate_password, hash_password, verify_password};
pub use rate_limit::{limit_key, RateLimiter, FAIL_WINDOW, MAX_FAILURES};
pub use sessions::SessionInfo;
pub use tokens::{create_token, list_tokens, revoke_token, tokens_path, valid_token_name, TokenEntry, TokenInfo};

use crate::config::Config;
use rate_limit::LIMITER_CAPACITY;
use serde::{Deserialize, Serialize};
use sessions::Session;
use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tokens::TokenCache;

/// Why auth state could not be set up or saved.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// A state file could not be read, parsed or written.
    #[error("http.state_dir: {path}: {message}")]
    State {
        /// The file.
        path: String,
        /// What went wrong.
        message: String,
    },
    /// No randomness from the OS.
    #[error("no randomness available from the OS")]
    Random,
    /// Bad token name or unknown token.
    #[error("{0}")]
    Token(String),
    /// A token with that name exists.
    #[error("a token named {0:?} already exists (revoke it first)")]
    TokenExists(String),
}

fn state_err(path: &Path, message: impl std::fmt::Display) -> AuthError {
    AuthError::State { path: path.display().to_string(), message: message.to_string() }
}

/// Wall-clock now in Unix seconds (the auth files count in seconds).
fn now_s() -> i64 {
    crate::time::wall_now_ms().div_euclid(1000)
}

/// Unix seconds as the API's RFC 3339 ([`crate::time::rfc3339_ms`]).
fn rfc3339(s: i64) -> String {
    crate::time::rfc3339_ms(s.saturating_mul(1000))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok()).collect()
}

fn random_bytes<const N: usize>() -> Result<[u8; N], AuthError> {
    use ring::rand::SecureRandom;
    let mut b = [0u8; N];
    ring::rand::SystemRandom::new().fill(&mut b).map_err(|_| AuthError::Random)?;
    Ok(b)
}

/// SHA-256 of `s`, hex.
pub fn sha256_hex(s: &str) -> String {
    hex(ring::digest::digest(&ring::digest::SHA256, s.as_bytes()).as_ref())
}

/// Equal strings, compared without early exit (also the embedded MQTT broker's credentials).
pub fn ct_eq(a: &str, b: &str) -> bool {
    let (a, b) = (sha256_hex(a), sha256_hex(b));
    a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Read a JSON state file; missing → `None`.
fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<Option<T>, AuthError> {
    match std::fs::read(path) {
        Ok(b) => serde_json::from_slice(&b).map(Some).map_err(|e| state_err(path, format!("not valid: {e}"))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(state_err(path, format!("cannot read: {e}"))),
    }
}

/// Write a JSON state file atomically, mode 0600.
fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<(), AuthError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| state_err(dir, format!("cannot create: {e}")))?;
    }
    let data = serde_json::to_vec_pretty(value).map_err(|e| state_err(path, e))?;
    crate::storage::write_private(path, &data, 0o600).map_err(|e| state_err(path, format!("cannot write: {e}")))
}

/// `auth.json`: the generated password's hash.
#[derive(Serialize, Deserialize)]
struct AuthFile {
    password_hash: String,
    created_at: i64,
}

/// Who a request is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    /// A session cookie: the user and the session's hash.
    Session(String, String),
    /// A bearer token: its name.
    Token(String),
}

impl Identity {
    /// The user or token name.
    pub fn name(&self) -> &str {
        match self {
            Identity::Session(u, _) => u,
            Identity::Token(n) => n,
        }
    }
}

/// Login, sessions, tokens.
pub struct Auth {
    enabled: bool,
    tls: bool,
    /// This machine's host name (`web::auth::loopback_host`).
    own_host: String,
    username: String,
    password_hash: String,
    session_max_age: i64,
    state_dir: PathBuf,
    sessions: Mutex<HashMap<String, Session>>,
    limiter: Mutex<RateLimiter>,
    /// Password hashes computed at once (login).
    hashing: tokio::sync::Semaphore,
    tokens: Mutex<TokenCache>,
    /// Serialises sessions.json writes.
    write_lock: Mutex<()>,
}

impl Auth {
    /// Set up from the config: hash (or generate) the password, load sessions. Blocking file
    /// I/O and hashing: call from `spawn_blocking`.
    pub fn new(config: &Config) -> Result<Auth, AuthError> {
        let http = &config.http;
        let state_dir = config.state_dir();
        let enabled = http.auth_enabled();
        let password_hash = match (&http.password, enabled) {
            (Some(p), false) => hash_password(p)?,
            // The hash of the configured password is kept while the password stays the same
            // (salted: hashing again would give another one), so sessions opened with it survive a
            // restart and end when it changes (see `credential`). Written only when it changes.
            (Some(p), true) => {
                let path = state_dir.join("config-password.json");
                match read_json::<AuthFile>(&path).ok().flatten() {
                    Some(f) if verify_password(&f.password_hash, p) => f.password_hash,
                    _ => {
                        let f = AuthFile { password_hash: hash_password(p)?, created_at: now_s() };
                        write_json(&path, &f)?;
                        f.password_hash
                    }
                }
            }
            (None, false) => String::new(),
            (None, true) => {
                let path = state_dir.join("auth.json");
                match read_json::<AuthFile>(&path)? {
                    Some(f) => f.password_hash,
                    None => {
                        let password = generate_password(20)?;
                        let f = AuthFile { password_hash: hash_password(&password)?, created_at: now_s() };
                        write_json(&path, &f)?;
                        log::warn!(
                            "LOGIN PASSWORD generated for user {:?}: {password}   (shown only this once; \
                             only its hash is kept in {}. Set http.password, or delete that file and \
                             restart, to change it)",
                            http.username,
                            path.display()
                        );
                        f.password_hash
                    }
                }
            }
        };
        let auth = Auth {
            enabled,
            tls: http.tls_enabled(),
            own_host: nix::unistd::gethostname().ok().and_then(|h| h.into_string().ok()).unwrap_or_default(),
            username: http.username.clone(),
            password_hash,
            session_max_age: i64::from(http.session_days) * 86_400,
            state_dir,
            sessions: Mutex::new(HashMap::new()),
            limiter: Mutex::new(RateLimiter::new(MAX_FAILURES, FAIL_WINDOW, LIMITER_CAPACITY)),
            hashing: tokio::sync::Semaphore::new(2),
            tokens: Mutex::new(TokenCache::default()),
            write_lock: Mutex::new(()),
        };
        auth.load_sessions()?;
        Ok(auth)
    }

    /// Which password a session was opened with (a digest of its hash): a new password ends
    /// every session opened with the old one, also those kept in sessions.json.
    fn credential(&self) -> String {
        sha256_hex(&format!("{}\n{}", self.username, self.password_hash))[..16].to_string()
    }

    /// Whether requests need credentials.
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// `{state_dir}`.
    pub fn state_dir(&self) -> &Path {
        &self.state_dir
    }

    /// Whether HTTPS is served (the session cookie is then `Secure`).
    pub fn tls(&self) -> bool {
        self.tls
    }

    /// This machine's host name.
    pub fn own_host(&self) -> &str {
        &self.own_host
    }

    /// The login name.
    pub fn username(&self) -> &str {
        &self.username
    }

    /// Session lifetime in seconds.
    pub fn session_max_age(&self) -> i64 {
        self.session_max_age
    }

    /// Check a login attempt from `key` (see [`limit_key`]) against the rate limit, counting it
    /// as a failure from the start (cleared by [`login_succeeded`](Self::login_succeeded)):
    /// logins sent all at once cannot each pass the check before any failure is recorded.
    /// `Err(retry_after)` when `key` has used up its failures.
    pub fn login_attempt(&self, key: IpAddr, now: Instant) -> Result<(), Duration> {
        let mut l = self.limiter.lock().unwrap_or_else(|e| e.into_inner());
        l.check(key, now).map(|()| l.fail(key, now))
    }

    /// Forget `key`'s login failures (after a successful login).
    pub fn login_succeeded(&self, key: IpAddr) {
        self.limiter.lock().unwrap_or_else(|e| e.into_inner()).clear(key);
    }

    /// A permit to check a password: PBKDF2 costs ~100 ms of a Pi core, so at most two run at
    /// once, whatever arrives.
    pub async fn hashing_permit(&self) -> Result<tokio::sync::SemaphorePermit<'_>, tokio::sync::AcquireError> {
        self.hashing.acquire().await
    }

    /// Whether `username` and `password` are the login's (blocking: PBKDF2). Both checks always
    /// run: the answer's timing does not tell which one failed.
    pub fn check_credentials(&self, username: &str, password: &str) -> bool {
        let pass = verify_password(&self.password_hash, password);
        ct_eq(username, &self.username) & pass
    }
}

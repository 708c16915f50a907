//! Login, sessions, bearer tokens and the guard in front of every route (CONTRACT.md "Auth").
//!
//! - The password comes from `http.password` or is generated once (logged once at warn level);
//!   only a PBKDF2-HMAC-SHA256 hash with a random salt is kept (`{state_dir}/auth.json`), and it
//!   is compared in constant time.
//! - Sessions: a random 256-bit cookie `hindsight_session`; the server keeps its SHA-256 in RAM
//!   and in `{state_dir}/sessions.json`, written only at login, logout and expiry (last use is
//!   kept in RAM).
//! - Bearer tokens: `{state_dir}/tokens.json` (SHA-256 of each token, mode 0600), shared with
//!   the `hindsight token` CLI; the daemon re-reads the file when it changed (inode, size or
//!   mtime) the next time a token is presented, so a revoke takes effect without a restart.
//! - Login failures are limited per peer address ([`RateLimiter`]); cookie-authenticated
//!   unsafe requests and WebSocket upgrades must be same-origin ([`same_origin`]).
//!
//! Must never log a password (except the generated one, once), a token or a cookie.

use super::{json_error, peer, ApiError};
use crate::config::Config;
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use warp::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use warp::{Filter, Rejection, Reply};

/// The session cookie's name.
pub const COOKIE: &str = "hindsight_session";
/// Failed logins allowed per address within [`FAIL_WINDOW`].
pub const MAX_FAILURES: usize = 5;
/// The window login failures are counted in.
pub const FAIL_WINDOW: Duration = Duration::from_secs(300);
/// Most addresses the rate limiter remembers.
const LIMITER_CAPACITY: usize = 4096;
/// Most sessions kept; a login beyond this ends the oldest one.
const MAX_SESSIONS: usize = 256;
/// PBKDF2 rounds.
const PBKDF2_ROUNDS: u32 = 100_000;
/// Paths answered without credentials.
const EXEMPT: &[&str] = &["/api/health", "/login", "/api/login", "/app.css", "/favicon.ico"];

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

fn now_s() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

fn rfc3339(s: i64) -> String {
    jiff::Timestamp::from_second(s).map(|t| t.to_string()).unwrap_or_default()
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

/// A random password of `len` characters without look-alikes (0/O, 1/l/I).
pub fn generate_password(len: usize) -> Result<String, AuthError> {
    const ALPHABET: &[u8] = b"abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut out = String::with_capacity(len);
    while out.len() < len {
        for b in random_bytes::<32>()? {
            // 256 - 256 % 57 keeps the choice uniform.
            if (b as usize) < 256 - 256 % ALPHABET.len() && out.len() < len {
                out.push(ALPHABET[b as usize % ALPHABET.len()] as char);
            }
        }
    }
    Ok(out)
}

/// `pbkdf2-sha256$ROUNDS$SALT$HASH` (hex).
pub fn hash_password(password: &str) -> Result<String, AuthError> {
    let salt = random_bytes::<16>()?;
    let mut out = [0u8; 32];
    let rounds = std::num::NonZeroU32::new(PBKDF2_ROUNDS).ok_or(AuthError::Random)?;
    ring::pbkdf2::derive(ring::pbkdf2::PBKDF2_HMAC_SHA256, rounds, &salt, password.as_bytes(), &mut out);
    Ok(format!("pbkdf2-sha256${PBKDF2_ROUNDS}${}${}", hex(&salt), hex(&out)))
}

/// Whether `password` matches `stored` (constant time in the password).
pub fn verify_password(stored: &str, password: &str) -> bool {
    let mut it = stored.split('$');
    let (Some("pbkdf2-sha256"), Some(rounds), Some(salt), Some(hash), None) =
        (it.next(), it.next(), it.next(), it.next(), it.next())
    else {
        return false;
    };
    let (Some(rounds), Some(salt), Some(hash)) =
        (rounds.parse().ok().and_then(std::num::NonZeroU32::new), unhex(salt), unhex(hash))
    else {
        return false;
    };
    ring::pbkdf2::verify(ring::pbkdf2::PBKDF2_HMAC_SHA256, rounds, &salt, password.as_bytes(), &hash).is_ok()
}

/// Equal strings, compared without early exit.
fn ct_eq(a: &str, b: &str) -> bool {
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

// ---------------------------------------------------------------------------------------------
// Tokens (shared with the CLI)

/// One bearer token as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TokenEntry {
    /// Its name.
    pub name: String,
    /// SHA-256 of the token, hex.
    pub hash: String,
    /// Unix seconds.
    pub created_at: i64,
}

/// `{state_dir}/tokens.json`.
pub fn tokens_path(state_dir: &Path) -> PathBuf {
    state_dir.join("tokens.json")
}

/// Whether `name` is a valid token name: `[A-Za-z0-9_.-]{1,64}`.
pub fn valid_token_name(name: &str) -> bool {
    (1..=64).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
}

/// The stored tokens.
pub fn list_tokens(state_dir: &Path) -> Result<Vec<TokenEntry>, AuthError> {
    Ok(read_json(&tokens_path(state_dir))?.unwrap_or_default())
}

/// Run a read-modify-write of tokens.json holding an exclusive lock (`tokens.lock`), so the
/// daemon and the `token` CLI never interleave and lose each other's change.
fn tokens_locked<R>(state_dir: &Path, f: impl FnOnce() -> Result<R, AuthError>) -> Result<R, AuthError> {
    std::fs::create_dir_all(state_dir).map_err(|e| state_err(state_dir, format!("cannot create: {e}")))?;
    let path = state_dir.join("tokens.lock");
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| state_err(&path, format!("cannot open: {e}")))?;
    lock.lock().map_err(|e| state_err(&path, format!("cannot lock: {e}")))?;
    f()
}

/// Create token `name`; returns the token (the only time it is visible).
pub fn create_token(state_dir: &Path, name: &str) -> Result<String, AuthError> {
    if !valid_token_name(name) {
        return Err(AuthError::Token(format!("token name {name:?} must match [A-Za-z0-9_.-]{{1,64}}")));
    }
    tokens_locked(state_dir, || create_token_unlocked(state_dir, name))
}

fn create_token_unlocked(state_dir: &Path, name: &str) -> Result<String, AuthError> {
    let mut tokens = list_tokens(state_dir)?;
    if tokens.iter().any(|t| t.name == name) {
        return Err(AuthError::TokenExists(name.into()));
    }
    let token = format!("hs_{}", hex(&random_bytes::<32>()?));
    tokens.push(TokenEntry { name: name.into(), hash: sha256_hex(&token), created_at: now_s() });
    write_json(&tokens_path(state_dir), &tokens)?;
    Ok(token)
}

/// Revoke token `name`.
pub fn revoke_token(state_dir: &Path, name: &str) -> Result<(), AuthError> {
    tokens_locked(state_dir, || {
        let mut tokens = list_tokens(state_dir)?;
        let before = tokens.len();
        tokens.retain(|t| t.name != name);
        if tokens.len() == before {
            return Err(AuthError::Token(format!("no token named {name:?}")));
        }
        write_json(&tokens_path(state_dir), &tokens)
    })
}

/// The daemon's view of tokens.json, re-read when the file changes.
#[derive(Default)]
struct TokenCache {
    stamp: Option<(u64, u64, i64, i64)>,
    entries: Vec<TokenEntry>,
    last_used: HashMap<String, i64>,
}

// ---------------------------------------------------------------------------------------------
// Rate limiting

/// The rate limiter's key for `ip`: the address, or its /64 for IPv6 (one home network's
/// prefix; a client can pick any address within it).
pub fn limit_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(std::net::Ipv6Addr::from(u128::from(v6) & !((1u128 << 64) - 1))),
        },
        v4 => v4,
    }
}

/// Login failures per address in a sliding window, with a bounded number of addresses.
pub struct RateLimiter {
    max: usize,
    window: Duration,
    capacity: usize,
    failures: HashMap<IpAddr, VecDeque<Instant>>,
}

impl RateLimiter {
    /// `max` failures per `window`, remembering at most `capacity` addresses.
    pub fn new(max: usize, window: Duration, capacity: usize) -> Self {
        RateLimiter { max, window, capacity, failures: HashMap::new() }
    }

    fn expire(&mut self, ip: IpAddr, now: Instant) {
        if let Some(q) = self.failures.get_mut(&ip) {
            while q.front().is_some_and(|t| now.duration_since(*t) >= self.window) {
                q.pop_front();
            }
            if q.is_empty() {
                self.failures.remove(&ip);
            }
        }
    }

    /// `Err(retry_after)` when `ip` has used up its failures.
    pub fn check(&mut self, ip: IpAddr, now: Instant) -> Result<(), Duration> {
        self.expire(ip, now);
        match self.failures.get(&ip) {
            Some(q) if q.len() >= self.max => {
                let oldest = q.front().copied().unwrap_or(now);
                Err(self.window.saturating_sub(now.duration_since(oldest)).max(Duration::from_secs(1)))
            }
            _ => Ok(()),
        }
    }

    /// Count a failure from `ip`.
    pub fn fail(&mut self, ip: IpAddr, now: Instant) {
        if !self.failures.contains_key(&ip) && self.failures.len() >= self.capacity {
            let window = self.window;
            self.failures.retain(|_, q| q.back().is_some_and(|t| now.duration_since(*t) < window));
            if self.failures.len() >= self.capacity {
                // Still full: forget the address whose last failure is oldest.
                let victim = self.failures.iter().min_by_key(|(_, q)| q.back().copied()).map(|(ip, _)| *ip);
                if let Some(v) = victim {
                    self.failures.remove(&v);
                }
            }
        }
        let q = self.failures.entry(ip).or_default();
        q.push_back(now);
        while q.len() > self.max {
            q.pop_front();
        }
    }

    /// Forget `ip`'s failures (after a successful login).
    pub fn clear(&mut self, ip: IpAddr) {
        self.failures.remove(&ip);
    }

    /// Addresses remembered.
    pub fn len(&self) -> usize {
        self.failures.len()
    }

    /// Whether no address is remembered.
    pub fn is_empty(&self) -> bool {
        self.failures.is_empty()
    }
}

// ---------------------------------------------------------------------------------------------
// Request inspection (pure)

/// The value of cookie `name` among all `Cookie` headers.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get_all(header::COOKIE).iter().filter_map(|v| v.to_str().ok()).find_map(|v| cookie_in(v, name))
}

/// The value of cookie `name` in one `Cookie` header value.
pub fn cookie_in<'a>(header: &'a str, name: &str) -> Option<&'a str> {
    header.split(';').filter_map(|p| p.trim().split_once('=')).find(|(k, _)| *k == name).map(|(_, v)| v.trim())
}

/// The token of `Authorization: Bearer TOKEN`.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim()).filter(|t| !t.is_empty())
}

/// Whether `authority` (a Host header: `name[:port]`, `[v6][:port]`) names this machine:
/// `localhost` or `*.localhost`, a loopback address, or `own` (the host name) and `own.local`.
pub fn loopback_host(authority: &str, own: &str) -> bool {
    let host = match authority.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or(""),
        None => authority.split(':').next().unwrap_or(""),
    };
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    if let Ok(ip) = host.parse::<IpAddr>() {
        return ip.is_loopback()
            || matches!(ip, IpAddr::V6(v6) if v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback()));
    }
    let own = own.to_ascii_lowercase();
    host == "localhost"
        || host.ends_with(".localhost")
        || (!own.is_empty() && (host == own || host == format!("{own}.local")))
}

/// Whether a request needs the same-origin check: a method other than GET/HEAD/OPTIONS, or a
/// WebSocket upgrade.
pub fn needs_same_origin(method: &Method, headers: &HeaderMap) -> bool {
    let upgrade =
        headers.get(header::UPGRADE).and_then(|v| v.to_str().ok()).is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    upgrade || !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// Whether the request comes from our own origin: `Origin` equals `{scheme}://{authority}`,
/// or there is no `Origin` and `Sec-Fetch-Site` is absent, `same-origin` or `none`.
pub fn same_origin(headers: &HeaderMap, scheme: &str, authority: Option<&str>) -> bool {
    match headers.get(header::ORIGIN).map(|v| v.to_str()) {
        Some(Ok(origin)) => authority.is_some_and(|a| origin.eq_ignore_ascii_case(&format!("{scheme}://{a}"))),
        Some(Err(_)) => false,
        None => match headers.get("sec-fetch-site").map(|v| v.to_str()) {
            None => true,
            Some(Ok(s)) => s == "same-origin" || s == "none",
            Some(Err(_)) => false,
        },
    }
}

// ---------------------------------------------------------------------------------------------
// Sessions

/// One login session.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Session {
    /// SHA-256 of the cookie value, hex.
    id_hash: String,
    user: String,
    address: String,
    created_at: i64,
    last_seen_at: i64,
    user_agent: String,
    /// [`Auth::credential`] at login (absent in files of older versions: such sessions end).
    #[serde(default)]
    cred: String,
}

/// A session as `/api/sessions` lists it.
#[derive(Debug, Serialize)]
pub struct SessionInfo {
    /// Who.
    pub user: String,
    /// Peer address at login (`ip:port`).
    pub address: String,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339.
    pub last_seen_at: String,
    /// `User-Agent` at login.
    pub user_agent: String,
    /// Whether it is the session making this request.
    pub current: bool,
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
    /// This machine's host name (for [`loopback_host`]).
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
        let path = auth.sessions_path();
        // Only a cache of logins: a damaged file costs a new login, never the start.
        let stored: Vec<Session> = read_json(&path)
            .unwrap_or_else(|e| {
                log::warn!("{e}; starting with no sessions (everyone logs in again)");
                None
            })
            .unwrap_or_default();
        let n = stored.len();
        let now = now_s();
        let cred = auth.credential();
        let live: HashMap<_, _> = stored
            .into_iter()
            .filter(|s| s.created_at + auth.session_max_age > now && s.user == auth.username && s.cred == cred)
            .map(|s| (s.id_hash.clone(), s))
            .collect();
        let expired = live.len() != n;
        *auth.sessions.lock().unwrap_or_else(|e| e.into_inner()) = live;
        if expired {
            auth.save_sessions()?;
        }
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

    fn sessions_path(&self) -> PathBuf {
        self.state_dir.join("sessions.json")
    }

    /// Write sessions.json (blocking).
    fn save_sessions(&self) -> Result<(), AuthError> {
        let _w = self.write_lock.lock().unwrap_or_else(|e| e.into_inner());
        let mut list: Vec<Session> =
            self.sessions.lock().unwrap_or_else(|e| e.into_inner()).values().cloned().collect();
        list.sort_by_key(|s| s.created_at);
        write_json(&self.sessions_path(), &list)
    }

    async fn save_sessions_async(self: &Arc<Self>) {
        let me = self.clone();
        match tokio::task::spawn_blocking(move || me.save_sessions()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => log::error!("cannot save sessions: {e}"),
            Err(e) => log::error!("cannot save sessions: {e}"),
        }
    }

    /// The session for cookie value `cookie`, refreshing its last use; an expired one is removed.
    async fn session(self: &Arc<Self>, cookie: &str) -> Option<(String, String)> {
        let hash = sha256_hex(cookie);
        let now = now_s();
        let mut expired = false;
        let found = {
            let mut map = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
            match map.get_mut(&hash) {
                Some(s) if s.created_at + self.session_max_age > now => {
                    s.last_seen_at = now;
                    Some((s.user.clone(), hash.clone()))
                }
                Some(_) => {
                    map.remove(&hash);
                    expired = true;
                    None
                }
                None => None,
            }
        };
        if expired {
            self.save_sessions_async().await;
        }
        found
    }

    /// The token named by `token`'s hash, re-reading tokens.json if it changed.
    async fn token(&self, token: &str) -> Option<String> {
        let path = tokens_path(&self.state_dir);
        let stamp = tokio::fs::metadata(&path).await.ok().map(|m| {
            use std::os::unix::fs::MetadataExt;
            (m.ino(), m.len(), m.mtime(), m.mtime_nsec())
        });
        let stale = self.tokens.lock().unwrap_or_else(|e| e.into_inner()).stamp != stamp;
        if stale {
            let entries: Vec<TokenEntry> = match tokio::fs::read(&path).await {
                Ok(b) => serde_json::from_slice(&b).unwrap_or_else(|e| {
                    log::error!("{}: not valid, no token accepted: {e}", path.display());
                    Vec::new()
                }),
                Err(_) => Vec::new(),
            };
            let mut cache = self.tokens.lock().unwrap_or_else(|e| e.into_inner());
            cache.entries = entries;
            cache.stamp = stamp;
        }
        let hash = sha256_hex(token);
        let mut cache = self.tokens.lock().unwrap_or_else(|e| e.into_inner());
        let name = cache.entries.iter().find(|t| ct_eq(&t.hash, &hash)).map(|t| t.name.clone())?;
        cache.last_used.insert(name.clone(), now_s());
        Some(name)
    }

    /// Who is making this request, if anyone: a bearer token first, else the session cookie.
    /// `Err(())` when a bearer token is presented but not valid.
    pub async fn identify(self: &Arc<Self>, headers: &HeaderMap) -> Result<Option<Identity>, ()> {
        if let Some(t) = bearer(headers) {
            return self.token(t).await.map(|n| Some(Identity::Token(n))).ok_or(());
        }
        match cookie(headers, COOKIE) {
            Some(c) => Ok(self.session(c).await.map(|(u, h)| Identity::Session(u, h))),
            None => Ok(None),
        }
    }

    fn cookie_header(&self, value: &str, max_age: i64) -> String {
        let secure = if self.tls { "; Secure" } else { "" };
        format!("{COOKIE}={value}; HttpOnly{secure}; SameSite=Strict; Path=/; Max-Age={max_age}")
    }

    /// The guard's decision for one request.
    async fn check(
        self: &Arc<Self>,
        method: Method,
        path: &str,
        query: Option<&str>,
        authority: Option<&str>,
        headers: &HeaderMap,
    ) -> Result<(), Denied> {
        if EXEMPT.contains(&path) {
            return Ok(());
        }
        let scheme = if self.tls { "https" } else { "http" };
        if !self.enabled {
            // No login (loopback development). A page of another site whose name it made resolve
            // to 127.0.0.1 (DNS rebinding) would be "same-origin" and could read clips: only
            // this machine's names are served.
            if let Some(a) = authority.filter(|a| !loopback_host(a, &self.own_host)) {
                return Err(Denied::ForeignHost(a.to_string()));
            }
            // And a page of another site may not make the browser trigger, delete or push a
            // camera here (no cookie protects it).
            return if needs_same_origin(&method, headers) && !same_origin(headers, scheme, authority) {
                Err(Denied::CrossSite)
            } else {
                Ok(())
            };
        }
        // `/metrics` is for scrapers: 401 like the API, never a redirect to the login page.
        let api = path.starts_with("/api/") || path == "/api" || path == "/metrics";
        let unauthorized = || {
            let mut next = path.to_string();
            if let Some(q) = query.filter(|q| !q.is_empty()) {
                next.push('?');
                next.push_str(q);
            }
            if api {
                Denied::Unauthorized
            } else {
                Denied::Login(next)
            }
        };
        match self.identify(headers).await {
            Ok(Some(Identity::Token(_))) => Ok(()),
            Ok(Some(Identity::Session(..))) => {
                if needs_same_origin(&method, headers) && !same_origin(headers, scheme, authority) {
                    Err(Denied::CrossSite)
                } else {
                    Ok(())
                }
            }
            Ok(None) | Err(()) => Err(unauthorized()),
        }
    }
}

/// Why the guard refused a request.
#[derive(Debug)]
enum Denied {
    /// API path without valid credentials: 401 JSON.
    Unauthorized,
    /// Page without credentials: 303 to `/login?next=`.
    Login(String),
    /// Cookie-authenticated cross-site unsafe request: 403.
    CrossSite,
    /// Auth off and the Host header names another machine (DNS rebinding): 403.
    ForeignHost(String),
}

impl warp::reject::Reject for Denied {}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Turns the guard's refusals into responses (others go to `super::recover`).
pub async fn recover(r: Rejection) -> Result<warp::reply::Response, std::convert::Infallible> {
    match r.find::<Denied>() {
        Some(Denied::Unauthorized) => {
            let mut resp =
                json_error(StatusCode::UNAUTHORIZED, "login required (session cookie or Authorization: Bearer TOKEN)");
            resp.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            Ok(resp)
        }
        Some(Denied::CrossSite) => Ok(json_error(StatusCode::FORBIDDEN, "cross-site request refused")),
        Some(Denied::ForeignHost(host)) => Ok(json_error(
            StatusCode::FORBIDDEN,
            &format!(
                "Host {host:?} is not this machine: without login only localhost, loopback addresses and this \
                 machine's name are served"
            ),
        )),
        Some(Denied::Login(next)) => {
            let loc = format!("/login?next={}", percent_encode(next));
            let mut resp = warp::reply::with_status("", StatusCode::SEE_OTHER).into_response();
            if let Ok(v) = HeaderValue::from_str(&loc) {
                resp.headers_mut().insert(header::LOCATION, v);
            }
            Ok(resp)
        }
        None => super::recover(r).await,
    }
}

/// A filter that passes only requests allowed to go on (rejects with the guard's refusal).
pub fn guard(auth: Arc<Auth>) -> impl Filter<Extract = (), Error = Rejection> + Clone {
    warp::method()
        .and(warp::path::full())
        .and(warp::query::raw().map(Some).or(warp::any().map(|| None)).unify())
        .and(warp::host::optional())
        .and(warp::header::headers_cloned())
        .and_then(
            move |m: Method,
                  p: warp::path::FullPath,
                  q: Option<String>,
                  host: Option<warp::host::Authority>,
                  h: HeaderMap| {
                let auth = auth.clone();
                async move {
                    let authority = host.as_ref().map(|a| a.as_str());
                    auth.check(m, p.as_str(), q.as_deref(), authority, &h).await.map_err(warp::reject::custom)
                }
            },
        )
        .untuple_one()
}

#[derive(Deserialize)]
struct LoginBody {
    username: String,
    password: String,
}

#[derive(Deserialize)]
struct TokenBody {
    name: String,
}

#[derive(Serialize)]
struct TokenInfo {
    name: String,
    created_at: String,
    last_used_at: Option<String>,
}

fn json_with(status: StatusCode, v: &serde_json::Value) -> warp::reply::Response {
    warp::reply::with_status(warp::reply::json(v), status).into_response()
}

async fn login(
    auth: Arc<Auth>,
    body: Result<LoginBody, ApiError>,
    remote: Option<SocketAddr>,
    user_agent: Option<String>,
) -> Result<warp::reply::Response, ApiError> {
    if !auth.enabled {
        return Ok(json_with(StatusCode::OK, &serde_json::json!({"user": null, "auth": false})));
    }
    let ip = remote.map(|a| a.ip()).unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    let key = limit_key(ip);
    let now = Instant::now();
    let LoginBody { username, password } = body?;
    // The attempt counts as a failure from the start (cleared on success): logins sent all at
    // once cannot each pass the check before any failure is recorded.
    let limited = {
        let mut l = auth.limiter.lock().unwrap_or_else(|e| e.into_inner());
        l.check(key, now).map(|()| l.fail(key, now))
    };
    if let Err(wait) = limited {
        return Err(ApiError::TooManyRequests(wait.as_secs().max(1)));
    }
    // PBKDF2 costs ~100 ms of a Pi core: at most two at once, whatever arrives.
    let _permit = auth.hashing.acquire().await.map_err(|e| ApiError::Internal(format!("login check: {e}")))?;
    let a2 = auth.clone();
    let ok = tokio::task::spawn_blocking(move || {
        // Both checks always run: the answer's timing does not tell which one failed.
        let pass = verify_password(&a2.password_hash, &password);
        ct_eq(&username, &a2.username) & pass
    })
    .await
    .map_err(|e| ApiError::Internal(format!("login check failed: {e}")))?;
    if !ok {
        log::info!("failed login from {ip}");
        return Err(ApiError::Unauthorized("wrong user name or password".into()));
    }
    auth.limiter.lock().unwrap_or_else(|e| e.into_inner()).clear(key);
    let value = hex(&random_bytes::<32>().map_err(|e| ApiError::Internal(e.to_string()))?);
    let now_s = now_s();
    let session = Session {
        id_hash: sha256_hex(&value),
        user: auth.username.clone(),
        address: remote.map(|a| a.to_string()).unwrap_or_default(),
        created_at: now_s,
        last_seen_at: now_s,
        user_agent: user_agent.unwrap_or_default().chars().take(256).collect(),
        cred: auth.credential(),
    };
    {
        let mut map = auth.sessions.lock().unwrap_or_else(|e| e.into_inner());
        map.retain(|_, s| s.created_at + auth.session_max_age > now_s);
        while map.len() >= MAX_SESSIONS {
            let oldest = map.values().min_by_key(|s| s.last_seen_at).map(|s| s.id_hash.clone());
            match oldest {
                Some(h) => map.remove(&h),
                None => break,
            };
        }
        map.insert(session.id_hash.clone(), session);
    }
    auth.save_sessions_async().await;
    log::info!("login: {} from {ip}", auth.username);
    let mut resp = json_with(StatusCode::OK, &serde_json::json!({"user": auth.username, "auth": true}));
    if let Ok(v) = HeaderValue::from_str(&auth.cookie_header(&value, auth.session_max_age)) {
        resp.headers_mut().insert(header::SET_COOKIE, v);
    }
    Ok(resp)
}

async fn logout(auth: Arc<Auth>, headers: HeaderMap) -> Result<warp::reply::Response, ApiError> {
    if let Some(c) = cookie(&headers, COOKIE) {
        let removed = auth.sessions.lock().unwrap_or_else(|e| e.into_inner()).remove(&sha256_hex(c)).is_some();
        if removed {
            auth.save_sessions_async().await;
        }
    }
    let mut resp = json_with(StatusCode::OK, &serde_json::json!({"user": null}));
    if let Ok(v) = HeaderValue::from_str(&auth.cookie_header("", 0)) {
        resp.headers_mut().insert(header::SET_COOKIE, v);
    }
    Ok(resp)
}

async fn session_info(auth: Arc<Auth>, headers: HeaderMap) -> Result<warp::reply::Response, ApiError> {
    if !auth.enabled {
        return Ok(json_with(StatusCode::OK, &serde_json::json!({"user": null, "auth": false})));
    }
    match auth.identify(&headers).await {
        Ok(Some(Identity::Session(u, _))) => {
            Ok(json_with(StatusCode::OK, &serde_json::json!({"user": u, "auth": true, "via": "session"})))
        }
        Ok(Some(Identity::Token(n))) => Ok(json_with(
            StatusCode::OK,
            &serde_json::json!({"user": auth.username, "auth": true, "via": "token", "token": n}),
        )),
        _ => Err(ApiError::Unauthorized("not logged in".into())),
    }
}

async fn sessions_list(auth: Arc<Auth>, headers: HeaderMap) -> Result<warp::reply::Response, ApiError> {
    let current = cookie(&headers, COOKIE).map(sha256_hex);
    let now = now_s();
    let mut list: Vec<(i64, SessionInfo)> = auth
        .sessions
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .values()
        .filter(|s| s.created_at + auth.session_max_age > now)
        .map(|s| {
            (
                s.created_at,
                SessionInfo {
                    user: s.user.clone(),
                    address: s.address.clone(),
                    created_at: rfc3339(s.created_at),
                    last_seen_at: rfc3339(s.last_seen_at),
                    user_agent: s.user_agent.clone(),
                    current: current.as_deref() == Some(s.id_hash.as_str()),
                },
            )
        })
        .collect();
    list.sort_by_key(|(t, _)| -t);
    let list: Vec<SessionInfo> = list.into_iter().map(|(_, s)| s).collect();
    Ok(warp::reply::json(&list).into_response())
}

fn token_error(e: AuthError) -> ApiError {
    match e {
        AuthError::Token(m) if m.starts_with("no token") => ApiError::NotFound(m),
        AuthError::Token(m) => ApiError::BadRequest(m),
        AuthError::TokenExists(_) => ApiError::Conflict(e.to_string()),
        other => ApiError::Internal(other.to_string()),
    }
}

/// A handler's result as a response.
fn done(r: Result<warp::reply::Response, ApiError>) -> warp::reply::Response {
    r.unwrap_or_else(|e| super::error_response(&e))
}

/// A small JSON body, parsed here so a bad one answers 400 on this route.
fn json_body<T: for<'de> Deserialize<'de> + Send>(
) -> impl Filter<Extract = (Result<T, ApiError>,), Error = std::convert::Infallible> + Clone {
    // Never rejects: a missing or too large body is this route's 400, not another route's 404.
    warp::body::content_length_limit(16 * 1024)
        .and(warp::body::bytes())
        .map(|b: bytes::Bytes| {
            serde_json::from_slice::<T>(&b).map_err(|e| ApiError::BadRequest(format!("bad JSON body: {e}")))
        })
        .or(warp::any()
            .map(|| Err(ApiError::BadRequest("send a JSON body of at most 16 KiB, with a Content-Length".into()))))
        .unify()
}

async fn tokens_list(auth: Arc<Auth>) -> Result<warp::reply::Response, ApiError> {
    let dir = auth.state_dir.clone();
    let list = tokio::task::spawn_blocking(move || list_tokens(&dir))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?
        .map_err(token_error)?;
    let used = auth.tokens.lock().unwrap_or_else(|e| e.into_inner()).last_used.clone();
    let out: Vec<TokenInfo> = list
        .into_iter()
        .map(|t| TokenInfo {
            last_used_at: used.get(&t.name).map(|s| rfc3339(*s)),
            created_at: rfc3339(t.created_at),
            name: t.name,
        })
        .collect();
    Ok(warp::reply::json(&out).into_response())
}

async fn tokens_create(auth: Arc<Auth>, body: Result<TokenBody, ApiError>) -> Result<warp::reply::Response, ApiError> {
    let body = body?;
    let dir = auth.state_dir.clone();
    let name = body.name.clone();
    let token = tokio::task::spawn_blocking(move || create_token(&dir, &name))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?
        .map_err(token_error)?;
    log::info!("token {:?} created", body.name);
    Ok(json_with(StatusCode::CREATED, &serde_json::json!({"name": body.name, "token": token})))
}

async fn tokens_revoke(name: String, auth: Arc<Auth>) -> Result<warp::reply::Response, ApiError> {
    let dir = auth.state_dir.clone();
    let n2 = name.clone();
    tokio::task::spawn_blocking(move || revoke_token(&dir, &n2))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?
        .map_err(token_error)?;
    log::info!("token {name:?} revoked");
    Ok(json_with(StatusCode::OK, &serde_json::json!({"name": name, "revoked": true})))
}

/// The login page.
pub const LOGIN_HTML: &str = include_str!("../../web/login.html");

/// Routes answered without credentials: the login page and `POST /api/login`.
pub fn public_routes(auth: Arc<Auth>) -> impl Filter<Extract = (warp::reply::Response,), Error = Rejection> + Clone {
    let a = warp::any().map(move || auth.clone());
    let page = warp::path!("login").and(warp::get().or(warp::head()).unify()).map(|| {
        let mut r = warp::reply::html(LOGIN_HTML).into_response();
        r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        r
    });
    let login = warp::path!("api" / "login")
        .and(warp::post())
        .and(a.clone())
        .and(json_body::<LoginBody>())
        .and(peer())
        .and(warp::header::optional::<String>("user-agent"))
        .then(login)
        .map(done);
    page.or(login).unify()
}

/// Routes behind the guard: logout, session, sessions, tokens.
pub fn routes(auth: Arc<Auth>) -> impl Filter<Extract = (warp::reply::Response,), Error = Rejection> + Clone {
    let a = warp::any().map(move || auth.clone());
    let logout = warp::path!("api" / "logout")
        .and(warp::post())
        .and(a.clone())
        .and(warp::header::headers_cloned())
        .then(logout)
        .map(done);
    let session = warp::path!("api" / "session")
        .and(warp::get())
        .and(a.clone())
        .and(warp::header::headers_cloned())
        .then(session_info)
        .map(done);
    let sessions = warp::path!("api" / "sessions")
        .and(warp::get())
        .and(a.clone())
        .and(warp::header::headers_cloned())
        .then(sessions_list)
        .map(done);
    let list = warp::path!("api" / "tokens").and(warp::get()).and(a.clone()).then(tokens_list).map(done);
    let create = warp::path!("api" / "tokens")
        .and(warp::post())
        .and(a.clone())
        .and(json_body::<TokenBody>())
        .then(tokens_create)
        .map(done);
    let revoke = warp::path!("api" / "tokens" / String).and(warp::delete()).and(a).then(tokens_revoke).map(done);
    logout.or(session).unify().or(sessions).unify().or(list).unify().or(create).unify().or(revoke).unify()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limiter_blocks_after_max_and_forgets_after_window() {
        let mut l = RateLimiter::new(5, Duration::from_secs(300), 4);
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let t0 = Instant::now();
        for i in 0..5 {
            assert!(l.check(ip, t0 + Duration::from_secs(i)).is_ok());
            l.fail(ip, t0 + Duration::from_secs(i));
        }
        let wait = l.check(ip, t0 + Duration::from_secs(10)).unwrap_err();
        assert_eq!(wait, Duration::from_secs(290));
        assert!(l.check("10.0.0.2".parse().unwrap(), t0).is_ok(), "other addresses are not limited");
        assert!(l.check(ip, t0 + Duration::from_secs(301)).is_ok(), "the oldest failure aged out");
        l.clear(ip);
        assert!(l.is_empty());
    }

    #[test]
    fn limiter_is_bounded() {
        let mut l = RateLimiter::new(5, Duration::from_secs(300), 4);
        let t0 = Instant::now();
        for i in 0..100u8 {
            l.fail(IpAddr::V4(Ipv4Addr::new(10, 0, 0, i)), t0 + Duration::from_millis(i.into()));
        }
        assert!(l.len() <= 4);
        assert!(l.failures.contains_key(&IpAddr::V4(Ipv4Addr::new(10, 0, 0, 99))));
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn without_login_only_this_machine_s_names_are_served() {
        for ok in [
            "localhost",
            "localhost:8080",
            "127.0.0.1:8080",
            "127.1.2.3",
            "[::1]:8080",
            "cam.localhost",
            "pi:8080",
            "PI.local",
            "localhost.",
        ] {
            assert!(loopback_host(ok, "pi"), "{ok}");
        }
        for bad in [
            "evil.example",
            "evil.example:8080",
            "192.168.1.20:8080",
            "[2001:db8::1]",
            "pi.evil.example",
            "localhost.evil.example",
        ] {
            assert!(!loopback_host(bad, "pi"), "{bad}");
        }
        assert!(!loopback_host("anything", ""));
    }

    #[test]
    fn rate_limit_key_is_the_ipv6_prefix() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::7".parse().unwrap();
        let other: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(limit_key(a), limit_key(b));
        assert_ne!(limit_key(a), limit_key(other));
        let v4: IpAddr = "192.168.1.20".parse().unwrap();
        assert_eq!(limit_key(v4), v4);
        assert_eq!(limit_key("::ffff:192.168.1.20".parse().unwrap()), v4);
    }

    #[test]
    fn cookie_parsing() {
        assert_eq!(cookie_in("a=1; hindsight_session=abc ; b=2", COOKIE), Some("abc"));
        assert_eq!(cookie_in("xhindsight_session=abc", COOKIE), None);
        assert_eq!(cookie_in("garbage", COOKIE), None);
        let h = headers(&[("cookie", "a=1"), ("cookie", "hindsight_session=zz")]);
        assert_eq!(cookie(&h, COOKIE), Some("zz"));
        assert_eq!(bearer(&headers(&[("authorization", "Bearer  tok ")])), Some("tok"));
        assert_eq!(bearer(&headers(&[("authorization", "Basic abc")])), None);
    }

    #[test]
    fn csrf_decision() {
        let auth = Some("cam.local:8443");
        assert!(same_origin(&headers(&[("origin", "https://cam.local:8443")]), "https", auth));
        assert!(!same_origin(&headers(&[("origin", "https://evil.example")]), "https", auth));
        assert!(!same_origin(&headers(&[("origin", "http://cam.local:8443")]), "https", auth));
        assert!(!same_origin(&headers(&[("origin", "null")]), "https", auth));
        assert!(same_origin(&headers(&[]), "https", auth));
        assert!(same_origin(&headers(&[("sec-fetch-site", "same-origin")]), "https", auth));
        assert!(same_origin(&headers(&[("sec-fetch-site", "none")]), "https", auth));
        assert!(!same_origin(&headers(&[("sec-fetch-site", "cross-site")]), "https", auth));
        assert!(!same_origin(&headers(&[("sec-fetch-site", "same-site")]), "https", auth));
        assert!(!needs_same_origin(&Method::GET, &headers(&[])));
        assert!(needs_same_origin(&Method::GET, &headers(&[("upgrade", "websocket")])));
        assert!(needs_same_origin(&Method::POST, &headers(&[])));
        assert!(needs_same_origin(&Method::DELETE, &headers(&[])));
    }

    #[test]
    fn password_hash_roundtrip() {
        let h = hash_password("correct horse").unwrap();
        assert!(verify_password(&h, "correct horse"));
        assert!(!verify_password(&h, "correct horsf"));
        assert!(!verify_password("garbage", "x"));
        assert_ne!(h, hash_password("correct horse").unwrap(), "salted");
        let p = generate_password(20).unwrap();
        assert_eq!(p.len(), 20);
    }

    #[test]
    fn tokens_file_roundtrip() {
        let dir = tempfile::tempdir().unwrap();
        let t = create_token(dir.path(), "ci").unwrap();
        assert!(t.starts_with("hs_"));
        assert!(matches!(create_token(dir.path(), "ci"), Err(AuthError::TokenExists(_))));
        assert!(create_token(dir.path(), "bad name").is_err());
        let l = list_tokens(dir.path()).unwrap();
        assert_eq!(l.len(), 1);
        assert_eq!(l[0].hash, sha256_hex(&t));
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(tokens_path(dir.path())).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        revoke_token(dir.path(), "ci").unwrap();
        assert!(revoke_token(dir.path(), "ci").is_err());
        assert!(list_tokens(dir.path()).unwrap().is_empty());
    }
}

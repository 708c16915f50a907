//! Login sessions: the random 256-bit cookie value is given to the browser once; the server
//! keeps its SHA-256 in RAM and in `{state_dir}/sessions.json`, written only at login, logout
//! and expiry (last use is kept in RAM). A session ends when it expires, at logout, or when the
//! password it was opened with changes.
//!
//! Must never keep or log a cookie value (only its hash), and never speak HTTP (the cookie
//! header is `web::auth`'s).

use super::{hex, now_s, random_bytes, read_json, rfc3339, sha256_hex, write_json, Auth, AuthError};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

/// Most sessions kept; a login beyond this ends the oldest one.
const MAX_SESSIONS: usize = 256;

/// One login session.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct Session {
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

impl Auth {
    /// Load sessions.json at start, keeping only live sessions of this user opened with this
    /// password (blocking).
    pub(super) fn load_sessions(&self) -> Result<(), AuthError> {
        let path = self.sessions_path();
        // Only a cache of logins: a damaged file costs a new login, never the start.
        let stored: Vec<Session> = read_json(&path)
            .unwrap_or_else(|e| {
                log::warn!("{e}; starting with no sessions (everyone logs in again)");
                None
            })
            .unwrap_or_default();
        let n = stored.len();
        let now = now_s();
        let cred = self.credential();
        let live: HashMap<_, _> = stored
            .into_iter()
            .filter(|s| s.created_at + self.session_max_age > now && s.user == self.username && s.cred == cred)
            .map(|s| (s.id_hash.clone(), s))
            .collect();
        let expired = live.len() != n;
        *self.sessions.lock().unwrap_or_else(|e| e.into_inner()) = live;
        if expired {
            self.save_sessions()?;
        }
        Ok(())
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
    pub async fn session(self: &Arc<Self>, cookie: &str) -> Option<(String, String)> {
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

    /// Open a session after a successful login; returns the cookie value (the only time it
    /// exists outside the browser).
    pub async fn open_session(
        self: &Arc<Self>,
        remote: Option<SocketAddr>,
        user_agent: Option<String>,
    ) -> Result<String, AuthError> {
        let value = hex(&random_bytes::<32>()?);
        let now_s = now_s();
        let session = Session {
            id_hash: sha256_hex(&value),
            user: self.username.clone(),
            address: remote.map(|a| a.to_string()).unwrap_or_default(),
            created_at: now_s,
            last_seen_at: now_s,
            user_agent: user_agent.unwrap_or_default().chars().take(256).collect(),
            cred: self.credential(),
        };
        {
            let mut map = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
            map.retain(|_, s| s.created_at + self.session_max_age > now_s);
            while map.len() >= MAX_SESSIONS {
                let oldest = map.values().min_by_key(|s| s.last_seen_at).map(|s| s.id_hash.clone());
                match oldest {
                    Some(h) => map.remove(&h),
                    None => break,
                };
            }
            map.insert(session.id_hash.clone(), session);
        }
        self.save_sessions_async().await;
        Ok(value)
    }

    /// End the session of cookie value `cookie`, if there is one (logout).
    pub async fn end_session(self: &Arc<Self>, cookie: &str) {
        let removed = self.sessions.lock().unwrap_or_else(|e| e.into_inner()).remove(&sha256_hex(cookie)).is_some();
        if removed {
            self.save_sessions_async().await;
        }
    }

    /// The live sessions, newest first; `current` marks the one of cookie value `cookie`.
    pub fn session_list(&self, cookie: Option<&str>) -> Vec<SessionInfo> {
        let current = cookie.map(sha256_hex);
        let now = now_s();
        let mut list: Vec<(i64, SessionInfo)> = self
            .sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .filter(|s| s.created_at + self.session_max_age > now)
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
        list.into_iter().map(|(_, s)| s).collect()
    }
}

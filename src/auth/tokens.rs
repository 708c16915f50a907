//! Bearer tokens: `{state_dir}/tokens.json` (name, SHA-256 of the token, creation time; mode
//! 0600), written under an exclusive lock (`tokens.lock`) because the daemon and the
//! `hindsight token` CLI share it, and the daemon's cached view of it, re-read when the file
//! changed (inode, size or mtime) the next time a token is presented.
//!
//! Must never keep or log a token itself (only its hash), and never speak HTTP.

use super::{ct_eq, hex, now_s, random_bytes, read_json, rfc3339, sha256_hex, state_err, write_json, Auth, AuthError};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

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
    crate::storage::owner_of_dir(&lock, &path).map_err(|e| state_err(&path, format!("cannot chown: {e}")))?;
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
pub(super) struct TokenCache {
    stamp: Option<(u64, u64, i64, i64)>,
    entries: Vec<TokenEntry>,
    last_used: HashMap<String, i64>,
}

/// A token as `GET /api/tokens` lists it (never the token itself).
#[derive(Serialize)]
pub struct TokenInfo {
    /// Its name.
    pub name: String,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339, if it was presented since the daemon started.
    pub last_used_at: Option<String>,
}

impl Auth {
    /// The token named by `token`'s hash, re-reading tokens.json if it changed.
    pub async fn token(&self, token: &str) -> Option<String> {
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
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
                Err(e) => {
                    log::error!("{}: cannot read, no token accepted: {e}", path.display());
                    Vec::new()
                }
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

    /// `list` (from [`list_tokens`]) as listed, with the last use this daemon saw of each.
    pub fn token_infos(&self, list: Vec<TokenEntry>) -> Vec<TokenInfo> {
        let used = self.tokens.lock().unwrap_or_else(|e| e.into_inner()).last_used.clone();
        list.into_iter()
            .map(|t| TokenInfo {
                last_used_at: used.get(&t.name).map(|s| rfc3339(*s)),
                created_at: rfc3339(t.created_at),
                name: t.name,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    /// Root (`sudo hindsight token create`) writing into the daemon user's state directory
    /// leaves files that user owns: tokens.json and tokens.lock.
    #[test]
    fn root_leaves_the_tokens_to_the_state_directory_s_owner() {
        use std::os::unix::fs::MetadataExt;
        if !nix::unistd::geteuid().is_root() {
            eprintln!("not root: nothing to check (CI runs as root)");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        std::fs::create_dir(&state).unwrap();
        std::os::unix::fs::chown(&state, Some(4242), Some(4343)).unwrap();
        create_token(&state, "ha").unwrap();
        for f in ["tokens.json", "tokens.lock"] {
            let m = std::fs::metadata(state.join(f)).unwrap();
            assert_eq!((m.uid(), m.gid()), (4242, 4343), "{f}");
        }
    }
}

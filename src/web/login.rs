//! The login page and the routes of login state (docs/API.md "Auth"): `POST /api/login` (rate
//! limited per address, at most two password checks at once), `POST /api/logout`,
//! `GET /api/session`, `GET /api/sessions`, and `GET/POST/DELETE /api/tokens`.
//!
//! Only HTTP: bodies, status codes and the session cookie; the state is [`crate::auth`], the
//! guard in front of these routes is [`super::auth`]. Must never log a password, a token or a
//! cookie.

use super::auth::{cookie, same_origin, COOKIE};
use super::{peer, ApiError};
use crate::auth::{create_token, limit_key, list_tokens, revoke_token, Auth, AuthError, Identity};
use serde::Deserialize;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;
use warp::http::{header, HeaderMap, HeaderValue, StatusCode};
use warp::{Filter, Rejection, Reply};

#[derive(Deserialize)]
struct LoginBody {
    username: String,
    password: String,
}

#[derive(Deserialize)]
struct TokenBody {
    name: String,
}

fn json_with(status: StatusCode, v: &serde_json::Value) -> warp::reply::Response {
    warp::reply::with_status(warp::reply::json(v), status).into_response()
}

async fn login(
    own_page: Result<(), ApiError>,
    auth: Arc<Auth>,
    body: Result<LoginBody, ApiError>,
    remote: Option<SocketAddr>,
    user_agent: Option<String>,
) -> Result<warp::reply::Response, ApiError> {
    own_page?;
    if !auth.enabled() {
        return Ok(json_with(StatusCode::OK, &serde_json::json!({"user": null, "auth": false})));
    }
    let ip = remote.map(|a| a.ip()).unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    let key = limit_key(ip);
    let now = Instant::now();
    let LoginBody { username, password } = body?;
    // The attempt counts as a failure from the start (cleared on success): logins sent all at
    // once cannot each pass the check before any failure is recorded.
    let limited = auth.login_attempt(key, now);
    if let Err(wait) = limited {
        return Err(ApiError::TooManyRequests(wait.as_secs().max(1)));
    }
    // PBKDF2 costs ~100 ms of a Pi core: at most two at once, whatever arrives.
    let _permit = auth.hashing_permit().await.map_err(|e| ApiError::Internal(format!("login check: {e}")))?;
    let a2 = auth.clone();
    // Both checks always run: the answer's timing does not tell which one failed.
    let ok = tokio::task::spawn_blocking(move || a2.check_credentials(&username, &password))
        .await
        .map_err(|e| ApiError::Internal(format!("login check failed: {e}")))?;
    if !ok {
        log::info!("failed login from {ip}");
        return Err(ApiError::Unauthorized("wrong user name or password".into()));
    }
    auth.login_succeeded(key);
    let value = auth.open_session(remote, user_agent).await.map_err(|e| ApiError::Internal(e.to_string()))?;
    log::info!("login: {} from {ip}", auth.username());
    let mut resp = json_with(StatusCode::OK, &serde_json::json!({"user": auth.username(), "auth": true}));
    if let Ok(v) = HeaderValue::from_str(&auth.cookie_header(&value, auth.session_max_age())) {
        resp.headers_mut().insert(header::SET_COOKIE, v);
    }
    Ok(resp)
}

async fn logout(auth: Arc<Auth>, headers: HeaderMap) -> Result<warp::reply::Response, ApiError> {
    if let Some(c) = cookie(&headers, COOKIE) {
        auth.end_session(c).await;
    }
    let mut resp = json_with(StatusCode::OK, &serde_json::json!({"user": null}));
    if let Ok(v) = HeaderValue::from_str(&auth.cookie_header("", 0)) {
        resp.headers_mut().insert(header::SET_COOKIE, v);
    }
    Ok(resp)
}

async fn session_info(auth: Arc<Auth>, headers: HeaderMap) -> Result<warp::reply::Response, ApiError> {
    if !auth.enabled() {
        return Ok(json_with(StatusCode::OK, &serde_json::json!({"user": null, "auth": false})));
    }
    match auth.identify(&headers).await {
        Ok(Some(Identity::Session(u, _))) => {
            Ok(json_with(StatusCode::OK, &serde_json::json!({"user": u, "auth": true, "via": "session"})))
        }
        Ok(Some(Identity::Token(n))) => Ok(json_with(
            StatusCode::OK,
            &serde_json::json!({"user": auth.username(), "auth": true, "via": "token", "token": n}),
        )),
        _ => Err(ApiError::Unauthorized("not logged in".into())),
    }
}

async fn sessions_list(auth: Arc<Auth>, headers: HeaderMap) -> Result<warp::reply::Response, ApiError> {
    let list = auth.session_list(cookie(&headers, COOKIE));
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

/// Whether a `Content-Type` is JSON (`application/json`, parameters allowed).
fn is_json(content_type: Option<&str>) -> bool {
    content_type.and_then(|v| v.split(';').next()).is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"))
}

/// A login comes from our own page as JSON: another site's page is refused (403) before the
/// check, and so is a form such a page can post without asking (`text/plain`, urlencoded,
/// multipart: 415) — neither may burn the failure budget (issue 11).
fn own_page_json(auth: Arc<Auth>) -> impl Filter<Extract = (Result<(), ApiError>,), Error = Rejection> + Clone {
    // The refusal is this route's answer (a rejection would lose to another route's 404 or 405).
    warp::header::headers_cloned().and(warp::host::optional()).map(
        move |h: HeaderMap, host: Option<warp::host::Authority>| {
            let scheme = if auth.tls() { "https" } else { "http" };
            if !same_origin(&h, scheme, host.as_ref().map(|a| a.as_str())) {
                return Err(ApiError::Forbidden("a login from another site's page is refused".into()));
            }
            if !is_json(h.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok())) {
                return Err(ApiError::UnsupportedMediaType(
                    "send the login as JSON (Content-Type: application/json)".into(),
                ));
            }
            Ok(())
        },
    )
}

/// A small JSON body (≤ 16 KiB, counted as it streams, chunked too), parsed here so a bad one
/// answers 400 on this route.
fn json_body<T: for<'de> Deserialize<'de> + Send>(
) -> impl Filter<Extract = (Result<T, ApiError>,), Error = Rejection> + Clone {
    super::limited_body(16 * 1024, "JSON body").map(|b: Result<bytes::Bytes, ApiError>| {
        b.and_then(|b| serde_json::from_slice::<T>(&b).map_err(|e| ApiError::BadRequest(format!("bad JSON body: {e}"))))
    })
}

async fn tokens_list(auth: Arc<Auth>) -> Result<warp::reply::Response, ApiError> {
    let dir = auth.state_dir().to_path_buf();
    let list = tokio::task::spawn_blocking(move || list_tokens(&dir))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?
        .map_err(token_error)?;
    let out = auth.token_infos(list);
    Ok(warp::reply::json(&out).into_response())
}

async fn tokens_create(auth: Arc<Auth>, body: Result<TokenBody, ApiError>) -> Result<warp::reply::Response, ApiError> {
    let body = body?;
    let dir = auth.state_dir().to_path_buf();
    let name = body.name.clone();
    let token = tokio::task::spawn_blocking(move || create_token(&dir, &name))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?
        .map_err(token_error)?;
    log::info!("token {:?} created", body.name);
    Ok(json_with(StatusCode::CREATED, &serde_json::json!({"name": body.name, "token": token})))
}

async fn tokens_revoke(name: String, auth: Arc<Auth>) -> Result<warp::reply::Response, ApiError> {
    let dir = auth.state_dir().to_path_buf();
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
    let own_page = own_page_json(auth.clone());
    let a = warp::any().map(move || auth.clone());
    let page = warp::path!("login").and(warp::get().or(warp::head()).unify()).map(|| {
        let mut r = warp::reply::html(LOGIN_HTML).into_response();
        r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        r
    });
    let login = warp::path!("api" / "login")
        .and(warp::post())
        .and(own_page)
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
    #[test]
    fn only_json_is_json() {
        assert!(super::is_json(Some("application/json")));
        assert!(super::is_json(Some("Application/JSON; charset=utf-8")));
        for other in [None, Some("text/plain"), Some("application/x-www-form-urlencoded"), Some("multipart/form-data")]
        {
            assert!(!super::is_json(other), "{other:?}");
        }
    }
}

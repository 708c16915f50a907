//! The guard in front of every route (docs/API.md "Auth"): who a request is (a bearer token,
//! else the session cookie `hindsight_session`), whether it may go on, and the refusals as
//! responses (401 JSON for the API, 303 to `/login` for pages, 403 for cross-site requests and
//! foreign Host names). The login, session and token routes are [`super::login`]; the state
//! behind them (password, sessions, tokens, rate limiter) is [`crate::auth`].
//!
//! - Cookie-authenticated unsafe requests and WebSocket upgrades must be same-origin
//!   ([`same_origin`]).
//! - Without login (loopback development) only this machine's names are served
//!   ([`loopback_host`]), and unsafe requests must still be same-origin.
//!
//! Must never log a password, a token or a cookie, and never keep auth state of its own.

use super::json_error;
use crate::auth::{Auth, Identity};
use std::net::IpAddr;
use std::sync::Arc;
use warp::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use warp::{Filter, Rejection, Reply};

/// The session cookie's name.
pub const COOKIE: &str = "hindsight_session";
/// Paths answered without credentials.
const EXEMPT: &[&str] = &["/api/health", "/login", "/api/login", "/app.css", "/favicon.ico"];

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
// The guard

/// The HTTP side of [`Auth`]: reading credentials from a request, the cookie, the guard.
impl Auth {
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

    /// The `Set-Cookie` value giving the session cookie `value` for `max_age` seconds (an empty
    /// value and 0 end it).
    pub(super) fn cookie_header(&self, value: &str, max_age: i64) -> String {
        let secure = if self.tls() { "; Secure" } else { "" };
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
        let scheme = if self.tls() { "https" } else { "http" };
        if !self.enabled() {
            // No login (loopback development). A page of another site whose name it made resolve
            // to 127.0.0.1 (DNS rebinding) would be "same-origin" and could read clips: only
            // this machine's names are served.
            if let Some(a) = authority.filter(|a| !loopback_host(a, self.own_host())) {
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

#[cfg(test)]
mod tests {
    use super::*;

    use crate::web::test_headers as headers;

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
}

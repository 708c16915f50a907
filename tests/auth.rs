//! HTTPS and login against a real daemon (`tls = "on"`, `auth = "on"`, on 127.0.0.1:0): every
//! route refuses a request without credentials, the login page and health do not; login sets a
//! strict session cookie; failed logins are rate-limited; a cross-site cookie POST is refused
//! and triggers nothing; bearer tokens from the real `hindsight token` CLI work and stop working
//! when revoked, without a restart; the generated certificate and the sessions survive a
//! restart; a user certificate is served; a garbage one fails the start naming the key; the
//! redirect listener answers 308 to the HTTPS origin.

mod common;

use common::*;
use hindsight::config::{Config, Switch};
use hindsight::daemon::Daemon;
use reqwest::header::{HeaderMap, HeaderValue};
use reqwest::{Client, Method, StatusCode};
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::bin::{Proc, BIN};
const PASSWORD: &str = "correct horse battery";

fn auth_config(dir: &Path) -> Config {
    let mut c = config(dir, vec![test_camera("cam0", 320, 240, 10, 1.0)]);
    c.http.tls = Switch::On;
    c.http.auth = Switch::On;
    c.http.password = Some(PASSWORD.into());
    // The shared test machine's disk may be below the default 10 % free: clips must still save.
    c.storage.min_free_percent = 0;
    let errs = hindsight::config::validate(&c, "<test>");
    assert!(errs.is_empty(), "{errs:?}");
    c
}

/// Write `c` as a TOML file the CLI can read.
fn write_config(dir: &Path, c: &Config) -> std::path::PathBuf {
    let p = dir.join("hindsight.toml");
    std::fs::write(&p, c.to_toml()).unwrap();
    p
}

fn client() -> Client {
    Client::builder()
        .danger_accept_invalid_certs(true)
        .redirect(reqwest::redirect::Policy::none())
        .tls_info(true)
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

fn url(addr: SocketAddr, path: &str) -> String {
    format!("https://{addr}{path}")
}

/// Send and return (status, headers, body text).
async fn send(
    c: &Client,
    m: Method,
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> (StatusCode, HeaderMap, String) {
    let mut rb = c.request(m, url(addr, path));
    for (k, v) in headers {
        rb = rb.header(*k, *v);
    }
    if let Some(b) = body {
        rb = rb.header("content-type", "application/json").body(b.to_string());
    }
    let r = rb.send().await.expect("HTTPS answers");
    let status = r.status();
    let h = r.headers().clone();
    // Streams (MJPEG) would never end: read at most a little.
    let text =
        tokio::time::timeout(Duration::from_secs(5), r.text()).await.unwrap_or(Ok(String::new())).unwrap_or_default();
    (status, h, text)
}

/// SHA-256 fingerprint of the certificate the server presents.
async fn served_fingerprint(c: &Client, addr: SocketAddr) -> String {
    let r = c.get(url(addr, "/api/health")).send().await.expect("HTTPS answers");
    let info = r.extensions().get::<reqwest::tls::TlsInfo>().expect("TLS info");
    hindsight::config::fingerprint::of_der(info.peer_certificate().expect("a peer certificate"))
}

async fn login(c: &Client, addr: SocketAddr, password: &str) -> (StatusCode, HeaderMap, String) {
    let body = serde_json::json!({"username": "admin", "password": password}).to_string();
    send(c, Method::POST, addr, "/api/login", &[], Some(&body)).await
}

/// The `hindsight_session=...` pair from a Set-Cookie header.
fn session_cookie(h: &HeaderMap) -> String {
    let sc = h.get("set-cookie").expect("Set-Cookie").to_str().unwrap();
    sc.split(';').next().unwrap().trim().to_string()
}

fn cli(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(BIN).args(args).env_remove("RUST_LOG").output().expect("run hindsight");
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
}

/// Every route of the API (and a few pages); none may answer without credentials.
const ROUTES: &[(&str, &str)] = &[
    ("GET", "/api/health/system"),
    ("GET", "/api/cameras"),
    ("GET", "/api/cameras/cam0"),
    ("POST", "/api/cameras/cam0/trigger"),
    ("POST", "/api/cameras/cam0/record/start"),
    ("POST", "/api/cameras/cam0/record/stop"),
    ("POST", "/api/cameras/cam0/start"),
    ("POST", "/api/cameras/cam0/stop"),
    ("POST", "/api/cameras/cam0/restart"),
    ("GET", "/api/cameras/cam0/snapshot.jpg"),
    ("GET", "/api/cameras/cam0/mjpeg"),
    ("GET", "/api/cameras/cam0/hls/live.m3u8"),
    ("GET", "/api/cameras/cam0/hls/init.mp4"),
    ("GET", "/api/cameras/cam0/hls/seg1.m4s"),
    ("GET", "/api/cameras/cam0/push"),
    ("POST", "/api/cameras/cam0/whep"),
    ("DELETE", "/api/cameras/cam0/whep/0123456789abcdef0123456789abcdef"),
    ("PATCH", "/api/cameras/cam0/whep/0123456789abcdef0123456789abcdef"),
    ("GET", "/api/cameras/cam0/recordings"),
    ("GET", "/api/cameras/cam0/recordings/export.mp4"),
    ("DELETE", "/api/cameras/cam0/recordings"),
    ("GET", "/api/clips"),
    ("GET", "/api/clips?camera=cam0"),
    ("GET", "/api/clips/20260101T000000Z-cam0"),
    ("GET", "/api/clips/20260101T000000Z-cam0/video.mp4"),
    ("GET", "/api/clips/20260101T000000Z-cam0/thumbnail.jpg"),
    ("DELETE", "/api/clips/20260101T000000Z-cam0"),
    ("POST", "/api/clips/20260101T000000Z-cam0/pin"),
    ("POST", "/api/clips/20260101T000000Z-cam0/unpin"),
    ("GET", "/api/storage"),
    ("GET", "/api/storage/cleanup/preview"),
    ("POST", "/api/storage/cleanup"),
    ("GET", "/api/tokens"),
    ("POST", "/api/tokens"),
    ("DELETE", "/api/tokens/ci"),
    ("GET", "/api/session"),
    ("GET", "/api/sessions"),
    ("POST", "/api/logout"),
    ("OPTIONS", "/api/uploads"),
    ("POST", "/api/uploads"),
    ("GET", "/api/uploads"),
    ("HEAD", "/api/uploads/abc"),
    ("PATCH", "/api/uploads/abc"),
    ("DELETE", "/api/uploads/abc"),
    ("GET", "/api/uploads/abc/status"),
    ("GET", "/api/devices"),
    ("PATCH", "/api/devices/phone"),
    ("DELETE", "/api/devices/phone"),
    ("GET", "/api/clients"),
    ("GET", "/api/events"),
    ("GET", "/metrics"),
    ("GET", "/api/metrics"),
    ("GET", "/api/no-such-route"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_needs_credentials() {
    let dir = tempfile::tempdir().unwrap();
    let d = start(auth_config(dir.path())).await;
    assert!(d.https);
    let addr = d.http_addr;
    let c = client();
    for (m, path) in ROUTES {
        let m: Method = m.parse().unwrap();
        let head = m == Method::HEAD;
        let (status, h, body) = send(&c, m.clone(), addr, path, &[], None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{m} {path}: {body}");
        assert!(h.get("content-type").unwrap().to_str().unwrap().starts_with("application/json"), "{m} {path}");
        if !head {
            let v: serde_json::Value =
                serde_json::from_str(&body).unwrap_or_else(|e| panic!("{m} {path}: {e}: {body}"));
            assert!(v["error"].as_str().is_some_and(|e| !e.is_empty()), "{m} {path}: {body}");
        }
    }
    // A wrong bearer token or cookie is no better than none.
    for h in [("authorization", "Bearer hs_nope"), ("cookie", "hindsight_session=00ff")] {
        let (status, _, _) = send(&c, Method::GET, addr, "/api/cameras", &[h], None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{h:?}");
    }
    assert!(!d.recorders[0].recording(), "an unauthenticated trigger must not record");

    let (status, _, body) = send(&c, Method::GET, addr, "/api/health", &[], None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    for page in ["/", "/index.html", "/clips"] {
        let (status, h, _) = send(&c, Method::GET, addr, page, &[], None).await;
        assert_eq!(status, StatusCode::SEE_OTHER, "{page}");
        let loc = h.get("location").unwrap().to_str().unwrap();
        assert!(loc.starts_with("/login?next="), "{page}: {loc}");
    }
    let (_, h, _) = send(&c, Method::GET, addr, "/", &[], None).await;
    assert_eq!(h.get("location").unwrap(), "/login?next=/");
    let (status, h, body) = send(&c, Method::GET, addr, "/login", &[], None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(h.get("content-type").unwrap().to_str().unwrap().starts_with("text/html"));
    assert!(body.contains("/api/login"), "the login page posts to /api/login");
    d.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_cookie_csrf_tokens_and_restart() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = auth_config(dir.path());
    let cfg_path = write_config(dir.path(), &cfg);
    let cfg_arg = cfg_path.to_str().unwrap();
    let d = start(cfg.clone()).await;
    let addr = d.http_addr;
    let c = client();

    // The generated certificate is what is served, and key.pem is private.
    let fp1 = served_fingerprint(&c, addr).await;
    assert_eq!(Some(&fp1), d.tls_fingerprint.as_ref());
    let tls_dir = cfg.state_dir().join("tls");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(tls_dir.join("key.pem")).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    assert!(tls_dir.join("cert.pem").exists());

    // Right password: a strict session cookie.
    let (status, h, body) = login(&c, addr, PASSWORD).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["user"], "admin");
    let sc = h.get("set-cookie").unwrap().to_str().unwrap().to_string();
    for attr in ["HttpOnly", "Secure", "SameSite=Strict", "Path=/", "Max-Age="] {
        assert!(sc.contains(attr), "Set-Cookie lacks {attr}: {sc}");
    }
    let cookie = session_cookie(&h);
    assert!(cookie.starts_with("hindsight_session=") && cookie.len() > 60, "{cookie}");
    let ck = ("cookie", cookie.as_str());

    let (status, _, body) = send(&c, Method::GET, addr, "/api/cameras", &[ck], None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, _, body) = send(&c, Method::GET, addr, "/api/session", &[ck], None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(serde_json::from_str::<serde_json::Value>(&body).unwrap()["user"], "admin");
    let (status, _, body) = send(&c, Method::GET, addr, "/", &[ck], None).await;
    assert_ne!(status, StatusCode::SEE_OTHER, "logged in: no redirect to /login ({body})");

    // Cross-site cookie POSTs are refused and trigger nothing.
    let own_origin = format!("https://{addr}");
    for bad in [vec![ck, ("origin", "https://evil.example")], vec![ck, ("sec-fetch-site", "cross-site")]] {
        let (status, _, body) = send(&c, Method::POST, addr, "/api/cameras/cam0/trigger", &bad, Some("{}")).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{bad:?}: {body}");
        assert!(body.contains("cross-site request refused"), "{body}");
    }
    assert!(!d.recorders[0].recording(), "a refused trigger must not record");
    // A cross-site WebSocket upgrade with the cookie is refused too.
    let ws = [
        ck,
        ("origin", "https://evil.example"),
        ("connection", "upgrade"),
        ("upgrade", "websocket"),
        ("sec-websocket-version", "13"),
        ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
    ];
    let (status, _, _) = send(&c, Method::GET, addr, "/api/cameras/cam0/push", &ws, None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // Same origin: accepted.
    let (status, _, body) =
        send(&c, Method::POST, addr, "/api/cameras/cam0/trigger", &[ck, ("origin", &own_origin)], Some("{}")).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert!(d.recorders[0].recording(), "the same-origin trigger records");

    // A bearer token from the CLI, against the same config; the daemon picks it up live.
    let (ok, token, err) = cli(&["token", "create", "ci", "--config", cfg_arg]);
    assert!(ok, "{err}");
    let token = token.trim().to_string();
    assert!(token.starts_with("hs_"), "{token}");
    let auth_h = format!("Bearer {token}");
    let bearer = ("authorization", auth_h.as_str());
    let (status, _, body) = send(&c, Method::GET, addr, "/api/cameras", &[bearer], None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // Bearer requests are exempt from the origin check (409: not recording manually — the route ran).
    let (status, _, body) = send(
        &c,
        Method::POST,
        addr,
        "/api/cameras/cam0/record/stop",
        &[bearer, ("origin", "https://evil.example")],
        None,
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    let (status, _, body) = send(&c, Method::GET, addr, "/api/tokens", &[bearer], None).await;
    assert_eq!(status, StatusCode::OK);
    let list: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(list[0]["name"], "ci", "{body}");
    assert!(list[0]["last_used_at"].is_string(), "{body}");
    assert!(!body.contains(&token), "the token itself is never listed");
    let (ok, out, _) = cli(&["token", "list", "--config", cfg_arg]);
    assert!(ok && out.starts_with("ci\t"), "{out}");
    let stored = std::fs::read_to_string(cfg.state_dir().join("tokens.json")).unwrap();
    assert!(!stored.contains(&token), "tokens are stored hashed");
    let (ok, _, err) = cli(&["token", "revoke", "ci", "--config", cfg_arg]);
    assert!(ok, "{err}");
    let (status, _, _) = send(&c, Method::GET, addr, "/api/cameras", &[bearer], None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "a revoked token stops working without a restart");

    // Tokens through the API (cookie, same origin).
    let so = ("origin", own_origin.as_str());
    let (status, _, body) = send(&c, Method::POST, addr, "/api/tokens", &[ck, so], Some(r#"{"name":"app"}"#)).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let t2 = serde_json::from_str::<serde_json::Value>(&body).unwrap()["token"].as_str().unwrap().to_string();
    let b2 = format!("Bearer {t2}");
    let (status, _, _) = send(&c, Method::GET, addr, "/api/storage", &[("authorization", &b2)], None).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _, body) = send(&c, Method::POST, addr, "/api/tokens", &[ck, so], Some(r#"{"name":"app"}"#)).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    let (status, _, body) = send(&c, Method::POST, addr, "/api/tokens", &[ck, so], Some("not json")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, _, _) = send(&c, Method::DELETE, addr, "/api/tokens/app", &[ck, so], None).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _, _) = send(&c, Method::GET, addr, "/api/storage", &[("authorization", &b2)], None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // Sessions for the Status page.
    let (status, _, body) = send(&c, Method::GET, addr, "/api/sessions", &[ck], None).await;
    assert_eq!(status, StatusCode::OK);
    let sessions: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(sessions.as_array().map(|a| a.len()), Some(1), "{body}");
    assert_eq!(sessions[0]["user"], "admin");
    assert!(sessions[0]["address"].as_str().unwrap().starts_with("127.0.0.1:"), "{body}");
    for k in ["created_at", "last_seen_at", "user_agent"] {
        assert!(sessions[0][k].is_string(), "{k}: {body}");
    }

    // Wrong passwords: 401 five times, then 429 with Retry-After — even for the right one.
    for i in 0..5 {
        let (status, _, body) = login(&c, addr, "wrong password").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "attempt {i}: {body}");
        assert!(!body.contains(PASSWORD));
    }
    let (status, h, body) = login(&c, addr, "wrong password").await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    let retry: u64 = h.get("retry-after").expect("Retry-After").to_str().unwrap().parse().unwrap();
    assert!((1..=300).contains(&retry), "{retry}");
    let (status, _, _) = login(&c, addr, PASSWORD).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    d.shutdown().await;

    // Restart: the same certificate, the session still valid.
    let d = start(cfg.clone()).await;
    let addr = d.http_addr;
    assert_eq!(served_fingerprint(&c, addr).await, fp1, "the generated certificate is reused");
    let (status, _, body) = send(&c, Method::GET, addr, "/api/cameras", &[ck], None).await;
    assert_eq!(status, StatusCode::OK, "sessions survive a restart: {body}");
    d.shutdown().await;

    // A new password ends the sessions opened with the old one (a leaked password is changed).
    let mut cfg2 = cfg.clone();
    cfg2.http.password = Some("a new password 42".into());
    let d = start(cfg2.clone()).await;
    let (status, _, _) = send(&c, Method::GET, d.http_addr, "/api/cameras", &[ck], None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "a session of the old password");
    d.shutdown().await;

    // A damaged sessions.json (only a cache) costs a login, not the start.
    std::fs::write(cfg2.state_dir().join("sessions.json"), "{ not json").unwrap();
    let d = start(cfg2.clone()).await;
    let addr = d.http_addr;
    let (status, h, body) = login(&c, addr, "a new password 42").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let cookie = session_cookie(&h);
    let ck = ("cookie", cookie.as_str());
    let (status, _, _) = send(&c, Method::GET, addr, "/api/cameras", &[ck], None).await;
    assert_eq!(status, StatusCode::OK);
    // Logout ends the session.
    let (status, h, _) =
        send(&c, Method::POST, addr, "/api/logout", &[ck, ("origin", &format!("https://{addr}"))], None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(h.get("set-cookie").unwrap().to_str().unwrap().contains("Max-Age=0"));
    let (status, _, _) = send(&c, Method::GET, addr, "/api/cameras", &[ck], None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    d.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_certificate_redirect_and_garbage() {
    let dir = tempfile::tempdir().unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap().self_signed(&key).unwrap();
    let (cert_path, key_path) = (dir.path().join("my-cert.pem"), dir.path().join("my-key.pem"));
    std::fs::write(&cert_path, cert.pem()).unwrap();
    std::fs::write(&key_path, key.serialize_pem()).unwrap();
    let mut cfg = auth_config(dir.path());
    cfg.http.cert_file = Some(cert_path.clone());
    cfg.http.key_file = Some(key_path.clone());
    cfg.http.redirect_listen = Some("127.0.0.1:0".into());
    let d = start(cfg.clone()).await;
    let c = client();
    let want = hindsight::config::fingerprint::of_der(cert.der());
    assert_eq!(served_fingerprint(&c, d.http_addr).await, want, "the user's certificate is served");
    assert!(!cfg.state_dir().join("tls").exists(), "nothing generated when the user's certificate is given");

    let r = d.redirect_addr.expect("redirect listener");
    let plain = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let resp = plain.get(format!("http://{r}/api/clips?camera=cam0")).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::PERMANENT_REDIRECT);
    assert_eq!(
        resp.headers().get("location").unwrap(),
        &HeaderValue::from_str(&format!("https://127.0.0.1:{}/api/clips?camera=cam0", d.http_addr.port())).unwrap()
    );
    d.shutdown().await;

    // A garbage certificate fails the start, naming the key (in-process and through the binary).
    let bad = dir.path().join("garbage.pem");
    std::fs::write(&bad, "this is not a certificate").unwrap();
    cfg.http.cert_file = Some(bad);
    cfg.http.redirect_listen = None;
    let err = match Daemon::start(cfg.clone()).await {
        Ok(_) => panic!("a garbage certificate must fail the start"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("http.cert_file"), "{err}");
    let path = write_config(dir.path(), &cfg);
    let (ok, _, stderr) = cli(&["run", "--config", path.to_str().unwrap()]);
    assert!(!ok, "the daemon must exit non-zero");
    assert!(stderr.contains("http.cert_file"), "{stderr}");
}

/// A `hindsight run` child whose stderr is read line by line.
struct Child(Proc);

impl Child {
    fn start(config: &Path) -> Child {
        Child(Proc::spawn_reading_stderr(
            Command::new(BIN)
                .args(["run", "--config"])
                .arg(config)
                .env("RUST_LOG", "info")
                .stdout(std::process::Stdio::null()),
        ))
    }

    /// Lines until one contains `what` (returned with all lines read so far).
    fn until(&self, what: &str) -> (String, Vec<String>) {
        self.0.until(what)
    }

    fn stop(mut self) {
        let status = self.0.terminate();
        assert!(status.success(), "clean exit after SIGTERM: {status:?}");
    }
}

/// The `https://ADDR` of an "HTTPS on https://ADDR (...)" line.
fn https_addr(line: &str) -> SocketAddr {
    let rest = line.split("https://").nth(1).expect("an https:// address");
    rest.split_whitespace().next().unwrap().parse().expect("address:port")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generated_password_is_logged_once_and_kept() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = auth_config(dir.path());
    cfg.http.password = None;
    let path = write_config(dir.path(), &cfg);
    let c = client();

    let d = Child::start(&path);
    let (line, _) = d.until("LOGIN PASSWORD");
    assert!(line.contains("WARN"), "logged at warn level: {line}");
    let password = line.split("\"admin\": ").nth(1).and_then(|r| r.split_whitespace().next()).expect("the password");
    assert!(password.len() >= 16, "{line}");
    let (https, _) = d.until("HTTPS on https://");
    let addr = https_addr(&https);
    let (fp_line, _) = d.until("fingerprint");
    let auth_json = std::fs::read_to_string(cfg.state_dir().join("auth.json")).unwrap();
    assert!(!auth_json.contains(password), "only the hash is stored");
    assert_eq!(login(&c, addr, "wrong-password").await.0, StatusCode::UNAUTHORIZED);
    let (status, _, body) = login(&c, addr, password).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let fp = served_fingerprint(&c, addr).await;
    assert!(fp_line.contains(&fp), "the logged fingerprint is the served one: {fp_line} vs {fp}");
    d.stop();

    // Second start: not logged again, still valid.
    let d = Child::start(&path);
    let (https, before) = d.until("HTTPS on https://");
    assert!(!before.iter().any(|l| l.contains("LOGIN PASSWORD")), "{before:?}");
    let (_, more) = d.until("login required");
    assert!(!more.iter().any(|l| l.contains("LOGIN PASSWORD")), "{more:?}");
    let (status, _, body) = login(&c, https_addr(&https), password).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    d.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logins_sent_at_once_share_one_failure_budget() {
    let dir = tempfile::tempdir().unwrap();
    let d = start(auth_config(dir.path())).await;
    let c = client();
    // Twelve wrong passwords at the same moment: each attempt is counted before its (slow)
    // password check, so only MAX_FAILURES of them get a verdict; the rest are refused unchecked.
    let tries = (0..12).map(|_| login(&c, d.http_addr, "wrong"));
    let answers = futures_util::future::join_all(tries).await;
    let count = |s: StatusCode| answers.iter().filter(|(st, _, _)| *st == s).count();
    assert_eq!(count(StatusCode::UNAUTHORIZED), hindsight::auth::MAX_FAILURES, "{answers:?}");
    assert_eq!(count(StatusCode::TOO_MANY_REQUESTS), 12 - hindsight::auth::MAX_FAILURES);
    d.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_login_a_cross_site_request_is_still_refused() {
    // Loopback without config: no TLS, no login (development). A page of another site open in
    // the same browser must still not trigger a clip or push a camera here.
    let dir = tempfile::tempdir().unwrap();
    let d = start(config(dir.path(), vec![test_camera("cam0", 320, 240, 10, 1.0)])).await;
    assert!(!d.https);
    let c = Client::new();
    let trigger = format!("http://{}/api/cameras/cam0/trigger", d.http_addr);
    for bad in [("origin", "https://evil.example"), ("sec-fetch-site", "cross-site")] {
        let r = c.post(&trigger).header(bad.0, bad.1).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "{bad:?}");
    }
    assert!(!d.recorders[0].recording(), "a refused cross-site trigger must not record");
    let push = format!("http://{}/api/cameras/phone9/push", d.http_addr);
    let r = c
        .get(&push)
        .header("origin", "https://evil.example")
        .header("connection", "upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-version", "13")
        .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert!(d.registry.get("phone9").is_none(), "a refused push must not create a camera");
    // DNS rebinding: a page of another site whose name resolves to 127.0.0.1 is same-origin
    // with itself; its Host names no name of this machine, so nothing is served to it.
    let clips = format!("http://{}/api/clips", d.http_addr);
    let r = c.get(&clips).header("host", "evil.example").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let body = r.text().await.unwrap();
    assert!(body.contains("evil.example"), "{body}");
    let r = c.get(&clips).header("host", format!("localhost:{}", d.http_addr.port())).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    // The same origin, and tools that send no Origin (curl, Home Assistant), still work.
    let own = format!("http://{}", d.http_addr);
    let r = c.post(&trigger).header("origin", own.as_str()).send().await.unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    let r = c.post(format!("http://{}/api/cameras/cam0/trigger", d.http_addr)).send().await.unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    d.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cross_site_and_form_logins_are_refused_and_never_counted() {
    let dir = tempfile::tempdir().unwrap();
    let d = start(auth_config(dir.path())).await;
    let c = client();
    let wrong = serde_json::json!({"username": "admin", "password": "wrong"}).to_string();
    for _ in 0..(2 * hindsight::auth::MAX_FAILURES) {
        // A page of another site posting JSON (its browser sends its Origin).
        let (st, _, body) =
            send(&c, Method::POST, d.http_addr, "/api/login", &[("origin", "https://evil.example")], Some(&wrong))
                .await;
        assert_eq!(st, StatusCode::FORBIDDEN, "{body}");
        // A `no-cors` form post: text/plain, no preflight.
        let r = c
            .post(url(d.http_addr, "/api/login"))
            .header("content-type", "text/plain")
            .body(wrong.clone())
            .send()
            .await
            .expect("HTTPS answers");
        assert_eq!(r.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
        assert!(r.text().await.unwrap().contains("application/json"));
    }
    // None of those burned the failure budget: the owner still logs in.
    let (st, h, body) = login(&c, d.http_addr, PASSWORD).await;
    assert_eq!(st, StatusCode::OK, "{body}");
    assert!(session_cookie(&h).starts_with("hindsight_session="));
    d.shutdown().await;
}

//! The phone web app: every file under `web/` embedded in the binary and served from memory.
//!
//! `/` is `index.html`, `/login` is `login.html` (also answered, first, by the auth routes), and
//! `/app.css`, `/phone.js`, `/favicon.svg` (also answered at `/favicon.ico`) and the app's ES
//! modules are served as they are: `/app.js` (the entry), `/js/dom.js`, `/js/api.js`,
//! `/js/router.js`, `/js/events.js`, `/js/tus.js`, `/js/timeline.js`, `/js/vodplayer.js`, `/js/liveplayer.js` and
//! `/js/pages/{live,clips,recordings,upload,phone,status,devices}.js` (no build step: the
//! browser follows the `import`s); `/vendor/hls.light.min.js` (hls.js 1.7.4, unmodified, loaded
//! by the Recordings page's player when the browser has no HLS of its own) with its license at
//! `/vendor/hls.js-LICENSE.txt`. Each answer carries
//! `Cache-Control: no-cache` and a strong `ETag` (a hash of the file, computed once), so a
//! browser revalidates with `If-None-Match` and gets a 304 until the binary is updated.

use std::sync::OnceLock;
use warp::http::{header, Response, StatusCode};
use warp::{Filter, Reply};

/// One embedded file.
struct Asset {
    /// Request path (without the leading `/`; empty for the index).
    path: &'static str,
    /// `Content-Type` answered.
    mime: &'static str,
    /// The file.
    body: &'static [u8],
}

/// `Content-Type` of the JavaScript files (the app's ES modules and `phone.js`).
const JS: &str = "text/javascript; charset=utf-8";

const ASSETS: &[Asset] = &[
    Asset { path: "", mime: "text/html; charset=utf-8", body: include_bytes!("../../web/index.html") },
    Asset { path: "login", mime: "text/html; charset=utf-8", body: include_bytes!("../../web/login.html") },
    Asset { path: "app.js", mime: JS, body: include_bytes!("../../web/app.js") },
    Asset { path: "js/dom.js", mime: JS, body: include_bytes!("../../web/js/dom.js") },
    Asset { path: "js/api.js", mime: JS, body: include_bytes!("../../web/js/api.js") },
    Asset { path: "js/router.js", mime: JS, body: include_bytes!("../../web/js/router.js") },
    Asset { path: "js/events.js", mime: JS, body: include_bytes!("../../web/js/events.js") },
    Asset { path: "js/tus.js", mime: JS, body: include_bytes!("../../web/js/tus.js") },
    Asset { path: "js/timeline.js", mime: JS, body: include_bytes!("../../web/js/timeline.js") },
    Asset { path: "js/vodplayer.js", mime: JS, body: include_bytes!("../../web/js/vodplayer.js") },
    Asset { path: "js/liveplayer.js", mime: JS, body: include_bytes!("../../web/js/liveplayer.js") },
    Asset { path: "js/pages/live.js", mime: JS, body: include_bytes!("../../web/js/pages/live.js") },
    Asset { path: "js/pages/clips.js", mime: JS, body: include_bytes!("../../web/js/pages/clips.js") },
    Asset { path: "js/pages/recordings.js", mime: JS, body: include_bytes!("../../web/js/pages/recordings.js") },
    Asset { path: "js/pages/upload.js", mime: JS, body: include_bytes!("../../web/js/pages/upload.js") },
    Asset { path: "js/pages/phone.js", mime: JS, body: include_bytes!("../../web/js/pages/phone.js") },
    Asset { path: "js/pages/status.js", mime: JS, body: include_bytes!("../../web/js/pages/status.js") },
    Asset { path: "js/pages/devices.js", mime: JS, body: include_bytes!("../../web/js/pages/devices.js") },
    Asset { path: "vendor/hls.light.min.js", mime: JS, body: include_bytes!("../../web/vendor/hls.light.min.js") },
    Asset {
        path: "vendor/hls.js-LICENSE.txt",
        mime: "text/plain; charset=utf-8",
        body: include_bytes!("../../web/vendor/hls.js-LICENSE.txt"),
    },
    Asset { path: "app.css", mime: "text/css; charset=utf-8", body: include_bytes!("../../web/app.css") },
    Asset { path: "phone.js", mime: JS, body: include_bytes!("../../web/phone.js") },
    Asset { path: "favicon.svg", mime: "image/svg+xml", body: include_bytes!("../../web/favicon.svg") },
    Asset { path: "favicon.ico", mime: "image/svg+xml", body: include_bytes!("../../web/favicon.svg") },
];

/// FNV-1a, 64 bit: enough to tell two versions of a file apart.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3))
}

/// The ETag of each asset, same order as [`ASSETS`], computed on first use.
fn etags() -> &'static [String] {
    static TAGS: OnceLock<Vec<String>> = OnceLock::new();
    TAGS.get_or_init(|| ASSETS.iter().map(|a| format!("\"{:016x}-{:x}\"", fnv1a(a.body), a.body.len())).collect())
}

/// Whether an `If-None-Match` value matches `etag` (a list, `*`, or weak forms).
fn matches(if_none_match: Option<&str>, etag: &str) -> bool {
    if_none_match.is_some_and(|v| v.split(',').map(str::trim).any(|t| t == "*" || t.trim_start_matches("W/") == etag))
}

/// The answer for `path` (GET or HEAD), or None when no asset has that path.
fn answer(path: &str, if_none_match: Option<&str>, head: bool) -> Option<warp::reply::Response> {
    let i = ASSETS.iter().position(|a| a.path == path)?;
    let (asset, etag) = (&ASSETS[i], &etags()[i]);
    let builder = Response::builder()
        .header(header::CACHE_CONTROL, "no-cache")
        .header(header::ETAG, etag.as_str())
        .header("x-content-type-options", "nosniff");
    let resp = if matches(if_none_match, etag) {
        builder.status(StatusCode::NOT_MODIFIED).body(warp::hyper::Body::empty())
    } else {
        let builder = builder
            .status(StatusCode::OK)
            .header(header::CONTENT_TYPE, asset.mime)
            .header(header::CONTENT_LENGTH, asset.body.len());
        builder.body(if head { warp::hyper::Body::empty() } else { warp::hyper::Body::from(asset.body) })
    };
    resp.ok()
}

/// `GET`/`HEAD` of `/`, `/login` and the app's files.
pub fn routes() -> warp::filters::BoxedFilter<(warp::reply::Response,)> {
    warp::get()
        .map(|| false)
        .or(warp::head().map(|| true))
        .unify()
        .and(warp::path::full())
        .and(warp::header::optional::<String>("if-none-match"))
        .and_then(|head: bool, full: warp::path::FullPath, inm: Option<String>| async move {
            let path = full.as_str().strip_prefix('/').unwrap_or(full.as_str());
            answer(path, inm.as_deref(), head).ok_or_else(warp::reject::not_found)
        })
        .map(|r: warp::reply::Response| r.into_response())
        .boxed()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serves_assets_with_etag_and_304() {
        let r = answer("", None, false).expect("index");
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.headers()[header::CONTENT_TYPE], "text/html; charset=utf-8");
        assert_eq!(r.headers()[header::CACHE_CONTROL], "no-cache");
        let etag = r.headers()[header::ETAG].to_str().expect("ascii etag").to_string();
        assert!(etag.starts_with('"') && etag.ends_with('"'), "{etag}");
        let again = answer("", Some(&format!("W/{etag}, \"other\"")), false).expect("index");
        assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
        assert_eq!(answer("", Some("\"nope\""), false).expect("index").status(), StatusCode::OK);
        let js = answer("app.js", None, true).expect("app.js");
        assert_eq!(js.headers()[header::CONTENT_TYPE], "text/javascript; charset=utf-8");
        assert_ne!(js.headers()[header::ETAG], r.headers()[header::ETAG]);
        assert!(answer("api/health", None, false).is_none());
        assert!(answer("../Cargo.toml", None, false).is_none());
        for p in ["login", "app.css", "phone.js", "favicon.svg", "favicon.ico", "js/router.js", "js/pages/live.js"] {
            assert!(answer(p, None, false).is_some(), "{p}");
        }
    }

    /// Every module the app imports (`from './x.js'`, relative to the importing file) is served,
    /// as JavaScript: a module added under `web/js/` but not to [`ASSETS`] fails here, not in a browser.
    #[test]
    fn every_imported_module_is_served() {
        let mut imports = 0;
        // The app's own modules (vendored scripts are not modules, and their text may hold `from '`).
        for a in ASSETS.iter().filter(|a| a.mime == JS && !a.path.starts_with("vendor/")) {
            let text = std::str::from_utf8(a.body).expect("utf-8 module");
            let dir = a.path.rsplit_once('/').map_or("", |(d, _)| d);
            for spec in text.split("from '").skip(1).filter_map(|rest| rest.split_once('\'')).map(|(s, _)| s) {
                // `/x.js` is from the root, `./x.js` and `../x.js` from the importing file's folder.
                let base = if spec.starts_with('/') { "" } else { dir };
                let mut parts: Vec<&str> = base.split('/').filter(|p| !p.is_empty()).collect();
                for seg in spec.split('/').filter(|p| !p.is_empty()) {
                    match seg {
                        "." => {}
                        ".." => assert!(parts.pop().is_some(), "{spec} in {} leaves the root", a.path),
                        s => parts.push(s),
                    }
                }
                let target = parts.join("/");
                let r = answer(&target, None, true)
                    .unwrap_or_else(|| panic!("{} imports {spec}: /{target} not served", a.path));
                assert_eq!(r.headers()[header::CONTENT_TYPE], JS, "{target}");
                imports += 1;
            }
        }
        assert!(imports >= 11, "only {imports} imports found");
        assert!(answer("vendor/hls.light.min.js", None, true).is_some(), "hls.js for the Recordings page");
    }
}

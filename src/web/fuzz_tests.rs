//! Property ("fuzz") tests of the web parsers that take outside input: `Range`, HLS file names
//! and query parameters, tus headers (`Tus-Resumable`, byte counts, `Upload-Checksum`, upload
//! ids), cookies and `Authorization`, `Host` and `Origin`. Header values are arbitrary bytes
//! (what the wire can carry, not only UTF-8). Beyond "no panic", each property says what holds:
//! a refusal is a 4xx, an accepted value is within its bounds. The public parsers are fuzzed in
//! `tests/fuzz.rs`.

use super::auth::{bearer, cookie, cookie_in, loopback_host, same_origin};
use super::clips::parse_range;
use super::hls::{parse_file, parse_query, File};
use super::tus::{check_tus, parse_checksum, parse_u64, upload_id};
use proptest::prelude::*;
use warp::http::{HeaderMap, HeaderValue};

const CASES: u32 = 512;

/// A header map with `name` set to `value` when the bytes are a legal header value.
fn with(name: &'static str, value: &[u8]) -> HeaderMap {
    let mut h = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_bytes(value) {
        h.insert(name, v);
    }
    h
}

/// Header bytes: mostly printable ASCII, some of anything.
fn header_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof!["[ -~]{0,80}".prop_map(String::into_bytes), prop::collection::vec(any::<u8>(), 0..80),]
}

/// A `Range` value: the right shape most of the time, with any numbers.
fn range_header() -> impl Strategy<Value = String> {
    let n = prop_oneof![Just(String::new()), any::<u64>().prop_map(|n| n.to_string()), "[0-9]{0,25}", "[ -~]{0,6}"];
    prop_oneof![
        (n.clone(), n.clone()).prop_map(|(a, b)| format!("bytes={a}-{b}")),
        (n.clone(), n).prop_map(|(a, b)| format!("bytes= {a} - {b} ,0-1")),
        "[ -~]{0,40}",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(CASES))]

    /// A satisfiable range lies inside the file (start ≤ end < size); anything else is the whole
    /// file or a 416.
    #[test]
    fn range(h in range_header(), size in prop_oneof![Just(0u64), Just(1u64), any::<u64>(), 0u64..10_000]) {
        match parse_range(Some(&h), size) {
            Ok(Some((a, b))) => prop_assert!(a <= b && b < size, "{h} {size} -> {a}-{b}"),
            Ok(None) => {}
            Err(e) => prop_assert_eq!(e.status().as_u16(), 416),
        }
    }

    /// HLS names: a name is recognised only in its exact form, and the numbers read back.
    #[test]
    fn hls_file_names(name in "[a-z0-9.]{0,30}", n in any::<u64>(), p in 0u64..1000) {
        match parse_file(&name) {
            Some(File::Playlist) => prop_assert_eq!(name.as_str(), "live.m3u8"),
            Some(File::Init) => prop_assert_eq!(name.as_str(), "init.mp4"),
            Some(File::Segment(s)) => prop_assert_eq!(name, format!("seg{s}.m4s")),
            Some(File::Part(m, q)) => prop_assert_eq!(name, format!("part{m}.{q}.m4s")),
            None => {}
        }
        prop_assert_eq!(parse_file(&format!("seg{n}.m4s")), Some(File::Segment(n)));
        prop_assert_eq!(parse_file(&format!("part{n}.{p}.m4s")), Some(File::Part(n, p)));
        prop_assert_eq!(parse_file(&format!("seg+{n}.m4s")), None);
    }

    /// HLS query: numbers in their exact decimal form are taken, anything else is a 400 (never a
    /// panic on a sign, spaces, or 20 digits).
    #[test]
    fn hls_query(raw in "[ -~]{0,60}", msn in any::<u64>(), part in any::<u64>(), v in any::<u32>()) {
        if let Err(e) = parse_query(&raw) {
            prop_assert_eq!(e.status().as_u16(), 400);
        }
        let q = parse_query(&format!("_HLS_msn={msn}&_HLS_part={part}&v={v}&_HLS_skip=YES"))
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!((q.msn, q.part, q.version), (Some(msn), Some(part), Some(v)));
        let (signed, too_big) = (format!("_HLS_msn=-{msn}"), format!("v={}", u64::from(v) + u64::from(u32::MAX) + 1));
        prop_assert!(parse_query(&signed).is_err());
        prop_assert!(parse_query(&too_big).is_err());
    }

    /// tus headers: any bytes are a value or a 4xx (412 for the protocol version); byte counts
    /// read back exactly; checksums name one of the supported algorithms.
    #[test]
    fn tus_headers(value in header_bytes(), n in any::<u64>(), id in "[ -~]{0,20}") {
        for name in ["upload-length", "upload-offset"] {
            match parse_u64(&with(name, &value), name) {
                Ok(_) => {}
                Err(e) => prop_assert_eq!(e.status().as_u16(), 400),
            }
            prop_assert_eq!(parse_u64(&with(name, n.to_string().as_bytes()), name).ok().flatten(), Some(n));
        }
        if let Err(e) = check_tus(&with("tus-resumable", &value)) {
            prop_assert_eq!(e.status().as_u16(), 412);
        }
        match parse_checksum(&with("upload-checksum", &value)) {
            Ok(Some(c)) => prop_assert!(["sha1", "sha256", "md5"].contains(&c.algo.as_str()), "{}", c.algo),
            Ok(None) => {}
            Err(e) => prop_assert_eq!(e.status().as_u16(), 400),
        }
        if upload_id(&id).is_ok() {
            prop_assert!(id.len() == 16 && id.bytes().all(|b| b.is_ascii_hexdigit()));
        }
    }

    /// Cookies and bearer tokens: what is found is a substring of the header, trimmed, and a
    /// cookie set among others is found exactly.
    #[test]
    fn cookies_and_authorization(value in header_bytes(), token in "[A-Za-z0-9_-]{1,40}", other in "[a-z]{1,8}=[a-z0-9]{0,8}") {
        let h = with("cookie", &value);
        if let Some(v) = cookie(&h, "hindsight_session") {
            prop_assert!(String::from_utf8_lossy(&value).contains(v));
            prop_assert_eq!(v.trim(), v);
        }
        let header = format!("{other}; hindsight_session={token}; x=y");
        prop_assume!(!other.starts_with("hindsight_session="));
        prop_assert_eq!(cookie_in(&header, "hindsight_session"), Some(token.as_str()));
        let h = with("authorization", &value);
        if let Some(t) = bearer(&h) {
            prop_assert!(!t.is_empty() && String::from_utf8_lossy(&value).contains(t));
        }
        let auth = format!("Bearer {token}");
        let h = with("authorization", auth.as_bytes());
        prop_assert_eq!(bearer(&h), Some(token.as_str()));
    }

    /// Host and Origin: another site's name is never this machine or this origin.
    #[test]
    fn host_and_origin(host in "[ -~]{0,40}", site in "[a-z]{1,10}\\.(example|com|net)(:[0-9]{1,5})?", origin in header_bytes()) {
        let _ = loopback_host(&host, "pi");
        prop_assert!(!loopback_host(&site, "pi"));
        let sub = format!("localhost.{site}");
        prop_assert!(!loopback_host(&sub, "pi"));
        let h = with("origin", format!("http://{site}").as_bytes());
        prop_assert!(!same_origin(&h, "http", Some("pi.local:8080")));
        let _ = same_origin(&with("origin", &origin), "https", Some("pi.local"));
    }
}

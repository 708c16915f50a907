//! Property ("fuzz") tests of the public parsers that take outside input: trigger payloads (MQTT
//! and HTTP), the config file, tus `Upload-Metadata`, secret redaction, MQTT topics and filters,
//! and the phone camera's chunk feed. Stable Rust (proptest), a fixed case budget per property,
//! run by `cargo test` like any test. Each property says what must hold beyond "no panic".
//!
//! Parsers private to a module are fuzzed beside them: `src/web/fuzz_tests.rs` (Range, HLS names
//! and queries, tus headers, cookies, `Authorization`, Host/Origin) and
//! `src/mqtt/broker/fuzz_tests.rs` (MQTT packets off the socket). A failing input proptest finds
//! is shrunk and saved under `proptest-regressions/`; it is then kept as a named case below.

use base64::Engine;
use hindsight::capture::phone::{FeedError, PhoneFeed};
use hindsight::config::Config;
use hindsight::mqtt::broker::topic::{matches, valid_filter, valid_topic};
use hindsight::mqtt::topics::{Topics, TriggerTopic};
use hindsight::redact::redact;
use hindsight::trigger::{check, parse_payload};
use hindsight::upload::parse_metadata;
use proptest::prelude::*;

const CASES: u32 = 512;

/// Any JSON value a client might send, nested a little.
fn json_value() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        any::<f64>().prop_map(|f| serde_json::Number::from_f64(f).map_or(serde_json::Value::Null, Into::into)),
        ".{0,80}".prop_map(serde_json::Value::from),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::from),
            prop::collection::btree_map(".{0,8}", inner, 0..4)
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A trigger object with the real keys and values of any type (or the right type, out of range).
fn trigger_object() -> impl Strategy<Value = String> {
    let key = prop_oneof![Just("pre_s"), Just("post_s"), Just("label"), Just("id"), Just("unknown")];
    prop::collection::btree_map(key, json_value(), 0..5)
        .prop_map(|m| serde_json::Value::Object(m.into_iter().map(|(k, v)| (k.to_string(), v)).collect()).to_string())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(CASES))]

    /// Any bytes: a request or a rejection, and an accepted request is within the checked ranges.
    #[test]
    fn trigger_payload_any_bytes(payload in prop::collection::vec(any::<u8>(), 0..300)) {
        if let Ok(req) = parse_payload(&payload) {
            prop_assert!(check(&req).is_ok());
        }
    }

    /// JSON objects with the real keys: an accepted one has finite seconds in 0..=3600, a short
    /// label without control characters; a rejection says why in words.
    #[test]
    fn trigger_payload_json(text in trigger_object()) {
        match parse_payload(text.as_bytes()) {
            Ok(req) => {
                for s in [req.pre_s, req.post_s].into_iter().flatten() {
                    prop_assert!(s.is_finite() && (0.0..=3600.0).contains(&s), "{s}");
                }
                if let Some(l) = &req.label {
                    prop_assert!(l.chars().count() <= 64 && !l.chars().any(char::is_control));
                }
            }
            Err(r) => prop_assert!(!r.message.is_empty()),
        }
    }

    /// Any text as a config file: never a panic, and a refusal always carries at least one error.
    #[test]
    fn config_any_text(text in "(?s).{0,400}") {
        if let Err(e) = Config::from_toml(&text, "fuzz.toml") {
            prop_assert!(!e.0.is_empty());
        }
    }

    /// The shipped default config with one key's value replaced by a value of another type (or
    /// out of range): refused errors name a key; a wrong-typed value names that very key.
    #[test]
    fn config_one_value_replaced(line in 0usize..64, value in config_value()) {
        let base = include_str!("../board-configs/default.toml");
        let lines: Vec<&str> = base.lines().collect();
        let assignments: Vec<usize> = (0..lines.len())
            .filter(|&i| { let l = lines[i].trim_start(); !l.starts_with('#') && !l.starts_with('[') && l.contains(" = ") })
            .collect();
        let at = assignments[line % assignments.len()];
        let key = lines[at].split(" = ").next().unwrap_or_default().trim().to_string();
        let mut edited: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
        edited[at] = format!("{key} = {value}");
        let text = edited.join("\n");
        if let Err(e) = Config::from_toml(&text, "fuzz.toml") {
            prop_assert!(!e.0.is_empty());
            for err in &e.0 {
                prop_assert!(!err.message.is_empty());
            }
            // A type error is reported at its key (the last path segment is the key's name).
            if e.0.iter().any(|err| err.message.starts_with("invalid type")) {
                prop_assert!(e.0.iter().any(|err| err.key.ends_with(&key)), "{key}: {e}");
            }
        }
    }

    /// tus `Upload-Metadata`: what a client encodes is what is read back; anything else is a
    /// clean error.
    #[test]
    fn upload_metadata_round_trip(name in "\\PC{0,40}", device in "\\PC{0,40}", junk in "\\PC{0,60}") {
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        let header = format!("filename {},device {},other {}", b64(&name), b64(&device), b64(&junk));
        let m = parse_metadata(&header).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(m.filename.as_deref(), Some(name.as_str()));
        prop_assert_eq!(m.device.as_deref(), Some(device.as_str()));
        let _ = parse_metadata(&junk);
    }

    /// A password in a URL's user-info or in a credential property never survives redaction,
    /// whatever surrounds it; redaction is idempotent and never panics.
    #[test]
    fn redaction_hides_passwords(
        before in "\\PC{0,30}",
        after in "[^@]{0,30}",
        scheme in "(rtsp|rtsps|http|https|srt)",
        user in "[a-zA-Z0-9._-]{1,12}",
        pw in "[A-Z][a-zA-Z0-9!$%&*+;=~]{7,20}",
        prop in prop_oneof![Just("user-pw"), Just("user-id"), Just("proxy-pw"), Just("password")],
    ) {
        let url = format!("{before} location={scheme}://{user}:{pw}@cam.lan:554/stream {after}");
        prop_assume!(!before.contains(&pw) && !after.contains(&pw));
        prop_assert!(!redact(&url).contains(&pw), "{}", redact(&url));
        let property = format!("{before} souphttpsrc {prop}={pw} {after}");
        prop_assert!(!redact(&property).contains(&pw), "{}", redact(&property));
        let quoted = format!("{before} {prop}=\"{pw} x\" {after}");
        prop_assert!(!redact(&quoted).contains(&pw), "{}", redact(&quoted));
        let once = redact(&url).into_owned();
        prop_assert_eq!(redact(&once).into_owned(), once);
    }

    #[test]
    fn redaction_any_text(s in "(?s)\\PC{0,200}") {
        let once = redact(&s).into_owned();
        prop_assert_eq!(redact(&once).into_owned(), once);
    }

    /// Topics and filters: any string is judged without a panic (multi-byte characters first
    /// included); a valid topic matches itself, `#`, and itself with any level made `+`.
    #[test]
    fn mqtt_topics_and_filters(topic in "\\PC{0,40}(/\\PC{0,12}){0,4}", filter in "\\PC{0,40}", level in 0usize..5) {
        let _ = (valid_filter(&filter), valid_topic(&filter));
        if valid_topic(&topic) {
            prop_assert!(valid_filter(&topic));
            prop_assert!(matches(&topic, &topic));
            prop_assert!(matches(&topic, "#"));
            let mut levels: Vec<&str> = topic.split('/').collect();
            let i = level % levels.len();
            levels[i] = "+";
            let plus = levels.join("/");
            prop_assert!(valid_filter(&plus));
            prop_assert!(matches(&topic, &plus), "{topic} / {plus}");
        }
        if valid_topic(&topic) && valid_filter(&filter) {
            let _ = matches(&topic, &filter);
        }
    }

    /// Trigger topics: the camera topic hindsight subscribes to parses back to that camera; any
    /// other string parses to a camera only if it has that exact shape.
    #[test]
    fn mqtt_trigger_topics(camera in "[a-z0-9_-]{1,32}", any_topic in "\\PC{0,60}") {
        let t = Topics::new("hindsight");
        prop_assert_eq!(t.parse_trigger(&t.camera(&camera, "trigger")), Some(TriggerTopic::Camera(camera.clone())));
        if let Some(TriggerTopic::Camera(c)) = t.parse_trigger(&any_topic) {
            prop_assert_eq!(any_topic, format!("hindsight/{c}/trigger"));
            prop_assert!(!c.contains('/') && !c.is_empty());
        }
    }

    /// The phone camera's chunk feed (what each WebSocket binary message becomes): a connection
    /// whose first chunk is not an init segment is refused with `NoInitSegment`; after an init
    /// segment any chunks are taken (with no pipeline attached they are counted as dropped).
    #[test]
    fn phone_chunks(first in prop::collection::vec(any::<u8>(), 0..64),
                    rest in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..256), 0..8),
                    webm in any::<bool>()) {
        let feed = PhoneFeed::new("fuzz");
        let init = first.starts_with(&[0x1A, 0x45, 0xDF, 0xA3]) || (first.len() >= 8 && &first[4..8] == b"ftyp");
        match feed.push(bytes::Bytes::from(first)) {
            Ok(()) => prop_assert!(init),
            Err(e) => { prop_assert!(!init); prop_assert_eq!(e, FeedError::NoInitSegment); }
        }
        let feed = PhoneFeed::new("fuzz");
        let header: &[u8] = if webm { &[0x1A, 0x45, 0xDF, 0xA3, 0x9F] } else { b"\0\0\0\x18ftypisom" };
        prop_assert!(feed.push(bytes::Bytes::copy_from_slice(header)).is_ok());
        for c in &rest {
            prop_assert!(feed.push(bytes::Bytes::from(c.clone())).is_ok());
        }
        prop_assert_eq!(feed.dropped(), rest.len() as u64);
    }
}

/// A TOML value of any type, or a plausible value out of range.
fn config_value() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<i64>().prop_map(|n| n.to_string()),
        any::<bool>().prop_map(|b| b.to_string()),
        "[a-zA-Z0-9 ./:_-]{0,20}".prop_map(|s| format!("{s:?}")),
        Just("-1".to_string()),
        Just("0".to_string()),
        Just("1e400".to_string()),
        Just("\"\"".to_string()),
        Just("[]".to_string()),
        Just("{}".to_string()),
        Just("\"99999999999TiB\"".to_string()),
        Just("nan".to_string()),
    ]
}

/// Regression cases kept from the properties above (each once failed or is a classic).
#[test]
fn fuzz_regressions() {
    // A multi-byte first character: rumqttc's `matches` panics on it; ours must not.
    assert!(valid_topic("é/x"));
    assert!(matches("é/x", "é/+"));
    assert!(!matches("$SYS/x", "+/x"));
    // Trigger payloads at the edges.
    assert!(parse_payload(b"{\"pre_s\":1e309}").is_err());
    assert!(parse_payload(b"{\"pre_s\":-0.0}").is_ok());
    assert!(parse_payload(&[0xff, 0xfe]).is_err());
    assert!(parse_payload(b"  on ").is_ok());
    // A config that is not TOML at all names no key but still refuses.
    let e = Config::from_toml("[[[", "x.toml").unwrap_err();
    assert_eq!(e.0.len(), 1);
}

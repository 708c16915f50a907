//! Every discovery payload against Home Assistant 2026.11's schema (required keys and an
//! allow-list per component: HA drops unknown keys silently), and against its fixture in
//! `tests/fixtures/ha/` (`HINDSIGHT_UPDATE_FIXTURES=1 cargo test discovery` rewrites them).

use super::*;
use std::collections::HashSet;

/// Keys every entity may carry (HA `schemas.py` MQTT_ENTITY_COMMON_SCHEMA, `config.py`).
const COMMON: &[&str] = &[
    "platform",
    "name",
    "unique_id",
    "qos",
    "encoding",
    "availability",
    "availability_mode",
    "availability_template",
    "availability_topic",
    "payload_available",
    "payload_not_available",
    "device",
    "entity_picture",
    "origin",
    "enabled_by_default",
    "entity_category",
    "icon",
    "json_attributes_topic",
    "json_attributes_template",
    "default_entity_id",
    "message_expiry_interval",
    "visible_by_default",
    "group",
];

/// Per platform: (required, also allowed).
fn schema(platform: &str) -> (&'static [&'static str], &'static [&'static str]) {
    match platform {
        "camera" => (&["topic"], &["image_encoding"]),
        "button" => (&["command_topic"], &["command_template", "device_class", "payload_press", "retain"]),
        "binary_sensor" => (
            &["state_topic"],
            &[
                "value_template",
                "device_class",
                "expire_after",
                "force_update",
                "off_delay",
                "payload_on",
                "payload_off",
            ],
        ),
        "switch" => (
            &["command_topic"],
            &[
                "state_topic",
                "value_template",
                "command_template",
                "payload_on",
                "payload_off",
                "state_on",
                "state_off",
                "optimistic",
                "retain",
                "device_class",
            ],
        ),
        "sensor" => (
            &["state_topic"],
            &[
                "value_template",
                "device_class",
                "state_class",
                "unit_of_measurement",
                "suggested_display_precision",
                "expire_after",
                "force_update",
                "options",
                "last_reset_value_template",
            ],
        ),
        "event" => (&["state_topic", "event_types"], &["value_template", "device_class"]),
        other => panic!("platform {other} has no schema here: add it from HA's source"),
    }
}

const DEVICE_KEYS: &[&str] = &[
    "identifiers",
    "connections",
    "name",
    "manufacturer",
    "model",
    "model_id",
    "sw_version",
    "hw_version",
    "serial_number",
    "via_device",
    "suggested_area",
    "configuration_url",
];
const ROOT_KEYS: &[&str] = &[
    "device",
    "origin",
    "components",
    "availability",
    "availability_mode",
    "availability_topic",
    "payload_available",
    "payload_not_available",
    "state_topic",
    "command_topic",
    "qos",
    "encoding",
    "message_expiry_interval",
];

fn keys(v: &Value) -> Vec<&str> {
    v.as_object().expect("an object").keys().map(String::as_str).collect()
}

fn only(v: &Value, allowed: &[&[&str]], what: &str) {
    for k in keys(v) {
        assert!(
            allowed.iter().any(|a| a.contains(&k)),
            "{what}: key {k:?} is not in HA's schema (it would be dropped)"
        );
    }
}

/// Check one device payload as HA's device discovery schema does; returns its unique ids.
fn validate(p: &Value, topics_seen: &mut Vec<String>) -> Vec<String> {
    only(p, &[ROOT_KEYS], "root");
    for k in ["device", "origin", "components"] {
        assert!(p.get(k).is_some(), "root: {k} is required");
    }
    only(&p["device"], &[DEVICE_KEYS], "device");
    let ids = p["device"]["identifiers"].as_array().expect("device.identifiers");
    assert!(!ids.is_empty() && ids.iter().all(|i| i.as_str().is_some_and(|s| !s.is_empty())));
    assert!(p["device"]["name"].is_string(), "device.name");
    if let Some(u) = p["device"].get("configuration_url") {
        let u = u.as_str().unwrap();
        assert!(u.starts_with("http://") || u.starts_with("https://"), "configuration_url {u} voids the device");
    }
    assert!(p["origin"]["name"].is_string(), "origin.name is required");
    only(&p["origin"], &[&["name", "sw_version", "support_url"]], "origin");
    for a in p["availability"].as_array().expect("availability list") {
        assert!(a["topic"].is_string());
        only(a, &[&["topic", "payload_available", "payload_not_available", "value_template"]], "availability");
    }
    let mut uids = Vec::new();
    for (key, c) in p["components"].as_object().expect("components") {
        assert!(key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'), "component id {key}");
        let platform = c["platform"].as_str().unwrap_or_else(|| panic!("{key}: platform is required"));
        let (required, allowed) = schema(platform);
        only(c, &[COMMON, allowed, required], key);
        for r in required {
            assert!(c.get(*r).is_some(), "{key} ({platform}): {r} is required");
        }
        uids.push(c["unique_id"].as_str().unwrap_or_else(|| panic!("{key}: unique_id")).to_string());
        for t in ["topic", "state_topic", "command_topic", "json_attributes_topic"] {
            if let Some(t) = c.get(t).and_then(Value::as_str) {
                assert!(!t.contains(['+', '#']), "{key}: {t}");
                topics_seen.push(t.to_string());
            }
        }
        if let Some(class) = c.get("device_class").and_then(Value::as_str) {
            if class == "timestamp" {
                assert!(c.get("unit_of_measurement").is_none() && c.get("state_class").is_none(), "{key}");
            }
        }
        if platform == "binary_sensor" || platform == "sensor" {
            assert_ne!(c.get("entity_category").and_then(Value::as_str), Some("config"), "{key}");
        }
        if platform == "event" {
            let types = c["event_types"].as_array().unwrap();
            assert!(types.iter().any(|t| t == "clip_saved"), "{key}");
        }
        if platform == "button" {
            let press = c["payload_press"].as_str().expect("payload_press: HA's default PRESS is refused");
            assert!(crate::trigger::parse_payload(press.as_bytes()).is_ok(), "{press} is a trigger");
        }
    }
    uids
}

fn fixture(name: &str, v: &Value) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/ha").join(name);
    let text = serde_json::to_string_pretty(v).unwrap() + "\n";
    if std::env::var_os("HINDSIGHT_UPDATE_FIXTURES").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &text).unwrap();
    }
    let kept = std::fs::read_to_string(&path).unwrap_or_default();
    assert_eq!(kept, text, "{} differs from the payload (HINDSIGHT_UPDATE_FIXTURES=1 rewrites it)", path.display());
}

#[test]
fn payloads_follow_home_assistant_s_schema_and_match_their_fixtures() {
    let d = Discovery::new("homeassistant", "hindsight", "0.0.0-fixture", Some("https://cam.lan:8443/"));
    let mut topics = Vec::new();
    let mut uids = validate(&d.appliance(), &mut topics);
    for cam in ["front", "garden"] {
        let p = d.camera(cam);
        uids.extend(validate(&p, &mut topics));
        assert_eq!(p["device"]["via_device"], d.appliance()["device"]["identifiers"][0]);
        assert_eq!(p["components"]["power"]["command_topic"], format!("hindsight/{cam}/power/set"));
    }
    let unique: HashSet<&String> = uids.iter().collect();
    assert_eq!(unique.len(), uids.len(), "unique_ids must be unique: {uids:?}");
    assert_eq!(uids.len(), 5 + 2 * 8);
    // Every topic an entity reads or writes is one the daemon serves.
    for t in &topics {
        let leaf = t.strip_prefix("hindsight/").unwrap();
        // The box's alerts: `hindsight/alert/{kind}`, published by the monitor for every kind.
        if let Some(kind) = leaf.strip_prefix("alert/") {
            assert!(["temperature", "throttled"].contains(&kind), "{t}");
            continue;
        }
        let leaf = leaf.split_once('/').map_or(leaf, |(_, l)| l);
        assert!(
            ["health", "state", "recording", "last_clip", "clip", "snapshot", "trigger", "power/set"].contains(&leaf),
            "{t}"
        );
    }
    fixture("appliance.json", &d.appliance());
    fixture("camera-front.json", &d.camera("front"));
    // Without a public URL there is no configuration_url (a relative one voids the device).
    let bare = Discovery::new("homeassistant", "hindsight", "1", None);
    assert!(bare.camera("front")["device"].get("configuration_url").is_none());
    assert_eq!(bare.web_url("/api/clips/x/video.mp4"), "/api/clips/x/video.mp4");
    assert_eq!(d.web_url("/api/clips/x/video.mp4"), "https://cam.lan:8443/api/clips/x/video.mp4");
}

#[test]
fn topics_and_ids_are_stable_and_safe() {
    let d = Discovery::new("ha", "home/cams", "1", None);
    assert_eq!(d.appliance_topic(), "ha/device/home_cams/config");
    assert_eq!(d.camera_topic("front"), "ha/device/home_cams/front/config");
    assert_eq!(d.camera_filter(), "ha/device/home_cams/+/config");
    assert_eq!(d.ha_status_topic(), "ha/status");
    assert_eq!(d.camera_of("ha/device/home_cams/front/config"), Some("front"));
    for other in [
        "ha/device/home_cams/config",
        "ha/device/other/front/config",
        "ha/device/home_cams/a/b/config",
        "ha/device/home_cams//config",
        "hb/device/home_cams/front/config",
        "ha/sensor/home_cams/front/config",
    ] {
        assert_eq!(d.camera_of(other), None, "{other}");
    }
    let p = d.camera("front");
    assert_eq!(p["components"]["snapshot"]["unique_id"], "hindsight:home/cams:front:snapshot");
    assert_eq!(p["device"]["identifiers"][0], "hindsight:home/cams:front");
    assert_eq!(p["availability"][0]["topic"], "home/cams/status");
    assert_eq!(p, Discovery::new("ha", "home/cams", "1", None).camera("front"), "deterministic");
}

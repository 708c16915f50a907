//! Home Assistant MQTT discovery as data: the retained device payloads that make each camera
//! (and the appliance) appear in Home Assistant by itself, and which retained config topics are
//! ours to clear (docs/API.md §4.1).
//!
//! Device-based discovery (one retained message per device under
//! `{prefix}/device/{node}[/{camera}]/config`, Home Assistant 2024.11 and later): one message
//! updates or removes a camera's entities atomically, and origin, device and availability are
//! sent once. `unique_id`s are `hindsight:{base_topic}:{camera}:{key}` — derived from the
//! config, so they are stable across restarts; two appliances on one broker need distinct base
//! topics (their topics do anyway). Keys follow Home Assistant 2026.11's schema exactly
//! (`homeassistant/components/mqtt/schemas.py`), which drops unknown keys silently: the unit
//! tests check every payload against an allow-list per component, and the payloads are kept as
//! fixtures in `tests/fixtures/ha/`.
//!
//! Pure: no network, no clock. Must never put a secret in a payload (none is known here).

use serde_json::{json, Map, Value};

/// What the payloads are built from.
#[derive(Debug, Clone)]
pub struct Discovery {
    prefix: String,
    /// `base_topic` with every character outside `[a-zA-Z0-9_-]` as `_` (discovery ids).
    node: String,
    base: String,
    version: String,
    public_url: Option<String>,
}

/// The button's payload: a trigger the trigger topic accepts, labelled as coming from Home
/// Assistant (Home Assistant's default, `PRESS`, is not one).
pub const PRESS: &str = r#"{"label":"home-assistant"}"#;

impl Discovery {
    /// Payloads for `base_topic` under the discovery `prefix`; `public_url` (e.g.
    /// `https://cam.lan:8443`) makes the device's "visit" link.
    pub fn new(prefix: &str, base_topic: &str, version: &str, public_url: Option<&str>) -> Self {
        let node = base_topic
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() || c == '_' || c == '-' { c } else { '_' })
            .collect();
        Discovery {
            prefix: prefix.to_string(),
            node,
            base: base_topic.to_string(),
            version: version.to_string(),
            public_url: public_url.map(|u| u.trim_end_matches('/').to_string()),
        }
    }

    /// The appliance's config topic: `{prefix}/device/{node}/config`.
    pub fn appliance_topic(&self) -> String {
        format!("{}/device/{}/config", self.prefix, self.node)
    }

    /// A camera's config topic: `{prefix}/device/{node}/{camera}/config`.
    pub fn camera_topic(&self, camera: &str) -> String {
        format!("{}/device/{}/{camera}/config", self.prefix, self.node)
    }

    /// The filter that reads every camera config of ours back (to clear removed cameras).
    pub fn camera_filter(&self) -> String {
        format!("{}/device/{}/+/config", self.prefix, self.node)
    }

    /// Home Assistant's birth topic: `online` there means it (re)started and wants configs.
    pub fn ha_status_topic(&self) -> String {
        format!("{}/status", self.prefix)
    }

    /// The camera a config topic of ours names (`None`: not one of ours).
    pub fn camera_of<'a>(&self, topic: &'a str) -> Option<&'a str> {
        let rest = topic.strip_prefix(&self.prefix)?.strip_prefix("/device/")?;
        let cam = rest.strip_prefix(&self.node)?.strip_prefix('/')?.strip_suffix("/config")?;
        (!cam.is_empty() && !cam.contains('/')).then_some(cam)
    }

    fn uid(&self, camera: Option<&str>, key: &str) -> String {
        match camera {
            Some(c) => format!("hindsight:{}:{c}:{key}", self.base),
            None => format!("hindsight:{}:{key}", self.base),
        }
    }

    fn appliance_id(&self) -> String {
        format!("hindsight:{}", self.base)
    }

    fn topic(&self, leaf: &str) -> String {
        format!("{}/{leaf}", self.base)
    }

    fn common(&self, device: Value, components: Map<String, Value>) -> Value {
        json!({
            "device": device,
            "origin": {"name": "hindsight", "sw_version": self.version},
            "availability": [{"topic": self.topic("status")}],
            "components": components,
        })
    }

    fn device(&self, id: String, name: &str, model: &str) -> Map<String, Value> {
        let mut d = Map::new();
        d.insert("identifiers".into(), json!([id]));
        d.insert("name".into(), json!(name));
        d.insert("manufacturer".into(), json!("hindsight"));
        d.insert("model".into(), json!(model));
        d.insert("sw_version".into(), json!(self.version));
        if let Some(u) = &self.public_url {
            d.insert("configuration_url".into(), json!(format!("{u}/")));
        }
        d
    }

    /// The appliance device: storage free space, an overall problem sensor and the number of
    /// raised alerts from the retained `{base}/health` (the `/api/health` body); overheating and
    /// throttling from the retained `{base}/alert/temperature` and `{base}/alert/throttled`.
    pub fn appliance(&self) -> Value {
        let health = self.topic("health");
        let mut c = Map::new();
        c.insert(
            "storage_free".into(),
            json!({
                "platform": "sensor", "unique_id": self.uid(None, "storage_free"), "name": "Storage free",
                "state_topic": health, "value_template": "{{ value_json.storage.free_percent }}",
                "unit_of_measurement": "%", "state_class": "measurement", "icon": "mdi:harddisk",
                "entity_category": "diagnostic", "qos": 1,
            }),
        );
        c.insert(
            "problem".into(),
            json!({
                "platform": "binary_sensor", "unique_id": self.uid(None, "problem"), "name": "Problem",
                "state_topic": health,
                "value_template": "{{ 'OFF' if value_json.status == 'ok' else 'ON' }}",
                "device_class": "problem", "entity_category": "diagnostic", "qos": 1,
            }),
        );
        c.insert(
            "alerts".into(),
            json!({
                "platform": "sensor", "unique_id": self.uid(None, "alerts"), "name": "Alerts",
                "state_topic": health, "value_template": "{{ value_json.alerts | length }}",
                "icon": "mdi:alert", "entity_category": "diagnostic", "qos": 1,
            }),
        );
        // The box's own problems, from the retained `{base}/alert/{kind}` states (`monitor`).
        for (key, name, class) in
            [("temperature", "Overheating", "heat"), ("throttled", "Throttled or under-voltage", "problem")]
        {
            c.insert(
                format!("alert_{key}"),
                json!({
                    "platform": "binary_sensor", "unique_id": self.uid(None, &format!("alert_{key}")), "name": name,
                    "state_topic": self.topic(&format!("alert/{key}")),
                    "value_template": "{{ 'ON' if value_json.active else 'OFF' }}",
                    "device_class": class, "entity_category": "diagnostic", "qos": 1,
                }),
            );
        }
        let name = if self.base == "hindsight" { "hindsight".to_string() } else { format!("hindsight {}", self.base) };
        self.common(Value::Object(self.device(self.appliance_id(), &name, "hindsight appliance")), c)
    }

    /// One camera's device: snapshot camera, Save clip button, recording, on/off switch,
    /// buffered seconds, last clip time and URL, and a clip event.
    pub fn camera(&self, camera: &str) -> Value {
        let t = |leaf: &str| self.topic(&format!("{camera}/{leaf}"));
        let uid = |key: &str| self.uid(Some(camera), key);
        let mut c = Map::new();
        c.insert(
            "snapshot".into(),
            json!({
                "platform": "camera", "unique_id": uid("snapshot"), "name": null,
                "topic": t("snapshot"), "json_attributes_topic": t("state"), "qos": 1,
            }),
        );
        c.insert(
            "save_clip".into(),
            json!({
                "platform": "button", "unique_id": uid("save_clip"), "name": "Save clip",
                "command_topic": t("trigger"), "payload_press": PRESS, "retain": false,
                "icon": "mdi:content-save", "qos": 1,
            }),
        );
        c.insert(
            "recording".into(),
            json!({
                "platform": "binary_sensor", "unique_id": uid("recording"), "name": "Recording",
                "state_topic": t("recording"), "icon": "mdi:record-rec", "qos": 1,
            }),
        );
        c.insert(
            "power".into(),
            json!({
                "platform": "switch", "unique_id": uid("power"), "name": "Camera",
                "command_topic": t("power/set"), "state_topic": t("state"),
                "value_template": "{{ 'OFF' if value_json.state == 'stopped' else 'ON' }}",
                "icon": "mdi:cctv", "qos": 1,
            }),
        );
        c.insert(
            "buffered".into(),
            json!({
                "platform": "sensor", "unique_id": uid("buffered"), "name": "Buffered",
                "state_topic": t("state"), "value_template": "{{ value_json.buffered_s }}",
                "device_class": "duration", "unit_of_measurement": "s", "state_class": "measurement",
                "suggested_display_precision": 1, "entity_category": "diagnostic", "qos": 1,
            }),
        );
        c.insert(
            "last_clip".into(),
            json!({
                "platform": "sensor", "unique_id": uid("last_clip"), "name": "Last clip",
                "state_topic": t("last_clip"), "value_template": "{{ value_json.end_at }}",
                "device_class": "timestamp", "qos": 1,
            }),
        );
        c.insert(
            "last_clip_url".into(),
            json!({
                "platform": "sensor", "unique_id": uid("last_clip_url"), "name": "Last clip URL",
                "state_topic": t("last_clip"), "value_template": "{{ value_json.web_url }}",
                "icon": "mdi:link", "qos": 1,
            }),
        );
        c.insert(
            "clip".into(),
            json!({
                "platform": "event", "unique_id": uid("clip"), "name": "Clip",
                "state_topic": t("clip"), "event_types": ["clip_saved", "clip_failed"], "qos": 1,
            }),
        );
        let mut device = self.device(uid("device").trim_end_matches(":device").to_string(), camera, "hindsight camera");
        device.insert("via_device".into(), json!(self.appliance_id()));
        self.common(Value::Object(device), c)
    }

    /// The absolute link to a clip's video for Home Assistant: `{public_url}{path}`, or the
    /// path alone without `http.public_url`.
    pub fn web_url(&self, path: &str) -> String {
        match &self.public_url {
            Some(u) => format!("{u}{path}"),
            None => path.to_string(),
        }
    }
}

#[cfg(test)]
#[path = "discovery_tests.rs"]
mod tests;

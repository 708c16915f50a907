//! `[triggers]`: the per-source trigger rate limit ([`TriggersConfig`]).
//!
//! Data only: the limiter itself is [`crate::trigger::RateLimiter`].

use serde::{Deserialize, Serialize};

/// `[triggers]`: how many triggers one source (an HTTP client address, an MQTT trigger topic) may
/// send.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TriggersConfig {
    /// Sustained triggers a minute per source; 0 = no limit.
    #[serde(default = "default_rate_per_min")]
    pub rate_per_min: u32,
    /// Triggers a source may send at once before the sustained rate applies.
    #[serde(default = "default_burst")]
    pub burst: u32,
}

fn default_rate_per_min() -> u32 {
    60
}
fn default_burst() -> u32 {
    10
}

impl Default for TriggersConfig {
    fn default() -> Self {
        TriggersConfig { rate_per_min: default_rate_per_min(), burst: default_burst() }
    }
}

impl TriggersConfig {
    /// Problems as (key, message).
    pub fn problems(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        if self.rate_per_min > 60_000 {
            out.push(("triggers.rate_per_min".to_string(), "must be 0..=60000 (0: no limit)".to_string()));
        }
        if !(1..=10_000).contains(&self.burst) {
            out.push(("triggers.burst".to_string(), "must be 1..=10000".to_string()));
        }
        out
    }
}

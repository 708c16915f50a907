//! Topic names and filters as the embedded broker accepts them (MQTT 3.1.1 § 4.7), with the
//! broker's own bounds on length and depth.
//!
//! Owns: what a valid topic (publish) and filter (subscribe) is, and whether a topic matches a
//! filter. Must never panic on any UTF-8 string (rumqttc's `matches` slices the first byte of
//! the topic and panics on a multi-byte first character, so it is not used here).

/// Longest topic or filter accepted, in bytes.
pub const MAX_TOPIC_LEN: usize = 256;
/// Most levels (`/`-separated parts) in a topic or filter.
pub const MAX_LEVELS: usize = 32;

fn bounded(s: &str) -> bool {
    !s.is_empty() && s.len() <= MAX_TOPIC_LEN && s.split('/').count() <= MAX_LEVELS && !s.contains('\0')
}

/// A topic a client may publish to: bounded, no wildcards, not a `$` (broker-reserved) topic.
pub fn valid_topic(topic: &str) -> bool {
    bounded(topic) && !topic.contains(['+', '#']) && !topic.starts_with('$')
}

/// A filter a client may subscribe to: bounded; `#` only as the whole last level, `+` only as a
/// whole level.
pub fn valid_filter(filter: &str) -> bool {
    if !bounded(filter) {
        return false;
    }
    let levels: Vec<&str> = filter.split('/').collect();
    let last = levels.len() - 1;
    levels.iter().enumerate().all(|(i, l)| match *l {
        "#" => i == last,
        "+" => true,
        l => !l.contains(['+', '#']),
    })
}

/// Whether `topic` (a valid topic) matches `filter` (a valid filter). Wildcards at the first
/// level do not match `$` topics.
pub fn matches(topic: &str, filter: &str) -> bool {
    if topic.starts_with('$') && filter.starts_with(['+', '#']) {
        return false;
    }
    let mut t = topic.split('/');
    for f in filter.split('/') {
        if f == "#" {
            return true;
        }
        match t.next() {
            Some(level) if f == "+" || f == level => continue,
            _ => return false,
        }
    }
    t.next().is_none()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_and_matching() {
        assert!(valid_filter("a/+/c") && valid_filter("#") && valid_filter("a/#") && valid_filter("+"));
        assert!(!valid_filter("a/#/c") && !valid_filter("a+") && !valid_filter("") && !valid_filter("a/b#"));
        assert!(valid_topic("a/b") && !valid_topic("a/+") && !valid_topic("$SYS/x") && !valid_topic(""));
        assert!(!valid_topic(&"x".repeat(MAX_TOPIC_LEN + 1)));
        assert!(!valid_topic(&"a/".repeat(MAX_LEVELS)));
        assert!(matches("a/b/c", "a/+/c") && matches("a/b/c", "#") && matches("a/b/c", "a/#"));
        assert!(matches("a", "a/#"), "a/# matches its parent level (§ 4.7.1.2)");
        assert!(!matches("a/b", "a") && !matches("a", "a/b") && !matches("a/b/c", "a/+"));
        assert!(!matches("$SYS/x", "#") && !matches("$SYS/x", "+/x") && matches("$SYS/x", "$SYS/#"));
        // A multi-byte first character (rumqttc's matcher panics on it).
        assert!(matches("é/x", "é/+") && !matches("é", "a"));
    }
}

//! Secrets out of every string that leaves the process: a camera source such as
//! `rtspsrc location=rtsp://admin:pw@cam/…` or `souphttpsrc user-id=admin user-pw=pw …`, and the
//! GStreamer errors that quote it, reach the API (`source`, `last_error`, `/api/health`), the
//! retained MQTT state and the log. [`redact`] replaces the user-info of every URL
//! (`scheme://user:password@host` → `scheme://***@host`) and the value of every credential
//! property (`user-id`, `user-pw`, `proxy-id`, `proxy-pw`, `password`, `passwd`) with `***`.
//!
//! A leaf: imports nothing of the crate. `config::SourceConfig::describe` and
//! `status::error_chain` call it, so every source description and every error chain is redacted
//! where it is made.

use std::borrow::Cow;

/// Properties whose value is a secret (GStreamer's rtspsrc, souphttpsrc and others).
const SECRET_PROPERTIES: [&str; 6] = ["user-id", "user-pw", "proxy-id", "proxy-pw", "password", "passwd"];

/// `s` with URL user-info and credential property values replaced by `***`.
pub fn redact(s: &str) -> Cow<'_, str> {
    if !s.contains("://") && !SECRET_PROPERTIES.iter().any(|p| s.contains(p)) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    // URL user-info: from after `://` to the last `@` of the authority.
    while let Some(i) = rest.find("://") {
        let (head, tail) = rest.split_at(i + 3);
        out.push_str(head);
        let end = tail.find(|c: char| c == '/' || c == '?' || c == '#' || c == '"' || c == '\'' || c.is_whitespace());
        let authority = &tail[..end.unwrap_or(tail.len())];
        match authority.rfind('@') {
            Some(at) => {
                out.push_str("***");
                rest = &tail[at..];
            }
            None => rest = tail,
        }
    }
    out.push_str(rest);
    for p in SECRET_PROPERTIES {
        out = redact_property(&out, p);
    }
    Cow::Owned(out)
}

/// `name=value` (value bare or in double quotes) → `name=***`, for every occurrence of `name`
/// as a whole property name.
fn redact_property(s: &str, name: &str) -> String {
    let pat = format!("{name}=");
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find(&pat) {
        let whole = i == 0 || !rest[..i].ends_with(|c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        out.push_str(&rest[..i + pat.len()]);
        let value = &rest[i + pat.len()..];
        if !whole {
            rest = value;
            continue;
        }
        out.push_str("***");
        let len = match value.strip_prefix('"') {
            Some(q) => q.find('"').map(|e| e + 2).unwrap_or(value.len()),
            None => value.find(|c: char| c.is_whitespace() || c == ',' || c == ';' || c == ')').unwrap_or(value.len()),
        };
        rest = &value[len..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn user_info_and_credential_properties_are_hidden() {
        let cases = [
            (
                "gstreamer:rtspsrc location=rtsp://admin:pw@192.168.1.20:554/Streaming/101 ! rtph264depay",
                "gstreamer:rtspsrc location=rtsp://***@192.168.1.20:554/Streaming/101 ! rtph264depay",
            ),
            ("location=\"rtsps://u:p@cam\" latency=0", "location=\"rtsps://***@cam\" latency=0"),
            ("http://user@host/video and http://host/x", "http://***@host/video and http://host/x"),
            (
                "souphttpsrc user-id=admin user-pw=\"s e c\" location=http://cam/",
                "souphttpsrc user-id=*** user-pw=*** location=http://cam/",
            ),
            ("Could not open rtsp://a:b@c:1/x: refused", "Could not open rtsp://***@c:1/x: refused"),
            ("rtsp://p%40ss:w@rd@host/", "rtsp://***@host/"),
            ("proxy-pw=hunter2,next", "proxy-pw=***,next"),
            ("nothing to hide: /dev/video0 user-pwx", "nothing to hide: /dev/video0 user-pwx"),
            ("my-user-pw=x", "my-user-pw=x"),
        ];
        for (input, want) in cases {
            assert_eq!(redact(input), want, "{input}");
        }
    }

    #[test]
    fn plain_strings_are_not_copied() {
        assert!(matches!(redact("v4l2:/dev/video0"), std::borrow::Cow::Borrowed(_)));
    }
}

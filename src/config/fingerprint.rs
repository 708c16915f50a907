//! TLS certificate fingerprints, one spelling everywhere: `AB:CD:…`, the SHA-256 of the
//! certificate's DER, as browsers and `openssl x509 -fingerprint -sha256` show it. The daemon logs
//! its own HTTPS certificate's this way, and an `rtsps://` camera's is pinned this way
//! (`source.tls_fingerprint`).

/// `AB:CD:…` of SHA-256(`der`).
pub fn of_der(der: &[u8]) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, der);
    d.as_ref().iter().map(|b| format!("{b:02X}")).collect::<Vec<_>>().join(":")
}

/// A fingerprint as a user writes it (`sha256:` prefix, colons and case all optional) in the
/// `AB:CD:…` spelling of [`of_der`]; `None` unless it is 32 bytes of hex.
pub fn parse(s: &str) -> Option<String> {
    let s = s.trim();
    let s = s.get(..7).filter(|p| p.eq_ignore_ascii_case("sha256:")).map_or(s, |_| &s[7..]);
    let hex: Vec<u8> = s.bytes().filter(|&c| c != b':').collect();
    if hex.len() != 64 || !hex.iter().all(u8::is_ascii_hexdigit) {
        return None;
    }
    let pairs: Vec<String> = hex.chunks(2).map(|p| String::from_utf8_lossy(p).to_ascii_uppercase()).collect();
    Some(pairs.join(":"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spellings_of_one_fingerprint_agree() {
        let fp = of_der(b"certificate");
        assert_eq!(fp.len(), 32 * 3 - 1);
        for written in [
            fp.clone(),
            fp.to_lowercase(),
            format!("sha256:{fp}"),
            fp.replace(':', ""),
            format!("SHA256:{}", fp.replace(':', "").to_lowercase()),
        ] {
            assert_eq!(parse(&written).as_deref(), Some(fp.as_str()), "{written}");
        }
        for bad in ["", "sha256:", "AB:CD", &fp[..fp.len() - 1], &format!("{fp}:00"), &fp.replace('A', "G")] {
            assert_eq!(parse(bad), None, "{bad:?}");
        }
    }
}

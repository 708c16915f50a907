//! HTTPS material: the user's certificate and key (`http.cert_file`, `http.key_file`), or a
//! self-signed certificate generated at first start into `{state_dir}/tls/` and reused after.
//!
//! Errors name the config key (or the generated file) so a broken start says what to fix. The
//! certificate's SHA-256 fingerprint is returned so the daemon can log it for the user to
//! compare with what the phone's browser shows.

use crate::config::HttpConfig;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// Why HTTPS could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A configured or generated PEM file could not be read or parsed.
    #[error("{key}: {path}: {message}")]
    File {
        /// The config key (`http.cert_file`, `http.key_file`) or `http.state_dir` for generated files.
        key: &'static str,
        /// The file.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// The certificate could not be generated.
    #[error("cannot generate a self-signed certificate: {0}")]
    Generate(String),
    /// rustls refused the certificate/key pair.
    #[error("http.cert_file/http.key_file: the certificate and key do not make a usable TLS configuration: {0}")]
    Config(String),
}

/// A ready TLS server configuration.
pub struct Tls {
    /// For the acceptor.
    pub config: Arc<rustls::ServerConfig>,
    /// SHA-256 of the leaf certificate (DER), `AB:CD:...`.
    pub fingerprint: String,
    /// Where the certificate came from (for the log line).
    pub source: String,
}

fn file_err(key: &'static str, path: &Path, message: impl Into<String>) -> TlsError {
    TlsError::File { key, path: path.display().to_string(), message: message.into() }
}

fn read_certs(key: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bytes = std::fs::read(path).map_err(|e| file_err(key, path, format!("cannot read: {e}")))?;
    let certs: Vec<_> = rustls_pemfile::certs(&mut bytes.as_slice())
        .collect::<Result<_, _>>()
        .map_err(|e| file_err(key, path, format!("not a PEM certificate: {e}")))?;
    if certs.is_empty() {
        return Err(file_err(key, path, "no PEM certificate (-----BEGIN CERTIFICATE-----) in the file"));
    }
    Ok(certs)
}

fn read_key(key: &'static str, path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let bytes = std::fs::read(path).map_err(|e| file_err(key, path, format!("cannot read: {e}")))?;
    rustls_pemfile::private_key(&mut bytes.as_slice())
        .map_err(|e| file_err(key, path, format!("not a PEM private key: {e}")))?
        .ok_or_else(|| file_err(key, path, "no PEM private key (PKCS#8, PKCS#1 or SEC1) in the file"))
}

/// The names the generated certificate is valid for: localhost, loopback addresses, the host
/// name and `{host}.local`, and this machine's non-loopback addresses.
pub fn subject_alt_names() -> Vec<String> {
    let mut names = vec!["localhost".to_string(), "127.0.0.1".into(), "::1".into()];
    if let Ok(h) = nix::unistd::gethostname() {
        if let Some(h) = h.to_str().filter(|h| !h.is_empty() && *h != "localhost") {
            names.push(h.to_string());
            if !h.contains('.') {
                names.push(format!("{h}.local"));
            }
        }
    }
    if let Ok(addrs) = nix::ifaddrs::getifaddrs() {
        for a in addrs {
            let ip: Option<std::net::IpAddr> = a.address.as_ref().and_then(|s| {
                s.as_sockaddr_in()
                    .map(|v4| std::net::IpAddr::V4(v4.ip()))
                    .or_else(|| s.as_sockaddr_in6().map(|v6| std::net::IpAddr::V6(v6.ip())))
            });
            if let Some(ip) = ip {
                // Link-local IPv6 needs a zone id, which certificates cannot name.
                let link_local_v6 = matches!(ip, std::net::IpAddr::V6(v6) if (v6.segments()[0] & 0xffc0) == 0xfe80);
                let s = ip.to_string();
                if !ip.is_loopback() && !link_local_v6 && !names.contains(&s) {
                    names.push(s);
                }
            }
        }
    }
    names
}

/// Generate a self-signed certificate for [`subject_alt_names`] into `dir`.
fn generate(dir: &Path) -> Result<(), TlsError> {
    let names = subject_alt_names();
    let mut params = rcgen::CertificateParams::new(names).map_err(|e| TlsError::Generate(e.to_string()))?;
    params.distinguished_name.push(rcgen::DnType::CommonName, "hindsight");
    params.distinguished_name.push(rcgen::DnType::OrganizationName, "hindsight camera appliance");
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    // Browsers (Apple's in particular) refuse server certificates valid for more than 825 days.
    // A board without a real-time clock may start before NTP with a date decades ago: never
    // date the certificate before EARLIEST, or it would be expired once the clock is right.
    let today = jiff::Zoned::now().date().max(EARLIEST);
    let start = today.checked_sub(jiff::Span::new().days(1)).unwrap_or(today);
    let end = today.checked_add(jiff::Span::new().days(825)).unwrap_or(today);
    params.not_before = rcgen::date_time_ymd(start.year().into(), start.month() as u8, start.day() as u8);
    params.not_after = rcgen::date_time_ymd(end.year().into(), end.month() as u8, end.day() as u8);
    let key = rcgen::KeyPair::generate().map_err(|e| TlsError::Generate(e.to_string()))?;
    let cert = params.self_signed(&key).map_err(|e| TlsError::Generate(e.to_string()))?;
    std::fs::create_dir_all(dir).map_err(|e| file_err("http.state_dir", dir, format!("cannot create: {e}")))?;
    let key_path = dir.join("key.pem");
    crate::storage::write_private(&key_path, key.serialize_pem().as_bytes(), 0o600)
        .map_err(|e| file_err("http.state_dir", &key_path, format!("cannot write: {e}")))?;
    let cert_path = dir.join("cert.pem");
    crate::storage::write_private(&cert_path, cert.pem().as_bytes(), 0o644)
        .map_err(|e| file_err("http.state_dir", &cert_path, format!("cannot write: {e}")))?;
    let until_path = dir.join(UNTIL_FILE);
    crate::storage::write_private(&until_path, end.to_string().as_bytes(), 0o644)
        .map_err(|e| file_err("http.state_dir", &until_path, format!("cannot write: {e}")))?;
    Ok(())
}

/// No generated certificate is dated before this (see [`generate`]).
const EARLIEST: jiff::civil::Date = jiff::civil::date(2026, 1, 1);
/// Beside the generated certificate: its last valid day, `YYYY-MM-DD`.
const UNTIL_FILE: &str = "valid-until";
/// A generated certificate this close to its end is replaced at start.
const RENEW_DAYS: i64 = 30;

/// Whether the generated certificate in `dir` is within [`RENEW_DAYS`] of its end (or past it),
/// judged by the date written beside it. A clock set to the past (no RTC, before NTP) never
/// makes it look expired, so it is not replaced by one dated in the past.
fn generated_expiring(dir: &Path) -> bool {
    let Some(until) =
        std::fs::read_to_string(dir.join(UNTIL_FILE)).ok().and_then(|s| s.trim().parse::<jiff::civil::Date>().ok())
    else {
        return false;
    };
    let renew_from = until.checked_sub(jiff::Span::new().days(RENEW_DAYS)).unwrap_or(until);
    jiff::Zoned::now().date() >= renew_from
}

/// The paths of the generated certificate and key under `state_dir`.
pub fn generated_paths(state_dir: &Path) -> (PathBuf, PathBuf) {
    let dir = state_dir.join("tls");
    (dir.join("cert.pem"), dir.join("key.pem"))
}

/// Load the user's certificate, or the generated one (generating it first if missing).
pub fn load(http: &HttpConfig, state_dir: &Path) -> Result<Tls, TlsError> {
    let (certs, key, source) = match (&http.cert_file, &http.key_file) {
        (Some(c), Some(k)) => {
            (read_certs("http.cert_file", c)?, read_key("http.key_file", k)?, c.display().to_string())
        }
        _ => {
            let (cert_path, key_path) = generated_paths(state_dir);
            let mut source = format!("self-signed, {}", cert_path.display());
            if !cert_path.exists() || !key_path.exists() {
                generate(&state_dir.join("tls"))?;
                source = format!("self-signed, generated now in {}", cert_path.display());
            } else if generated_expiring(&state_dir.join("tls")) {
                generate(&state_dir.join("tls"))?;
                source = format!("self-signed, renewed now (the old one was expiring) in {}", cert_path.display());
            }
            (read_certs("http.state_dir", &cert_path)?, read_key("http.state_dir", &key_path)?, source)
        }
    };
    let fingerprint = crate::config::fingerprint::of_der(certs[0].as_ref());
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| TlsError::Config(e.to_string()))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Tls { config: Arc::new(config), fingerprint, source })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_once_then_reused() {
        let dir = tempfile::tempdir().unwrap();
        let http = HttpConfig::default();
        let a = load(&http, dir.path()).unwrap();
        let b = load(&http, dir.path()).unwrap();
        assert_eq!(a.fingerprint, b.fingerprint);
        assert_eq!(a.fingerprint.len(), 32 * 3 - 1);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("tls/key.pem")).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn an_expiring_generated_certificate_is_renewed() {
        let dir = tempfile::tempdir().unwrap();
        let http = HttpConfig::default();
        let a = load(&http, dir.path()).unwrap();
        let until = std::fs::read_to_string(dir.path().join("tls").join(UNTIL_FILE)).unwrap();
        let until: jiff::civil::Date = until.trim().parse().unwrap();
        assert!(until > jiff::Zoned::now().date().checked_add(jiff::Span::new().days(800)).unwrap());
        // Its end comes within RENEW_DAYS: the next start makes a new one.
        let soon = jiff::Zoned::now().date().checked_add(jiff::Span::new().days(RENEW_DAYS - 1)).unwrap();
        std::fs::write(dir.path().join("tls").join(UNTIL_FILE), soon.to_string()).unwrap();
        let b = load(&http, dir.path()).unwrap();
        assert_ne!(a.fingerprint, b.fingerprint);
        assert!(b.source.contains("renewed"), "{}", b.source);
        // Far from its end: kept.
        let c = load(&http, dir.path()).unwrap();
        assert_eq!(b.fingerprint, c.fingerprint);
    }

    #[test]
    fn garbage_cert_names_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let bad = dir.path().join("bad.pem");
        std::fs::write(&bad, "garbage").unwrap();
        let http = HttpConfig { cert_file: Some(bad.clone()), key_file: Some(bad), ..HttpConfig::default() };
        let e = load(&http, dir.path()).err().unwrap().to_string();
        assert!(e.starts_with("http.cert_file"), "{e}");
    }
}

//! The login password: generating one, hashing it (PBKDF2-HMAC-SHA256 with a random salt) and
//! checking a password against a stored hash in constant time.
//!
//! Pure functions over strings: no files (the hash is kept by [`super::Auth`]), no HTTP, and
//! must never log a password.

use super::{hex, random_bytes, unhex, AuthError};

/// PBKDF2 rounds.
const PBKDF2_ROUNDS: u32 = 100_000;

/// A random password of `len` characters without look-alikes (0/O, 1/l/I).
pub fn generate_password(len: usize) -> Result<String, AuthError> {
    const ALPHABET: &[u8] = b"abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut out = String::with_capacity(len);
    while out.len() < len {
        for b in random_bytes::<32>()? {
            // 256 - 256 % 57 keeps the choice uniform.
            if (b as usize) < 256 - 256 % ALPHABET.len() && out.len() < len {
                out.push(ALPHABET[b as usize % ALPHABET.len()] as char);
            }
        }
    }
    Ok(out)
}

/// `pbkdf2-sha256$ROUNDS$SALT$HASH` (hex).
pub fn hash_password(password: &str) -> Result<String, AuthError> {
    let salt = random_bytes::<16>()?;
    let mut out = [0u8; 32];
    let rounds = std::num::NonZeroU32::new(PBKDF2_ROUNDS).ok_or(AuthError::Random)?;
    ring::pbkdf2::derive(ring::pbkdf2::PBKDF2_HMAC_SHA256, rounds, &salt, password.as_bytes(), &mut out);
    Ok(format!("pbkdf2-sha256${PBKDF2_ROUNDS}${}${}", hex(&salt), hex(&out)))
}

/// Whether `password` matches `stored` (constant time in the password).
pub fn verify_password(stored: &str, password: &str) -> bool {
    let mut it = stored.split('$');
    let (Some("pbkdf2-sha256"), Some(rounds), Some(salt), Some(hash), None) =
        (it.next(), it.next(), it.next(), it.next(), it.next())
    else {
        return false;
    };
    let (Some(rounds), Some(salt), Some(hash)) =
        (rounds.parse().ok().and_then(std::num::NonZeroU32::new), unhex(salt), unhex(hash))
    else {
        return false;
    };
    ring::pbkdf2::verify(ring::pbkdf2::PBKDF2_HMAC_SHA256, rounds, &salt, password.as_bytes(), &hash).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_hash_roundtrip() {
        let h = hash_password("correct horse").unwrap();
        assert!(verify_password(&h, "correct horse"));
        assert!(!verify_password(&h, "correct horsf"));
        assert!(!verify_password("garbage", "x"));
        assert_ne!(h, hash_password("correct horse").unwrap(), "salted");
        let p = generate_password(20).unwrap();
        assert_eq!(p.len(), 20);
    }
}

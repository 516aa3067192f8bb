//! Password rules and argon2id hashing. Hashing is slow on purpose: callers run it off the async runtime.

use crate::error::ValidationError;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;

/// A password that meets the rules; its `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct Password(String);

impl Password {
    pub const MIN_CHARS: usize = 12;
    pub const MAX_CHARS: usize = 256;

    pub fn parse(field: &str, value: &str) -> Result<Self, ValidationError> {
        let n = value.chars().count();
        if !(Self::MIN_CHARS..=Self::MAX_CHARS).contains(&n) {
            return Err(ValidationError::new(
                field,
                format!("must be between {} and {} characters", Self::MIN_CHARS, Self::MAX_CHARS),
            ));
        }
        Ok(Password(value.to_owned()))
    }

    /// A fresh random password of 24 characters from an unambiguous alphabet.
    pub fn generate() -> Password {
        const ALPHABET: &[u8] = b"abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
        let mut bytes = [0u8; 24];
        fill_random(&mut bytes);
        Password(bytes.iter().map(|b| ALPHABET[usize::from(*b) % ALPHABET.len()] as char).collect())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password([redacted])")
    }
}

/// Fills `buf` from the operating system's random source.
pub(crate) fn fill_random(buf: &mut [u8]) {
    // The OS source failing means the machine cannot do cryptography at all; there is no sane fallback.
    #[allow(clippy::expect_used)]
    getrandom::getrandom(buf).expect("the operating system's random source is unavailable");
}

/// An argon2id PHC string for `password`.
pub fn hash_password(password: &str) -> String {
    let mut salt = [0u8; 16];
    fill_random(&mut salt);
    // Both steps fail only on out-of-range parameters, which these are not; an empty hash never verifies.
    let Ok(salt) = SaltString::encode_b64(&salt) else { return String::new() };
    Argon2::default().hash_password(password.as_bytes(), &salt).map(|h| h.to_string()).unwrap_or_default()
}

/// True when `password` matches the stored PHC string. A malformed hash never matches.
pub fn verify_password(password: &str, phc: &str) -> bool {
    match PasswordHash::new(phc) {
        Ok(parsed) => Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok(),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hash_verifies_its_password_only() {
        let h = hash_password("correct horse battery");
        assert!(h.starts_with("$argon2id$"));
        assert!(verify_password("correct horse battery", &h));
        assert!(!verify_password("wrong horse battery", &h));
        assert!(!verify_password("anything", "not a hash"));
    }

    #[test]
    fn generated_passwords_meet_the_rules_and_differ() {
        let a = Password::generate();
        let b = Password::generate();
        assert!(Password::parse("password", a.expose()).is_ok());
        assert_ne!(a, b);
        assert_eq!(format!("{a:?}"), "Password([redacted])");
    }
}

//! Operators of the dashboard: their names, their passwords (hashed with
//! argon2id, the `argon2` crate's defaults: 19 MiB, 2 passes, as OWASP
//! recommends), and the random tokens of their sessions and forms. Only
//! hashes of passwords and session tokens are ever stored.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use base64::Engine;

/// Shortest password accepted, in characters.
pub const MIN_PASSWORD_CHARS: usize = 12;
/// Longest password accepted, in bytes (argon2 takes any length; this keeps a
/// sign-in request small).
pub const MAX_PASSWORD_BYTES: usize = 1024;

/// Why a name or password was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OperatorError {
    #[error("an operator name is 1 to 64 letters, digits, '.', '_', '-' or '@'")]
    BadName,
    #[error("a password has at least {MIN_PASSWORD_CHARS} characters and at most {MAX_PASSWORD_BYTES} bytes")]
    BadPassword,
    #[error("{0}")]
    Crypto(String),
}

/// Checks an operator name: 1 to 64 ASCII letters, digits, `.`, `_`, `-`,
/// `@` (it appears in the audit trail and the dashboard).
pub fn check_name(name: &str) -> Result<&str, OperatorError> {
    let valid = (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'.' | b'_' | b'-' | b'@'));
    valid.then_some(name).ok_or(OperatorError::BadName)
}

/// The argon2id PHC string (`$argon2id$v=19$m=19456,t=2,p=1$…`) of
/// `password`, with a fresh random salt. Errors: a password shorter than
/// [`MIN_PASSWORD_CHARS`] or longer than [`MAX_PASSWORD_BYTES`]; no
/// randomness.
pub fn hash_password(password: &str) -> Result<String, OperatorError> {
    if password.chars().count() < MIN_PASSWORD_CHARS || password.len() > MAX_PASSWORD_BYTES {
        return Err(OperatorError::BadPassword);
    }
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).map_err(|error| OperatorError::Crypto(format!("no randomness available: {error}")))?;
    let salt = SaltString::encode_b64(&salt).map_err(|error| OperatorError::Crypto(error.to_string()))?;
    argon2::Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|error| OperatorError::Crypto(error.to_string()))
}

/// Whether `password` matches the PHC string `hash` (argon2's comparison is
/// constant-time); a malformed hash matches nothing.
pub fn verify_password(password: &str, hash: &str) -> bool {
    if password.len() > MAX_PASSWORD_BYTES {
        return false;
    }
    PasswordHash::new(hash).is_ok_and(|parsed| {
        argon2::Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok()
    })
}

/// 32 random bytes as URL-safe base64 (43 characters): a session token (the
/// cookie) or a CSRF token (the forms).
pub fn random_token() -> Result<String, OperatorError> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|error| OperatorError::Crypto(format!("no randomness available: {error}")))?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

/// What is stored of a session token: its SHA-256, 64 hex digits.
pub fn token_hash(token: &str) -> String {
    hex::encode(<sha2::Sha256 as sha2::Digest>::digest(token.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_verifies_against_its_own_hash_only() {
        let hash = hash_password("correct horse battery").unwrap();
        assert!(hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{hash}");
        assert!(verify_password("correct horse battery", &hash));
        assert!(!verify_password("correct horse batterY", &hash));
        assert!(!verify_password("correct horse battery", "not a hash"));
        // A fresh salt each time.
        assert_ne!(hash, hash_password("correct horse battery").unwrap());
        assert_eq!(hash_password("short"), Err(OperatorError::BadPassword));
    }

    #[test]
    fn names_and_tokens() {
        assert!(check_name("alice.ops@shop").is_ok());
        for bad in ["", "has space", "<script>", &"x".repeat(65)] {
            assert_eq!(check_name(bad), Err(OperatorError::BadName), "{bad:?}");
        }
        let token = random_token().unwrap();
        assert_eq!(token.len(), 43);
        assert_ne!(token, random_token().unwrap());
        assert_eq!(token_hash(&token).len(), 64);
    }
}

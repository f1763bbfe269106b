//! API keys of the merchant API: their scopes and their one text form.
//!
//! A key is `tpk_<prefix>_<secret>`: the prefix (10 lowercase hex digits) is
//! public — it names the key in listings and finds its row — and the secret
//! (32 random bytes, base64url) is shown once, at creation. Only the SHA-256
//! of the whole key is stored (a random 256-bit secret needs no slow hash),
//! and a presented key is checked against it in constant time.

use base64::Engine as _;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq as _;

use crate::states::named_enum;

named_enum! {
    /// What a key may do (`api_keys.scopes`).
    pub enum Scope ("API key scope") {
        /// Read payments, their events, transfers, deliveries, statistics.
        PaymentsRead = "payments:read",
        /// Create and cancel payments, redeliver webhooks, send test webhooks.
        PaymentsWrite = "payments:write",
        /// Assign unmatched transfers; the operator's other routes.
        Operator = "operator",
    }
}

/// The start of every key.
pub const KEY_PREFIX: &str = "tpk_";
/// Hex digits of a key's public prefix.
const PREFIX_DIGITS: usize = 10;

/// A key as presented (`Authorization: Bearer tpk_…`), checked for shape.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKeyText {
    text: String,
    prefix_end: usize,
}

/// A text that is not an API key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("not a tronpay API key (tpk_<prefix>_<secret>)")]
pub struct NotAKey;

impl ApiKeyText {
    /// Generates a new key: its text (to show once) and what to store.
    pub fn generate() -> Result<Self, String> {
        let mut prefix = [0u8; PREFIX_DIGITS / 2];
        let mut secret = [0u8; 32];
        getrandom::fill(&mut prefix).map_err(|error| format!("no randomness available: {error}"))?;
        getrandom::fill(&mut secret).map_err(|error| format!("no randomness available: {error}"))?;
        let text = format!(
            "{KEY_PREFIX}{}_{}",
            hex::encode(prefix),
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret)
        );
        Self::parse(&text).map_err(|error| error.to_string())
    }

    pub fn parse(text: &str) -> Result<Self, NotAKey> {
        let rest = text.strip_prefix(KEY_PREFIX).ok_or(NotAKey)?;
        let (prefix, secret) = rest.split_once('_').ok_or(NotAKey)?;
        let prefix_ok = prefix.len() == PREFIX_DIGITS
            && prefix
                .bytes()
                .all(|byte| byte.is_ascii_digit() || (b'a'..=b'f').contains(&byte));
        let secret_ok = (32..=64).contains(&secret.len())
            && secret
                .bytes()
                .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_');
        if !prefix_ok || !secret_ok {
            return Err(NotAKey);
        }
        Ok(Self {
            text: text.to_owned(),
            prefix_end: KEY_PREFIX.len() + PREFIX_DIGITS,
        })
    }

    /// The public prefix (`3f9a1c0b7e`), which names the key.
    pub fn prefix(&self) -> &str {
        &self.text[KEY_PREFIX.len()..self.prefix_end]
    }

    /// The whole key, to print once.
    pub fn expose(&self) -> &str {
        &self.text
    }

    /// SHA-256 of the whole key, as 64 lowercase hex digits (what is stored).
    pub fn hash(&self) -> String {
        hex::encode(Sha256::digest(self.text.as_bytes()))
    }

    /// Whether this key is the one whose stored hash is `stored` (64 hex
    /// digits), compared in constant time.
    pub fn matches(&self, stored: &str) -> bool {
        let Ok(stored) = hex::decode(stored) else {
            return false;
        };
        let presented = Sha256::digest(self.text.as_bytes());
        stored.len() == presented.len() && bool::from(presented.as_slice().ct_eq(&stored))
    }
}

impl std::fmt::Debug for ApiKeyText {
    /// The prefix only: a key's secret never reaches a log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ApiKeyText({KEY_PREFIX}{}_…)", self.prefix())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_parse_back_and_match_only_their_own_hash() {
        let key = ApiKeyText::generate().unwrap();
        let other = ApiKeyText::generate().unwrap();
        assert_ne!(key, other);
        assert!(key.expose().starts_with("tpk_"));
        assert_eq!(ApiKeyText::parse(key.expose()).unwrap(), key);
        assert_eq!(key.prefix().len(), 10);
        assert!(key.matches(&key.hash()));
        assert!(!key.matches(&other.hash()));
        assert!(!key.matches("not hex"));
        assert!(!key.matches(&key.hash()[..62]));
        let shown = format!("{key:?}");
        assert!(!shown.contains(&key.expose()[16..]), "{shown}");
    }

    #[test]
    fn texts_that_are_not_keys_are_refused() {
        for text in [
            "",
            "tpk_",
            "Bearer tpk_0123456789_abcdefghijklmnopqrstuvwxyzABCDEFGH",
            "tpk_0123456789",
            "tpk_012345678_abcdefghijklmnopqrstuvwxyzABCDEFGHIJ",
            "tpk_0123456789_short",
            "tpk_012345678G_abcdefghijklmnopqrstuvwxyzABCDEFGHIJ",
            "tpk_0123456789_abcdefghijklmnopqrstuvwxyzABCDEFGH!J",
        ] {
            assert_eq!(ApiKeyText::parse(text), Err(NotAKey), "{text:?}");
        }
        assert!(ApiKeyText::parse("tpk_0123456789_abcdefghijklmnopqrstuvwxyzABCDEFGHIJ").is_ok());
    }
}

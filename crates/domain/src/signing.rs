//! Standard Webhooks signatures (<https://www.standardwebhooks.com/>).
//!
//! A secret is `whsec_` + base64 of random bytes. Each request carries
//! `webhook-id` (one per event, stable across retries), `webhook-timestamp`
//! (seconds) and `webhook-signature: v1,<base64 HMAC-SHA256 of
//! "{id}.{timestamp}.{body}">`; during a secret rotation several signatures,
//! space-separated.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

const PREFIX: &str = "whsec_";

/// A webhook signing secret. Its `Debug` never shows the key.
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookSecret {
    text: String,
    key: Vec<u8>,
}

impl WebhookSecret {
    /// Parses `whsec_<base64>` (the prefix is optional, as in the reference
    /// libraries).
    pub fn parse(text: &str) -> Result<Self, String> {
        let encoded = text.trim().strip_prefix(PREFIX).unwrap_or(text.trim());
        let key = STANDARD
            .decode(encoded)
            .map_err(|_| "a webhook secret is whsec_ followed by base64".to_owned())?;
        if key.len() < 16 {
            return Err("a webhook secret needs at least 16 bytes of key".into());
        }
        Ok(Self {
            text: format!("{PREFIX}{encoded}"),
            key,
        })
    }

    /// A fresh secret of 32 random bytes from the operating system.
    pub fn generate() -> Result<Self, String> {
        let mut key = [0u8; 32];
        getrandom::fill(&mut key).map_err(|error| format!("no randomness available: {error}"))?;
        Ok(Self {
            text: format!("{PREFIX}{}", STANDARD.encode(key)),
            key: key.to_vec(),
        })
    }

    /// The `whsec_…` text (to store or show to the operator).
    pub fn expose(&self) -> &str {
        &self.text
    }

    /// `v1,<signature>` of one message.
    pub fn sign(&self, id: &str, timestamp: i64, body: &[u8]) -> String {
        format!(
            "v1,{}",
            STANDARD.encode(self.mac(id, timestamp, body).finalize().into_bytes())
        )
    }

    /// Whether the `webhook-signature` header value `signatures` (one or
    /// more space-separated `v1,<base64>`) holds this secret's signature of
    /// the message. Each candidate is compared in constant time, so the time
    /// taken tells nothing about how much of a forged signature was right;
    /// entries of other versions and malformed entries are skipped.
    pub fn verify(&self, id: &str, timestamp: i64, body: &[u8], signatures: &str) -> bool {
        let mac = self.mac(id, timestamp, body);
        signatures
            .split(' ')
            .filter_map(|entry| entry.strip_prefix("v1,"))
            .filter_map(|encoded| STANDARD.decode(encoded).ok())
            .any(|tag| mac.clone().verify_slice(&tag).is_ok())
    }

    /// HMAC-SHA256 over `{id}.{timestamp}.{body}`.
    fn mac(&self, id: &str, timestamp: i64, body: &[u8]) -> Hmac<Sha256> {
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(&self.key) else {
            unreachable!("HMAC accepts keys of any length")
        };
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        mac
    }
}

impl fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WebhookSecret(whsec_…)")
    }
}

/// The `webhook-signature` header value for `secrets` (newest first): one
/// `v1,…` per secret, space-separated.
pub fn signature_header(secrets: &[WebhookSecret], id: &str, timestamp: i64, body: &[u8]) -> String {
    secrets
        .iter()
        .map(|secret| secret.sign(id, timestamp, body))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Published test vectors of the Standard Webhooks reference libraries.
    #[test]
    fn reference_vectors() {
        let secret = WebhookSecret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        assert_eq!(
            secret.sign("msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, br#"{"test": 2432232314}"#),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
        let secret = WebhookSecret::parse("whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD").unwrap();
        assert_eq!(
            secret.sign(
                "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk",
                1649367553,
                br#"{"email":"test@example.com","username":"test_user"}"#
            ),
            "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw="
        );
    }

    #[test]
    fn verify_accepts_any_matching_signature_and_nothing_else() {
        let old = WebhookSecret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let new = WebhookSecret::parse("whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD").unwrap();
        let (id, timestamp, body) = ("msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, br#"{"test": 2432232314}"#);
        let reference = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";
        assert!(old.verify(id, timestamp, body, reference));
        // During a rotation the header carries both; either secret verifies.
        let header = signature_header(&[new.clone(), old.clone()], id, timestamp, body);
        assert!(old.verify(id, timestamp, body, &header));
        assert!(new.verify(id, timestamp, body, &header));
        assert!(!new.verify(id, timestamp, body, reference));
        // Another message, version, or a malformed or truncated signature.
        assert!(!old.verify(id, timestamp + 1, body, reference));
        assert!(!old.verify(id, timestamp, b"{}", reference));
        assert!(!old.verify(id, timestamp, body, &reference.replacen("v1,", "v2,", 1)));
        assert!(!old.verify(id, timestamp, body, "v1,not base64!"));
        assert!(!old.verify(id, timestamp, body, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE="));
        assert!(!old.verify(id, timestamp, body, ""));
    }

    #[test]
    fn generated_secrets_are_distinct_and_parse_back() {
        let first = WebhookSecret::generate().unwrap();
        let second = WebhookSecret::generate().unwrap();
        assert_ne!(first, second);
        assert!(first.expose().starts_with("whsec_"));
        assert_eq!(WebhookSecret::parse(first.expose()).unwrap(), first);
        assert!(!format!("{first:?}").contains(&first.expose()[6..]));
    }

    #[test]
    fn bad_secrets_are_refused() {
        assert!(WebhookSecret::parse("whsec_not base64!").is_err());
        assert!(WebhookSecret::parse("whsec_c2hvcnQ=").is_err());
    }

    #[test]
    fn a_rotation_signs_with_every_secret() {
        let old = WebhookSecret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let new = WebhookSecret::parse("whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD").unwrap();
        let header = signature_header(&[new.clone(), old.clone()], "msg_1", 1, b"{}");
        let parts: Vec<&str> = header.split(' ').collect();
        assert_eq!(parts, [new.sign("msg_1", 1, b"{}"), old.sign("msg_1", 1, b"{}")]);
    }
}

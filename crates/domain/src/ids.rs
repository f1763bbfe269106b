//! Typed ids: a payment's and a webhook delivery's. (A transfer's is
//! [`crate::TransferId`].)

use std::fmt;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A payment's id (`payments.id`, `VARCHAR(36)`): the UUID tronpay gives
/// it, or, for a payment imported from the original service, the id it had
/// there — 1 to 36 printable characters.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PaymentId(String);

/// A text that cannot be a payment id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a payment id is 1 to 36 printable characters, not {0:?}")]
pub struct PaymentIdError(pub String);

impl PaymentId {
    /// A new id: a random (version 4) UUID, hyphenated, lowercase.
    pub fn generate() -> Self {
        Self(Uuid::new_v4().to_string())
    }

    pub fn parse(text: &str) -> Result<Self, PaymentIdError> {
        let length = text.chars().count();
        if (1..=36).contains(&length) && !text.chars().any(char::is_control) {
            Ok(Self(text.to_owned()))
        } else {
            Err(PaymentIdError(text.to_owned()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// For database rows (`#[diesel(deserialize_as = String)]`), which only
/// ever hold ids made by [`PaymentId::generate`] or [`PaymentId::parse`]
/// (the column is `VARCHAR(36)`): taken as they are.
impl From<String> for PaymentId {
    fn from(text: String) -> Self {
        Self(text)
    }
}

impl From<PaymentId> for String {
    fn from(id: PaymentId) -> Self {
        id.0
    }
}

impl std::str::FromStr for PaymentId {
    type Err = PaymentIdError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::parse(text)
    }
}

impl fmt::Display for PaymentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for PaymentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PaymentId({})", self.0)
    }
}

impl Serialize for PaymentId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for PaymentId {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

impl PartialEq<str> for PaymentId {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

/// A webhook delivery's id (`webhook_deliveries.id`, a UUID); its
/// `webhook-id` header is `msg_` and this id without hyphens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct DeliveryId(pub Uuid);

impl DeliveryId {
    /// A new random (version 4) id.
    pub fn generate() -> Self {
        Self(Uuid::new_v4())
    }

    /// The Standard Webhooks `webhook-id` of this delivery's event.
    pub fn webhook_id(self) -> String {
        format!("msg_{}", self.0.simple())
    }
}

impl From<Uuid> for DeliveryId {
    fn from(id: Uuid) -> Self {
        Self(id)
    }
}

impl From<DeliveryId> for Uuid {
    fn from(id: DeliveryId) -> Self {
        id.0
    }
}

impl std::str::FromStr for DeliveryId {
    type Err = uuid::Error;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Uuid::parse_str(text).map(Self)
    }
}

impl fmt::Display for DeliveryId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payment_ids_are_short_printable_texts() {
        let id = PaymentId::generate();
        assert_eq!(id.as_str().len(), 36);
        assert_eq!(PaymentId::parse(id.as_str()), Ok(id.clone()));
        assert!(PaymentId::parse("legacy-42").is_ok(), "an imported id");
        assert!(PaymentId::parse("").is_err());
        assert!(PaymentId::parse(&"x".repeat(37)).is_err());
        assert!(PaymentId::parse("a\nb").is_err());
        assert_eq!(serde_json::to_string(&id).unwrap(), format!("\"{id}\""));
    }

    #[test]
    fn a_delivery_id_names_its_webhook_id() {
        let id: DeliveryId = "0b6f7a6e-4a53-4a52-9a0e-1f7c1d2c6b11".parse().unwrap();
        assert_eq!(id.webhook_id(), "msg_0b6f7a6e4a534a529a0e1f7c1d2c6b11");
        assert_eq!(
            serde_json::to_string(&id).unwrap(),
            "\"0b6f7a6e-4a53-4a52-9a0e-1f7c1d2c6b11\""
        );
    }
}

//! JSON shapes tronpay promises to others: the original API's payment view
//! (`GET /payment_status/{id}`, and the export's public part), its times as
//! epoch seconds, and the webhook body. Their field names and number forms
//! are the original service's and never change.

use serde::Serialize;

use crate::JsonAmount;

/// A UTC time serialized as a JSON number of seconds since the Unix epoch
/// with its exact microseconds (`1764074428.123456`), the original API's
/// representation of times, without a float's rounding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EpochSeconds {
    /// Microseconds since the Unix epoch.
    pub micros: i64,
}

impl EpochSeconds {
    pub fn from_micros(micros: i64) -> Self {
        Self { micros }
    }

    /// `1764074428.123456`, `1764074428.0`, `-1.5`.
    pub fn to_json_number(self) -> String {
        let sign = if self.micros < 0 { "-" } else { "" };
        let micros = self.micros.unsigned_abs();
        let fraction = format!("{:06}", micros % 1_000_000);
        let fraction = fraction.trim_end_matches('0');
        format!(
            "{sign}{}.{}",
            micros / 1_000_000,
            if fraction.is_empty() { "0" } else { fraction }
        )
    }
}

impl Serialize for EpochSeconds {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serde_json::value::RawValue::from_string(self.to_json_number())
            .map_err(serde::ser::Error::custom)?
            .serialize(serializer)
    }
}

/// The public view of a payment: the body of `GET /payment_status/{id}`
/// (the original's `to_dict(include_internal=False)`), field for field.
#[derive(Debug, Serialize)]
pub struct PaymentView<'a> {
    pub id: &'a str,
    pub wallet_address: &'a str,
    pub expected_amount_usdt: JsonAmount,
    pub order_id: &'a str,
    pub status: &'static str,
    pub transaction_hash: Option<&'a str>,
    pub received_amount_usdt: Option<JsonAmount>,
    pub created_at: EpochSeconds,
    pub completed_at: Option<EpochSeconds>,
}

/// The webhook body: every field of the original completion callback, plus
/// the event type.
#[derive(Debug, Serialize)]
pub struct WebhookBody<'a> {
    pub payment_id: &'a str,
    pub order_id: &'a str,
    pub wallet_address: &'a str,
    /// Always `USDT_TRC20`.
    pub currency: &'static str,
    pub expected_amount_usdt: JsonAmount,
    pub received_amount_usdt: Option<JsonAmount>,
    pub transaction_hash: Option<&'a str>,
    /// Milliseconds, as TronGrid reported it to the original.
    pub block_timestamp: Option<i64>,
    pub status: &'static str,
    /// A [`crate::events::WebhookEvent`] name.
    pub event: &'static str,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epoch_seconds_keep_microseconds() {
        assert_eq!(
            EpochSeconds::from_micros(1_764_074_428_123_456).to_json_number(),
            "1764074428.123456"
        );
        assert_eq!(
            serde_json::to_string(&EpochSeconds::from_micros(1_764_074_428_000_000)).unwrap(),
            "1764074428.0"
        );
        assert_eq!(EpochSeconds::from_micros(-1_500_000).to_json_number(), "-1.5");
    }
}

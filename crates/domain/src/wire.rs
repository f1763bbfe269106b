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
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(as = LegacyPaymentStatus))]
pub struct PaymentView<'a> {
    pub id: &'a str,
    pub wallet_address: &'a str,
    /// USDT, a JSON number with the exact digits.
    #[cfg_attr(feature = "openapi", schema(value_type = f64, example = 12.34))]
    pub expected_amount_usdt: JsonAmount,
    pub order_id: &'a str,
    /// `pending`, `completed`, `expired` or `failed`.
    pub status: &'static str,
    pub transaction_hash: Option<&'a str>,
    #[cfg_attr(feature = "openapi", schema(value_type = Option<f64>))]
    pub received_amount_usdt: Option<JsonAmount>,
    /// Seconds since the Unix epoch, with microseconds.
    #[cfg_attr(feature = "openapi", schema(value_type = f64, example = 1764074428.123456))]
    pub created_at: EpochSeconds,
    #[cfg_attr(feature = "openapi", schema(value_type = Option<f64>))]
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

/// A UTC time as RFC 3339 with microseconds (`2026-11-30T21:04:05.123456Z`),
/// the v1 API's representation of times.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rfc3339 {
    /// Microseconds since the Unix epoch.
    pub micros: i64,
}

impl Rfc3339 {
    pub fn from_micros(micros: i64) -> Self {
        Self { micros }
    }

    /// A UTC time as PostgreSQL's `TIMESTAMP` columns hold it.
    pub fn from_naive(time: chrono::NaiveDateTime) -> Self {
        Self::from_micros(time.and_utc().timestamp_micros())
    }

    pub fn to_text(self) -> String {
        chrono::DateTime::from_timestamp_micros(self.micros)
            .unwrap_or_default()
            .to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
    }
}

impl Serialize for Rfc3339 {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_text())
    }
}

#[cfg(feature = "openapi")]
impl utoipa::PartialSchema for Rfc3339 {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .format(Some(utoipa::openapi::SchemaFormat::KnownFormat(
                utoipa::openapi::KnownFormat::DateTime,
            )))
            .examples(["2026-11-30T21:04:05.123456Z"])
            .into()
    }
}

#[cfg(feature = "openapi")]
impl utoipa::ToSchema for Rfc3339 {}

/// The v1 payment resource: what `/v1/payments` answers and v1 webhooks
/// carry. Amounts are decimal strings, times RFC 3339 UTC.
#[derive(Debug, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(as = Payment))]
pub struct PaymentResource<'a> {
    pub id: &'a str,
    pub order_id: &'a str,
    /// `pending`, `completed`, `expired` or `failed` (cancelled).
    #[cfg_attr(feature = "openapi", schema(example = "pending"))]
    pub status: &'static str,
    /// What the merchant asked for, USDT.
    #[cfg_attr(feature = "openapi", schema(value_type = String, example = "12.34"))]
    pub amount: crate::UsdtAmount,
    /// What the buyer must send, exactly (equal to `amount` unless the
    /// address is shared and the amount raised to be unique).
    #[cfg_attr(feature = "openapi", schema(value_type = String, example = "12.34"))]
    pub amount_to_pay: crate::UsdtAmount,
    /// Credited so far (partial payments add up), `null` before any.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, example = "12.34"))]
    pub received_amount: Option<crate::UsdtAmount>,
    /// Always `USDT_TRC20`.
    pub currency: &'static str,
    /// The TRON address to pay (Base58).
    pub address: &'a str,
    /// The page the buyer pays through.
    pub checkout_url: Option<&'a str>,
    /// Where webhooks go, `null` for none.
    pub notify_url: Option<&'a str>,
    /// Events sent besides `payment.completed`.
    pub notify_events: &'a [String],
    /// Where the checkout page sends the buyer once paid.
    pub redirect_url: Option<&'a str>,
    /// The merchant's JSON object, as given.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub metadata: Option<&'a serde_json::value::RawValue>,
    /// The transaction that completed it.
    pub transaction_hash: Option<&'a str>,
    pub created_at: Rfc3339,
    pub expires_at: Rfc3339,
    pub completed_at: Option<Rfc3339>,
}

/// A USDT transfer as v1 shows it.
#[derive(Debug, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TransferResource<'a> {
    pub txid: &'a str,
    pub log_index: u32,
    pub from: String,
    pub to: String,
    #[cfg_attr(feature = "openapi", schema(value_type = String, example = "12.34"))]
    pub amount: crate::UsdtAmount,
    pub block_number: u64,
    pub block_time: Rfc3339,
}

impl<'a> TransferResource<'a> {
    pub fn of(transfer: &'a crate::Transfer) -> Self {
        Self {
            txid: transfer.id.txid.as_str(),
            log_index: transfer.id.log_index,
            from: transfer.from.to_base58(),
            to: transfer.to.to_base58(),
            amount: transfer.amount,
            block_number: transfer.block_number,
            block_time: Rfc3339::from_micros(transfer.block_time_ms.saturating_mul(1_000)),
        }
    }
}

/// The body of a webhook about a v1 payment: the event, the payment as it
/// is now, and the transfer the event is about (detections, completions,
/// partial and late payments).
#[derive(Debug, Serialize)]
pub struct V1WebhookBody<'a> {
    /// A [`crate::events::WebhookEvent`] name.
    pub event: &'static str,
    pub payment: PaymentResource<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transfer: Option<TransferResource<'a>>,
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

    #[test]
    fn rfc3339_times_are_utc_with_microseconds() {
        assert_eq!(
            Rfc3339::from_micros(1_764_074_428_123_456).to_text(),
            "2025-11-25T12:40:28.123456Z"
        );
        assert_eq!(
            serde_json::to_string(&Rfc3339::from_micros(0)).unwrap(),
            "\"1970-01-01T00:00:00.000000Z\""
        );
    }
}

//! Rows as they are read from and written to the tables.

use std::io::Write;

use bigdecimal::BigDecimal;
use chrono::NaiveDateTime;
use diesel::deserialize::{self, FromSql, FromSqlRow};
use diesel::expression::AsExpression;
use diesel::pg::{Pg, PgValue};
use diesel::prelude::*;
use diesel::serialize::{self, IsNull, Output, ToSql};
use tronpay_domain::{JsonAmount, PaymentStatus, UsdtAmount};

use crate::schema::{payments, sql_types};

/// A [`PaymentStatus`] as the `payment_status` column type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, AsExpression, FromSqlRow)]
#[diesel(sql_type = sql_types::PaymentStatus)]
pub struct DbStatus(pub PaymentStatus);

impl ToSql<sql_types::PaymentStatus, Pg> for DbStatus {
    fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Pg>) -> serialize::Result {
        out.write_all(self.0.as_str().as_bytes())?;
        Ok(IsNull::No)
    }
}

impl FromSql<sql_types::PaymentStatus, Pg> for DbStatus {
    fn from_sql(bytes: PgValue<'_>) -> deserialize::Result<Self> {
        let text = std::str::from_utf8(bytes.as_bytes())?;
        Ok(Self(text.parse()?))
    }
}

/// Every column of `payments`.
#[derive(Debug, Clone, Queryable, QueryableByName, Selectable, Insertable)]
#[diesel(table_name = payments, check_for_backend(Pg))]
pub struct PaymentRow {
    pub id: String,
    pub wallet_address: String,
    pub expected_amount_usdt: BigDecimal,
    pub callback_url: String,
    pub order_id: String,
    pub status: DbStatus,
    pub transaction_hash: Option<String>,
    pub received_amount_usdt: Option<BigDecimal>,
    pub created_at: NaiveDateTime,
    pub completed_at: Option<NaiveDateTime>,
    pub last_checked_timestamp: i64,
    pub callback_attempts: i32,
    pub last_callback_attempt: Option<NaiveDateTime>,
    pub callback_success: bool,
    pub expires_at: NaiveDateTime,
    /// Webhook events besides completion this payment receives.
    pub notify_events: Vec<String>,
}

impl PaymentRow {
    pub fn status(&self) -> PaymentStatus {
        self.status.0
    }

    /// The expected amount; the column type guarantees 6 decimals at most
    /// and the check constraint a positive value.
    pub fn expected_amount(&self) -> Result<UsdtAmount, tronpay_domain::AmountError> {
        UsdtAmount::from_decimal(&self.expected_amount_usdt)
    }

    pub fn received_amount(&self) -> Result<Option<UsdtAmount>, tronpay_domain::AmountError> {
        self.received_amount_usdt
            .as_ref()
            .map(UsdtAmount::from_decimal)
            .transpose()
    }
}

/// The public view of a payment: the body of `GET /payment_status/{id}`
/// (the original's `to_dict(include_internal=False)`), field for field.
#[derive(Debug, serde::Serialize)]
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

impl<'a> PaymentView<'a> {
    pub fn new(row: &'a PaymentRow) -> Result<Self, tronpay_domain::AmountError> {
        Ok(Self {
            id: &row.id,
            wallet_address: &row.wallet_address,
            expected_amount_usdt: JsonAmount(row.expected_amount()?),
            order_id: &row.order_id,
            status: row.status().as_str(),
            transaction_hash: row.transaction_hash.as_deref(),
            received_amount_usdt: row.received_amount()?.map(JsonAmount),
            created_at: EpochSeconds(row.created_at),
            completed_at: row.completed_at.map(EpochSeconds),
        })
    }
}

/// A UTC timestamp serialized as a JSON number of seconds since the Unix
/// epoch with its exact microseconds (`1764074428.123456`), the original
/// API's representation of times, without a float's rounding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EpochSeconds(pub NaiveDateTime);

impl EpochSeconds {
    pub fn to_json_number(self) -> String {
        let micros = self.0.and_utc().timestamp_micros();
        let sign = if micros < 0 { "-" } else { "" };
        let micros = micros.unsigned_abs();
        let fraction = format!("{:06}", micros % 1_000_000);
        let fraction = fraction.trim_end_matches('0');
        format!(
            "{sign}{}.{}",
            micros / 1_000_000,
            if fraction.is_empty() { "0" } else { fraction }
        )
    }
}

impl serde::Serialize for EpochSeconds {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serde_json::value::RawValue::from_string(self.to_json_number())
            .map_err(serde::ser::Error::custom)?
            .serialize(serializer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epoch_seconds_keep_microseconds() {
        let time = chrono::DateTime::from_timestamp_micros(1_764_074_428_123_456)
            .unwrap()
            .naive_utc();
        assert_eq!(EpochSeconds(time).to_json_number(), "1764074428.123456");
        let time = chrono::DateTime::from_timestamp(1_764_074_428, 0).unwrap().naive_utc();
        assert_eq!(serde_json::to_string(&EpochSeconds(time)).unwrap(), "1764074428.0");
        let time = chrono::DateTime::from_timestamp_micros(-1_500_000).unwrap().naive_utc();
        assert_eq!(EpochSeconds(time).to_json_number(), "-1.5");
    }
}

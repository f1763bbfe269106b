//! Rows as they are read from and written to the tables.

use std::io::Write;

use bigdecimal::BigDecimal;
use chrono::NaiveDateTime;
use diesel::deserialize::{self, FromSql, FromSqlRow};
use diesel::expression::AsExpression;
use diesel::pg::{Pg, PgValue};
use diesel::prelude::*;
use diesel::serialize::{self, IsNull, Output, ToSql};
use tronpay_domain::events::WebhookEvent;
use tronpay_domain::wire::{EpochSeconds, PaymentResource, PaymentView, Rfc3339};
use tronpay_domain::{JsonAmount, PaymentId, PaymentStatus, UsdtAmount};

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
    #[diesel(deserialize_as = String, serialize_as = String)]
    pub id: PaymentId,
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
    /// 0: made through the original `/create_payment`; 1: through `/v1`
    /// (its webhooks carry the v1 resource).
    pub api_version: i16,
    /// Where the checkout page sends the buyer once paid (v1).
    pub redirect_url: Option<String>,
    /// The merchant's metadata: a JSON object, the text as given (v1).
    pub metadata_json: Option<String>,
    /// `PUBLIC_BASE_URL` + `/pay/{id}` when it was created (v1).
    pub checkout_url: Option<String>,
    /// What the buyer must send when it is not the amount asked (the raised
    /// amount of `ADDRESS_MODE=unique_amount`); `None`: the amount.
    pub amount_to_pay: Option<BigDecimal>,
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

    /// What the buyer must send, and what matching compares transfers
    /// with: `amount_to_pay` when set, else the expected amount.
    pub fn amount_due(&self) -> Result<UsdtAmount, tronpay_domain::AmountError> {
        UsdtAmount::from_decimal(self.amount_to_pay.as_ref().unwrap_or(&self.expected_amount_usdt))
    }

    pub fn received_amount(&self) -> Result<Option<UsdtAmount>, tronpay_domain::AmountError> {
        self.received_amount_usdt
            .as_ref()
            .map(UsdtAmount::from_decimal)
            .transpose()
    }

    /// Whether this payment receives `event`: none without a callback URL
    /// (a v1 payment may have none); completion always; the others only when
    /// it asked for them (never for payments created through the original
    /// `/create_payment`).
    pub fn wants(&self, event: WebhookEvent) -> bool {
        !self.callback_url.is_empty()
            && (event == WebhookEvent::Completed || self.notify_events.iter().any(|wanted| wanted == event.as_str()))
    }

    /// The v1 resource of this payment; fails only for a stored amount that
    /// is not a USDT amount.
    pub fn resource(&self) -> Result<PaymentResource<'_>, tronpay_domain::AmountError> {
        let rfc3339 = Rfc3339::from_naive;
        let expected = self.expected_amount()?;
        Ok(PaymentResource {
            id: self.id.as_str(),
            order_id: &self.order_id,
            status: self.status().as_str(),
            amount: expected,
            amount_to_pay: self.amount_due()?,
            received_amount: self.received_amount()?,
            currency: "USDT_TRC20",
            address: &self.wallet_address,
            checkout_url: self.checkout_url.as_deref(),
            notify_url: Some(self.callback_url.as_str()).filter(|url| !url.is_empty()),
            notify_events: &self.notify_events,
            redirect_url: self.redirect_url.as_deref(),
            metadata: self
                .metadata_json
                .as_deref()
                .and_then(|text| serde_json::from_str::<&serde_json::value::RawValue>(text).ok()),
            transaction_hash: self.transaction_hash.as_deref(),
            created_at: rfc3339(self.created_at),
            expires_at: rfc3339(self.expires_at),
            completed_at: self.completed_at.map(rfc3339),
        })
    }
}

/// `time` (UTC) as the original API's epoch seconds.
pub fn epoch_seconds(time: NaiveDateTime) -> EpochSeconds {
    EpochSeconds::from_micros(time.and_utc().timestamp_micros())
}

impl PaymentRow {
    /// The public view of this payment (`GET /payment_status/{id}`); fails
    /// only for a stored amount that is not a USDT amount.
    pub fn view(&self) -> Result<PaymentView<'_>, tronpay_domain::AmountError> {
        Ok(PaymentView {
            id: self.id.as_str(),
            wallet_address: &self.wallet_address,
            expected_amount_usdt: JsonAmount(self.expected_amount()?),
            order_id: &self.order_id,
            status: self.status().as_str(),
            transaction_hash: self.transaction_hash.as_deref(),
            received_amount_usdt: self.received_amount()?.map(JsonAmount),
            created_at: epoch_seconds(self.created_at),
            completed_at: self.completed_at.map(epoch_seconds),
        })
    }
}

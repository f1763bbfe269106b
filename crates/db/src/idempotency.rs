//! Idempotent creates: the `Idempotency-Key` of an API key stays on the
//! payment it created (`payments.idempotency_key_id`, `idempotency_key`,
//! `idempotency_request_hash`) for [`KEEP_HOURS`].
//!
//! The key is written by the statement that creates the payment
//! ([`crate::payments::create_v1`]), under a unique index, so one key makes
//! one payment however many requests race: a second request with the same
//! key waits on the index until the first commits, inserts nothing, and then
//! [`stored`] finds the payment whose first response is replayed (or, for
//! another body, refused). The first response of a create is the payment as
//! created, so it is rendered again from the row rather than stored: a
//! create costs one index entry more than one without a key, not a row of
//! its own. A create that fails leaves nothing.

use chrono::NaiveDateTime;
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use crate::error::DbError;
use crate::models::PaymentRow;
use crate::schema::payments;

/// How long a response is replayed, in hours; an older key is forgotten
/// and starts over.
pub const KEEP_HOURS: i64 = 24;

/// An `Idempotency-Key` to record with a new payment.
#[derive(Debug, Clone, Copy)]
pub struct NewRecord<'a> {
    /// The API key the request was made with (`api_keys.id`).
    pub api_key_id: Uuid,
    /// The header's value (1 to 255 visible ASCII characters).
    pub key: &'a str,
    /// SHA-256 of the request body, 64 hex digits.
    pub request_hash: &'a str,
}

/// What an earlier request with the same key left: its body's hash and the
/// payment it created.
#[derive(Debug, Clone)]
pub struct Stored {
    /// SHA-256 of the earlier request's body, hex.
    pub request_hash: String,
    /// The payment as it is now (its creation is `created_at`).
    pub payment: PaymentRow,
}

impl Stored {
    /// Whether the key is older than [`KEEP_HOURS`] at `now` (UTC).
    pub fn expired(&self, now: NaiveDateTime) -> bool {
        self.payment.created_at < cutoff(now)
    }
}

fn cutoff(now: NaiveDateTime) -> NaiveDateTime {
    now - chrono::TimeDelta::hours(KEEP_HOURS)
}

/// The payment made with `key` of `api_key`, if the key is still on one
/// (expired or not).
pub async fn stored(conn: &mut AsyncPgConnection, api_key: Uuid, key: &str) -> Result<Option<Stored>, DbError> {
    let row: Option<(Option<String>, PaymentRow)> = payments::table
        .filter(payments::idempotency_key_id.eq(api_key))
        .filter(payments::idempotency_key.eq(key))
        .select((payments::idempotency_request_hash, PaymentRow::as_select()))
        .first(conn)
        .await
        .optional()?;
    Ok(row.map(|(hash, payment)| Stored {
        request_hash: hash.unwrap_or_default(),
        payment,
    }))
}

/// Takes `key` of `api_key` off its payment if it is older than
/// [`KEEP_HOURS`]; returns whether it did.
pub async fn forget_expired(conn: &mut AsyncPgConnection, api_key: Uuid, key: &str) -> Result<bool, DbError> {
    let cleared = diesel::update(
        payments::table
            .filter(payments::idempotency_key_id.eq(api_key))
            .filter(payments::idempotency_key.eq(key))
            .filter(payments::created_at.lt(cutoff(chrono::Utc::now().naive_utc()))),
    )
    .set(forgotten())
    .execute(conn)
    .await?;
    Ok(cleared > 0)
}

/// The columns of a forgotten key.
#[allow(clippy::type_complexity)]
fn forgotten() -> (
    diesel::dsl::Eq<payments::idempotency_key_id, Option<Uuid>>,
    diesel::dsl::Eq<payments::idempotency_key, Option<String>>,
    diesel::dsl::Eq<payments::idempotency_request_hash, Option<String>>,
) {
    (
        payments::idempotency_key_id.eq(None::<Uuid>),
        payments::idempotency_key.eq(None::<String>),
        payments::idempotency_request_hash.eq(None::<String>),
    )
}

/// Takes the keys off the payments created from `since` until
/// [`KEEP_HOURS`] ago, `batch` rows per transaction; returns how many and
/// the end of the range, which the next call passes as `since`. The range is
/// read through the index on `created_at`, so a call costs what was created
/// since the last one. Rows another transaction holds (matching, a cancel)
/// are skipped, never waited for, so this never deadlocks with them; a key
/// left behind is still forgotten when it is used again ([`forget_expired`]).
pub async fn prune(
    conn: &mut AsyncPgConnection,
    since: NaiveDateTime,
    batch: i64,
) -> Result<(u64, NaiveDateTime), DbError> {
    use diesel_async::AsyncConnection;
    let until = cutoff(chrono::Utc::now().naive_utc());
    let mut cleared = 0u64;
    loop {
        let count = conn
            .transaction::<_, DbError, _>(async |conn| {
                let ids: Vec<String> = payments::table
                    .filter(payments::created_at.ge(since))
                    .filter(payments::created_at.lt(until))
                    .filter(payments::idempotency_key.is_not_null())
                    .select(payments::id)
                    .order(payments::id)
                    .limit(batch)
                    .for_update()
                    .skip_locked()
                    .load(conn)
                    .await?;
                Ok(diesel::update(payments::table.filter(payments::id.eq_any(&ids)))
                    .set(forgotten())
                    .execute(conn)
                    .await?)
            })
            .await?;
        cleared += u64::try_from(count).unwrap_or(0);
        if i64::try_from(count).unwrap_or(0) < batch {
            return Ok((cleared, until));
        }
    }
}

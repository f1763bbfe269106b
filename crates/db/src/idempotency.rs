//! Idempotent creates (`idempotency_keys`): the first response to an
//! `Idempotency-Key` of an API key, kept for [`KEEP_HOURS`].
//!
//! The record is written by the statement that creates the payment
//! ([`crate::payments::create_v1`]) with the response already in it, so one
//! key makes one payment however many requests race: a second request with
//! the same key waits on the record's primary key until the first commits,
//! inserts nothing, and then [`stored`] finds the first response to replay
//! (or, for another body, to refuse). A create that fails leaves no record.

use chrono::NaiveDateTime;
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use crate::error::DbError;
use crate::schema::idempotency_keys;

/// How long a response is replayed, in hours; an older record is forgotten
/// and its key starts over.
pub const KEEP_HOURS: i64 = 24;

/// An `Idempotency-Key` to record with a new payment, with the response the
/// request is answered with.
#[derive(Debug, Clone, Copy)]
pub struct NewRecord<'a> {
    pub api_key_id: Uuid,
    /// The header's value (1 to 255 visible ASCII characters).
    pub key: &'a str,
    /// SHA-256 of the request body, 64 hex digits.
    pub request_hash: &'a str,
    /// The HTTP status of the response (201).
    pub response_status: i16,
    /// The response body, replayed byte for byte.
    pub response_body: &'a str,
}

/// What an earlier request with the same key left.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable)]
#[diesel(table_name = idempotency_keys, check_for_backend(diesel::pg::Pg))]
pub struct Stored {
    /// SHA-256 of the earlier request's body, hex.
    pub request_hash: String,
    pub response_status: i16,
    pub response_body: String,
    /// When it was recorded (UTC).
    pub created_at: NaiveDateTime,
}

impl Stored {
    /// Whether the record is older than [`KEEP_HOURS`] at `now` (UTC).
    pub fn expired(&self, now: NaiveDateTime) -> bool {
        self.created_at < now - chrono::TimeDelta::hours(KEEP_HOURS)
    }
}

/// The record of `key` for `api_key`, if any (expired or not).
pub async fn stored(conn: &mut AsyncPgConnection, api_key: Uuid, key: &str) -> Result<Option<Stored>, DbError> {
    Ok(idempotency_keys::table
        .find((api_key, key))
        .select(Stored::as_select())
        .first(conn)
        .await
        .optional()?)
}

/// Forgets the record of `key` for `api_key` if it is older than
/// [`KEEP_HOURS`]; returns whether it did.
pub async fn forget_expired(conn: &mut AsyncPgConnection, api_key: Uuid, key: &str) -> Result<bool, DbError> {
    let cutoff = chrono::Utc::now().naive_utc() - chrono::TimeDelta::hours(KEEP_HOURS);
    let deleted = diesel::delete(
        idempotency_keys::table
            .filter(idempotency_keys::api_key_id.eq(api_key))
            .filter(idempotency_keys::idempotency_key.eq(key))
            .filter(idempotency_keys::created_at.lt(cutoff)),
    )
    .execute(conn)
    .await?;
    Ok(deleted > 0)
}

/// Deletes every record older than [`KEEP_HOURS`], `batch` rows per
/// statement (so a large backlog never holds long locks); returns how many.
pub async fn prune(conn: &mut AsyncPgConnection, batch: i64) -> Result<u64, DbError> {
    let cutoff = chrono::Utc::now().naive_utc() - chrono::TimeDelta::hours(KEEP_HOURS);
    let mut deleted = 0u64;
    loop {
        let count = diesel::sql_query(
            "DELETE FROM idempotency_keys WHERE (api_key_id, idempotency_key) IN \
             (SELECT api_key_id, idempotency_key FROM idempotency_keys WHERE created_at < $1 LIMIT $2)",
        )
        .bind::<diesel::sql_types::Timestamp, _>(cutoff)
        .bind::<diesel::sql_types::BigInt, _>(batch)
        .execute(conn)
        .await?;
        deleted += u64::try_from(count).unwrap_or(0);
        if i64::try_from(count).unwrap_or(0) < batch {
            return Ok(deleted);
        }
    }
}

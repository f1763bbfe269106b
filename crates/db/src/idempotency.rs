//! Idempotent creates (`idempotency_keys`): the first response to an
//! `Idempotency-Key` of an API key, kept for 24 hours.
//!
//! [`claim`] runs in the transaction that creates the payment and inserts
//! the key's row first: a second request with the same key waits on that
//! row's unique index until the first commits, then finds it and replays
//! (or, for another body, refuses) it — so one key makes one payment,
//! however many requests race.

use chrono::NaiveDateTime;
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use crate::error::DbError;
use crate::schema::idempotency_keys;

/// How long a response is replayed.
pub const KEEP_HOURS: i64 = 24;

/// What an earlier request with the same key left.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable)]
#[diesel(table_name = idempotency_keys, check_for_backend(diesel::pg::Pg))]
pub struct Stored {
    /// SHA-256 of the earlier request's body, hex.
    pub request_hash: String,
    pub response_status: i16,
    pub response_body: String,
    pub created_at: NaiveDateTime,
}

/// The outcome of [`claim`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// The key is new (or its record expired): do the work and [`finish`].
    New,
    /// An earlier request used it: replay or refuse.
    Used(Stored),
}

/// Claims `key` for `api_key` inside the caller's transaction, with a
/// placeholder row that [`finish`] completes before the commit.
pub async fn claim(
    conn: &mut AsyncPgConnection,
    api_key: Uuid,
    key: &str,
    request_hash: &str,
) -> Result<Claim, DbError> {
    let cutoff = chrono::Utc::now().naive_utc() - chrono::TimeDelta::hours(KEEP_HOURS);
    // An expired record is forgotten: the key starts over.
    diesel::delete(
        idempotency_keys::table
            .filter(idempotency_keys::api_key_id.eq(api_key))
            .filter(idempotency_keys::idempotency_key.eq(key))
            .filter(idempotency_keys::created_at.lt(cutoff)),
    )
    .execute(conn)
    .await?;
    let inserted = diesel::insert_into(idempotency_keys::table)
        .values((
            idempotency_keys::api_key_id.eq(api_key),
            idempotency_keys::idempotency_key.eq(key),
            idempotency_keys::request_hash.eq(request_hash),
            idempotency_keys::response_status.eq(0i16),
            idempotency_keys::response_body.eq(""),
        ))
        .on_conflict_do_nothing()
        .execute(conn)
        .await?;
    if inserted == 1 {
        return Ok(Claim::New);
    }
    let stored = idempotency_keys::table
        .find((api_key, key))
        .select(Stored::as_select())
        .first(conn)
        .await?;
    Ok(Claim::Used(stored))
}

/// Records the response to replay for `key`.
pub async fn finish(
    conn: &mut AsyncPgConnection,
    api_key: Uuid,
    key: &str,
    status: u16,
    body: &str,
) -> Result<(), DbError> {
    diesel::update(idempotency_keys::table.find((api_key, key)))
        .set((
            idempotency_keys::response_status.eq(i16::try_from(status).unwrap_or(i16::MAX)),
            idempotency_keys::response_body.eq(body),
        ))
        .execute(conn)
        .await?;
    Ok(())
}

/// Deletes records older than [`KEEP_HOURS`]; returns how many.
pub async fn prune(conn: &mut AsyncPgConnection) -> Result<usize, DbError> {
    let cutoff = chrono::Utc::now().naive_utc() - chrono::TimeDelta::hours(KEEP_HOURS);
    Ok(
        diesel::delete(idempotency_keys::table.filter(idempotency_keys::created_at.lt(cutoff)))
            .execute(conn)
            .await?,
    )
}

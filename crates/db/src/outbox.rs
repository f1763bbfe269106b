//! The transactional outbox and the consumers' memory of applied messages.

use chrono::NaiveDateTime;
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use crate::error::DbError;
use crate::schema::{outbox, processed_messages};

/// An event waiting to be published.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = outbox, check_for_backend(diesel::pg::Pg))]
pub struct OutboxRow {
    pub id: i64,
    pub message_id: Uuid,
    pub routing_key: String,
    pub payload: serde_json::Value,
    pub created_at: NaiveDateTime,
}

/// Writes an event; call it inside the transaction of the change it reports.
pub async fn insert(
    conn: &mut AsyncPgConnection,
    routing_key: &str,
    payload: &impl serde::Serialize,
) -> Result<Uuid, DbError> {
    let message_id = Uuid::new_v4();
    let payload =
        serde_json::to_value(payload).map_err(|error| DbError::bug(format!("event not serializable: {error}")))?;
    diesel::insert_into(outbox::table)
        .values((
            outbox::message_id.eq(message_id),
            outbox::routing_key.eq(routing_key),
            outbox::payload.eq(payload),
        ))
        .execute(conn)
        .await?;
    Ok(message_id)
}

/// Writes several events in one statement (inside the caller's transaction).
pub async fn insert_many<T: serde::Serialize>(
    conn: &mut AsyncPgConnection,
    routing_key: &str,
    payloads: &[T],
) -> Result<(), DbError> {
    if payloads.is_empty() {
        return Ok(());
    }
    let ids: Vec<Uuid> = payloads.iter().map(|_| Uuid::new_v4()).collect();
    let texts = payloads
        .iter()
        .map(serde_json::to_string)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| DbError::bug(format!("event not serializable: {error}")))?;
    diesel::sql_query(
        "INSERT INTO outbox (message_id, routing_key, payload) \
         SELECT id, $2, payload::jsonb FROM unnest($1::uuid[], $3::text[]) AS t(id, payload)",
    )
    .bind::<diesel::sql_types::Array<diesel::sql_types::Uuid>, _>(&ids)
    .bind::<diesel::sql_types::Text, _>(routing_key)
    .bind::<diesel::sql_types::Array<diesel::sql_types::Text>, _>(&texts)
    .execute(conn)
    .await?;
    Ok(())
}

/// Locks up to `limit` unpublished events, oldest first, skipping rows another
/// relay holds. Call inside a transaction; mark them published before commit.
pub async fn claim(conn: &mut AsyncPgConnection, limit: i64) -> Result<Vec<OutboxRow>, DbError> {
    Ok(outbox::table
        .filter(outbox::published_at.is_null())
        .order(outbox::id.asc())
        .limit(limit)
        .select(OutboxRow::as_select())
        .for_update()
        .skip_locked()
        .load(conn)
        .await?)
}

pub async fn mark_published(conn: &mut AsyncPgConnection, ids: &[i64]) -> Result<(), DbError> {
    diesel::update(outbox::table.filter(outbox::id.eq_any(ids)))
        .set(outbox::published_at.eq(diesel::dsl::now))
        .execute(conn)
        .await?;
    Ok(())
}

/// Events not published yet (for health and tests).
pub async fn backlog(conn: &mut AsyncPgConnection) -> Result<i64, DbError> {
    Ok(outbox::table
        .filter(outbox::published_at.is_null())
        .count()
        .get_result(conn)
        .await?)
}

/// Deletes events published before `cutoff`.
pub async fn prune(conn: &mut AsyncPgConnection, cutoff: NaiveDateTime) -> Result<usize, DbError> {
    Ok(diesel::delete(outbox::table.filter(outbox::published_at.lt(cutoff)))
        .execute(conn)
        .await?)
}

/// Records that `consumer` applied `message_id`; false if it already had.
/// Call inside the transaction that applies the message, so that the memory
/// and the effect commit together.
pub async fn first_delivery(conn: &mut AsyncPgConnection, consumer: &str, message_id: Uuid) -> Result<bool, DbError> {
    let inserted = diesel::insert_into(processed_messages::table)
        .values((
            processed_messages::consumer.eq(consumer),
            processed_messages::message_id.eq(message_id),
        ))
        .on_conflict_do_nothing()
        .execute(conn)
        .await?;
    Ok(inserted == 1)
}

/// Forgets applied message ids older than `cutoff` (redeliveries come within
/// minutes; the transfers table stays the guard after that).
pub async fn prune_processed(conn: &mut AsyncPgConnection, cutoff: NaiveDateTime) -> Result<usize, DbError> {
    Ok(
        diesel::delete(processed_messages::table.filter(processed_messages::processed_at.lt(cutoff)))
            .execute(conn)
            .await?,
    )
}

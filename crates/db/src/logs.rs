//! Queries on `payment_logs`, the audit trail of every payment.

use chrono::NaiveDateTime;
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use crate::error::DbError;
use crate::schema::payment_logs;

/// One row of `payment_logs`.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = payment_logs, check_for_backend(diesel::pg::Pg))]
pub struct LogRow {
    pub id: i32,
    pub payment_id: String,
    pub event_type: String,
    pub message: Option<String>,
    pub metadata: Option<serde_json::Value>,
    pub created_at: NaiveDateTime,
}

/// The log of one payment, oldest first.
pub async fn for_payment(conn: &mut AsyncPgConnection, payment_id: &str) -> Result<Vec<LogRow>, DbError> {
    Ok(payment_logs::table
        .filter(payment_logs::payment_id.eq(payment_id))
        .order(payment_logs::id.asc())
        .select(LogRow::as_select())
        .load(conn)
        .await?)
}

/// Deletes log rows created before `cutoff`, in batches so that a large
/// cleanup never holds long locks; returns how many were deleted.
pub async fn delete_older_than(
    conn: &mut AsyncPgConnection,
    cutoff: NaiveDateTime,
    batch: i64,
) -> Result<u64, DbError> {
    let mut deleted = 0u64;
    loop {
        let count = diesel::sql_query(
            "DELETE FROM payment_logs WHERE id IN (SELECT id FROM payment_logs WHERE created_at < $1 ORDER BY id LIMIT $2)",
        )
        .bind::<diesel::sql_types::Timestamp, _>(cutoff)
        .bind::<diesel::sql_types::BigInt, _>(batch)
        .execute(conn)
        .await?;
        deleted += u64::try_from(count).unwrap_or(0);
        if i64::try_from(count).unwrap_or(i64::MAX) < batch {
            return Ok(deleted);
        }
    }
}

pub async fn count(conn: &mut AsyncPgConnection) -> Result<i64, DbError> {
    Ok(payment_logs::table.count().get_result(conn).await?)
}

/// Writes one log row; call it inside the transaction of the change it logs.
pub async fn insert(
    conn: &mut AsyncPgConnection,
    payment_id: &str,
    event_type: &str,
    message: &str,
    metadata: Option<&str>,
) -> Result<(), DbError> {
    diesel::sql_query(
        "INSERT INTO payment_logs (payment_id, event_type, message, metadata, created_at) \
         VALUES ($1, $2, $3, $4::json, now() AT TIME ZONE 'utc')",
    )
    .bind::<diesel::sql_types::Text, _>(payment_id)
    .bind::<diesel::sql_types::Text, _>(event_type)
    .bind::<diesel::sql_types::Text, _>(message)
    .bind::<diesel::sql_types::Nullable<diesel::sql_types::Text>, _>(metadata)
    .execute(conn)
    .await?;
    Ok(())
}

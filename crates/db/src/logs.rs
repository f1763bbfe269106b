//! Queries on `payment_logs`, the audit trail of every payment.

use chrono::NaiveDateTime;
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use tronpay_domain::{LogEvent, PaymentId};

use crate::error::DbError;
use crate::schema::payment_logs;

/// One row of `payment_logs`.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = payment_logs, check_for_backend(diesel::pg::Pg))]
pub struct LogRow {
    pub id: i32,
    #[diesel(deserialize_as = String)]
    pub payment_id: PaymentId,
    /// A [`LogEvent`] name for every row tronpay wrote; rows from the
    /// original service (or an operator) may carry others.
    pub event_type: String,
    pub message: Option<String>,
    pub metadata: Option<serde_json::Value>,
    pub created_at: NaiveDateTime,
}

impl LogRow {
    /// The event, if it is one tronpay writes.
    pub fn event(&self) -> Option<LogEvent> {
        self.event_type.parse().ok()
    }
}

/// The log of one payment, oldest first.
pub async fn for_payment(conn: &mut AsyncPgConnection, payment_id: &PaymentId) -> Result<Vec<LogRow>, DbError> {
    Ok(payment_logs::table
        .filter(payment_logs::payment_id.eq(payment_id.as_str()))
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
    payment_id: &PaymentId,
    event: LogEvent,
    message: &str,
    metadata: Option<&str>,
) -> Result<(), DbError> {
    let row = InsertLog {
        payment_id: payment_id.to_string(),
        event_type: event.as_str(),
        message: message.to_owned(),
        metadata: metadata.map(str::to_owned),
    };
    crate::prepared::Prepared(row).execute(conn).await?;
    Ok(())
}

/// The metadata goes in as text cast to JSON, so amounts keep their digits.
struct InsertLog {
    payment_id: String,
    event_type: &'static str,
    message: String,
    metadata: Option<String>,
}

impl crate::prepared::Statement for InsertLog {
    fn walk_ast<'b>(&'b self, mut out: diesel::query_builder::AstPass<'_, 'b, diesel::pg::Pg>) -> QueryResult<()> {
        use diesel::sql_types::{Nullable, Text};
        out.push_sql("INSERT INTO payment_logs (payment_id, event_type, message, metadata, created_at) VALUES (");
        out.push_bind_param::<Text, _>(&self.payment_id)?;
        out.push_sql(", ");
        out.push_bind_param::<Text, _>(&self.event_type)?;
        out.push_sql(", ");
        out.push_bind_param::<Text, _>(&self.message)?;
        out.push_sql(", ");
        out.push_bind_param::<Nullable<Text>, _>(&self.metadata)?;
        out.push_sql("::json, now() AT TIME ZONE 'utc')");
        Ok(())
    }
}

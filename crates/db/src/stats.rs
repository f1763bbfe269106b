//! Counts behind `/health`, `/stats` and `tronpay db stats`.

use diesel::dsl::count_star;
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use serde::Serialize;
use tronpay_domain::PaymentStatus;

use crate::error::DbError;
use crate::models::DbStatus;
use crate::schema::payments;

/// Payments per status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct StatusCounts {
    pub total: i64,
    pub pending: i64,
    pub completed: i64,
    pub failed: i64,
    pub expired: i64,
}

pub async fn status_counts(conn: &mut AsyncPgConnection) -> Result<StatusCounts, DbError> {
    let rows: Vec<(DbStatus, i64)> = payments::table
        .group_by(payments::status)
        .select((payments::status, count_star()))
        .load(conn)
        .await?;
    let mut counts = StatusCounts::default();
    for (DbStatus(status), count) in rows {
        counts.total += count;
        match status {
            PaymentStatus::Pending => counts.pending = count,
            PaymentStatus::Completed => counts.completed = count,
            PaymentStatus::Failed => counts.failed = count,
            PaymentStatus::Expired => counts.expired = count,
        }
    }
    Ok(counts)
}

/// Whether the tronpay tables exist (so a command can say what to run).
pub async fn tables_exist(conn: &mut AsyncPgConnection) -> Result<bool, DbError> {
    relation_exists(conn, "payments").await
}

/// Whether a table (or other relation) of this name is visible.
pub async fn relation_exists(conn: &mut AsyncPgConnection, name: &str) -> Result<bool, DbError> {
    use diesel::sql_types::{Nullable, Text};
    let found: Option<String> = diesel::select(
        diesel::dsl::sql::<Nullable<Text>>("to_regclass(")
            .bind::<Text, _>(name)
            .sql(")::text"),
    )
    .get_result(conn)
    .await?;
    Ok(found.is_some())
}

/// The server's `version()` string.
pub async fn server_version(conn: &mut AsyncPgConnection) -> Result<String, DbError> {
    Ok(diesel::select(diesel::dsl::sql::<diesel::sql_types::Text>("version()"))
        .get_result(conn)
        .await?)
}

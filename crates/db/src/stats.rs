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

impl StatusCounts {
    /// Adds `count` payments of `status` (and to the total).
    fn add(&mut self, status: PaymentStatus, count: i64) {
        self.total += count;
        match status {
            PaymentStatus::Pending => self.pending += count,
            PaymentStatus::Completed => self.completed += count,
            PaymentStatus::Failed => self.failed += count,
            PaymentStatus::Expired => self.expired += count,
        }
    }
}

/// One status's count as [`status_counts`] reads it.
#[derive(QueryableByName)]
struct StatusCount {
    #[diesel(sql_type = diesel::sql_types::Text)]
    status: String,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    payments: i64,
}

/// Payments per status, exact, without counting the table: each status's
/// total in `payment_status_totals` plus its deltas not folded yet
/// (`payment_status_deltas`, appended by triggers in the transaction of
/// every change), read in one snapshot. Its cost grows with the deltas
/// appended since the last [`fold_status_counts`], not with the table.
pub async fn status_counts(conn: &mut AsyncPgConnection) -> Result<StatusCounts, DbError> {
    let rows: Vec<StatusCount> = diesel::sql_query(
        "SELECT t.status::text AS status, \
                (t.payments + coalesce((SELECT sum(d.delta) FROM payment_status_deltas d WHERE d.status = t.status), 0))::bigint \
                  AS payments \
         FROM payment_status_totals t",
    )
    .load(conn)
    .await?;
    let mut counts = StatusCounts::default();
    for row in rows {
        let status: PaymentStatus = row
            .status
            .parse()
            .map_err(|_| DbError::bug(format!("payment_status_totals has status {:?}", row.status)))?;
        counts.add(status, row.payments);
    }
    Ok(counts)
}

/// Payments per status counted row by row (`count(*)` over the table, as
/// slow as the table is large): what [`status_counts`] must always equal;
/// for tests and `tronpay db stats --recount`.
pub async fn recount_statuses(conn: &mut AsyncPgConnection) -> Result<StatusCounts, DbError> {
    let rows: Vec<(DbStatus, i64)> = payments::table
        .group_by(payments::status)
        .select((payments::status, count_star()))
        .load(conn)
        .await?;
    let mut counts = StatusCounts::default();
    for (DbStatus(status), count) in rows {
        counts.add(status, count);
    }
    Ok(counts)
}

/// Moves the deltas appended so far into the totals, in one statement (a
/// count read at any moment is the same before and after); returns how many
/// delta rows it folded. Must not run inside a transaction (a large fold is
/// followed by `VACUUM`). Concurrent folds are harmless: a delta row is
/// deleted, and so added, once.
pub async fn fold_status_counts(conn: &mut AsyncPgConnection) -> Result<usize, DbError> {
    #[derive(QueryableByName)]
    struct Folded {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        rows: i64,
    }
    let folded: Folded = diesel::sql_query(
        "WITH moved AS (DELETE FROM payment_status_deltas RETURNING status, delta), \
              sums AS (SELECT status, sum(delta)::bigint AS delta, count(*) AS rows FROM moved GROUP BY status), \
              applied AS (UPDATE payment_status_totals t SET payments = t.payments + s.delta \
                          FROM sums s WHERE t.status = s.status RETURNING s.rows) \
         SELECT coalesce(sum(rows), 0)::bigint AS rows FROM applied",
    )
    .get_result(conn)
    .await?;
    let folded = usize::try_from(folded.rows).unwrap_or(0);
    // The folded rows are dead pages a count would still scan: a large fold
    // (a bulk load, a backlog) is vacuumed at once, which also gives the
    // emptied pages back; small ones are left to autovacuum (every 1,000
    // dead rows, set by the migration).
    if folded >= VACUUM_AFTER {
        diesel_async::SimpleAsyncConnection::batch_execute(conn, "VACUUM payment_status_deltas").await?;
    }
    Ok(folded)
}

/// Folds of at least this many delta rows vacuum the delta table at once.
const VACUUM_AFTER: usize = 10_000;

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

/// The width of a `/v1/stats` bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interval {
    Hour,
    Day,
}

impl Interval {
    /// Its `date_trunc` field name (also its name in the API).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Hour => "hour",
            Self::Day => "day",
        }
    }

    /// Its length.
    pub fn length(self) -> chrono::TimeDelta {
        match self {
            Self::Hour => chrono::TimeDelta::hours(1),
            Self::Day => chrono::TimeDelta::days(1),
        }
    }
}

/// Payments created in one bucket with one status: how many, what they
/// expected and what they received (USDT, exact).
#[derive(Debug, Clone, QueryableByName)]
pub struct BucketRow {
    /// The bucket's start (UTC), truncated to the interval.
    #[diesel(sql_type = diesel::sql_types::Timestamp)]
    pub bucket: chrono::NaiveDateTime,
    #[diesel(sql_type = diesel::sql_types::Text)]
    pub status: String,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    pub count: i64,
    #[diesel(sql_type = diesel::sql_types::Numeric)]
    pub expected: bigdecimal::BigDecimal,
    #[diesel(sql_type = diesel::sql_types::Numeric)]
    pub received: bigdecimal::BigDecimal,
}

/// Counts and sums of the payments created in `[from, to)` (UTC), per
/// bucket of `interval` and status, oldest bucket first; empty buckets are
/// absent.
pub async fn payments_by_interval(
    conn: &mut AsyncPgConnection,
    from: chrono::NaiveDateTime,
    to: chrono::NaiveDateTime,
    interval: Interval,
) -> Result<Vec<BucketRow>, DbError> {
    use diesel::sql_types::Timestamp;
    // The field name is one of two constants, never the caller's text.
    let sql = format!(
        "SELECT date_trunc('{}', created_at) AS bucket, status::text AS status, count(*) AS count, \
                coalesce(sum(expected_amount_usdt), 0) AS expected, coalesce(sum(received_amount_usdt), 0) AS received \
         FROM payments WHERE created_at >= $1 AND created_at < $2 GROUP BY 1, 2 ORDER BY 1, 2",
        interval.as_str()
    );
    Ok(diesel::sql_query(sql)
        .bind::<Timestamp, _>(from)
        .bind::<Timestamp, _>(to)
        .load(conn)
        .await?)
}

/// Time from creation to completion of the payments created in a range and
/// completed: how many, the average and the 95th percentile in seconds
/// (`None` without any).
#[derive(Debug, Clone, QueryableByName)]
pub struct CompletionTimes {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    pub count: i64,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Double>)]
    pub average_seconds: Option<f64>,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Double>)]
    pub p95_seconds: Option<f64>,
}

/// [`CompletionTimes`] of the payments created in `[from, to)` (UTC).
pub async fn completion_times(
    conn: &mut AsyncPgConnection,
    from: chrono::NaiveDateTime,
    to: chrono::NaiveDateTime,
) -> Result<CompletionTimes, DbError> {
    use diesel::sql_types::Timestamp;
    Ok(diesel::sql_query(
        "SELECT count(*) AS count, avg(seconds)::float8 AS average_seconds, \
                percentile_cont(0.95) WITHIN GROUP (ORDER BY seconds)::float8 AS p95_seconds \
         FROM (SELECT extract(epoch FROM completed_at - created_at) AS seconds FROM payments \
               WHERE status = 'completed' AND completed_at IS NOT NULL AND created_at >= $1 AND created_at < $2) AS done",
    )
    .bind::<Timestamp, _>(from)
    .bind::<Timestamp, _>(to)
    .get_result(conn)
    .await?)
}

/// Webhook deliveries (test pings left out) created in `[from, to)` (UTC),
/// per delivery status.
pub async fn deliveries_by_status(
    conn: &mut AsyncPgConnection,
    from: chrono::NaiveDateTime,
    to: chrono::NaiveDateTime,
) -> Result<Vec<(String, i64)>, DbError> {
    use crate::schema::webhook_deliveries as deliveries;
    Ok(deliveries::table
        .filter(deliveries::created_at.ge(from))
        .filter(deliveries::created_at.lt(to))
        .filter(deliveries::event_type.ne(tronpay_domain::events::WebhookEvent::Ping.as_str()))
        .group_by(deliveries::status)
        .select((deliveries::status, count_star()))
        .load(conn)
        .await?)
}

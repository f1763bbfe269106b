//! Webhook deliveries as the dispatcher works them: claim one attempt,
//! record its outcome, republish what is due, and the operator's views.
//!
//! The delivery row is the source of truth. An attempt is claimed with an
//! atomic update (`pending` and due, or `sending` with an expired lease →
//! `sending` with a new lease), so replicas never send the same attempt twice,
//! and a dispatcher that dies mid-attempt leaves a lease that expires: the
//! delivery is retried (at-least-once).

use std::time::Duration;

use chrono::NaiveDateTime;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Int4, Text, Uuid as SqlUuid};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use tronpay_domain::events::{CALLBACK_DUE, CallbackDue, WebhookEvent};
use tronpay_domain::{AttemptOutcome, DeliveryId, DeliveryStatus, LogEvent, PaymentId};
use uuid::Uuid;

use diesel::pg::Pg;
use diesel::query_builder::{AstPass, Query};

use crate::error::DbError;
use crate::prepared::{Prepared, Statement};
use crate::schema::{webhook_attempts, webhook_deliveries};
use crate::{logs, outbox};

/// Deliveries that ended without success (the operator may retry them).
const UNSUCCESSFUL: [DeliveryStatus; 2] = [DeliveryStatus::Dead, DeliveryStatus::Failed];

/// An attempt this dispatcher now owns.
#[derive(Debug, Clone)]
pub struct Claimed {
    pub id: DeliveryId,
    pub payment_id: PaymentId,
    pub event_type: WebhookEvent,
    /// The Standard Webhooks `webhook-id`, stable across attempts.
    pub webhook_id: String,
    /// The body exactly as stored (JSONB text keeps the amounts' digits).
    pub payload: String,
    /// Attempts including this one.
    pub attempts: i32,
    pub callback_url: String,
}

/// [`Claimed`] as the claim returns it.
#[derive(QueryableByName)]
struct ClaimedRow {
    #[diesel(sql_type = SqlUuid)]
    id: Uuid,
    #[diesel(sql_type = Text)]
    payment_id: String,
    #[diesel(sql_type = Text)]
    event_type: String,
    #[diesel(sql_type = Text)]
    webhook_id: String,
    #[diesel(sql_type = Text)]
    payload: String,
    #[diesel(sql_type = Int4)]
    attempts: i32,
    #[diesel(sql_type = Text)]
    callback_url: String,
}

/// A delivery's event type, or the row is corrupt.
fn event_type(delivery: Uuid, text: &str) -> Result<WebhookEvent, DbError> {
    text.parse()
        .map_err(|error: tronpay_domain::UnknownName| DbError::corrupt("webhook delivery", delivery, error))
}

/// Claims the next attempt of delivery `id` if it is due; `None` if it is
/// delivered, finished, not due yet, or another dispatcher holds it.
pub async fn claim(conn: &mut AsyncPgConnection, id: DeliveryId, lease: Duration) -> Result<Option<Claimed>, DbError> {
    let lease_ms = i64::try_from(lease.as_millis()).unwrap_or(i64::MAX);
    let Some(row) = Prepared(ClaimStatement { id: id.0, lease_ms })
        .get_result::<ClaimedRow>(conn)
        .await
        .optional()?
    else {
        return Ok(None);
    };
    Ok(Some(Claimed {
        id,
        payment_id: PaymentId::from(row.payment_id),
        event_type: event_type(row.id, &row.event_type)?,
        webhook_id: row.webhook_id,
        payload: row.payload,
        attempts: row.attempts,
        callback_url: row.callback_url,
    }))
}

/// The claim, prepared once per connection (it runs for every attempt).
struct ClaimStatement {
    id: Uuid,
    lease_ms: i64,
}

impl Statement for ClaimStatement {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        out.push_sql(
            "UPDATE webhook_deliveries d SET status = 'sending', attempts = d.attempts + 1, \
                 last_attempt_at = now() AT TIME ZONE 'utc', locked_until = (now() AT TIME ZONE 'utc') + ",
        );
        out.push_bind_param::<BigInt, _>(&self.lease_ms)?;
        out.push_sql(" * interval '1 millisecond' FROM payments p WHERE d.id = ");
        out.push_bind_param::<SqlUuid, _>(&self.id)?;
        out.push_sql(
            " AND p.id = d.payment_id \
               AND ((d.status = 'pending' AND d.next_attempt_at <= now() AT TIME ZONE 'utc') \
                    OR (d.status = 'sending' AND d.locked_until < now() AT TIME ZONE 'utc')) \
             RETURNING d.id, d.payment_id, d.event_type, d.webhook_id, d.payload::text AS payload, d.attempts, p.callback_url",
        );
        Ok(())
    }
}

impl Query for Prepared<ClaimStatement> {
    type SqlType = diesel::sql_types::Untyped;
}

/// The callback URL of delivery `id` if an attempt of it is due now (what
/// [`claim`] would take), else `None`: delivered, finished, not due yet, or
/// in flight under a lease. Read-only; the dispatcher uses it to decide
/// whether and in which lane to make the attempt before it takes a lease.
pub async fn due_callback(conn: &mut AsyncPgConnection, id: DeliveryId) -> Result<Option<String>, DbError> {
    #[derive(QueryableByName)]
    struct Row {
        #[diesel(sql_type = Text)]
        callback_url: String,
    }
    Ok(Prepared(DueCallbackStatement { id: id.0 })
        .get_result::<Row>(conn)
        .await
        .optional()?
        .map(|row| row.callback_url))
}

/// The look before a claim, prepared once per connection (it runs for every
/// `callback.due`).
struct DueCallbackStatement {
    id: Uuid,
}

impl Statement for DueCallbackStatement {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        out.push_sql(
            "SELECT p.callback_url FROM webhook_deliveries d JOIN payments p ON p.id = d.payment_id WHERE d.id = ",
        );
        out.push_bind_param::<SqlUuid, _>(&self.id)?;
        out.push_sql(
            " AND ((d.status = 'pending' AND d.next_attempt_at <= now() AT TIME ZONE 'utc') \
                  OR (d.status = 'sending' AND d.locked_until < now() AT TIME ZONE 'utc'))",
        );
        Ok(())
    }
}

impl Query for Prepared<DueCallbackStatement> {
    type SqlType = diesel::sql_types::Untyped;
}

/// How an attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Delivered,
    /// Try again at this time.
    Retry(NaiveDateTime),
    /// The receiver refused for good (410 Gone, a refused address…).
    Failed,
    /// The last scheduled attempt failed.
    Dead,
}

impl Outcome {
    /// Its name (`webhook_attempts.outcome`).
    pub fn kind(self) -> AttemptOutcome {
        match self {
            Self::Delivered => AttemptOutcome::Delivered,
            Self::Retry(_) => AttemptOutcome::Retry,
            Self::Failed => AttemptOutcome::Failed,
            Self::Dead => AttemptOutcome::Dead,
        }
    }

    /// The delivery's status after it.
    pub fn status(self) -> DeliveryStatus {
        match self {
            Self::Delivered => DeliveryStatus::Delivered,
            Self::Retry(_) => DeliveryStatus::Pending,
            Self::Failed => DeliveryStatus::Failed,
            Self::Dead => DeliveryStatus::Dead,
        }
    }
}

/// What happened on one attempt.
#[derive(Debug, Clone)]
pub struct Attempt {
    pub started_at: NaiveDateTime,
    pub duration_ms: i32,
    pub http_status: Option<i32>,
    pub response_body: Option<String>,
    pub error: Option<String>,
    pub outcome: Outcome,
}

/// Records an attempt: the attempt row, the delivery's new state, the
/// original `payments` callback columns (for completion webhooks, which the
/// original sent), and a `payment_logs` row — in one transaction.
pub async fn record(conn: &mut AsyncPgConnection, claimed: &Claimed, attempt: &Attempt) -> Result<(), DbError> {
    conn.transaction::<_, DbError, _>(async |conn| {
        diesel::insert_into(webhook_attempts::table)
            .values((
                webhook_attempts::delivery_id.eq(claimed.id.0),
                webhook_attempts::attempt.eq(claimed.attempts),
                webhook_attempts::started_at.eq(attempt.started_at),
                webhook_attempts::duration_ms.eq(attempt.duration_ms),
                webhook_attempts::http_status.eq(attempt.http_status),
                webhook_attempts::response_body.eq(attempt.response_body.as_deref()),
                webhook_attempts::error.eq(attempt.error.as_deref()),
                webhook_attempts::outcome.eq(attempt.outcome.kind().as_str()),
            ))
            .execute(conn)
            .await?;
        let next = match attempt.outcome {
            Outcome::Retry(at) => Some(at),
            Outcome::Delivered | Outcome::Failed | Outcome::Dead => None,
        };
        diesel::update(webhook_deliveries::table.find(claimed.id.0))
            .set((
                webhook_deliveries::status.eq(attempt.outcome.status().as_str()),
                webhook_deliveries::locked_until.eq(None::<NaiveDateTime>),
                webhook_deliveries::last_status.eq(attempt.http_status),
                webhook_deliveries::last_error.eq(attempt.error.as_deref()),
                webhook_deliveries::delivered_at
                    .eq((attempt.outcome == Outcome::Delivered).then_some(attempt.started_at)),
            ))
            .execute(conn)
            .await?;
        if let Some(next) = next {
            diesel::update(webhook_deliveries::table.find(claimed.id.0))
                .set(webhook_deliveries::next_attempt_at.eq(next))
                .execute(conn)
                .await?;
        }
        if claimed.event_type == WebhookEvent::Completed {
            use crate::schema::payments;
            let delivered = attempt.outcome == Outcome::Delivered;
            diesel::update(payments::table.find(claimed.payment_id.as_str()))
                .set((
                    payments::callback_attempts.eq(payments::callback_attempts + 1),
                    payments::last_callback_attempt.eq(Some(attempt.started_at)),
                    payments::callback_success
                        .eq(payments::callback_success.or(delivered.into_sql::<diesel::sql_types::Bool>())),
                ))
                .execute(conn)
                .await?;
        }
        let (event_type, message) = match attempt.outcome {
            Outcome::Delivered => (
                LogEvent::CallbackSent,
                format!(
                    "Callback {} delivered (attempt {})",
                    claimed.event_type, claimed.attempts
                ),
            ),
            Outcome::Retry(at) => (
                LogEvent::CallbackFailed,
                format!(
                    "Callback {} attempt {} failed: {}; next attempt at {at}",
                    claimed.event_type,
                    claimed.attempts,
                    describe(attempt)
                ),
            ),
            Outcome::Failed => (
                LogEvent::CallbackFailed,
                format!(
                    "Callback {} refused for good on attempt {}: {}",
                    claimed.event_type,
                    claimed.attempts,
                    describe(attempt)
                ),
            ),
            Outcome::Dead => (
                LogEvent::CallbackDead,
                format!(
                    "Callback {} gave up after {} attempts: {}",
                    claimed.event_type,
                    claimed.attempts,
                    describe(attempt)
                ),
            ),
        };
        let metadata = serde_json::json!({
            "delivery_id": claimed.id.to_string(),
            "webhook_id": claimed.webhook_id,
            "attempt": claimed.attempts,
            "http_status": attempt.http_status,
            "duration_ms": attempt.duration_ms,
        })
        .to_string();
        logs::insert(conn, &claimed.payment_id, event_type, &message, Some(&metadata)).await
    })
    .await
}

fn describe(attempt: &Attempt) -> String {
    match (&attempt.http_status, &attempt.error) {
        (Some(status), _) => format!("HTTP {status}"),
        (None, Some(error)) => error.clone(),
        (None, None) => "no answer".into(),
    }
}

/// A delivery whose `callback.due` is to be published.
struct DueRow {
    id: DeliveryId,
    payment_id: PaymentId,
    event_type: WebhookEvent,
}

impl DueRow {
    fn read((id, payment_id, event): (Uuid, String, String)) -> Result<Self, DbError> {
        Ok(Self {
            id: DeliveryId(id),
            payment_id: PaymentId::from(payment_id),
            event_type: event_type(id, &event)?,
        })
    }
}

/// `(id, payment_id, event_type)` of a delivery.
#[derive(QueryableByName)]
struct DueColumns {
    #[diesel(sql_type = SqlUuid)]
    id: Uuid,
    #[diesel(sql_type = Text)]
    payment_id: String,
    #[diesel(sql_type = Text)]
    event_type: String,
}

/// Re-publishes deliveries that are due but whose last `callback.due` is
/// older than `stale` (lost, or never sent), and attempts whose lease
/// expired; returns how many.
pub async fn republish_due(conn: &mut AsyncPgConnection, stale: Duration, limit: i64) -> Result<usize, DbError> {
    let stale_ms = i64::try_from(stale.as_millis()).unwrap_or(i64::MAX);
    conn.transaction::<_, DbError, _>(async |conn| {
        let due: Vec<DueColumns> = diesel::sql_query(
            "SELECT id, payment_id, event_type FROM webhook_deliveries \
             WHERE ((status = 'pending' AND next_attempt_at <= now() AT TIME ZONE 'utc') \
                    OR (status = 'sending' AND locked_until < now() AT TIME ZONE 'utc')) \
               AND (published_at IS NULL OR published_at < (now() AT TIME ZONE 'utc') - $1 * interval '1 millisecond' \
                    OR published_at < next_attempt_at) \
             ORDER BY next_attempt_at LIMIT $2 FOR UPDATE SKIP LOCKED",
        )
        .bind::<BigInt, _>(stale_ms)
        .bind::<BigInt, _>(limit)
        .load(conn)
        .await?;
        let due = due
            .into_iter()
            .map(|row| DueRow::read((row.id, row.payment_id, row.event_type)))
            .collect::<Result<Vec<_>, _>>()?;
        publish(conn, &due).await?;
        Ok(due.len())
    })
    .await
}

/// Writes `callback.due` for each delivery and marks them published.
async fn publish(conn: &mut AsyncPgConnection, due: &[DueRow]) -> Result<(), DbError> {
    let events: Vec<CallbackDue> = due
        .iter()
        .map(|row| CallbackDue {
            delivery_id: row.id,
            payment_id: row.payment_id.clone(),
            event_type: row.event_type,
        })
        .collect();
    outbox::insert_many(conn, CALLBACK_DUE, &events).await?;
    let ids: Vec<Uuid> = due.iter().map(|row| row.id.0).collect();
    diesel::update(webhook_deliveries::table.filter(webhook_deliveries::id.eq_any(ids)))
        .set(webhook_deliveries::published_at.eq(Some(chrono::Utc::now().naive_utc())))
        .execute(conn)
        .await?;
    Ok(())
}

/// Puts finished deliveries (dead or failed; `ids`, or all of them) back in
/// line with their `webhook-id` unchanged, logged on each payment with
/// `who` asked for it (`the operator` from the CLI, `operator <name>` from
/// the dashboard); returns how many.
pub async fn retry(conn: &mut AsyncPgConnection, ids: Option<&[DeliveryId]>, who: &str) -> Result<usize, DbError> {
    conn.transaction::<_, DbError, _>(async |conn| {
        let finished = webhook_deliveries::table
            .filter(webhook_deliveries::status.eq_any(UNSUCCESSFUL.map(DeliveryStatus::as_str)));
        let columns = (
            webhook_deliveries::id,
            webhook_deliveries::payment_id,
            webhook_deliveries::event_type,
        );
        let rows: Vec<(Uuid, String, String)> = match ids {
            Some(ids) => {
                finished
                    .filter(webhook_deliveries::id.eq_any(ids.iter().map(|id| id.0).collect::<Vec<_>>()))
                    .select(columns)
                    .for_update()
                    .load(conn)
                    .await?
            }
            None => finished.select(columns).for_update().load(conn).await?,
        };
        let due = rows.into_iter().map(DueRow::read).collect::<Result<Vec<_>, _>>()?;
        let ids: Vec<Uuid> = due.iter().map(|row| row.id.0).collect();
        diesel::update(webhook_deliveries::table.filter(webhook_deliveries::id.eq_any(&ids)))
            .set((
                webhook_deliveries::status.eq(DeliveryStatus::Pending.as_str()),
                webhook_deliveries::next_attempt_at.eq(chrono::Utc::now().naive_utc()),
            ))
            .execute(conn)
            .await?;
        for row in &due {
            logs::insert(
                conn,
                &row.payment_id,
                LogEvent::CallbackRetry,
                &format!("Callback {} retried at the request of {who}", row.event_type),
                None,
            )
            .await?;
        }
        publish(conn, &due).await?;
        Ok(due.len())
    })
    .await
}

/// A delivery as the operator sees it.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = webhook_deliveries, check_for_backend(diesel::pg::Pg))]
pub struct DeliveryRow {
    #[diesel(deserialize_as = Uuid)]
    pub id: DeliveryId,
    #[diesel(deserialize_as = String)]
    pub payment_id: PaymentId,
    #[diesel(deserialize_as = String)]
    pub event_type: WebhookEvent,
    pub webhook_id: String,
    #[diesel(deserialize_as = String)]
    pub status: DeliveryStatus,
    pub attempts: i32,
    pub next_attempt_at: NaiveDateTime,
    pub created_at: NaiveDateTime,
    pub last_attempt_at: Option<NaiveDateTime>,
    pub last_status: Option<i32>,
    pub last_error: Option<String>,
    pub delivered_at: Option<NaiveDateTime>,
}

/// The most recent deliveries, or only the finished-unsuccessfully ones.
pub async fn list(conn: &mut AsyncPgConnection, dead_only: bool, limit: i64) -> Result<Vec<DeliveryRow>, DbError> {
    let mut query = webhook_deliveries::table
        .order(webhook_deliveries::created_at.desc())
        .limit(limit)
        .select(DeliveryRow::as_select())
        .into_boxed();
    if dead_only {
        query = query.filter(webhook_deliveries::status.eq_any(UNSUCCESSFUL.map(DeliveryStatus::as_str)));
    }
    Ok(query.load(conn).await?)
}

/// A failed attempt as the dashboard's webhooks page shows it.
#[derive(Debug, Clone, Queryable)]
pub struct FailedAttempt {
    /// When the attempt started (UTC).
    pub started_at: NaiveDateTime,
    #[diesel(deserialize_as = Uuid)]
    pub delivery_id: DeliveryId,
    #[diesel(deserialize_as = String)]
    pub payment_id: PaymentId,
    /// `webhook_deliveries.event_type` (`payment.completed`, …).
    pub event_type: String,
    /// 1 for the first attempt of the delivery.
    pub attempt: i32,
    /// The receiver's HTTP status, when it answered.
    pub http_status: Option<i32>,
    /// The start of its answer as stored by the dispatcher.
    pub response_body: Option<String>,
    /// Why there was no usable answer (timeout, refused address, …).
    pub error: Option<String>,
    /// `retry`, `failed` or `dead` ([`AttemptOutcome`]).
    pub outcome: String,
}

/// The `limit` most recent attempts that did not deliver, newest first.
pub async fn recent_failed_attempts(conn: &mut AsyncPgConnection, limit: i64) -> Result<Vec<FailedAttempt>, DbError> {
    Ok(webhook_attempts::table
        .inner_join(webhook_deliveries::table.on(webhook_deliveries::id.eq(webhook_attempts::delivery_id)))
        .filter(webhook_attempts::outcome.ne(AttemptOutcome::Delivered.as_str()))
        .order((webhook_attempts::started_at.desc(), webhook_attempts::id.desc()))
        .limit(limit)
        .select((
            webhook_attempts::started_at,
            webhook_attempts::delivery_id,
            webhook_deliveries::payment_id,
            webhook_deliveries::event_type,
            webhook_attempts::attempt,
            webhook_attempts::http_status,
            webhook_attempts::response_body,
            webhook_attempts::error,
            webhook_attempts::outcome,
        ))
        .load(conn)
        .await?)
}

/// Deliveries not finished yet, for health and stats.
pub async fn backlog(conn: &mut AsyncPgConnection) -> Result<i64, DbError> {
    Ok(webhook_deliveries::table
        .filter(
            webhook_deliveries::status
                .eq_any([DeliveryStatus::Pending, DeliveryStatus::Sending].map(DeliveryStatus::as_str)),
        )
        .count()
        .get_result(conn)
        .await?)
}

/// Deliveries that ended without success (dead or failed), for the
/// dashboard's overview.
pub async fn unsuccessful_count(conn: &mut AsyncPgConnection) -> Result<i64, DbError> {
    Ok(webhook_deliveries::table
        .filter(webhook_deliveries::status.eq_any(UNSUCCESSFUL.map(DeliveryStatus::as_str)))
        .count()
        .get_result(conn)
        .await?)
}

/// The deliveries of one payment, oldest first.
pub async fn for_payment(conn: &mut AsyncPgConnection, payment_id: &PaymentId) -> Result<Vec<DeliveryRow>, DbError> {
    Ok(webhook_deliveries::table
        .filter(webhook_deliveries::payment_id.eq(payment_id.as_str()))
        .order((webhook_deliveries::created_at.asc(), webhook_deliveries::id.asc()))
        .select(DeliveryRow::as_select())
        .load(conn)
        .await?)
}

/// What [`redeliver`] did.
#[derive(Debug)]
pub enum Redelivery {
    /// Back in line for an attempt now, with its `webhook-id` unchanged.
    Queued(DeliveryRow),
    /// It is `pending` or `sending` already (the row as it is): nothing to
    /// do.
    Unfinished(DeliveryRow),
    /// No such delivery.
    NotFound,
}

/// Sends a finished delivery (delivered, failed or dead) again: it goes back
/// to `pending`, due now, with the same body and `webhook-id` (so a receiver
/// that already has it can drop the copy), logged on its payment with
/// `who` asked for it, and its `callback.due` written in the same
/// transaction.
pub async fn redeliver(conn: &mut AsyncPgConnection, id: DeliveryId, who: &str) -> Result<Redelivery, DbError> {
    conn.transaction::<_, DbError, _>(async |conn| {
        let Some(row) = webhook_deliveries::table
            .find(id.0)
            .select(DeliveryRow::as_select())
            .for_update()
            .first(conn)
            .await
            .optional()?
        else {
            return Ok(Redelivery::NotFound);
        };
        if matches!(row.status, DeliveryStatus::Pending | DeliveryStatus::Sending) {
            return Ok(Redelivery::Unfinished(row));
        }
        let row = diesel::update(webhook_deliveries::table.find(id.0))
            .set((
                webhook_deliveries::status.eq(DeliveryStatus::Pending.as_str()),
                webhook_deliveries::next_attempt_at.eq(chrono::Utc::now().naive_utc()),
            ))
            .returning(DeliveryRow::as_returning())
            .get_result(conn)
            .await?;
        logs::insert(
            conn,
            &row.payment_id,
            LogEvent::CallbackRetry,
            &format!("Callback {} sent again at the request of {who}", row.event_type),
            None,
        )
        .await?;
        let due = DueRow {
            id: row.id,
            payment_id: row.payment_id.clone(),
            event_type: row.event_type,
        };
        publish(conn, &[due]).await?;
        Ok(Redelivery::Queued(row))
    })
    .await
}

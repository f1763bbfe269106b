//! The queries behind matching (the API applies `payment.detected`): the
//! transfer and the payments on its address are locked in a fixed order —
//! transfer first, then payments by `(created_at, id)` — so concurrent
//! consumers serialise instead of deadlocking, and a transfer or a payment is
//! never used twice.

use chrono::NaiveDateTime;
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use tronpay_domain::matching::Candidate;
use tronpay_domain::{PaymentStatus, UsdtAmount};

use diesel::pg::Pg;
use diesel::query_builder::{AstPass, Query};
use diesel::sql_types::{Int4, Nullable, Numeric, Text, Timestamp, Untyped};

use crate::error::{Conflict, DbError};
use crate::models::{DbStatus, PaymentRow};
use crate::prepared::{Prepared, Statement};
use crate::schema::{payments, transfers};

/// A row of `transfers`.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = transfers, check_for_backend(diesel::pg::Pg))]
pub struct TransferRow {
    pub txid: String,
    pub log_index: i32,
    pub block_number: i64,
    pub block_time: NaiveDateTime,
    pub from_address: String,
    pub to_address: String,
    pub amount_usdt: bigdecimal::BigDecimal,
    pub status: String,
    pub detected_payment_id: Option<String>,
    pub payment_id: Option<String>,
    pub match_kind: Option<String>,
    pub applied_at: Option<NaiveDateTime>,
}

/// Serialises all work on `address` until the transaction ends.
pub async fn lock_address(conn: &mut AsyncPgConnection, address: &str) -> Result<(), DbError> {
    Prepared(LockAddressStatement(address.to_owned())).execute(conn).await?;
    Ok(())
}

/// The address lock, prepared once per connection.
struct LockAddressStatement(String);

impl Statement for LockAddressStatement {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        out.push_sql("SELECT pg_advisory_xact_lock(hashtextextended(");
        out.push_bind_param::<Text, _>(&self.0)?;
        out.push_sql(", 7526534301795350789))");
        Ok(())
    }
}

pub async fn lock_transfer(
    conn: &mut AsyncPgConnection,
    txid: &str,
    log_index: i32,
) -> Result<Option<TransferRow>, DbError> {
    Ok(transfers::table
        .find((txid, log_index))
        .select(TransferRow::as_select())
        .for_update()
        .first(conn)
        .await
        .optional()?)
}

/// The payments on `address` that a transfer made at `block_time` could
/// concern (pending ones, and those expired less than
/// [`crate::chain::LATE_WATCH_DAYS`] before it, for late transfers), locked,
/// oldest first.
pub async fn lock_candidates(
    conn: &mut AsyncPgConnection,
    address: &str,
    block_time: NaiveDateTime,
) -> Result<Vec<PaymentRow>, DbError> {
    let late_window = block_time - chrono::TimeDelta::days(i64::from(crate::chain::LATE_WATCH_DAYS));
    Ok(Prepared(CandidatesStatement {
        address: address.to_owned(),
        late_window,
    })
    .load(conn)
    .await?)
}

/// The candidates, prepared once per connection (it runs for every
/// transfer). The statuses are written into the text, not bound: the cached
/// generic plan then knows them and probes the address, even when the
/// statistics are stale — after a bulk import, bound statuses made it scan
/// every pending payment per call.
struct CandidatesStatement {
    address: String,
    late_window: NaiveDateTime,
}

impl Statement for CandidatesStatement {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        out.push_sql("SELECT * FROM payments WHERE wallet_address = ");
        out.push_bind_param::<Text, _>(&self.address)?;
        out.push_sql(" AND (status = 'pending' OR (status = 'expired' AND expires_at > ");
        out.push_bind_param::<Timestamp, _>(&self.late_window)?;
        out.push_sql(")) ORDER BY created_at, id FOR UPDATE");
        Ok(())
    }
}

impl Query for Prepared<CandidatesStatement> {
    type SqlType = Untyped;
}

/// The confirmed transfers to `address` not applied yet, in chain order,
/// locked.
pub async fn unapplied_confirmed(conn: &mut AsyncPgConnection, address: &str) -> Result<Vec<TransferRow>, DbError> {
    Ok(transfers::table
        .filter(transfers::to_address.eq(address))
        .filter(transfers::status.eq("confirmed"))
        .filter(transfers::applied_at.is_null())
        .order((transfers::block_number.asc(), transfers::log_index.asc()))
        .select(TransferRow::as_select())
        .for_update()
        .load(conn)
        .await?)
}

/// Addresses with confirmed transfers confirmed more than
/// `older_than_seconds` ago and still not applied, other than `excluded`.
pub async fn addresses_with_unapplied(
    conn: &mut AsyncPgConnection,
    older_than_seconds: i64,
    limit: i64,
    excluded: &[String],
) -> Result<Vec<String>, DbError> {
    let cutoff = chrono::Utc::now().naive_utc() - chrono::TimeDelta::seconds(older_than_seconds);
    Ok(transfers::table
        .filter(transfers::status.eq("confirmed"))
        .filter(transfers::applied_at.is_null())
        .filter(transfers::confirmed_at.lt(cutoff))
        .filter(transfers::to_address.ne_all(excluded))
        .select(transfers::to_address)
        .distinct()
        .limit(limit)
        .load(conn)
        .await?)
}

/// A payment as matching sees it; `received_amount_usdt` holds the credits
/// so far.
pub fn candidate(row: &PaymentRow) -> Result<Candidate, DbError> {
    let invalid = |error| DbError::corrupt("payment", &row.id, format!("invalid amount: {error}"));
    Ok(Candidate {
        id: row.id.clone(),
        status: row.status(),
        created_at_ms: row.created_at.and_utc().timestamp_millis(),
        expires_at_ms: row.expires_at.and_utc().timestamp_millis(),
        expected: row.expected_amount().map_err(invalid)?,
        credited: row.received_amount().map_err(invalid)?.unwrap_or(UsdtAmount::ZERO),
    })
}

/// Completes a pending payment; errors if it is no longer pending (a payment
/// never completes twice).
pub async fn complete(
    conn: &mut AsyncPgConnection,
    payment_id: &str,
    received: UsdtAmount,
    txid: &str,
) -> Result<PaymentRow, DbError> {
    let row = Prepared(CompleteStatement {
        payment_id: payment_id.to_owned(),
        received: received.to_decimal(),
        txid: txid.to_owned(),
        at: chrono::Utc::now().naive_utc(),
    })
    .get_result::<PaymentRow>(conn)
    .await
    .optional()?;
    row.ok_or_else(|| Conflict::Lost(format!("payment {payment_id} is no longer pending")).into())
}

/// The completion, prepared once per connection.
struct CompleteStatement {
    payment_id: String,
    received: bigdecimal::BigDecimal,
    txid: String,
    at: NaiveDateTime,
}

impl Statement for CompleteStatement {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        out.push_sql("UPDATE payments SET status = 'completed', received_amount_usdt = ");
        out.push_bind_param::<Numeric, _>(&self.received)?;
        out.push_sql(", transaction_hash = ");
        out.push_bind_param::<Text, _>(&self.txid)?;
        out.push_sql(", completed_at = ");
        out.push_bind_param::<Timestamp, _>(&self.at)?;
        out.push_sql(" WHERE id = ");
        out.push_bind_param::<Text, _>(&self.payment_id)?;
        out.push_sql(" AND status = 'pending' RETURNING *");
        Ok(())
    }
}

impl Query for Prepared<CompleteStatement> {
    type SqlType = Untyped;
}

/// Records a partial credit on a pending payment.
pub async fn credit(
    conn: &mut AsyncPgConnection,
    payment_id: &str,
    received: UsdtAmount,
) -> Result<PaymentRow, DbError> {
    let row = diesel::update(
        payments::table
            .filter(payments::id.eq(payment_id))
            .filter(payments::status.eq(DbStatus(PaymentStatus::Pending))),
    )
    .set(payments::received_amount_usdt.eq(Some(received.to_decimal())))
    .returning(PaymentRow::as_returning())
    .get_result(conn)
    .await
    .optional()?;
    row.ok_or_else(|| Conflict::Lost(format!("payment {payment_id} is no longer pending")).into())
}

/// Moves a pending payment to expired; `None` if it was not pending.
pub async fn expire(conn: &mut AsyncPgConnection, payment_id: &str) -> Result<Option<PaymentRow>, DbError> {
    Ok(diesel::update(
        payments::table
            .filter(payments::id.eq(payment_id))
            .filter(payments::status.eq(DbStatus(PaymentStatus::Pending))),
    )
    .set(payments::status.eq(DbStatus(PaymentStatus::Expired)))
    .returning(PaymentRow::as_returning())
    .get_result(conn)
    .await
    .optional()?)
}

/// Marks a final transfer as applied, with what it paid.
pub async fn mark_applied(
    conn: &mut AsyncPgConnection,
    transfer: &TransferRow,
    payment_id: Option<&str>,
    match_kind: &str,
) -> Result<(), DbError> {
    Prepared(MarkAppliedStatement {
        txid: transfer.txid.clone(),
        log_index: transfer.log_index,
        payment_id: payment_id.map(str::to_owned),
        match_kind: match_kind.to_owned(),
        at: chrono::Utc::now().naive_utc(),
    })
    .execute(conn)
    .await?;
    Ok(())
}

/// Marking a transfer applied, prepared once per connection.
struct MarkAppliedStatement {
    txid: String,
    log_index: i32,
    payment_id: Option<String>,
    match_kind: String,
    at: NaiveDateTime,
}

impl Statement for MarkAppliedStatement {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        out.push_sql("UPDATE transfers SET payment_id = ");
        out.push_bind_param::<Nullable<Text>, _>(&self.payment_id)?;
        out.push_sql(", match_kind = ");
        out.push_bind_param::<Text, _>(&self.match_kind)?;
        out.push_sql(", applied_at = ");
        out.push_bind_param::<Timestamp, _>(&self.at)?;
        out.push_sql(" WHERE txid = ");
        out.push_bind_param::<Text, _>(&self.txid)?;
        out.push_sql(" AND log_index = ");
        out.push_bind_param::<Int4, _>(&self.log_index)?;
        Ok(())
    }
}

/// Remembers which payment a not-yet-final transfer was shown on.
pub async fn mark_detected_for(
    conn: &mut AsyncPgConnection,
    transfer: &TransferRow,
    payment_id: &str,
) -> Result<(), DbError> {
    diesel::update(transfers::table.find((&transfer.txid, transfer.log_index)))
        .set(transfers::detected_payment_id.eq(Some(payment_id)))
        .execute(conn)
        .await?;
    Ok(())
}

/// The transfers credited to or detected for a payment, oldest first.
pub async fn transfers_of(conn: &mut AsyncPgConnection, payment_id: &str) -> Result<Vec<TransferRow>, DbError> {
    Ok(transfers::table
        .filter(
            transfers::payment_id
                .eq(payment_id)
                .or(transfers::detected_payment_id.eq(payment_id)),
        )
        .order((transfers::block_number.asc(), transfers::log_index.asc()))
        .select(TransferRow::as_select())
        .load(conn)
        .await?)
}

/// The most recent transfers (or only the unmatched ones), newest first.
pub async fn recent_transfers(
    conn: &mut AsyncPgConnection,
    unmatched_only: bool,
    limit: i64,
) -> Result<Vec<TransferRow>, DbError> {
    let mut query = transfers::table
        .order((transfers::block_number.desc(), transfers::log_index.desc()))
        .limit(limit)
        .select(TransferRow::as_select())
        .into_boxed();
    if unmatched_only {
        query = query.filter(transfers::match_kind.eq("unmatched"));
    }
    Ok(query.load(conn).await?)
}

//! The queries behind matching (the API applies `payment.detected`): the
//! transfer and the payments on its address are locked in a fixed order —
//! transfer first, then payments by `(created_at, id)` — so concurrent
//! consumers serialise instead of deadlocking, and a transfer or a payment is
//! never used twice.

use chrono::NaiveDateTime;
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use tronpay_domain::matching::Candidate;
use tronpay_domain::{
    MatchKind, PaymentId, PaymentStatus, Transfer, TransferId, TransferState, TronAddress, TxId, UsdtAmount,
};

use diesel::pg::Pg;
use diesel::query_builder::{AstPass, Query};
use diesel::sql_types::{Int4, Nullable, Numeric, Text, Timestamp, Untyped};

use crate::error::{Conflict, DbError};
use crate::locks::Lock;
use crate::models::{DbStatus, PaymentRow};
use crate::prepared::{Prepared, Statement};
use crate::schema::{payments, transfers};

/// A row of `transfers` as stored; read through [`StoredTransfer`].
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = transfers, check_for_backend(diesel::pg::Pg))]
struct TransferRow {
    txid: String,
    log_index: i32,
    block_number: i64,
    block_time: NaiveDateTime,
    from_address: String,
    to_address: String,
    amount_usdt: bigdecimal::BigDecimal,
    status: String,
    detected_payment_id: Option<String>,
    payment_id: Option<String>,
    match_kind: Option<String>,
    applied_at: Option<NaiveDateTime>,
}

/// A transfer with what the chain watcher and matching recorded about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredTransfer {
    pub transfer: Transfer,
    pub status: TransferState,
    /// The payment it was shown on while not final yet.
    pub detected_payment_id: Option<PaymentId>,
    /// The payment it was applied to.
    pub payment_id: Option<PaymentId>,
    pub match_kind: Option<MatchKind>,
    /// When matching applied it (UTC); `None` while it waits.
    pub applied_at: Option<NaiveDateTime>,
}

impl TryFrom<TransferRow> for StoredTransfer {
    type Error = DbError;

    /// A row that does not hold a valid transfer is corrupt (named by its
    /// `txid:log_index`).
    fn try_from(row: TransferRow) -> Result<Self, DbError> {
        let key = format!("{}:{}", row.txid, row.log_index);
        let corrupt = |what: &str, error: &dyn std::fmt::Display| {
            DbError::corrupt("transfer", &key, format!("invalid {what}: {error}"))
        };
        let payment_id = |id: Option<String>| {
            id.map(|id| PaymentId::parse(&id).map_err(|error| corrupt("payment id", &error)))
                .transpose()
        };
        Ok(Self {
            transfer: Transfer {
                id: TransferId {
                    txid: TxId::parse(&row.txid).map_err(|error| corrupt("txid", &error))?,
                    log_index: u32::try_from(row.log_index).map_err(|error| corrupt("log index", &error))?,
                },
                from: TronAddress::parse(&row.from_address).map_err(|error| corrupt("sender", &error))?,
                to: TronAddress::parse(&row.to_address).map_err(|error| corrupt("recipient", &error))?,
                amount: UsdtAmount::from_decimal(&row.amount_usdt).map_err(|error| corrupt("amount", &error))?,
                block_number: u64::try_from(row.block_number).map_err(|error| corrupt("block number", &error))?,
                block_time_ms: row.block_time.and_utc().timestamp_millis(),
            },
            status: row.status.parse().map_err(|error| corrupt("status", &error))?,
            detected_payment_id: payment_id(row.detected_payment_id)?,
            payment_id: payment_id(row.payment_id)?,
            match_kind: row
                .match_kind
                .map(|kind| kind.parse().map_err(|error| corrupt("match kind", &error)))
                .transpose()?,
            applied_at: row.applied_at,
        })
    }
}

fn stored(rows: Vec<TransferRow>) -> Result<Vec<StoredTransfer>, DbError> {
    rows.into_iter().map(StoredTransfer::try_from).collect()
}

/// Serialises all work on `address` until the transaction ends.
pub async fn lock_address(conn: &mut AsyncPgConnection, address: &str) -> Result<(), DbError> {
    Lock::Address(address).take(conn).await
}

/// The transfer `id`, locked, if it is stored.
pub async fn lock_transfer(conn: &mut AsyncPgConnection, id: &TransferId) -> Result<Option<StoredTransfer>, DbError> {
    transfers::table
        .find((id.txid.as_str(), log_index(id)))
        .select(TransferRow::as_select())
        .for_update()
        .first(conn)
        .await
        .optional()?
        .map(StoredTransfer::try_from)
        .transpose()
}

/// A log index as the `INTEGER` column holds it (a transaction has far
/// fewer than 2³¹ logs).
fn log_index(id: &TransferId) -> i32 {
    i32::try_from(id.log_index).unwrap_or(i32::MAX)
}

/// The payments on `address` that a transfer made at `block_time_ms`
/// could concern (pending ones, and those expired less than
/// [`crate::chain::LATE_WATCH_DAYS`] before it, for late transfers), locked,
/// oldest first.
pub async fn lock_candidates(
    conn: &mut AsyncPgConnection,
    address: &str,
    block_time_ms: i64,
) -> Result<Vec<PaymentRow>, DbError> {
    let block_time = crate::chain::to_naive(block_time_ms);
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
pub async fn unapplied_confirmed(conn: &mut AsyncPgConnection, address: &str) -> Result<Vec<StoredTransfer>, DbError> {
    stored(
        transfers::table
            .filter(transfers::to_address.eq(address))
            .filter(transfers::status.eq(TransferState::Confirmed.as_str()))
            .filter(transfers::applied_at.is_null())
            .order((transfers::block_number.asc(), transfers::log_index.asc()))
            .select(TransferRow::as_select())
            .for_update()
            .load(conn)
            .await?,
    )
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
        .filter(transfers::status.eq(TransferState::Confirmed.as_str()))
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
        expected: row.amount_due().map_err(invalid)?,
        credited: row.received_amount().map_err(invalid)?.unwrap_or(UsdtAmount::ZERO),
        // Only unique_amount payments carry an amount_to_pay: their address
        // is shared.
        exact_only: row.amount_to_pay.is_some(),
    })
}

/// Completes a pending payment; errors if it is no longer pending (a payment
/// never completes twice).
pub async fn complete(
    conn: &mut AsyncPgConnection,
    payment_id: &PaymentId,
    received: UsdtAmount,
    txid: &TxId,
) -> Result<PaymentRow, DbError> {
    let row = Prepared(CompleteStatement {
        payment_id: payment_id.to_string(),
        received: received.to_decimal(),
        txid: txid.to_string(),
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
    payment_id: &PaymentId,
    received: UsdtAmount,
) -> Result<PaymentRow, DbError> {
    let row = diesel::update(
        payments::table
            .filter(payments::id.eq(payment_id.as_str()))
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
pub async fn expire(conn: &mut AsyncPgConnection, payment_id: &PaymentId) -> Result<Option<PaymentRow>, DbError> {
    Ok(diesel::update(
        payments::table
            .filter(payments::id.eq(payment_id.as_str()))
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
    transfer: &TransferId,
    payment_id: Option<&PaymentId>,
    match_kind: MatchKind,
) -> Result<(), DbError> {
    Prepared(MarkAppliedStatement {
        txid: transfer.txid.to_string(),
        log_index: log_index(transfer),
        payment_id: payment_id.map(PaymentId::to_string),
        match_kind: match_kind.as_str(),
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
    match_kind: &'static str,
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
    transfer: &TransferId,
    payment_id: &PaymentId,
) -> Result<(), DbError> {
    diesel::update(transfers::table.find((transfer.txid.as_str(), log_index(transfer))))
        .set(transfers::detected_payment_id.eq(Some(payment_id.as_str())))
        .execute(conn)
        .await?;
    Ok(())
}

/// The transfers credited to or detected for a payment, oldest first.
pub async fn transfers_of(
    conn: &mut AsyncPgConnection,
    payment_id: &PaymentId,
) -> Result<Vec<StoredTransfer>, DbError> {
    stored(
        transfers::table
            .filter(
                transfers::payment_id
                    .eq(payment_id.as_str())
                    .or(transfers::detected_payment_id.eq(payment_id.as_str())),
            )
            .order((transfers::block_number.asc(), transfers::log_index.asc()))
            .select(TransferRow::as_select())
            .load(conn)
            .await?,
    )
}

/// The transfers detected for these payments whose blocks are not final
/// yet (status `detected`), in no order: what the checkout pages show as
/// "confirming".
pub async fn waiting_transfers_of(
    conn: &mut AsyncPgConnection,
    payment_ids: &[String],
) -> Result<Vec<StoredTransfer>, DbError> {
    stored(
        transfers::table
            .filter(transfers::detected_payment_id.eq_any(payment_ids))
            .filter(transfers::status.eq(TransferState::Detected.as_str()))
            .filter(transfers::payment_id.is_null())
            .select(TransferRow::as_select())
            .load(conn)
            .await?,
    )
}

/// The most recent transfers (or only the unmatched ones), newest first.
pub async fn recent_transfers(
    conn: &mut AsyncPgConnection,
    unmatched_only: bool,
    limit: i64,
) -> Result<Vec<StoredTransfer>, DbError> {
    let mut query = transfers::table
        .order((transfers::block_number.desc(), transfers::log_index.desc()))
        .limit(limit)
        .select(TransferRow::as_select())
        .into_boxed();
    if unmatched_only {
        query = query.filter(transfers::match_kind.eq(MatchKind::Unmatched.as_str()));
    }
    stored(query.load(conn).await?)
}

/// What a transfer list shows (`GET /v1/transfers`).
#[derive(Debug, Clone, Default)]
pub struct TransferFilter {
    /// Only the transfers an operator may credit to a payment
    /// ([`ASSIGNABLE`] and final).
    pub assignable: bool,
    /// Only the transfers to this address (Base58Check).
    pub address: Option<String>,
    /// Only the transfers matched this way (e.g. `partial`: part of what a
    /// payment expects).
    pub kind: Option<MatchKind>,
}

/// The match kinds of final transfers an operator may assign: they paid
/// nothing (`unmatched`) or arrived after their payment expired (`late`).
pub const ASSIGNABLE: [MatchKind; 2] = [MatchKind::Unmatched, MatchKind::Late];

/// A place in a transfer list: `(block_number, txid, log_index)` of the
/// last row shown.
pub type TransferCursor = (i64, String, i32);

/// A page of transfers, newest first (`(block_number, txid, log_index)`
/// descending), after `after` when given. New transfers arrive in new
/// blocks, so they sort before every page already read.
pub async fn list_transfers(
    conn: &mut AsyncPgConnection,
    filter: &TransferFilter,
    after: Option<TransferCursor>,
    limit: i64,
) -> Result<Vec<StoredTransfer>, DbError> {
    let mut query = transfers::table
        .order((
            transfers::block_number.desc(),
            transfers::txid.desc(),
            transfers::log_index.desc(),
        ))
        .limit(limit)
        .select(TransferRow::as_select())
        .into_boxed();
    if filter.assignable {
        query = query
            .filter(transfers::status.eq(TransferState::Confirmed.as_str()))
            .filter(transfers::match_kind.eq_any(ASSIGNABLE.map(MatchKind::as_str)));
    }
    if let Some(address) = &filter.address {
        query = query.filter(transfers::to_address.eq(address.clone()));
    }
    if let Some(kind) = filter.kind {
        query = query.filter(transfers::match_kind.eq(kind.as_str()));
    }
    if let Some((block, txid, index)) = after {
        query = query.filter(
            transfers::block_number
                .lt(block)
                .or(transfers::block_number.eq(block).and(
                    transfers::txid
                        .lt(txid.clone())
                        .or(transfers::txid.eq(txid).and(transfers::log_index.lt(index))),
                )),
        );
    }
    stored(query.load(conn).await?)
}

/// Credits an operator-assigned transfer to a pending or expired payment:
/// `received` is the payment's new total; with `completed_by`, the payment
/// completes with that transaction. `None` when the payment is neither
/// pending nor expired (any more). The caller holds the locks of
/// [`lock_address`] and [`lock_transfer`].
pub async fn assign_credit(
    conn: &mut AsyncPgConnection,
    payment_id: &PaymentId,
    received: UsdtAmount,
    completed_by: Option<&TxId>,
) -> Result<Option<PaymentRow>, DbError> {
    let open = payments::table
        .filter(payments::id.eq(payment_id.as_str()))
        .filter(payments::status.eq_any([DbStatus(PaymentStatus::Pending), DbStatus(PaymentStatus::Expired)]));
    let received = Some(received.to_decimal());
    let row = match completed_by {
        Some(txid) => {
            diesel::update(open)
                .set((
                    payments::status.eq(DbStatus(PaymentStatus::Completed)),
                    payments::received_amount_usdt.eq(received),
                    payments::transaction_hash.eq(Some(txid.as_str())),
                    payments::completed_at.eq(Some(chrono::Utc::now().naive_utc())),
                ))
                .returning(PaymentRow::as_returning())
                .get_result(conn)
                .await
        }
        None => {
            diesel::update(open)
                .set(payments::received_amount_usdt.eq(received))
                .returning(PaymentRow::as_returning())
                .get_result(conn)
                .await
        }
    };
    Ok(row.optional()?)
}

/// Records that an operator credited the transfer to `payment_id`; `false`
/// when it is not assignable (any more): a transfer is assigned once.
pub async fn mark_assigned(
    conn: &mut AsyncPgConnection,
    transfer: &TransferId,
    payment_id: &PaymentId,
) -> Result<bool, DbError> {
    let updated = diesel::update(
        transfers::table
            .find((transfer.txid.as_str(), log_index(transfer)))
            .filter(transfers::status.eq(TransferState::Confirmed.as_str()))
            .filter(transfers::match_kind.eq_any(ASSIGNABLE.map(MatchKind::as_str))),
    )
    .set((
        transfers::payment_id.eq(Some(payment_id.as_str())),
        transfers::match_kind.eq(Some(MatchKind::Assigned.as_str())),
    ))
    .execute(conn)
    .await?;
    Ok(updated == 1)
}

/// The transfer `id`, if it is stored (no lock).
pub async fn find_transfer(conn: &mut AsyncPgConnection, id: &TransferId) -> Result<Option<StoredTransfer>, DbError> {
    transfers::table
        .find((id.txid.as_str(), log_index(id)))
        .select(TransferRow::as_select())
        .first(conn)
        .await
        .optional()?
        .map(StoredTransfer::try_from)
        .transpose()
}

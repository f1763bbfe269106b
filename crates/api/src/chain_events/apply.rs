//! Applying one `payment.detected` inside a transaction: the address lock,
//! the dedupe row, then the decision of [`tronpay_domain::matching::decide`]
//! carried out — payment, transfer, log rows and webhooks — for a detection,
//! a drop, or every confirmed transfer to the address not applied yet.

use diesel_async::AsyncPgConnection;
use tronpay_db::matching::{self, StoredTransfer};
use tronpay_db::models::PaymentRow;
use tronpay_db::{logs, outbox, webhooks};
use tronpay_domain::events::{PaymentDetected, TransferState, WebhookEvent};
use tronpay_domain::matching::{Completion, Decision, MatchRules, decide};
use tronpay_domain::{JsonAmount, LogEvent, MatchKind, PaymentId, Transfer, UsdtAmount};

use super::{ApplyError, CONSUMER};
use crate::metrics::Tally;

/// Applies one message in the caller's transaction; `Ok(true)` when webhook
/// work was enqueued. What it did is added to `tally`, for the caller to
/// record once the transaction committed.
pub(super) async fn apply(
    conn: &mut AsyncPgConnection,
    rules: &MatchRules,
    message_id: uuid::Uuid,
    event: &PaymentDetected,
    tally: &mut Tally,
) -> Result<bool, ApplyError> {
    // The address lock first, then the dedupe row: a message in flight
    // twice (a redelivery, another replica) then serialises on its address
    // instead of waiting on the other copy's uncommitted dedupe row while
    // holding a lock that copy needs.
    let address = event.transfer.to.to_base58();
    matching::lock_address(conn, &address).await?;
    if !outbox::first_delivery(conn, CONSUMER, message_id).await? {
        return Ok(false);
    }
    let stored = matching::lock_transfer(conn, &event.transfer.id)
        .await?
        .ok_or_else(|| ApplyError::UnknownTransfer(event.transfer.id.to_string()))?;
    Ok(match event.state {
        TransferState::Detected => detected(conn, rules, &stored).await?,
        TransferState::Dropped => dropped(conn, &stored).await?,
        TransferState::Confirmed => apply_confirmed(conn, rules, &address, tally).await?,
    })
}

/// Applies, in chain order, every confirmed transfer to `address` not applied
/// yet (added to `tally`); the caller holds the address lock.
pub(super) async fn apply_confirmed(
    conn: &mut AsyncPgConnection,
    rules: &MatchRules,
    address: &str,
    tally: &mut Tally,
) -> Result<bool, ApplyError> {
    let mut enqueued = false;
    for stored in matching::unapplied_confirmed(conn, address).await? {
        enqueued |= confirmed(conn, rules, &stored, tally).await?;
    }
    Ok(enqueued)
}

/// Log metadata about `transfer`, with an exact amount field (the text of
/// the number is spliced in: a float would lose digits).
pub(crate) fn metadata(transfer: &Transfer, amount_key: &str, amount: UsdtAmount) -> String {
    let base = serde_json::json!({
        "transaction_hash": transfer.id.txid,
        "log_index": transfer.id.log_index,
        "from": transfer.from,
        "block_number": transfer.block_number,
        "block_timestamp": transfer.block_time_ms,
    })
    .to_string();
    let amount = serde_json::to_string(&JsonAmount(amount)).unwrap_or_else(|_| "null".into());
    format!("{{\"{amount_key}\":{amount},{}", &base[1..])
}

/// The payments `transfer` could concern, locked, and what matching decides.
async fn decision(
    conn: &mut AsyncPgConnection,
    rules: &MatchRules,
    transfer: &Transfer,
) -> Result<(Vec<PaymentRow>, Decision), ApplyError> {
    let rows = matching::lock_candidates(conn, &transfer.to.to_base58(), transfer.block_time_ms).await?;
    let candidates = rows.iter().map(matching::candidate).collect::<Result<Vec<_>, _>>()?;
    let decision = decide(transfer.amount, transfer.block_time_ms, &candidates, rules);
    Ok((rows, decision))
}

/// Enqueues `event` for `payment` if the payment asked for it.
async fn notify(
    conn: &mut AsyncPgConnection,
    payment: &PaymentRow,
    event: WebhookEvent,
    transfer: Option<&Transfer>,
) -> Result<bool, ApplyError> {
    if !payment.wants(event) {
        return Ok(false);
    }
    Ok(webhooks::enqueue(conn, payment, event, transfer).await?.is_some())
}

async fn detected(
    conn: &mut AsyncPgConnection,
    rules: &MatchRules,
    stored: &StoredTransfer,
) -> Result<bool, ApplyError> {
    if stored.applied_at.is_some() || stored.status != TransferState::Detected {
        return Ok(false);
    }
    let transfer = &stored.transfer;
    let (rows, decision) = decision(conn, rules, transfer).await?;
    // Zero and dust are never shown on a payment (address poisoning).
    let payment_id = match decision {
        Decision::Complete { payment_id, .. } | Decision::Partial { payment_id, .. } => payment_id,
        Decision::Late { .. } | Decision::Ignored(_) | Decision::Unmatched => return Ok(false),
    };
    matching::mark_detected_for(conn, &transfer.id, &payment_id).await?;
    let message = format!(
        "Transfer of {} USDT detected in block {} (transaction {}), waiting for the block to be final",
        transfer.amount, transfer.block_number, transfer.id.txid
    );
    logs::insert(
        conn,
        &payment_id,
        LogEvent::Detected,
        &message,
        Some(&metadata(transfer, "amount_usdt", transfer.amount)),
    )
    .await?;
    match rows.iter().find(|row| row.id == payment_id) {
        Some(payment) => notify(conn, payment, WebhookEvent::Detected, Some(transfer)).await,
        None => Ok(false),
    }
}

async fn dropped(conn: &mut AsyncPgConnection, stored: &StoredTransfer) -> Result<bool, ApplyError> {
    if stored.applied_at.is_some() || stored.status != TransferState::Dropped {
        return Ok(false);
    }
    if let Some(payment_id) = &stored.detected_payment_id {
        let transfer = &stored.transfer;
        let message = format!(
            "Transfer {} detected in block {} is not in the final chain; it does not count",
            transfer.id.txid, transfer.block_number
        );
        logs::insert(
            conn,
            payment_id,
            LogEvent::Dropped,
            &message,
            Some(&metadata(transfer, "amount_usdt", transfer.amount)),
        )
        .await?;
    }
    Ok(false)
}

async fn confirmed(
    conn: &mut AsyncPgConnection,
    rules: &MatchRules,
    stored: &StoredTransfer,
    tally: &mut Tally,
) -> Result<bool, ApplyError> {
    if stored.applied_at.is_some() {
        return Ok(false);
    }
    let transfer = &stored.transfer;
    let (rows, decision) = decision(conn, rules, transfer).await?;
    let kind = decision.match_kind();
    matching::mark_applied(conn, &transfer.id, decision.payment_id(), kind).await?;
    tally.matched.push(kind);
    let txid = &transfer.id.txid;
    match decision {
        Decision::Complete {
            payment_id,
            received,
            completion,
        } => {
            let payment = matching::complete(conn, &payment_id, received, txid).await?;
            tally.completed += 1;
            logs::insert(
                conn,
                &payment_id,
                LogEvent::Completed,
                &format!("Payment completed with transaction {txid}"),
                Some(&metadata(transfer, "received_amount", received)),
            )
            .await?;
            if let Completion::Overpaid { excess } = completion {
                let expected = payment.amount_due().unwrap_or(UsdtAmount::ZERO);
                let message = format!("Overpaid by {excess} USDT (received {received}, expected {expected})");
                logs::insert(
                    conn,
                    &payment_id,
                    LogEvent::Overpaid,
                    &message,
                    Some(&metadata(transfer, "excess_usdt", excess)),
                )
                .await?;
            }
            notify(conn, &payment, WebhookEvent::Completed, Some(transfer)).await
        }
        Decision::Partial { payment_id, received } => {
            let payment = matching::credit(conn, &payment_id, received).await?;
            let expected = payment.amount_due().unwrap_or(UsdtAmount::ZERO);
            let outstanding = expected.checked_sub(received).unwrap_or(UsdtAmount::ZERO);
            let message = format!(
                "Partial payment of {} USDT in transaction {txid}: {received} of {expected} USDT received, {outstanding} outstanding",
                transfer.amount
            );
            logs::insert(
                conn,
                &payment_id,
                LogEvent::Partial,
                &message,
                Some(&metadata(transfer, "amount_usdt", transfer.amount)),
            )
            .await?;
            notify(conn, &payment, WebhookEvent::PartiallyPaid, Some(transfer)).await
        }
        Decision::Late { payment_id } => late(conn, rows, &payment_id, transfer, tally).await,
        Decision::Ignored(reason) => {
            // Recorded for the operator (`tronpay chain transfers`); no log
            // row, no event, no webhook.
            tracing::info!(transfer = %transfer.id, to = %transfer.to, amount = %transfer.amount, %reason, "transfer ignored");
            Ok(false)
        }
        Decision::Unmatched => {
            debug_assert_eq!(kind, MatchKind::Unmatched);
            tracing::info!(transfer = %transfer.id, to = %transfer.to, amount = %transfer.amount, "unmatched transfer recorded");
            Ok(false)
        }
    }
}

/// A transfer after `payment_id`'s deadline: the payment expires if it has
/// not yet, and the late transfer is logged (and announced if asked for).
async fn late(
    conn: &mut AsyncPgConnection,
    rows: Vec<PaymentRow>,
    payment_id: &PaymentId,
    transfer: &Transfer,
    tally: &mut Tally,
) -> Result<bool, ApplyError> {
    let mut enqueued = false;
    let payment = match matching::expire(conn, payment_id).await? {
        Some(expired) => {
            tally.expired += 1;
            logs::insert(
                conn,
                payment_id,
                LogEvent::Expired,
                "Payment expired before it was paid",
                None,
            )
            .await?;
            enqueued |= notify(conn, &expired, WebhookEvent::Expired, None).await?;
            expired
        }
        None => rows
            .into_iter()
            .find(|row| row.id == *payment_id)
            .ok_or_else(|| ApplyError::UnknownTransfer(payment_id.to_string()))?,
    };
    let message = format!(
        "Late payment: {} USDT in transaction {} arrived after the payment expired",
        transfer.amount, transfer.id.txid
    );
    logs::insert(
        conn,
        payment_id,
        LogEvent::Late,
        &message,
        Some(&metadata(transfer, "amount_usdt", transfer.amount)),
    )
    .await?;
    enqueued |= notify(conn, &payment, WebhookEvent::Late, Some(transfer)).await?;
    Ok(enqueued)
}

//! Applying `payment.detected` (from the chain watcher) to payments.
//!
//! Each message is applied in one transaction that also records its message
//! id, so a redelivered message changes nothing; the transfer row and the
//! payments on its address are locked, so several API replicas consuming at
//! once never complete a payment twice or use a transfer twice. The message
//! is acknowledged only after that transaction commits.

use diesel_async::{AsyncConnection, AsyncPgConnection};
use tronpay_bus::{HandlerError, Incoming};
use tronpay_db::matching::{self, TransferRow};
use tronpay_db::webhooks::{self, EventTransfer};
use tronpay_db::{DbError, DbPool, logs, outbox};
use tronpay_domain::events::{PaymentDetected, TransferState, WebhookEvent};
use tronpay_domain::matching::{Completion, Decision, decide};
use tronpay_domain::{JsonAmount, UsdtAmount};

/// Name under which this consumer remembers applied messages.
pub const CONSUMER: &str = "api";

#[derive(Debug, thiserror::Error)]
enum ApplyError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("transfer {0} is not in the transfers table")]
    UnknownTransfer(String),
}

impl From<diesel::result::Error> for ApplyError {
    fn from(error: diesel::result::Error) -> Self {
        Self::Db(error.into())
    }
}

/// Handles one delivery; `Ok(true)` when webhook work was enqueued (the
/// caller wakes its outbox relay).
pub async fn handle(pool: &DbPool, incoming: &Incoming) -> Result<bool, HandlerError> {
    let event: PaymentDetected = serde_json::from_slice(&incoming.payload)
        .map_err(|error| HandlerError::Reject(format!("not a payment.detected event: {error}")))?;
    let message_id = incoming
        .message_id
        .as_deref()
        .and_then(|id| uuid::Uuid::parse_str(id).ok())
        .ok_or_else(|| HandlerError::Reject("payment.detected without a message id".into()))?;
    let mut conn = pool
        .get()
        .await
        .map_err(|error| HandlerError::Retry(error.to_string()))?;
    let outcome = conn
        .transaction::<_, ApplyError, _>(async |conn| apply(conn, message_id, &event).await)
        .await;
    match outcome {
        Ok(enqueued) => Ok(enqueued),
        Err(ApplyError::UnknownTransfer(id)) => Err(HandlerError::Reject(format!("transfer {id} is unknown"))),
        Err(ApplyError::Db(error)) if error.is_unavailable() || is_serialization_failure(&error) => {
            Err(HandlerError::Retry(error.to_string()))
        }
        Err(ApplyError::Db(error)) => Err(HandlerError::Reject(error.to_string())),
    }
}

fn is_serialization_failure(error: &DbError) -> bool {
    use diesel::result::{DatabaseErrorKind, Error};
    matches!(
        error,
        DbError::Query(Error::DatabaseError(DatabaseErrorKind::SerializationFailure, _))
    )
}

async fn apply(
    conn: &mut AsyncPgConnection,
    message_id: uuid::Uuid,
    event: &PaymentDetected,
) -> Result<bool, ApplyError> {
    if !outbox::first_delivery(conn, CONSUMER, message_id).await? {
        return Ok(false);
    }
    let log_index = i32::try_from(event.log_index).map_err(|_| ApplyError::UnknownTransfer(event.txid.to_string()))?;
    let transfer = matching::lock_transfer(conn, event.txid.as_str(), log_index)
        .await?
        .ok_or_else(|| ApplyError::UnknownTransfer(format!("{}:{}", event.txid, event.log_index)))?;
    Ok(match event.state {
        TransferState::Detected => detected(conn, &transfer, event).await?,
        TransferState::Dropped => dropped(conn, &transfer, event).await?,
        TransferState::Confirmed => confirmed(conn, &transfer, event).await?,
    })
}

fn transfer_metadata(event: &PaymentDetected) -> String {
    serde_json::json!({
        "transaction_hash": event.txid.as_str(),
        "log_index": event.log_index,
        "from": event.from.to_base58(),
        "block_number": event.block_number,
        "block_timestamp": event.block_time_ms,
    })
    .to_string()
}

/// Metadata with an exact amount field added (JSON numbers from a float
/// would lose digits, so the text is spliced in).
fn metadata_with_amount(event: &PaymentDetected, key: &str, amount: UsdtAmount) -> String {
    let base = transfer_metadata(event);
    let amount = serde_json::to_string(&JsonAmount(amount)).unwrap_or_else(|_| "null".into());
    format!("{{\"{key}\":{amount},{}", &base[1..])
}

async fn detected(
    conn: &mut AsyncPgConnection,
    transfer: &TransferRow,
    event: &PaymentDetected,
) -> Result<bool, ApplyError> {
    if transfer.applied_at.is_some() || transfer.status != "detected" {
        return Ok(false);
    }
    let rows = matching::lock_candidates(conn, &transfer.to_address).await?;
    let candidates = rows.iter().map(matching::candidate).collect::<Result<Vec<_>, _>>()?;
    let payment_id = match decide(event.amount, event.block_time_ms, &candidates) {
        Decision::Complete { payment_id, .. } | Decision::Partial { payment_id, .. } => payment_id,
        Decision::Late { .. } | Decision::Unmatched => return Ok(false),
    };
    matching::mark_detected_for(conn, transfer, &payment_id).await?;
    let message = format!(
        "Transfer of {} USDT detected in block {} (transaction {}), waiting for the block to be final",
        event.amount, event.block_number, event.txid
    );
    logs::insert(
        conn,
        &payment_id,
        "detected",
        &message,
        Some(&metadata_with_amount(event, "amount_usdt", event.amount)),
    )
    .await?;
    let Some(payment) = rows.iter().find(|row| row.id == payment_id) else {
        return Ok(false);
    };
    if webhooks::wants(payment, WebhookEvent::Detected) {
        let transfer = EventTransfer {
            txid: event.txid.as_str(),
            amount: event.amount,
            block_time_ms: event.block_time_ms,
        };
        return Ok(webhooks::enqueue(conn, payment, WebhookEvent::Detected, Some(transfer))
            .await?
            .is_some());
    }
    Ok(false)
}

async fn dropped(
    conn: &mut AsyncPgConnection,
    transfer: &TransferRow,
    event: &PaymentDetected,
) -> Result<bool, ApplyError> {
    if transfer.applied_at.is_some() {
        return Ok(false);
    }
    if let Some(payment_id) = &transfer.detected_payment_id {
        let message = format!(
            "Transfer {} detected in block {} is not in the final chain; it does not count",
            event.txid, event.block_number
        );
        logs::insert(conn, payment_id, "dropped", &message, Some(&transfer_metadata(event))).await?;
    }
    Ok(false)
}

async fn confirmed(
    conn: &mut AsyncPgConnection,
    transfer: &TransferRow,
    event: &PaymentDetected,
) -> Result<bool, ApplyError> {
    if transfer.applied_at.is_some() {
        return Ok(false);
    }
    let rows = matching::lock_candidates(conn, &transfer.to_address).await?;
    let candidates = rows.iter().map(matching::candidate).collect::<Result<Vec<_>, _>>()?;
    let txid = event.txid.as_str();
    let webhook_transfer = EventTransfer {
        txid,
        amount: event.amount,
        block_time_ms: event.block_time_ms,
    };
    let mut enqueued = false;
    match decide(event.amount, event.block_time_ms, &candidates) {
        Decision::Complete {
            payment_id,
            received,
            completion,
        } => {
            let payment = matching::complete(conn, &payment_id, received, txid).await?;
            let kind = match completion {
                Completion::Exact => "exact",
                Completion::Completing => "completing",
                Completion::Overpaid { .. } => "overpaid",
            };
            matching::mark_applied(conn, transfer, Some(&payment_id), kind).await?;
            logs::insert(
                conn,
                &payment_id,
                "completed",
                &format!("Payment completed with transaction {txid}"),
                Some(&metadata_with_amount(event, "received_amount", received)),
            )
            .await?;
            if let Completion::Overpaid { excess } = completion {
                let message = format!(
                    "Overpaid by {excess} USDT (received {received}, expected {})",
                    payment.expected_amount_usdt.normalized()
                );
                logs::insert(
                    conn,
                    &payment_id,
                    "overpaid",
                    &message,
                    Some(&metadata_with_amount(event, "excess_usdt", excess)),
                )
                .await?;
            }
            enqueued |= webhooks::enqueue(conn, &payment, WebhookEvent::Completed, Some(webhook_transfer))
                .await?
                .is_some();
        }
        Decision::Partial { payment_id, received } => {
            let payment = matching::credit(conn, &payment_id, received).await?;
            matching::mark_applied(conn, transfer, Some(&payment_id), "partial").await?;
            let expected = payment.expected_amount().unwrap_or(UsdtAmount::ZERO);
            let outstanding = expected.checked_sub(received).unwrap_or(UsdtAmount::ZERO);
            let message = format!(
                "Partial payment of {} USDT in transaction {txid}: {received} of {expected} USDT received, {outstanding} outstanding",
                event.amount
            );
            logs::insert(
                conn,
                &payment_id,
                "partial",
                &message,
                Some(&metadata_with_amount(event, "amount_usdt", event.amount)),
            )
            .await?;
        }
        Decision::Late { payment_id } => {
            let payment = match matching::expire(conn, &payment_id).await? {
                Some(expired) => {
                    logs::insert(conn, &payment_id, "expired", "Payment expired before it was paid", None).await?;
                    if webhooks::wants(&expired, WebhookEvent::Expired) {
                        enqueued |= webhooks::enqueue(conn, &expired, WebhookEvent::Expired, None)
                            .await?
                            .is_some();
                    }
                    expired
                }
                None => rows
                    .into_iter()
                    .find(|row| row.id == payment_id)
                    .ok_or_else(|| ApplyError::UnknownTransfer(payment_id.clone()))?,
            };
            matching::mark_applied(conn, transfer, Some(&payment_id), "late").await?;
            let message = format!(
                "Late payment: {} USDT in transaction {txid} arrived after the payment expired",
                event.amount
            );
            logs::insert(
                conn,
                &payment_id,
                "late",
                &message,
                Some(&metadata_with_amount(event, "amount_usdt", event.amount)),
            )
            .await?;
            if webhooks::wants(&payment, WebhookEvent::Late) {
                enqueued |= webhooks::enqueue(conn, &payment, WebhookEvent::Late, Some(webhook_transfer))
                    .await?
                    .is_some();
            }
        }
        Decision::Unmatched => {
            matching::mark_applied(conn, transfer, None, "unmatched").await?;
            tracing::info!(txid, log_index = event.log_index, to = %event.to, amount = %event.amount, "unmatched transfer recorded");
        }
    }
    Ok(enqueued)
}

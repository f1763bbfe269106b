//! Applying `payment.detected` (from the chain watcher) to payments.
//!
//! The `transfers` table is the truth and a message is the prompt to look at
//! it. Work on one address is serialised by a transaction-level advisory
//! lock, and under it every confirmed transfer not yet applied to that
//! address is applied in chain order `(block, log index)` — so the outcome
//! never depends on the order messages arrive in, several API replicas never
//! complete a payment twice or use a transfer twice, and a redelivered
//! message finds nothing left to do. The message is acknowledged only after
//! the transaction commits. A reconciler applies confirmed transfers whose
//! message never came (or was given up on).
//!
//! Confirmations that arrive together are applied together: a [`Batcher`]
//! gathers what the consumer has in hand (up to [`BATCH`]) and applies its
//! confirmations in one transaction, taking the address locks in address
//! order so that concurrent batches never wait on each other in a cycle. If
//! that transaction fails, each delivery is applied on its own, as if it had
//! come alone, so one bad message never holds back the others.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use diesel_async::{AsyncConnection, AsyncPgConnection};
use tronpay_bus::{HandlerError, Incoming};
use tronpay_db::error::DbErrorKind;
use tronpay_db::matching::{self, TransferRow};
use tronpay_db::webhooks::{self, EventTransfer};
use tronpay_db::{DbError, DbPool, logs, outbox};
use tronpay_domain::events::{PaymentDetected, TransferState, WebhookEvent};
use tronpay_domain::matching::{Completion, Decision, MatchRules, decide};
use tronpay_domain::{JsonAmount, UsdtAmount};
use tronpay_runtime::supervise::Tasks;

/// Name under which this consumer remembers applied messages.
pub const CONSUMER: &str = "api";

/// Attempts at one message before it is acknowledged and left to the
/// reconciler (its transfer stays in the database, unapplied).
const MAX_ATTEMPTS: u32 = 10;

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

/// Counts failed attempts per message, so that a message that keeps failing
/// on a database error is not requeued forever.
#[derive(Default)]
pub struct Attempts(Mutex<HashMap<uuid::Uuid, u32>>);

impl Attempts {
    fn failed(&self, id: uuid::Uuid) -> u32 {
        let Ok(mut counts) = self.0.lock() else {
            return MAX_ATTEMPTS;
        };
        if counts.len() > 10_000 {
            counts.clear();
        }
        let count = counts.entry(id).or_insert(0);
        *count += 1;
        *count
    }

    fn done(&self, id: uuid::Uuid) {
        if let Ok(mut counts) = self.0.lock() {
            counts.remove(&id);
        }
    }
}

/// Deliveries applied in one transaction, at most.
pub const BATCH: usize = 32;

/// A delivery, read.
struct Parsed {
    message_id: uuid::Uuid,
    event: PaymentDetected,
    address: String,
}

fn parse(incoming: &Incoming) -> Result<Parsed, HandlerError> {
    let event: PaymentDetected = serde_json::from_slice(&incoming.payload)
        .map_err(|error| HandlerError::Reject(format!("not a payment.detected event: {error}")))?;
    let message_id = incoming
        .message_id
        .as_deref()
        .and_then(|id| uuid::Uuid::parse_str(id).ok())
        .ok_or_else(|| HandlerError::Reject("payment.detected without a message id".into()))?;
    let address = event.to.to_base58();
    Ok(Parsed {
        message_id,
        event,
        address,
    })
}

/// Handles one delivery; `Ok(true)` when webhook work was enqueued (the
/// caller wakes its outbox relay).
pub async fn handle(
    pool: &DbPool,
    attempts: &Attempts,
    rules: &MatchRules,
    incoming: &Incoming,
) -> Result<bool, HandlerError> {
    handle_parsed(pool, attempts, rules, &parse(incoming)?).await
}

async fn handle_parsed(
    pool: &DbPool,
    attempts: &Attempts,
    rules: &MatchRules,
    parsed: &Parsed,
) -> Result<bool, HandlerError> {
    let Parsed { message_id, event, .. } = parsed;
    let outcome = match pool.get().await {
        Ok(mut conn) => {
            conn.transaction::<_, ApplyError, _>(async |conn| apply(conn, rules, *message_id, event).await)
                .await
        }
        Err(error) => Err(error.into()),
    };
    match outcome {
        Ok(enqueued) => {
            attempts.done(*message_id);
            Ok(enqueued)
        }
        Err(ApplyError::UnknownTransfer(id)) => Err(HandlerError::Reject(format!("transfer {id} is unknown"))),
        Err(ApplyError::Db(error)) => failed(attempts, parsed, &error),
    }
}

/// A delivery that could not be applied. A corrupt row or a bug will not go
/// away by retrying: the message goes to the dead-letter queue (visible to
/// the operator) and its transfer stays unapplied in the database. Anything
/// else is retried, up to [`MAX_ATTEMPTS`].
fn failed(attempts: &Attempts, parsed: &Parsed, error: &DbError) -> Result<bool, HandlerError> {
    if matches!(error.kind(), DbErrorKind::Corrupt | DbErrorKind::Bug) {
        attempts.done(parsed.message_id);
        tracing::error!(%error, txid = %parsed.event.txid, log_index = parsed.event.log_index, "a payment.detected cannot be applied");
        return Err(HandlerError::Reject(format!("cannot be applied: {error}")));
    }
    let tries = attempts.failed(parsed.message_id);
    if tries >= MAX_ATTEMPTS && parsed.event.state == TransferState::Confirmed {
        attempts.done(parsed.message_id);
        tracing::error!(%error, txid = %parsed.event.txid, "giving up on a message after {tries} attempts; the reconciler will apply its transfer");
        return Ok(false);
    }
    Err(HandlerError::Retry(error.to_string()))
}

/// What became of a batch of deliveries.
#[derive(Debug)]
pub struct BatchOutcome {
    /// Per delivery, in the order given, what [`handle`] would have said.
    pub results: Vec<Result<bool, HandlerError>>,
    /// Whether the well-formed ones were applied in one transaction (rather
    /// than one by one after that transaction failed, or alone).
    pub together: bool,
}

/// Applies the confirmations in `batch` in one transaction, or each on its
/// own if that fails; detections and drops always on their own.
///
/// Only confirmations are batched: they lock confirmed transfer rows, which
/// the chain watcher no longer writes, while a detection locks a row the
/// watcher may be confirming or dropping in the same moment — two such rows
/// in one transaction could wait on the watcher in a cycle.
pub async fn handle_batch(pool: &DbPool, attempts: &Attempts, rules: &MatchRules, batch: &[Incoming]) -> BatchOutcome {
    let mut results: Vec<Option<Result<bool, HandlerError>>> = Vec::with_capacity(batch.len());
    let mut events = Vec::with_capacity(batch.len());
    let mut alone = Vec::new();
    for (index, incoming) in batch.iter().enumerate() {
        match parse(incoming) {
            Ok(parsed) if parsed.event.state == TransferState::Confirmed => {
                results.push(None);
                events.push((index, parsed));
            }
            Ok(parsed) => {
                results.push(None);
                alone.push((index, parsed));
            }
            Err(rejected) => results.push(Some(Err(rejected))),
        }
    }
    // Lock order: by address (a stable sort keeps each address's arrival order).
    events.sort_by(|(_, a), (_, b)| a.address.cmp(&b.address));
    let mut together = false;
    if events.len() > 1 {
        let outcome = match pool.get().await {
            Ok(mut conn) => {
                conn.transaction::<_, ApplyError, _>(async |conn| {
                    let mut enqueued = Vec::with_capacity(events.len());
                    for (_, parsed) in &events {
                        enqueued.push(apply(conn, rules, parsed.message_id, &parsed.event).await?);
                    }
                    Ok(enqueued)
                })
                .await
            }
            Err(error) => {
                // No connection: one by one would wait for the pool once per
                // delivery. Each is retried later instead.
                for (index, parsed) in &events {
                    results[*index] = Some(failed(attempts, parsed, &error));
                }
                events.clear();
                Err(ApplyError::Db(error))
            }
        };
        match outcome {
            Ok(enqueued) => {
                together = true;
                for ((index, parsed), enqueued) in events.iter().zip(enqueued) {
                    attempts.done(parsed.message_id);
                    results[*index] = Some(Ok(enqueued));
                }
            }
            Err(error) if !events.is_empty() => {
                tracing::info!(%error, deliveries = events.len(), "a batch of events failed; applying them one by one");
            }
            Err(_) => {}
        }
    }
    if !together {
        alone.append(&mut events);
    }
    for (index, parsed) in &alone {
        results[*index] = Some(handle_parsed(pool, attempts, rules, parsed).await);
    }
    BatchOutcome {
        results: results
            .into_iter()
            .map(|result| result.unwrap_or_else(|| Err(HandlerError::Retry("not applied".into()))))
            .collect(),
        together,
    }
}

type Reply = tokio::sync::oneshot::Sender<Result<bool, HandlerError>>;
type Queue = Arc<tokio::sync::Mutex<tokio::sync::mpsc::Receiver<(Incoming, Reply)>>>;

/// Gathers the deliveries the consumer has in hand into batches for
/// [`handle_batch`]; its workers stop when the last clone is dropped.
#[derive(Clone)]
pub struct Batcher {
    sender: tokio::sync::mpsc::Sender<(Incoming, Reply)>,
}

impl Batcher {
    /// Starts `workers` workers on `tasks`, each applying one batch at a
    /// time; they end when the last `Batcher` clone is dropped (the
    /// consumer stopped).
    pub fn start(
        pool: DbPool,
        attempts: Arc<Attempts>,
        rules: MatchRules,
        workers: usize,
        capacity: usize,
        tasks: &mut Tasks,
    ) -> Self {
        let (sender, receiver) = tokio::sync::mpsc::channel(capacity.max(1));
        let queue: Queue = Arc::new(tokio::sync::Mutex::new(receiver));
        for _ in 0..workers.max(1) {
            let work = work(pool.clone(), Arc::clone(&attempts), rules, Arc::clone(&queue));
            tasks.spawn("payment.detected worker", work);
        }
        Self { sender }
    }

    /// Handles one delivery, in whatever batch it joins.
    pub async fn handle(&self, incoming: Incoming) -> Result<bool, HandlerError> {
        let stopped = || HandlerError::Retry("the event workers stopped".into());
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.sender.send((incoming, reply)).await.map_err(|_| stopped())?;
        answer.await.unwrap_or_else(|_| Err(stopped()))
    }
}

async fn work(pool: DbPool, attempts: Arc<Attempts>, rules: MatchRules, queue: Queue) {
    loop {
        let mut batch = Vec::new();
        {
            let mut queue = queue.lock().await;
            let Some(first) = queue.recv().await else { return };
            batch.push(first);
            while batch.len() < BATCH {
                match queue.try_recv() {
                    Ok(next) => batch.push(next),
                    Err(_) => break,
                }
            }
        }
        let (incoming, replies): (Vec<Incoming>, Vec<Reply>) = batch.into_iter().unzip();
        let outcome = handle_batch(&pool, &attempts, &rules, &incoming).await;
        for (reply, result) in replies.into_iter().zip(outcome.results) {
            let _ = reply.send(result);
        }
    }
}

async fn apply(
    conn: &mut AsyncPgConnection,
    rules: &MatchRules,
    message_id: uuid::Uuid,
    event: &PaymentDetected,
) -> Result<bool, ApplyError> {
    // The address lock first, then the dedupe row: a message in flight
    // twice (a redelivery, another replica) then serialises on its address
    // instead of waiting on the other copy's uncommitted dedupe row while
    // holding a lock that copy needs.
    let address = event.to.to_base58();
    matching::lock_address(conn, &address).await?;
    if !outbox::first_delivery(conn, CONSUMER, message_id).await? {
        return Ok(false);
    }
    let log_index = i32::try_from(event.log_index).map_err(|_| ApplyError::UnknownTransfer(event.txid.to_string()))?;
    let transfer = matching::lock_transfer(conn, event.txid.as_str(), log_index)
        .await?
        .ok_or_else(|| ApplyError::UnknownTransfer(format!("{}:{}", event.txid, event.log_index)))?;
    Ok(match event.state {
        TransferState::Detected => detected(conn, rules, &transfer).await?,
        TransferState::Dropped => dropped(conn, &transfer).await?,
        TransferState::Confirmed => apply_confirmed(conn, rules, &address).await?,
    })
}

/// Applies, in chain order, every confirmed transfer to `address` not applied
/// yet; the caller holds the address lock.
async fn apply_confirmed(conn: &mut AsyncPgConnection, rules: &MatchRules, address: &str) -> Result<bool, ApplyError> {
    let mut enqueued = false;
    for transfer in matching::unapplied_confirmed(conn, address).await? {
        enqueued |= confirmed(conn, rules, &transfer).await?;
    }
    Ok(enqueued)
}

/// Applies the confirmed transfers whose message did not come (or was given
/// up on) and that have waited `older_than_seconds`; returns how many
/// addresses were handled and whether webhook work was enqueued.
///
/// An address whose transfers cannot be applied for a reason retrying will
/// not cure (a corrupt row, a bug) is logged with the error, added to
/// `skipped` and left out of later rounds, and the round goes on with the
/// other addresses. A database that is unavailable or lacks its schema ends
/// the round (the next one tries again).
pub async fn reconcile(
    pool: &DbPool,
    rules: &MatchRules,
    older_than_seconds: i64,
    skipped: &mut HashSet<String>,
) -> Result<(usize, bool), DbError> {
    let addresses = {
        let excluded: Vec<String> = skipped.iter().cloned().collect();
        let mut conn = pool.get().await?;
        matching::addresses_with_unapplied(&mut conn, older_than_seconds, 100, &excluded).await?
    };
    let mut enqueued = false;
    for address in &addresses {
        let mut conn = pool.get().await?;
        let outcome = conn
            .transaction::<_, ApplyError, _>(async |conn| {
                matching::lock_address(conn, address).await?;
                apply_confirmed(conn, rules, address).await
            })
            .await;
        match outcome {
            Ok(done) => enqueued |= done,
            Err(ApplyError::Db(error)) => match error.kind() {
                DbErrorKind::Unavailable | DbErrorKind::Setup => return Err(error),
                DbErrorKind::Conflict if error.is_retryable() => {
                    tracing::info!(%address, %error, "reconciler: lost a race; next round");
                }
                DbErrorKind::Conflict | DbErrorKind::Corrupt | DbErrorKind::Bug => {
                    tracing::error!(%address, %error, "reconciler: the transfers to this address cannot be applied; skipping it");
                    skipped.insert(address.clone());
                }
            },
            Err(ApplyError::UnknownTransfer(id)) => tracing::warn!(%id, "reconciler: transfer vanished"),
        }
    }
    if !addresses.is_empty() {
        tracing::warn!(
            addresses = addresses.len(),
            "applied confirmed transfers whose event had not been applied"
        );
    }
    Ok((addresses.len(), enqueued))
}

/// What a log row and a webhook say about a transfer.
struct Facts {
    txid: String,
    log_index: i32,
    from: String,
    amount: UsdtAmount,
    block_number: i64,
    block_time_ms: i64,
}

impl Facts {
    fn of(row: &TransferRow) -> Result<Self, DbError> {
        Ok(Self {
            txid: row.txid.clone(),
            log_index: row.log_index,
            from: row.from_address.clone(),
            amount: UsdtAmount::from_decimal(&row.amount_usdt).map_err(|error| {
                DbError::corrupt(
                    "transfer",
                    format!("{}:{}", row.txid, row.log_index),
                    format!("invalid amount: {error}"),
                )
            })?,
            block_number: row.block_number,
            block_time_ms: row.block_time.and_utc().timestamp_millis(),
        })
    }

    /// Log metadata, with an exact amount field (the text of the number is
    /// spliced in: a float would lose digits).
    fn metadata(&self, amount_key: &str, amount: UsdtAmount) -> String {
        let base = serde_json::json!({
            "transaction_hash": self.txid,
            "log_index": self.log_index,
            "from": self.from,
            "block_number": self.block_number,
            "block_timestamp": self.block_time_ms,
        })
        .to_string();
        let amount = serde_json::to_string(&JsonAmount(amount)).unwrap_or_else(|_| "null".into());
        format!("{{\"{amount_key}\":{amount},{}", &base[1..])
    }

    fn webhook(&self) -> EventTransfer<'_> {
        EventTransfer {
            txid: &self.txid,
            amount: self.amount,
            block_time_ms: self.block_time_ms,
        }
    }
}

async fn detected(
    conn: &mut AsyncPgConnection,
    rules: &MatchRules,
    transfer: &TransferRow,
) -> Result<bool, ApplyError> {
    if transfer.applied_at.is_some() || transfer.status != "detected" {
        return Ok(false);
    }
    let facts = Facts::of(transfer)?;
    let rows = matching::lock_candidates(conn, &transfer.to_address, transfer.block_time).await?;
    let candidates = rows.iter().map(matching::candidate).collect::<Result<Vec<_>, _>>()?;
    // Zero and dust are never shown on a payment (address poisoning).
    let payment_id = match decide(facts.amount, facts.block_time_ms, &candidates, rules) {
        Decision::Complete { payment_id, .. } | Decision::Partial { payment_id, .. } => payment_id,
        Decision::Late { .. } | Decision::Ignored(_) | Decision::Unmatched => return Ok(false),
    };
    matching::mark_detected_for(conn, transfer, &payment_id).await?;
    let message = format!(
        "Transfer of {} USDT detected in block {} (transaction {}), waiting for the block to be final",
        facts.amount, facts.block_number, facts.txid
    );
    logs::insert(
        conn,
        &payment_id,
        "detected",
        &message,
        Some(&facts.metadata("amount_usdt", facts.amount)),
    )
    .await?;
    let Some(payment) = rows.iter().find(|row| row.id == payment_id) else {
        return Ok(false);
    };
    if webhooks::wants(payment, WebhookEvent::Detected) {
        return Ok(
            webhooks::enqueue(conn, payment, WebhookEvent::Detected, Some(facts.webhook()))
                .await?
                .is_some(),
        );
    }
    Ok(false)
}

async fn dropped(conn: &mut AsyncPgConnection, transfer: &TransferRow) -> Result<bool, ApplyError> {
    if transfer.applied_at.is_some() || transfer.status != "dropped" {
        return Ok(false);
    }
    if let Some(payment_id) = &transfer.detected_payment_id {
        let facts = Facts::of(transfer)?;
        let message = format!(
            "Transfer {} detected in block {} is not in the final chain; it does not count",
            facts.txid, facts.block_number
        );
        logs::insert(
            conn,
            payment_id,
            "dropped",
            &message,
            Some(&facts.metadata("amount_usdt", facts.amount)),
        )
        .await?;
    }
    Ok(false)
}

async fn confirmed(
    conn: &mut AsyncPgConnection,
    rules: &MatchRules,
    transfer: &TransferRow,
) -> Result<bool, ApplyError> {
    if transfer.applied_at.is_some() {
        return Ok(false);
    }
    let facts = Facts::of(transfer)?;
    let rows = matching::lock_candidates(conn, &transfer.to_address, transfer.block_time).await?;
    let candidates = rows.iter().map(matching::candidate).collect::<Result<Vec<_>, _>>()?;
    let txid = facts.txid.as_str();
    let mut enqueued = false;
    match decide(facts.amount, facts.block_time_ms, &candidates, rules) {
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
                Some(&facts.metadata("received_amount", received)),
            )
            .await?;
            if let Completion::Overpaid { excess } = completion {
                let expected = payment.expected_amount().unwrap_or(UsdtAmount::ZERO);
                let message = format!("Overpaid by {excess} USDT (received {received}, expected {expected})");
                logs::insert(
                    conn,
                    &payment_id,
                    "overpaid",
                    &message,
                    Some(&facts.metadata("excess_usdt", excess)),
                )
                .await?;
            }
            enqueued |= webhooks::enqueue(conn, &payment, WebhookEvent::Completed, Some(facts.webhook()))
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
                facts.amount
            );
            logs::insert(
                conn,
                &payment_id,
                "partial",
                &message,
                Some(&facts.metadata("amount_usdt", facts.amount)),
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
                facts.amount
            );
            logs::insert(
                conn,
                &payment_id,
                "late",
                &message,
                Some(&facts.metadata("amount_usdt", facts.amount)),
            )
            .await?;
            if webhooks::wants(&payment, WebhookEvent::Late) {
                enqueued |= webhooks::enqueue(conn, &payment, WebhookEvent::Late, Some(facts.webhook()))
                    .await?
                    .is_some();
            }
        }
        Decision::Ignored(reason) => {
            // Recorded for the operator (`tronpay chain transfers`); no log
            // row, no event, no webhook.
            matching::mark_applied(conn, transfer, None, "ignored").await?;
            tracing::info!(txid, log_index = facts.log_index, to = %transfer.to_address, amount = %facts.amount, %reason, "transfer ignored");
        }
        Decision::Unmatched => {
            matching::mark_applied(conn, transfer, None, "unmatched").await?;
            tracing::info!(txid, log_index = facts.log_index, to = %transfer.to_address, amount = %facts.amount, "unmatched transfer recorded");
        }
    }
    Ok(enqueued)
}

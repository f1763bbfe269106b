//! Deliveries in hand applied together: a [`Batcher`] gathers what the
//! consumer holds into batches and [`handle_batch`] applies a batch's
//! confirmations in one transaction (address locks in address order), or
//! each on its own if that transaction fails.

use std::sync::Arc;

use diesel_async::AsyncConnection;
use tronpay_bus::{HandlerError, Incoming};
use tronpay_db::DbPool;
use tronpay_domain::events::TransferState;
use tronpay_domain::matching::MatchRules;
use tronpay_runtime::supervise::Tasks;

use super::apply::apply;
use super::{ApplyError, Attempts, failed, handle_parsed, parse};

/// Deliveries applied in one transaction, at most.
pub const BATCH: usize = 32;

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
        let mut tally = crate::metrics::Tally::default();
        let outcome = match pool.get().await {
            Ok(mut conn) => {
                let applied = conn
                    .transaction::<_, ApplyError, _>(async |conn| {
                        let mut enqueued = Vec::with_capacity(events.len());
                        for (_, parsed) in &events {
                            enqueued.push(apply(conn, rules, parsed.message_id, &parsed.event, &mut tally).await?);
                        }
                        Ok(enqueued)
                    })
                    .await;
                if applied.is_ok() {
                    tally.record();
                }
                applied
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

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
//!
//! Rooms: this module parses a delivery and decides what becomes of a
//! failure; [`batch`] gathers deliveries into transactions; `apply` carries
//! out a matching decision; [`reconcile`] applies what no message brought.

pub(crate) mod apply;
pub mod batch;
pub mod reconcile;

pub use batch::{BATCH, BatchOutcome, Batcher, handle_batch};
pub use reconcile::reconcile;

use std::collections::HashMap;
use std::sync::Mutex;

use diesel_async::AsyncConnection;
use tronpay_bus::{HandlerError, Incoming};
use tronpay_db::error::DbErrorKind;
use tronpay_db::{DbError, DbPool};
use tronpay_domain::events::{PaymentDetected, TransferState};
use tronpay_domain::matching::MatchRules;

use self::apply::apply;

/// Name under which this consumer remembers applied messages.
pub const CONSUMER: &str = "api";

/// Attempts at one message before it is acknowledged and left to the
/// reconciler (its transfer stays in the database, unapplied).
const MAX_ATTEMPTS: u32 = 10;

#[derive(Debug, thiserror::Error)]
pub(crate) enum ApplyError {
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
    pub(crate) fn failed(&self, id: uuid::Uuid) -> u32 {
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

    pub(crate) fn done(&self, id: uuid::Uuid) {
        if let Ok(mut counts) = self.0.lock() {
            counts.remove(&id);
        }
    }
}

/// A delivery, read.
pub(crate) struct Parsed {
    message_id: uuid::Uuid,
    event: PaymentDetected,
    address: String,
}

pub(crate) fn parse(incoming: &Incoming) -> Result<Parsed, HandlerError> {
    let event: PaymentDetected = serde_json::from_slice(&incoming.payload)
        .map_err(|error| HandlerError::Reject(format!("not a payment.detected event: {error}")))?;
    let message_id = incoming
        .message_id
        .as_deref()
        .and_then(|id| uuid::Uuid::parse_str(id).ok())
        .ok_or_else(|| HandlerError::Reject("payment.detected without a message id".into()))?;
    let address = event.transfer.to.to_base58();
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

pub(crate) async fn handle_parsed(
    pool: &DbPool,
    attempts: &Attempts,
    rules: &MatchRules,
    parsed: &Parsed,
) -> Result<bool, HandlerError> {
    let Parsed { message_id, event, .. } = parsed;
    let mut tally = crate::metrics::Tally::default();
    let outcome = match pool.get().await {
        Ok(mut conn) => {
            conn.transaction::<_, ApplyError, _>(async |conn| apply(conn, rules, *message_id, event, &mut tally).await)
                .await
        }
        Err(error) => Err(error.into()),
    };
    if outcome.is_ok() {
        tally.record();
    }
    match outcome {
        Ok(enqueued) => {
            attempts.done(*message_id);
            Ok(enqueued)
        }
        Err(ApplyError::UnknownTransfer(id)) => Err(HandlerError::Reject(format!("transfer {id} is unknown"))),
        Err(ApplyError::Db(error)) => failed(attempts, parsed, &error),
    }
}

/// A delivery that could not be applied. A corrupt row will not go away by
/// retrying: the message goes to the dead-letter queue at once (visible to
/// the operator), its transfer left unapplied in the database for the
/// reconciler. Anything else is retried, up to [`MAX_ATTEMPTS`]; then a
/// confirmation is acknowledged and left to the reconciler, and a statement
/// the database keeps rejecting (a bug) is dead-lettered.
pub(crate) fn failed(attempts: &Attempts, parsed: &Parsed, error: &DbError) -> Result<bool, HandlerError> {
    let reject = |attempts: &Attempts| {
        attempts.done(parsed.message_id);
        tracing::error!(%error, transfer = %parsed.event.transfer.id, "a payment.detected cannot be applied");
        Err(HandlerError::Reject(format!("cannot be applied: {error}")))
    };
    if error.kind() == DbErrorKind::Corrupt {
        return reject(attempts);
    }
    let tries = attempts.failed(parsed.message_id);
    if tries >= MAX_ATTEMPTS && error.kind() == DbErrorKind::Bug {
        return reject(attempts);
    }
    if tries >= MAX_ATTEMPTS && parsed.event.state == TransferState::Confirmed {
        attempts.done(parsed.message_id);
        tracing::error!(%error, transfer = %parsed.event.transfer.id, "giving up on a message after {tries} attempts; the reconciler will apply its transfer");
        return Ok(false);
    }
    Err(HandlerError::Retry(error.to_string()))
}

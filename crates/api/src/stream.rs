//! Live status for checkout pages: `GET /v1/payments/{id}/stream`, Server-Sent
//! Events of a payment's [`BuyerState`] — the one `/v1` route without a key,
//! so it carries only what the page shows anyway.
//!
//! It must work with several API replicas: the replica that applies a
//! transfer is rarely the one holding the buyer's stream, and LISTEN/NOTIFY
//! does not pass PgBouncer in transaction mode. So each process runs one
//! poller ([`StatusHub::run`]) that, while any stream is open, reads the
//! watched payments, their waiting transfers and the chain heights from
//! PostgreSQL every [`POLL_INTERVAL`] (three queries, whatever the number of
//! streams) and sends each stream its payment's state when it changed.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use actix_web::http::header::{self, HeaderValue};
use actix_web::web::Bytes;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Serialize;
use tokio::sync::watch;
use tronpay_db::DbPool;
use tronpay_db::models::PaymentRow;

use crate::checkout::{BuyerState, Lang, PageQuery, buyer_view, language};
use crate::state::AppState;
use crate::v1::problem::Problem;

/// How often the poller reads the watched payments.
pub const POLL_INTERVAL: Duration = Duration::from_millis(500);
/// A comment line this often keeps proxies from closing a quiet stream.
pub const KEEPALIVE: Duration = Duration::from_secs(15);
/// A browser reconnects this long after a stream broke (`retry:`), in ms.
const RETRY_MS: u32 = 2_000;

/// The streams of this process, by payment id: each payment's latest state
/// in a `watch` channel its streams read.
#[derive(Default)]
pub struct StatusHub {
    watched: Mutex<HashMap<String, watch::Sender<BuyerState>>>,
}

impl StatusHub {
    /// A receiver of `id`'s state, starting at `current` when no stream of
    /// this process watches it yet.
    fn subscribe(&self, id: &str, current: BuyerState) -> watch::Receiver<BuyerState> {
        let mut watched = self.watched.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        match watched.get(id) {
            Some(sender) => sender.subscribe(),
            None => {
                let (sender, receiver) = watch::channel(current);
                watched.insert(id.to_owned(), sender);
                receiver
            }
        }
    }

    /// The ids with open streams; forgets those whose streams all closed.
    fn ids(&self) -> Vec<String> {
        let mut watched = self.watched.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        watched.retain(|_, sender| sender.receiver_count() > 0);
        watched.keys().cloned().collect()
    }

    /// Sends `state` to `id`'s streams if it changed.
    fn publish(&self, id: &str, state: BuyerState) {
        let watched = self.watched.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(sender) = watched.get(id) {
            sender.send_if_modified(|current| {
                let changed = *current != state;
                if changed {
                    *current = state;
                }
                changed
            });
        }
    }

    /// The poller: every [`POLL_INTERVAL`] while streams are open, reads
    /// their payments and publishes what changed. Ends when the hub is
    /// dropped (the server stopped). A failed read is logged and retried
    /// at the next tick; the streams stay open.
    pub async fn run(hub: Weak<Self>, pool: DbPool) {
        let mut ticks = tokio::time::interval(POLL_INTERVAL);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            let Some(hub) = hub.upgrade() else { return };
            let ids = hub.ids();
            if ids.is_empty() {
                continue;
            }
            match read_states(&pool, &ids).await {
                Ok(states) => {
                    for (id, state) in states {
                        hub.publish(&id, state);
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, streams = ids.len(), "reading the status of open checkout streams")
                }
            }
        }
    }
}

/// The buyer's state of each of `ids` that exists.
async fn read_states(pool: &DbPool, ids: &[String]) -> Result<Vec<(String, BuyerState)>, tronpay_db::DbError> {
    let mut conn = pool.get().await?;
    let payments = tronpay_db::payments::find_many(&mut conn, ids).await?;
    let waiting = tronpay_db::matching::waiting_transfers_of(&mut conn, ids).await?;
    let chain = tronpay_db::chain::state(&mut conn).await?;
    drop(conn);
    let mut by_payment: HashMap<String, Vec<tronpay_db::matching::StoredTransfer>> = HashMap::new();
    for transfer in waiting {
        if let Some(id) = &transfer.detected_payment_id {
            by_payment.entry(id.as_str().to_owned()).or_default().push(transfer);
        }
    }
    Ok(payments
        .iter()
        .map(|payment: &PaymentRow| {
            let transfers = by_payment.get(payment.id.as_str()).map_or(&[][..], Vec::as_slice);
            (
                payment.id.as_str().to_owned(),
                BuyerState::of(payment, transfers, chain.as_ref()),
            )
        })
        .collect())
}

/// One event of the stream (`event: status`): public fields only.
#[derive(Debug, Serialize)]
pub struct StatusEvent {
    /// [`BuyerState::class`].
    pub state: &'static str,
    /// The status line in the stream's language (`?lang=`).
    pub text: String,
    /// No further event will come.
    #[serde(rename = "final")]
    pub is_final: bool,
    /// While confirming: blocks so far, and blocks until final.
    pub confirmations: Option<u64>,
    pub required: Option<u64>,
    /// While partly paid: what is still to pay (USDT, decimal string).
    pub amount_due: Option<String>,
}

impl StatusEvent {
    fn of(state: &BuyerState, lang: Lang) -> Result<Self, Problem> {
        let messages = lang
            .messages()
            .map_err(|error| Problem::internal(anyhow::anyhow!("{error}")))?;
        let (confirmations, required) = match state {
            BuyerState::Confirming {
                confirmations,
                required,
            } => (Some(*confirmations), Some(*required)),
            _ => (None, None),
        };
        Ok(Self {
            state: state.class(),
            text: state.text(messages),
            is_final: state.is_final(),
            confirmations,
            required,
            amount_due: match state {
                BuyerState::PartiallyPaid { due } => Some(due.to_string()),
                _ => None,
            },
        })
    }

    /// `event: status` with this as its JSON data.
    fn frame(&self) -> Bytes {
        let data = serde_json::to_string(self).unwrap_or_else(|_| "{}".to_owned());
        Bytes::from(format!("event: status\ndata: {data}\n\n"))
    }
}

/// `GET /v1/payments/{id}/stream`: the payment's state now, then each change,
/// as Server-Sent Events (`event: status`, JSON data: [`StatusEvent`]); a
/// comment every [`KEEPALIVE`]; the stream ends after a final state. No key:
/// public fields only. Unknown id: 404 problem.
pub async fn stream(
    state: web::Data<AppState>,
    path: web::Path<String>,
    query: web::Query<PageQuery>,
    request: HttpRequest,
) -> Result<HttpResponse, Problem> {
    let lang = language(&request, &query);
    let id = crate::v1::payments::payment_id(&path)?;
    let Some((_, current)) = buyer_view(&state, &id).await? else {
        return Err(crate::v1::payments::not_found(id.as_str()));
    };
    let first = StatusEvent::of(&current, lang)?;
    let mut receiver = state.status_hub.subscribe(id.as_str(), current);
    receiver.mark_unchanged();

    let head = Bytes::from(format!("retry: {RETRY_MS}\n\n"));
    let opening = futures_util::stream::iter([Ok::<_, actix_web::Error>(head), Ok(first.frame())]);
    let done = first.is_final;
    let updates = futures_util::stream::unfold((receiver, done), move |(mut receiver, done)| async move {
        if done {
            return None;
        }
        match tokio::time::timeout(KEEPALIVE, receiver.changed()).await {
            // A quiet spell: a comment keeps the connection open.
            Err(_) => Some((Ok(Bytes::from_static(b": keepalive\n\n")), (receiver, false))),
            // The hub went away (the server is stopping): end the stream.
            Ok(Err(_)) => None,
            Ok(Ok(())) => {
                let state = receiver.borrow_and_update().clone();
                let event = StatusEvent::of(&state, lang).ok()?;
                let done = event.is_final;
                Some((Ok(event.frame()), (receiver, done)))
            }
        }
    });
    Ok(HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header((header::CACHE_CONTROL, HeaderValue::from_static("no-store")))
        .insert_header(("x-accel-buffering", HeaderValue::from_static("no")))
        .streaming(futures_util::StreamExt::chain(opening, updates)))
}

/// A hub for the state and its poller on the current tokio runtime.
pub fn start(pool: DbPool) -> Arc<StatusHub> {
    let hub = Arc::new(StatusHub::default());
    tokio::spawn(StatusHub::run(Arc::downgrade(&hub), pool));
    hub
}

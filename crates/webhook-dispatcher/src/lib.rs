//! `tronpay-webhook-dispatcher`: delivers webhooks (PRODUCT §6).
//!
//! It consumes `callback.due`, claims one attempt at a time in PostgreSQL
//! (the delivery row is the source of truth), sends it signed per Standard
//! Webhooks, and records the outcome. A sweep republishes deliveries that are
//! due but whose message was lost; replicas share the queue and never send
//! the same attempt twice. Capacity is shared fairly between destinations
//! ([`lanes`]): one origin never holds every slot, and origins that time out
//! use a lane of their own.

pub mod client;
pub mod deliver;
pub mod health;
pub mod lanes;
pub mod settings;

use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use tokio::sync::{Notify, Semaphore, watch};
use tokio::task::JoinHandle;
use tronpay_bus::{BusSettings, BusStatus, Relay, run_consumer, stopped};
use tronpay_db::{DbPool, deliveries};
use tronpay_domain::events::CALLBACK_DUE;
use tronpay_domain::signing::WebhookSecret;

pub use settings::DispatcherSettings;

use crate::deliver::Dispatcher;
use crate::lanes::{Lanes, Limits, PARKED_IN_ALL, PARKED_PER_ORIGIN};

/// How often due deliveries are looked for and secrets reloaded.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// A running dispatcher's tasks and broker status.
pub struct Running {
    /// The `callback.due` consumer's connection state (for health).
    pub consumer: Arc<BusStatus>,
    /// The outbox relay's connection state (for health).
    pub relay: Arc<BusStatus>,
    handles: Vec<JoinHandle<()>>,
    dispatcher: Arc<Dispatcher>,
}

impl Running {
    /// Waits until the tasks have stopped (after `shutdown`), then for the
    /// attempts still in flight on their own tasks (started from a parked
    /// queue) to finish and be recorded — at most a lease (the timeout +
    /// 10 s), after which another dispatcher may make them again anyway.
    pub async fn join(self) {
        for handle in self.handles {
            let _ = handle.await;
        }
        let deadline = tokio::time::Instant::now() + self.dispatcher.timeout + Duration::from_secs(10);
        loop {
            let ended = self.dispatcher.ended.notified();
            tokio::pin!(ended);
            ended.as_mut().enable();
            if self.dispatcher.attempts_in_flight() == 0 || tokio::time::timeout_at(deadline, ended).await.is_err() {
                return;
            }
        }
    }
}

/// Loads the signing secrets: `WEBHOOK_SECRET` when set, else the stored
/// ones (a secret is generated and stored on first start).
async fn load_secrets(pool: &DbPool, configured: Option<&WebhookSecret>) -> anyhow::Result<Vec<WebhookSecret>> {
    if let Some(secret) = configured {
        return Ok(vec![secret.clone()]);
    }
    let mut conn = pool.get().await?;
    let mut stored = deliveries::secrets(&mut conn).await?;
    if stored.is_empty() {
        let generated = WebhookSecret::generate().map_err(anyhow::Error::msg)?;
        stored = deliveries::ensure_secret(&mut conn, generated.expose()).await?;
        tracing::info!("generated the webhook signing secret (show it with `tronpay webhooks secret`)");
    }
    stored
        .iter()
        .map(|text| WebhookSecret::parse(text).map_err(anyhow::Error::msg))
        .collect()
}

/// Starts the consumer, the sweep and the relay; they stop when `shutdown`
/// turns true. Fails if the database is unreachable at start (the secret
/// must be known before anything is signed).
pub async fn start(
    settings: DispatcherSettings,
    pool: DbPool,
    bus: BusSettings,
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<Running> {
    settings.validate().map_err(anyhow::Error::msg)?;
    let configured = settings.secret().map_err(anyhow::Error::msg)?;
    let secrets = Arc::new(RwLock::new(load_secrets(&pool, configured.as_ref()).await?));
    let policy = settings.policy().map_err(anyhow::Error::msg)?;
    let dispatcher = Arc::new(Dispatcher {
        pool: pool.clone(),
        http: client::build(&policy, settings.timeout()).map_err(anyhow::Error::msg)?,
        policy,
        schedule: settings.schedule().map_err(anyhow::Error::msg)?,
        timeout: settings.timeout(),
        max_retry_after: Duration::from_secs(settings.webhook_max_retry_after_seconds),
        secrets: Arc::clone(&secrets),
        in_flight: Semaphore::new(settings.webhook_concurrency),
        lanes: Mutex::new(Lanes::new(Limits {
            per_origin: settings.origin_concurrency(),
            slow: settings.slow_concurrency(),
            parked_per_origin: PARKED_PER_ORIGIN,
            parked_in_all: PARKED_IN_ALL,
        })),
        ended: Notify::new(),
        shutdown: shutdown.clone(),
    });

    let relay = Relay::new(pool.clone(), bus.clone(), "tronpay-webhook-dispatcher relay");
    let waker = relay.waker();
    let relay_status = relay.status();
    let consumer_status = Arc::new(BusStatus::default());
    let mut handles = vec![tokio::spawn(relay.run(shutdown.clone()))];
    let queue = bus.queue("webhook-dispatcher", CALLBACK_DUE);
    let handler = Arc::clone(&dispatcher);
    // Enough messages in hand for both lanes to be full and one more to be
    // looked at: attempts run in the consumer's slots, and a full slow lane
    // must not keep a healthy destination's message from being received.
    let lanes = settings.webhook_concurrency + settings.slow_concurrency() + 1;
    let prefetch_bus = BusSettings {
        bus_prefetch: bus.bus_prefetch.max(u16::try_from(lanes).unwrap_or(u16::MAX)),
        ..bus
    };
    handles.push(tokio::spawn(run_consumer(
        prefetch_bus,
        queue,
        "tronpay-webhook-dispatcher".into(),
        move |incoming| {
            let dispatcher = Arc::clone(&handler);
            async move { dispatcher.handle(&incoming).await }
        },
        shutdown.clone(),
        Arc::clone(&consumer_status),
    )));

    let republish = Duration::from_secs(settings.webhook_republish_seconds);
    let mut stop = shutdown;
    handles.push(tokio::spawn(async move {
        loop {
            match pool.get().await {
                Ok(mut conn) => {
                    match deliveries::republish_due(&mut conn, republish, 500).await {
                        Ok(0) => {}
                        Ok(count) => {
                            tracing::debug!(count, "due deliveries republished");
                            waker.notify_one();
                        }
                        Err(error) => tracing::warn!(%error, "the delivery sweep failed"),
                    }
                    if configured.is_none()
                        && let Ok(stored) = deliveries::secrets(&mut conn).await
                    {
                        let parsed: Vec<WebhookSecret> = stored
                            .iter()
                            .filter_map(|text| WebhookSecret::parse(text).ok())
                            .collect();
                        if !parsed.is_empty()
                            && let Ok(mut current) = secrets.write()
                        {
                            *current = parsed;
                        }
                    }
                }
                Err(error) => tracing::warn!(%error, "the delivery sweep cannot reach the database"),
            }
            tokio::select! {
                _ = tokio::time::sleep(SWEEP_EVERY) => {}
                _ = stopped(&mut stop) => return,
            }
        }
    }));
    Ok(Running {
        consumer: consumer_status,
        relay: relay_status,
        handles,
        dispatcher,
    })
}

//! `tronpay-webhook-dispatcher`: delivers webhooks (PRODUCT §6).
//!
//! It consumes `callback.due`, claims one attempt at a time in PostgreSQL
//! (the delivery row is the source of truth), sends it signed per Standard
//! Webhooks, and records the outcome. A sweep republishes deliveries that are
//! due but whose message was lost; replicas share the queue and never send
//! the same attempt twice. Capacity is shared fairly between destinations
//! ([`lanes`]): one origin never holds every slot, and origins that time out
//! use a lane of their own.
//!
//! [`run`] is the whole service: it builds everything from a [`Config`] and
//! runs until shutdown. Its tasks are supervised
//! ([`tronpay_runtime::supervise`]): if the consumer, the sweep or the relay
//! ends any other way (an error retrying cannot cure, a panic), `/health`
//! turns `unhealthy` naming it and `run` returns the failure, so the process
//! exits non-zero and is restarted.

pub mod client;
pub mod deliver;
pub mod health;
pub mod lanes;
pub mod outcome;
pub mod settings;

use std::future::Future;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use anyhow::Context;
use tokio::sync::{Notify, Semaphore};
use tronpay_bus::{BusSettings, BusStatus, Relay, run_consumer};
use tronpay_db::{DbError, DbPool, DbSettings, deliveries, secrets};
use tronpay_domain::signing::WebhookSecret;
use tronpay_runtime::service::{Binary, Serving};
use tronpay_runtime::supervise::{Incurable, Tasks};
use tronpay_runtime::{ServiceConfig, Validate, stopped};

pub use settings::DispatcherSettings;
pub use tronpay_runtime::service::Running;

use crate::deliver::Dispatcher;
use crate::lanes::{Lanes, Limits, PARKED_IN_ALL, PARKED_PER_ORIGIN};
use crate::outcome::RetryRules;

/// The service's name: its binary, its database connections'
/// `application_name`, its log lines.
pub const NAME: &str = "tronpay-webhook-dispatcher";

/// Its command line (`--config`, `--bind`).
pub const BINARY: Binary = Binary::new(NAME, "tronpay webhook dispatcher", "DISPATCHER_BIND");

/// How often due deliveries are looked for and secrets reloaded.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// Everything the dispatcher reads at start, each part checked: `service` is
/// its own settings.
pub type Config = ServiceConfig<DispatcherSettings, DbSettings, BusSettings>;

impl Dispatcher {
    /// Waits for the attempts in flight to finish, at most a lease.
    async fn finish_attempts(&self) {
        let deadline = tokio::time::Instant::now() + self.timeout + Duration::from_secs(10);
        loop {
            let ended = self.ended.notified();
            tokio::pin!(ended);
            ended.as_mut().enable();
            if self.attempts_in_flight() == 0 || tokio::time::timeout_at(deadline, ended).await.is_err() {
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
    let mut stored = secrets::secrets(&mut conn).await?;
    if stored.is_empty() {
        let generated = WebhookSecret::generate().map_err(anyhow::Error::msg)?;
        stored = secrets::ensure_secret(&mut conn, generated.expose()).await?;
        tracing::info!("generated the webhook signing secret (show it with `tronpay webhooks secret`)");
    }
    stored
        .iter()
        .map(|text| WebhookSecret::parse(text).map_err(anyhow::Error::msg))
        .collect()
}

/// Builds the dispatcher from `config` on the current runtime: the pool,
/// the signing secrets, the `callback.due` consumer, the sweep, the outbox
/// relay, pool maintenance and the health endpoint on `DISPATCHER_BIND`.
/// [`Running::run_until`] then runs it: when it stops, the attempts still in
/// flight on their own tasks (started from a parked queue) finish and are
/// recorded — waited for at most a lease (the timeout + 10 s), after which
/// another dispatcher may make them again anyway. Errors: an invalid setting, a database unreachable at start (the secret
/// must be known before anything is signed), or the address cannot be
/// bound.
pub async fn start(config: Config) -> anyhow::Result<Running> {
    let Config {
        service: settings,
        db,
        bus,
    } = config;
    settings
        .validate()
        .map_err(anyhow::Error::msg)
        .context("invalid setting")?;
    let pool = DbPool::new(&db, NAME)?;
    let mut tasks = Tasks::new();
    let shutdown = tasks.shutdown();
    let bind = settings.dispatcher_bind.clone();
    let configured = settings.secret().map_err(anyhow::Error::msg)?;
    let secrets = Arc::new(RwLock::new(load_secrets(&pool, configured.as_ref()).await?));
    let policy = settings.policy().map_err(anyhow::Error::msg)?;
    let dispatcher = Arc::new(Dispatcher {
        pool: pool.clone(),
        http: client::build(&policy, settings.timeout()).map_err(anyhow::Error::msg)?,
        policy,
        rules: RetryRules {
            schedule: settings.schedule().map_err(anyhow::Error::msg)?,
            max_retry_after: Duration::from_secs(settings.webhook_max_retry_after_seconds),
        },
        timeout: settings.timeout(),
        secrets: Arc::clone(&secrets),
        in_flight: Semaphore::new(settings.webhook_concurrency),
        lanes: Mutex::new(Lanes::new(Limits {
            per_origin: settings.origin_concurrency(),
            first_contact: settings.first_contact_concurrency(),
            slow: settings.slow_concurrency(),
            parked_per_origin: PARKED_PER_ORIGIN,
            parked_in_all: PARKED_IN_ALL,
        })),
        ended: Notify::new(),
        shutdown: shutdown.clone(),
    });

    let relay = Relay::new(pool.clone(), bus.clone(), format!("{NAME} relay"));
    let waker = relay.waker();
    let relay_status = relay.status();
    let consumer_status = Arc::new(BusStatus::default());
    tasks.spawn("outbox relay", relay.run(shutdown.clone()));
    let queue = bus.queue(tronpay_bus::topology::Queue::DispatcherCallbackDue);
    let handler = Arc::clone(&dispatcher);
    // Enough messages in hand for both lanes to be full and one more to be
    // looked at: attempts run in the consumer's slots, and a full slow lane
    // must not keep a healthy destination's message from being received.
    let lanes = settings.webhook_concurrency + settings.slow_concurrency() + 1;
    let prefetch_bus = BusSettings {
        bus_prefetch: bus.bus_prefetch.max(u16::try_from(lanes).unwrap_or(u16::MAX)),
        ..bus
    };
    tasks.spawn(
        "callback.due consumer",
        run_consumer(
            prefetch_bus,
            queue,
            NAME.into(),
            move |incoming| {
                let dispatcher = Arc::clone(&handler);
                async move { dispatcher.handle(&incoming).await }
            },
            shutdown.clone(),
            Arc::clone(&consumer_status),
        ),
    );

    let republish = Duration::from_secs(settings.webhook_republish_seconds);
    let mut stop = shutdown;
    let sweep_pool = pool.clone();
    tasks.spawn("delivery sweep", async move {
        let pool = sweep_pool;
        let mut incurable = Incurable::default();
        loop {
            match pool.get().await {
                Ok(mut conn) => {
                    match deliveries::republish_due(&mut conn, republish, 500).await {
                        Ok(count) => {
                            incurable.succeeded();
                            if count > 0 {
                                tracing::debug!(count, "due deliveries republished");
                                waker.notify_one();
                            }
                        }
                        Err(error) if incurable.give_up(error.is_retryable()) => {
                            return Err::<(), DbError>(error);
                        }
                        Err(error) => tracing::warn!(%error, "the delivery sweep failed"),
                    }
                    if configured.is_none()
                        && let Ok(stored) = secrets::secrets(&mut conn).await
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
                _ = stopped(&mut stop) => return Ok(()),
            }
        }
    });
    tasks.spawn("pool maintenance", pool.clone().maintain(tasks.stopped()));
    tronpay_runtime::metrics::install();
    tasks.spawn(
        "metrics sampler",
        tronpay_db::observe::sample(
            pool.clone(),
            &[
                tronpay_db::observe::Gauges::Deliveries,
                tronpay_db::observe::Gauges::Outbox,
            ],
            tasks.stopped(),
        ),
    );
    let (server, port) = health::server(&bind, pool, consumer_status, relay_status, tasks.health())?;
    let running = Running::new(NAME, Serving::Health, tasks, port, server.handle(), server);
    Ok(running.finishing(async move { dispatcher.finish_attempts().await }))
}

/// The whole dispatcher: [`start`], then [`Running::run_until`] `shutdown`.
/// Logs `tronpay-webhook-dispatcher health endpoint listening` with the
/// port. Errors: what `start` refuses, or the failure of a task.
pub async fn run(config: Config, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    let bind = config.service.dispatcher_bind.clone();
    let running = start(config).await?;
    tracing::info!(bind = %bind, port = running.port(), "tronpay-webhook-dispatcher health endpoint listening");
    Ok(running.run_until(shutdown).await?)
}

//! The API's background work: applying `payment.detected`, the expiry sweep,
//! the reconciler, and the outbox relay that publishes `callback.due`.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tronpay_bus::{BusSettings, BusStatus, Relay, run_consumer, stopped};
use tronpay_db::DbPool;
use tronpay_domain::events::PAYMENT_DETECTED;
use tronpay_domain::matching::MatchRules;

use crate::{chain_events, expiry};

/// How often the expiry sweep runs.
const SWEEP_EVERY: Duration = Duration::from_secs(2);
/// A confirmed transfer unapplied for this long is applied by the reconciler.
const RECONCILE_AFTER_SECONDS: i64 = 30;
/// Batches of `payment.detected` applied at once (each holds a connection).
const EVENT_WORKERS: usize = 4;

/// Handles on the running workers and their broker status.
pub struct Workers {
    pub relay: Arc<BusStatus>,
    pub consumer: Arc<BusStatus>,
    handles: Vec<JoinHandle<()>>,
}

impl Workers {
    /// Starts the workers; they run until `shutdown` turns true. `rules`
    /// come from the API's settings ([`crate::ApiSettings::match_rules`]).
    pub fn start(pool: DbPool, bus: BusSettings, rules: MatchRules, shutdown: watch::Receiver<bool>) -> Self {
        let relay = Relay::new(pool.clone(), bus.clone(), "tronpay-api relay");
        let waker = relay.waker();
        let relay_status = relay.status();
        let consumer_status = Arc::new(BusStatus::default());
        let mut handles = vec![tokio::spawn(relay.run(shutdown.clone()))];

        let queue = bus.queue("api", PAYMENT_DETECTED);
        let handler_waker = Arc::clone(&waker);
        let batcher = chain_events::Batcher::start(
            pool.clone(),
            Arc::new(chain_events::Attempts::default()),
            rules,
            EVENT_WORKERS,
            usize::from(bus.bus_prefetch),
        );
        handles.push(tokio::spawn(run_consumer(
            bus,
            queue,
            "tronpay-api".into(),
            move |incoming| {
                let batcher = batcher.clone();
                let waker = Arc::clone(&handler_waker);
                async move {
                    if batcher.handle(incoming).await? {
                        waker.notify_one();
                    }
                    Ok(())
                }
            },
            shutdown.clone(),
            Arc::clone(&consumer_status),
        )));

        let mut stop = shutdown;
        handles.push(tokio::spawn(async move {
            let mut rounds = 0u64;
            loop {
                rounds += 1;
                // Every 10 s: transfers whose event was lost or given up on.
                if rounds.is_multiple_of(5) {
                    match chain_events::reconcile(&pool, &rules, RECONCILE_AFTER_SECONDS).await {
                        Ok((_, true)) => waker.notify_one(),
                        Ok(_) => {}
                        Err(error) => tracing::warn!(%error, "reconciling transfers failed; retrying"),
                    }
                }
                // Every 10 min: forget old message ids.
                if rounds.is_multiple_of(300)
                    && let Ok(mut conn) = pool.get().await
                {
                    let cutoff = chrono::Utc::now().naive_utc() - chrono::TimeDelta::days(7);
                    let _ = tronpay_db::outbox::prune_processed(&mut conn, cutoff).await;
                }
                match expiry::sweep(&pool).await {
                    Ok((expired, enqueued)) => {
                        if expired > 0 {
                            tracing::info!(expired, "payments expired");
                        }
                        if enqueued {
                            waker.notify_one();
                        }
                        // A full batch: more may be due right away.
                        if expired >= 500 {
                            continue;
                        }
                    }
                    Err(error) => tracing::warn!(%error, "expiry sweep failed; retrying"),
                }
                tokio::select! {
                    _ = tokio::time::sleep(SWEEP_EVERY) => {}
                    _ = stopped(&mut stop) => return,
                }
            }
        }));
        Self {
            relay: relay_status,
            consumer: consumer_status,
            handles,
        }
    }

    /// Waits for every worker to finish (after `shutdown` turned true).
    pub async fn join(self) {
        for handle in self.handles {
            let _ = handle.await;
        }
    }
}

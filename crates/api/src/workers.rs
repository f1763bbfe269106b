//! The API's background work: applying `payment.detected`, the expiry sweep,
//! the reconciler, and the outbox relay that publishes `callback.due`. Each
//! is a supervised task ([`tronpay_runtime::supervise`]): the sweep and the
//! relay give up on a database error retrying cannot cure (a missing table,
//! a refused privilege) after a few tries, which fails the API.

use std::sync::Arc;
use std::time::Duration;

use tronpay_bus::{BusSettings, BusStatus, Relay, run_consumer};
use tronpay_db::{DbError, DbPool};
use tronpay_domain::matching::MatchRules;
use tronpay_runtime::stopped;
use tronpay_runtime::supervise::{Incurable, Tasks};

use crate::{chain_events, expiry};

/// How often the expiry sweep runs.
const SWEEP_EVERY: Duration = Duration::from_secs(2);
/// A confirmed transfer unapplied for this long is applied by the reconciler.
const RECONCILE_AFTER_SECONDS: i64 = 30;
/// Batches of `payment.detected` applied at once (each holds a connection).
const EVENT_WORKERS: usize = 4;

/// The broker status of the running workers.
pub struct Workers {
    pub relay: Arc<BusStatus>,
    pub consumer: Arc<BusStatus>,
}

/// How long after its payment ended a raised amount and a pool address stay
/// with it (`UNIQUE_AMOUNT_RELEASE_GRACE_SECONDS`,
/// `POOL_RELEASE_GRACE_SECONDS`, in seconds), so a late transfer still finds
/// that payment and no other.
#[derive(Debug, Clone, Copy)]
pub struct ReleaseGrace {
    pub amounts_seconds: u64,
    pub pool_seconds: u64,
}

impl Workers {
    /// Spawns the workers on `tasks` (the outbox relay, the
    /// `payment.detected` consumer and its batch workers, the expiry sweep
    /// with the reconciler); they run until the tasks' stop flag turns true.
    /// `rules` come from the API's settings
    /// ([`crate::ApiSettings::match_rules`]), `grace` from its
    /// `…_RELEASE_GRACE_SECONDS`.
    pub fn start(pool: DbPool, bus: BusSettings, rules: MatchRules, grace: ReleaseGrace, tasks: &mut Tasks) -> Self {
        let shutdown = tasks.shutdown();
        let relay = Relay::new(pool.clone(), bus.clone(), "tronpay-api relay");
        let waker = relay.waker();
        let relay_status = relay.status();
        let consumer_status = Arc::new(BusStatus::default());
        tasks.spawn("outbox relay", relay.run(shutdown.clone()));

        let queue = bus.queue(tronpay_bus::topology::Queue::ApiPaymentDetected);
        let handler_waker = Arc::clone(&waker);
        let batcher = chain_events::Batcher::start(
            pool.clone(),
            Arc::new(chain_events::Attempts::default()),
            rules,
            EVENT_WORKERS,
            usize::from(bus.bus_prefetch),
            tasks,
        );
        tasks.spawn(
            "payment.detected consumer",
            run_consumer(
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
            ),
        );

        let mut stop = shutdown;
        tasks.spawn("expiry sweep", async move {
            // Each job gives up on its own: the expiry sweep succeeding says
            // nothing about the reconciler's statements.
            let (mut sweep_incurable, mut reconcile_incurable) = (Incurable::default(), Incurable::default());
            let mut rounds = 0u64;
            // Addresses the reconciler, and payments the sweep, found they
            // cannot apply or expire (see `reconcile` and `expiry::sweep`).
            let mut skipped = crate::skips::Skips::default();
            let mut unexpirable = crate::skips::Skips::default();
            // Payments whose idempotency keys were cleared, up to this
            // creation time; a start looks two days back (older keys are
            // forgotten when they are used again).
            let mut keys_pruned_until =
                chrono::Utc::now().naive_utc() - chrono::TimeDelta::hours(tronpay_db::idempotency::KEEP_HOURS + 48);
            loop {
                rounds += 1;
                // Every 10 s: transfers whose event was lost or given up on.
                if rounds.is_multiple_of(5) {
                    match chain_events::reconcile(&pool, &rules, RECONCILE_AFTER_SECONDS, &mut skipped).await {
                        Ok((_, enqueued)) => {
                            reconcile_incurable.succeeded();
                            if enqueued {
                                waker.notify_one();
                            }
                        }
                        Err(error) if reconcile_incurable.give_up(error.is_retryable()) => {
                            return Err::<(), DbError>(error);
                        }
                        Err(error) => tracing::warn!(%error, "reconciling transfers failed; retrying"),
                    }
                }
                // Every 10 s: raised amounts and pool addresses whose payment
                // ended a grace period ago can be handed out again.
                if rounds.is_multiple_of(5)
                    && let Ok(mut conn) = pool.get().await
                {
                    match tronpay_db::receiving::release_amounts(&mut conn, grace.amounts_seconds).await {
                        Ok(0) => {}
                        Ok(released) => tracing::info!(released, "raised amounts released"),
                        Err(error) => tracing::warn!(%error, "releasing raised amounts failed"),
                    }
                    match tronpay_db::receiving::release_pool(&mut conn, grace.pool_seconds).await {
                        Ok(0) => {}
                        Ok(released) => tracing::info!(released, "pool addresses returned to the pool"),
                        Err(error) => tracing::warn!(%error, "returning pool addresses failed"),
                    }
                }
                // Every round: fold the payment count deltas into their
                // totals, so /health and /stats read a handful of rows.
                if let Ok(mut conn) = pool.get().await
                    && let Err(error) = tronpay_db::stats::fold_status_counts(&mut conn).await
                {
                    tracing::warn!(%error, "folding the payment counts failed");
                }
                // Every 10 min: forget old message ids, and idempotency
                // records past their 24 hours.
                if rounds.is_multiple_of(300)
                    && let Ok(mut conn) = pool.get().await
                {
                    let cutoff = chrono::Utc::now().naive_utc() - chrono::TimeDelta::days(7);
                    let _ = tronpay_db::outbox::prune_processed(&mut conn, cutoff).await;
                    match tronpay_db::idempotency::prune(&mut conn, keys_pruned_until, 1_000).await {
                        Ok((forgotten, until)) => {
                            // The next round starts a minute before this
                            // one's end: slow commits are not missed.
                            keys_pruned_until = until - chrono::TimeDelta::minutes(1);
                            if forgotten > 0 {
                                tracing::info!(forgotten, "idempotency keys older than 24 h forgotten");
                            }
                        }
                        Err(error) => tracing::warn!(%error, "forgetting old idempotency keys failed"),
                    }
                }
                match expiry::sweep(&pool, &mut unexpirable).await {
                    Ok((expired, enqueued)) => {
                        sweep_incurable.succeeded();
                        if expired > 0 {
                            crate::metrics::expired(expired);
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
                    Err(error) if sweep_incurable.give_up(error.is_retryable()) => return Err(error),
                    Err(error) => tracing::warn!(%error, "expiry sweep failed; retrying"),
                }
                tokio::select! {
                    _ = tokio::time::sleep(SWEEP_EVERY) => {}
                    _ = stopped(&mut stop) => return Ok(()),
                }
            }
        });
        Self {
            relay: relay_status,
            consumer: consumer_status,
        }
    }
}

//! The outbox relay: publishes events written to the `outbox` table (with
//! confirms) and marks them published in the same transaction that locked
//! them. If the process dies after the broker confirmed but before the commit,
//! the events are published again; consumers are idempotent. A broker or a
//! database that is down is waited for; a database error retrying cannot
//! cure (the outbox table missing, a privilege refused) ends the relay after
//! a few tries, so that its service reports it instead of looking healthy.

use std::sync::Arc;
use std::time::{Duration, Instant};

use diesel_async::AsyncConnection;
use tokio::sync::{Notify, watch};
use tronpay_db::{DbError, DbPool, outbox};
use tronpay_runtime::stopped;
use tronpay_runtime::supervise::Incurable;

use crate::BusError;
use crate::publisher::{Outgoing, Publisher};
use crate::settings::{BusSettings, BusStatus, reconnect_delay};

/// Events published per transaction.
const BATCH: i64 = 500;
/// How often the outbox is polled when nobody wakes the relay.
const POLL: Duration = Duration::from_millis(250);
/// Published events are kept this long (for inspection), then deleted.
const KEEP_PUBLISHED: Duration = Duration::from_secs(24 * 3600);

#[derive(Debug, thiserror::Error)]
enum RelayError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    Bus(#[from] BusError),
}

impl From<diesel::result::Error> for RelayError {
    fn from(error: diesel::result::Error) -> Self {
        Self::Db(error.into())
    }
}

pub struct Relay {
    pool: DbPool,
    settings: BusSettings,
    name: String,
    wake: Arc<Notify>,
    status: Arc<BusStatus>,
}

impl Relay {
    pub fn new(pool: DbPool, settings: BusSettings, name: impl Into<String>) -> Self {
        Self {
            pool,
            settings,
            name: name.into(),
            wake: Arc::new(Notify::new()),
            status: Arc::new(BusStatus::default()),
        }
    }

    /// Notify this after committing an outbox row to publish it at once.
    pub fn waker(&self) -> Arc<Notify> {
        Arc::clone(&self.wake)
    }

    pub fn status(&self) -> Arc<BusStatus> {
        Arc::clone(&self.status)
    }

    /// Publishes until `shutdown` turns true (`Ok`). Waits out a broker or
    /// a database that is down; returns the database error that retrying
    /// did not cure after [`tronpay_runtime::supervise::INCURABLE_TRIES`]
    /// tries in a row (the outbox table missing, a privilege refused, a
    /// statement the database rejects).
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) -> Result<(), DbError> {
        let mut publisher: Option<Publisher> = None;
        let mut failures = 0u32;
        let mut incurable = Incurable::default();
        let mut pruned = Instant::now();
        while !*shutdown.borrow() {
            if !publisher.as_ref().is_some_and(Publisher::is_connected) {
                match Publisher::connect(&self.settings, &self.name).await {
                    Ok(connected) => {
                        publisher = Some(connected);
                        self.status.set_connected();
                        failures = 0;
                    }
                    Err(error) => {
                        self.status.set_failed(&error);
                        tracing::warn!(%error, "outbox relay cannot reach RabbitMQ; events wait in the outbox");
                        if self.pause(reconnect_delay(failures), &mut shutdown).await {
                            break;
                        }
                        failures = failures.saturating_add(1);
                        continue;
                    }
                }
            }
            let Some(connected) = publisher.as_ref() else { continue };
            match self.drain(connected).await {
                Ok(published) => {
                    incurable.succeeded();
                    if published == BATCH as usize {
                        continue;
                    }
                    failures = 0;
                }
                Err(error) => {
                    match error {
                        RelayError::Bus(error) => {
                            tracing::warn!(%error, "outbox relay failed; retrying");
                            self.status.set_failed(&error);
                            publisher = None;
                        }
                        // The supervisor logs it and fails the service.
                        RelayError::Db(error) if incurable.give_up(error.is_retryable()) => return Err(error),
                        RelayError::Db(error) => tracing::warn!(%error, "outbox relay failed; retrying"),
                    }
                    failures = failures.saturating_add(1);
                    if self.pause(reconnect_delay(failures), &mut shutdown).await {
                        break;
                    }
                    continue;
                }
            }
            if pruned.elapsed() > Duration::from_secs(600) {
                pruned = Instant::now();
                self.prune().await;
            }
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(POLL) => {}
                _ = stopped(&mut shutdown) => break,
            }
        }
        if let Some(publisher) = publisher {
            // Publish what the service committed while stopping.
            let _ = self.drain(&publisher).await;
            publisher.close().await;
        }
        Ok(())
    }

    /// True when `shutdown` fired during the pause.
    async fn pause(&self, delay: Duration, shutdown: &mut watch::Receiver<bool>) -> bool {
        tokio::select! {
            _ = tokio::time::sleep(delay) => false,
            _ = stopped(shutdown) => true,
        }
    }

    /// Publishes one batch; returns how many events it published.
    async fn drain(&self, publisher: &Publisher) -> Result<usize, RelayError> {
        let mut conn = self.pool.get().await?;
        conn.transaction::<_, RelayError, _>(async |conn| {
            let rows = outbox::claim(conn, BATCH).await?;
            if rows.is_empty() {
                return Ok(0);
            }
            let messages: Vec<Outgoing> = rows
                .iter()
                .map(|row| Outgoing {
                    routing_key: row.routing_key.clone(),
                    message_id: row.message_id.to_string(),
                    payload: row.payload.to_string().into_bytes(),
                })
                .collect();
            publisher.publish(&messages).await?;
            let ids: Vec<i64> = rows.iter().map(|row| row.id).collect();
            outbox::mark_published(conn, &ids).await?;
            Ok(rows.len())
        })
        .await
    }

    async fn prune(&self) {
        let cutoff = chrono_cutoff(KEEP_PUBLISHED);
        if let Ok(mut conn) = self.pool.get().await
            && let Err(error) = outbox::prune(&mut conn, cutoff).await
        {
            tracing::warn!(%error, "could not prune published outbox rows");
        }
    }
}

fn chrono_cutoff(age: Duration) -> chrono::NaiveDateTime {
    let age = chrono::TimeDelta::from_std(age).unwrap_or(chrono::TimeDelta::zero());
    chrono::Utc::now().naive_utc() - age
}

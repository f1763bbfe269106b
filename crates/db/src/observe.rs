//! Gauges read from the database for `/metrics` (PRODUCT §12): what no
//! single process sees as it happens — the outbox backlog, the chain
//! heights, the webhook backlog and the dead deliveries, transfers waiting
//! for a final block — sampled every [`EVERY`] by each service that reports
//! them ([`sample`]). Every query reads a partial index or one row, never a
//! whole table. Each replica reports the same values: alert on their
//! `max()`, never their sum.

use std::time::Duration;

use diesel::dsl::{count_star, min};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use crate::DbPool;
use crate::error::DbError;

/// How often [`sample`] reads.
pub const EVERY: Duration = Duration::from_secs(5);

/// What a service samples.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gauges {
    /// `tronpay_outbox_backlog` (events not yet published) and
    /// `tronpay_outbox_oldest_age_seconds`.
    Outbox,
    /// `tronpay_chain_head_block`, `tronpay_chain_final_block`,
    /// `tronpay_chain_cursor_block`, `tronpay_chain_lag_blocks` (final −
    /// cursor) and `tronpay_chain_head_block_timestamp_seconds` (Unix time
    /// of the head block), from `chain_state`.
    Chain,
    /// `tronpay_webhook_backlog` (pending or being sent),
    /// `tronpay_webhook_deliveries_dead` (dead or failed) and
    /// `tronpay_transfers_detected_oldest_age_seconds` (the oldest transfer
    /// seen but not final yet: payments stuck in `detected`).
    Deliveries,
}

/// Seconds from `at` (UTC) to now, 0 for `None`.
fn age(at: Option<chrono::NaiveDateTime>) -> f64 {
    at.map_or(0.0, |at| {
        (chrono::Utc::now().naive_utc() - at)
            .to_std()
            .map_or(0.0, |age| age.as_secs_f64())
    })
}

/// Reads and sets the gauges of `what`.
pub async fn read(conn: &mut AsyncPgConnection, what: Gauges) -> Result<(), DbError> {
    use crate::schema::{outbox, transfers};
    match what {
        Gauges::Outbox => {
            let (backlog, oldest): (i64, Option<chrono::NaiveDateTime>) = outbox::table
                .filter(outbox::published_at.is_null())
                .select((count_star(), min(outbox::created_at)))
                .first(conn)
                .await?;
            metrics::gauge!("tronpay_outbox_backlog").set(backlog as f64);
            metrics::gauge!("tronpay_outbox_oldest_age_seconds").set(age(oldest));
        }
        Gauges::Chain => {
            let Some(chain) = crate::chain::state(conn).await? else {
                return Ok(());
            };
            let block = |value: Option<i64>| value.map_or(0.0, |block| block as f64);
            metrics::gauge!("tronpay_chain_head_block").set(block(chain.head_block));
            metrics::gauge!("tronpay_chain_final_block").set(block(chain.final_block));
            metrics::gauge!("tronpay_chain_cursor_block").set(chain.cursor_block as f64);
            metrics::gauge!("tronpay_chain_lag_blocks")
                .set(block(chain.final_block.map(|last| (last - chain.cursor_block).max(0))));
            metrics::gauge!("tronpay_chain_head_block_timestamp_seconds")
                .set(chain.head_block_time.map_or(0.0, |at| at.and_utc().timestamp() as f64));
        }
        Gauges::Deliveries => {
            metrics::gauge!("tronpay_webhook_backlog").set(crate::deliveries::backlog(conn).await? as f64);
            metrics::gauge!("tronpay_webhook_deliveries_dead")
                .set(crate::deliveries::unsuccessful_count(conn).await? as f64);
            let oldest: Option<chrono::NaiveDateTime> = transfers::table
                .filter(transfers::status.eq("detected"))
                .select(min(transfers::seen_at))
                .first(conn)
                .await?;
            metrics::gauge!("tronpay_transfers_detected_oldest_age_seconds").set(age(oldest));
        }
    }
    Ok(())
}

/// Samples `what` every [`EVERY`] until `shutdown` resolves, and sets
/// `tronpay_database_up` to 1 when every read answered, else 0. A read that
/// fails (the database is down) leaves its gauges as they were and is
/// logged at debug level.
pub async fn sample(pool: DbPool, what: &'static [Gauges], shutdown: impl std::future::Future<Output = ()>) {
    let mut ticker = tokio::time::interval(EVERY);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => return,
            _ = ticker.tick() => {
                let Ok(mut conn) = pool.get_within(Duration::from_secs(2)).await else {
                    metrics::gauge!("tronpay_database_up").set(0.0);
                    continue;
                };
                let mut answered = true;
                for gauges in what {
                    if let Err(error) = read(&mut conn, *gauges).await {
                        answered = false;
                        tracing::debug!(%error, ?gauges, "metrics: a gauge could not be read");
                    }
                }
                metrics::gauge!("tronpay_database_up").set(if answered { 1.0 } else { 0.0 });
            }
        }
    }
}

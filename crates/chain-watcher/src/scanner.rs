//! The active scanner: follows the chain block by block.
//!
//! Every final block is processed exactly once and in order: its watched
//! transfers, their `payment.detected` events (outbox) and the cursor move are
//! one transaction, so a crash neither skips nor double-counts a block. While
//! behind it fetches several blocks at once and still commits them in order.
//! Blocks above the final height are scanned once each for early detection.
//! Upstream faults back off and retry the same block; a block is never
//! skipped. So does a database that is down; a database error retrying
//! cannot cure (a missing table or column, a refused privilege) ends the
//! scanner after a few tries ([`Stop::Failed`]), which fails the watcher
//! (unhealthy, non-zero exit) so that a standby takes the role over.

use std::ops::RangeInclusive;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use diesel_async::AsyncConnection;
use futures_util::{FutureExt, StreamExt};
use tokio::sync::{Notify, watch};
use tronpay_db::chain::{self, FinalBlock};
use tronpay_db::error::Conflict;
use tronpay_db::{DbError, DbPool, payments};
use tronpay_domain::{Transfer, TronAddress};
use tronpay_runtime::stopped;
use tronpay_runtime::supervise::Incurable;
use tronpay_tron::{NodeClient, NodeError, TxInfo, usdt_transfers};

use crate::leader::Leadership;
use crate::settings::WatcherSettings;
use crate::start;

/// Most final blocks committed in one transaction while catching up.
const COMMIT_BATCH: usize = 50;

/// What the health endpoint shows about the scanner (whether it failed is
/// the supervisor's to say: [`tronpay_runtime::supervise::TaskHealth`]).
#[derive(Debug, Default)]
pub struct ScanStatus {
    pub leader: AtomicBool,
    pub head: AtomicI64,
    pub final_block: AtomicI64,
    pub cursor: AtomicI64,
}

/// Why scanning stopped.
#[derive(Debug)]
pub enum Stop {
    Shutdown,
    /// The lock session died or another scanner moved the cursor.
    LostLeadership(String),
    /// A database error that retrying did not cure (a missing table or
    /// column, a refused privilege, a statement the database rejects): this
    /// replica cannot scan, and must not look as if it could.
    Failed(anyhow::Error),
}

pub struct Scanner {
    pub pool: DbPool,
    pub node: Arc<NodeClient>,
    pub settings: WatcherSettings,
    pub usdt: TronAddress,
    pub relay: Arc<Notify>,
    pub status: Arc<ScanStatus>,
    pub instance: String,
    /// Head minus final block at the last full poll (−1: not known yet).
    pub learned_lag: AtomicI64,
    pub polls_since_learning: AtomicU32,
}

/// The chain as last polled.
#[derive(Debug, Clone, Copy)]
struct Heads {
    head: u64,
    head_time_ms: i64,
    final_block: u64,
    final_time_ms: i64,
}

/// Polls between two readings of the head while only the final block is
/// polled (detection off), to re-learn the head-to-final lag.
const RELEARN_LAG_EVERY: u32 = 100;

impl Scanner {
    /// Scans while holding `leadership`.
    pub async fn run(&self, mut leadership: Leadership, shutdown: &mut watch::Receiver<bool>) -> Stop {
        self.status.leader.store(true, Ordering::Relaxed);
        let stop = self.scan(&mut leadership, shutdown).await;
        self.status.leader.store(false, Ordering::Relaxed);
        stop
    }

    async fn scan(&self, leadership: &mut Leadership, shutdown: &mut watch::Receiver<bool>) -> Stop {
        let Some(heads) = self.poll(shutdown).await else {
            return Stop::Shutdown;
        };
        let mut incurable = Incurable::default();
        let state = loop {
            match self.cursor_or_start(&heads, shutdown).await {
                Ok(Some(state)) => break state,
                Ok(None) => return Stop::Shutdown,
                Err(error) if incurable.give_up(error.is_retryable()) => {
                    return Stop::Failed(anyhow::Error::new(error).context("reading the chain cursor"));
                }
                Err(error) => {
                    tracing::warn!(%error, "cannot read the chain cursor; retrying");
                    if self.pause(Duration::from_secs(1), shutdown).await {
                        return Stop::Shutdown;
                    }
                }
            }
        };
        self.publish_heads(&heads).await;
        tracing::info!(
            cursor = state.cursor_block,
            "scanning from block {}",
            state.cursor_block + 1
        );
        let mut cursor = u64::try_from(state.cursor_block).unwrap_or(0);
        let mut tip = u64::try_from(state.tip_block).unwrap_or(0).max(cursor);
        let mut checked = Instant::now();
        let mut heads = heads;
        // Polls in a row that found no new final block: the wait grows, so a
        // stalled chain is not polled in a tight loop.
        let mut stale_polls = 0u32;
        loop {
            if *shutdown.borrow() {
                return Stop::Shutdown;
            }
            if checked.elapsed() > Duration::from_secs(2) {
                checked = Instant::now();
                if !leadership.alive().await {
                    return Stop::LostLeadership("the scanner lock session died".into());
                }
            }
            if cursor < heads.final_block {
                let last = heads.final_block.min(cursor + self.settings.catchup_batch);
                match self.catch_up(cursor + 1..=last, &heads, shutdown).await {
                    Ok(reached) => cursor = reached,
                    Err(stop) => return stop,
                }
                tip = tip.max(cursor);
                self.status
                    .cursor
                    .store(i64::try_from(cursor).unwrap_or(i64::MAX), Ordering::Relaxed);
                if cursor < heads.final_block {
                    // A long catch-up keeps the view of the chain current;
                    // a failed poll is recorded and does not stop it.
                    match self.poll_once().await {
                        Ok(polled) => {
                            heads = polled;
                            self.publish_heads(&heads).await;
                        }
                        Err(error) => self.record_error(&error).await,
                    }
                    continue;
                }
            }

            if self.settings.detect_unconfirmed && tip < heads.head {
                tip = self.scan_tip(tip + 1..=heads.head).await.unwrap_or(tip);
            }

            // Sleep until just after the next block is due, at most the
            // polling interval.
            let now_ms = chrono::Utc::now().timestamp_millis();
            let due_ms = heads
                .head_time_ms
                .saturating_add(i64::try_from(self.settings.block_interval_ms).unwrap_or(3_000))
                .saturating_add(150);
            // A block that is late is polled for again at a tenth of the block
            // time, not in a tight loop.
            let shortest = (self.settings.block_interval_ms / 10)
                .max(100)
                .saturating_mul(1 << stale_polls.min(8));
            let longest = Duration::from_secs(self.settings.polling_interval_seconds);
            let wait = Duration::from_millis(u64::try_from(due_ms - now_ms).unwrap_or(0))
                .max(Duration::from_millis(shortest))
                .min(longest);
            if self.pause(wait, shutdown).await {
                return Stop::Shutdown;
            }
            match self.poll(shutdown).await {
                Some(polled) => {
                    stale_polls = if polled.final_block > heads.final_block {
                        0
                    } else {
                        stale_polls.saturating_add(1)
                    };
                    heads = polled;
                }
                None => return Stop::Shutdown,
            }
        }
    }

    /// The stored cursor, or on a first start a new one at
    /// `SCAN_START_BLOCK` or [`start::first_block`]; `None` on shutdown.
    async fn cursor_or_start(
        &self,
        heads: &Heads,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<Option<chain::ChainState>, DbError> {
        let oldest = {
            let mut conn = self.pool.get().await?;
            if let Some(state) = chain::state(&mut conn).await? {
                return Ok(Some(state));
            }
            payments::oldest_pending(&mut conn).await?
        };
        let first = match self.settings.scan_start_block {
            Some(first) => first,
            None => {
                let mut failures = 0u32;
                let chain = start::ChainTop {
                    final_block: heads.final_block,
                    final_time_ms: heads.final_time_ms,
                    block_interval_ms: self.settings.block_interval_ms,
                };
                loop {
                    match start::first_block(
                        &self.node,
                        &chain,
                        oldest.as_ref(),
                        self.settings.scan_max_lookback_seconds,
                    )
                    .await
                    {
                        Ok(first) => break first,
                        Err(error) => {
                            let delay = self.node.backoff(failures, &error);
                            failures = failures.saturating_add(1);
                            tracing::warn!(%error, ?delay, "finding the first block to scan failed; retrying");
                            if self.pause(delay, shutdown).await {
                                return Ok(None);
                            }
                        }
                    }
                }
            }
        };
        let mut conn = self.pool.get().await?;
        chain::init(&mut conn, i64::try_from(first).unwrap_or(i64::MAX))
            .await
            .map(Some)
    }

    /// True when `shutdown` fired during the pause.
    async fn pause(&self, delay: Duration, shutdown: &mut watch::Receiver<bool>) -> bool {
        tokio::select! {
            _ = tokio::time::sleep(delay) => false,
            _ = stopped(shutdown) => true,
        }
    }

    /// Polls the head and the final block, retrying with backoff until it
    /// succeeds; `None` on shutdown.
    async fn poll(&self, shutdown: &mut watch::Receiver<bool>) -> Option<Heads> {
        let mut failures = 0u32;
        loop {
            match self.poll_once().await {
                Ok(heads) => {
                    self.publish_heads(&heads).await;
                    return Some(heads);
                }
                Err(error) => {
                    let delay = self.node.backoff(failures, &error);
                    failures = failures.saturating_add(1);
                    tracing::warn!(%error, ?delay, "polling the node failed; backing off");
                    self.record_error(&error).await;
                    if self.pause(delay, shutdown).await {
                        return None;
                    }
                }
            }
        }
    }

    /// Reads the head and the final block. With detection off and finality by
    /// solidification, only the final block is needed: the head is then
    /// estimated from the lag learned on the last full poll, which saves a
    /// call per block and still times the next poll right after the next
    /// block becomes final.
    async fn poll_once(&self) -> Result<Heads, NodeError> {
        let solid_only = self.settings.confirmations.is_none() && !self.settings.detect_unconfirmed;
        let lag = self.learned_lag.load(Ordering::Relaxed);
        let polls = self.polls_since_learning.fetch_add(1, Ordering::Relaxed);
        if solid_only && lag >= 0 && polls < RELEARN_LAG_EVERY {
            let solid = self.node.solid_block().await?;
            let (number, time) = (solid.number().unwrap_or(0), solid.timestamp_ms().unwrap_or(0));
            let lag_blocks = u64::try_from(lag).unwrap_or(0);
            let interval = i64::try_from(self.settings.block_interval_ms).unwrap_or(3_000);
            return Ok(Heads {
                head: number + lag_blocks,
                head_time_ms: time.saturating_add(lag.saturating_mul(interval)),
                final_block: number,
                final_time_ms: time,
            });
        }
        self.polls_since_learning.store(0, Ordering::Relaxed);
        let head = self.node.now_block().await?;
        let head_number = head.number().unwrap_or(0);
        let head_time = head.timestamp_ms().unwrap_or(0);
        let (final_block, final_time_ms) = match self.settings.confirmations {
            Some(confirmations) => (head_number.saturating_sub(confirmations), 0),
            None => {
                let solid = self.node.solid_block().await?;
                (solid.number().unwrap_or(0), solid.timestamp_ms().unwrap_or(0))
            }
        };
        let final_block = final_block.min(head_number);
        self.learned_lag.store(
            i64::try_from(head_number - final_block).unwrap_or(-1),
            Ordering::Relaxed,
        );
        Ok(Heads {
            head: head_number,
            head_time_ms: head_time,
            final_block,
            final_time_ms,
        })
    }

    async fn publish_heads(&self, heads: &Heads) {
        self.status
            .head
            .store(i64::try_from(heads.head).unwrap_or(i64::MAX), Ordering::Relaxed);
        self.status
            .final_block
            .store(i64::try_from(heads.final_block).unwrap_or(i64::MAX), Ordering::Relaxed);
        let time = |ms: i64| {
            chrono::DateTime::from_timestamp_millis(ms)
                .filter(|_| ms > 0)
                .map(|time| time.naive_utc())
        };
        let height = |number: u64| i64::try_from(number).unwrap_or(i64::MAX);
        // An estimated head (detection off) is the final block plus the
        // lag learned on the last full poll, dated accordingly.
        let Some(head_time) = time(heads.head_time_ms) else {
            return;
        };
        let polled = chain::Polled {
            head: (height(heads.head), head_time),
            final_block: (height(heads.final_block), time(heads.final_time_ms)),
            block_interval_ms: i32::try_from(self.settings.block_interval_ms).unwrap_or(i32::MAX),
            node_stall_seconds: i32::try_from(self.settings.node_stall_seconds).unwrap_or(i32::MAX),
            leader: &self.instance,
        };
        if let Ok(mut conn) = self.pool.get().await
            && let Err(error) = chain::record_poll(&mut conn, &polled).await
        {
            tracing::debug!(%error, "could not record the poll");
        }
    }

    async fn record_error(&self, error: &NodeError) {
        if let Ok(mut conn) = self.pool.get().await {
            let _ = chain::record_error(&mut conn, &error.to_string(), &self.instance).await;
        }
    }

    /// Fetches one block's receipts, retrying until it succeeds; `None` on
    /// shutdown.
    async fn fetch(&self, number: u64, shutdown: &watch::Receiver<bool>) -> Option<Vec<TxInfo>> {
        let mut shutdown = shutdown.clone();
        let mut failures = 0u32;
        loop {
            match self.node.tx_infos(number).await {
                Ok(infos) => return Some(infos),
                Err(error) => {
                    let delay = self.node.backoff(failures, &error);
                    failures = failures.saturating_add(1);
                    tracing::warn!(block = number, %error, ?delay, "fetching a block failed; retrying it");
                    self.record_error(&error).await;
                    if self.pause(delay, &mut shutdown).await {
                        return None;
                    }
                }
            }
        }
    }

    /// The USDT transfers of a block's receipts and the block's time (when
    /// it has any receipt to date it); malformed logs are logged and skipped.
    fn found(&self, infos: &[TxInfo], number: u64) -> (Vec<Transfer>, Option<i64>) {
        let (transfers, skipped) = usdt_transfers(infos, &self.usdt);
        for skip in skipped {
            tracing::warn!(block = number, txid = %skip.txid, log_index = skip.log_index, "skipped a USDT Transfer log: {}", skip.reason);
        }
        let time = infos.iter().map(|info| info.block_timestamp).find(|time| *time > 0);
        (transfers, time)
    }

    /// Processes final blocks in order, fetching ahead concurrently; returns
    /// the new cursor. Blocks already fetched when a commit starts share its
    /// transaction (up to [`COMMIT_BATCH`]): each block is still all-or-nothing
    /// with the cursor, and a backlog costs one commit per batch, not per
    /// block.
    async fn catch_up(
        &self,
        range: RangeInclusive<u64>,
        heads: &Heads,
        shutdown: &watch::Receiver<bool>,
    ) -> Result<u64, Stop> {
        let mut cursor = range.start().saturating_sub(1);
        let mut blocks = futures_util::stream::iter(range)
            .map(|number| async move { (number, self.fetch(number, shutdown).await) })
            .buffered(self.settings.fetch_concurrency);
        let mut waited = Instant::now();
        while let Some(first) = blocks.next().await {
            let fetch_wait = waited.elapsed();
            let mut fetched = vec![first];
            while fetched.len() < COMMIT_BATCH {
                match blocks.next().now_or_never() {
                    Some(Some(next)) => fetched.push(next),
                    _ => break,
                }
            }
            let mut batch = Vec::with_capacity(fetched.len());
            for (number, infos) in fetched {
                let Some(infos) = infos else { return Err(Stop::Shutdown) };
                let (found, time) = self.found(&infos, number);
                // An empty block has no receipts to date it; the final block's
                // own header does. Without either, the cursor's time stays
                // behind, which only delays the expiry sweep.
                let time =
                    time.or((number == heads.final_block && heads.final_time_ms > 0).then_some(heads.final_time_ms));
                batch.push(FinalBlock {
                    number,
                    time_ms: time,
                    found,
                });
            }
            let committing = Instant::now();
            let mut failures = 0u32;
            let mut incurable = Incurable::default();
            loop {
                match self.commit(&batch).await {
                    Ok(()) => break,
                    Err(error @ DbError::Conflict(Conflict::CursorMoved { .. })) => {
                        return Err(Stop::LostLeadership(error.to_string()));
                    }
                    Err(error) if incurable.give_up(error.is_retryable()) => {
                        let (first, last) = (batch[0].number, batch.last().map_or(0, |block| block.number));
                        let context = format!("committing final blocks {first} to {last}");
                        return Err(Stop::Failed(anyhow::Error::new(error).context(context)));
                    }
                    Err(error) => {
                        tracing::warn!(first = batch[0].number, %error, "committing blocks failed; retrying them");
                        let delay = Duration::from_millis(200u64.saturating_mul(1 << failures.min(7)));
                        failures = failures.saturating_add(1);
                        if self.pause(delay, &mut shutdown.clone()).await {
                            return Err(Stop::Shutdown);
                        }
                    }
                }
            }
            cursor = batch.last().map_or(cursor, |block| block.number);
            tracing::debug!(
                blocks = batch.len(),
                cursor,
                waited_for_fetch_ms = fetch_wait.as_millis(),
                commit_ms = committing.elapsed().as_millis(),
                "final blocks committed"
            );
            waited = Instant::now();
            self.status
                .cursor
                .store(i64::try_from(cursor).unwrap_or(i64::MAX), Ordering::Relaxed);
            self.relay.notify_one();
        }
        Ok(cursor)
    }

    async fn commit(&self, batch: &[FinalBlock]) -> Result<(), DbError> {
        let mut conn = self.pool.get().await?;
        conn.transaction::<_, DbError, _>(async |conn| chain::commit_final_blocks(conn, batch).await.map(|_| ()))
            .await
    }

    /// Scans blocks above the final height once each; returns the last one
    /// scanned. Failures end the pass early (the next poll resumes it).
    async fn scan_tip(&self, range: RangeInclusive<u64>) -> Option<u64> {
        let mut scanned = None;
        for number in range {
            let infos = match self.node.tip_tx_infos(number).await {
                Ok(infos) => infos,
                Err(error) => {
                    tracing::debug!(block = number, %error, "tip scan stopped");
                    break;
                }
            };
            let (found, _) = self.found(&infos, number);
            {
                let mut conn = self.pool.get().await.ok()?;
                let recorded = conn
                    .transaction::<_, DbError, _>(async |conn| chain::record_tip_block(conn, number, &found).await)
                    .await;
                match recorded {
                    Ok(events) if !events.is_empty() => self.relay.notify_one(),
                    Ok(_) => {}
                    Err(error) => {
                        tracing::warn!(block = number, %error, "recording a tip block failed");
                        break;
                    }
                }
            }
            scanned = Some(number);
        }
        scanned
    }
}

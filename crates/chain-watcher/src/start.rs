//! Where a first start begins (no cursor yet, no `SCAN_START_BLOCK`).
//!
//! Starting at the current final block would lose every payment paid before
//! the watcher first ran — or while the node was unreachable at its first
//! start. So the first scan begins at the first block made at or after the
//! oldest pending payment's creation (transfers before it cannot pay it),
//! found by block time, but no earlier than `SCAN_MAX_LOOKBACK_SECONDS`
//! before now; with nothing pending, at the current final block.

use chrono::NaiveDateTime;
use tronpay_tron::{NodeClient, NodeError};

/// The final block as the first poll saw it.
#[derive(Debug, Clone, Copy)]
pub struct ChainTop {
    pub final_block: u64,
    /// Milliseconds since the Unix epoch; 0 when unknown (with
    /// `CONFIRMATIONS`, the final block is not read).
    pub final_time_ms: i64,
    /// `BLOCK_INTERVAL_MS`, for the first guess of how far back to look.
    pub block_interval_ms: u64,
}

/// The time to start from: the oldest pending payment's creation, or the
/// look-back bound if that is later; `cut` when the bound moved it.
pub fn start_time(created_ms: i64, now_ms: i64, max_lookback_seconds: u64) -> (i64, bool) {
    let lookback_ms = i64::try_from(max_lookback_seconds.saturating_mul(1_000)).unwrap_or(i64::MAX);
    let bound_ms = now_ms.saturating_sub(lookback_ms);
    (created_ms.max(bound_ms), created_ms < bound_ms)
}

/// The first block to scan, given the oldest pending payment (id and
/// `created_at`, UTC), if any. Logs where it starts, and loudly when the
/// look-back bound cuts a pending payment's window.
pub async fn first_block(
    node: &NodeClient,
    top: &ChainTop,
    oldest: Option<&(String, NaiveDateTime)>,
    max_lookback_seconds: u64,
) -> Result<u64, NodeError> {
    let Some((payment, created_at)) = oldest else {
        return Ok(top.final_block);
    };
    let (target_ms, cut) = start_time(
        created_at.and_utc().timestamp_millis(),
        chrono::Utc::now().timestamp_millis(),
        max_lookback_seconds,
    );
    let final_time_ms = match top.final_time_ms {
        0 => block_time(node, top.final_block).await?.unwrap_or(0),
        known => known,
    };
    let first = if final_time_ms < target_ms {
        top.final_block
    } else {
        first_block_at(node, target_ms, top.final_block, final_time_ms, top.block_interval_ms).await?
    };
    if cut {
        tracing::warn!(
            payment = %payment,
            %created_at,
            first,
            "the oldest pending payment predates SCAN_MAX_LOOKBACK_SECONDS ({max_lookback_seconds} s): the first scan \
             starts at block {first}, and transfers to it before that block are not seen (set SCAN_START_BLOCK to go \
             further back)"
        );
    } else {
        tracing::info!(payment = %payment, %created_at, first, "first start: scanning from the block of the oldest pending payment's creation");
    }
    Ok(first)
}

/// The time of block `number` (milliseconds since the Unix epoch); `None`
/// when the node has no such block (before its history).
async fn block_time(node: &NodeClient, number: u64) -> Result<Option<i64>, NodeError> {
    Ok(node.block_by_num(number).await?.and_then(|block| block.timestamp_ms()))
}

/// The first block made at or after `target_ms`, given that block `upper`
/// (made at `upper_time_ms`) is: the search steps back from `upper` by the
/// distance block times suggest, doubling until it passes the target, then
/// bisects — a few dozen header reads at most, whatever the distance.
pub async fn first_block_at(
    node: &NodeClient,
    target_ms: i64,
    upper: u64,
    upper_time_ms: i64,
    block_interval_ms: u64,
) -> Result<u64, NodeError> {
    let interval = i64::try_from(block_interval_ms).unwrap_or(3_000).max(1);
    let mut step = u64::try_from((upper_time_ms - target_ms) / interval)
        .unwrap_or(0)
        .max(1);
    let mut high = upper;
    // Invariant: block `high` is made at or after the target, and block
    // `low` before it (or is missing: before the node's history).
    let mut low = loop {
        let candidate = high.saturating_sub(step);
        match block_time(node, candidate).await? {
            Some(time) if time >= target_ms => {
                if candidate == 0 {
                    return Ok(0);
                }
                high = candidate;
                step = step.saturating_mul(2);
            }
            _ => break candidate,
        }
    };
    while high - low > 1 {
        let middle = low + (high - low) / 2;
        match block_time(node, middle).await? {
            Some(time) if time >= target_ms => high = middle,
            _ => low = middle,
        }
    }
    Ok(high)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_look_back_bound_cuts_only_older_payments() {
        let (hour_s, hour_ms): (u64, i64) = (3_600, 3_600_000);
        let now = 10_000_000_000;
        assert_eq!(start_time(now - 1_000, now, 24 * hour_s), (now - 1_000, false));
        assert_eq!(
            start_time(now - 25 * hour_ms, now, 24 * hour_s),
            (now - 24 * hour_ms, true)
        );
        // No look-back at all: from now.
        assert_eq!(start_time(now - 1, now, 0), (now, true));
    }
}

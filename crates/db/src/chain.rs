//! What the chain watcher records: its cursor, and transfers to watched
//! addresses with the events they cause, block by block.

use chrono::NaiveDateTime;
use diesel::prelude::*;
use diesel::sql_types::{Array, BigInt, Int4, Numeric, Text, Timestamp};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use tronpay_domain::events::{PAYMENT_DETECTED, PaymentDetected, TransferState};
use tronpay_domain::{Transfer, TransferId, TronAddress, TxId, UsdtAmount};

use crate::error::{Conflict, DbError};
use crate::outbox;
use crate::schema::chain_state;

/// The watcher's row in `chain_state`.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = chain_state, check_for_backend(diesel::pg::Pg))]
pub struct ChainState {
    /// The last final block processed (its transfers and events committed).
    pub cursor_block: i64,
    pub cursor_block_time: Option<NaiveDateTime>,
    /// The last block above the final height scanned for early detection.
    pub tip_block: i64,
    /// The head at the last successful poll (estimated from the final block
    /// and the learned head-to-final lag when only the final block is read).
    pub head_block: Option<i64>,
    pub head_block_time: Option<NaiveDateTime>,
    pub final_block: Option<i64>,
    pub final_block_time: Option<NaiveDateTime>,
    /// The last successful poll (UTC).
    pub polled_at: Option<NaiveDateTime>,
    /// The last upstream failure (kept after recovery, for the operator).
    pub last_error: Option<String>,
    pub last_error_at: Option<NaiveDateTime>,
    pub leader: Option<String>,
    /// The watcher's `BLOCK_INTERVAL_MS` and `NODE_STALL_SECONDS`.
    pub block_interval_ms: Option<i32>,
    pub node_stall_seconds: Option<i32>,
}

pub async fn state(conn: &mut AsyncPgConnection) -> Result<Option<ChainState>, DbError> {
    Ok(chain_state::table
        .select(ChainState::as_select())
        .first(conn)
        .await
        .optional()?)
}

/// Deletes the cursor (for a new chain); returns where it was.
pub async fn reset(conn: &mut AsyncPgConnection) -> Result<Option<i64>, DbError> {
    Ok(diesel::delete(chain_state::table)
        .returning(chain_state::cursor_block)
        .get_result(conn)
        .await
        .optional()?)
}

/// Creates the cursor on first start so that `first_block` is the first one
/// processed; does nothing if a cursor exists.
pub async fn init(conn: &mut AsyncPgConnection, first_block: i64) -> Result<ChainState, DbError> {
    diesel::insert_into(chain_state::table)
        .values((
            chain_state::cursor_block.eq(first_block - 1),
            chain_state::tip_block.eq(first_block - 1),
        ))
        .on_conflict_do_nothing()
        .execute(conn)
        .await?;
    state(conn)
        .await?
        .ok_or_else(|| Conflict::Lost("chain_state was deleted while the cursor was being created".into()).into())
}

/// What a successful poll saw upstream: heights with their block times (UTC)
/// and the settings health needs to judge them.
#[derive(Debug, Clone)]
pub struct Polled<'a> {
    pub head: (i64, NaiveDateTime),
    pub final_block: (i64, Option<NaiveDateTime>),
    /// `BLOCK_INTERVAL_MS`.
    pub block_interval_ms: i32,
    /// `NODE_STALL_SECONDS`.
    pub node_stall_seconds: i32,
    /// This replica's name.
    pub leader: &'a str,
}

/// Records a successful poll (for health and `/stats`).
pub async fn record_poll(conn: &mut AsyncPgConnection, polled: &Polled<'_>) -> Result<(), DbError> {
    let now = chrono::Utc::now().naive_utc();
    diesel::update(chain_state::table)
        .set((
            chain_state::polled_at.eq(now),
            chain_state::updated_at.eq(now),
            chain_state::leader.eq(polled.leader),
            chain_state::head_block.eq(polled.head.0),
            chain_state::head_block_time.eq(polled.head.1),
            chain_state::final_block.eq(polled.final_block.0),
            chain_state::final_block_time.eq(polled.final_block.1),
            chain_state::block_interval_ms.eq(polled.block_interval_ms),
            chain_state::node_stall_seconds.eq(polled.node_stall_seconds),
        ))
        .execute(conn)
        .await?;
    Ok(())
}

/// Records a failed poll or block read: the node's error, now.
pub async fn record_error(conn: &mut AsyncPgConnection, error: &str, leader: &str) -> Result<(), DbError> {
    let now = chrono::Utc::now().naive_utc();
    diesel::update(chain_state::table)
        .set((
            chain_state::last_error.eq(error),
            chain_state::last_error_at.eq(now),
            chain_state::updated_at.eq(now),
            chain_state::leader.eq(leader),
        ))
        .execute(conn)
        .await?;
    Ok(())
}

/// The stall bound health assumes when the watcher has not recorded its own.
const DEFAULT_STALL_SECONDS: i64 = 30;
/// TRON's block interval, when the watcher has not recorded its setting.
const DEFAULT_BLOCK_INTERVAL_MS: i64 = 3_000;

/// The chain as the health endpoints and `/stats` show it, judged from the
/// watcher's last records at `now`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ChainHealth {
    /// `ok`, or `degraded` when no newer block has been seen for longer than
    /// `NODE_STALL_SECONDS`: the node is stalled, unreachable or refusing.
    pub status: &'static str,
    /// Why it is degraded, in words.
    pub problem: Option<String>,
    pub head_block: Option<i64>,
    pub final_block: Option<i64>,
    pub cursor_block: i64,
    /// Final blocks not processed yet: the known final height minus the
    /// cursor, plus the blocks the chain must have made since the newest
    /// block seen or the last successful poll, whichever is older (so a
    /// stalled or unreachable node shows a growing lag).
    pub lag_blocks: Option<i64>,
    /// Seconds since the newest block seen was made (its block time; 0 when
    /// it is stamped ahead of this clock).
    pub head_age_seconds: Option<i64>,
    /// Seconds since the last successful poll.
    pub poll_age_seconds: Option<i64>,
    /// The last successful poll, milliseconds since the Unix epoch.
    pub polled_at: Option<i64>,
    pub last_error: Option<String>,
    /// Milliseconds since the Unix epoch.
    pub last_error_at: Option<i64>,
    /// The replica that polled last.
    pub scanner: Option<String>,
}

impl ChainState {
    /// How the chain looks at `now` (UTC).
    pub fn health(&self, now: NaiveDateTime) -> ChainHealth {
        let millis = |time: NaiveDateTime| time.and_utc().timestamp_millis();
        let now_ms = millis(now);
        let newest = self.head_block_time.max(self.final_block_time);
        let head_age_ms = newest.map(|time| (now_ms - millis(time)).max(0));
        let poll_age_ms = self.polled_at.map(|time| (now_ms - millis(time)).max(0));
        let stall_ms = i64::from(self.node_stall_seconds.unwrap_or(0))
            .max(0)
            .checked_mul(1_000)
            .filter(|bound| *bound > 0)
            .unwrap_or(DEFAULT_STALL_SECONDS * 1_000);
        let interval_ms = self
            .block_interval_ms
            .map(i64::from)
            .filter(|interval| *interval > 0)
            .unwrap_or(DEFAULT_BLOCK_INTERVAL_MS);
        let problem = match (head_age_ms, poll_age_ms) {
            (_, Some(age)) if age > stall_ms => Some(format!(
                "no successful poll of the node for {} s (NODE_STALL_SECONDS is {})",
                age / 1_000,
                stall_ms / 1_000
            )),
            (Some(age), _) if age > stall_ms => Some(format!(
                "the newest block seen was made {} s ago (NODE_STALL_SECONDS is {}): the node is stalled or behind",
                age / 1_000,
                stall_ms / 1_000
            )),
            (None, None) => Some("the node has not been polled successfully yet".to_owned()),
            _ => None,
        };
        // Blocks the chain must have made since the newest one seen, or since
        // the last successful poll (a sandbox stamps bursts of blocks ahead
        // of the clock), beyond the one due anyway.
        let unseen_ms = head_age_ms.max(poll_age_ms).unwrap_or(0);
        let missed = (unseen_ms - interval_ms).max(0) / interval_ms;
        ChainHealth {
            status: if problem.is_some() { "degraded" } else { "ok" },
            problem,
            head_block: self.head_block,
            final_block: self.final_block,
            cursor_block: self.cursor_block,
            lag_blocks: self
                .final_block
                .map(|final_block| (final_block - self.cursor_block).max(0) + missed),
            head_age_seconds: head_age_ms.map(|age| age / 1_000),
            poll_age_seconds: poll_age_ms.map(|age| age / 1_000),
            polled_at: self.polled_at.map(millis),
            last_error: self.last_error.clone(),
            last_error_at: self.last_error_at.map(millis),
            scanner: self.leader.clone(),
        }
    }
}

/// A final block ready to commit: its height, its time when known (an empty
/// block has no receipts to date it), and its USDT transfers (to any
/// address: only those to watched addresses are stored).
#[derive(Debug, Clone)]
pub struct FinalBlock {
    pub number: u64,
    pub time_ms: Option<i64>,
    pub found: Vec<Transfer>,
}

/// How long after its deadline an address stays watched, so that late
/// payments are recorded.
pub const LATE_WATCH_DAYS: i32 = 30;

#[derive(QueryableByName)]
struct Stored {
    #[diesel(sql_type = Text)]
    txid: String,
    #[diesel(sql_type = Int4)]
    log_index: i32,
    #[diesel(sql_type = Text)]
    from_address: String,
    #[diesel(sql_type = Text)]
    to_address: String,
    #[diesel(sql_type = Text)]
    amount: String,
    #[diesel(sql_type = BigInt)]
    block_number: i64,
    #[diesel(sql_type = Timestamp)]
    block_time: NaiveDateTime,
}

impl Stored {
    fn event(self, state: TransferState) -> Result<PaymentDetected, DbError> {
        let key = format!("{}:{}", self.txid, self.log_index);
        let corrupt = |what: &str| DbError::corrupt("transfer", &key, format!("invalid {what}"));
        Ok(PaymentDetected {
            transfer: Transfer {
                id: TransferId {
                    txid: TxId::parse(&self.txid).map_err(|_| corrupt("txid"))?,
                    log_index: u32::try_from(self.log_index).map_err(|_| corrupt("log index"))?,
                },
                from: TronAddress::parse(&self.from_address).map_err(|_| corrupt("sender"))?,
                to: TronAddress::parse(&self.to_address).map_err(|_| corrupt("recipient"))?,
                amount: UsdtAmount::parse(&self.amount).map_err(|_| corrupt("amount"))?,
                block_number: u64::try_from(self.block_number).map_err(|_| corrupt("block number"))?,
                block_time_ms: self.block_time.and_utc().timestamp_millis(),
            },
            state,
        })
    }
}

/// Columns of the found transfers, as arrays for `unnest`.
struct Columns {
    txids: Vec<String>,
    log_indexes: Vec<i32>,
    from: Vec<String>,
    to: Vec<String>,
    amounts: Vec<bigdecimal::BigDecimal>,
    block_numbers: Vec<i64>,
    block_times: Vec<NaiveDateTime>,
}

fn columns<'a>(found: impl Iterator<Item = &'a Transfer>) -> Columns {
    let mut columns = Columns {
        txids: Vec::new(),
        log_indexes: Vec::new(),
        from: Vec::new(),
        to: Vec::new(),
        amounts: Vec::new(),
        block_numbers: Vec::new(),
        block_times: Vec::new(),
    };
    let mut seen = std::collections::HashSet::new();
    for transfer in found {
        // A node repeating a log would make one statement touch a row twice.
        if !seen.insert(&transfer.id) {
            continue;
        }
        columns.txids.push(transfer.id.txid.to_string());
        columns
            .log_indexes
            .push(i32::try_from(transfer.id.log_index).unwrap_or(i32::MAX));
        columns.from.push(transfer.from.to_base58());
        columns.to.push(transfer.to.to_base58());
        columns.amounts.push(transfer.amount.to_decimal());
        columns
            .block_numbers
            .push(i64::try_from(transfer.block_number).unwrap_or(i64::MAX));
        columns.block_times.push(to_naive(transfer.block_time_ms));
    }
    columns
}

/// Stores the transfers whose recipient is watched (a pending payment, or one
/// whose deadline passed less than [`LATE_WATCH_DAYS`] ago) with `state`, in
/// one statement however many there are, and returns those newly stored or
/// changed.
async fn store_watched(
    conn: &mut AsyncPgConnection,
    columns: &Columns,
    state: TransferState,
) -> Result<Vec<Stored>, DbError> {
    if columns.txids.is_empty() {
        return Ok(Vec::new());
    }
    // A confirmation overrides a detection (or a drop, if a reorganisation
    // moved the transaction); a detection never overrides anything.
    let (status, on_conflict) = match state {
        TransferState::Confirmed => (
            "confirmed",
            "DO UPDATE SET status = 'confirmed', block_number = EXCLUDED.block_number, block_time = EXCLUDED.block_time, \
             confirmed_at = EXCLUDED.confirmed_at WHERE transfers.status <> 'confirmed'",
        ),
        TransferState::Detected | TransferState::Dropped => ("detected", "DO NOTHING"),
    };
    let sql = format!(
        "INSERT INTO transfers (txid, log_index, block_number, block_time, from_address, to_address, amount_usdt, status, confirmed_at) \
         SELECT t.txid, t.log_index, t.block_number, t.block_time, t.from_address, t.to_address, t.amount, '{status}', \
                CASE WHEN '{status}' = 'confirmed' THEN now() AT TIME ZONE 'utc' END \
         FROM unnest($1::text[], $2::int[], $3::text[], $4::text[], $5::numeric[], $6::bigint[], $7::timestamp[]) \
              AS t(txid, log_index, from_address, to_address, amount, block_number, block_time) \
         WHERE EXISTS (SELECT 1 FROM payments p WHERE p.wallet_address = t.to_address \
                       AND (p.status = 'pending' OR p.expires_at > (now() AT TIME ZONE 'utc') - interval '{LATE_WATCH_DAYS} days')) \
         ON CONFLICT (txid, log_index) {on_conflict} \
         RETURNING txid, log_index, from_address, to_address, amount_usdt::text AS amount, block_number, block_time"
    );
    Ok(diesel::sql_query(sql)
        .bind::<Array<Text>, _>(&columns.txids)
        .bind::<Array<Int4>, _>(&columns.log_indexes)
        .bind::<Array<Text>, _>(&columns.from)
        .bind::<Array<Text>, _>(&columns.to)
        .bind::<Array<Numeric>, _>(&columns.amounts)
        .bind::<Array<BigInt>, _>(&columns.block_numbers)
        .bind::<Array<Timestamp>, _>(&columns.block_times)
        .load(conn)
        .await?)
}

pub(crate) fn to_naive(block_time_ms: i64) -> NaiveDateTime {
    chrono::DateTime::from_timestamp_millis(block_time_ms)
        .unwrap_or_default()
        .naive_utc()
}

/// Commits consecutive final blocks: advances the cursor from the first
/// one's predecessor to the last (and fails if another scanner moved it),
/// confirms their watched transfers, drops those detected at these heights
/// that the final blocks do not contain, and writes a `payment.detected`
/// event per change — all in the caller's transaction, in four statements
/// however many blocks. Returns the events written.
pub async fn commit_final_blocks(
    conn: &mut AsyncPgConnection,
    blocks: &[FinalBlock],
) -> Result<Vec<PaymentDetected>, DbError> {
    let (Some(first), Some(last)) = (blocks.first(), blocks.last()) else {
        return Ok(Vec::new());
    };
    if blocks.windows(2).any(|pair| pair[1].number != pair[0].number + 1) {
        return Err(DbError::bug("final blocks must be committed in order, without gaps"));
    }
    let height = |number: u64| i64::try_from(number).map_err(|_| DbError::bug(format!("block {number} out of range")));
    let (first_height, last_height) = (height(first.number)?, height(last.number)?);
    let latest_time = blocks.iter().rev().find_map(|block| block.time_ms).map(to_naive);
    let moved = diesel::update(chain_state::table.filter(chain_state::cursor_block.eq(first_height - 1)))
        .set((
            chain_state::cursor_block.eq(last_height),
            chain_state::cursor_block_time.eq(diesel::dsl::sql::<diesel::sql_types::Nullable<Timestamp>>("COALESCE(")
                .bind::<diesel::sql_types::Nullable<Timestamp>, _>(latest_time)
                .sql(", cursor_block_time)")),
            chain_state::tip_block.eq(diesel::dsl::sql::<BigInt>("GREATEST(tip_block, ")
                .bind::<BigInt, _>(last_height)
                .sql(")")),
            chain_state::updated_at.eq(chrono::Utc::now().naive_utc()),
        ))
        .execute(conn)
        .await?;
    if moved != 1 {
        return Err(Conflict::CursorMoved {
            expected: first_height - 1,
        }
        .into());
    }

    let columns = columns(blocks.iter().flat_map(|block| &block.found));
    let mut events = Vec::new();
    for stored in store_watched(conn, &columns, TransferState::Confirmed).await? {
        events.push(stored.event(TransferState::Confirmed)?);
    }
    // Detected at these heights but not in the final blocks: dropped.
    let dropped: Vec<Stored> = diesel::sql_query(
        "UPDATE transfers SET status = 'dropped' WHERE status = 'detected' AND block_number BETWEEN $1 AND $2 \
         AND (txid, log_index) NOT IN (SELECT * FROM unnest($3::text[], $4::int[])) \
         RETURNING txid, log_index, from_address, to_address, amount_usdt::text AS amount, block_number, block_time",
    )
    .bind::<BigInt, _>(first_height)
    .bind::<BigInt, _>(last_height)
    .bind::<Array<Text>, _>(&columns.txids)
    .bind::<Array<Int4>, _>(&columns.log_indexes)
    .load(conn)
    .await?;
    for stored in dropped {
        events.push(stored.event(TransferState::Dropped)?);
    }
    outbox::insert_many(conn, PAYMENT_DETECTED, &events).await?;
    Ok(events)
}

/// Records the watched transfers of a block that is not final yet as
/// detected (each at most once), with their events, and moves the tip marker.
pub async fn record_tip_block(
    conn: &mut AsyncPgConnection,
    number: u64,
    found: &[Transfer],
) -> Result<Vec<PaymentDetected>, DbError> {
    let height = i64::try_from(number).map_err(|_| DbError::bug(format!("block {number} out of range")))?;
    diesel::update(chain_state::table.filter(chain_state::tip_block.lt(height)))
        .set(chain_state::tip_block.eq(height))
        .execute(conn)
        .await?;
    let mut events = Vec::new();
    for stored in store_watched(conn, &columns(found.iter()), TransferState::Detected).await? {
        events.push(stored.event(TransferState::Detected)?);
    }
    outbox::insert_many(conn, PAYMENT_DETECTED, &events).await?;
    Ok(events)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> NaiveDateTime {
        chrono::DateTime::from_timestamp(1_800_000_000 + seconds, 0)
            .unwrap_or_default()
            .naive_utc()
    }

    /// Polled at second 0: head 120 made then, final 101, cursor 100.
    fn polled() -> ChainState {
        ChainState {
            cursor_block: 100,
            cursor_block_time: Some(at(-60)),
            tip_block: 120,
            head_block: Some(120),
            head_block_time: Some(at(0)),
            final_block: Some(101),
            final_block_time: Some(at(-57)),
            polled_at: Some(at(0)),
            last_error: None,
            last_error_at: None,
            leader: Some("watcher-1".into()),
            block_interval_ms: Some(3_000),
            node_stall_seconds: Some(30),
        }
    }

    #[test]
    fn a_current_chain_is_ok_with_the_known_lag() {
        let health = polled().health(at(2));
        assert_eq!((health.status, health.problem.as_deref()), ("ok", None));
        assert_eq!(health.lag_blocks, Some(1));
        assert_eq!((health.head_age_seconds, health.poll_age_seconds), (Some(2), Some(2)));
        // A block stamped ahead of this clock (a burst of sandbox blocks) is
        // 0 seconds old, not negative.
        let ahead = ChainState {
            head_block_time: Some(at(9)),
            ..polled()
        };
        assert_eq!(ahead.health(at(2)).head_age_seconds, Some(0));
        // Its lag still grows once polls stop succeeding.
        assert_eq!(ahead.health(at(60)).lag_blocks, Some(1 + 19));
    }

    #[test]
    fn no_successful_poll_for_longer_than_the_bound_is_degraded_with_a_growing_lag() {
        let state = ChainState {
            last_error: Some("http://node/: HTTP 429".into()),
            last_error_at: Some(at(120)),
            ..polled()
        };
        let health = state.health(at(120));
        assert_eq!(health.status, "degraded");
        assert!(
            health.problem.as_deref().unwrap().contains("no successful poll"),
            "{health:?}"
        );
        // 1 known + the 39 blocks made since the newest one seen (beyond the
        // one due anyway).
        assert_eq!(health.lag_blocks, Some(40));
        assert_eq!(state.health(at(150)).lag_blocks, Some(50));
    }

    #[test]
    fn a_node_that_answers_with_an_old_block_is_degraded() {
        // Polls succeed (the node answers), but its newest block is old.
        let state = ChainState {
            polled_at: Some(at(59)),
            ..polled()
        };
        let health = state.health(at(60));
        assert_eq!(health.status, "degraded");
        assert!(
            health.problem.as_deref().unwrap().contains("newest block"),
            "{health:?}"
        );
        assert_eq!(health.lag_blocks, Some(1 + 19));
        // The bound is the watcher's.
        let patient = ChainState {
            node_stall_seconds: Some(3_600),
            ..state
        };
        assert_eq!(patient.health(at(60)).status, "ok");
    }

    #[test]
    fn a_row_never_polled_is_degraded() {
        let state = ChainState {
            head_block: None,
            head_block_time: None,
            final_block: None,
            final_block_time: None,
            polled_at: None,
            block_interval_ms: None,
            node_stall_seconds: None,
            ..polled()
        };
        let health = state.health(at(0));
        assert_eq!(health.status, "degraded");
        assert_eq!(health.lag_blocks, None);
    }
}

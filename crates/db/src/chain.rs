//! What the chain watcher records: its cursor, and transfers to watched
//! addresses with the events they cause, block by block.

use chrono::NaiveDateTime;
use diesel::prelude::*;
use diesel::sql_types::{Array, BigInt, Int4, Numeric, Text, Timestamp};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use tronpay_domain::events::{PAYMENT_DETECTED, PaymentDetected, TransferState};
use tronpay_domain::{TronAddress, TxId, UsdtAmount};

use crate::error::DbError;
use crate::outbox;
use crate::schema::chain_state;

/// The watcher's row in `chain_state`.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = chain_state, check_for_backend(diesel::pg::Pg))]
pub struct ChainState {
    pub cursor_block: i64,
    pub cursor_block_time: Option<NaiveDateTime>,
    pub tip_block: i64,
    pub head_block: Option<i64>,
    pub head_block_time: Option<NaiveDateTime>,
    pub final_block: Option<i64>,
    pub polled_at: Option<NaiveDateTime>,
    pub last_error: Option<String>,
    pub last_error_at: Option<NaiveDateTime>,
    pub leader: Option<String>,
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
        .ok_or_else(|| DbError::Unavailable("chain_state vanished".into()))
}

/// What the watcher saw upstream (for health and `/stats`): the head, the
/// final height, and the last upstream error if this poll failed.
pub async fn record_poll(
    conn: &mut AsyncPgConnection,
    head: Option<(i64, NaiveDateTime)>,
    final_block: Option<i64>,
    error: Option<&str>,
    leader: &str,
) -> Result<(), DbError> {
    use diesel::sql_types::Nullable;
    diesel::sql_query(
        "UPDATE chain_state SET polled_at = now() AT TIME ZONE 'utc', updated_at = now() AT TIME ZONE 'utc', leader = $1, \
         head_block = COALESCE($2, head_block), head_block_time = COALESCE($3, head_block_time), \
         final_block = COALESCE($4, final_block), last_error = COALESCE($5, last_error), \
         last_error_at = CASE WHEN $5 IS NULL THEN last_error_at ELSE now() AT TIME ZONE 'utc' END",
    )
    .bind::<Text, _>(leader)
    .bind::<Nullable<BigInt>, _>(head.map(|(number, _)| number))
    .bind::<Nullable<Timestamp>, _>(head.map(|(_, time)| time))
    .bind::<Nullable<BigInt>, _>(final_block)
    .bind::<Nullable<Text>, _>(error)
    .execute(conn)
    .await?;
    Ok(())
}

/// A USDT transfer found in a block, before knowing whether its recipient is
/// watched.
#[derive(Debug, Clone)]
pub struct FoundTransfer {
    pub txid: TxId,
    pub log_index: u32,
    pub from: TronAddress,
    pub to: TronAddress,
    pub amount: UsdtAmount,
    pub block_number: u64,
    pub block_time_ms: i64,
}

/// A final block ready to commit: its height, its time when known (an empty
/// block has no receipts to date it), and its USDT transfers.
#[derive(Debug, Clone)]
pub struct FinalBlock {
    pub number: u64,
    pub time_ms: Option<i64>,
    pub found: Vec<FoundTransfer>,
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
        let corrupt = |what: &str| DbError::Unavailable(format!("stored transfer {} has an invalid {what}", self.txid));
        Ok(PaymentDetected {
            txid: TxId::parse(&self.txid).map_err(|_| corrupt("txid"))?,
            log_index: u32::try_from(self.log_index).map_err(|_| corrupt("log index"))?,
            from: TronAddress::parse(&self.from_address).map_err(|_| corrupt("sender"))?,
            to: TronAddress::parse(&self.to_address).map_err(|_| corrupt("recipient"))?,
            amount: UsdtAmount::parse(&self.amount).map_err(|_| corrupt("amount"))?,
            block_number: u64::try_from(self.block_number).map_err(|_| corrupt("block number"))?,
            block_time_ms: self.block_time.and_utc().timestamp_millis(),
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

fn columns<'a>(found: impl Iterator<Item = &'a FoundTransfer>) -> Columns {
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
        if !seen.insert((transfer.txid.as_str(), transfer.log_index)) {
            continue;
        }
        columns.txids.push(transfer.txid.to_string());
        columns
            .log_indexes
            .push(i32::try_from(transfer.log_index).unwrap_or(i32::MAX));
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

fn to_naive(block_time_ms: i64) -> NaiveDateTime {
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
        return Err(DbError::Unavailable(
            "final blocks must be committed in order, without gaps".into(),
        ));
    }
    let height =
        |number: u64| i64::try_from(number).map_err(|_| DbError::Unavailable(format!("block {number} out of range")));
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
        return Err(DbError::Unavailable(format!(
            "the cursor is no longer at block {} (another scanner?)",
            first_height - 1
        )));
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
    found: &[FoundTransfer],
) -> Result<Vec<PaymentDetected>, DbError> {
    let height = i64::try_from(number).map_err(|_| DbError::Unavailable(format!("block {number} out of range")))?;
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

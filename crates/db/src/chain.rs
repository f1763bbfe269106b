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
}

impl Stored {
    fn event(self, block_number: u64, block_time_ms: i64, state: TransferState) -> Result<PaymentDetected, DbError> {
        let corrupt = |what: &str| DbError::Unavailable(format!("stored transfer {} has an invalid {what}", self.txid));
        Ok(PaymentDetected {
            txid: TxId::parse(&self.txid).map_err(|_| corrupt("txid"))?,
            log_index: u32::try_from(self.log_index).map_err(|_| corrupt("log index"))?,
            from: TronAddress::parse(&self.from_address).map_err(|_| corrupt("sender"))?,
            to: TronAddress::parse(&self.to_address).map_err(|_| corrupt("recipient"))?,
            amount: UsdtAmount::parse(&self.amount).map_err(|_| corrupt("amount"))?,
            block_number,
            block_time_ms,
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
}

fn columns(found: &[FoundTransfer]) -> Columns {
    Columns {
        txids: found.iter().map(|transfer| transfer.txid.to_string()).collect(),
        log_indexes: found
            .iter()
            .map(|transfer| i32::try_from(transfer.log_index).unwrap_or(i32::MAX))
            .collect(),
        from: found.iter().map(|transfer| transfer.from.to_base58()).collect(),
        to: found.iter().map(|transfer| transfer.to.to_base58()).collect(),
        amounts: found.iter().map(|transfer| transfer.amount.to_decimal()).collect(),
    }
}

/// Stores the transfers of `found` whose recipient is watched (a pending
/// payment, or one whose deadline passed less than [`LATE_WATCH_DAYS`] ago)
/// with `state`, and returns those newly stored or changed.
async fn store_watched(
    conn: &mut AsyncPgConnection,
    found: &[FoundTransfer],
    block_number: u64,
    block_time: NaiveDateTime,
    state: TransferState,
) -> Result<Vec<Stored>, DbError> {
    if found.is_empty() {
        return Ok(Vec::new());
    }
    let columns = columns(found);
    // A confirmation overrides a detection (or a drop, if a reorganisation
    // moved the transaction); a detection never overrides anything.
    let on_conflict = match state {
        TransferState::Confirmed => {
            "DO UPDATE SET status = 'confirmed', block_number = EXCLUDED.block_number, block_time = EXCLUDED.block_time, \
             confirmed_at = EXCLUDED.confirmed_at WHERE transfers.status <> 'confirmed'"
        }
        TransferState::Detected | TransferState::Dropped => "DO NOTHING",
    };
    let status = match state {
        TransferState::Confirmed => "confirmed",
        TransferState::Detected | TransferState::Dropped => "detected",
    };
    let sql = format!(
        "INSERT INTO transfers (txid, log_index, block_number, block_time, from_address, to_address, amount_usdt, status, confirmed_at) \
         SELECT t.txid, t.log_index, $6, $7, t.from_address, t.to_address, t.amount, '{status}', \
                CASE WHEN '{status}' = 'confirmed' THEN now() AT TIME ZONE 'utc' END \
         FROM unnest($1::text[], $2::int[], $3::text[], $4::text[], $5::numeric[]) AS t(txid, log_index, from_address, to_address, amount) \
         WHERE EXISTS (SELECT 1 FROM payments p WHERE p.wallet_address = t.to_address \
                       AND (p.status = 'pending' OR p.expires_at > (now() AT TIME ZONE 'utc') - interval '{LATE_WATCH_DAYS} days')) \
         ON CONFLICT (txid, log_index) {on_conflict} \
         RETURNING txid, log_index, from_address, to_address, amount_usdt::text AS amount"
    );
    Ok(diesel::sql_query(sql)
        .bind::<Array<Text>, _>(&columns.txids)
        .bind::<Array<Int4>, _>(&columns.log_indexes)
        .bind::<Array<Text>, _>(&columns.from)
        .bind::<Array<Text>, _>(&columns.to)
        .bind::<Array<Numeric>, _>(&columns.amounts)
        .bind::<BigInt, _>(i64::try_from(block_number).unwrap_or(i64::MAX))
        .bind::<Timestamp, _>(block_time)
        .load(conn)
        .await?)
}

fn to_naive(block_time_ms: i64) -> NaiveDateTime {
    chrono::DateTime::from_timestamp_millis(block_time_ms)
        .unwrap_or_default()
        .naive_utc()
}

/// Commits final block `number`: advances the cursor from `number - 1` (and
/// fails if another scanner moved it), confirms its watched transfers, drops
/// those detected at this height that the final block does not contain, and
/// writes a `payment.detected` event per change — all in the caller's
/// transaction. Returns the events written.
pub async fn commit_final_block(
    conn: &mut AsyncPgConnection,
    number: u64,
    block_time_ms: Option<i64>,
    found: &[FoundTransfer],
) -> Result<Vec<PaymentDetected>, DbError> {
    let height = i64::try_from(number).map_err(|_| DbError::Unavailable(format!("block {number} out of range")))?;
    let block_time = block_time_ms.map(to_naive);
    let moved = diesel::update(chain_state::table.filter(chain_state::cursor_block.eq(height - 1)))
        .set((
            chain_state::cursor_block.eq(height),
            chain_state::tip_block.eq(diesel::dsl::sql::<BigInt>("GREATEST(tip_block, ")
                .bind::<BigInt, _>(height)
                .sql(")")),
            chain_state::updated_at.eq(chrono::Utc::now().naive_utc()),
        ))
        .execute(conn)
        .await?;
    if moved != 1 {
        return Err(DbError::Unavailable(format!(
            "the cursor is no longer at block {} (another scanner?)",
            height - 1
        )));
    }
    if let Some(time) = block_time {
        diesel::update(chain_state::table)
            .set(chain_state::cursor_block_time.eq(time))
            .execute(conn)
            .await?;
    }

    let mut events = Vec::new();
    if let Some(time_ms) = block_time_ms {
        for stored in store_watched(conn, found, number, to_naive(time_ms), TransferState::Confirmed).await? {
            events.push(stored.event(number, time_ms, TransferState::Confirmed)?);
        }
    }
    // Detected at this height but not in the final block: dropped.
    let columns = columns(found);
    let dropped: Vec<(Stored, NaiveDateTime)> = diesel::sql_query(
        "UPDATE transfers SET status = 'dropped' WHERE status = 'detected' AND block_number = $1 \
         AND (txid, log_index) NOT IN (SELECT * FROM unnest($2::text[], $3::int[])) \
         RETURNING txid, log_index, from_address, to_address, amount_usdt::text AS amount, block_time",
    )
    .bind::<BigInt, _>(height)
    .bind::<Array<Text>, _>(&columns.txids)
    .bind::<Array<Int4>, _>(&columns.log_indexes)
    .load::<DroppedRow>(conn)
    .await?
    .into_iter()
    .map(|row| (row.stored, row.block_time))
    .collect();
    for (stored, time) in dropped {
        events.push(stored.event(number, time.and_utc().timestamp_millis(), TransferState::Dropped)?);
    }
    for event in &events {
        outbox::insert(conn, PAYMENT_DETECTED, event).await?;
    }
    Ok(events)
}

#[derive(QueryableByName)]
struct DroppedRow {
    #[diesel(embed)]
    stored: Stored,
    #[diesel(sql_type = Timestamp)]
    block_time: NaiveDateTime,
}

/// Records the watched transfers of a block that is not final yet as
/// detected (each at most once), with their events, and moves the tip marker.
pub async fn record_tip_block(
    conn: &mut AsyncPgConnection,
    number: u64,
    block_time_ms: i64,
    found: &[FoundTransfer],
) -> Result<Vec<PaymentDetected>, DbError> {
    let height = i64::try_from(number).map_err(|_| DbError::Unavailable(format!("block {number} out of range")))?;
    diesel::update(chain_state::table.filter(chain_state::tip_block.lt(height)))
        .set(chain_state::tip_block.eq(height))
        .execute(conn)
        .await?;
    let mut events = Vec::new();
    for stored in store_watched(conn, found, number, to_naive(block_time_ms), TransferState::Detected).await? {
        events.push(stored.event(number, block_time_ms, TransferState::Detected)?);
    }
    for event in &events {
        outbox::insert(conn, PAYMENT_DETECTED, event).await?;
    }
    Ok(events)
}

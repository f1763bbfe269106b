//! Receiving addresses tronpay hands out itself (PRODUCT §10): those
//! derived from the account xpub ahead of need, the imported address pool,
//! the raised amounts held on a shared address, and the operator's view of
//! every address it assigned.
//!
//! Derived addresses are written to `free_derived_addresses` in batches
//! ([`refill`]); a create deletes the free one with the lowest index in its
//! own statement (`FOR UPDATE SKIP LOCKED`, see
//! [`crate::payments::create_v1`]) and records the index on the payment, so
//! concurrent creates — on any number of API replicas — never take the same
//! one and never wait for each other. A create that rolls back leaves its
//! address free for the next one, so the indexes handed out have no gaps,
//! and an address handed out is never handed out again.
//!
//! Pool addresses (`receiving_addresses`, [`import_pool`]) are taken the
//! same way, one pending payment at a time, and come back
//! ([`release_pool`]) a grace period after their payment ended; raised
//! amounts ([`release_amounts`]) likewise.

use chrono::NaiveDateTime;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Integer, Nullable, Numeric, Text, Timestamp};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use tronpay_domain::xpub::{AccountXpub, XpubError};

use crate::error::DbError;
use crate::schema::receiving_addresses;

/// Free derived addresses kept ready (`free_derived_addresses`); fewer
/// makes [`refill`] derive more.
pub const KEEP_FREE: i64 = 1_000;
/// Addresses derived per [`refill`].
pub const REFILL_BATCH: u32 = 1_000;

/// Derives and stores the next [`REFILL_BATCH`] addresses of `account` when
/// fewer than [`KEEP_FREE`] are free; returns how many it stored. Each
/// refill takes its range of indexes from `derivation_accounts` in one
/// statement, so two replicas refilling at once derive different ones, and
/// an index is never derived (so never handed out) twice.
pub async fn refill(conn: &mut AsyncPgConnection, account: &AccountXpub) -> Result<usize, DbError> {
    use crate::schema::{derivation_accounts, free_derived_addresses as free};
    let free_now: i64 = free::table
        .filter(free::account.eq(account.id()))
        .count()
        .get_result(conn)
        .await?;
    if free_now >= KEEP_FREE {
        return Ok(0);
    }
    let batch = i64::from(REFILL_BATCH);
    let next: i64 = diesel::insert_into(derivation_accounts::table)
        .values((
            derivation_accounts::account.eq(account.id()),
            derivation_accounts::next_index.eq(batch),
        ))
        .on_conflict(derivation_accounts::account)
        .do_update()
        .set(derivation_accounts::next_index.eq(derivation_accounts::next_index + batch))
        .returning(derivation_accounts::next_index)
        .get_result(conn)
        .await?;
    let first = next - batch;
    // Deriving is CPU work (about 65 µs an address): off the async threads.
    let derive = account.clone();
    let derived = tokio::task::spawn_blocking(move || {
        let mut derived = Vec::new();
        for index in first..next {
            let Ok(index) = u32::try_from(index) else { break };
            match derive.address(index) {
                Ok(address) => derived.push((index, address.to_base58())),
                // BIP32: an index without a valid key is skipped (about
                // once in 2^127).
                Err(XpubError::InvalidChild(_)) => {}
                Err(XpubError::IndexOutOfRange(_)) => break,
                Err(error) => return Err(DbError::bug(format!("deriving address {index}: {error}"))),
            }
        }
        Ok(derived)
    })
    .await
    .map_err(|error| DbError::bug(format!("the derivation task failed: {error}")))??;
    let rows: Vec<_> = derived
        .iter()
        .map(|(index, address)| {
            (
                free::account.eq(account.id()),
                free::derivation_index.eq(i32::try_from(*index).unwrap_or(i32::MAX)),
                free::address.eq(address.as_str()),
            )
        })
        .collect();
    if rows.is_empty() {
        if free_now == 0 {
            return Err(DbError::bug(
                "the account's 2^31 receiving addresses are used up".to_owned(),
            ));
        }
        return Ok(0);
    }
    Ok(diesel::insert_into(free::table)
        .values(&rows)
        .on_conflict_do_nothing()
        .execute(conn)
        .await?)
}

/// The lowest index of a free derived address of `account` (0 when none is
/// free). Creates start their search there ([`crate::payments::AddressChoice`]):
/// until vacuum, the primary key still holds the entries of the addresses
/// handed out, and walking them on every create would cost more with every
/// payment.
pub async fn first_free(conn: &mut AsyncPgConnection, account: &AccountXpub) -> Result<i32, DbError> {
    use crate::schema::free_derived_addresses as free;
    let first: Option<i32> = free::table
        .filter(free::account.eq(account.id()))
        .select(diesel::dsl::min(free::derivation_index))
        .first(conn)
        .await?;
    Ok(first.unwrap_or(0))
}

/// An address tronpay handed out (or holds in its pool), as `tronpay
/// addresses list` shows it.
#[derive(Debug, Clone, QueryableByName)]
pub struct Assigned {
    #[diesel(sql_type = Text)]
    pub address: String,
    /// `xpub` or `pool`.
    #[diesel(sql_type = Text)]
    pub source: String,
    /// i in m/44'/195'/0'/0/i (derived addresses).
    #[diesel(sql_type = Nullable<Integer>)]
    pub derivation_index: Option<i32>,
    /// The payment that holds it (`None`: a free pool address).
    #[diesel(sql_type = Nullable<Text>)]
    pub payment_id: Option<String>,
    #[diesel(sql_type = Nullable<Timestamp>)]
    pub assigned_at: Option<NaiveDateTime>,
    /// A free pool address: the last payment it was lent to, if any.
    #[diesel(sql_type = Nullable<Text>)]
    pub last_payment_id: Option<String>,
    /// USDT received at the address in final transfers (what to sweep).
    #[diesel(sql_type = Numeric)]
    pub received: bigdecimal::BigDecimal,
    /// How many final transfers that is.
    #[diesel(sql_type = BigInt)]
    pub transfers: i64,
}

/// Every address handed out and every pool address, derived ones by index
/// first.
pub async fn assigned(conn: &mut AsyncPgConnection) -> Result<Vec<Assigned>, DbError> {
    Ok(diesel::sql_query(
        "SELECT a.address, a.source, a.derivation_index, a.payment_id, a.assigned_at, a.last_payment_id, \
                coalesce(sum(t.amount_usdt), 0) AS received, count(t.txid) AS transfers \
         FROM (SELECT p.wallet_address AS address, 'xpub' AS source, p.derivation_account AS account, \
                      p.derivation_index, p.id AS payment_id, p.created_at AS assigned_at, \
                      NULL::varchar AS last_payment_id \
               FROM payments p WHERE p.derivation_index IS NOT NULL \
               UNION ALL \
               SELECT r.address, r.source, NULL, NULL::integer, r.payment_id, r.assigned_at, \
                      CASE WHEN r.payment_id IS NULL THEN \
                        (SELECT p.id FROM payments p WHERE p.wallet_address = r.address AND p.address_mode = 'pool' \
                         ORDER BY p.created_at DESC, p.id DESC LIMIT 1) END \
               FROM receiving_addresses r) a \
         LEFT JOIN transfers t ON t.to_address = a.address AND t.status = 'confirmed' \
         GROUP BY a.address, a.source, a.account, a.derivation_index, a.payment_id, a.assigned_at, a.last_payment_id \
         ORDER BY a.source, a.account, a.derivation_index, a.address",
    )
    .load(conn)
    .await?)
}

/// When payment `p` ended, as SQL: completed (at `completed_at`), expired
/// (at `expires_at`) or cancelled (at its `cancelled` log row; `expires_at`
/// if it has none). Used only where `p.status <> 'pending'`.
///
/// A payment ends after it was created, so the releases below first skip
/// what was held or lent less than the grace period ago — most rows, read
/// without looking up their payment.
const ENDED_AT: &str = "coalesce(p.completed_at, \
     CASE WHEN p.status = 'expired' THEN p.expires_at END, \
     (SELECT max(l.created_at) FROM payment_logs l \
      WHERE l.payment_id = p.id AND l.event_type = 'cancelled'), \
     p.expires_at)";

/// Frees the raised amounts (`amount_reservations`) whose payment ended more
/// than `grace_seconds` ago ([`ENDED_AT`]), so the amount can be handed out
/// again; returns how many. Until then a late transfer of the amount can
/// only be the late buyer's.
pub async fn release_amounts(conn: &mut AsyncPgConnection, grace_seconds: u64) -> Result<usize, DbError> {
    Ok(diesel::sql_query(format!(
        "DELETE FROM amount_reservations r USING payments p \
         WHERE r.created_at < (now() AT TIME ZONE 'utc') - make_interval(secs => $1) \
           AND p.id = r.payment_id AND p.status <> 'pending' \
           AND {ENDED_AT} < (now() AT TIME ZONE 'utc') - make_interval(secs => $1)"
    ))
    .bind::<diesel::sql_types::Double, _>(grace_seconds as f64)
    .execute(conn)
    .await?)
}

/// Returns to the pool the pool addresses whose payment ended more than
/// `grace_seconds` ago ([`ENDED_AT`]); returns how many. Until then the
/// address stays with its payment, so a late transfer there still finds it
/// (and no other payment).
pub async fn release_pool(conn: &mut AsyncPgConnection, grace_seconds: u64) -> Result<usize, DbError> {
    Ok(diesel::sql_query(format!(
        "UPDATE receiving_addresses r \
         SET payment_id = NULL, assigned_at = NULL, released_at = now() AT TIME ZONE 'utc' \
         FROM payments p \
         WHERE r.source = 'pool' AND r.assigned_at < (now() AT TIME ZONE 'utc') - make_interval(secs => $1) \
           AND p.id = r.payment_id AND p.status <> 'pending' \
           AND {ENDED_AT} < (now() AT TIME ZONE 'utc') - make_interval(secs => $1)"
    ))
    .bind::<diesel::sql_types::Double, _>(grace_seconds as f64)
    .execute(conn)
    .await?)
}

/// How many pool addresses there are, and how many of them are free.
#[derive(Debug, Clone, Copy, PartialEq, Eq, QueryableByName)]
pub struct PoolCounts {
    /// Free: no payment holds them (lent first: never lent, then the one
    /// returned longest ago).
    #[diesel(sql_type = BigInt)]
    pub free: i64,
    /// Every imported address.
    #[diesel(sql_type = BigInt)]
    pub total: i64,
}

/// [`PoolCounts`] now.
pub async fn pool_counts(conn: &mut AsyncPgConnection) -> Result<PoolCounts, DbError> {
    Ok(diesel::sql_query(
        "SELECT count(*) FILTER (WHERE payment_id IS NULL) AS free, count(*) AS total \
         FROM receiving_addresses WHERE source = 'pool'",
    )
    .get_result(conn)
    .await?)
}

/// What [`import_pool`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Imported {
    /// Every address was added to the pool (this many).
    Added(usize),
    /// Nothing was added: these addresses are known already, each with its
    /// source (`pool` or `xpub`).
    AlreadyKnown(Vec<(String, String)>),
}

/// Adds `addresses` (Base58Check, checked by the caller, no duplicates) to
/// the pool, all or none: an address tronpay knows already — in the pool, or
/// derived from an account key — adds nothing and is named.
pub async fn import_pool(conn: &mut AsyncPgConnection, addresses: &[String]) -> Result<Imported, DbError> {
    use diesel_async::AsyncConnection;
    conn.transaction::<_, DbError, _>(async |conn| {
        use crate::schema::{free_derived_addresses as free, payments};
        let mut known: Vec<(String, String)> = Vec::new();
        for chunk in addresses.chunks(10_000) {
            known.extend(
                receiving_addresses::table
                    .filter(receiving_addresses::address.eq_any(chunk))
                    .select((receiving_addresses::address, receiving_addresses::source))
                    .load::<(String, String)>(conn)
                    .await?,
            );
            // Derived from an account key: free, or handed out.
            let derived = free::table
                .filter(free::address.eq_any(chunk))
                .select(free::address)
                .union(
                    payments::table
                        .filter(payments::wallet_address.eq_any(chunk))
                        .filter(payments::derivation_index.is_not_null())
                        .select(payments::wallet_address),
                )
                .load::<String>(conn)
                .await?;
            known.extend(derived.into_iter().map(|address| (address, "xpub".to_owned())));
        }
        if !known.is_empty() {
            known.sort();
            return Ok(Imported::AlreadyKnown(known));
        }
        let mut added = 0;
        for chunk in addresses.chunks(10_000) {
            let rows: Vec<_> = chunk
                .iter()
                .map(|address| {
                    (
                        receiving_addresses::address.eq(address.as_str()),
                        receiving_addresses::source.eq("pool"),
                    )
                })
                .collect();
            added += diesel::insert_into(receiving_addresses::table)
                .values(&rows)
                .execute(conn)
                .await?;
        }
        Ok(Imported::Added(added))
    })
    .await
}

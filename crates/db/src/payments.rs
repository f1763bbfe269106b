//! Queries on `payments`. Each takes a connection, so it runs the same inside
//! or outside a transaction.

use bigdecimal::BigDecimal;
use chrono::NaiveDateTime;
use diesel::pg::Pg;
use diesel::prelude::*;
use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};
use diesel::sql_types::{Array, BigInt, Nullable, Numeric, SmallInt, Text, Timestamp};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};

use crate::error::DbError;
use crate::idempotency;
use crate::models::PaymentRow;
use crate::schema::{payment_logs, payments};

/// The partial unique index that allows one pending payment per order id.
pub const PENDING_ORDER_INDEX: &str = "uq_payments_order_id_pending";

/// A payment to create, already validated by the caller.
#[derive(Debug)]
pub struct NewPayment<'a> {
    pub id: &'a str,
    pub wallet_address: &'a str,
    pub expected_amount: BigDecimal,
    pub callback_url: &'a str,
    pub order_id: &'a str,
    pub ttl_seconds: i64,
    /// The `created` log row written with it.
    pub log_message: &'a str,
    pub log_metadata: &'a str,
}

/// The times PostgreSQL assigned to a new payment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CreatedPayment {
    pub created_at: NaiveDateTime,
    pub expires_at: NaiveDateTime,
}

#[derive(Debug, thiserror::Error)]
pub enum CreateError {
    #[error("a pending payment with this order id exists")]
    DuplicatePendingOrder,
    #[error(transparent)]
    Db(#[from] DbError),
}

/// Inserts a pending payment and its `created` log row.
///
/// Both rows are written by one statement (one round trip, and atomic as
/// every statement is), with the times taken from the database clock so that
/// every replica agrees on `created_at` and `expires_at`.
pub async fn create(conn: &mut AsyncPgConnection, new: &NewPayment<'_>) -> Result<CreatedPayment, CreateError> {
    let result = CreatePaymentStatement(new)
        .get_result::<(NaiveDateTime, NaiveDateTime)>(conn)
        .await;
    match result.map_err(DbError::from) {
        Ok((created_at, expires_at)) => Ok(CreatedPayment { created_at, expires_at }),
        Err(error) if error.unique_violation() == Some(PENDING_ORDER_INDEX) => Err(CreateError::DuplicatePendingOrder),
        Err(error) => Err(error.into()),
    }
}

/// The statement behind [`create`]. A hand-written query fragment rather than
/// `sql_query`, because diesel caches prepared statements only for queries
/// with a static id: the hot path then costs a single round trip.
struct CreatePaymentStatement<'q, 'a>(&'q NewPayment<'a>);

impl QueryId for CreatePaymentStatement<'_, '_> {
    type QueryId = CreatePaymentStatement<'static, 'static>;
    const HAS_STATIC_QUERY_ID: bool = true;
}

impl Query for CreatePaymentStatement<'_, '_> {
    type SqlType = (Timestamp, Timestamp);
}

impl QueryFragment<Pg> for CreatePaymentStatement<'_, '_> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        let new = self.0;
        out.push_sql(
            "WITH inserted AS (INSERT INTO payments (id, wallet_address, expected_amount_usdt, callback_url, order_id, \
             status, created_at, expires_at, last_checked_timestamp) VALUES (",
        );
        out.push_bind_param::<Text, _>(&new.id)?;
        out.push_sql(", ");
        out.push_bind_param::<Text, _>(&new.wallet_address)?;
        out.push_sql(", ");
        out.push_bind_param::<Numeric, _>(&new.expected_amount)?;
        out.push_sql(", ");
        out.push_bind_param::<Text, _>(&new.callback_url)?;
        out.push_sql(", ");
        out.push_bind_param::<Text, _>(&new.order_id)?;
        out.push_sql(", 'pending', now() AT TIME ZONE 'utc', (now() AT TIME ZONE 'utc') + ");
        out.push_bind_param::<BigInt, _>(&new.ttl_seconds)?;
        out.push_sql(
            " * interval '1 second', (extract(epoch FROM now()) * 1000)::bigint) RETURNING id, created_at, expires_at), \
             logged AS (INSERT INTO payment_logs (payment_id, event_type, message, metadata, created_at) \
             SELECT id, 'created', ",
        );
        out.push_bind_param::<Text, _>(&new.log_message)?;
        out.push_sql(", ");
        out.push_bind_param::<Text, _>(&new.log_metadata)?;
        out.push_sql("::json, created_at FROM inserted) SELECT created_at, expires_at FROM inserted");
        Ok(())
    }
}

/// What [`create_v1`] did.
#[derive(Debug, Clone)]
pub enum CreatedV1 {
    /// The payment (with its idempotency key, when one was given) and its
    /// `created` log row were written; this is its address, and its
    /// `amount_to_pay` when raised.
    Created {
        address: String,
        amount_to_pay: Option<bigdecimal::BigDecimal>,
    },
    /// The idempotency key was already used (within [`idempotency::KEEP_HOURS`]):
    /// nothing was written; this is what the earlier request made.
    KeyUsed(Box<idempotency::Stored>),
    /// No derived address of the account is free ([`crate::receiving::refill`],
    /// then try again), or no pool address is: nothing was written.
    NoFreeAddress,
    /// Every amount from the amount to the amount + `steps` × `step` is
    /// held on the shared address: nothing was written.
    NoFreeAmount,
}

/// Gives back an address a create took (`from`; a derived one with its
/// `index`) for payment `id` that was not written (its idempotency key was
/// used).
async fn release_address(
    conn: &mut AsyncPgConnection,
    address: &str,
    id: &str,
    from: ClaimFrom<'_>,
    index: Option<i32>,
) -> Result<(), DbError> {
    match (from, index) {
        (ClaimFrom::Account { account, .. }, Some(index)) => {
            use crate::schema::free_derived_addresses as free;
            diesel::insert_into(free::table)
                .values((
                    free::account.eq(account),
                    free::derivation_index.eq(index),
                    free::address.eq(address),
                ))
                .on_conflict_do_nothing()
                .execute(conn)
                .await?;
        }
        (ClaimFrom::Account { .. }, None) => {
            return Err(DbError::bug(format!(
                "derived address {address} taken without its index"
            )));
        }
        (ClaimFrom::Pool, _) => {
            use crate::schema::receiving_addresses as addresses;
            diesel::update(
                addresses::table
                    .filter(addresses::address.eq(address))
                    .filter(addresses::payment_id.eq(id)),
            )
            .set((
                addresses::payment_id.eq(None::<String>),
                addresses::assigned_at.eq(None::<NaiveDateTime>),
            ))
            .execute(conn)
            .await?;
        }
    }
    Ok(())
}

/// Gives back an amount a create held for payment `id` that was not
/// written (its idempotency key was used).
async fn release_amount(
    conn: &mut AsyncPgConnection,
    address: &str,
    amount: &bigdecimal::BigDecimal,
    id: &str,
) -> Result<(), DbError> {
    use crate::schema::amount_reservations as held;
    diesel::delete(
        held::table
            .filter(held::address.eq(address))
            .filter(held::amount.eq(amount))
            .filter(held::payment_id.eq(id)),
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// How often a create retries after losing an amount (or, with the pool, an
/// address) to a concurrent one.
const AMOUNT_RACES: usize = 64;

/// Where a v1 payment's address comes from.
#[derive(Debug, Clone, Copy)]
pub enum AddressChoice<'a> {
    /// `payment.wallet_address`, as given (mode `given`).
    Given,
    /// The free derived address with the lowest index of the account `id`
    /// from `floor` on (mode `xpub`; `floor` is where the caller last saw the
    /// first free one, [`crate::receiving::first_free`]: the rows handed out
    /// before it are not walked again); `payment.wallet_address` is ignored.
    Derived { account: &'a str, floor: i32 },
    /// The free pool address that has rested longest (never lent first;
    /// mode `pool`); `payment.wallet_address` is ignored.
    Pool,
    /// `payment.wallet_address`, shared, with the amount raised by the
    /// smallest multiple of `step` (0 to `steps` of them) that no payment
    /// there holds (mode `unique_amount`); the amount is held in
    /// `amount_reservations` under its primary key.
    UniqueAmount {
        step: &'a bigdecimal::BigDecimal,
        steps: u32,
    },
}

/// Why a statement of [`create_v1`] wrote no payment.
enum Unwritten {
    Db(DbError),
    /// The key was used (what the statement took was given back).
    KeyUsed,
    NoFreeAddress,
    NoFreeAmount,
}

/// Inserts a v1 payment (`payment`, status `pending`, with the times the
/// caller chose), its `created` log row and, when the request carried an
/// `Idempotency-Key`, the key on the payment — one statement, so one round
/// trip and all or nothing. With [`AddressChoice::Derived`],
/// [`AddressChoice::Pool`] or [`AddressChoice::UniqueAmount`] the same
/// statement takes the address or holds the amount, unless the key already
/// has a payment; a request that raced another with its key and lost gives
/// it back in the next statement. A key already used (its payment created
/// less than [`idempotency::KEEP_HOURS`] ago) writes nothing and returns
/// that payment; an older one is forgotten and the key starts over.
///
/// # Errors
/// [`CreateError::DuplicatePendingOrder`] when the order id has a pending
/// payment (and the key, if any, is not that payment's); [`CreateError::Db`]
/// otherwise.
pub async fn create_v1(
    conn: &mut AsyncPgConnection,
    payment: &PaymentRow,
    log: (&str, &str),
    record: Option<&idempotency::NewRecord<'_>>,
    address: AddressChoice<'_>,
) -> Result<CreatedV1, CreateError> {
    for _ in 0..2 {
        let statement = CreateV1Statement {
            payment,
            id: payment.id.as_str(),
            log,
            api_key_id: record.map(|record| record.api_key_id),
            key: record.map(|record| record.key),
            request_hash: record.map(|record| record.request_hash),
        };
        let written = match address {
            AddressChoice::Given => statement
                .get_result::<i64>(conn)
                .await
                .map(|count| (count == 1).then(|| (payment.wallet_address.clone(), None)))
                .map_err(|error| Unwritten::Db(error.into())),
            AddressChoice::UniqueAmount { step, steps } => {
                let steps = i32::try_from(steps).unwrap_or(i32::MAX);
                // Mostly the amount itself is free: it is tried alone first
                // (a statement that plans once per connection), and the
                // walk over the raised amounts runs only when it is held.
                match hold_amount(conn, payment, Unique::<false> { statement, step, steps }).await {
                    Some(outcome) => outcome,
                    None => {
                        let walk = Unique::<true> { statement, step, steps };
                        let mut outcome = Err(Unwritten::NoFreeAmount);
                        for _ in 0..AMOUNT_RACES {
                            // None: another create took the amount first; the next.
                            if let Some(held) = hold_amount(conn, payment, walk).await {
                                outcome = held;
                                break;
                            }
                        }
                        outcome
                    }
                }
            }
            AddressChoice::Derived { account, floor } => {
                claim(conn, statement, ClaimFrom::Account { account, floor }).await
            }
            AddressChoice::Pool => claim(conn, statement, ClaimFrom::Pool).await,
        };
        let pending_order = match written {
            Ok(Some((address, amount_to_pay))) => return Ok(CreatedV1::Created { address, amount_to_pay }),
            Ok(None) | Err(Unwritten::KeyUsed) => false,
            Err(unwritten @ (Unwritten::NoFreeAddress | Unwritten::NoFreeAmount)) => {
                // A used key takes nothing (and a replay may find nothing
                // free when its own payment holds the last address or
                // amount): the key decides, below.
                let key_used = match record {
                    Some(record) => idempotency::stored(conn, record.api_key_id, record.key)
                        .await?
                        .is_some(),
                    None => false,
                };
                if !key_used {
                    return Ok(match unwritten {
                        Unwritten::NoFreeAmount => CreatedV1::NoFreeAmount,
                        _ => CreatedV1::NoFreeAddress,
                    });
                }
                false
            }
            Err(Unwritten::Db(error)) if error.unique_violation() == Some(PENDING_ORDER_INDEX) => true,
            Err(Unwritten::Db(error)) => return Err(error.into()),
        };
        let Some(record) = record else {
            return Err(CreateError::DuplicatePendingOrder);
        };
        // A request racing another with the same key and body can trip on
        // the order id's index before the key's: the key decides.
        match idempotency::stored(conn, record.api_key_id, record.key).await? {
            Some(stored) if !stored.expired(chrono::Utc::now().naive_utc()) => {
                return Ok(CreatedV1::KeyUsed(Box::new(stored)));
            }
            _ if pending_order => return Err(CreateError::DuplicatePendingOrder),
            // Expired (or cleared meanwhile): forget it and try once more.
            _ => {
                idempotency::forget_expired(conn, record.api_key_id, record.key).await?;
            }
        }
    }
    Err(DbError::bug("an idempotency key neither inserts nor replays").into())
}

/// What a statement of [`create_v1`] wrote: the payment's address and,
/// in mode `unique_amount`, the amount it holds; `None` when the key had a
/// payment already.
type Written = Option<(String, Option<bigdecimal::BigDecimal>)>;

/// Runs one [`Unique`]: `None` when the amount it picked was held first (by
/// another create, or — without the walk — by anyone), so the caller looks
/// again.
async fn hold_amount<const WALK: bool>(
    conn: &mut AsyncPgConnection,
    payment: &PaymentRow,
    unique: Unique<'_, WALK>,
) -> Option<Result<Written, Unwritten>> {
    let (count, amount, free): (i64, Option<bigdecimal::BigDecimal>, i64) = match unique.get_result(conn).await {
        Ok(row) => row,
        Err(error) => return Some(Err(Unwritten::Db(error.into()))),
    };
    Some(match (count, amount, free) {
        (1, Some(amount), _) => Ok(Some((payment.wallet_address.clone(), Some(amount)))),
        (_, Some(amount), _) => {
            // The key was used: the amount goes back.
            if let Err(error) = release_amount(conn, &payment.wallet_address, &amount, payment.id.as_str()).await {
                return Some(Err(Unwritten::Db(error)));
            }
            Err(Unwritten::KeyUsed)
        }
        (_, None, 0) => Err(Unwritten::NoFreeAmount),
        (_, None, _) => return None,
    })
}

/// The statement behind [`create_v1`] with a given address, prepared once
/// per connection.
#[derive(Clone, Copy)]
struct CreateV1Statement<'q> {
    payment: &'q PaymentRow,
    id: &'q str,
    log: (&'q str, &'q str),
    // The idempotency key's fields, all `None` without a key.
    api_key_id: Option<uuid::Uuid>,
    key: Option<&'q str>,
    request_hash: Option<&'q str>,
}

impl QueryId for CreateV1Statement<'_> {
    type QueryId = CreateV1Statement<'static>;
    const HAS_STATIC_QUERY_ID: bool = true;
}

impl Query for CreateV1Statement<'_> {
    type SqlType = BigInt;
}

impl QueryFragment<Pg> for CreateV1Statement<'_> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        out.push_sql("WITH ");
        self.insert(&mut out, None)?;
        out.push_sql(" SELECT count(*) FROM inserted");
        Ok(())
    }
}

impl<'q> CreateV1Statement<'q> {
    /// `NOT EXISTS (…)`: true unless the idempotency key (if any) has a
    /// payment. A replay then takes no address and holds no amount; only a
    /// request racing another with its key takes one, and gives it back.
    fn key_unused<'b>(&'b self, out: &mut AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        out.push_sql("NOT EXISTS (SELECT 1 FROM payments WHERE idempotency_key_id = ");
        out.push_bind_param::<Nullable<diesel::sql_types::Uuid>, _>(&self.api_key_id)?;
        out.push_sql(" AND idempotency_key = ");
        out.push_bind_param::<Nullable<Text>, _>(&self.key)?;
        out.push_sql(")");
        Ok(())
    }

    /// `inserted AS (INSERT …), logged AS (INSERT …)`: the payment — at
    /// the address `from` took when given, else at its own — and its log
    /// row.
    fn insert<'b>(&'b self, out: &mut AstPass<'_, 'b, Pg>, from: Option<Taken>) -> QueryResult<()> {
        let address_from = from.filter(|taken| taken.address).map(|taken| taken.cte);
        let payment = self.payment;
        out.push_sql(
            "inserted AS (INSERT INTO payments (id, wallet_address, expected_amount_usdt, callback_url, order_id, \
             notify_events, api_version, redirect_url, metadata_json, checkout_url, status, created_at, expires_at, \
             last_checked_timestamp, idempotency_key_id, idempotency_key, idempotency_request_hash, address_mode, \
             amount_to_pay, derivation_account, derivation_index) SELECT ",
        );
        out.push_bind_param::<Text, _>(&self.id)?;
        out.push_sql(", ");
        match address_from {
            Some(cte) => {
                out.push_sql(cte);
                out.push_sql(".address");
            }
            None => out.push_bind_param::<Text, _>(&payment.wallet_address)?,
        }
        out.push_sql(", ");
        out.push_bind_param::<Numeric, _>(&payment.expected_amount_usdt)?;
        out.push_sql(", ");
        out.push_bind_param::<Text, _>(&payment.callback_url)?;
        out.push_sql(", ");
        out.push_bind_param::<Text, _>(&payment.order_id)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<Text>, _>(&payment.notify_events)?;
        out.push_sql(", ");
        out.push_bind_param::<SmallInt, _>(&payment.api_version)?;
        out.push_sql(", ");
        out.push_bind_param::<Nullable<Text>, _>(&payment.redirect_url)?;
        out.push_sql(", ");
        out.push_bind_param::<Nullable<Text>, _>(&payment.metadata_json)?;
        out.push_sql(", ");
        out.push_bind_param::<Nullable<Text>, _>(&payment.checkout_url)?;
        out.push_sql(", 'pending'::payment_status, ");
        out.push_bind_param::<Timestamp, _>(&payment.created_at)?;
        out.push_sql(", ");
        out.push_bind_param::<Timestamp, _>(&payment.expires_at)?;
        out.push_sql(", ");
        out.push_bind_param::<BigInt, _>(&payment.last_checked_timestamp)?;
        out.push_sql(", ");
        out.push_bind_param::<Nullable<diesel::sql_types::Uuid>, _>(&self.api_key_id)?;
        out.push_sql(", ");
        out.push_bind_param::<Nullable<Text>, _>(&self.key)?;
        out.push_sql(", ");
        out.push_bind_param::<Nullable<Text>, _>(&self.request_hash)?;
        match from {
            Some(taken) => {
                out.push_sql(", '");
                out.push_sql(taken.mode);
                out.push_sql("', ");
                out.push_sql(if taken.amount { "taken.amount" } else { "NULL" });
                out.push_sql(if taken.derived {
                    ", taken.account, taken.derivation_index"
                } else {
                    ", NULL, NULL"
                });
                out.push_sql(" FROM ");
                out.push_sql(taken.cte);
            }
            None => out.push_sql(", 'given', NULL, NULL, NULL"),
        }
        // A key already used inserts nothing (waiting for a racing request
        // with the key to commit first).
        out.push_sql(
            " ON CONFLICT (idempotency_key_id, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING \
             RETURNING id, created_at), \
             logged AS (INSERT INTO payment_logs (payment_id, event_type, message, metadata, created_at) \
             SELECT id, 'created', ",
        );
        // The log row of a taken address names it: in the message where the
        // caller wrote [`ADDRESS_PLACEHOLDER`], and as the metadata's
        // `wallet_address`.
        match address_from {
            Some(cte) => {
                out.push_sql("replace(");
                out.push_bind_param::<Text, _>(&self.log.0)?;
                out.push_sql(", chr(1), (SELECT address FROM ");
                out.push_sql(cte);
                out.push_sql(")), jsonb_set(");
                out.push_bind_param::<Text, _>(&self.log.1)?;
                out.push_sql("::jsonb, '{wallet_address}', to_jsonb((SELECT address FROM ");
                out.push_sql(cte);
                out.push_sql(")))::json");
            }
            None => {
                out.push_bind_param::<Text, _>(&self.log.0)?;
                out.push_sql(", ");
                out.push_bind_param::<Text, _>(&self.log.1)?;
                out.push_sql("::json");
            }
        }
        out.push_sql(", created_at FROM inserted)");
        Ok(())
    }
}

/// What a CTE of a create took for the payment: the rows of `cte`, whose
/// `address` column is the payment's address when `address`, whose
/// `amount` column its `amount_to_pay` when `amount`, and whose `account`
/// and `derivation_index` columns its derivation when `derived`; `mode` is
/// its `address_mode`.
#[derive(Clone, Copy)]
struct Taken {
    cte: &'static str,
    mode: &'static str,
    address: bool,
    amount: bool,
    derived: bool,
}

/// [`CreateV1Statement`] at the shared address with the lowest free raised
/// amount, held in the same statement; answers how many payments it
/// inserted, the amount it held (`NULL`: none, or another create held it
/// first) and how many amounts looked free. Without `WALK` it tries only
/// the amount itself (one amount "looks free"; `NULL` then means it is
/// held); with `WALK`, the lowest raised amount no payment holds.
#[derive(Clone, Copy)]
struct Unique<'q, const WALK: bool> {
    statement: CreateV1Statement<'q>,
    step: &'q bigdecimal::BigDecimal,
    steps: i32,
}

impl<const WALK: bool> QueryId for Unique<'_, WALK> {
    type QueryId = Unique<'static, WALK>;
    const HAS_STATIC_QUERY_ID: bool = true;
}

impl<const WALK: bool> Query for Unique<'_, WALK> {
    type SqlType = (BigInt, Nullable<Numeric>, BigInt);
}

impl<const WALK: bool> QueryFragment<Pg> for Unique<'_, WALK> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        let payment = self.statement.payment;
        if WALK {
            self.walk(&mut out)?;
        } else {
            out.push_sql("WITH picked AS (SELECT CAST(");
            out.push_bind_param::<Numeric, _>(&payment.expected_amount_usdt)?;
            out.push_sql(" AS numeric) AS amount)");
        }
        // The primary key decides between creates that picked one amount.
        out.push_sql(
            ", \
             taken AS (INSERT INTO amount_reservations (address, amount, payment_id, created_at) SELECT ",
        );
        out.push_bind_param::<Text, _>(&payment.wallet_address)?;
        out.push_sql(", amount, ");
        out.push_bind_param::<Text, _>(&self.statement.id)?;
        out.push_sql(", ");
        out.push_bind_param::<Timestamp, _>(&payment.created_at)?;
        out.push_sql(" FROM picked WHERE ");
        self.statement.key_unused(&mut out)?;
        out.push_sql(" ON CONFLICT DO NOTHING RETURNING amount), ");
        self.statement.insert(
            &mut out,
            Some(Taken {
                cte: "taken",
                mode: "unique_amount",
                address: false,
                amount: true,
                derived: false,
            }),
        )?;
        // How many amounts looked free (none when the key was used: a
        // replay does not look again).
        out.push_sql(" SELECT (SELECT count(*) FROM inserted), (SELECT amount FROM taken), CASE WHEN ");
        self.statement.key_unused(&mut out)?;
        out.push_sql(" THEN (SELECT count(*) FROM picked) ELSE 0 END");
        Ok(())
    }
}

impl<const WALK: bool> Unique<'_, WALK> {
    /// `WITH held AS (…), picked AS (…)`: the lowest amount of the window
    /// (the amount raised by 0 to `steps` steps) that no payment holds.
    fn walk<'b>(&'b self, out: &mut AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        let payment = self.statement.payment;
        // The amounts held in this payment's window, read by an index range
        // scan (an anti join would read every amount held on the address).
        out.push_sql("WITH held AS (SELECT amount FROM amount_reservations WHERE address = ");
        out.push_bind_param::<Text, _>(&payment.wallet_address)?;
        out.push_sql(" AND amount BETWEEN CAST(");
        out.push_bind_param::<Numeric, _>(&payment.expected_amount_usdt)?;
        out.push_sql(" AS numeric) AND CAST(");
        out.push_bind_param::<Numeric, _>(&payment.expected_amount_usdt)?;
        out.push_sql(" AS numeric) + ");
        out.push_bind_param::<diesel::sql_types::Integer, _>(&self.steps)?;
        out.push_sql(" * ");
        out.push_bind_param::<Numeric, _>(self.step)?;
        out.push_sql("), picked AS (SELECT CAST(");
        out.push_bind_param::<Numeric, _>(&payment.expected_amount_usdt)?;
        out.push_sql(" AS numeric) + k * ");
        out.push_bind_param::<Numeric, _>(self.step)?;
        out.push_sql(" AS amount FROM generate_series(0, ");
        out.push_bind_param::<diesel::sql_types::Integer, _>(&self.steps)?;
        out.push_sql(") AS k WHERE CAST(");
        out.push_bind_param::<Numeric, _>(&payment.expected_amount_usdt)?;
        out.push_sql(" AS numeric) + k * ");
        out.push_bind_param::<Numeric, _>(self.step)?;
        out.push_sql(" NOT IN (SELECT amount FROM held) ORDER BY k LIMIT 1)");
        Ok(())
    }
}

/// Stands for the address in the message of a derived payment's `created`
/// log row until the statement knows it (the message is made of the address
/// and the amount, which never contain it).
pub const ADDRESS_PLACEHOLDER: &str = "\u{1}";

/// Where [`Claimed`] takes its address.
#[derive(Debug, Clone, Copy)]
enum ClaimFrom<'q> {
    /// The free derived address of `account` with the lowest index from
    /// `floor` on.
    Account { account: &'q str, floor: i32 },
    /// The free pool address that came back longest ago (never lent first).
    Pool,
}

/// Runs [`Claimed`]: the payment at the address taken, or why none was
/// written. A create that saw a free pool address in its snapshot but lost
/// every one to concurrent creates looks again, so a 409 means the pool
/// really was empty.
async fn claim(
    conn: &mut AsyncPgConnection,
    statement: CreateV1Statement<'_>,
    from: ClaimFrom<'_>,
) -> Result<Written, Unwritten> {
    let claimed = Claimed { statement, from };
    for _ in 0..AMOUNT_RACES {
        match claimed
            .get_result::<(i64, Option<String>, Option<i32>, bool)>(conn)
            .await
        {
            Ok((1, Some(address), _, _)) => return Ok(Some((address, None))),
            Ok((_, None, _, true)) if matches!(from, ClaimFrom::Pool) => continue,
            Ok((_, None, _, _)) => return Err(Unwritten::NoFreeAddress),
            Ok((_, Some(address), index, _)) => {
                // The key was used: the address goes back (it was never
                // handed out).
                release_address(conn, &address, statement.id, from, index)
                    .await
                    .map_err(Unwritten::Db)?;
                return Err(Unwritten::KeyUsed);
            }
            Err(error) => return Err(Unwritten::Db(error.into())),
        }
    }
    Err(Unwritten::NoFreeAddress)
}

/// [`CreateV1Statement`] at the address [`ClaimFrom`] names, taken in the
/// same statement; answers how many payments it inserted, the address it
/// took (`NULL`: none was free, or concurrent creates took every one it
/// tried) and whether a free one was seen.
#[derive(Clone, Copy)]
struct Claimed<'q> {
    statement: CreateV1Statement<'q>,
    from: ClaimFrom<'q>,
}

impl QueryId for Claimed<'_> {
    type QueryId = Claimed<'static>;
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl Query for Claimed<'_> {
    type SqlType = (
        BigInt,
        Nullable<Text>,
        Nullable<diesel::sql_types::Integer>,
        diesel::sql_types::Bool,
    );
}

impl QueryFragment<Pg> for Claimed<'_> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        // Creates running at once skip each other's rows instead of waiting.
        let (mode, derived, free) = match &self.from {
            ClaimFrom::Account { account, floor } => {
                // A derived address leaves the free list for good: a delete
                // writes no new row version and no index entry.
                out.push_sql("WITH taken AS (DELETE FROM free_derived_addresses WHERE account = ");
                out.push_bind_param::<Text, _>(account)?;
                out.push_sql(" AND ");
                self.statement.key_unused(&mut out)?;
                out.push_sql(
                    " AND derivation_index = (SELECT derivation_index FROM free_derived_addresses WHERE account = ",
                );
                out.push_bind_param::<Text, _>(account)?;
                out.push_sql(" AND derivation_index >= ");
                out.push_bind_param::<diesel::sql_types::Integer, _>(floor)?;
                out.push_sql(
                    " ORDER BY derivation_index LIMIT 1 FOR UPDATE SKIP LOCKED) \
                     RETURNING address, account, derivation_index), ",
                );
                // A derived address lost to a concurrent create is followed
                // by a refill, not a second look.
                ("xpub", true, "(SELECT derivation_index FROM taken), false")
            }
            ClaimFrom::Pool => {
                out.push_sql("WITH taken AS (UPDATE receiving_addresses SET payment_id = ");
                out.push_bind_param::<Text, _>(&self.statement.id)?;
                out.push_sql(", assigned_at = ");
                out.push_bind_param::<Timestamp, _>(&self.statement.payment.created_at)?;
                out.push_sql(
                    " WHERE address = (SELECT address FROM receiving_addresses WHERE payment_id IS NULL \
                     ORDER BY released_at NULLS FIRST, address LIMIT 1 FOR UPDATE SKIP LOCKED) AND ",
                );
                self.statement.key_unused(&mut out)?;
                out.push_sql(" RETURNING address), ");
                // A create that lost every free address it saw to
                // concurrent ones looks again, unless its key was used.
                (
                    "pool",
                    false,
                    "NULL::integer, EXISTS (SELECT 1 FROM receiving_addresses WHERE payment_id IS NULL) AND ",
                )
            }
        };
        self.statement.insert(
            &mut out,
            Some(Taken {
                cte: "taken",
                mode,
                address: true,
                amount: false,
                derived,
            }),
        )?;
        out.push_sql(" SELECT (SELECT count(*) FROM inserted), (SELECT address FROM taken), ");
        out.push_sql(free);
        if !derived {
            self.statement.key_unused(&mut out)?;
        }
        Ok(())
    }
}

/// The payment with this id, if any.
pub async fn find(conn: &mut AsyncPgConnection, id: &str) -> Result<Option<PaymentRow>, DbError> {
    Ok(payments::table
        .find(id)
        .select(PaymentRow::as_select())
        .first(conn)
        .await
        .optional()?)
}

/// The payments with these ids (those that exist, in no order).
pub async fn find_many(conn: &mut AsyncPgConnection, ids: &[String]) -> Result<Vec<PaymentRow>, DbError> {
    Ok(payments::table
        .filter(payments::id.eq_any(ids))
        .select(PaymentRow::as_select())
        .load(conn)
        .await?)
}

/// The `limit` most recently created payments, newest first.
pub async fn recent(conn: &mut AsyncPgConnection, limit: i64) -> Result<Vec<PaymentRow>, DbError> {
    Ok(payments::table
        .order((payments::created_at.desc(), payments::id.desc()))
        .limit(limit)
        .select(PaymentRow::as_select())
        .load(conn)
        .await?)
}

/// One page of payments in `(created_at, id)` order, after the given key;
/// export walks the table this way, so memory stays flat however large it is.
pub async fn page_after(
    conn: &mut AsyncPgConnection,
    after: Option<(NaiveDateTime, String)>,
    limit: i64,
) -> Result<Vec<PaymentRow>, DbError> {
    let mut query = payments::table
        .order((payments::created_at.asc(), payments::id.asc()))
        .limit(limit)
        .select(PaymentRow::as_select())
        .into_boxed();
    if let Some((created_at, id)) = after {
        query = query.filter(
            payments::created_at
                .gt(created_at)
                .or(payments::created_at.eq(created_at).and(payments::id.gt(id))),
        );
    }
    Ok(query.load(conn).await?)
}

/// Inserts payments read from an export, skipping any whose id exists
/// already or whose order id is pending under another payment; each inserted
/// payment gets an `imported` log row in the same transaction. Returns the
/// ids inserted.
pub async fn import(conn: &mut AsyncPgConnection, rows: &[PaymentRow], source: &str) -> Result<Vec<String>, DbError> {
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let message = format!("Payment imported from {source}");
    conn.transaction::<_, DbError, _>(async |conn| {
        let inserted: Vec<String> = diesel::insert_into(payments::table)
            .values(rows.to_vec())
            .on_conflict_do_nothing()
            .returning(payments::id)
            .get_results(conn)
            .await?;
        let logs: Vec<_> = inserted
            .iter()
            .map(|id| {
                (
                    payment_logs::payment_id.eq(id),
                    payment_logs::event_type.eq(tronpay_domain::LogEvent::Imported.as_str()),
                    payment_logs::message.eq(Some(&message)),
                )
            })
            .collect();
        if !logs.is_empty() {
            diesel::insert_into(payment_logs::table)
                .values(&logs)
                .execute(conn)
                .await?;
        }
        Ok(inserted)
    })
    .await
}

/// How many payments there are.
pub async fn count(conn: &mut AsyncPgConnection) -> Result<i64, DbError> {
    Ok(payments::table.count().get_result(conn).await?)
}

/// The oldest pending payment: its id and `created_at` (UTC), if any is
/// pending. The chain watcher's first start scans from its block.
pub async fn oldest_pending(conn: &mut AsyncPgConnection) -> Result<Option<(String, NaiveDateTime)>, DbError> {
    Ok(payments::table
        .filter(payments::status.eq(crate::models::DbStatus(tronpay_domain::PaymentStatus::Pending)))
        .order((payments::created_at.asc(), payments::id.asc()))
        .select((payments::id, payments::created_at))
        .first(conn)
        .await
        .optional()?)
}

/// What `GET /v1/payments` filters on; every field is optional.
#[derive(Debug, Clone, Default)]
pub struct ListFilter {
    pub status: Option<tronpay_domain::PaymentStatus>,
    pub order_id: Option<String>,
    /// A receiving address (Base58).
    pub address: Option<String>,
    /// `created_at >= created_from` (UTC).
    pub created_from: Option<NaiveDateTime>,
    /// `created_at < created_to` (UTC).
    pub created_to: Option<NaiveDateTime>,
    /// A txid (64 hex digits): the payment it completed, or any payment one
    /// of its transfers was credited to.
    pub transaction: Option<String>,
}

/// A page of payments, newest first (`(created_at, id)` descending), after
/// the row `after` when given. Stable while payments are created: a new
/// payment sorts before every page already read, so paging on never shows a
/// row twice or skips one that existed when paging began.
pub async fn list(
    conn: &mut AsyncPgConnection,
    filter: &ListFilter,
    after: Option<(NaiveDateTime, String)>,
    limit: i64,
) -> Result<Vec<PaymentRow>, DbError> {
    let mut query = payments::table
        .order((payments::created_at.desc(), payments::id.desc()))
        .limit(limit)
        .select(PaymentRow::as_select())
        .into_boxed();
    if let Some(status) = filter.status {
        query = query.filter(payments::status.eq(crate::models::DbStatus(status)));
    }
    if let Some(order_id) = &filter.order_id {
        query = query.filter(payments::order_id.eq(order_id.clone()));
    }
    if let Some(address) = &filter.address {
        query = query.filter(payments::wallet_address.eq(address.clone()));
    }
    if let Some(from) = filter.created_from {
        query = query.filter(payments::created_at.ge(from));
    }
    if let Some(to) = filter.created_to {
        query = query.filter(payments::created_at.lt(to));
    }
    if let Some(txid) = &filter.transaction {
        use crate::schema::transfers;
        let credited = transfers::table
            .filter(transfers::txid.eq(txid.clone()))
            .select(transfers::payment_id);
        query = query.filter(
            payments::transaction_hash
                .eq(txid.clone())
                .or(payments::id.nullable().eq_any(credited)),
        );
    }
    if let Some((created_at, id)) = after {
        query = query.filter(
            payments::created_at
                .lt(created_at)
                .or(payments::created_at.eq(created_at).and(payments::id.lt(id))),
        );
    }
    Ok(query.load(conn).await?)
}

/// Cancels a pending payment (status `failed`); `None` when it is not
/// pending (any more). Take its address's lock first, as matching does, so
/// that a cancel and a completing transfer serialise and exactly one wins.
pub async fn cancel(
    conn: &mut AsyncPgConnection,
    id: &tronpay_domain::PaymentId,
) -> Result<Option<PaymentRow>, DbError> {
    use crate::models::DbStatus;
    use tronpay_domain::PaymentStatus;
    Ok(diesel::update(
        payments::table
            .filter(payments::id.eq(id.as_str()))
            .filter(payments::status.eq(DbStatus(PaymentStatus::Pending))),
    )
    .set(payments::status.eq(DbStatus(PaymentStatus::Failed)))
    .returning(PaymentRow::as_returning())
    .get_result(conn)
    .await
    .optional()?)
}

/// The payment `id`, locked until the transaction ends.
pub async fn lock(conn: &mut AsyncPgConnection, id: &tronpay_domain::PaymentId) -> Result<Option<PaymentRow>, DbError> {
    Ok(payments::table
        .find(id.as_str())
        .select(PaymentRow::as_select())
        .for_update()
        .first(conn)
        .await
        .optional()?)
}

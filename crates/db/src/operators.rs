//! Operators of the dashboard (`operators`), what they did
//! (`operator_actions`), their sessions
//! (`operator_sessions`) and failed sign-ins (`operator_sign_in_failures`):
//! what `tronpay admin` writes and `/admin` reads. Passwords are stored only
//! as argon2 PHC strings and sessions only as the SHA-256 of their token, both
//! made by the caller; this module never sees a password or a token.

use chrono::NaiveDateTime;
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use crate::error::DbError;
use crate::schema::{operator_actions, operator_sessions, operator_sign_in_failures, operators};

/// An operator as stored.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = operators, check_for_backend(diesel::pg::Pg))]
pub struct OperatorRow {
    pub id: Uuid,
    /// Their sign-in name (1 to 64 characters), shown in the audit trail.
    pub name: String,
    /// The argon2 PHC string (`$argon2id$…`) of their password.
    pub password_hash: String,
    pub created_at: NaiveDateTime,
    pub password_changed_at: NaiveDateTime,
}

/// Creates operator `name` with `password_hash`; `Ok(None)` when the name is
/// taken.
pub async fn create(
    conn: &mut AsyncPgConnection,
    name: &str,
    password_hash: &str,
) -> Result<Option<OperatorRow>, DbError> {
    Ok(diesel::insert_into(operators::table)
        .values((
            operators::id.eq(Uuid::new_v4()),
            operators::name.eq(name),
            operators::password_hash.eq(password_hash),
        ))
        .on_conflict(operators::name)
        .do_nothing()
        .returning(OperatorRow::as_returning())
        .get_result(conn)
        .await
        .optional()?)
}

/// Replaces `name`'s password hash and ends all their sessions; `false` when
/// there is no such operator.
pub async fn set_password(conn: &mut AsyncPgConnection, name: &str, password_hash: &str) -> Result<bool, DbError> {
    let changed: Option<Uuid> = diesel::update(operators::table.filter(operators::name.eq(name)))
        .set((
            operators::password_hash.eq(password_hash),
            operators::password_changed_at.eq(diesel::dsl::now.at_time_zone("utc")),
        ))
        .returning(operators::id)
        .get_result(conn)
        .await
        .optional()?;
    let Some(id) = changed else { return Ok(false) };
    diesel::delete(operator_sessions::table.filter(operator_sessions::operator_id.eq(id)))
        .execute(conn)
        .await?;
    Ok(true)
}

/// The operator named `name`.
pub async fn find(conn: &mut AsyncPgConnection, name: &str) -> Result<Option<OperatorRow>, DbError> {
    Ok(operators::table
        .filter(operators::name.eq(name))
        .select(OperatorRow::as_select())
        .first(conn)
        .await
        .optional()?)
}

/// A signed-in session: its operator's name and its CSRF token.
#[derive(Debug, Clone)]
pub struct Session {
    pub operator_id: Uuid,
    pub operator: String,
    /// Every form of the session carries it (64 hex digits).
    pub csrf_token: String,
    pub expires_at: NaiveDateTime,
}

/// Starts a session of `operator_id` under `token_hash` (SHA-256 of the
/// cookie's token, hex) until `expires_at` (UTC).
pub async fn start_session(
    conn: &mut AsyncPgConnection,
    operator_id: Uuid,
    token_hash: &str,
    csrf_token: &str,
    expires_at: NaiveDateTime,
) -> Result<(), DbError> {
    diesel::insert_into(operator_sessions::table)
        .values((
            operator_sessions::token_hash.eq(token_hash),
            operator_sessions::operator_id.eq(operator_id),
            operator_sessions::csrf_token.eq(csrf_token),
            operator_sessions::expires_at.eq(expires_at),
        ))
        .execute(conn)
        .await?;
    Ok(())
}

/// The unexpired session stored under `token_hash`, with its operator.
pub async fn session(conn: &mut AsyncPgConnection, token_hash: &str) -> Result<Option<Session>, DbError> {
    let row: Option<(Uuid, String, String, NaiveDateTime)> = operator_sessions::table
        .inner_join(operators::table)
        .filter(operator_sessions::token_hash.eq(token_hash))
        .filter(operator_sessions::expires_at.gt(diesel::dsl::now.at_time_zone("utc")))
        .select((
            operators::id,
            operators::name,
            operator_sessions::csrf_token,
            operator_sessions::expires_at,
        ))
        .first(conn)
        .await
        .optional()?;
    Ok(row.map(|(operator_id, operator, csrf_token, expires_at)| Session {
        operator_id,
        operator,
        csrf_token,
        expires_at,
    }))
}

/// Ends the session stored under `token_hash` (and any expired ones).
pub async fn end_session(conn: &mut AsyncPgConnection, token_hash: &str) -> Result<(), DbError> {
    diesel::delete(
        operator_sessions::table.filter(
            operator_sessions::token_hash
                .eq(token_hash)
                .or(operator_sessions::expires_at.le(diesel::dsl::now.at_time_zone("utc"))),
        ),
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Records a failed sign-in as `name` from `client_ip`.
pub async fn record_failure(conn: &mut AsyncPgConnection, name: &str, client_ip: &str) -> Result<(), DbError> {
    diesel::insert_into(operator_sign_in_failures::table)
        .values((
            operator_sign_in_failures::name.eq(name),
            operator_sign_in_failures::client_ip.eq(client_ip),
        ))
        .execute(conn)
        .await?;
    Ok(())
}

/// Failed sign-ins as `name` and from `client_ip` since `since` (UTC):
/// `(as the name, from the address)`. Older failures are deleted on the way.
pub async fn recent_failures(
    conn: &mut AsyncPgConnection,
    name: &str,
    client_ip: &str,
    since: NaiveDateTime,
) -> Result<(i64, i64), DbError> {
    use operator_sign_in_failures as failures;
    diesel::delete(failures::table.filter(failures::at.lt(since)))
        .execute(conn)
        .await?;
    let by_name: i64 = failures::table
        .filter(failures::name.eq(name))
        .count()
        .get_result(conn)
        .await?;
    let by_ip: i64 = failures::table
        .filter(failures::client_ip.eq(client_ip))
        .count()
        .get_result(conn)
        .await?;
    Ok((by_name, by_ip))
}

/// One thing an operator did from the dashboard (`operator_actions`).
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = operator_actions, check_for_backend(diesel::pg::Pg))]
pub struct ActionRow {
    /// The operator's name.
    pub operator: String,
    /// What they did: `cancel payment`, `send delivery again`, `retry dead
    /// deliveries`, `assign transfer`, `create API key`, `revoke API key`.
    pub action: String,
    /// What it was done to: a payment id, a delivery id, `txid:log index →
    /// payment id`, `tpk_<prefix> "name"`, a count (at most 200 characters).
    pub subject: String,
    /// When (UTC).
    pub at: NaiveDateTime,
}

/// Records that `operator` did `action` to `subject` (cut to 200
/// characters).
pub async fn record_action(
    conn: &mut AsyncPgConnection,
    operator: &str,
    action: &str,
    subject: &str,
) -> Result<(), DbError> {
    let subject: String = subject.chars().take(200).collect();
    diesel::insert_into(operator_actions::table)
        .values((
            operator_actions::operator.eq(operator),
            operator_actions::action.eq(action),
            operator_actions::subject.eq(subject),
        ))
        .execute(conn)
        .await?;
    Ok(())
}

/// The `limit` most recent operator actions, newest first.
pub async fn recent_actions(conn: &mut AsyncPgConnection, limit: i64) -> Result<Vec<ActionRow>, DbError> {
    Ok(operator_actions::table
        .order((operator_actions::at.desc(), operator_actions::id.desc()))
        .limit(limit)
        .select(ActionRow::as_select())
        .load(conn)
        .await?)
}

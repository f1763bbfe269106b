//! API keys (`api_keys`): created by `tronpay keys create`, found by their
//! public prefix, revoked, and their last use recorded.

use chrono::NaiveDateTime;
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use tronpay_domain::{ApiKeyText, Scope};
use uuid::Uuid;

use crate::error::DbError;
use crate::schema::api_keys;

/// A key as stored: never the key itself, only its hash.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = api_keys, check_for_backend(diesel::pg::Pg))]
pub struct ApiKeyRow {
    pub id: Uuid,
    pub name: String,
    /// The public part of the key (`tpk_<prefix>_…`).
    pub prefix: String,
    /// SHA-256 of the whole key, 64 hex digits.
    pub secret_hash: String,
    /// [`Scope`] names.
    pub scopes: Vec<String>,
    pub created_at: NaiveDateTime,
    pub last_used_at: Option<NaiveDateTime>,
    pub revoked_at: Option<NaiveDateTime>,
}

impl ApiKeyRow {
    /// Its scopes; an unknown name (written by hand) grants nothing.
    pub fn scopes(&self) -> Vec<Scope> {
        self.scopes.iter().filter_map(|name| name.parse().ok()).collect()
    }
}

/// Stores a new key named `name` with `scopes`; returns its row.
pub async fn create(
    conn: &mut AsyncPgConnection,
    name: &str,
    key: &ApiKeyText,
    scopes: &[Scope],
) -> Result<ApiKeyRow, DbError> {
    Ok(diesel::insert_into(api_keys::table)
        .values((
            api_keys::id.eq(Uuid::new_v4()),
            api_keys::name.eq(name),
            api_keys::prefix.eq(key.prefix()),
            api_keys::secret_hash.eq(key.hash()),
            api_keys::scopes.eq(scopes.iter().map(|scope| scope.as_str()).collect::<Vec<_>>()),
        ))
        .returning(ApiKeyRow::as_returning())
        .get_result(conn)
        .await?)
}

/// The key with this prefix, revoked or not.
pub async fn find(conn: &mut AsyncPgConnection, prefix: &str) -> Result<Option<ApiKeyRow>, DbError> {
    Ok(api_keys::table
        .filter(api_keys::prefix.eq(prefix))
        .select(ApiKeyRow::as_select())
        .first(conn)
        .await
        .optional()?)
}

/// Every key, newest first.
pub async fn list(conn: &mut AsyncPgConnection) -> Result<Vec<ApiKeyRow>, DbError> {
    Ok(api_keys::table
        .order(api_keys::created_at.desc())
        .select(ApiKeyRow::as_select())
        .load(conn)
        .await?)
}

/// Revokes the key with this prefix (or whole key); `None` when there is
/// no such key, else whether it was active until now.
pub async fn revoke(conn: &mut AsyncPgConnection, prefix: &str) -> Result<Option<bool>, DbError> {
    let now = chrono::Utc::now().naive_utc();
    let revoked = diesel::update(
        api_keys::table
            .filter(api_keys::prefix.eq(prefix))
            .filter(api_keys::revoked_at.is_null()),
    )
    .set(api_keys::revoked_at.eq(Some(now)))
    .execute(conn)
    .await?;
    if revoked == 1 {
        return Ok(Some(true));
    }
    Ok(find(conn, prefix).await?.map(|_| false))
}

/// Records that the keys `ids` were used at `at` (UTC).
pub async fn touch(conn: &mut AsyncPgConnection, ids: &[Uuid], at: NaiveDateTime) -> Result<(), DbError> {
    if ids.is_empty() {
        return Ok(());
    }
    diesel::update(api_keys::table.filter(api_keys::id.eq_any(ids)))
        .set(api_keys::last_used_at.eq(Some(at)))
        .execute(conn)
        .await?;
    Ok(())
}

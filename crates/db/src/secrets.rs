//! The webhook signing secrets (`webhook_secrets`): the ones in force, the
//! first one stored on first start, and rotation with an overlap.

use std::time::Duration;

use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};

use crate::error::DbError;
use crate::locks::Lock;
use crate::schema::webhook_secrets;

/// The signing secrets in force, newest first (expired ones left out).
pub async fn secrets(conn: &mut AsyncPgConnection) -> Result<Vec<String>, DbError> {
    let now = chrono::Utc::now().naive_utc();
    Ok(webhook_secrets::table
        .filter(
            webhook_secrets::expires_at
                .is_null()
                .or(webhook_secrets::expires_at.gt(now)),
        )
        .order(webhook_secrets::id.desc())
        .select(webhook_secrets::secret)
        .load(conn)
        .await?)
}

/// Stores `secret` if no secret is stored yet (first start); returns the
/// secrets in force afterwards. Two dispatchers starting at once agree: the
/// insert is serialised by a transaction-level advisory lock.
pub async fn ensure_secret(conn: &mut AsyncPgConnection, secret: &str) -> Result<Vec<String>, DbError> {
    conn.transaction::<_, DbError, _>(async |conn| {
        Lock::WebhookSecret.take(conn).await?;
        if secrets(conn).await?.is_empty() {
            diesel::insert_into(webhook_secrets::table)
                .values(webhook_secrets::secret.eq(secret))
                .execute(conn)
                .await?;
        }
        secrets(conn).await
    })
    .await
}

/// Makes `secret` the signing secret; the ones in force keep signing for
/// `overlap` so receivers can switch.
pub async fn rotate_secret(conn: &mut AsyncPgConnection, secret: &str, overlap: Duration) -> Result<(), DbError> {
    let until =
        chrono::Utc::now().naive_utc() + chrono::TimeDelta::from_std(overlap).unwrap_or(chrono::TimeDelta::hours(24));
    conn.transaction::<_, DbError, _>(async |conn| {
        diesel::update(webhook_secrets::table.filter(webhook_secrets::expires_at.is_null()))
            .set(webhook_secrets::expires_at.eq(Some(until)))
            .execute(conn)
            .await?;
        diesel::insert_into(webhook_secrets::table)
            .values(webhook_secrets::secret.eq(secret))
            .execute(conn)
            .await?;
        Ok(())
    })
    .await
}

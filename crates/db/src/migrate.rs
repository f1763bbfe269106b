//! Schema migrations, embedded from the top-level `migrations/` folder.
//!
//! Runs are serialised with a PostgreSQL advisory lock held by the
//! transaction they run in, so a Kubernetes
//! migration Job and an operator's `tronpay db create-tables` (or several
//! replicas starting at once) never apply the same migration twice.

use diesel::Connection as _;
use diesel::RunQueryDsl as _;
use diesel_async::AsyncPgConnection;
use diesel_async::async_connection_wrapper::AsyncConnectionWrapper;
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};

use crate::error::{DbError, Setup};
use crate::stats::relation_exists;

pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("../../migrations");

type Wrapper = AsyncConnectionWrapper<AsyncPgConnection>;

/// Applies every pending migration; returns the versions applied (empty when
/// the schema was already current).
///
/// Tables made by the original Python service (which has no migration
/// history) are not adopted in place: their enum and column names differ
/// from the migration guide's. The way over is export, then import.
pub async fn run_pending(mut conn: AsyncPgConnection) -> Result<Vec<String>, DbError> {
    if relation_exists(&mut conn, "payments").await?
        && !relation_exists(&mut conn, "__diesel_schema_migrations").await?
    {
        return Err(Setup::Migration(
            "this database already has a `payments` table not created by tronpay (the original service's?). \
             Export it with `python db_manager.py export --file payments.json`, point DATABASE_URL at a new \
             database, then run `tronpay db create-tables` and `tronpay db import --file payments.json`"
                .into(),
        )
        .into());
    }
    with_lock(conn, |wrapper| {
        let applied = wrapper.run_pending_migrations(MIGRATIONS)?;
        Ok(applied.iter().map(ToString::to_string).collect())
    })
    .await
}

/// Reverts every migration (dropping all tronpay tables and their data),
/// then applies them again.
///
/// The tronpay services' open connections are then closed, so that none keeps
/// a prepared statement or type id of the tables that were dropped; their
/// pools reconnect on the next request.
pub async fn reset(conn: AsyncPgConnection) -> Result<(), DbError> {
    with_lock(conn, |wrapper| {
        wrapper.revert_all_migrations(MIGRATIONS)?;
        wrapper.run_pending_migrations(MIGRATIONS)?;
        diesel::sql_query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() \
             AND pid <> pg_backend_pid() AND application_name LIKE 'tronpay-%'",
        )
        .execute(wrapper)?;
        Ok(())
    })
    .await
}

/// Versions embedded in this build that the database has not applied yet.
pub async fn pending(conn: AsyncPgConnection) -> Result<Vec<String>, DbError> {
    with_lock(conn, |wrapper| {
        let pending = wrapper.pending_migrations(MIGRATIONS)?;
        Ok(pending
            .iter()
            .map(|migration| migration.name().version().to_string())
            .collect())
    })
    .await
}

type HarnessResult<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

async fn with_lock<T, F>(conn: AsyncPgConnection, work: F) -> Result<T, DbError>
where
    T: Send + 'static,
    F: FnOnce(&mut Wrapper) -> HarnessResult<T> + Send + 'static,
{
    // diesel's migration harness is synchronous; the wrapper drives the async
    // connection from a blocking thread of the current runtime.
    //
    // One transaction holds the lock and every migration (each in a
    // savepoint): a transaction-scoped lock works behind PgBouncer in
    // transaction mode, where a session lock could be taken on one server
    // connection and released on another, and a failed run changes nothing.
    tokio::task::spawn_blocking(move || {
        let mut wrapper = Wrapper::from(conn);
        wrapper
            .transaction(|wrapper| {
                diesel::sql_query(crate::locks::Lock::Migration.sql("pg_advisory_xact_lock")).execute(wrapper)?;
                work(wrapper)
            })
            .map_err(|error| DbError::from(Setup::Migration(error.to_string())))
    })
    .await
    .map_err(|error| DbError::bug(format!("the migration task failed: {error}")))?
}

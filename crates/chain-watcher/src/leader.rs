//! One active scanner among replicas: the holder of a PostgreSQL advisory
//! lock. The lock is transaction-scoped and its transaction stays open on a
//! dedicated connection for as long as this replica scans, so it works the
//! same behind PgBouncer in transaction mode (which pins the connection to
//! one server for the transaction) as on a direct connection. If the process
//! dies, the transaction is rolled back and the lock released, and a standby
//! takes over. The open transaction has no transaction id and, between its
//! keep-alive statements, no snapshot, so it holds back no vacuum. (The
//! cursor is also advanced compare-and-set, so even two scanners could never
//! process a block twice.)

use std::time::Duration;

use diesel::sql_types::Bool;
use diesel_async::{AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};
use tokio::sync::watch;
use tronpay_db::locks::Lock;
use tronpay_db::pool::ConnectOptions;
use tronpay_db::{DbError, DbSettings};

/// How often a standby tries to take over.
const STANDBY_RETRY: Duration = Duration::from_secs(2);

#[derive(diesel::QueryableByName)]
struct Locked {
    #[diesel(sql_type = Bool)]
    locked: bool,
}

/// The connection whose open transaction holds the scanner lock.
pub struct Leadership {
    conn: AsyncPgConnection,
}

impl Leadership {
    /// Waits until this replica holds the lock; `None` if `shutdown` fired.
    pub async fn acquire(db: &DbSettings, shutdown: &mut watch::Receiver<bool>) -> Option<Self> {
        let options = ConnectOptions::new(db, "tronpay-chain-watcher-leader");
        let mut announced = false;
        loop {
            match Self::try_acquire(db, &options).await {
                Ok(Some(leadership)) => return Some(leadership),
                Ok(None) if !announced => {
                    tracing::info!("another replica is scanning; standing by");
                    announced = true;
                }
                Ok(None) => {}
                Err(error) => tracing::warn!(%error, "cannot reach PostgreSQL to take the scanner lock"),
            }
            tokio::select! {
                _ = tokio::time::sleep(STANDBY_RETRY) => {}
                _ = tronpay_runtime::stopped(shutdown) => return None,
            }
        }
    }

    async fn try_acquire(db: &DbSettings, options: &ConnectOptions) -> Result<Option<Self>, DbError> {
        let mut conn = tronpay_db::connect(&db.database_url, options).await?;
        // If this replica is cut off rather than killed, PostgreSQL should
        // notice within about 30 s (not the system default of hours) and
        // release the lock to a standby. `SET LOCAL` lasts as long as the
        // transaction, which is as long as the lock.
        // (Behind PgBouncer these keep-alives guard its server connection;
        // its own tcp_keep* settings guard the watcher's side.) The lock's
        // transaction is meant to stay open: no idle or (PostgreSQL 17+)
        // transaction timeout may end it.
        conn.batch_execute(
            "BEGIN; SET LOCAL tcp_keepalives_idle = 10; SET LOCAL tcp_keepalives_interval = 5; \
             SET LOCAL tcp_keepalives_count = 3; SET LOCAL idle_in_transaction_session_timeout = 0; \
             SELECT set_config('transaction_timeout', '0', true) \
             WHERE current_setting('server_version_num')::int >= 170000",
        )
        .await?;
        let locked: Locked = diesel::sql_query(Lock::Scanner.sql("pg_try_advisory_xact_lock"))
            .get_result(&mut conn)
            .await?;
        if !locked.locked {
            // End the transaction cleanly: behind PgBouncer, a client that
            // leaves mid-transaction costs it a server connection.
            conn.batch_execute("ROLLBACK").await?;
            return Ok(None);
        }
        Ok(Some(Self { conn }))
    }

    /// Whether the lock's transaction is still alive.
    pub async fn alive(&mut self) -> bool {
        // The simple query protocol leaves no portal (and so no snapshot)
        // open between keep-alives: the idle transaction holds back nothing.
        let check = self.conn.batch_execute("SELECT 1");
        matches!(tokio::time::timeout(Duration::from_secs(5), check).await, Ok(Ok(_)))
    }
}

//! One active scanner among replicas: the holder of a PostgreSQL advisory
//! lock on a dedicated session. If its process dies, PostgreSQL ends the
//! session and releases the lock, and a standby takes over. (The cursor is
//! also advanced compare-and-set, so even two scanners could never process a
//! block twice.)

use std::time::Duration;

use diesel::sql_types::Bool;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use tokio::sync::watch;
use tronpay_db::pool::ConnectOptions;
use tronpay_db::{DbError, DbSettings};

/// Key of the scanner's advisory lock ("tronpay" + 2).
const SCANNER_LOCK_KEY: i64 = 0x7472_6f6e_7061_7902;
/// How often a standby tries to take over.
const STANDBY_RETRY: Duration = Duration::from_secs(2);

#[derive(diesel::QueryableByName)]
struct Locked {
    #[diesel(sql_type = Bool)]
    locked: bool,
}

/// The session that holds the scanner lock.
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
                _ = tronpay_bus::stopped(shutdown) => return None,
            }
        }
    }

    async fn try_acquire(db: &DbSettings, options: &ConnectOptions) -> Result<Option<Self>, DbError> {
        let mut conn = tronpay_db::connect(&db.database_url, options).await?;
        // If this replica is cut off rather than killed, PostgreSQL should
        // notice within about 30 s (not the system default of hours) and
        // release the lock to a standby.
        diesel::sql_query("SET tcp_keepalives_idle = 10")
            .execute(&mut conn)
            .await?;
        diesel::sql_query("SET tcp_keepalives_interval = 5")
            .execute(&mut conn)
            .await?;
        diesel::sql_query("SET tcp_keepalives_count = 3")
            .execute(&mut conn)
            .await?;
        let locked: Locked = diesel::sql_query(format!("SELECT pg_try_advisory_lock({SCANNER_LOCK_KEY}) AS locked"))
            .get_result(&mut conn)
            .await?;
        Ok(locked.locked.then_some(Self { conn }))
    }

    /// Whether the lock session is still alive.
    pub async fn alive(&mut self) -> bool {
        let check = diesel::sql_query("SELECT 1").execute(&mut self.conn);
        matches!(tokio::time::timeout(Duration::from_secs(5), check).await, Ok(Ok(_)))
    }
}

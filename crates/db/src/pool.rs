//! Connections: one function opens them ([`connect`]), one builds the pool
//! ([`DbPool::new`]).

use std::sync::Arc;
use std::time::Duration;

use deadpool::Runtime;
use deadpool::managed::{Hook, HookError, Timeouts};
use diesel::ConnectionError;
use diesel_async::pooled_connection::{AsyncDieselConnectionManager, ManagerConfig, RecyclingMethod};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use futures_util::FutureExt;
use tronpay_runtime::Validate;

use crate::error::{DbError, Setup, Unavailable, classify_connect_error};
use crate::settings::DbSettings;

type Manager = AsyncDieselConnectionManager<AsyncPgConnection>;
type Pool = deadpool::managed::Pool<Manager>;

/// A connection checked out of the pool; returned to it when dropped.
pub type PooledConnection = deadpool::managed::Object<Manager>;

/// What [`connect`] needs besides the URL.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    pub connect_timeout: Duration,
    /// Sent as `application_name`, visible in `pg_stat_activity`.
    pub application_name: String,
    /// Zero means no limit.
    pub statement_timeout: Duration,
}

impl ConnectOptions {
    pub fn new(settings: &DbSettings, application_name: &str) -> Self {
        Self {
            connect_timeout: settings.connect_timeout(),
            application_name: application_name.to_owned(),
            statement_timeout: Duration::from_millis(settings.db_statement_timeout_ms),
        }
    }
}

/// Opens one connection, classifying a failure (unreachable, authentication,
/// missing database, too many connections) into a [`DbError`] whose text an
/// operator can act on.
pub async fn connect(url: &str, options: &ConnectOptions) -> Result<AsyncPgConnection, DbError> {
    let (url, tls) = crate::tls::split_url(url).map_err(Setup::InvalidUrl)?;
    let mut config: tokio_postgres::Config = url
        .parse()
        .map_err(|error: tokio_postgres::Error| Setup::InvalidUrl(error.to_string()))?;
    if let Some(mode) = tls.ssl_mode() {
        config.ssl_mode(mode);
    }
    config.connect_timeout(options.connect_timeout);
    config.application_name(&options.application_name);
    let mut conn = match tls.client_config(config.get_ssl_mode()).map_err(Setup::InvalidUrl)? {
        None => establish(&config, tokio_postgres::NoTls, options).await?,
        Some(client_config) => establish(&config, crate::tls::MakeRustls(client_config), options).await?,
    };
    if !options.statement_timeout.is_zero() {
        diesel::sql_query(format!(
            "SET statement_timeout = {}",
            options.statement_timeout.as_millis()
        ))
        .execute(&mut conn)
        .await?;
    }
    Ok(conn)
}

async fn establish<T>(
    config: &tokio_postgres::Config,
    tls: T,
    options: &ConnectOptions,
) -> Result<AsyncPgConnection, DbError>
where
    T: tokio_postgres::tls::MakeTlsConnect<tokio_postgres::Socket>,
    T::Stream: tokio_postgres::tls::TlsStream + Unpin + Send + 'static,
{
    let target = describe_target(config);
    let user = config.get_user().unwrap_or("(default)").to_owned();
    let database = config.get_dbname().unwrap_or(&user).to_owned();

    // The driver's own timeout covers the TCP connect; this one also covers
    // a server that accepts and then never answers the startup.
    let connected = tokio::time::timeout(options.connect_timeout, config.connect(tls))
        .await
        .map_err(|_| Unavailable::Unreachable {
            target: target.clone(),
            detail: format!("no answer within {} s", options.connect_timeout.as_secs()),
        })?;
    let (client, connection) = connected.map_err(|error| classify_connect_error(&error, &target, &user, &database))?;
    AsyncPgConnection::try_from_client_and_connection(client, connection)
        .await
        .map_err(|error| DbError::from(Unavailable::Other(error.to_string())))
}

/// `host:port/database` of the first host, for messages (never the password).
fn describe_target(config: &tokio_postgres::Config) -> String {
    let host = match config.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(host)) => host.clone(),
        Some(tokio_postgres::config::Host::Unix(path)) => path.display().to_string(),
        None => "localhost".to_owned(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let database = config.get_dbname().or(config.get_user()).unwrap_or("postgres");
    format!("{host}:{port}/{database}")
}

/// The connection pool of a service.
///
/// deadpool has a single maximum size; the original's "10 + 20 overflow" is
/// kept by allowing `pool_size + max_overflow` connections and closing the
/// ones above `pool_size` once they sit idle ([`DbPool::trim_overflow`]).
#[derive(Clone)]
pub struct DbPool {
    pool: Pool,
    settings: Arc<DbSettings>,
}

impl DbPool {
    /// Builds the pool; no connection is opened until the first checkout, so
    /// a service starts even while PostgreSQL is down and recovers by itself.
    pub fn new(settings: &DbSettings, application_name: &str) -> Result<Self, DbError> {
        settings.validate().map_err(Setup::InvalidUrl)?;
        let options = Arc::new(ConnectOptions::new(settings, application_name));
        let mut manager_config = ManagerConfig::<AsyncPgConnection>::default();
        manager_config.custom_setup = Box::new(move |url| {
            let options = Arc::clone(&options);
            let url = url.to_owned();
            async move {
                connect(&url, &options)
                    .await
                    .map_err(|error| ConnectionError::BadConnection(error.to_string()))
            }
            .boxed()
        });
        // Liveness is checked by the pre-recycle hook below, which knows how
        // long the connection sat idle.
        manager_config.recycling_method = RecyclingMethod::Fast;
        let manager = Manager::new_with_config(settings.database_url.clone(), manager_config);

        let recycle_after = Duration::from_secs(settings.db_pool_recycle_seconds);
        let pre_ping = settings.db_pool_pre_ping;
        let ping_after_idle = Duration::from_millis(settings.db_pool_pre_ping_idle_ms);
        let pool = Pool::builder(manager)
            .max_size(settings.max_connections())
            .timeouts(Timeouts {
                wait: Some(settings.pool_timeout()),
                create: Some(settings.connect_timeout() + Duration::from_secs(1)),
                recycle: Some(settings.connect_timeout()),
            })
            .runtime(Runtime::Tokio1)
            .pre_recycle(Hook::async_fn(move |conn: &mut AsyncPgConnection, metrics| {
                let too_old = !recycle_after.is_zero() && metrics.age() > recycle_after;
                let ping = pre_ping && metrics.last_used() >= ping_after_idle;
                Box::pin(async move {
                    if too_old {
                        return Err(HookError::message("connection reached DB_POOL_RECYCLE_SECONDS"));
                    }
                    if ping {
                        diesel::sql_query("SELECT 1").execute(conn).await.map_err(|error| {
                            HookError::Backend(diesel_async::pooled_connection::PoolError::QueryError(error))
                        })?;
                    }
                    Ok(())
                })
            }))
            .build()
            .map_err(|error| DbError::from(Unavailable::Other(error.to_string())))?;
        Ok(Self {
            pool,
            settings: Arc::new(settings.clone()),
        })
    }

    /// Checks out a connection, waiting at most `DB_POOL_TIMEOUT_SECONDS`;
    /// a wait that times out counts in `tronpay_db_pool_timeouts_total`.
    pub async fn get(&self) -> Result<PooledConnection, DbError> {
        let got = self.pool.get().await;
        if matches!(
            got,
            Err(deadpool::managed::PoolError::Timeout(
                deadpool::managed::TimeoutType::Wait
            ))
        ) {
            metrics::counter!("tronpay_db_pool_timeouts_total").increment(1);
        }
        Ok(got?)
    }

    /// Checks out a connection, waiting at most `wait` in all (for health
    /// checks, which must answer quickly while the database is down).
    pub async fn get_within(&self, wait: Duration) -> Result<PooledConnection, DbError> {
        let timeouts = Timeouts {
            wait: Some(wait),
            create: Some(wait),
            recycle: Some(wait),
        };
        Ok(self.pool.timeout_get(&timeouts).await?)
    }

    /// Connections open (idle or in use) and waiting requests.
    pub fn status(&self) -> deadpool::Status {
        self.pool.status()
    }

    /// Closes idle connections above `DB_POOL_SIZE` that have been idle for
    /// `DB_OVERFLOW_IDLE_SECONDS`, and idle ones past their recycle age.
    pub fn trim_overflow(&self) -> usize {
        let keep = self.settings.db_pool_size;
        let idle_limit = Duration::from_secs(self.settings.db_overflow_idle_seconds);
        let recycle_after = Duration::from_secs(self.settings.db_pool_recycle_seconds);
        let open = self.pool.status().size;
        let mut surplus = open.saturating_sub(keep);
        let removed = self.pool.retain(|_, metrics| {
            if !recycle_after.is_zero() && metrics.age() > recycle_after {
                surplus = surplus.saturating_sub(1);
                return false;
            }
            if surplus > 0 && metrics.last_used() >= idle_limit {
                surplus -= 1;
                return false;
            }
            true
        });
        removed.removed.len()
    }

    /// Sets the pool's gauges: `tronpay_db_pool_connections{state="busy"}`
    /// and `{state="idle"}`, `tronpay_db_pool_max_connections` and
    /// `tronpay_db_pool_waiting` (requests waiting for a connection).
    pub fn record_status(&self) {
        let status = self.pool.status();
        let idle = status.available;
        let busy = status.size.saturating_sub(idle);
        metrics::gauge!("tronpay_db_pool_connections", "state" => "busy").set(busy as f64);
        metrics::gauge!("tronpay_db_pool_connections", "state" => "idle").set(idle as f64);
        metrics::gauge!("tronpay_db_pool_max_connections").set(status.max_size as f64);
        metrics::gauge!("tronpay_db_pool_waiting").set(status.waiting as f64);
    }

    /// Runs [`Self::trim_overflow`] and [`Self::record_status`] every few
    /// seconds until `shutdown` resolves.
    pub async fn maintain(self, shutdown: impl std::future::Future<Output = ()>) {
        let mut ticker = tokio::time::interval(Duration::from_secs(5));
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => return,
                _ = ticker.tick() => {
                    self.record_status();
                    let closed = self.trim_overflow();
                    if closed > 0 {
                        tracing::debug!(closed, "closed idle overflow or aged database connections");
                    }
                }
            }
        }
    }

    pub fn settings(&self) -> &DbSettings {
        &self.settings
    }
}

//! `tronpay-chain-watcher`: follows the TRON chain and hands
//! `payment.detected` to the API (PRODUCT §5).
//!
//! Several replicas may run; one scans (the holder of a PostgreSQL advisory
//! lock), the others stand by and take over when it dies. Every replica runs
//! an outbox relay and a health endpoint.
//!
//! [`run`] is the whole service: it builds everything from a [`Config`] and
//! runs until shutdown. Its tasks are supervised
//! ([`tronpay_runtime::supervise`]): if the scanner or the relay ends any
//! other way (an error retrying cannot cure, a panic), `/health` turns
//! `unhealthy` naming it and `run` returns the failure, so the process exits
//! non-zero and is restarted while a standby takes the scanner role over.

pub mod health;
pub mod leader;
pub mod scanner;
pub mod settings;
pub mod start;

use std::future::Future;
use std::sync::Arc;

use actix_web::dev::ServerHandle;
use tokio::task::JoinHandle;
use tronpay_bus::{BusSettings, BusStatus, Relay};
use tronpay_db::{DbPool, DbSettings};
use tronpay_runtime::supervise::{self, TaskOutcome, Tasks};
use tronpay_runtime::{ConfigError, Settings};
use tronpay_tron::NodeClient;

pub use settings::WatcherSettings;

use crate::leader::Leadership;
use crate::scanner::{ScanStatus, Scanner, Stop};

/// Everything the watcher reads at start, each part checked.
#[derive(Debug, Clone)]
pub struct Config {
    pub watcher: WatcherSettings,
    pub db: DbSettings,
    pub bus: BusSettings,
}

impl Config {
    /// Reads the watcher's, the database's and the broker's settings from
    /// the layered configuration; an error names the bad setting.
    pub fn load(settings: &Settings) -> Result<Self, ConfigError> {
        Ok(Self {
            watcher: settings.validated()?,
            db: settings.validated()?,
            bus: settings.validated()?,
        })
    }
}

/// A watcher's shared status, read by its health endpoint.
pub struct Watcher {
    pub scan: Arc<ScanStatus>,
    pub relay: Arc<BusStatus>,
    pub node: Arc<NodeClient>,
}

impl Watcher {
    /// Spawns the scanner supervisor (task [`health::SCANNER_TASK`]) and the
    /// outbox relay (`outbox relay`) on `tasks`; both stop when the tasks'
    /// stop flag turns true. The scanner task fails when the scanner meets
    /// a database error retrying cannot cure ([`Stop::Failed`]). Errors: the
    /// node or USDT contract settings are unusable.
    pub fn start(
        settings: WatcherSettings,
        db: DbSettings,
        pool: DbPool,
        bus: BusSettings,
        tasks: &mut Tasks,
    ) -> anyhow::Result<Self> {
        let node = Arc::new(
            NodeClient::new(settings.node_settings().map_err(anyhow::Error::msg)?).map_err(anyhow::Error::msg)?,
        );
        let usdt = settings.usdt().map_err(anyhow::Error::msg)?;
        let relay = Relay::new(pool.clone(), bus, "tronpay-chain-watcher relay");
        let relay_status = relay.status();
        let scan = Arc::new(ScanStatus::default());
        let scanner = Scanner {
            pool,
            node: Arc::clone(&node),
            instance: settings.instance(),
            settings,
            usdt,
            relay: relay.waker(),
            status: Arc::clone(&scan),
            learned_lag: std::sync::atomic::AtomicI64::new(-1),
            polls_since_learning: std::sync::atomic::AtomicU32::new(0),
        };
        tasks.spawn("outbox relay", relay.run(tasks.shutdown()));
        let mut stop = tasks.shutdown();
        tasks.spawn(health::SCANNER_TASK, async move {
            while let Some(leadership) = Leadership::acquire(&db, &mut stop).await {
                tracing::info!(instance = %scanner.instance, "this replica is the active scanner");
                match scanner.run(leadership, &mut stop).await {
                    Stop::Shutdown => break,
                    Stop::LostLeadership(reason) => tracing::warn!(%reason, "lost the scanner role; standing by"),
                    // The lock's connection is closed by now, so a standby
                    // can take over while this process goes down.
                    Stop::Failed(error) => return Err(error),
                }
            }
            Ok(())
        });
        Ok(Self {
            scan,
            relay: relay_status,
            node,
        })
    }
}

/// A started watcher: its tasks run and its health endpoint is bound.
pub struct Running {
    port: u16,
    tasks: Tasks,
    http: ServerHandle,
    server: JoinHandle<std::io::Result<()>>,
}

/// Builds the watcher from `config` on the current runtime: the pool (no
/// connection yet: a database that is down is waited for), the scanner
/// supervisor, the outbox relay, pool maintenance and the health endpoint
/// on `WATCHER_BIND`. Errors: unusable node settings, or the address cannot
/// be bound.
pub fn start(config: Config) -> anyhow::Result<Running> {
    let Config { watcher, db, bus } = config;
    let pool = DbPool::new(&db, "tronpay-chain-watcher")?;
    let mut tasks = Tasks::new();
    let bind = watcher.watcher_bind.clone();
    let running = Watcher::start(watcher, db, pool.clone(), bus, &mut tasks)?;
    let maintenance = pool.clone().maintain({
        let mut stop = tasks.shutdown();
        async move { tronpay_runtime::stopped(&mut stop).await }
    });
    tasks.spawn("pool maintenance", maintenance);
    let (server, port) = health::server(&bind, pool, &running, tasks.health())?;
    Ok(Running {
        port,
        http: server.handle(),
        server: tokio::spawn(server),
        tasks,
    })
}

impl Running {
    /// The health endpoint's port (the one bound when `WATCHER_BIND` asks
    /// for port 0).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Supervises one more task with the watcher's own (see
    /// [`Tasks::spawn`]): its failure fails the watcher.
    pub fn spawn<F>(&mut self, name: &str, task: F)
    where
        F: Future + Send + 'static,
        F::Output: TaskOutcome + Send + 'static,
    {
        self.tasks.spawn(name, task);
    }

    /// Runs until `shutdown` resolves (`Ok` once the block in hand is
    /// committed and the relay published what was committed) or a task
    /// fails: then `/health` answers 503 naming it, the other tasks stop,
    /// the health endpoint stays up for
    /// [`supervise::FAILURE_GRACE`], and the failure is returned.
    pub async fn run_until(self, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
        tokio::pin!(shutdown);
        let failure = self.tasks.until_failure_or(shutdown.as_mut()).await;
        let failed_at = tokio::time::Instant::now();
        if failure.is_none() {
            tracing::info!("stopping; finishing the block in hand");
        }
        let outcome = self.tasks.stop().await;
        if failure.is_some() {
            // `shutdown` has not resolved yet (it may not be polled again
            // once it has).
            supervise::linger(failed_at, shutdown.as_mut()).await;
        }
        self.http.stop(true).await;
        let _ = self.server.await;
        tracing::info!("tronpay-chain-watcher stopped");
        Ok(outcome?)
    }
}

/// The whole watcher: [`start()`], then [`Running::run_until`] `shutdown`.
/// Logs `tronpay-chain-watcher health endpoint listening` with the port.
/// Errors: what `start` refuses, or the failure of a task.
pub async fn run(config: Config, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    let bind = config.watcher.watcher_bind.clone();
    let running = start(config)?;
    tracing::info!(bind = %bind, port = running.port(), "tronpay-chain-watcher health endpoint listening");
    running.run_until(shutdown).await
}

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

use tronpay_bus::{BusSettings, BusStatus, Relay};
use tronpay_db::{DbPool, DbSettings};
use tronpay_runtime::ServiceConfig;
use tronpay_runtime::service::{Binary, Serving};
use tronpay_runtime::supervise::Tasks;
use tronpay_tron::NodeClient;

pub use settings::WatcherSettings;
pub use tronpay_runtime::service::Running;

use crate::leader::Leadership;
use crate::scanner::{ScanStatus, Scanner, Stop};

/// The service's name: its binary, its database connections'
/// `application_name`, its log lines.
pub const NAME: &str = "tronpay-chain-watcher";

/// Its command line (`--config`, `--bind`).
pub const BINARY: Binary = Binary::new(NAME, "tronpay chain watcher", "WATCHER_BIND");

/// Everything the watcher reads at start, each part checked: `service` is
/// its own settings.
pub type Config = ServiceConfig<WatcherSettings, DbSettings, BusSettings>;

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
        let relay = Relay::new(pool.clone(), bus, format!("{NAME} relay"));
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

/// Builds the watcher from `config` on the current runtime: the pool (no
/// connection yet: a database that is down is waited for), the scanner
/// supervisor, the outbox relay, pool maintenance and the health endpoint
/// on `WATCHER_BIND`. [`Running::run_until`] then runs it: on SIGTERM the
/// scanner commits the block in hand and the relay publishes what was
/// committed. Errors: unusable node settings, or the address cannot be
/// bound.
pub fn start(config: Config) -> anyhow::Result<Running> {
    let Config {
        service: watcher,
        db,
        bus,
    } = config;
    let pool = DbPool::new(&db, NAME)?;
    let mut tasks = Tasks::new();
    let bind = watcher.watcher_bind.clone();
    let running = Watcher::start(watcher, db, pool.clone(), bus, &mut tasks)?;
    tasks.spawn("pool maintenance", pool.clone().maintain(tasks.stopped()));
    tronpay_runtime::metrics::install();
    tasks.spawn(
        "metrics sampler",
        tronpay_db::observe::sample(
            pool.clone(),
            &[tronpay_db::observe::Gauges::Chain, tronpay_db::observe::Gauges::Outbox],
            tasks.stopped(),
        ),
    );
    let (server, port) = health::server(&bind, pool, &running, tasks.health())?;
    Ok(Running::new(
        NAME,
        Serving::Health,
        tasks,
        port,
        server.handle(),
        server,
    ))
}

/// The whole watcher: [`start()`], then [`Running::run_until`] `shutdown`.
/// Logs `tronpay-chain-watcher health endpoint listening` with the port.
/// Errors: what `start` refuses, or the failure of a task.
pub async fn run(config: Config, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    let bind = config.service.watcher_bind.clone();
    let running = start(config)?;
    tracing::info!(bind = %bind, port = running.port(), "tronpay-chain-watcher health endpoint listening");
    Ok(running.run_until(shutdown).await?)
}

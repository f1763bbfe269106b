//! `tronpay-chain-watcher`: follows the TRON chain and hands
//! `payment.detected` to the API (PRODUCT §5).
//!
//! Several replicas may run; one scans (the holder of a PostgreSQL advisory
//! lock), the others stand by and take over when it dies. Every replica runs
//! an outbox relay and a health endpoint.

pub mod health;
pub mod leader;
pub mod scanner;
pub mod settings;
pub mod start;

use std::sync::Arc;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tronpay_bus::{BusSettings, BusStatus, Relay};
use tronpay_db::{DbPool, DbSettings};
use tronpay_tron::NodeClient;

pub use settings::WatcherSettings;

use crate::leader::Leadership;
use crate::scanner::{ScanStatus, Scanner, Stop};

/// A running watcher's background tasks and shared status.
pub struct Watcher {
    pub scan: Arc<ScanStatus>,
    pub relay: Arc<BusStatus>,
    pub node: Arc<NodeClient>,
    handles: Vec<JoinHandle<()>>,
}

impl Watcher {
    /// Starts the scanner supervisor and the outbox relay; both stop when
    /// `shutdown` turns true.
    pub fn start(
        settings: WatcherSettings,
        db: DbSettings,
        pool: DbPool,
        bus: BusSettings,
        shutdown: watch::Receiver<bool>,
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
        let mut handles = vec![tokio::spawn(relay.run(shutdown.clone()))];
        let mut stop = shutdown;
        handles.push(tokio::spawn(async move {
            while let Some(leadership) = Leadership::acquire(&db, &mut stop).await {
                tracing::info!(instance = %scanner.instance, "this replica is the active scanner");
                match scanner.run(leadership, &mut stop).await {
                    Stop::Shutdown => break,
                    Stop::LostLeadership(reason) => tracing::warn!(%reason, "lost the scanner role; standing by"),
                }
            }
        }));
        Ok(Self {
            scan,
            relay: relay_status,
            node,
            handles,
        })
    }

    /// Waits for the tasks to finish after `shutdown` turned true.
    pub async fn join(self) {
        for handle in self.handles {
            let _ = handle.await;
        }
    }
}

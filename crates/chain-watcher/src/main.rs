//! `tronpay-chain-watcher`: follows the TRON chain.

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use tronpay_bus::BusSettings;
use tronpay_chain_watcher::{Watcher, WatcherSettings, health};
use tronpay_db::{DbPool, DbSettings};
use tronpay_runtime::{LogSettings, Settings, init_logging, shutdown_signal};

#[derive(Parser)]
#[command(name = "tronpay-chain-watcher", version, about = "tronpay chain watcher")]
struct Args {
    /// TOML configuration file (or TRONPAY_CONFIG); environment variables override it.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Address of the health endpoint (overrides WATCHER_BIND; default 127.0.0.1:5001).
    #[arg(long)]
    bind: Option<String>,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tronpay_runtime::exit_code("tronpay-chain-watcher", run().await)
}

async fn run() -> anyhow::Result<()> {
    let args = Args::parse();
    let settings = Settings::load(args.config.as_deref())?;
    init_logging(&settings.get::<LogSettings>()?);
    let mut watcher: WatcherSettings = settings.get()?;
    if let Some(bind) = args.bind {
        watcher.watcher_bind = bind;
    }
    watcher
        .validate()
        .map_err(anyhow::Error::msg)
        .context("invalid setting")?;
    let db: DbSettings = settings.get()?;
    db.validate().map_err(anyhow::Error::msg).context("invalid setting")?;
    let bus: BusSettings = settings.get()?;
    bus.validate().map_err(anyhow::Error::msg).context("invalid setting")?;

    let pool = DbPool::new(&db, "tronpay-chain-watcher")?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let bind = watcher.watcher_bind.clone();
    let running = Watcher::start(watcher, db, pool.clone(), bus, stop_rx.clone())?;
    let (server, port) = health::server(
        &bind,
        pool.clone(),
        running.scan.clone(),
        running.relay.clone(),
        running.node.clone(),
    )?;
    tracing::info!(bind = %bind, port, "tronpay-chain-watcher health endpoint listening");
    let handle = server.handle();
    let server = tokio::spawn(server);
    let maintenance = tokio::spawn(pool.maintain({
        let mut stop = stop_rx.clone();
        async move { tronpay_bus::stopped(&mut stop).await }
    }));

    // Stop on a signal, or when the scanner crashed (so the orchestrator
    // restarts the process).
    let scan = running.scan.clone();
    let crashed = async move {
        while !scan.failed.load(std::sync::atomic::Ordering::Relaxed) {
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        }
    };
    let crashed = tokio::select! {
        _ = shutdown_signal() => false,
        _ = crashed => true,
    };
    tracing::info!("stopping; finishing the block in hand");
    let _ = stop_tx.send(true);
    running.join().await;
    handle.stop(true).await;
    let _ = server.await;
    let _ = maintenance.await;
    tracing::info!("tronpay-chain-watcher stopped");
    if crashed {
        anyhow::bail!("the scanner crashed (see the log above)");
    }
    Ok(())
}

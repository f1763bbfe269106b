//! `tronpay-webhook-dispatcher`: delivers signed webhooks.

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use tronpay_bus::BusSettings;
use tronpay_db::{DbPool, DbSettings};
use tronpay_runtime::{LogSettings, Settings, init_logging, shutdown_signal};
use tronpay_webhook_dispatcher::{DispatcherSettings, health};

#[derive(Parser)]
#[command(name = "tronpay-webhook-dispatcher", version, about = "tronpay webhook dispatcher")]
struct Args {
    /// TOML configuration file (or TRONPAY_CONFIG); environment variables override it.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Address of the health endpoint (overrides DISPATCHER_BIND; default 127.0.0.1:5002).
    #[arg(long)]
    bind: Option<String>,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tronpay_runtime::exit_code("tronpay-webhook-dispatcher", run().await)
}

async fn run() -> anyhow::Result<()> {
    let args = Args::parse();
    let settings = Settings::load(args.config.as_deref())?;
    init_logging(&settings.get::<LogSettings>()?);
    let mut dispatcher: DispatcherSettings = settings.get()?;
    if let Some(bind) = args.bind {
        dispatcher.dispatcher_bind = bind;
    }
    dispatcher
        .validate()
        .map_err(anyhow::Error::msg)
        .context("invalid setting")?;
    let db: DbSettings = settings.get()?;
    db.validate().map_err(anyhow::Error::msg).context("invalid setting")?;
    let bus: BusSettings = settings.get()?;
    bus.validate().map_err(anyhow::Error::msg).context("invalid setting")?;

    let pool = DbPool::new(&db, "tronpay-webhook-dispatcher")?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let bind = dispatcher.dispatcher_bind.clone();
    let running = tronpay_webhook_dispatcher::start(dispatcher, pool.clone(), bus, stop_rx.clone()).await?;
    let (server, port) = health::server(&bind, pool.clone(), running.consumer.clone(), running.relay.clone())?;
    tracing::info!(bind = %bind, port, "tronpay-webhook-dispatcher health endpoint listening");
    let handle = server.handle();
    let server = tokio::spawn(server);
    let maintenance = tokio::spawn(pool.maintain({
        let mut stop = stop_rx;
        async move { tronpay_bus::stopped(&mut stop).await }
    }));

    shutdown_signal().await;
    tracing::info!("shutdown signal received; finishing the deliveries in hand");
    let _ = stop_tx.send(true);
    running.join().await;
    handle.stop(true).await;
    let _ = server.await;
    let _ = maintenance.await;
    tracing::info!("tronpay-webhook-dispatcher stopped");
    Ok(())
}

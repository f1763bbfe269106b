//! `tronpay-api`: the merchant HTTP API.

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use tronpay_api::startup::BusHealth;
use tronpay_api::workers::Workers;
use tronpay_api::{ApiSettings, Application};
use tronpay_bus::BusSettings;
use tronpay_db::{DbPool, DbSettings};
use tronpay_runtime::{LogSettings, Settings, init_logging, shutdown_signal};

#[derive(Parser)]
#[command(name = "tronpay-api", version, about = "tronpay merchant HTTP API")]
struct Args {
    /// Address to listen on (overrides BIND; default 127.0.0.1:5000).
    #[arg(long)]
    bind: Option<String>,
    /// TOML configuration file (or TRONPAY_CONFIG); environment variables override it.
    #[arg(long)]
    config: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tronpay_runtime::exit_code("tronpay-api", run().await)
}

async fn run() -> anyhow::Result<()> {
    let args = Args::parse();
    let settings = Settings::load(args.config.as_deref())?;
    init_logging(&settings.get::<LogSettings>()?);
    let mut api: ApiSettings = settings.get()?;
    if let Some(bind) = args.bind {
        api.bind = bind;
    }
    api.validate().map_err(anyhow::Error::msg).context("invalid setting")?;
    let db: DbSettings = settings.get()?;
    db.validate().map_err(anyhow::Error::msg).context("invalid setting")?;

    let bus: BusSettings = settings.get()?;
    bus.validate().map_err(anyhow::Error::msg).context("invalid setting")?;

    let pool = DbPool::new(&db, "tronpay-api")?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let workers = api
        .api_process_events
        .then(|| Workers::start(pool.clone(), bus.clone(), api.match_rules(), stop_rx.clone()));
    let health = workers.as_ref().map(|workers| BusHealth {
        consumer: workers.consumer.clone(),
        relay: workers.relay.clone(),
    });
    let application = Application::build(api.clone(), pool.clone(), health)?;
    tracing::info!(bind = %api.bind, port = application.port(), database = %tronpay_db::settings::redact_url(&db.database_url), "tronpay-api listening");

    let handle = application.handle();
    let maintenance = tokio::spawn(pool.maintain({
        let mut stop = stop_rx;
        async move { tronpay_bus::stopped(&mut stop).await }
    }));
    tokio::spawn(async move {
        shutdown_signal().await;
        tracing::info!("shutdown signal received; finishing in-flight requests");
        handle.stop(true).await;
    });
    application.run_until_stopped().await?;
    // HTTP is drained; now the workers finish the message in hand, ack it,
    // publish what was committed, and close their connections.
    let _ = stop_tx.send(true);
    if let Some(workers) = workers {
        workers.join().await;
    }
    let _ = maintenance.await;
    tracing::info!("tronpay-api stopped");
    Ok(())
}

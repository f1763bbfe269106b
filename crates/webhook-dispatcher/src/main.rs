//! `tronpay-webhook-dispatcher`: delivers signed webhooks.

use std::path::PathBuf;

use clap::Parser;
use tronpay_runtime::{LogSettings, Settings, init_logging, shutdown_signal};
use tronpay_webhook_dispatcher::Config;

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
    let settings = Settings::load(args.config.as_deref())?.with_override("dispatcher_bind", args.bind)?;
    init_logging(&settings.get::<LogSettings>()?);
    tronpay_webhook_dispatcher::run(Config::load(&settings)?, shutdown_signal()).await
}

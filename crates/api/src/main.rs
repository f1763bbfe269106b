//! `tronpay-api`: the merchant HTTP API.

use std::path::PathBuf;

use clap::Parser;
use tronpay_api::Config;
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
    let settings = Settings::load(args.config.as_deref())?.with_override("bind", args.bind)?;
    init_logging(&settings.get::<LogSettings>()?);
    tronpay_api::run(Config::load(&settings)?, shutdown_signal()).await
}

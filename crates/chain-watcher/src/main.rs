//! `tronpay-chain-watcher`: follows the TRON chain.

use std::path::PathBuf;

use clap::Parser;
use tronpay_chain_watcher::Config;
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
    let settings = Settings::load(args.config.as_deref())?.with_override("watcher_bind", args.bind)?;
    init_logging(&settings.get::<LogSettings>()?);
    tronpay_chain_watcher::run(Config::load(&settings)?, shutdown_signal()).await
}

//! `tronpay-sandbox`: a TRON node simulator (see `docs/SANDBOX.md`).

use clap::Parser;
use tronpay_domain::TronAddress;
use tronpay_runtime::{LogSettings, Settings, init_logging, shutdown_signal};
use tronpay_sandbox::SandboxConfig;

#[derive(Parser)]
#[command(
    name = "tronpay-sandbox",
    version,
    about = "TRON node simulator: java-tron and TronGrid endpoints plus a control API"
)]
struct Args {
    /// Address to listen on.
    #[arg(long, env = "SANDBOX_BIND", default_value = "127.0.0.1:8090")]
    bind: String,
    /// Milliseconds between blocks; 0 = manual (blocks only on /sandbox/mine or /sandbox/blocks).
    #[arg(long, env = "SANDBOX_BLOCK_MS", default_value_t = 3000)]
    block_ms: u64,
    /// Blocks between the head and the solid (final) block.
    #[arg(long, env = "SANDBOX_SOLID_LAG", default_value_t = 19)]
    solid_lag: u64,
    /// Seed of every generated id and amount (default: random, logged).
    #[arg(long, env = "SANDBOX_SEED")]
    seed: Option<u64>,
    /// The USDT TRC-20 contract address.
    #[arg(
        long,
        env = "SANDBOX_USDT_CONTRACT",
        default_value = "TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t"
    )]
    usdt_contract: TronAddress,
    /// Height of the first block.
    #[arg(long, env = "SANDBOX_START_HEIGHT", default_value_t = 1_000_000)]
    start_height: u64,
    /// HTTP worker threads.
    #[arg(long, env = "SANDBOX_WORKERS", default_value_t = 2)]
    workers: usize,
    /// The `whsec_…` secret the built-in webhook receiver (`/sandbox/webhooks`)
    /// checks signatures with (the dispatcher's WEBHOOK_SECRET).
    #[arg(long, env = "SANDBOX_WEBHOOK_SECRET")]
    webhook_secret: Option<String>,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tronpay_runtime::exit_code("tronpay-sandbox", run().await)
}

async fn run() -> anyhow::Result<()> {
    let args = Args::parse();
    // LOG_FORMAT and RUST_LOG, as for every tronpay binary.
    let logging = Settings::load(None)
        .and_then(|settings| settings.get::<LogSettings>())
        .unwrap_or_default();
    init_logging(&logging);
    let config = SandboxConfig {
        bind: args.bind,
        block_ms: args.block_ms,
        solid_lag: args.solid_lag,
        seed: args.seed,
        usdt_contract: args.usdt_contract,
        start_height: args.start_height,
        workers: args.workers,
        webhook_secret: args.webhook_secret,
    };
    tronpay_sandbox::run(config, shutdown_signal()).await
}

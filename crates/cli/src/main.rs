//! `tronpay`: operator commands. `tronpay db …` replaces the original
//! service's `db_manager.py`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod addresses;
mod admin;
mod bus;
mod chain;
mod db;
mod export;
mod import;
mod keys;
mod webhooks;

#[derive(Parser)]
#[command(name = "tronpay", version, about = "tronpay operator commands")]
struct Cli {
    /// TOML configuration file (or TRONPAY_CONFIG); environment variables override it.
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    /// PostgreSQL URL (overrides DATABASE_URL).
    #[arg(long, global = true)]
    database_url: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Database management (the original db_manager.py).
    #[command(subcommand)]
    Db(db::DbCommand),
    /// What the chain watcher recorded: its position, transfers.
    #[command(subcommand)]
    Chain(chain::ChainCommand),
    /// Webhook signing secret and deliveries.
    #[command(subcommand)]
    Webhooks(webhooks::WebhooksCommand),
    /// RabbitMQ: the dead-letter queues.
    #[command(subcommand)]
    Bus(bus::BusCommand),
    /// API keys of the merchant API v1.
    #[command(subcommand)]
    Keys(keys::KeysCommand),
    /// Receiving addresses: derive those of an account xpub, list those handed out.
    #[command(subcommand)]
    Addresses(addresses::AddressesCommand),
    /// Operators of the dashboard (/admin).
    #[command(subcommand)]
    Admin(admin::AdminCommand),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("tronpay: cannot start: {error}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(async {
        let settings =
            tronpay_runtime::Settings::load(cli.config.as_deref())?.with_override("database_url", cli.database_url)?;
        // Each command checks only the settings it uses.
        match cli.command {
            Command::Db(command) => db::run(command, &settings, &settings.validated()?).await,
            Command::Chain(command) => chain::run(command, &settings.validated()?).await,
            Command::Webhooks(command) => webhooks::run(command, &settings.validated()?).await,
            Command::Bus(command) => bus::run(command, &settings.validated()?).await,
            Command::Keys(command) => keys::run(command, &settings.validated()?).await,
            Command::Admin(command) => admin::run(command, &settings.validated()?).await,
            Command::Addresses(command) => {
                addresses::run(command, &settings.get()?, || Ok(settings.validated()?)).await
            }
        }
    });
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            // One clear line; the cause chain is folded into it.
            eprintln!("tronpay: error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

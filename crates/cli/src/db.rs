//! `tronpay db …`: the commands of the original `db_manager.py`, plus import.

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::Subcommand;
use tronpay_db::error::Setup;
use tronpay_db::pool::ConnectOptions;
use tronpay_db::{AsyncPgConnection, DbError, DbSettings, logs, migrate, payments, stats};

#[derive(Subcommand)]
pub enum DbCommand {
    /// Create or update the tables (runs pending migrations; safe to repeat).
    CreateTables,
    /// Show payment counts and the most recent payments.
    Stats,
    /// Test the database connection.
    Test,
    /// Delete payment log rows older than N days.
    CleanupLogs {
        /// Days of logs to keep (0 to 36500).
        #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u32).range(0..=36_500))]
        days: u32,
    },
    /// Export all payments to a JSON file (the original export format).
    Export {
        /// Output file (default: payments_export_YYYYMMDD_HHMMSS.json).
        #[arg(long)]
        file: Option<PathBuf>,
    },
    /// Import payments from an export (tronpay's or the original service's).
    Import {
        /// Export file to read.
        #[arg(long)]
        file: PathBuf,
    },
    /// Print (or apply) the GRANTs that let ROLE run the services with only
    /// the rights they use: rows of tronpay's tables, no DDL. Run as the
    /// tables' owner; the role must exist.
    Grants {
        /// The services' role (lower-case letters, digits, `_`).
        #[arg(long)]
        role: String,
        /// Run the statements instead of printing them.
        #[arg(long)]
        apply: bool,
    },
    /// Delete ALL data and recreate the tables.
    Reset {
        /// Do not ask for confirmation.
        #[arg(long)]
        yes: bool,
    },
}

/// Runs `command` with `db`, already checked ([`tronpay_runtime::Settings::validated`]).
pub async fn run(command: DbCommand, settings: &tronpay_runtime::Settings, db: &DbSettings) -> anyhow::Result<()> {
    match command {
        DbCommand::CreateTables => create_tables(db).await,
        DbCommand::Stats => show_stats(db).await,
        DbCommand::Test => test_connection(db).await,
        DbCommand::CleanupLogs { days } => cleanup_logs(db, days).await,
        DbCommand::Export { file } => crate::export::run(connect_with_tables(db).await?, file).await,
        DbCommand::Import { file } => {
            let ttl: ImportSettings = settings.get()?;
            tronpay_domain::check_payment_ttl(ttl.payment_ttl_seconds).map_err(anyhow::Error::msg)?;
            crate::import::run(connect_with_tables(db).await?, &file, ttl.payment_ttl_seconds).await
        }
        DbCommand::Grants { role, apply } => grants(db, &role, apply).await,
        DbCommand::Reset { yes } => reset(db, yes).await,
    }
}

async fn grants(db: &DbSettings, role: &str, apply: bool) -> anyhow::Result<()> {
    if !tronpay_db::grants::valid_role(role) {
        anyhow::bail!(
            "--role {role:?}: a role name is 1 to 63 lower-case letters, digits and _ (not starting with a digit or pg_)"
        );
    }
    let mut conn = connect_with_tables(db).await?;
    if apply {
        let applied = tronpay_db::grants::apply(&mut conn, role).await?;
        println!(
            "Granted to {role} ({} statements): rows of tronpay's tables, no DDL.",
            applied.len()
        );
    } else {
        for statement in tronpay_db::grants::for_role(&mut conn, role).await? {
            println!("{statement};");
        }
    }
    Ok(())
}

/// The one setting import needs from the API's configuration.
#[derive(serde::Deserialize)]
#[serde(default)]
struct ImportSettings {
    payment_ttl_seconds: i64,
}

impl Default for ImportSettings {
    fn default() -> Self {
        Self {
            payment_ttl_seconds: 24 * 60 * 60,
        }
    }
}

pub async fn connect(db: &DbSettings) -> Result<AsyncPgConnection, DbError> {
    tronpay_db::connect(&db.database_url, &ConnectOptions::new(db, "tronpay-cli")).await
}

/// A connection to a database whose tables exist (else the command to run).
pub async fn connect_with_tables(db: &DbSettings) -> anyhow::Result<AsyncPgConnection> {
    let mut conn = connect(db).await?;
    if !stats::tables_exist(&mut conn).await? {
        return Err(DbError::from(Setup::SchemaMissing("no tronpay tables in this database".into())).into());
    }
    Ok(conn)
}

async fn create_tables(db: &DbSettings) -> anyhow::Result<()> {
    let applied = migrate::run_pending(connect(db).await?).await?;
    if applied.is_empty() {
        println!("Tables are up to date (nothing to apply).");
    } else {
        println!(
            "Database tables created successfully ({} migration(s) applied: {}).",
            applied.len(),
            applied.join(", ")
        );
    }
    Ok(())
}

async fn show_stats(db: &DbSettings) -> anyhow::Result<()> {
    let mut conn = connect_with_tables(db).await?;
    let counts = stats::status_counts(&mut conn).await?;
    let log_rows = logs::count(&mut conn).await?;
    println!("Database Statistics:");
    println!("{}", "-".repeat(30));
    println!("Total Payments: {}", counts.total);
    println!("Pending: {}", counts.pending);
    println!("Completed: {}", counts.completed);
    println!("Failed: {}", counts.failed);
    println!("Expired: {}", counts.expired);
    println!("Log entries: {log_rows}");
    let recent = payments::recent(&mut conn, 5).await?;
    if !recent.is_empty() {
        println!();
        println!("Recent Payments:");
        for payment in recent {
            let short: String = payment.id.as_str().chars().take(8).collect();
            println!(
                "  {short}... | {} | {} | {}",
                payment.order_id,
                payment.status(),
                payment.created_at
            );
        }
    }
    Ok(())
}

async fn test_connection(db: &DbSettings) -> anyhow::Result<()> {
    let mut conn = connect(db).await?;
    let version = stats::server_version(&mut conn).await?;
    println!("Database connection successful!");
    println!("  server: {version}");
    if stats::tables_exist(&mut conn).await? {
        let pending = migrate::pending(conn).await?;
        if pending.is_empty() {
            println!("  tables: present, schema up to date");
        } else {
            println!(
                "  tables: present, {} migration(s) pending: run `tronpay db create-tables`",
                pending.len()
            );
        }
    } else {
        println!("  tables: missing: run `tronpay db create-tables`");
    }
    Ok(())
}

async fn cleanup_logs(db: &DbSettings, days: u32) -> anyhow::Result<()> {
    let mut conn = connect_with_tables(db).await?;
    let cutoff = chrono::Utc::now().naive_utc() - chrono::TimeDelta::days(i64::from(days));
    println!("Cleaning up logs older than {days} days...");
    let deleted = logs::delete_older_than(&mut conn, cutoff, 10_000).await?;
    println!("Cleaned up {deleted} old log entries");
    Ok(())
}

/// Asks for `yes` after `warning`, unless `yes` was passed already.
pub(crate) fn confirm(warning: &str, yes: bool) -> anyhow::Result<()> {
    if yes {
        return Ok(());
    }
    println!("WARNING: {warning}");
    print!("Type 'yes' to confirm: ");
    std::io::stdout().flush().context("writing the prompt")?;
    let mut answer = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut answer)
        .context("reading the confirmation")?;
    if !answer.trim().eq_ignore_ascii_case("yes") {
        if !std::io::stdin().is_terminal() && answer.is_empty() {
            bail!("this needs confirmation: type 'yes' at the prompt or pass --yes; nothing was changed");
        }
        bail!("operation cancelled; nothing was changed");
    }
    Ok(())
}

async fn reset(db: &DbSettings, yes: bool) -> anyhow::Result<()> {
    let conn = connect(db).await?;
    confirm("This will delete ALL data!", yes)?;
    migrate::reset(conn).await?;
    println!("All tables dropped and recreated.");
    Ok(())
}

//! `tronpay chain …`: where the chain watcher is, and the transfers it
//! recorded (unmatched ones are the operator's to look at).

use clap::Subcommand;
use tronpay_db::{DbSettings, chain, matching, outbox};

#[derive(Subcommand)]
pub enum ChainCommand {
    /// The watcher's cursor, the chain's head and final block, lag, last error.
    Status,
    /// Recorded transfers to watched addresses, newest first.
    Transfers {
        /// Only transfers that paid no payment.
        #[arg(long)]
        unmatched: bool,
        /// How many to show.
        #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(i64).range(1..=10_000))]
        limit: i64,
    },
    /// Forget the watcher's cursor: its next start begins again as a first
    /// start does (SCAN_START_BLOCK, else the oldest pending payment's
    /// block, else the node's final block). For a new chain — a restarted
    /// sandbox, another network. Stop the watchers first.
    Reset {
        /// Do not ask for confirmation.
        #[arg(long)]
        yes: bool,
    },
}

/// Runs `command` with `db`, already checked ([`tronpay_runtime::Settings::validated`]).
pub async fn run(command: ChainCommand, db: &DbSettings) -> anyhow::Result<()> {
    let mut conn = crate::db::connect_with_tables(db).await?;
    match command {
        ChainCommand::Status => {
            let Some(state) = chain::state(&mut conn).await? else {
                println!("The chain watcher has not started yet (no cursor).");
                return Ok(());
            };
            let show = |value: Option<i64>| value.map_or_else(|| "-".to_owned(), |value| value.to_string());
            let health = state.health(chrono::Utc::now().naive_utc());
            match &health.problem {
                Some(problem) => println!("chain:                               degraded: {problem}"),
                None => println!("chain:                               ok"),
            }
            println!("cursor (last final block processed): {}", state.cursor_block);
            println!("final block:                         {}", show(state.final_block));
            println!("head block:                          {}", show(state.head_block));
            println!(
                "newest block seen:                   {}",
                health
                    .head_age_seconds
                    .map_or_else(|| "-".into(), |age| format!("{age} s ago"))
            );
            println!("lag (blocks):                        {}", show(health.lag_blocks));
            println!("tip scanned to:                      {}", state.tip_block);
            println!(
                "scanner:                             {}",
                state.leader.as_deref().unwrap_or("-")
            );
            println!(
                "last poll:                           {}",
                state.polled_at.map_or_else(|| "-".into(), |time| time.to_string())
            );
            match (&state.last_error, state.last_error_at) {
                (Some(error), Some(at)) => println!("last upstream error:                 {error} (at {at})"),
                _ => println!("last upstream error:                 none"),
            }
            println!(
                "events waiting in the outbox:        {}",
                outbox::backlog(&mut conn).await?
            );
        }
        ChainCommand::Reset { yes } => {
            crate::db::confirm(
                "The chain watcher will forget where it is; blocks between its cursor and the node's final block are never scanned.",
                yes,
            )?;
            match chain::reset(&mut conn).await? {
                Some(cursor) => {
                    println!("Chain cursor (at block {cursor}) forgotten; the watcher starts again at the final block.")
                }
                None => println!("There was no chain cursor; nothing changed."),
            }
        }
        ChainCommand::Transfers { unmatched, limit } => {
            let rows = matching::recent_transfers(&mut conn, unmatched, limit).await?;
            if rows.is_empty() {
                println!(
                    "No transfers recorded{}.",
                    if unmatched { " without a match" } else { "" }
                );
            }
            for row in rows {
                let transfer = &row.transfer;
                println!(
                    "{} #{} block {} {} -> {} {} USDT {} {}",
                    transfer.id.txid,
                    transfer.id.log_index,
                    transfer.block_number,
                    transfer.from,
                    transfer.to,
                    transfer.amount,
                    row.status,
                    match (row.match_kind, &row.payment_id) {
                        (Some(kind), Some(payment)) => format!("{kind} payment {payment}"),
                        (Some(kind), None) => kind.to_string(),
                        (None, _) => "not applied yet".into(),
                    }
                );
            }
        }
    }
    Ok(())
}

//! `tronpay webhooks …`: the signing secret and the deliveries.

use clap::Subcommand;
use tronpay_db::{DbSettings, deliveries, secrets};
use tronpay_domain::DeliveryId;
use tronpay_domain::signing::WebhookSecret;

#[derive(Subcommand)]
pub enum WebhooksCommand {
    /// Print the signing secret(s) in force (newest first).
    Secret,
    /// Make a new signing secret; the current one keeps signing for 24 hours.
    RotateSecret,
    /// Recent deliveries with their state.
    List {
        /// Only deliveries that gave up (dead) or were refused for good (failed).
        #[arg(long)]
        dead: bool,
        #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(i64).range(1..=10_000))]
        limit: i64,
    },
    /// Deliver a dead or failed delivery again (same webhook-id).
    Retry {
        /// Delivery id (from `tronpay webhooks list`).
        id: Option<uuid::Uuid>,
        /// Every dead or failed delivery.
        #[arg(long, conflicts_with = "id")]
        all_dead: bool,
    },
}

/// Runs `command` with `db`, already checked ([`tronpay_runtime::Settings::validated`]).
pub async fn run(command: WebhooksCommand, db: &DbSettings) -> anyhow::Result<()> {
    let mut conn = crate::db::connect_with_tables(db).await?;
    match command {
        WebhooksCommand::Secret => {
            if std::env::var("WEBHOOK_SECRET").is_ok_and(|value| !value.trim().is_empty()) {
                println!("WEBHOOK_SECRET is set in this environment; the dispatcher signs with it.");
                return Ok(());
            }
            let secrets = secrets::secrets(&mut conn).await?;
            if secrets.is_empty() {
                println!("No secret yet: the webhook dispatcher generates one on its first start.");
            }
            for secret in secrets {
                println!("{secret}");
            }
        }
        WebhooksCommand::RotateSecret => {
            let secret = WebhookSecret::generate().map_err(anyhow::Error::msg)?;
            secrets::rotate_secret(&mut conn, secret.expose(), std::time::Duration::from_secs(24 * 3600)).await?;
            println!("{}", secret.expose());
            println!(
                "New signing secret stored. Webhooks carry signatures with both secrets for 24 hours; switch your receivers within that time."
            );
        }
        WebhooksCommand::List { dead, limit } => {
            let rows = deliveries::list(&mut conn, dead, limit).await?;
            if rows.is_empty() {
                println!("No deliveries{}.", if dead { " that gave up" } else { "" });
            }
            for row in rows {
                println!(
                    "{} {} {} payment {} {} attempt(s) {}{}",
                    row.id,
                    row.webhook_id,
                    row.event_type,
                    row.payment_id,
                    row.attempts,
                    row.status,
                    match (&row.last_error, row.delivered_at) {
                        (_, Some(at)) => format!(" at {at}"),
                        (Some(error), None) => format!(" ({error})"),
                        (None, None) => format!(" next {}", row.next_attempt_at),
                    }
                );
            }
        }
        WebhooksCommand::Retry { id, all_dead } => {
            let ids = match (id, all_dead) {
                (Some(id), false) => Some(vec![DeliveryId(id)]),
                (None, true) => None,
                _ => anyhow::bail!("give a delivery id or --all-dead"),
            };
            let count = deliveries::retry(&mut conn, ids.as_deref(), "the operator").await?;
            if count == 0 {
                anyhow::bail!("no dead or failed delivery matched");
            }
            println!(
                "{count} deliver{} queued again (same webhook-id).",
                if count == 1 { "y" } else { "ies" }
            );
        }
    }
    Ok(())
}

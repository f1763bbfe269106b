//! `tronpay bus …`: the dead-letter queues, where messages no consumer could
//! apply end up.

use clap::Subcommand;
use lapin::options::{BasicGetOptions, BasicNackOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use tronpay_bus::BusSettings;

#[derive(Subcommand)]
pub enum BusCommand {
    /// Messages waiting in each dead-letter queue (and the first few of each).
    DeadLetters {
        /// Show up to this many messages per queue (they stay in the queue).
        #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..=100))]
        show: u32,
    },
}

/// Runs `command` with `bus`, already checked ([`tronpay_runtime::Settings::validated`]).
pub async fn run(command: BusCommand, bus: &BusSettings) -> anyhow::Result<()> {
    let BusCommand::DeadLetters { show } = command;
    let connection = tronpay_bus::topology::open(bus, "tronpay-cli")
        .await
        .map_err(|error| anyhow::anyhow!("cannot reach RabbitMQ at {}: {error}", bus.redacted_url()))?;
    let channel = connection.create_channel().await?;
    for queue in bus.all_queues() {
        let name = queue.dead_letter();
        let passive = QueueDeclareOptions {
            passive: true,
            ..QueueDeclareOptions::default()
        };
        let declared = match channel
            .queue_declare(name.as_str().into(), passive, FieldTable::default())
            .await
        {
            Ok(declared) => declared,
            Err(_) => {
                println!("{name}: not created yet (no service has connected)");
                // A failed passive declare closes the channel.
                return Ok(());
            }
        };
        println!("{name}: {} message(s)", declared.message_count());
        let mut peeked = Vec::new();
        for _ in 0..show {
            let Some(message) = channel
                .basic_get(name.as_str().into(), BasicGetOptions::default())
                .await?
            else {
                break;
            };
            println!(
                "  {} {}",
                message
                    .delivery
                    .properties
                    .message_id()
                    .as_ref()
                    .map_or_else(|| "-".to_owned(), ToString::to_string),
                String::from_utf8_lossy(&message.delivery.data)
            );
            peeked.push(message);
        }
        // Put the peeked messages back.
        for message in peeked {
            message
                .delivery
                .nack(BasicNackOptions {
                    requeue: true,
                    ..BasicNackOptions::default()
                })
                .await?;
        }
    }
    let _ = connection.close(200, "done".into()).await;
    Ok(())
}

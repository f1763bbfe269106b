//! Publishing with confirms.

use std::time::Duration;

use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::{BasicProperties, Channel, Connection};

use crate::BusError;
use crate::settings::BusSettings;
use crate::topology;

/// One message to publish.
#[derive(Debug, Clone)]
pub struct Outgoing {
    pub routing_key: String,
    pub message_id: String,
    pub payload: Vec<u8>,
}

/// A connection and a channel in confirm mode.
pub struct Publisher {
    connection: Connection,
    channel: Channel,
    exchange: String,
    confirm_timeout: Duration,
}

impl Publisher {
    pub async fn connect(settings: &BusSettings, name: &str) -> Result<Self, BusError> {
        let connection = topology::connect(settings, name).await?;
        let channel = connection.create_channel().await?;
        channel.confirm_select(ConfirmSelectOptions::default()).await?;
        Ok(Self {
            connection,
            channel,
            exchange: settings.bus_exchange.clone(),
            confirm_timeout: settings.confirm_timeout(),
        })
    }

    pub fn is_connected(&self) -> bool {
        self.connection.status().connected() && self.channel.status().connected()
    }

    /// Publishes persistent messages and waits until the broker confirmed
    /// every one; an error means some may not have been taken (the caller
    /// publishes them again: consumers are idempotent).
    pub async fn publish(&self, messages: &[Outgoing]) -> Result<(), BusError> {
        let mut confirms = Vec::with_capacity(messages.len());
        for message in messages {
            let properties = BasicProperties::default()
                .with_delivery_mode(2)
                .with_content_type("application/json".into())
                .with_message_id(message.message_id.as_str().into())
                .with_type(message.routing_key.as_str().into());
            let confirm = self
                .channel
                .basic_publish(
                    self.exchange.as_str().into(),
                    message.routing_key.as_str().into(),
                    BasicPublishOptions::default(),
                    &message.payload,
                    properties,
                )
                .await?;
            confirms.push(confirm);
        }
        let waited = tokio::time::timeout(self.confirm_timeout, async {
            for confirm in confirms {
                if !confirm.await?.is_ack() {
                    return Err(BusError::Nacked);
                }
            }
            Ok(())
        })
        .await;
        waited.unwrap_or(Err(BusError::ConfirmTimeout(self.confirm_timeout)))
    }

    pub async fn close(&self) {
        let _ = self.channel.close(200, "closing".into()).await;
        let _ = self.connection.close(200, "closing".into()).await;
    }
}

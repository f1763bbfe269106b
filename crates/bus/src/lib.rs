//! RabbitMQ for tronpay.
//!
//! - [`topology`]: one durable topic exchange, a durable queue per consuming
//!   service with a dead-letter queue beside it. Every service declares the
//!   whole topology when it connects, so an event published before its
//!   consumer ever ran still lands in a durable queue.
//! - [`publisher`]: persistent messages with publisher confirms (bounded by a
//!   timeout: a confirm can fail to arrive).
//! - [`consumer`]: bounded prefetch, manual acknowledgement after the
//!   handler's database transaction commits, poison messages to the
//!   dead-letter queue, reconnection with backoff.
//! - [`relay`]: publishes the transactional outbox and marks rows published.

pub mod consumer;
pub mod publisher;
pub mod relay;
pub mod settings;
pub mod topology;

pub use consumer::{HandlerError, Incoming, run_consumer};
pub use publisher::{Outgoing, Publisher};
pub use relay::Relay;
pub use settings::{BusSettings, BusStatus};

/// A broker failure.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("RabbitMQ: {0}")]
    Amqp(#[from] lapin::Error),
    #[error("RabbitMQ did not confirm a publication within {0:?}")]
    ConfirmTimeout(std::time::Duration),
    #[error("RabbitMQ refused a publication (nack)")]
    Nacked,
    #[error("invalid RABBITMQ_URL: {0}")]
    InvalidUrl(String),
    #[error("broker settings: {0}")]
    Config(String),
}

//! Exchanges and queues. Each consuming service has one durable queue per
//! routing key it consumes, dead-lettering into `<queue>.dead`.

use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Channel, ExchangeKind};
use tronpay_domain::events::{CALLBACK_DUE, PAYMENT_DETECTED};

use crate::BusError;
use crate::settings::BusSettings;

/// A queue a service consumes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueSpec {
    pub name: String,
    pub routing_key: String,
}

impl QueueSpec {
    /// Its dead-letter queue.
    pub fn dead_letter(&self) -> String {
        format!("{}.dead", self.name)
    }
}

/// Every queue of the system: which service consumes which event. The one
/// place queue names come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Queue {
    /// `payment.detected`, consumed by the API (matching).
    ApiPaymentDetected,
    /// `callback.due`, consumed by the webhook dispatcher.
    DispatcherCallbackDue,
}

impl Queue {
    pub const ALL: [Self; 2] = [Self::ApiPaymentDetected, Self::DispatcherCallbackDue];

    /// The consuming service, as it appears in the queue's name.
    pub fn consumer(self) -> &'static str {
        match self {
            Self::ApiPaymentDetected => "api",
            Self::DispatcherCallbackDue => "webhook-dispatcher",
        }
    }

    /// The routing key (event type) it receives.
    pub fn routing_key(self) -> &'static str {
        match self {
            Self::ApiPaymentDetected => PAYMENT_DETECTED,
            Self::DispatcherCallbackDue => CALLBACK_DUE,
        }
    }
}

impl BusSettings {
    /// The queue's name and routing key: `<BUS_QUEUE_PREFIX>.<consumer>.<routing key>`.
    pub fn queue(&self, queue: Queue) -> QueueSpec {
        QueueSpec {
            name: format!("{}.{}.{}", self.bus_queue_prefix, queue.consumer(), queue.routing_key()),
            routing_key: queue.routing_key().into(),
        }
    }

    /// Every queue of the system ([`Queue::ALL`]).
    pub fn all_queues(&self) -> Vec<QueueSpec> {
        Queue::ALL.into_iter().map(|queue| self.queue(queue)).collect()
    }

    pub fn dead_letter_exchange(&self) -> String {
        format!("{}.dead", self.bus_exchange)
    }
}

/// Declares the exchange, the dead-letter exchange and every queue with its
/// dead-letter queue (all durable; declaring again is harmless).
pub async fn declare(channel: &Channel, settings: &BusSettings) -> Result<(), BusError> {
    let durable = ExchangeDeclareOptions {
        durable: true,
        ..ExchangeDeclareOptions::default()
    };
    channel
        .exchange_declare(
            settings.bus_exchange.as_str().into(),
            ExchangeKind::Topic,
            durable,
            FieldTable::default(),
        )
        .await?;
    let dead_exchange = settings.dead_letter_exchange();
    channel
        .exchange_declare(
            dead_exchange.as_str().into(),
            ExchangeKind::Direct,
            durable,
            FieldTable::default(),
        )
        .await?;
    let queue_options = QueueDeclareOptions {
        durable: true,
        ..QueueDeclareOptions::default()
    };
    for queue in settings.all_queues() {
        let dead = queue.dead_letter();
        channel
            .queue_declare(dead.as_str().into(), queue_options, FieldTable::default())
            .await?;
        channel
            .queue_bind(
                dead.as_str().into(),
                dead_exchange.as_str().into(),
                queue.name.as_str().into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await?;
        let mut arguments = FieldTable::default();
        arguments.insert(
            "x-dead-letter-exchange".into(),
            AMQPValue::LongString(dead_exchange.as_str().into()),
        );
        arguments.insert(
            "x-dead-letter-routing-key".into(),
            AMQPValue::LongString(queue.name.as_str().into()),
        );
        channel
            .queue_declare(queue.name.as_str().into(), queue_options, arguments)
            .await?;
        channel
            .queue_bind(
                queue.name.as_str().into(),
                settings.bus_exchange.as_str().into(),
                queue.routing_key.as_str().into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await?;
    }
    Ok(())
}

/// Opens a connection named after the component (visible in the RabbitMQ
/// management UI) and declares the topology on a first channel.
pub async fn connect(settings: &BusSettings, name: &str) -> Result<lapin::Connection, BusError> {
    let connection = open(settings, name).await?;
    let channel = connection.create_channel().await?;
    declare(&channel, settings).await?;
    let _ = channel.close(200, "topology declared".into()).await;
    Ok(connection)
}

/// Opens a connection named after the component, declaring nothing.
pub async fn open(settings: &BusSettings, name: &str) -> Result<lapin::Connection, BusError> {
    let properties = lapin::ConnectionProperties::default().with_connection_name(name.into());
    // `amqps://` is TLS (rustls, the system's CAs plus RABBITMQ_CA_FILE).
    let tls = lapin::tcp::OwnedTLSConfig {
        identity: None,
        cert_chain: match settings.ca_file() {
            Some(path) => Some(
                std::fs::read_to_string(path)
                    .map_err(|error| BusError::Config(format!("RABBITMQ_CA_FILE {path}: {error}")))?,
            ),
            None => None,
        },
    };
    let runtime = lapin::runtime::default_runtime()?;
    Ok(lapin::Connection::connect_with_config(&settings.rabbitmq_url, properties, tls, runtime).await?)
}

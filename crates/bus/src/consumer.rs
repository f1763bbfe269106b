//! Consuming: bounded prefetch, acknowledgement only after the handler
//! committed, poison messages to the dead-letter queue, reconnection.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions, BasicRejectOptions,
};
use lapin::types::FieldTable;
use tokio::sync::watch;
use tronpay_runtime::stopped;

use crate::BusError;
use crate::settings::{BusSettings, BusStatus, reconnect_delay};
use crate::topology::{self, QueueSpec};

/// A delivered message.
#[derive(Debug, Clone)]
pub struct Incoming {
    pub message_id: Option<String>,
    pub routing_key: String,
    pub payload: Vec<u8>,
    pub redelivered: bool,
}

/// What a handler says about a message it could not apply.
#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    /// Try again later (the database is down, a lock timed out…); the message
    /// is requeued after a pause.
    #[error("will retry: {0}")]
    Retry(String),
    /// It can never be applied (malformed): it goes to the dead-letter queue.
    #[error("rejected: {0}")]
    Reject(String),
}

/// How long a message that failed transiently waits before it is requeued.
const RETRY_PAUSE: Duration = Duration::from_secs(1);

/// Consumes `queue` until `shutdown` turns true, calling `handler` for each
/// message (up to `BUS_PREFETCH` at once) and acknowledging it only after the
/// handler returned `Ok` — that is, after its transaction committed.
pub async fn run_consumer<H, F>(
    settings: BusSettings,
    queue: QueueSpec,
    name: String,
    handler: H,
    mut shutdown: watch::Receiver<bool>,
    status: Arc<BusStatus>,
) where
    H: Fn(Incoming) -> F + Send + Sync + 'static,
    F: Future<Output = Result<(), HandlerError>> + Send,
{
    let handler = Arc::new(handler);
    let mut attempt = 0u32;
    while !*shutdown.borrow() {
        let connected_at = std::time::Instant::now();
        match consume_once(&settings, &queue, &name, Arc::clone(&handler), &mut shutdown, &status).await {
            Ok(()) => return,
            Err(error) => {
                // A connection that lasted a while starts the backoff over.
                if connected_at.elapsed() > Duration::from_secs(60) {
                    attempt = 0;
                }
                status.set_failed(&error);
                let delay = reconnect_delay(attempt);
                attempt = attempt.saturating_add(1);
                tracing::warn!(queue = %queue.name, %error, ?delay, "consumer lost the broker; reconnecting");
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = stopped(&mut shutdown) => return,
                }
            }
        }
    }
}

/// One connection's worth of consuming; `Ok` when stopped by `shutdown`.
async fn consume_once<H, F>(
    settings: &BusSettings,
    queue: &QueueSpec,
    name: &str,
    handler: Arc<H>,
    shutdown: &mut watch::Receiver<bool>,
    status: &BusStatus,
) -> Result<(), BusError>
where
    H: Fn(Incoming) -> F + Send + Sync + 'static,
    F: Future<Output = Result<(), HandlerError>> + Send,
{
    let connection = topology::connect(settings, name).await?;
    let channel = connection.create_channel().await?;
    channel
        .basic_qos(settings.bus_prefetch, BasicQosOptions::default())
        .await?;
    let tag = format!("{name}-{}", uuid::Uuid::new_v4().simple());
    let consumer = channel
        .basic_consume(
            queue.name.as_str().into(),
            tag.as_str().into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    status.set_connected();
    tracing::info!(queue = %queue.name, "consuming");

    let (failed_tx, mut failed_rx) = tokio::sync::mpsc::channel::<BusError>(1);
    let work = consumer.for_each_concurrent(usize::from(settings.bus_prefetch), |delivery| {
        let handler = Arc::clone(&handler);
        let failed_tx = failed_tx.clone();
        async move {
            let delivery = match delivery {
                Ok(delivery) => delivery,
                Err(error) => {
                    let _ = failed_tx.try_send(error.into());
                    return;
                }
            };
            let incoming = Incoming {
                message_id: delivery.properties.message_id().as_ref().map(|id| id.to_string()),
                routing_key: delivery.routing_key.to_string(),
                payload: delivery.data.clone(),
                redelivered: delivery.redelivered,
            };
            let outcome = handler(incoming).await;
            // A failed ack (the channel died) is harmless: the broker
            // redelivers, and the handler's dedupe makes the second run a no-op.
            let acked = match outcome {
                Ok(()) => delivery.ack(BasicAckOptions::default()).await,
                Err(HandlerError::Retry(reason)) => {
                    tracing::warn!(%reason, "message will be retried");
                    tokio::time::sleep(RETRY_PAUSE).await;
                    delivery
                        .nack(BasicNackOptions {
                            requeue: true,
                            ..BasicNackOptions::default()
                        })
                        .await
                }
                Err(HandlerError::Reject(reason)) => {
                    tracing::error!(%reason, "message rejected to the dead-letter queue");
                    delivery.reject(BasicRejectOptions { requeue: false }).await
                }
            };
            match acked {
                Ok(true) => {}
                Ok(false) => tracing::warn!("acknowledgement not sent; the message will be redelivered"),
                Err(error) => {
                    let _ = failed_tx.try_send(error.into());
                }
            }
        }
    });
    tokio::pin!(work);

    let result = tokio::select! {
        _ = &mut work => Err(BusError::Amqp(lapin::Error::from(lapin::ErrorKind::InvalidConnectionState(lapin::ConnectionState::Closed)))),
        Some(error) = failed_rx.recv() => Err(error),
        _ = stopped(shutdown) => {
            // Stop new deliveries, let the ones in hand finish and be acked.
            let _ = channel.basic_cancel(tag.as_str().into(), BasicCancelOptions::default()).await;
            let _ = tokio::time::timeout(Duration::from_secs(10), &mut work).await;
            Ok(())
        }
    };
    let _ = channel.close(200, "consumer stopping".into()).await;
    let _ = connection.close(200, "consumer stopping".into()).await;
    result
}

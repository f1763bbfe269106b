//! Broker settings (`RABBITMQ_URL`, `BUS_*`) and a shared view of the
//! connection state for health endpoints.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tronpay_runtime::Validate;

/// How to reach the broker and name what tronpay makes there; serialized
/// (for display) with the URL's password redacted.
#[derive(Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct BusSettings {
    /// `RABBITMQ_URL`.
    #[serde(serialize_with = "tronpay_runtime::serialize_redacted_url")]
    pub rabbitmq_url: String,
    /// `BUS_EXCHANGE`: the topic exchange events go through.
    pub bus_exchange: String,
    /// `BUS_QUEUE_PREFIX`: queues are `<prefix>.<service>.<routing key>`.
    pub bus_queue_prefix: String,
    /// `BUS_PREFETCH`: unacknowledged deliveries per consumer.
    pub bus_prefetch: u16,
    /// `BUS_CONFIRM_TIMEOUT_MS`: how long a publisher waits for confirms.
    pub bus_confirm_timeout_ms: u64,
    /// `RABBITMQ_CA_FILE`: PEM certificates trusted for an `amqps://` broker
    /// besides the system's (a private CA).
    pub rabbitmq_ca_file: Option<String>,
}

impl Default for BusSettings {
    fn default() -> Self {
        Self {
            rabbitmq_url: "amqp://guest:guest@127.0.0.1:5672/%2f".into(),
            bus_exchange: "tronpay.events".into(),
            bus_queue_prefix: "tronpay".into(),
            bus_prefetch: 64,
            bus_confirm_timeout_ms: 10_000,
            rabbitmq_ca_file: None,
        }
    }
}

impl Validate for BusSettings {
    /// Checks the URL, the CA file and the names, naming the setting that
    /// is wrong.
    fn validate(&self) -> Result<(), String> {
        self.rabbitmq_url
            .parse::<lapin::uri::AMQPUri>()
            .map_err(|error| format!("RABBITMQ_URL is not an AMQP URL: {error}"))?;
        if let Some(path) = self.ca_file() {
            let pem = std::fs::read_to_string(path).map_err(|error| format!("RABBITMQ_CA_FILE {path}: {error}"))?;
            if !pem.contains("-----BEGIN CERTIFICATE-----") {
                return Err(format!("RABBITMQ_CA_FILE {path}: no PEM certificate in it"));
            }
        }
        if self.bus_exchange.trim().is_empty() {
            return Err("BUS_EXCHANGE is empty".into());
        }
        if self.bus_queue_prefix.trim().is_empty() {
            return Err("BUS_QUEUE_PREFIX is empty".into());
        }
        if self.bus_prefetch == 0 {
            return Err("BUS_PREFETCH must be at least 1".into());
        }
        Ok(())
    }
}

impl BusSettings {
    pub fn confirm_timeout(&self) -> Duration {
        Duration::from_millis(self.bus_confirm_timeout_ms.max(1))
    }

    /// `RABBITMQ_CA_FILE`, unless empty.
    pub fn ca_file(&self) -> Option<&str> {
        self.rabbitmq_ca_file.as_deref().filter(|path| !path.trim().is_empty())
    }

    /// The URL without its password, for logs.
    pub fn redacted_url(&self) -> String {
        tronpay_runtime::redact_url(&self.rabbitmq_url)
    }
}

impl std::fmt::Debug for BusSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BusSettings")
            .field("rabbitmq_url", &self.redacted_url())
            .field("bus_exchange", &self.bus_exchange)
            .field("bus_queue_prefix", &self.bus_queue_prefix)
            .field("bus_prefetch", &self.bus_prefetch)
            .finish_non_exhaustive()
    }
}

/// Whether a component is connected to the broker, and its last error.
#[derive(Debug, Default)]
pub struct BusStatus {
    connected: AtomicBool,
    last_error: Mutex<Option<String>>,
}

impl BusStatus {
    pub fn connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }

    pub fn last_error(&self) -> Option<String> {
        self.last_error.lock().map(|error| error.clone()).unwrap_or(None)
    }

    pub fn set_connected(&self) {
        self.connected.store(true, Ordering::Relaxed);
    }

    pub fn set_failed(&self, error: &impl std::fmt::Display) {
        self.connected.store(false, Ordering::Relaxed);
        if let Ok(mut last) = self.last_error.lock() {
            *last = Some(error.to_string());
        }
    }
}

/// Delay before reconnect attempt `attempt` (0-based): a step of 0.5 s
/// doubling to 30 s, jittered between half the step and the step so that
/// many replicas do not reconnect in step ([`tronpay_domain::retry::backoff`]).
pub fn reconnect_delay(attempt: u32) -> Duration {
    tronpay_domain::retry::backoff(Duration::from_millis(500), Duration::from_secs(30), attempt)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reconnect_delays_double_from_half_a_second_to_thirty_and_are_jittered() {
        for attempt in 0..20u32 {
            let step = (Duration::from_millis(500) * 2u32.pow(attempt.min(6))).min(Duration::from_secs(30));
            for _ in 0..100 {
                let delay = reconnect_delay(attempt);
                assert!(delay >= step / 2 && delay <= step, "attempt {attempt}: {delay:?}");
            }
        }
        let spread: std::collections::HashSet<Duration> = (0..50).map(|_| reconnect_delay(8)).collect();
        assert!(spread.len() > 10, "{spread:?}");
    }
}

//! What every request handler shares ([`AppState`]) and the broker status
//! the workers report ([`BusHealth`]); built by [`crate::startup`], read by
//! [`crate::routes`].

use std::sync::Arc;
use std::time::Instant;

use tronpay_bus::BusStatus;
use tronpay_db::DbPool;
use tronpay_runtime::supervise::TaskHealth;

use crate::callback_guard::CallbackGuard;
use crate::settings::ApiSettings;
use crate::v1::auth::KeyCache;

/// Broker status of the consumer and the outbox relay.
#[derive(Clone)]
pub struct BusHealth {
    pub consumer: Arc<BusStatus>,
    pub relay: Arc<BusStatus>,
}

/// What every handler shares.
pub struct AppState {
    pub pool: DbPool,
    pub settings: ApiSettings,
    /// The database and broker settings, `(NAME, value)` with passwords
    /// redacted, for the dashboard's settings page.
    pub shared_settings: Vec<(String, String)>,
    pub callback_guard: CallbackGuard,
    pub started: Instant,
    pub bus: Option<BusHealth>,
    /// The first failure of this process's supervised tasks, if any.
    pub tasks: Arc<TaskHealth>,
    /// What this replica knows of API keys (`API_KEY_CACHE_SECONDS`).
    pub keys: KeyCache,
    /// `ADDRESS_MODE` and what it needs.
    pub receiving: crate::settings::Receiving,
    /// One derivation of addresses at a time in this replica.
    pub refilling: tokio::sync::Mutex<()>,
    /// Creates since this replica last made sure enough derived addresses
    /// are free.
    pub creates_since_refill: std::sync::atomic::AtomicU64,
    /// Where this replica last saw the first free derived address (creates
    /// search from there).
    pub address_floor: std::sync::atomic::AtomicI32,
    /// `METRICS_ALLOW`: who may read `/metrics`.
    pub metrics_allow: Vec<ipnet::IpNet>,
    /// The per-IP, per-key and failed-authentication limits of this replica.
    pub limits: crate::edge::RateLimits,
    /// `PUBLIC_BASE_URL` without a trailing `/` (checkout URLs start with it).
    pub public_base_url: String,
    /// The checkout pages' open status streams and their poller.
    pub status_hub: std::sync::Arc<crate::stream::StatusHub>,
}

impl AppState {
    /// How many pool addresses are free and how many there are, when
    /// `ADDRESS_MODE=pool` (`None` in the other modes).
    pub(crate) async fn address_pool(
        &self,
        conn: &mut diesel_async::AsyncPgConnection,
    ) -> Result<Option<tronpay_db::receiving::PoolCounts>, tronpay_db::DbError> {
        match self.receiving {
            crate::settings::Receiving::Pool => Ok(Some(tronpay_db::receiving::pool_counts(conn).await?)),
            _ => Ok(None),
        }
    }

    /// `connected`, `disconnected`, or `null` when this process runs no
    /// broker workers.
    pub(crate) fn broker(&self) -> serde_json::Value {
        match &self.bus {
            Some(bus) if bus.consumer.connected() && bus.relay.connected() => "connected".into(),
            Some(_) => "disconnected".into(),
            None => serde_json::Value::Null,
        }
    }
}

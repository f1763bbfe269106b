//! The merchant HTTP API of tronpay.
//!
//! It keeps the original Flask service's endpoints, JSON shapes, status codes
//! and error texts, and owns payment state in PostgreSQL.
//!
//! [`run`] is the whole service: it builds everything from a [`Config`] and
//! runs until shutdown. Its background tasks ([`workers`]) are supervised
//! ([`tronpay_runtime::supervise`]): if one ends any other way (an error
//! retrying cannot cure, a panic), `/health` turns 503 `unhealthy` naming
//! it and `run` returns the failure, so the process exits non-zero and is
//! restarted.

pub mod admin;
pub mod callback_guard;
pub mod chain_events;
pub mod checkout;
pub mod edge;
pub mod error;
pub mod expiry;
pub mod metrics;
pub mod request;
pub mod routes;
pub mod settings;
pub mod skips;
pub mod startup;
pub mod state;
pub mod stream;
pub mod v1;
pub mod workers;

use std::future::Future;

use tronpay_bus::BusSettings;
use tronpay_db::{DbPool, DbSettings};
use tronpay_runtime::ServiceConfig;
use tronpay_runtime::service::{Binary, Serving};
use tronpay_runtime::supervise::Tasks;

pub use settings::ApiSettings;
pub use startup::Application;
pub use tronpay_runtime::service::Running;

use crate::state::BusHealth;
use crate::workers::Workers;

/// The service's name: its binary, its database connections'
/// `application_name`, its log lines.
pub const NAME: &str = "tronpay-api";

/// Its command line (`--config`, `--bind`).
pub const BINARY: Binary = Binary::new(NAME, "tronpay merchant HTTP API", "BIND");

/// Everything the API reads at start, each part checked: `service` is
/// its own settings.
pub type Config = ServiceConfig<ApiSettings, DbSettings, BusSettings>;

/// Builds the API from `config` on the current runtime: the pool (no
/// connection yet: a database that is down is waited for), the workers when
/// `API_PROCESS_EVENTS` is on, pool maintenance, and the HTTP server bound
/// to `BIND`, not yet serving. [`Running::run_until`] then serves: on
/// SIGTERM in-flight requests finish (`SHUTDOWN_TIMEOUT_SECONDS`) before the
/// workers finish the message in hand, ack it, publish what was committed
/// and close their connections. Errors: `BIND` or the callback policy is
/// unusable, or the address cannot be bound.
pub fn start(config: Config) -> anyhow::Result<Running> {
    let Config { service: api, db, bus } = config;
    let pool = DbPool::new(&db, NAME)?;
    let mut shared_settings = admin::settings_rows(&db);
    shared_settings.extend(admin::settings_rows(&bus));
    let mut tasks = Tasks::new();
    let health = api.api_process_events.then(|| {
        let workers = Workers::start(
            pool.clone(),
            bus,
            api.match_rules(),
            workers::ReleaseGrace {
                amounts_seconds: api.unique_amount_release_grace_seconds,
                pool_seconds: api.pool_release_grace_seconds,
            },
            &mut tasks,
        );
        BusHealth {
            consumer: workers.consumer,
            relay: workers.relay,
        }
    });
    tasks.spawn("pool maintenance", pool.clone().maintain(tasks.stopped()));
    tronpay_runtime::metrics::install();
    tasks.spawn(
        "metrics sampler",
        tronpay_db::observe::sample(pool.clone(), &[tronpay_db::observe::Gauges::Outbox], tasks.stopped()),
    );
    let application = Application::build(api, pool, health, tasks.health(), shared_settings)?;
    Ok(Running::new(
        NAME,
        Serving::Requests,
        tasks,
        application.port(),
        application.handle(),
        application.run_until_stopped(),
    ))
}

/// The whole API: [`start`], then [`Running::run_until`] `shutdown`. Logs
/// `tronpay-api listening` with the port. Errors: what `start` refuses, or
/// the failure of a task.
pub async fn run(config: Config, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    let (bind, database) = (
        config.service.bind.clone(),
        tronpay_runtime::redact_url(&config.db.database_url),
    );
    let running = start(config)?;
    tracing::info!(bind = %bind, port = running.port(), database = %database, "tronpay-api listening");
    Ok(running.run_until(shutdown).await?)
}

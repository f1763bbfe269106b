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

pub mod callback_guard;
pub mod chain_events;
pub mod error;
pub mod expiry;
pub mod request;
pub mod routes;
pub mod settings;
pub mod startup;
pub mod workers;

use std::future::Future;

use tronpay_bus::BusSettings;
use tronpay_db::{DbPool, DbSettings};
use tronpay_runtime::supervise::{self, TaskOutcome, Tasks};
use tronpay_runtime::{ConfigError, Settings, stopped};

pub use settings::ApiSettings;
pub use startup::Application;

use crate::startup::BusHealth;
use crate::workers::Workers;

/// Everything the API reads at start, each part checked.
#[derive(Debug, Clone)]
pub struct Config {
    pub api: ApiSettings,
    pub db: DbSettings,
    pub bus: BusSettings,
}

impl Config {
    /// Reads the API's, the database's and the broker's settings from the
    /// layered configuration; an error names the bad setting.
    pub fn load(settings: &Settings) -> Result<Self, ConfigError> {
        Ok(Self {
            api: settings.validated()?,
            db: settings.validated()?,
            bus: settings.validated()?,
        })
    }
}

/// A started API: bound to its port, its workers running.
pub struct Running {
    application: Application,
    tasks: Tasks,
}

/// Builds the API from `config` on the current runtime: the pool (no
/// connection yet: a database that is down is waited for), the workers when
/// `API_PROCESS_EVENTS` is on, pool maintenance, and the HTTP server bound
/// to `BIND`, not yet serving. Errors: `BIND` or the callback policy is
/// unusable, or the address cannot be bound.
pub fn start(config: Config) -> anyhow::Result<Running> {
    let Config { api, db, bus } = config;
    let pool = DbPool::new(&db, "tronpay-api")?;
    let mut tasks = Tasks::new();
    let health = api.api_process_events.then(|| {
        let workers = Workers::start(pool.clone(), bus, api.match_rules(), &mut tasks);
        BusHealth {
            consumer: workers.consumer,
            relay: workers.relay,
        }
    });
    let maintenance = pool.clone().maintain({
        let mut stop = tasks.shutdown();
        async move { stopped(&mut stop).await }
    });
    tasks.spawn("pool maintenance", maintenance);
    let application = Application::build(api, pool, health, tasks.health())?;
    Ok(Running { application, tasks })
}

impl Running {
    /// The port the API listens on (the one bound when `BIND` asks for
    /// port 0).
    pub fn port(&self) -> u16 {
        self.application.port()
    }

    /// Supervises one more task with the API's own (see [`Tasks::spawn`]):
    /// its failure fails the API.
    pub fn spawn<F>(&mut self, name: &str, task: F)
    where
        F: Future + Send + 'static,
        F::Output: TaskOutcome + Send + 'static,
    {
        self.tasks.spawn(name, task);
    }

    /// Serves until `shutdown` resolves, then lets in-flight requests
    /// finish (`SHUTDOWN_TIMEOUT_SECONDS`) before the workers finish the
    /// message in hand, ack it, publish what was committed and close their
    /// connections (`Ok`). If a task fails first, `/health` answers 503
    /// naming it, the workers stop, the server keeps answering for
    /// [`supervise::FAILURE_GRACE`], and the failure is returned.
    pub async fn run_until(self, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
        let Self { application, tasks } = self;
        let http = application.handle();
        let mut server = tokio::spawn(application.run_until_stopped());
        tokio::pin!(shutdown);
        let failure = tokio::select! {
            failure = tasks.until_failure_or(shutdown.as_mut()) => failure,
            // Nothing stops the server but this function: it failed.
            served = &mut server => {
                let _ = tasks.stop().await;
                return match served {
                    Ok(Ok(())) => Err(anyhow::anyhow!("the HTTP server stopped by itself")),
                    Ok(Err(error)) => Err(anyhow::Error::new(error).context("the HTTP server failed")),
                    Err(error) => Err(anyhow::Error::new(error).context("the HTTP server panicked")),
                };
            }
        };
        let failed_at = tokio::time::Instant::now();
        let outcome = match failure {
            None => {
                tracing::info!("shutdown signal received; finishing in-flight requests");
                http.stop(true).await;
                let _ = server.await;
                // HTTP is drained; now the workers finish what they hold.
                tasks.stop().await
            }
            Some(_) => {
                let outcome = tasks.stop().await;
                // `shutdown` has not resolved yet (it may not be polled
                // again once it has).
                supervise::linger(failed_at, shutdown.as_mut()).await;
                http.stop(true).await;
                let _ = server.await;
                outcome
            }
        };
        tracing::info!("tronpay-api stopped");
        Ok(outcome?)
    }
}

/// The whole API: [`start`], then [`Running::run_until`] `shutdown`. Logs
/// `tronpay-api listening` with the port. Errors: what `start` refuses, or
/// the failure of a task.
pub async fn run(config: Config, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    let (bind, database) = (
        config.api.bind.clone(),
        tronpay_runtime::redact_url(&config.db.database_url),
    );
    let running = start(config)?;
    tracing::info!(bind = %bind, port = running.port(), database = %database, "tronpay-api listening");
    running.run_until(shutdown).await
}

//! Building and running the HTTP server.

use std::net::TcpListener;
use std::time::{Duration, Instant};

use std::sync::Arc;

use actix_web::dev::{Server, ServerHandle};
use actix_web::{App, HttpServer, web};
use tronpay_db::DbPool;
use tronpay_runtime::supervise::TaskHealth;

use crate::callback_guard::CallbackGuard;
use crate::routes;
use crate::settings::ApiSettings;
use crate::state::{AppState, BusHealth};
use crate::v1::auth::KeyCache;

/// The API bound to its port, not yet serving. Tests bind port 0 and read
/// the port back.
pub struct Application {
    port: u16,
    server: Server,
}

impl Application {
    /// `bus` is the broker status of the workers when they run in this
    /// process, and `tasks` whether one of this process's supervised tasks
    /// failed (both shown by `/health`: a failed task makes it 503);
    /// `shared_settings` are the database and broker settings as the
    /// dashboard's settings page lists them ([`crate::admin::settings_rows`],
    /// passwords redacted). Errors: `BIND` or the callback policy is unusable, or the address
    /// cannot be bound.
    pub fn build(
        settings: ApiSettings,
        pool: DbPool,
        bus: Option<BusHealth>,
        tasks: Arc<TaskHealth>,
        shared_settings: Vec<(String, String)>,
    ) -> anyhow::Result<Self> {
        let addr = settings.bind_addr().map_err(anyhow::Error::msg)?;
        let listener = TcpListener::bind(addr).map_err(|error| anyhow::anyhow!("cannot listen on {addr}: {error}"))?;
        let port = listener.local_addr()?.port();
        let workers = settings
            .api_workers
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, usize::from));
        let shutdown_timeout = settings.shutdown_timeout_seconds;
        if settings.legacy_open_to_network() {
            tracing::warn!(
                bind = %settings.bind,
                "the original endpoints (/create_payment, /payment_status, /stats) answer without an API key on \
                 an address other hosts can reach; set LEGACY_API_KEY_REQUIRED=true once your clients send keys"
            );
        }
        if settings.public_base_url.is_empty() && addr.ip().is_unspecified() {
            tracing::warn!(
                bind = %settings.bind,
                "PUBLIC_BASE_URL is not set and the API listens on every interface: checkout URLs name \
                 http://{addr} itself, which buyers cannot open; set PUBLIC_BASE_URL to the address they reach"
            );
        }
        let receiving = settings.receiving().map_err(anyhow::Error::msg)?;
        let state = web::Data::new(AppState {
            receiving,
            refilling: tokio::sync::Mutex::new(()),
            creates_since_refill: std::sync::atomic::AtomicU64::new(0),
            address_floor: std::sync::atomic::AtomicI32::new(0),
            callback_guard: CallbackGuard::new(
                settings.callback_policy().map_err(anyhow::Error::msg)?,
                settings.callback_dns_timeout(),
            ),
            limits: crate::edge::RateLimits::new(
                settings.rate_limit_per_ip,
                settings.rate_limit_per_key,
                settings.auth_failures_per_minute,
                settings.trusted_proxy_nets().map_err(anyhow::Error::msg)?,
            ),
            metrics_allow: settings.metrics_allow_nets().map_err(anyhow::Error::msg)?,
            keys: KeyCache::new(Duration::from_secs(settings.api_key_cache_seconds)),
            public_base_url: settings.public_base_url_at(port).map_err(anyhow::Error::msg)?,
            status_hub: crate::stream::start(pool.clone()),
            pool,
            settings,
            shared_settings,
            started: Instant::now(),
            bus,
            tasks,
        });
        let server = HttpServer::new(move || {
            App::new()
                .app_data(state.clone())
                .app_data(crate::v1::query_config())
                .configure(routes::configure)
                .default_service(web::to(routes::not_found))
                .wrap(actix_web::middleware::from_fn(crate::edge::edge))
        })
        .workers(workers)
        .shutdown_timeout(shutdown_timeout)
        // Signals are handled by the caller, which also stops the other tasks.
        .disable_signals()
        .listen(listener)?
        .run();
        Ok(Self { port, server })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Stops the server: `handle().stop(true)` lets in-flight requests finish.
    pub fn handle(&self) -> ServerHandle {
        self.server.handle()
    }

    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        self.server.await
    }
}

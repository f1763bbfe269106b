//! The tronpay services together, for end-to-end tests: a fresh database, a
//! private set of exchange and queues on the real RabbitMQ, a sandbox node,
//! and the API and chain watcher each on their own runtime, so that a test
//! can kill one like a crashed process.

// Test support: a setup step that fails should stop the test loudly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod process;
pub mod receiver;

use std::future::Future;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::sync::watch;
use tronpay_api::startup::BusHealth;
use tronpay_api::workers::Workers;
use tronpay_api::{ApiSettings, Application};
use tronpay_bus::BusSettings;
use tronpay_chain_watcher::{Watcher, WatcherSettings, health};
use tronpay_db::{DbPool, DbSettings};
use tronpay_domain::TronAddress;
use tronpay_webhook_dispatcher::DispatcherSettings;

pub use tronpay_sandbox::{RunningSandbox, Sandbox, SandboxConfig};
pub use tronpay_testkit::{FaultyProxy, TestBus, TestDb, http_client, rabbitmq_url};

/// A service on its own multi-thread runtime: `stop` shuts it down
/// gracefully, `kill` drops everything at once, as a crash would.
struct ServiceRuntime {
    runtime: Option<tokio::runtime::Runtime>,
    stop: watch::Sender<bool>,
    http: Option<actix_web::dev::ServerHandle>,
}

impl ServiceRuntime {
    fn new() -> (Self, watch::Receiver<bool>) {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let (stop, stopped) = watch::channel(false);
        (
            Self {
                runtime: Some(runtime),
                stop,
                http: None,
            },
            stopped,
        )
    }

    /// Runs `setup` on the service's runtime and returns its output.
    async fn run<T: Send + 'static>(&self, setup: impl Future<Output = T> + Send + 'static) -> T {
        let handle = self.runtime.as_ref().expect("running").handle().clone();
        handle.spawn(setup).await.expect("service setup")
    }

    fn kill(&mut self) {
        if let Some(http) = self.http.take() {
            drop(http.stop(false));
        }
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }

    async fn stop(&mut self) {
        let _ = self.stop.send(true);
        if let Some(http) = self.http.take() {
            http.stop(true).await;
        }
        if let Some(runtime) = self.runtime.take() {
            // Blocking shutdown is not allowed on an async thread.
            let _ = std::thread::spawn(move || runtime.shutdown_timeout(Duration::from_secs(15))).join();
        }
    }
}

/// Dropped, a service dies as in a crash (unless it was stopped).
impl Drop for ServiceRuntime {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A running API (HTTP, event consumer, expiry sweep, outbox relay).
pub struct ApiInstance {
    pub url: String,
    service: ServiceRuntime,
}

impl ApiInstance {
    /// Starts on a free port; `tweak` adjusts the settings.
    pub async fn start(database_url: &str, bus: &BusSettings, tweak: impl FnOnce(&mut ApiSettings)) -> Self {
        let mut settings = ApiSettings {
            bind: "127.0.0.1:0".into(),
            api_workers: Some(2),
            ..ApiSettings::default()
        };
        tweak(&mut settings);
        let (mut service, stopped) = ServiceRuntime::new();
        let db = DbSettings {
            db_connect_timeout_seconds: 2,
            db_pool_timeout_seconds: 5,
            ..DbSettings::for_url(database_url)
        };
        let bus = bus.clone();
        let process_events = settings.api_process_events;
        let rules = settings.match_rules();
        let (port, http) = service
            .run(async move {
                let pool = DbPool::new(&db, "tronpay-api-test").unwrap();
                let health = process_events.then(|| {
                    let workers = Workers::start(pool.clone(), bus, rules, stopped);
                    let health = BusHealth {
                        consumer: workers.consumer.clone(),
                        relay: workers.relay.clone(),
                    };
                    tokio::spawn(workers.join());
                    health
                });
                let application = Application::build(settings, pool, health).unwrap();
                let port = application.port();
                let http = application.handle();
                tokio::spawn(application.run_until_stopped());
                (port, http)
            })
            .await;
        service.http = Some(http);
        Self {
            url: format!("http://127.0.0.1:{port}"),
            service,
        }
    }

    /// Stops it at once, as a crash would.
    pub fn kill(mut self) {
        self.service.kill();
    }

    /// Stops it the way SIGTERM does.
    pub async fn stop(mut self) {
        self.service.stop().await;
    }
}

/// A running chain watcher (scanner supervisor, relay, health endpoint).
pub struct WatcherInstance {
    pub health_url: String,
    service: ServiceRuntime,
}

impl WatcherInstance {
    pub async fn start(
        database_url: &str,
        bus: &BusSettings,
        node_url: &str,
        tweak: impl FnOnce(&mut WatcherSettings),
    ) -> Self {
        let mut settings = WatcherSettings {
            tron_node_url: node_url.into(),
            block_interval_ms: 100,
            polling_interval_seconds: 1,
            node_timeout_ms: 2_000,
            // The tests' chains move only when a test mines: never stalled.
            node_stall_seconds: 3_600,
            watcher_bind: "127.0.0.1:0".into(),
            ..WatcherSettings::default()
        };
        tweak(&mut settings);
        settings.validate().unwrap();
        let (mut service, stopped) = ServiceRuntime::new();
        let db = DbSettings {
            db_connect_timeout_seconds: 2,
            db_pool_timeout_seconds: 5,
            ..DbSettings::for_url(database_url)
        };
        let bus = bus.clone();
        let (port, http) = service
            .run(async move {
                let pool = DbPool::new(&db, "tronpay-chain-watcher-test").unwrap();
                let bind = settings.watcher_bind.clone();
                let watcher = Watcher::start(settings, db, pool.clone(), bus, stopped).unwrap();
                let (server, port) = health::server(
                    &bind,
                    pool,
                    watcher.scan.clone(),
                    watcher.relay.clone(),
                    watcher.node.clone(),
                )
                .unwrap();
                let http = server.handle();
                tokio::spawn(server);
                tokio::spawn(watcher.join());
                (port, http)
            })
            .await;
        service.http = Some(http);
        Self {
            health_url: format!("http://127.0.0.1:{port}/health"),
            service,
        }
    }

    /// Stops it at once, as a crash would.
    pub fn kill(mut self) {
        self.service.kill();
    }

    /// Stops it the way SIGTERM does.
    pub async fn stop(mut self) {
        self.service.stop().await;
    }

    /// Its health endpoint's answer.
    pub async fn health(&self) -> Value {
        http_client()
            .get(&self.health_url)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }
}

/// A running webhook dispatcher.
pub struct DispatcherInstance {
    service: ServiceRuntime,
}

/// The signing secret the test dispatchers use.
pub const TEST_WEBHOOK_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

impl DispatcherInstance {
    /// Starts with a fast retry schedule, a 1 s timeout and private
    /// addresses allowed (receivers run on localhost); `tweak` adjusts that.
    pub async fn start(database_url: &str, bus: &BusSettings, tweak: impl FnOnce(&mut DispatcherSettings)) -> Self {
        let mut settings = DispatcherSettings {
            webhook_secret: Some(TEST_WEBHOOK_SECRET.into()),
            webhook_retry_schedule: "200ms,200ms,200ms".into(),
            webhook_timeout_ms: 1_000,
            webhook_republish_seconds: 1,
            callback_allow_private: true,
            ..DispatcherSettings::default()
        };
        tweak(&mut settings);
        let (service, stopped) = ServiceRuntime::new();
        let db = DbSettings {
            db_connect_timeout_seconds: 2,
            db_pool_timeout_seconds: 5,
            ..DbSettings::for_url(database_url)
        };
        let bus = bus.clone();
        service
            .run(async move {
                let pool = DbPool::new(&db, "tronpay-webhook-dispatcher-test").unwrap();
                let running = tronpay_webhook_dispatcher::start(settings, pool, bus, stopped)
                    .await
                    .unwrap();
                tokio::spawn(running.join());
            })
            .await;
        Self { service }
    }

    /// Stops it at once, as a crash would.
    pub fn kill(mut self) {
        self.service.kill();
    }
}

/// Blocks between a transfer's block and its finality in the test sandbox.
pub const SOLID_LAG: u64 = 2;

/// The sandbox chain the tests run on: mined on demand, final
/// [`SOLID_LAG`] blocks after the head.
pub fn test_chain() -> SandboxConfig {
    SandboxConfig {
        solid_lag: SOLID_LAG,
        ..SandboxConfig::ephemeral()
    }
}

/// Two sandbox nodes of the same chain (`seed`), started together and mined
/// on demand: whatever is done to both stays one chain (a test may then mine
/// one ahead, freeze one, …).
pub async fn same_chain_twice(seed: u64) -> (RunningSandbox, RunningSandbox) {
    let config = SandboxConfig {
        seed: Some(seed),
        ..test_chain()
    };
    let first = Sandbox::start(config.clone()).await.unwrap();
    let second = Sandbox::start(config).await.unwrap();
    (first, second)
}

/// PostgreSQL, RabbitMQ, a sandbox node, an API and a chain watcher.
pub struct Stack {
    pub db: TestDb,
    pub bus: TestBus,
    pub sandbox: RunningSandbox,
    pub api: ApiInstance,
    pub watcher: Option<WatcherInstance>,
}

impl Stack {
    pub async fn start() -> Self {
        Self::start_with(|_| {}, |_| {}).await
    }

    pub async fn start_with(api: impl FnOnce(&mut ApiSettings), watcher: impl FnOnce(&mut WatcherSettings)) -> Self {
        let mut stack = Self::without_watcher(api).await;
        stack.watcher = Some(stack.start_watcher(watcher).await);
        stack
    }

    /// Everything but the chain watcher (start one with [`Self::start_watcher`]).
    pub async fn without_watcher(api: impl FnOnce(&mut ApiSettings)) -> Self {
        // `E2E_LOG=debug cargo nextest run … --no-capture` shows the services' logs.
        if let Ok(filter) = std::env::var("E2E_LOG") {
            tronpay_runtime::init_logging(&tronpay_runtime::LogSettings {
                rust_log: Some(filter),
                ..Default::default()
            });
        }
        let db = TestDb::new().await;
        let bus = TestBus::new();
        let sandbox = Sandbox::start(test_chain()).await.unwrap();
        let api = ApiInstance::start(db.url(), &bus.settings, api).await;
        Self {
            db,
            bus,
            sandbox,
            api,
            watcher: None,
        }
    }

    /// Another chain watcher on this stack's database, bus and node.
    pub async fn start_watcher(&self, tweak: impl FnOnce(&mut WatcherSettings)) -> WatcherInstance {
        WatcherInstance::start(self.db.url(), &self.bus.settings, &self.sandbox.url(), tweak).await
    }

    /// The watcher's committed cursor (last final block processed).
    pub async fn cursor(&self) -> Option<i64> {
        self.db
            .client()
            .await
            .query_opt("SELECT cursor_block FROM chain_state", &[])
            .await
            .unwrap()
            .map(|row| row.get(0))
    }

    /// A payment for `amount` on a fresh address.
    pub async fn payment(&self, amount: &str) -> (String, TronAddress) {
        let address = random_address();
        let id = create_payment(
            &self.api.url,
            &address,
            amount,
            &format!("order-{}", uuid::Uuid::new_v4().simple()),
        )
        .await;
        (id, address)
    }

    /// Sends `amount` to `to` in the next block and seals it (not final yet).
    pub fn send(&self, to: TronAddress, amount: &str) -> tronpay_sandbox::Submitted {
        let submitted = self.sandbox.transfer(to, amount.parse().unwrap()).unwrap();
        self.sandbox.mine(1).unwrap();
        submitted
    }

    /// Seals enough blocks for everything sent so far to be final.
    pub fn finalize(&self) {
        self.sandbox.mine(SOLID_LAG).unwrap();
    }

    /// The payment's log, as `event_type` strings.
    pub async fn log_of(&self, payment_id: &str) -> Vec<String> {
        self.db
            .client()
            .await
            .query(
                "SELECT event_type FROM payment_logs WHERE payment_id = $1 ORDER BY id",
                &[&payment_id],
            )
            .await
            .unwrap()
            .iter()
            .map(|row| row.get(0))
            .collect()
    }
}

/// Polls `check` every 100 ms until it returns `Some`, or panics with
/// `what` after `limit` (a bound for eventual consistency, not a timing
/// assertion).
pub async fn eventually<T, F, Fut>(limit: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let started = Instant::now();
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(started.elapsed() < limit, "gave up after {limit:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A fresh random (valid) TRON address.
pub fn random_address() -> TronAddress {
    let mut bytes = [0u8; 20];
    fastrand::fill(&mut bytes);
    TronAddress::from_evm_bytes(bytes)
}

/// `POST /create_payment`; returns the payment id.
pub async fn create_payment(api: &str, address: &TronAddress, amount: &str, order_id: &str) -> String {
    create_payment_full(api, address, amount, "https://shop.example.com/hook", order_id).await
}

/// `POST /create_payment` with a callback URL and a fresh order id.
pub async fn create_payment_with_callback(api: &str, address: &TronAddress, amount: &str, callback: &str) -> String {
    create_payment_full(
        api,
        address,
        amount,
        callback,
        &format!("order-{}", uuid::Uuid::new_v4().simple()),
    )
    .await
}

async fn create_payment_full(api: &str, address: &TronAddress, amount: &str, callback: &str, order_id: &str) -> String {
    let body = format!(
        r#"{{"wallet_address":"{address}","expected_amount_usdt":{amount},"callback_url":"{callback}","order_id":"{order_id}"}}"#
    );
    let response = http_client()
        .post(format!("{api}/create_payment"))
        .body(body)
        .send()
        .await
        .unwrap();
    let status = response.status();
    let body: Value = response.json().await.unwrap();
    assert_eq!(status, 201, "{body}");
    body["payment_id"].as_str().unwrap().to_owned()
}

/// `GET /payment_status/{id}`.
pub async fn payment_status(api: &str, id: &str) -> Value {
    http_client()
        .get(format!("{api}/payment_status/{id}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// Waits until the payment's status is `status`; returns its body.
pub async fn wait_for_status(api: &str, id: &str, status: &str) -> Value {
    eventually(
        Duration::from_secs(30),
        &format!("payment {id} to be {status}"),
        || async {
            let body = payment_status(api, id).await;
            (body["status"] == status).then_some(body)
        },
    )
    .await
}

/// Rows of a SQL query as JSON values (one column each).
pub async fn sql_values(db: &TestDb, sql: &str) -> Vec<Value> {
    db.client()
        .await
        .query(&format!("SELECT row_to_json(q)::text FROM ({sql}) q"), &[])
        .await
        .unwrap()
        .iter()
        .map(|row| serde_json::from_str(row.get::<_, &str>(0)).unwrap())
        .collect()
}

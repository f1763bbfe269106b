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
use tronpay_api::ApiSettings;
use tronpay_bus::BusSettings;
use tronpay_chain_watcher::WatcherSettings;
use tronpay_db::DbSettings;
use tronpay_domain::TronAddress;
use tronpay_runtime::Validate;
use tronpay_webhook_dispatcher::DispatcherSettings;

pub use tronpay_sandbox::{RunningSandbox, Sandbox, SandboxConfig};
pub use tronpay_testkit::{FaultyProxy, TestBus, TestDb, http_client, rabbitmq_url};

/// A service on its own multi-thread runtime, run as its binary runs it
/// (`start`, then `run_until` a stop signal): `stop` shuts it down
/// gracefully, `kill` drops everything at once, as a crash would.
struct ServiceRuntime {
    runtime: Option<tokio::runtime::Runtime>,
    stop: watch::Sender<bool>,
    /// The service's `run_until` (its error with its causes), on its runtime.
    running: Option<tokio::task::JoinHandle<Result<(), String>>>,
}

impl ServiceRuntime {
    fn new() -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        Self {
            runtime: Some(runtime),
            stop: watch::channel(false).0,
            running: None,
        }
    }

    /// Runs `setup` on the service's runtime and returns its output.
    async fn run<T: Send + 'static>(&self, setup: impl Future<Output = T> + Send + 'static) -> T {
        let handle = self.runtime.as_ref().expect("running").handle().clone();
        handle.spawn(setup).await.expect("service setup")
    }

    /// What the service's `run_until` waits for: [`Self::stop`].
    fn shutdown(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut stop = self.stop.subscribe();
        async move { tronpay_runtime::stopped(&mut stop).await }
    }

    fn kill(&mut self) {
        self.running = None;
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }

    /// Stops it the way SIGTERM does and waits for it to finish; a service
    /// whose task failed meanwhile fails the test.
    async fn stop(&mut self) {
        self.stop.send_replace(true);
        if let Some(running) = self.running.take() {
            let outcome = tokio::time::timeout(Duration::from_secs(60), running)
                .await
                .expect("the service stops within 60 s")
                .expect("the service's run_until");
            if let Err(error) = outcome {
                panic!("the service failed: {error}");
            }
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

/// A service's `run_until`, its error as text with its causes.
async fn until<E: std::fmt::Display>(run: impl Future<Output = Result<(), E>>) -> Result<(), String> {
    run.await.map_err(|error| format!("{error:#}"))
}

/// The database settings of the tests' services: short timeouts.
fn test_db_settings(database_url: &str) -> DbSettings {
    DbSettings {
        db_connect_timeout_seconds: 2,
        db_pool_timeout_seconds: 5,
        ..DbSettings::for_url(database_url)
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
        let mut api = ApiSettings {
            bind: "127.0.0.1:0".into(),
            api_workers: Some(2),
            ..ApiSettings::default()
        };
        tweak(&mut api);
        let config = tronpay_api::Config {
            api,
            db: test_db_settings(database_url),
            bus: bus.clone(),
        };
        let mut service = ServiceRuntime::new();
        let shutdown = service.shutdown();
        let (port, running) = service
            .run(async move {
                let running = tronpay_api::start(config).unwrap();
                (running.port(), tokio::spawn(until(running.run_until(shutdown))))
            })
            .await;
        service.running = Some(running);
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
        let mut watcher = WatcherSettings {
            tron_node_url: node_url.into(),
            block_interval_ms: 100,
            polling_interval_seconds: 1,
            node_timeout_ms: 2_000,
            // The tests' chains move only when a test mines: never stalled.
            node_stall_seconds: 3_600,
            watcher_bind: "127.0.0.1:0".into(),
            ..WatcherSettings::default()
        };
        tweak(&mut watcher);
        watcher.validate().unwrap();
        let config = tronpay_chain_watcher::Config {
            watcher,
            db: test_db_settings(database_url),
            bus: bus.clone(),
        };
        let mut service = ServiceRuntime::new();
        let shutdown = service.shutdown();
        let (port, running) = service
            .run(async move {
                let running = tronpay_chain_watcher::start(config).unwrap();
                (running.port(), tokio::spawn(until(running.run_until(shutdown))))
            })
            .await;
        service.running = Some(running);
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
        let mut dispatcher = DispatcherSettings {
            webhook_secret: Some(TEST_WEBHOOK_SECRET.into()),
            webhook_retry_schedule: "200ms,200ms,200ms".into(),
            webhook_timeout_ms: 1_000,
            webhook_republish_seconds: 1,
            callback_allow_private: true,
            dispatcher_bind: "127.0.0.1:0".into(),
            ..DispatcherSettings::default()
        };
        tweak(&mut dispatcher);
        let config = tronpay_webhook_dispatcher::Config {
            dispatcher,
            db: test_db_settings(database_url),
            bus: bus.clone(),
        };
        let mut service = ServiceRuntime::new();
        let shutdown = service.shutdown();
        // The setup hands back the running service's join handle, on purpose.
        #[allow(clippy::async_yields_async)]
        let running = service
            .run(async move {
                let running = tronpay_webhook_dispatcher::start(config).await.unwrap();
                tokio::spawn(until(running.run_until(shutdown)))
            })
            .await;
        service.running = Some(running);
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

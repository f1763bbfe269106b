//! The tronpay services together, for end-to-end tests: a fresh database, a
//! private set of exchange and queues on the real RabbitMQ, a sandbox node,
//! and the API and chain watcher each on their own runtime, so that a test
//! can kill one like a crashed process.

// Test support: a setup step that fails should stop the test loudly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod process;
pub mod receiver;

use std::future::Future;
use std::marker::PhantomData;
use std::time::Duration;

use serde_json::Value;
use tokio::sync::watch;
use tronpay_api::ApiSettings;
use tronpay_bus::BusSettings;
use tronpay_chain_watcher::WatcherSettings;
use tronpay_db::DbSettings;
use tronpay_domain::TronAddress;
use tronpay_runtime::service::Running;
use tronpay_runtime::{ServiceConfig, Validate};
use tronpay_webhook_dispatcher::DispatcherSettings;

pub use tronpay_sandbox::{RunningSandbox, Sandbox, SandboxConfig};
pub use tronpay_testkit::{FaultyProxy, TestBus, TestDb, eventually, get_json, http_client, rabbitmq_url};

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
    /// Builds a service on a runtime of its own with `start` and runs it
    /// there until [`Self::stop`]; returns it with its port.
    async fn start<F, Fut, E>(start: F) -> (Self, u16)
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Result<Running, E>> + Send,
        E: std::fmt::Debug,
    {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let stop = watch::channel(false).0;
        let mut shutdown = stop.subscribe();
        let (port, running) = runtime
            .spawn(async move {
                let running = start().await.expect("the service starts");
                let port = running.port();
                let outcome = async move {
                    let stopping = async move { tronpay_runtime::stopped(&mut shutdown).await };
                    running.run_until(stopping).await.map_err(|error| with_causes(&error))
                };
                (port, tokio::spawn(outcome))
            })
            .await
            .expect("service setup");
        let service = Self {
            runtime: Some(runtime),
            stop,
            running: Some(running),
        };
        (service, port)
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

/// An error and its causes, `what: why: …`.
fn with_causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    text
}

/// Dropped, a service dies as in a crash (unless it was stopped).
impl Drop for ServiceRuntime {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The database settings of the tests' services: short timeouts.
fn test_db_settings(database_url: &str) -> DbSettings {
    DbSettings {
        db_connect_timeout_seconds: 2,
        db_pool_timeout_seconds: 5,
        ..DbSettings::for_url(database_url)
    }
}

/// A service a test started (a [`ServiceRuntime`]); `K` says which one.
pub struct Instance<K> {
    /// Its HTTP server: the API, or the health endpoint.
    pub url: String,
    service: ServiceRuntime,
    kind: PhantomData<K>,
}

/// The API (HTTP, event consumer, expiry sweep, outbox relay).
pub enum Api {}
/// The chain watcher (scanner supervisor, relay, health endpoint).
pub enum Watcher {}
/// The webhook dispatcher (consumer, sweep, relay, health endpoint).
pub enum Dispatcher {}

pub type ApiInstance = Instance<Api>;
pub type WatcherInstance = Instance<Watcher>;
pub type DispatcherInstance = Instance<Dispatcher>;

impl<K> Instance<K> {
    /// Starts a service with `start` on the database at `database_url`
    /// ([`test_db_settings`]) and `bus`, its own settings `service`.
    async fn launch<S, F, Fut, E>(service: S, database_url: &str, bus: &BusSettings, start: F) -> Self
    where
        S: Send + 'static,
        F: FnOnce(ServiceConfig<S, DbSettings, BusSettings>) -> Fut + Send + 'static,
        Fut: Future<Output = Result<Running, E>> + Send,
        E: std::fmt::Debug,
    {
        let config = ServiceConfig {
            service,
            db: test_db_settings(database_url),
            bus: bus.clone(),
        };
        let (service, port) = ServiceRuntime::start(move || start(config)).await;
        Self {
            url: format!("http://127.0.0.1:{port}"),
            service,
            kind: PhantomData,
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
        get_json(&format!("{}/health", self.url)).await
    }
}

impl Instance<Api> {
    /// Starts on a free port; `tweak` adjusts the settings.
    pub async fn start(database_url: &str, bus: &BusSettings, tweak: impl FnOnce(&mut ApiSettings)) -> Self {
        let mut api = ApiSettings {
            bind: "127.0.0.1:0".into(),
            api_workers: Some(2),
            ..ApiSettings::default()
        };
        tweak(&mut api);
        Self::launch(api, database_url, bus, |config| async { tronpay_api::start(config) }).await
    }
}

impl Instance<Watcher> {
    /// Starts on the node at `node_url`, its health endpoint on a free port;
    /// `tweak` adjusts the settings.
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
        Self::launch(watcher, database_url, bus, |config| async {
            tronpay_chain_watcher::start(config)
        })
        .await
    }
}

/// The signing secret the test dispatchers use.
pub const TEST_WEBHOOK_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

impl Instance<Dispatcher> {
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
        Self::launch(dispatcher, database_url, bus, tronpay_webhook_dispatcher::start).await
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
    /// What the stack's services connect to: `bus`'s broker and names, or
    /// the same through a proxy ([`Self::through_broker_proxy`]).
    pub broker: BusSettings,
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
        let bus = TestBus::new();
        let broker = bus.settings.clone();
        Self::on(bus, broker, api).await
    }

    /// A stack whose services reach RabbitMQ through a proxy, returned for
    /// the test to cut.
    pub async fn through_broker_proxy(api: impl FnOnce(&mut ApiSettings)) -> (Self, FaultyProxy) {
        let bus = TestBus::new();
        let proxy = FaultyProxy::start(bus.broker_addr()).await;
        let broker = bus.through(&proxy);
        let mut stack = Self::on(bus, broker, api).await;
        stack.watcher = Some(stack.start_watcher(|_| {}).await);
        (stack, proxy)
    }

    async fn on(bus: TestBus, broker: BusSettings, api: impl FnOnce(&mut ApiSettings)) -> Self {
        // `E2E_LOG=debug cargo nextest run … --no-capture` shows the services' logs.
        if let Ok(filter) = std::env::var("E2E_LOG") {
            tronpay_runtime::init_logging(&tronpay_runtime::LogSettings {
                rust_log: Some(filter),
                ..Default::default()
            });
        }
        let db = TestDb::new().await;
        let sandbox = Sandbox::start(test_chain()).await.unwrap();
        let api = ApiInstance::start(db.url(), &broker, api).await;
        Self {
            db,
            bus,
            broker,
            sandbox,
            api,
            watcher: None,
        }
    }

    /// Another chain watcher on this stack's database, broker and node.
    pub async fn start_watcher(&self, tweak: impl FnOnce(&mut WatcherSettings)) -> WatcherInstance {
        WatcherInstance::start(self.db.url(), &self.broker, &self.sandbox.url(), tweak).await
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
        self.payment_with_callback(amount, "https://shop.example.com/hook")
            .await
    }

    /// A payment for `amount` on a fresh address, its webhooks to `callback`.
    pub async fn payment_with_callback(&self, amount: &str, callback: &str) -> (String, TronAddress) {
        let address = random_address();
        let id = create_payment_with_callback(&self.api.url, &address, amount, callback).await;
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

    /// Sends `amount` to `to` in the next block and makes it final.
    pub fn pay(&self, to: TronAddress, amount: &str) -> tronpay_sandbox::Submitted {
        let submitted = self.send(to, amount);
        self.finalize();
        submitted
    }

    /// Waits until the payment's status is `status`; returns its body.
    pub async fn wait_for(&self, payment_id: &str, status: &str) -> Value {
        wait_for_status(&self.api.url, payment_id, status).await
    }

    /// The payment's log, as `event_type` strings.
    pub async fn log_of(&self, payment_id: &str) -> Vec<String> {
        self.db
            .column(&format!(
                "SELECT event_type FROM payment_logs WHERE payment_id = '{payment_id}' ORDER BY id"
            ))
            .await
    }

    /// Waits until the payment's log has a row `event_type`.
    pub async fn logged(&self, payment_id: &str, event_type: &str) {
        eventually(
            Duration::from_secs(30),
            &format!("payment {payment_id} to log {event_type}"),
            || async {
                self.log_of(payment_id)
                    .await
                    .iter()
                    .any(|logged| logged == event_type)
                    .then_some(())
            },
        )
        .await;
    }

    /// Waits until the transfer `txid` (log index 0) is applied by matching;
    /// returns its `match_kind` and `payment_id`.
    pub async fn applied_transfer(&self, txid: &str) -> Value {
        eventually(Duration::from_secs(30), "the transfer to be applied", || async {
            sql_values(
                &self.db,
                &format!(
                    "SELECT match_kind, payment_id FROM transfers WHERE txid = '{txid}' AND applied_at IS NOT NULL"
                ),
            )
            .await
            .pop()
        })
        .await
    }

    /// Moves the payment's deadline to a millisecond after its creation: it
    /// is past, and any transfer comes late.
    pub async fn expire_now(&self, payment_id: &str) {
        self.db
            .client()
            .await
            .batch_execute(&format!(
                "UPDATE payments SET expires_at = created_at + interval '1 millisecond' WHERE id = '{payment_id}'"
            ))
            .await
            .unwrap();
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
    get_json(&format!("{api}/payment_status/{id}")).await
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

/// One call of the merchant API v1 with an API key: `(status, body)`, the
/// body as JSON (`Null` when it is none).
pub async fn v1(api: &str, method: &str, path: &str, key: &str, body: Option<Value>) -> (u16, Value) {
    let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let mut request = http_client().request(method, format!("{api}{path}")).bearer_auth(key);
    if let Some(body) = body {
        request = request
            .header("content-type", "application/json")
            .body(body.to_string());
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    assert!(status < 500, "{path} answered {status}: {text}");
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// `POST /v1/payments` of `amount` to `address` (more fields in `extra`);
/// returns the payment resource.
pub async fn v1_payment(api: &str, key: &str, address: &TronAddress, amount: &str, extra: Value) -> Value {
    let mut body = serde_json::json!({
        "order_id": format!("order-{}", uuid::Uuid::new_v4().simple()),
        "amount": amount,
        "address": address.to_base58(),
    });
    if let (Some(body), Value::Object(extra)) = (body.as_object_mut(), extra) {
        body.extend(extra);
    }
    let (status, payment) = v1(api, "POST", "/v1/payments", key, Some(body)).await;
    assert_eq!(status, 201, "{payment}");
    payment
}

//! Test support shared by the crates' integration tests.
//!
//! Everything here talks to real services: [`TestDb`] creates a fresh
//! PostgreSQL database per test and drops it afterwards; [`FaultyProxy`]
//! stands between a service and PostgreSQL so a test can cut the network and
//! restore it. A test that waits for something to happen waits through
//! [`eventually`] (or [`within`]): a bound on something that must happen,
//! never a timing assertion.

// Test support: a setup step that fails should stop the test loudly.
#![allow(clippy::expect_used, clippy::unwrap_used)]

pub mod process;
pub mod supervision;
pub mod tls;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokio::io::copy_bidirectional;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tronpay_bus::BusSettings;
use tronpay_db::{AsyncPgConnection, DbSettings};

/// An HTTP client for tests. The workspace builds reqwest with rustls and
/// no default crypto provider, so the ring provider is installed first.
pub fn http_client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}

/// `GET url`, its body as JSON (a request that fails fails the test).
pub async fn get_json(url: &str) -> serde_json::Value {
    http_client().get(url).send().await.unwrap().json().await.unwrap()
}

/// How often [`within`] and [`eventually`] look.
const POLL_EVERY: Duration = Duration::from_millis(100);

/// Polls `check` until it returns `Some`, for at most `limit`: that value,
/// or `None` once the time is up.
pub async fn within<T, F, Fut>(limit: Duration, mut check: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let started = Instant::now();
    loop {
        if let Some(value) = check().await {
            return Some(value);
        }
        if started.elapsed() >= limit {
            return None;
        }
        tokio::time::sleep(POLL_EVERY).await;
    }
}

/// Polls `check` until it returns `Some`, or panics with `what` after
/// `limit`.
pub async fn eventually<T, F, Fut>(limit: Duration, what: &str, check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    within(limit, check)
        .await
        .unwrap_or_else(|| panic!("gave up after {limit:?} waiting for {what}"))
}

/// [`within`] for code outside a runtime (a child process's exit, a file
/// another process writes): polls `check` every 50 ms, blocking the thread.
pub fn within_blocking<T>(limit: Duration, mut check: impl FnMut() -> Option<T>) -> Option<T> {
    let started = Instant::now();
    loop {
        if let Some(value) = check() {
            return Some(value);
        }
        if started.elapsed() >= limit {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The fields of the original service's `GET /payment_status/{id}` answer,
/// which `tronpay db export` also writes for every payment (with more).
pub const PAYMENT_STATUS_FIELDS: [&str; 9] = [
    "id",
    "wallet_address",
    "expected_amount_usdt",
    "order_id",
    "status",
    "transaction_hash",
    "received_amount_usdt",
    "created_at",
    "completed_at",
];

/// Prefix of every database a test creates (`make test` sweeps leftovers).
pub const TEST_DATABASE_PREFIX: &str = "tronpay_test_";

/// The server the tests use: `TEST_DATABASE_URL`, else `DATABASE_URL`, else
/// the local PostgreSQL with trust authentication.
pub fn server_url() -> url::Url {
    let text = std::env::var("TEST_DATABASE_URL")
        .or_else(|_| std::env::var("DATABASE_URL"))
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
    url::Url::parse(&text).unwrap_or_else(|error| panic!("TEST_DATABASE_URL/DATABASE_URL is not a URL: {error}"))
}

fn url_for_database(name: &str) -> String {
    let mut url = server_url();
    url.set_path(&format!("/{name}"));
    url.to_string()
}

async fn admin_client() -> tokio_postgres::Client {
    let url = url_for_database("postgres");
    let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|error| panic!("the tests need PostgreSQL at {url}: {error}"));
    tokio::spawn(connection);
    client
}

/// A database of its own for one test, dropped when the value is dropped.
pub struct TestDb {
    name: String,
    url: String,
}

impl TestDb {
    /// A fresh database with every migration applied.
    pub async fn new() -> Self {
        let db = Self::empty().await;
        let conn = db.connect().await;
        tronpay_db::migrate::run_pending(conn)
            .await
            .expect("migrations apply to a fresh database");
        db
    }

    /// A fresh database with no tables.
    pub async fn empty() -> Self {
        let name = format!("{TEST_DATABASE_PREFIX}{}", uuid::Uuid::new_v4().simple());
        admin_client()
            .await
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .expect("CREATE DATABASE");
        Self {
            url: url_for_database(&name),
            name,
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn settings(&self) -> DbSettings {
        DbSettings::for_url(self.url.clone())
    }

    pub async fn connect(&self) -> AsyncPgConnection {
        let options = tronpay_db::pool::ConnectOptions::new(&self.settings(), "tronpay-test");
        tronpay_db::connect(&self.url, &options)
            .await
            .expect("connect to the test database")
    }

    /// A new API key with `scopes` (names such as `payments:read`), as the
    /// text a client sends after `Bearer `.
    pub async fn api_key(&self, name: &str, scopes: &[&str]) -> String {
        let scopes: Vec<tronpay_domain::Scope> = scopes
            .iter()
            .map(|scope| scope.parse().unwrap_or_else(|_| panic!("unknown scope {scope}")))
            .collect();
        let key = tronpay_domain::ApiKeyText::generate().expect("randomness");
        tronpay_db::api_keys::create(&mut self.connect().await, name, &key, &scopes)
            .await
            .expect("store the API key");
        key.expose().to_owned()
    }

    /// A plain client, for assertions written in SQL.
    pub async fn client(&self) -> tokio_postgres::Client {
        let (client, connection) = tokio_postgres::connect(&self.url, tokio_postgres::NoTls)
            .await
            .expect("connect to the test database");
        tokio::spawn(connection);
        client
    }

    /// The first column of every row `sql` returns (`SELECT event_type FROM
    /// payment_logs …`).
    pub async fn column<T: tokio_postgres::types::FromSqlOwned>(&self, sql: &str) -> Vec<T> {
        self.client()
            .await
            .query(sql, &[])
            .await
            .unwrap_or_else(|error| panic!("{sql}: {error}"))
            .iter()
            .map(|row| row.get(0))
            .collect()
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let name = self.name.clone();
        // Drop runs outside async context guarantees; a thread with its own
        // runtime works whether or not the test's runtime is still alive.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            runtime.block_on(async move {
                let url = url_for_database("postgres");
                let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await?;
                tokio::spawn(connection);
                client
                    .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .await
            })?;
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
        })
        .join();
        if let Ok(Err(error)) = dropped {
            eprintln!("could not drop test database {}: {error}", self.name);
        }
    }
}

/// A TCP proxy in front of a real server whose link a test can cut.
///
/// While cut, live connections are closed and new ones are accepted and
/// closed at once, as a crashed or partitioned server looks to a client.
pub struct FaultyProxy {
    addr: SocketAddr,
    up: Arc<AtomicBool>,
    cut_tx: watch::Sender<u64>,
}

impl FaultyProxy {
    pub async fn start(target: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind the proxy");
        let addr = listener.local_addr().expect("proxy address");
        let up = Arc::new(AtomicBool::new(true));
        let (cut_tx, cut_rx) = watch::channel(0u64);
        let accept_up = Arc::clone(&up);
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if !accept_up.load(Ordering::SeqCst) {
                    drop(inbound);
                    continue;
                }
                let mut cut = cut_rx.clone();
                cut.mark_unchanged();
                tokio::spawn(async move {
                    let Ok(mut outbound) = TcpStream::connect(target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = cut.changed() => {}
                    }
                });
            }
        });
        Self { addr, up, cut_tx }
    }

    /// The proxy for the test PostgreSQL server.
    pub async fn for_postgres() -> Self {
        let url = server_url();
        let host = url.host_str().unwrap_or("127.0.0.1");
        let port = url.port().unwrap_or(5432);
        let target = tokio::net::lookup_host((host, port))
            .await
            .ok()
            .and_then(|mut addrs| addrs.next())
            .expect("resolve the PostgreSQL host");
        Self::start(target).await
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `url` rewritten to go through this proxy.
    pub fn proxied_url(&self, url: &str) -> String {
        let mut url = url::Url::parse(url).expect("a database URL");
        url.set_host(Some(&self.addr.ip().to_string())).expect("set host");
        url.set_port(Some(self.addr.port())).expect("set port");
        url.to_string()
    }

    /// Closes every live connection and refuses new ones.
    pub fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        self.cut_tx.send_modify(|generation| *generation += 1);
    }

    /// Lets connections through again.
    pub fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

/// RabbitMQ for the tests: `TEST_RABBITMQ_URL`, `RABBITMQ_URL`, or local.
pub fn rabbitmq_url() -> String {
    std::env::var("TEST_RABBITMQ_URL")
        .or_else(|_| std::env::var("RABBITMQ_URL"))
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into())
}

/// A private exchange and queue names on the shared broker, deleted on drop.
pub struct TestBus {
    pub settings: BusSettings,
}

impl TestBus {
    pub fn new() -> Self {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let settings = BusSettings {
            rabbitmq_url: rabbitmq_url(),
            bus_exchange: format!("tronpay-test.{id}"),
            bus_queue_prefix: format!("tronpay-test.{id}"),
            bus_prefetch: 32,
            bus_confirm_timeout_ms: 5_000,
            rabbitmq_ca_file: None,
        };
        Self { settings }
    }

    /// The variables that point a service process at this broker and these
    /// names (`command.envs(bus.env())`).
    pub fn env(&self) -> [(&'static str, String); 3] {
        [
            ("RABBITMQ_URL", self.settings.rabbitmq_url.clone()),
            ("BUS_EXCHANGE", self.settings.bus_exchange.clone()),
            ("BUS_QUEUE_PREFIX", self.settings.bus_queue_prefix.clone()),
        ]
    }

    /// The same names, reached through `proxy`.
    pub fn through(&self, proxy: &FaultyProxy) -> BusSettings {
        let mut url = url_of(&self.settings.rabbitmq_url);
        url.set_host(Some(&proxy.addr().ip().to_string())).unwrap();
        url.set_port(Some(proxy.addr().port())).unwrap();
        BusSettings {
            rabbitmq_url: url.to_string(),
            ..self.settings.clone()
        }
    }

    /// The broker's address (for a [`FaultyProxy`]).
    pub fn broker_addr(&self) -> SocketAddr {
        let url = url_of(&self.settings.rabbitmq_url);
        let host = url.host_str().unwrap_or("127.0.0.1").to_owned();
        let port = url.port().unwrap_or(5672);
        std::net::ToSocketAddrs::to_socket_addrs(&(host.as_str(), port))
            .unwrap()
            .next()
            .unwrap()
    }

    /// Messages waiting in a queue (declares nothing).
    pub async fn depth(&self, queue: &str) -> u32 {
        let connection =
            lapin::Connection::connect(&self.settings.rabbitmq_url, lapin::ConnectionProperties::default())
                .await
                .unwrap();
        let channel = connection.create_channel().await.unwrap();
        let declared = channel
            .queue_declare(
                queue.into(),
                lapin::options::QueueDeclareOptions {
                    passive: true,
                    ..Default::default()
                },
                lapin::types::FieldTable::default(),
            )
            .await;
        let _ = connection.close(200, "done".into()).await;
        declared.map(|queue| queue.message_count()).unwrap_or(0)
    }
}

impl Default for TestBus {
    fn default() -> Self {
        Self::new()
    }
}

fn url_of(text: &str) -> url::Url {
    url::Url::parse(text).expect("an AMQP URL")
}

impl Drop for TestBus {
    fn drop(&mut self) {
        let settings = self.settings.clone();
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            runtime.block_on(async move {
                let connection =
                    lapin::Connection::connect(&settings.rabbitmq_url, lapin::ConnectionProperties::default())
                        .await
                        .ok()?;
                let channel = connection.create_channel().await.ok()?;
                for queue in settings.all_queues() {
                    for name in [queue.name.clone(), queue.dead_letter()] {
                        let _ = channel.queue_delete(name.as_str().into(), Default::default()).await;
                    }
                }
                for exchange in [settings.bus_exchange.clone(), settings.dead_letter_exchange()] {
                    let _ = channel
                        .exchange_delete(exchange.as_str().into(), Default::default())
                        .await;
                }
                let _ = connection.close(200, "test done".into()).await;
                Some(())
            })
        })
        .join();
    }
}

//! The merchant API over real HTTP against a real PostgreSQL database (one
//! fresh database per test).

// Integration tests: a failed step should stop the test loudly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use serde_json::{Value, json};
use tronpay_api::{ApiSettings, Application};
use tronpay_db::DbPool;
use tronpay_testkit::{FaultyProxy, PAYMENT_STATUS_FIELDS, TestDb, eventually};

const ADDRESS: &str = "TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t";
const CALLBACK: &str = "https://shop.example.com/hook";

struct TestApp {
    base: String,
    client: reqwest::Client,
    handle: actix_web::dev::ServerHandle,
}

impl TestApp {
    async fn start(database_url: &str, tweak: impl FnOnce(&mut ApiSettings)) -> Self {
        let mut settings = ApiSettings {
            bind: "127.0.0.1:0".into(),
            api_workers: Some(2),
            ..ApiSettings::default()
        };
        tweak(&mut settings);
        let mut db = tronpay_db::DbSettings::for_url(database_url);
        db.db_connect_timeout_seconds = 2;
        db.db_pool_timeout_seconds = 5;
        // At most 12 connections a replica: tests run side by side, some
        // with two replicas under 50 concurrent requests, against a server
        // that takes 100 clients in all.
        db.db_max_overflow = 2;
        let pool = DbPool::new(&db, "tronpay-api-test").unwrap();
        let app = Application::build(settings, pool, None, Default::default(), Vec::new()).unwrap();
        let base = format!("http://127.0.0.1:{}", app.port());
        let handle = app.handle();
        tokio::spawn(app.run_until_stopped());
        Self {
            base,
            client: tronpay_testkit::http_client(),
            handle,
        }
    }

    /// Started on a fresh database of its own (returned with it: the
    /// database lives as long as the test holds it).
    async fn fresh(tweak: impl FnOnce(&mut ApiSettings)) -> (TestDb, Self) {
        let db = TestDb::new().await;
        let app = Self::start(db.url(), tweak).await;
        (db, app)
    }

    async fn post_raw(&self, path: &str, body: impl Into<reqwest::Body>) -> (u16, String) {
        let response = self
            .client
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        (response.status().as_u16(), response.text().await.unwrap())
    }

    async fn create(&self, body: &Value) -> (u16, Value) {
        let (status, text) = self.post_raw("/create_payment", body.to_string()).await;
        (
            status,
            serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}")),
        )
    }

    async fn get_text(&self, path: &str) -> (u16, String) {
        let response = self.client.get(format!("{}{path}", self.base)).send().await.unwrap();
        (response.status().as_u16(), response.text().await.unwrap())
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        let (status, text) = self.get_text(path).await;
        (
            status,
            serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}")),
        )
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        drop(self.handle.stop(false));
    }
}

fn payment(order_id: &str) -> Value {
    json!({
        "wallet_address": ADDRESS,
        "expected_amount_usdt": 12.34,
        "callback_url": CALLBACK,
        "order_id": order_id,
    })
}

fn with(mut body: Value, field: &str, value: Value) -> Value {
    body[field] = value;
    body
}

async fn assert_error(app: &TestApp, body: &Value, status: u16, text: &str) {
    let (got_status, got) = app.create(body).await;
    assert_eq!((got_status, got["error"].as_str()), (status, Some(text)), "for {body}");
}

#[tokio::test(flavor = "multi_thread")]
async fn every_row_of_the_error_table() {
    let (_db, app) = TestApp::fresh(|_| {}).await;

    for raw in ["", "not json", "{", "[]", "{}", "42"] {
        let (status, text) = app.post_raw("/create_payment", raw).await;
        let body: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            (status, body["error"].as_str()),
            (400, Some("Invalid JSON or empty request body")),
            "{raw:?}"
        );
    }

    let missing = "Missing required fields: wallet_address, expected_amount_usdt, callback_url, order_id";
    for field in ["wallet_address", "expected_amount_usdt", "callback_url", "order_id"] {
        let mut body = payment("o-missing");
        body.as_object_mut().unwrap().remove(field);
        assert_error(&app, &body, 400, missing).await;
        assert_error(&app, &with(payment("o-missing"), field, Value::Null), 400, missing).await;
    }

    for amount in [json!(-5), json!("abc"), json!(true), json!([1])] {
        let body = with(payment("o-amount"), "expected_amount_usdt", amount);
        assert_error(&app, &body, 400, "expected_amount_usdt must be a positive number").await;
    }
    for amount in [json!(0.001), json!(0.009999)] {
        let body = with(payment("o-amount"), "expected_amount_usdt", amount);
        assert_error(&app, &body, 400, "expected_amount_usdt must be at least 0.01 USDT").await;
    }
    for amount in [json!(1000000.01), json!(1e7)] {
        let body = with(payment("o-amount"), "expected_amount_usdt", amount);
        assert_error(&app, &body, 400, "expected_amount_usdt cannot exceed 1,000,000 USDT").await;
    }

    for address in [
        "TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6",   // too short
        "TYPG8VeuoVAh2hP7Vfw6ww7vK98nvXXXUs",  // checksum
        "TCy1P7aRqvcgrY2BwbrV4aZ8ujfUCsy8kI",  // not Base58
        "TCy1P7aRqvcgrY2BwbrV4aZ8ujfUCsy8krA", // too long
        "0x71C7656EC7ab88b098defB751B7401B5f6d8976F",
    ] {
        let body = with(payment("o-address"), "wallet_address", json!(address));
        assert_error(&app, &body, 400, "Invalid TRON wallet address format").await;
    }

    for url in [
        "not a url",
        "ftp://shop.example.com/hook",
        "https://",
        "javascript:alert(1)",
        "/hook",
    ] {
        let body = with(payment("o-url"), "callback_url", json!(url));
        assert_error(&app, &body, 400, "Invalid callback URL format").await;
    }

    assert_error(&app, &payment("   "), 400, "order_id must be a non-empty string").await;
    assert_error(
        &app,
        &with(payment("x"), "order_id", json!(42)),
        400,
        "order_id must be a non-empty string",
    )
    .await;
    assert_error(
        &app,
        &payment(&"x".repeat(101)),
        400,
        "order_id cannot exceed 100 characters",
    )
    .await;

    assert_eq!(app.create(&payment("o-dup")).await.0, 201);
    assert_error(
        &app,
        &payment("o-dup"),
        409,
        "order_id already exists with pending status",
    )
    .await;

    let (status, body) = app.get("/payment_status/6f1c2bd4-8d7e-4a5a-9a59-000000000000").await;
    assert_eq!((status, body["error"].as_str()), (404, Some("Payment ID not found")));
    for hostile in [
        "z".repeat(200),
        "%00".into(),
        "abc%00def".into(),
        "%F0%9F%92%A9".into(),
        "%E2%80%AE".into(),
        "..%2F..%2Fetc".into(),
        "x".repeat(37),
    ] {
        let (status, body) = app.get(&format!("/payment_status/{hostile}")).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (404, Some("Payment ID not found")),
            "{hostile}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn validations_the_original_lacked_answer_400_with_a_clear_text() {
    let (_db, app) = TestApp::fresh(|_| {}).await;

    let body = with(payment("o-precise"), "expected_amount_usdt", json!(12.3456789));
    assert_error(
        &app,
        &body,
        400,
        "expected_amount_usdt cannot have more than 6 decimal places",
    )
    .await;
    // A failing checksum is refused even though the original's pattern matched it.
    let body = with(
        payment("o-checksum"),
        "wallet_address",
        json!("TYPG8VeuoVAh2hP7Vfw6ww7vK98nvXXXUs"),
    );
    assert_error(&app, &body, 400, "Invalid TRON wallet address format").await;

    for (url, reason) in [
        ("http://127.0.0.1:8080/hook", "a loopback address"),
        ("http://localhost/hook", "a loopback address"),
        ("http://169.254.169.254/latest/meta-data", "a link-local address"),
        ("http://10.1.2.3/hook", "a private network address"),
        ("http://[fd00::1]/hook", "a unique-local IPv6 address"),
        ("http://100.64.0.1/hook", "a carrier-grade NAT address"),
    ] {
        let (status, body) = app
            .create(&with(payment("o-private"), "callback_url", json!(url)))
            .await;
        let text = body["error"].as_str().unwrap();
        assert_eq!(status, 400, "{url}");
        assert!(
            text.starts_with("callback_url must point to a public internet address") && text.contains(reason),
            "{url}: {text}"
        );
    }
    let (_, count) = app.get("/stats").await;
    assert_eq!(count["total_payments"], 0, "no refused request created a payment");
}

#[tokio::test(flavor = "multi_thread")]
async fn private_callbacks_are_accepted_when_allowed() {
    let (_db, app) = TestApp::fresh(|settings| settings.callback_allow_private = true).await;
    let (status, _) = app
        .create(&with(
            payment("o-local"),
            "callback_url",
            json!("http://127.0.0.1:9000/hook"),
        ))
        .await;
    assert_eq!(status, 201);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unresolvable_callback_host_does_not_block_a_payment() {
    let (_db, app) = TestApp::fresh(|_| {}).await;
    let body = with(
        payment("o-dns"),
        "callback_url",
        json!("https://not-yet-published.invalid/hook"),
    );
    assert_eq!(app.create(&body).await.0, 201);
}

#[tokio::test(flavor = "multi_thread")]
async fn oversized_bodies_get_413_not_500() {
    let (_db, app) = TestApp::fresh(|settings| settings.max_body_bytes = 4096).await;
    let huge = format!(r#"{{"order_id":"{}"}}"#, "x".repeat(10_000));
    let (status, text) = app.post_raw("/create_payment", huge.clone()).await;
    assert_eq!(status, 413);
    assert!(
        serde_json::from_str::<Value>(&text).unwrap()["error"]
            .as_str()
            .unwrap()
            .contains("too large")
    );
    // Without a Content-Length (chunked), the limit still holds.
    let chunks: Vec<_> = huge
        .as_bytes()
        .chunks(1000)
        .map(|chunk| Ok::<_, std::io::Error>(chunk.to_vec()))
        .collect();
    let stream = futures_util::stream::iter(chunks);
    let (status, _) = app
        .post_raw("/create_payment", reqwest::Body::wrap_stream(stream))
        .await;
    assert_eq!(status, 413);
}

#[tokio::test(flavor = "multi_thread")]
async fn amounts_round_trip_exactly() {
    let (db, app) = TestApp::fresh(|_| {}).await;
    let client = db.client().await;
    for (index, (sent, shown, stored)) in [
        ("0.01", "0.01", "0.010000"),
        ("999999.999999", "999999.999999", "999999.999999"),
        ("12.34", "12.34", "12.340000"),
        ("1000000", "1000000.0", "1000000.000000"),
        ("\"12.345678\"", "12.345678", "12.345678"),
    ]
    .into_iter()
    .enumerate()
    {
        let body = format!(
            r#"{{"wallet_address":"{ADDRESS}","expected_amount_usdt":{sent},"callback_url":"{CALLBACK}","order_id":"amount-{index}"}}"#
        );
        let (status, text) = app.post_raw("/create_payment", body).await;
        assert_eq!(status, 201, "{text}");
        let id = serde_json::from_str::<Value>(&text).unwrap()["payment_id"]
            .as_str()
            .unwrap()
            .to_owned();

        // The digits are compared as text: a float in between would show.
        let (status, text) = app.get_text(&format!("/payment_status/{id}")).await;
        assert_eq!(status, 200);
        assert!(
            text.contains(&format!(r#""expected_amount_usdt":{shown},"#)),
            "{sent}: {text}"
        );

        let row = client
            .query_one("SELECT expected_amount_usdt::text, (SELECT metadata::text FROM payment_logs WHERE payment_id = $1) FROM payments WHERE id = $1", &[&id])
            .await
            .unwrap();
        assert_eq!(row.get::<_, String>(0), stored);
        assert!(
            row.get::<_, String>(1)
                .contains(&format!(r#""expected_amount_usdt":{shown}"#))
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn create_then_status_has_the_original_shape() {
    let (db, app) = TestApp::fresh(|settings| settings.payment_ttl_seconds = 3600).await;
    let (status, created) = app.create(&payment("order-42")).await;
    assert_eq!(status, 201);
    assert_eq!(created["status"], "watching");
    assert_eq!(
        created["message"],
        "Payment watch created successfully. Waiting for transaction."
    );
    let id = created["payment_id"].as_str().unwrap();
    assert!(uuid::Uuid::parse_str(id).is_ok());

    let (status, body) = app.get(&format!("/payment_status/{id}")).await;
    assert_eq!(status, 200);
    let keys: Vec<&str> = body.as_object().unwrap().keys().map(String::as_str).collect();
    let mut expected = PAYMENT_STATUS_FIELDS.to_vec();
    expected.sort_unstable();
    let mut keys = keys;
    keys.sort_unstable();
    assert_eq!(keys, expected);
    assert_eq!(body["id"], id);
    assert_eq!(body["wallet_address"], ADDRESS);
    assert_eq!(body["order_id"], "order-42");
    assert_eq!(body["status"], "pending");
    assert_eq!(body["transaction_hash"], Value::Null);
    assert_eq!(body["received_amount_usdt"], Value::Null);
    assert_eq!(body["completed_at"], Value::Null);
    let created_at = body["created_at"].as_f64().unwrap();
    let expires_at = created["expires_at"].as_f64().unwrap();
    assert!(
        (expires_at - created_at - 3600.0).abs() < 1e-3,
        "expires_at is created_at + PAYMENT_TTL_SECONDS"
    );

    // The creation wrote exactly one log row, in the same statement.
    let client = db.client().await;
    let rows = client
        .query(
            "SELECT event_type, message FROM payment_logs WHERE payment_id = $1",
            &[&id],
        )
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].get::<_, String>(0), "created");
    assert_eq!(
        rows[0].get::<_, String>(1),
        format!("Payment watch created for {ADDRESS} expecting 12.34 USDT")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn every_valid_address_vector_is_accepted() {
    let (_db, app) = TestApp::fresh(|_| {}).await;
    for (index, address) in [
        "TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t",
        "TBREsCfBdPyD612xZnwvGPux7osbXvtzLh",
        "TLrPF5aTqtqLxFo1Y69jpQvZ2T4ydkX9pC",
        "TMuA6YqfCeX8EhbfYEg5y7S4DqzSJireY9",
        "T9yD14Nj9j7xAB4dbGeiX9h8unkKHxuWwb",
        "TYPG8VeuoVAh2hP7Vfw6ww7vK98nvXXXUG",
        "TJRyWwFs9wTFGZg3JbrVriFbNfCug5tDeC",
        "THRF3GuPnvvPzKoaT8pJex5XHmo8NNbCb3",
        "TQLCsShbQNXMTVCjprY64qZmEA4rBarpQp",
        "TPX6HK2NRN4XKRX1JAhbC827bm7gMmy5w1",
        "TMVQGm1qAQYVdetCeGRRkTWYYrLXuHK2HC",
    ]
    .into_iter()
    .enumerate()
    {
        let (status, body) = app
            .create(&with(
                payment(&format!("vector-{index}")),
                "wallet_address",
                json!(address),
            ))
            .await;
        assert_eq!(status, 201, "{address}: {body}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn fifty_concurrent_creates_of_one_order_make_one_payment() {
    let (db, app) = TestApp::fresh(|_| {}).await;
    let body = payment("race-1");
    let requests = (0..50).map(|_| app.create(&body));
    let outcomes = futures_util::future::join_all(requests).await;
    let created = outcomes.iter().filter(|(status, _)| *status == 201).count();
    let conflicts = outcomes
        .iter()
        .filter(|(status, body)| *status == 409 && body["error"] == "order_id already exists with pending status")
        .count();
    assert_eq!((created, conflicts), (1, 49), "{outcomes:?}");
    let client = db.client().await;
    let payments: i64 = client
        .query_one("SELECT count(*) FROM payments WHERE order_id = 'race-1'", &[])
        .await
        .unwrap()
        .get(0);
    let logs: i64 = client
        .query_one("SELECT count(*) FROM payment_logs", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!((payments, logs), (1, 1));
}

#[tokio::test(flavor = "multi_thread")]
async fn an_order_id_can_be_used_again_once_its_payment_is_no_longer_pending() {
    let (db, app) = TestApp::fresh(|_| {}).await;
    assert_eq!(app.create(&payment("again")).await.0, 201);
    db.client()
        .await
        .execute("UPDATE payments SET status = 'expired'", &[])
        .await
        .unwrap();
    assert_eq!(app.create(&payment("again")).await.0, 201);
    assert_eq!(app.create(&payment("again")).await.0, 409);
}

#[tokio::test(flavor = "multi_thread")]
async fn health_and_stats_report_counts() {
    let (db, app) = TestApp::fresh(|settings| settings.polling_interval_seconds = 7).await;
    for order in ["a", "b", "c"] {
        assert_eq!(app.create(&payment(order)).await.0, 201);
    }
    db.client()
        .await
        .execute("UPDATE payments SET status = 'completed' WHERE order_id = 'a'", &[])
        .await
        .unwrap();
    db.client()
        .await
        .execute("UPDATE payments SET status = 'failed' WHERE order_id = 'b'", &[])
        .await
        .unwrap();

    let (status, health) = app.get("/health").await;
    assert_eq!(status, 200);
    assert_eq!(health["status"], "healthy");
    assert_eq!(health["database"], "connected");
    assert_eq!(
        (health["active_payments"].as_i64(), health["total_payments"].as_i64()),
        (Some(1), Some(3))
    );
    assert!(health["timestamp"].as_f64().unwrap() > 1.7e9);

    let (status, stats) = app.get("/stats").await;
    assert_eq!(status, 200);
    assert_eq!(stats["total_payments"], 3);
    assert_eq!(stats["pending_payments"], 1);
    assert_eq!(stats["completed_payments"], 1);
    assert_eq!(stats["failed_payments"], 1);
    assert_eq!(stats["expired_payments"], 0);
    assert_eq!(stats["polling_interval"], 7);
}

#[tokio::test(flavor = "multi_thread")]
async fn health_reports_a_lost_database_and_recovers_by_itself() {
    let db = TestDb::new().await;
    let proxy = FaultyProxy::for_postgres().await;
    let app = TestApp::start(&proxy.proxied_url(db.url()), |_| {}).await;
    assert_eq!(app.create(&payment("before")).await.0, 201);
    assert_eq!(app.get("/health").await.0, 200);

    proxy.cut();
    let (status, health) = app.get("/health").await;
    assert_eq!(status, 503);
    assert_eq!(health["status"], "unhealthy");
    assert_eq!(health["database"], "disconnected");
    assert!(health["timestamp"].as_f64().is_some());
    assert_eq!(
        (&health["active_payments"], &health["total_payments"]),
        (&Value::Null, &Value::Null)
    );
    // Requests that need the database answer 503 with JSON, never 500.
    let (status, body) = app.create(&payment("during")).await;
    assert_eq!(status, 503, "{body}");
    assert!(body["error"].as_str().unwrap().contains("unavailable"));
    assert_eq!(app.get("/payment_status/anything").await.0, 503);
    assert_eq!(app.get("/stats").await.0, 503);
    // Liveness does not depend on the database: an outage must not get
    // every replica restarted by its orchestrator.
    assert_eq!(app.get("/health/live").await.0, 200);

    proxy.restore();
    let health = eventually(Duration::from_secs(10), "/health to recover", || async {
        let (status, health) = app.get("/health").await;
        (status == 200).then_some(health)
    })
    .await;
    assert_eq!(health["database"], "connected");
    assert_eq!(app.create(&payment("after")).await.0, 201);
}

#[tokio::test(flavor = "multi_thread")]
async fn health_says_when_the_tables_are_missing() {
    let db = TestDb::empty().await;
    let app = TestApp::start(db.url(), |_| {}).await;
    let (status, health) = app.get("/health").await;
    assert_eq!(status, 503);
    assert_eq!(health["database"], "connected");
    assert!(
        health["error"].as_str().unwrap().contains("tronpay db create-tables"),
        "{health}"
    );
    let (status, body) = app.create(&payment("no-tables")).await;
    assert_eq!(status, 503, "{body}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reset_under_a_running_api_never_gives_500() {
    let (db, app) = TestApp::fresh(|_| {}).await;
    let (_, created) = app.create(&payment("before-reset")).await;
    let id = created["payment_id"].as_str().unwrap().to_owned();
    assert_eq!(app.get(&format!("/payment_status/{id}")).await.0, 200);
    assert_eq!(app.get("/stats").await.0, 200);

    // The enum type and tables are recreated under the API's pooled
    // connections, whose cached statements refer to the old ones.
    tronpay_db::migrate::reset(db.connect().await).await.unwrap();

    let mut statuses = Vec::new();
    for _ in 0..5 {
        statuses.push(app.get(&format!("/payment_status/{id}")).await.0);
        statuses.push(app.get("/stats").await.0);
    }
    assert!(!statuses.contains(&500), "{statuses:?}");
    assert_eq!(statuses[statuses.len() - 2..], [404, 200], "{statuses:?}");
    assert_eq!(app.create(&payment("after-reset")).await.0, 201);
}

#[tokio::test(flavor = "multi_thread")]
async fn head_requests_are_answered_without_a_body() {
    let (_db, app) = TestApp::fresh(|_| {}).await;
    let response = app.client.head(format!("{}/health", app.base)).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.bytes().await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_paths_and_methods_answer_json() {
    let (_db, app) = TestApp::fresh(|_| {}).await;
    let (status, body) = app.get("/nope").await;
    assert_eq!(status, 404);
    assert!(body["error"].is_string());
    let (status, body) = app.get("/create_payment").await;
    assert_eq!(status, 405);
    assert!(body["error"].is_string());
}

#[path = "dashboard/mod.rs"]
mod dashboard;
#[path = "v1/mod.rs"]
mod v1;

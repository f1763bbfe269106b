//! The merchant API v1 over real HTTP against a real PostgreSQL database:
//! keys and scopes, idempotent creates, pages, cancel, the audit trail, and
//! the OpenAPI document against the routes.

use std::collections::HashSet;
use std::time::Duration;

use serde_json::{Value, json};
use tronpay_testkit::{TestDb, eventually};

use super::{ADDRESS, TestApp};

mod checkout;
mod edge;
mod openapi;
pub(crate) mod receiving;
mod schemathesis;

const READ: &[&str] = &["payments:read"];
const WRITE: &[&str] = &["payments:write"];
pub(super) const READ_WRITE: &[&str] = &["payments:read", "payments:write"];

/// One answer: status, headers we look at, and the body as JSON (`Null`
/// when it is not JSON).
pub(super) struct Answer {
    pub status: u16,
    pub content_type: String,
    pub headers: reqwest::header::HeaderMap,
    pub text: String,
    pub body: Value,
}

impl TestApp {
    pub(super) async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        key: Option<&str>,
        headers: &[(&str, &str)],
        body: Option<String>,
    ) -> Answer {
        let mut request = self.client.request(method, format!("{}{path}", self.base));
        if let Some(key) = key {
            request = request.bearer_auth(key);
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if let Some(body) = body {
            request = request.header("content-type", "application/json").body(body);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let content_type = headers
            .get("content-type")
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let text = response.text().await.unwrap();
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        if status >= 400 && path.starts_with("/v1/") {
            assert_eq!(content_type, "application/problem+json", "{path}: {text}");
            assert!(body["code"].is_string() && body["status"] == status, "{path}: {text}");
        }
        assert!(status < 500, "{path} answered {status}: {text}");
        Answer {
            status,
            content_type,
            headers,
            text,
            body,
        }
    }

    pub(super) async fn v1_get(&self, path: &str, key: &str) -> Answer {
        self.call(reqwest::Method::GET, path, Some(key), &[], None).await
    }

    pub(super) async fn v1_post(&self, path: &str, key: &str, body: &Value) -> Answer {
        self.call(reqwest::Method::POST, path, Some(key), &[], Some(body.to_string()))
            .await
    }
}

fn order(order_id: &str) -> Value {
    json!({ "order_id": order_id, "amount": "12.34", "address": ADDRESS })
}

#[tokio::test(flavor = "multi_thread")]
async fn a_payment_is_created_read_listed_cancelled_and_audited() {
    let (db, app) = TestApp::fresh(|settings| {
        settings.public_base_url = "https://pay.example.com/".into();
    })
    .await;
    let key = db.api_key("shop", READ_WRITE).await;
    let body = json!({
        "order_id": "o-1",
        "amount": "12.340000",
        "address": ADDRESS,
        "expires_in": 600,
        "notify_url": "https://shop.example.com/hook",
        "notify_events": ["payment.detected", "payment.cancelled"],
        "redirect_url": "https://shop.example.com/thanks",
    })
    .to_string();
    // Metadata as the merchant wrote it (a float would lose these digits).
    let body = format!(
        r#"{},"metadata":{{"cart":[1,2],"price":12.340000000000000001}}}}"#,
        &body[..body.len() - 1]
    );
    let created = app
        .call(reqwest::Method::POST, "/v1/payments", Some(&key), &[], Some(body))
        .await;
    assert_eq!(created.status, 201, "{}", created.text);
    let payment = &created.body;
    let id = payment["id"].as_str().unwrap();
    assert_eq!(
        created.headers.get("location").unwrap().to_str().unwrap(),
        format!("/v1/payments/{id}")
    );
    assert_eq!(payment["status"], "pending");
    assert_eq!(payment["amount"], "12.34");
    assert_eq!(payment["amount_to_pay"], "12.34");
    assert_eq!(payment["received_amount"], Value::Null);
    assert_eq!(payment["currency"], "USDT_TRC20");
    assert_eq!(payment["address"], ADDRESS);
    assert_eq!(payment["checkout_url"], format!("https://pay.example.com/pay/{id}"));
    assert_eq!(payment["notify_url"], "https://shop.example.com/hook");
    assert_eq!(
        payment["notify_events"],
        json!(["payment.detected", "payment.cancelled"])
    );
    assert_eq!(payment["redirect_url"], "https://shop.example.com/thanks");
    // Metadata comes back as given, digit for digit.
    assert!(
        created
            .text
            .contains(r#""metadata":{"cart":[1,2],"price":12.340000000000000001}"#),
        "{}",
        created.text
    );
    let created_at = chrono::DateTime::parse_from_rfc3339(payment["created_at"].as_str().unwrap()).unwrap();
    let expires_at = chrono::DateTime::parse_from_rfc3339(payment["expires_at"].as_str().unwrap()).unwrap();
    assert_eq!((expires_at - created_at).num_seconds(), 600);

    let read = app.v1_get(&format!("/v1/payments/{id}"), &key).await;
    assert_eq!(
        (read.status, &read.text),
        (200, &created.text),
        "a read shows what the create answered"
    );
    // The original endpoint sees the same payment.
    let (status, original) = app.get(&format!("/payment_status/{id}")).await;
    assert_eq!((status, original["expected_amount_usdt"].as_f64()), (200, Some(12.34)));

    let listed = app.v1_get("/v1/payments?order_id=o-1", &key).await;
    assert_eq!(listed.body["data"].as_array().unwrap().len(), 1);
    assert_eq!(listed.body["data"][0]["id"], id);
    assert_eq!(listed.body["next_cursor"], Value::Null);

    let cancelled = app
        .v1_post(
            &format!("/v1/payments/{id}/cancel"),
            &key,
            &json!({"reason": "buyer left"}),
        )
        .await;
    assert_eq!((cancelled.status, &cancelled.body["status"]), (200, &json!("failed")));
    let again = app
        .v1_post(&format!("/v1/payments/{id}/cancel"), &key, &json!({}))
        .await;
    assert_eq!((again.status, again.body["code"].as_str()), (409, Some("not_pending")));

    let events = app.v1_get(&format!("/v1/payments/{id}/events"), &key).await;
    let kinds: Vec<&str> = events.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|event| event["event"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["created", "cancelled"]);
    assert!(
        events.body["data"][1]["message"]
            .as_str()
            .unwrap()
            .contains("buyer left")
    );
    assert_eq!(events.body["data"][1]["metadata"]["reason"], "buyer left");

    // The cancellation is a signed v1 webhook: event + the v1 resource.
    let bodies: Vec<Value> = db
        .column::<String>(&format!(
            "SELECT payload::text FROM webhook_deliveries WHERE payment_id = '{id}' AND event_type = 'payment.cancelled'"
        ))
        .await
        .iter()
        .map(|text| serde_json::from_str(text).unwrap())
        .collect();
    assert_eq!(bodies.len(), 1);
    assert_eq!(bodies[0]["event"], "payment.cancelled");
    assert_eq!(bodies[0]["payment"]["id"], id);
    assert_eq!(bodies[0]["payment"]["status"], "failed");
    assert_eq!(bodies[0]["payment"]["amount"], "12.34");

    // The order id is free again once its payment is no longer pending.
    let second = app.v1_post("/v1/payments", &key, &order("o-1")).await;
    assert_eq!(second.status, 201);
    let duplicate = app.v1_post("/v1/payments", &key, &order("o-1")).await;
    assert_eq!(
        (duplicate.status, duplicate.body["code"].as_str()),
        (409, Some("order_id_pending"))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_requests_are_problems_with_stable_codes() {
    let (db, app) = TestApp::fresh(|_| {}).await;
    let key = db.api_key("shop", READ_WRITE).await;
    let post = |body: &'static str| {
        app.call(
            reqwest::Method::POST,
            "/v1/payments",
            Some(&key),
            &[],
            Some(body.to_owned()),
        )
    };
    for (body, code) in [
        ("", "invalid_json"),
        ("{", "invalid_json"),
        ("[]", "invalid_json"),
        (
            r#"{"order_id":"o","amount":12.34,"address":"TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t"}"#,
            "invalid_json",
        ),
        (
            r#"{"order_id":"o","amount":"12.3456789","address":"TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t"}"#,
            "invalid_amount",
        ),
        (
            r#"{"order_id":"o","amount":"0","address":"TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t"}"#,
            "invalid_amount",
        ),
        (
            r#"{"order_id":"o","amount":"1","address":"TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6"}"#,
            "invalid_address",
        ),
        (
            r#"{"order_id":"","amount":"1","address":"TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t"}"#,
            "invalid_request",
        ),
        (
            r#"{"order_id":"o","amount":"1","address":"TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t","notify_url":"http://127.0.0.1/h"}"#,
            "invalid_notify_url",
        ),
        (
            r#"{"order_id":"o","amount":"1","address":"TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t","expires_in":31622401}"#,
            "invalid_request",
        ),
    ] {
        let answer = post(body).await;
        assert_eq!(
            (answer.status, answer.body["code"].as_str()),
            (400, Some(code)),
            "{body}: {}",
            answer.text
        );
        assert_eq!(answer.body["type"], format!("/docs#problem-{code}"));
    }
    let huge = format!(
        r#"{{"order_id":"o","amount":"1","address":"{ADDRESS}","metadata":{{"k":"{}"}}}}"#,
        "x".repeat(70_000)
    );
    let answer = app
        .call(reqwest::Method::POST, "/v1/payments", Some(&key), &[], Some(huge))
        .await;
    assert_eq!(
        (answer.status, answer.body["code"].as_str()),
        (413, Some("payload_too_large"))
    );

    for (path, code) in [
        ("/v1/payments?limit=0", "invalid_query"),
        ("/v1/payments?limit=201", "invalid_query"),
        ("/v1/payments?limit=abc", "invalid_query"),
        ("/v1/payments?status=paid", "invalid_query"),
        ("/v1/payments?created_from=yesterday", "invalid_query"),
        ("/v1/payments?cursor=garbage", "invalid_cursor"),
        // Found by schemathesis: a NUL in a filter once reached PostgreSQL.
        ("/v1/payments?order_id=a%00b", "invalid_query"),
        ("/v1/payments?address=%00", "invalid_query"),
        (
            "/v1/payments?address=TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6u",
            "invalid_query",
        ),
    ] {
        let answer = app.v1_get(path, &key).await;
        assert_eq!(
            (answer.status, answer.body["code"].as_str()),
            (400, Some(code)),
            "{path}"
        );
    }
    let answer = app.v1_get("/v1/payments/no-such-payment", &key).await;
    assert_eq!((answer.status, answer.body["code"].as_str()), (404, Some("not_found")));
    let answer = app.v1_get(&format!("/v1/payments/{}", "x".repeat(300)), &key).await;
    assert_eq!((answer.status, answer.body["code"].as_str()), (404, Some("not_found")));
    let answer = app.v1_get("/v1/nothing-here", &key).await;
    assert_eq!(
        (answer.status, answer.body["code"].as_str()),
        (404, Some("route_not_found"))
    );
    let answer = app
        .call(reqwest::Method::DELETE, "/v1/payments", Some(&key), &[], None)
        .await;
    assert_eq!(
        (answer.status, answer.body["code"].as_str()),
        (405, Some("method_not_allowed"))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn each_scope_is_allowed_and_refused() {
    let (db, app) = TestApp::fresh(|_| {}).await;
    let read = db.api_key("reader", READ).await;
    let write = db.api_key("writer", WRITE).await;
    let operator = db.api_key("operator", &["operator"]).await;
    let both = db.api_key("both", READ_WRITE).await;

    let created = app.v1_post("/v1/payments", &write, &order("o-scope")).await;
    assert_eq!(created.status, 201);
    let id = created.body["id"].as_str().unwrap().to_owned();
    for key in [&read, &operator] {
        let answer = app.v1_post("/v1/payments", key, &order("o-refused")).await;
        assert_eq!((answer.status, answer.body["code"].as_str()), (403, Some("forbidden")));
        assert!(answer.body["detail"].as_str().unwrap().contains("payments:write"));
        let answer = app.v1_post(&format!("/v1/payments/{id}/cancel"), key, &json!({})).await;
        assert_eq!(answer.status, 403);
    }
    for path in [
        format!("/v1/payments/{id}"),
        "/v1/payments".to_owned(),
        format!("/v1/payments/{id}/events"),
    ] {
        assert_eq!(app.v1_get(&path, &read).await.status, 200, "{path}");
        assert_eq!(app.v1_get(&path, &both).await.status, 200, "{path}");
        for key in [&write, &operator] {
            let answer = app.v1_get(&path, key).await;
            assert_eq!(
                (answer.status, answer.body["code"].as_str()),
                (403, Some("forbidden")),
                "{path}"
            );
        }
    }

    // No key, not a key, a made-up key, a wrong secret: 401 with a challenge.
    let made_up = format!("tpk_0123456789_{}", "A".repeat(43));
    let wrong_secret = format!("{}{}", &read[..read.len() - 4], "AAAA");
    for header in [
        None,
        Some("Basic abc"),
        Some("Bearer nope"),
        Some(made_up.as_str()),
        Some(wrong_secret.as_str()),
    ] {
        let headers: Vec<(&str, String)> = match header {
            Some(value) if value.starts_with("tpk_") => vec![("authorization", format!("Bearer {value}"))],
            Some(value) => vec![("authorization", value.to_owned())],
            None => Vec::new(),
        };
        let headers: Vec<(&str, &str)> = headers.iter().map(|(name, value)| (*name, value.as_str())).collect();
        let answer = app
            .call(reqwest::Method::GET, "/v1/payments", None, &headers, None)
            .await;
        assert_eq!(
            (answer.status, answer.body["code"].as_str()),
            (401, Some("unauthorized")),
            "{header:?}"
        );
        assert_eq!(answer.headers.get("www-authenticate").unwrap(), "Bearer");
    }

    // Last use is recorded (to the minute), never the key itself.
    let last_used: Vec<bool> = db
        .column("SELECT last_used_at IS NOT NULL FROM api_keys WHERE name = 'reader'")
        .await;
    assert_eq!(last_used, [true]);
    let stored: Vec<String> = db.column("SELECT prefix || secret_hash FROM api_keys").await;
    assert!(stored.iter().all(|text| !text.contains(&read[15..])));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_revoked_key_is_refused_by_every_replica_within_the_cache_time() {
    let db = TestDb::new().await;
    let first = TestApp::start(db.url(), |settings| settings.api_key_cache_seconds = 1).await;
    let second = TestApp::start(db.url(), |settings| settings.api_key_cache_seconds = 1).await;
    let key = db.api_key("shop", READ).await;
    for app in [&first, &second] {
        assert_eq!(app.v1_get("/v1/payments", &key).await.status, 200);
    }
    let prefix = &key[4..14];
    let revoked = tronpay_db::api_keys::revoke(&mut db.connect().await, prefix)
        .await
        .unwrap();
    assert_eq!(revoked, Some(true));
    let started = std::time::Instant::now();
    for app in [&first, &second] {
        eventually(Duration::from_secs(5), "the revoked key is refused", async || {
            let answer = app.v1_get("/v1/payments", &key).await;
            (answer.status == 401).then_some(())
        })
        .await;
    }
    // Documented: within API_KEY_CACHE_SECONDS (1 s here), plus a request.
    assert!(started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());
    assert_eq!(
        second.v1_get("/v1/payments", &key).await.body["detail"],
        "this API key was revoked"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_original_endpoints_take_a_key_when_required() {
    let (db, app) = TestApp::fresh(|settings| settings.legacy_api_key_required = true).await;
    let read = db.api_key("reader", READ).await;
    let write = db.api_key("writer", WRITE).await;
    let body = json!({
        "wallet_address": ADDRESS,
        "expected_amount_usdt": 5,
        "callback_url": "https://shop.example.com/hook",
        "order_id": "legacy-1",
    });
    let create = |key: Option<String>| {
        let (app, body) = (&app, body.to_string());
        async move {
            app.call(
                reqwest::Method::POST,
                "/create_payment",
                key.as_deref(),
                &[],
                Some(body),
            )
            .await
        }
    };
    let answer = create(None).await;
    assert_eq!(answer.status, 401);
    assert!(
        answer.body["error"].is_string(),
        "the original's error shape: {}",
        answer.text
    );
    assert_eq!(create(Some(read.clone())).await.status, 403);
    let created = create(Some(write.clone())).await;
    assert_eq!(created.status, 201);
    let id = created.body["payment_id"].as_str().unwrap();
    let status = format!("/payment_status/{id}");
    assert_eq!(
        app.call(reqwest::Method::GET, &status, None, &[], None).await.status,
        401
    );
    assert_eq!(
        app.call(reqwest::Method::GET, &status, Some(&write), &[], None)
            .await
            .status,
        403
    );
    assert_eq!(
        app.call(reqwest::Method::GET, &status, Some(&read), &[], None)
            .await
            .status,
        200
    );
    assert_eq!(
        app.call(reqwest::Method::GET, "/stats", None, &[], None).await.status,
        401
    );
    // Probes stay open.
    assert_eq!(
        app.call(reqwest::Method::GET, "/health/live", None, &[], None)
            .await
            .status,
        200
    );

    // Open by default, as the original.
    let (_db, open) = TestApp::fresh(|_| {}).await;
    let answer = open
        .call(
            reqwest::Method::POST,
            "/create_payment",
            None,
            &[],
            Some(body.to_string()),
        )
        .await;
    assert_eq!(answer.status, 201);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_idempotency_key_replays_the_first_response_and_refuses_another_body() {
    let (db, app) = TestApp::fresh(|_| {}).await;
    let key = db.api_key("shop", READ_WRITE).await;
    let other_key = db.api_key("other", READ_WRITE).await;
    let send = |api_key: &str, idempotency: &str, body: &Value| {
        let api_key = api_key.to_owned();
        let idempotency = idempotency.to_owned();
        let body = body.to_string();
        let app = &app;
        async move {
            app.call(
                reqwest::Method::POST,
                "/v1/payments",
                Some(&api_key),
                &[("idempotency-key", &idempotency)],
                Some(body),
            )
            .await
        }
    };
    let first = send(&key, "k-1", &order("o-idem")).await;
    assert_eq!(first.status, 201);
    assert!(first.headers.get("idempotent-replayed").is_none());
    let replay = send(&key, "k-1", &order("o-idem")).await;
    assert_eq!((replay.status, &replay.text), (201, &first.text));
    assert_eq!(replay.headers.get("idempotent-replayed").unwrap(), "true");

    let conflict = send(&key, "k-1", &order("o-idem-other")).await;
    assert_eq!(
        (conflict.status, conflict.body["code"].as_str()),
        (422, Some("idempotency_key_reused"))
    );

    // Keys are per API key: another key's "k-1" is its own.
    let other = send(&other_key, "k-1", &order("o-idem-2")).await;
    assert_eq!(other.status, 201);
    assert_ne!(other.body["id"], first.body["id"]);

    // A refused request is not remembered: corrected, the same key works.
    let mut bad = order("o-idem-3");
    bad["amount"] = json!("-1");
    assert_eq!(send(&key, "k-2", &bad).await.status, 400);
    assert_eq!(send(&key, "k-2", &order("o-idem-3")).await.status, 201);

    for bad_key in ["", &"x".repeat(256), "tab\there"] {
        let answer = send(&key, bad_key, &order("o-idem-4")).await;
        assert_eq!(
            (answer.status, answer.body["code"].as_str()),
            (400, Some("invalid_idempotency_key")),
            "{bad_key:?}"
        );
    }

    // A retry is answered as the first time even when the request would no
    // longer pass: here its expires_at came closer than the 60 s minimum.
    let soon = (chrono::Utc::now() + chrono::TimeDelta::milliseconds(61_500))
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let mut closing = order("o-idem-soon");
    closing["expires_at"] = json!(soon);
    let made = send(&key, "k-soon", &closing).await;
    assert_eq!(made.status, 201, "{}", made.text);
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let mut fresh_key = closing.clone();
    fresh_key["order_id"] = json!("o-idem-soon-2");
    assert_eq!(
        send(&key, "k-soon-2", &fresh_key).await.status,
        400,
        "it would not pass now"
    );
    let replay = send(&key, "k-soon", &closing).await;
    assert_eq!((replay.status, &replay.text), (201, &made.text));

    // The replay is the first answer, whatever happened to the payment since.
    let cancelled = app
        .v1_post(
            &format!("/v1/payments/{}/cancel", first.body["id"].as_str().unwrap()),
            &key,
            &json!({}),
        )
        .await;
    assert_eq!(cancelled.status, 200);
    let replay = send(&key, "k-1", &order("o-idem")).await;
    assert_eq!((replay.status, &replay.text), (201, &first.text));

    // After 24 hours the key starts over.
    db.client()
        .await
        .batch_execute(
            "UPDATE payments SET created_at = created_at - interval '25 hours' WHERE idempotency_key = 'k-1'",
        )
        .await
        .unwrap();
    let fresh = send(&key, "k-1", &order("o-idem")).await;
    assert_eq!(fresh.status, 201);
    assert_ne!(fresh.body["id"], first.body["id"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn twenty_concurrent_creates_with_one_key_make_one_payment() {
    let (db, app) = TestApp::fresh(|settings| settings.api_workers = Some(4)).await;
    let key = db.api_key("shop", READ_WRITE).await;
    let body = order("o-race").to_string();
    let answers = futures_util::future::join_all((0..20).map(|_| {
        app.call(
            reqwest::Method::POST,
            "/v1/payments",
            Some(&key),
            &[("idempotency-key", "one-key")],
            Some(body.clone()),
        )
    }))
    .await;
    let ids: HashSet<&str> = answers
        .iter()
        .map(|answer| {
            assert_eq!(answer.status, 201, "{}", answer.text);
            answer.body["id"].as_str().unwrap()
        })
        .collect();
    assert_eq!(ids.len(), 1, "every request got the one payment");
    let rows: Vec<i64> = db
        .column("SELECT count(*) FROM payments WHERE order_id = 'o-race'")
        .await;
    assert_eq!(rows, [1]);
    let replayed = answers
        .iter()
        .filter(|answer| answer.headers.get("idempotent-replayed").is_some())
        .count();
    assert_eq!(replayed, 19);
}

#[tokio::test(flavor = "multi_thread")]
async fn pages_are_stable_while_payments_are_created() {
    let (db, app) = TestApp::fresh(|settings| settings.api_workers = Some(4)).await;
    let key = db.api_key("shop", READ_WRITE).await;
    let create_many = |prefix: &'static str, count: usize| {
        let app = &app;
        let key = key.clone();
        async move {
            let mut ids = Vec::new();
            for chunk in (0..count).collect::<Vec<_>>().chunks(25) {
                let answers = futures_util::future::join_all(chunk.iter().map(|n| {
                    let (key, body) = (&key, order(&format!("{prefix}-{n}")));
                    async move { app.v1_post("/v1/payments", key, &body).await }
                }))
                .await;
                ids.extend(answers.into_iter().map(|answer| {
                    assert_eq!(answer.status, 201);
                    answer.body["id"].as_str().unwrap().to_owned()
                }));
            }
            ids
        }
    };
    let before: HashSet<String> = create_many("before", 250).await.into_iter().collect();

    let pages = async {
        let mut seen = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let path = match &cursor {
                Some(cursor) => format!("/v1/payments?limit=100&cursor={cursor}"),
                None => "/v1/payments?limit=100".to_owned(),
            };
            let page = app.v1_get(&path, &key).await;
            assert_eq!(page.status, 200);
            let data = page.body["data"].as_array().unwrap();
            assert!(data.len() <= 100);
            seen.extend(data.iter().map(|payment| payment["id"].as_str().unwrap().to_owned()));
            match page.body["next_cursor"].as_str() {
                Some(next) => cursor = Some(next.to_owned()),
                None => break,
            }
            // Let the inserts interleave with the paging.
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        seen
    };
    let (seen, during) = tokio::join!(pages, create_many("during", 50));
    let unique: HashSet<&String> = seen.iter().collect();
    assert_eq!(unique.len(), seen.len(), "no payment on two pages");
    let missing: Vec<&String> = before.iter().filter(|id| !unique.contains(id)).collect();
    assert!(
        missing.is_empty(),
        "{} created before paging are missing",
        missing.len()
    );
    assert_eq!(during.len(), 50);
    // Filters page the same way.
    let page = app.v1_get("/v1/payments?status=pending&limit=200", &key).await;
    assert_eq!(page.body["data"].as_array().unwrap().len(), 200);
    let from = page.body["data"][199]["created_at"].as_str().unwrap().to_owned();
    let page = app
        .v1_get(&format!("/v1/payments?created_from={from}&limit=200"), &key)
        .await;
    assert_eq!(page.body["data"].as_array().unwrap().len(), 200);
}

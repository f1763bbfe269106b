//! The edge of every request over HTTP: rate limits per key, per client IP
//! and per failed authentication (429 with `Retry-After`), `X-Forwarded-For`
//! believed only from trusted proxies, and request ids.

use reqwest::Method;

use super::super::TestApp;
use super::{Answer, READ};

fn retry_after(answer: &Answer) -> u64 {
    answer
        .headers
        .get("retry-after")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse().ok())
        .unwrap_or_else(|| panic!("no Retry-After: {:?}", answer.headers))
}

#[tokio::test(flavor = "multi_thread")]
async fn keys_and_failed_key_checks_are_rate_limited() {
    let (db, app) = TestApp::fresh(|settings| {
        settings.rate_limit_per_key = 2;
        settings.auth_failures_per_minute = 3;
    })
    .await;
    let busy = db.api_key("busy", READ).await;
    let calm = db.api_key("calm", READ).await;
    for _ in 0..2 {
        assert_eq!(app.v1_get("/v1/payments", &busy).await.status, 200);
    }
    let limited = app.v1_get("/v1/payments", &busy).await;
    assert_eq!(
        (limited.status, limited.body["code"].as_str()),
        (429, Some("rate_limited")),
        "{}",
        limited.text
    );
    assert!(retry_after(&limited) >= 1);
    assert_eq!(
        app.v1_get("/v1/payments", &calm).await.status,
        200,
        "another key has its own budget"
    );

    // Wrong keys: 401 three times a minute, then 429 for the client, whatever
    // key it sends, until its failures age out (no key is even looked up).
    let wrong = "tpk_0123456789_0123456789abcdef0123456789abcdef0123456789abcdef";
    for _ in 0..3 {
        assert_eq!(app.v1_get("/v1/payments", wrong).await.status, 401);
    }
    let limited = app.v1_get("/v1/payments", wrong).await;
    assert_eq!(
        (limited.status, limited.body["code"].as_str()),
        (429, Some("rate_limited")),
        "{}",
        limited.text
    );
    assert!(retry_after(&limited) >= 1);
    let locked_out = app.v1_get("/v1/payments", &calm).await;
    assert_eq!(
        (locked_out.status, locked_out.body["code"].as_str()),
        (429, Some("rate_limited"))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn client_ips_are_limited_and_forwarded_for_is_believed_only_from_trusted_proxies() {
    // Not a trusted proxy: X-Forwarded-For changes nothing.
    let (_db, app) = TestApp::fresh(|settings| settings.rate_limit_per_ip = 3).await;
    for spoofed in ["192.0.2.1", "192.0.2.2", "192.0.2.3"] {
        let answer = app
            .call(Method::GET, "/health", None, &[("x-forwarded-for", spoofed)], None)
            .await;
        assert_eq!(answer.status, 200, "{}", answer.text);
    }
    let limited = app
        .call(Method::GET, "/health", None, &[("x-forwarded-for", "192.0.2.4")], None)
        .await;
    // The original endpoints keep their error shape.
    assert_eq!(limited.status, 429);
    assert!(
        limited.body["error"].as_str().unwrap().contains("Too many requests"),
        "{}",
        limited.text
    );
    assert!(retry_after(&limited) >= 1);
    let limited = app.call(Method::GET, "/v1/payments", None, &[], None).await;
    assert_eq!(
        (limited.status, limited.body["code"].as_str()),
        (429, Some("rate_limited"))
    );

    // Behind a trusted proxy (this test's loopback), each client its own budget.
    let (_db, app) = TestApp::fresh(|settings| {
        settings.rate_limit_per_ip = 2;
        settings.trusted_proxies = "127.0.0.1/32".into();
    })
    .await;
    let from = |client: &'static str| [("x-forwarded-for", client)];
    for _ in 0..2 {
        assert_eq!(
            app.call(Method::GET, "/health", None, &from("198.51.100.7"), None)
                .await
                .status,
            200
        );
    }
    assert_eq!(
        app.call(Method::GET, "/health", None, &from("198.51.100.7"), None)
            .await
            .status,
        429
    );
    assert_eq!(
        app.call(Method::GET, "/health", None, &from("198.51.100.8"), None)
            .await
            .status,
        200
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn request_ids_are_echoed_or_made() {
    let (_db, app) = TestApp::fresh(|_| {}).await;
    let id_of = |answer: &Answer| {
        answer
            .headers
            .get("x-request-id")
            .map(|value| value.to_str().unwrap().to_owned())
            .unwrap_or_default()
    };
    let answer = app
        .call(Method::GET, "/health", None, &[("x-request-id", "shop-req-42")], None)
        .await;
    assert_eq!(id_of(&answer), "shop-req-42");
    for headers in [&[][..], &[("x-request-id", "not allowed <>")][..]] {
        for path in ["/health", "/v1/payments", "/nowhere"] {
            let made = id_of(&app.call(Method::GET, path, None, headers, None).await);
            assert!(
                made.len() == 32 && made.bytes().all(|byte| byte.is_ascii_hexdigit()),
                "{path}: {made:?}"
            );
        }
    }
}

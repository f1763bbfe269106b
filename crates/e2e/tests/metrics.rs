//! `/metrics` of every service (PRODUCT §12), scraped before and after a
//! payment paid on the sandbox and its webhook delivered: the payment
//! counters, the match by kind, the HTTP series by route template, the
//! chain heights and lag, the node calls, the webhook attempts and their
//! latency histogram, the pool and the outbox all show it. (Each test runs
//! in a process of its own, so the counters are this test's.)

// Integration tests: a failed step should stop the test loudly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use serde_json::json;
use tronpay_e2e::receiver::Receiver;
use tronpay_e2e::{DispatcherInstance, Stack, eventually, v1};
use tronpay_runtime::metrics::value_in;

async fn scrape(url: &str) -> String {
    let response = reqwest::get(format!("{url}/metrics")).await.unwrap();
    assert_eq!(response.status(), 200, "{url}/metrics");
    let content_type = response.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(content_type.starts_with("text/plain; version=0.0.4"), "{content_type}");
    response.text().await.unwrap()
}

/// `name{labels}` in `url`'s exposition, 0 when absent.
async fn value(url: &str, name: &str, labels: &[&str]) -> f64 {
    value_in(&scrape(url).await, name, labels).unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread")]
async fn each_service_shows_a_payment_in_its_metrics() {
    let stack = Stack::start_with(|api| api.callback_allow_private = true, |_| {}).await;
    let dispatcher = DispatcherInstance::start(stack.db.url(), &stack.bus.settings, |_| {}).await;
    let receiver = Receiver::start(vec![]).await;
    let (api, watcher) = (stack.api.url.clone(), stack.watcher.as_ref().unwrap().url.clone());
    let key = stack.db.api_key("shop", &["payments:read", "payments:write"]).await;

    let created = |text: &str| value_in(text, "tronpay_payments_created_total", &[r#"mode="given""#]);
    let before = scrape(&api).await;
    let completed_before = value_in(&before, "tronpay_payments_completed_total", &[]).unwrap_or(0.0);
    let exact_before = value_in(&before, "tronpay_transfers_matched_total", &[r#"kind="exact""#]).unwrap_or(0.0);
    let attempts_before = value(
        &dispatcher.url,
        "tronpay_webhook_attempt_duration_seconds_count",
        &[r#"outcome="delivered""#],
    )
    .await;

    let address = tronpay_e2e::random_address();
    let payment = tronpay_e2e::v1_payment(&api, &key, &address, "12.5", json!({ "notify_url": receiver.url })).await;
    let id = payment["id"].as_str().unwrap().to_owned();
    stack.pay(address, "12.5");
    stack.wait_for(&id, "completed").await;
    eventually(Duration::from_secs(30), "the webhook", || async {
        (!receiver.received().is_empty()).then_some(())
    })
    .await;
    let (status, _) = v1(&api, "GET", &format!("/v1/payments/{id}"), &key, None).await;
    assert_eq!(status, 200);

    // The API: the payment created and completed, its transfer an exact
    // match, requests by route template (never the payment's own path).
    let after = scrape(&api).await;
    assert_eq!(
        created(&after).unwrap_or(0.0) - created(&before).unwrap_or(0.0),
        1.0,
        "{after}"
    );
    assert_eq!(
        value_in(&after, "tronpay_payments_completed_total", &[]).unwrap_or(0.0) - completed_before,
        1.0
    );
    assert_eq!(
        value_in(&after, "tronpay_transfers_matched_total", &[r#"kind="exact""#]).unwrap_or(0.0) - exact_before,
        1.0
    );
    assert_eq!(
        value_in(
            &after,
            "http_requests_total",
            &[r#"route="/v1/payments/{id}""#, r#"method="GET""#, r#"status="200""#]
        ),
        Some(1.0),
        "{after}"
    );
    assert!(
        value_in(
            &after,
            "http_request_duration_seconds_bucket",
            &[r#"route="/v1/payments""#]
        )
        .is_some(),
        "{after}"
    );
    assert!(!after.contains(&id), "no payment id in a label");
    assert!(
        value_in(&after, "tronpay_db_pool_max_connections", &[]).unwrap_or(0.0) > 0.0,
        "{after}"
    );

    // The watcher: the node calls, and the chain as sampled from the database
    // (every few seconds): the cursor caught up with the final block.
    let final_block = stack.sandbox.heights().solid;
    eventually(Duration::from_secs(30), "the chain gauges", || async {
        let text = scrape(&watcher).await;
        let cursor = value_in(&text, "tronpay_chain_cursor_block", &[])?;
        (cursor >= final_block as f64 && value_in(&text, "tronpay_chain_lag_blocks", &[]) == Some(0.0)).then_some(text)
    })
    .await;
    let text = scrape(&watcher).await;
    assert!(
        value_in(&text, "tronpay_node_requests_total", &[r#"outcome="ok""#]).unwrap_or(0.0) > 0.0,
        "{text}"
    );
    assert!(value_in(&text, "tronpay_chain_head_block", &[]).unwrap_or(0.0) >= final_block as f64);
    assert!(value_in(&text, "tronpay_outbox_backlog", &[]).is_some(), "{text}");

    // The dispatcher: one more delivered attempt in the latency histogram.
    let attempts_after = value(
        &dispatcher.url,
        "tronpay_webhook_attempt_duration_seconds_count",
        &[r#"outcome="delivered""#],
    )
    .await;
    assert_eq!(attempts_after - attempts_before, 1.0);
    let text = scrape(&dispatcher.url).await;
    assert!(
        value_in(&text, "tronpay_webhook_attempts_total", &[r#"outcome="delivered""#]).unwrap_or(0.0) >= 1.0,
        "{text}"
    );
    eventually(Duration::from_secs(20), "the webhook gauges", || async {
        let text = scrape(&dispatcher.url).await;
        (value_in(&text, "tronpay_webhook_deliveries_dead", &[]) == Some(0.0)).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_api_shows_metrics_only_to_the_networks_allowed() {
    let stack = Stack::start_with(|api| api.metrics_allow = "10.0.0.0/8".into(), |_| {}).await;
    let response = reqwest::get(format!("{}/metrics", stack.api.url)).await.unwrap();
    assert_eq!(response.status(), 404, "127.0.0.1 is not in METRICS_ALLOW");
    let body = response.text().await.unwrap();
    assert!(!body.contains("tronpay_"), "{body}");
}

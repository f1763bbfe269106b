//! A background task of the dispatcher that ends (here: panics) makes
//! `/health` answer 503 naming it, and `run_until` return the failure so
//! that the process exits non-zero.

// Integration tests: a failed step should stop the test loudly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use serde_json::Value;
use tronpay_testkit::{TestBus, TestDb, http_client};
use tronpay_webhook_dispatcher::{Config, DispatcherSettings};

async fn doomed() {
    panic!("a bug in a background task");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_panicking_task_makes_the_dispatcher_unhealthy_and_run_return_the_failure() {
    let db = TestDb::new().await;
    let bus = TestBus::new();
    let config = Config {
        dispatcher: DispatcherSettings {
            webhook_secret: Some("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".into()),
            dispatcher_bind: "127.0.0.1:0".into(),
            ..DispatcherSettings::default()
        },
        db: db.settings(),
        bus: bus.settings.clone(),
    };
    let mut running = tronpay_webhook_dispatcher::start(config).await.unwrap();
    let url = format!("http://127.0.0.1:{}/health", running.port());
    running.spawn("doomed", doomed());
    // No shutdown is ever asked for: only the failure ends it.
    let outcome = tokio::spawn(running.run_until(std::future::pending()));

    // A bound on something that must happen, polled.
    let started = Instant::now();
    let body = loop {
        if let Ok(response) = http_client().get(&url).send().await
            && response.status() == 503
        {
            break response.json::<Value>().await.unwrap();
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "/health never answered 503"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(body["status"], "unhealthy", "{body}");
    assert_eq!(body["failure"]["task"], "doomed", "{body}");
    assert_eq!(
        body["failure"]["reason"], "panicked: a bug in a background task",
        "{body}"
    );

    let error = tokio::time::timeout(Duration::from_secs(60), outcome)
        .await
        .expect("run_until returns after a failure")
        .unwrap()
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "the doomed task panicked: a bug in a background task"
    );
}

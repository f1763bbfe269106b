//! The supervision check every service passes: a background task that ends
//! (here: panics) makes `/health` answer 503 naming it, and `run_until`
//! return the failure so that the process exits non-zero.

use std::time::Duration;

use serde_json::Value;
use tronpay_bus::BusSettings;
use tronpay_db::DbSettings;
use tronpay_runtime::service::Running;

use crate::{TestBus, TestDb, eventually, http_client};

/// The name the panicking task is supervised under.
pub const DOOMED: &str = "doomed";

async fn doomed() {
    panic!("a bug in a background task");
}

/// Starts a service with `start` on a fresh database and private broker
/// names (its HTTP server on port 0), adds a task that panics, and runs it
/// with no shutdown ever asked for: only the failure ends it. Checks that
/// `/health` answers 503 `unhealthy` naming the task and why, and that
/// `run_until` returns that failure. Returns the 503 body, for what a
/// service adds to it.
pub async fn a_panicking_task_fails(start: impl AsyncFnOnce(DbSettings, BusSettings) -> Running) -> Value {
    let db = TestDb::new().await;
    let bus = TestBus::new();
    let mut running = start(db.settings(), bus.settings.clone()).await;
    let url = format!("http://127.0.0.1:{}/health", running.port());
    running.spawn(DOOMED, doomed());
    let outcome = tokio::spawn(running.run_until(std::future::pending()));

    let body = eventually(Duration::from_secs(30), "/health to answer 503", || async {
        let response = http_client().get(&url).send().await.ok()?;
        (response.status() == 503).then_some(response.json::<Value>().await.ok()?)
    })
    .await;
    assert_eq!(body["status"], "unhealthy", "{body}");
    assert_eq!(body["failure"]["task"], DOOMED, "{body}");
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
    body
}

//! The `tronpay-webhook-dispatcher` binary: settings are checked at start,
//! a secret is generated on first start, and SIGTERM stops it cleanly.

// Integration tests: a failed step should stop the test loudly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;
use std::time::Duration;

use tronpay_testkit::process::{ServiceProcess, assert_refused, service_command};
use tronpay_testkit::{TestBus, TestDb, eventually, get_json, http_client};

fn dispatcher() -> Command {
    service_command(env!("CARGO_BIN_EXE_tronpay-webhook-dispatcher"))
}

#[test]
fn bad_settings_are_refused_at_start_naming_the_variable() {
    assert_refused(
        dispatcher,
        &[
            ("WEBHOOK_RETRY_SCHEDULE", "5s,later", "WEBHOOK_RETRY_SCHEDULE"),
            ("WEBHOOK_SECRET", "not-a-secret", "WEBHOOK_SECRET"),
            ("WEBHOOK_TIMEOUT_MS", "5", "WEBHOOK_TIMEOUT_MS must be between"),
            (
                "WEBHOOK_ORIGIN_CONCURRENCY",
                "0",
                "WEBHOOK_ORIGIN_CONCURRENCY must be between",
            ),
            (
                "WEBHOOK_SLOW_CONCURRENCY",
                "many",
                "WEBHOOK_SLOW_CONCURRENCY is invalid",
            ),
            ("CALLBACK_ALLOW_CIDRS", "10.0.0.0/40", "CALLBACK_ALLOW_CIDRS"),
            ("DISPATCHER_BIND", "here", "DISPATCHER_BIND must be an address and port"),
        ],
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn first_start_generates_a_secret_and_sigterm_stops_it() {
    let db = TestDb::new().await;
    let bus = TestBus::new();
    let dir = tempfile::tempdir().unwrap();
    let mut command = dispatcher();
    command
        .env("DATABASE_URL", db.url())
        .envs(bus.env())
        .env("DISPATCHER_BIND", "127.0.0.1:0")
        .env_remove("WEBHOOK_SECRET");
    let mut process = ServiceProcess::spawn(
        "dispatcher",
        command,
        dir.path(),
        "tronpay-webhook-dispatcher health endpoint listening",
    );
    let port = process.port;
    let secrets: Vec<String> = db.column("SELECT secret FROM webhook_secrets").await;
    assert_eq!(secrets.len(), 1);
    assert!(secrets[0].starts_with("whsec_"));

    let url = format!("http://127.0.0.1:{port}/health");
    eventually(
        Duration::from_secs(10),
        "the dispatcher to report database and broker connected",
        || async {
            let health = get_json(&url).await;
            (health["status"] == "healthy" && health["broker"] == "connected").then_some(())
        },
    )
    .await;
    let live = http_client().get(format!("{url}/live")).send().await.unwrap();
    assert_eq!(live.status(), 200, "liveness for orchestrators");

    let status = process.terminate_within(Duration::from_secs(15));
    assert!(status.success(), "exit status {status}");
    let log = process.log();
    assert!(log.contains("tronpay-webhook-dispatcher stopped"), "{log}");
}

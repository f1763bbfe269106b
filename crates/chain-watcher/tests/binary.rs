//! The `tronpay-chain-watcher` binary: settings are checked at start, and
//! SIGTERM stops it cleanly.

// Integration tests: a failed step should stop the test loudly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;
use std::time::Duration;

use tronpay_sandbox::{Sandbox, SandboxConfig};
use tronpay_testkit::process::{ServiceProcess, assert_refused, service_command};
use tronpay_testkit::{TestBus, TestDb, eventually, get_json, http_client};

fn watcher() -> Command {
    service_command(env!("CARGO_BIN_EXE_tronpay-chain-watcher"))
}

#[test]
fn bad_settings_are_refused_at_start_naming_the_variable() {
    assert_refused(
        watcher,
        &[
            ("TRON_NODE_URL", "ftp://node", "TRON_NODE_URL"),
            ("TRON_NODE_URL", "", "TRON_NODE_URL is empty"),
            (
                "USDT_TRC20_CONTRACT_ADDRESS",
                "TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6u",
                "USDT_TRC20_CONTRACT_ADDRESS",
            ),
            ("CONFIRMATIONS", "many", "CONFIRMATIONS is invalid"),
            ("FETCH_CONCURRENCY", "0", "FETCH_CONCURRENCY must be between 1 and 64"),
            ("RABBITMQ_URL", "http://nope", "RABBITMQ_URL is not an AMQP URL"),
            ("WATCHER_BIND", "somewhere", "WATCHER_BIND must be an address and port"),
        ],
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_stops_the_watcher_cleanly() {
    let db = TestDb::new().await;
    let bus = TestBus::new();
    let sandbox = Sandbox::start(SandboxConfig::ephemeral()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut command = watcher();
    command
        .env("DATABASE_URL", db.url())
        .env("TRON_NODE_URL", sandbox.url())
        .envs(bus.env())
        .env("WATCHER_BIND", "127.0.0.1:0");
    let mut process = ServiceProcess::spawn(
        "watcher",
        command,
        dir.path(),
        "tronpay-chain-watcher health endpoint listening",
    );
    let port = process.port;
    let url = format!("http://127.0.0.1:{port}/health");
    eventually(
        Duration::from_secs(10),
        "the only watcher to become the scanner",
        || async {
            let health = get_json(&url).await;
            (health["leader"] == true && health["chain"]["cursor_block"].is_i64()).then_some(())
        },
    )
    .await;
    let live = http_client().get(format!("{url}/live")).send().await.unwrap();
    assert_eq!(live.status(), 200, "liveness for orchestrators");

    let status = process.terminate_within(Duration::from_secs(15));
    assert!(status.success(), "exit status {status}");
    let log = process.log();
    assert!(log.contains("tronpay-chain-watcher stopped"), "{log}");
}

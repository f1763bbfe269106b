//! A scanner that cannot do its work never looks healthy: the watcher's
//! `/health` says why, the process exits non-zero so that the orchestrator
//! restarts it, and the standby takes the scanner role over. The same holds
//! for any of the watcher's tasks, down to one that panics.

// Integration tests: a failed step should stop the test loudly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use tronpay_chain_watcher::WatcherSettings;
use tronpay_domain::TronAddress;
use tronpay_sandbox::{Sandbox, SandboxConfig};
use tronpay_testkit::process::ServiceProcess;
use tronpay_testkit::supervision::a_panicking_task_fails;
use tronpay_testkit::{TestBus, TestDb, eventually, http_client};

/// A watcher process on `db`, `bus` and `node`, its health endpoint on a
/// free port.
fn start_watcher(name: &str, db: &TestDb, bus: &TestBus, node: &str, dir: &Path) -> ServiceProcess {
    let mut command = Command::new(env!("CARGO_BIN_EXE_tronpay-chain-watcher"));
    command
        .env("DATABASE_URL", db.url())
        .env("TRON_NODE_URL", node)
        .envs(bus.env())
        .env("WATCHER_BIND", "127.0.0.1:0")
        .env("INSTANCE_ID", name)
        .env("BLOCK_INTERVAL_MS", "100")
        .env("POLLING_INTERVAL_SECONDS", "1")
        // The test's chain moves only when the test mines: never stalled.
        .env("NODE_STALL_SECONDS", "3600")
        .env("RUST_LOG", "info");
    ServiceProcess::spawn(name, command, dir, "tronpay-chain-watcher health endpoint listening")
}

/// `GET /health`: the status code and the body; `None` when nothing answers.
async fn health(watcher: &ServiceProcess) -> Option<(u16, Value)> {
    let response = http_client()
        .get(format!("{}/health", watcher.url()))
        .send()
        .await
        .ok()?;
    let status = response.status().as_u16();
    Some((status, response.json().await.ok()?))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_scanner_that_cannot_record_a_payment_is_unhealthy_exits_non_zero_and_the_standby_takes_over() {
    let db = TestDb::new().await;
    let bus = TestBus::new();
    let sandbox = Sandbox::start(SandboxConfig {
        solid_lag: 2,
        ..SandboxConfig::ephemeral()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let sql = db.client().await;

    let mut scanner = start_watcher("watcher-a", &db, &bus, &sandbox.url(), dir.path());
    eventually(Duration::from_secs(30), "the first watcher to scan", || async {
        let (status, body) = health(&scanner).await?;
        (status == 200 && body["leader"] == true && body["chain"]["cursor_block"].is_i64()).then_some(())
    })
    .await;
    let mut standby = start_watcher("watcher-b", &db, &bus, &sandbox.url(), dir.path());
    eventually(Duration::from_secs(30), "the second watcher to stand by", || async {
        let (status, body) = health(&standby).await?;
        (status == 200 && body["leader"] == false).then_some(())
    })
    .await;

    // A payment waits on an address.
    let address = TronAddress::from_evm_bytes([0x5a; 20]);
    sql.execute(
        "INSERT INTO payments (id, wallet_address, expected_amount_usdt, callback_url, order_id, \
         last_checked_timestamp, expires_at) \
         VALUES ('payment-1', $1, 12.5, 'https://shop.example.com/hook', 'order-1', 0, \
         (now() AT TIME ZONE 'utc') + interval '1 hour')",
        &[&address.to_string()],
    )
    .await
    .unwrap();
    // The table transfers are recorded in goes away under the running
    // scanner (a botched migration, an operator's mistake): retrying cannot
    // cure that.
    sql.batch_execute("ALTER TABLE transfers RENAME TO transfers_gone")
        .await
        .unwrap();
    // The payment is paid and its block becomes final: it must be recorded.
    let paid = sandbox.transfer(address, "12.5".parse().unwrap()).unwrap();
    sandbox.mine(3).unwrap();

    // The scanner cannot record it. Its health says so, naming the failure…
    let body = eventually(
        Duration::from_secs(60),
        "the failed scanner's /health to answer 503",
        || async {
            let (status, body) = health(&scanner).await?;
            (status == 503).then_some(body)
        },
    )
    .await;
    assert_eq!(body["status"], "unhealthy", "{body}");
    assert_eq!(body["failure"]["task"], "scanner", "{body}");
    let reason = body["failure"]["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("\"transfers\" does not exist"), "{body}");
    assert_eq!(body["leader"], false, "{body}");

    // The operator puts the table back.
    sql.batch_execute("ALTER TABLE transfers_gone RENAME TO transfers")
        .await
        .unwrap();

    // …and the process exits non-zero, so that the orchestrator restarts it.
    let status = tokio::task::block_in_place(|| scanner.exited_within(Duration::from_secs(60)));
    assert!(!status.success(), "exit status {status}: {}", scanner.log_tail());
    let log = scanner.log();
    assert!(log.contains("a background task ended"), "{log}");
    assert!(log.contains("\"transfers\" does not exist"), "{log}");

    // The standby took the scanner role over and records the payment.
    let txid = paid.txid.to_string();
    eventually(
        Duration::from_secs(60),
        "the standby to record the payment's transfer",
        || async {
            let row = sql
                .query_opt(
                    "SELECT 1 FROM transfers WHERE txid = $1 AND status = 'confirmed'",
                    &[&txid],
                )
                .await
                .unwrap();
            row.map(|_| ())
        },
    )
    .await;
    let (status, body) = health(&standby).await.unwrap();
    assert_eq!(
        (status, &body["status"], &body["leader"]),
        (200, &"healthy".into(), &true.into()),
        "{body}"
    );

    let status = standby.terminate_within(Duration::from_secs(15));
    assert!(status.success(), "exit status {status}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_panicking_task_makes_the_watcher_unhealthy_and_run_return_the_failure() {
    let sandbox = Sandbox::start(SandboxConfig::ephemeral()).await.unwrap();
    a_panicking_task_fails(async |db, bus| {
        let watcher = WatcherSettings {
            tron_node_url: sandbox.url(),
            watcher_bind: "127.0.0.1:0".into(),
            node_stall_seconds: 3_600,
            ..WatcherSettings::default()
        };
        let config = tronpay_chain_watcher::Config {
            service: watcher,
            db,
            bus,
        };
        tronpay_chain_watcher::start(config).unwrap()
    })
    .await;
}

//! The `tronpay-api` binary: configuration errors name the setting, and
//! SIGTERM stops it cleanly.

// Integration tests: a failed step should stop the test loudly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;
use std::time::Duration;

use tronpay_testkit::TestDb;
use tronpay_testkit::process::{ServiceProcess, assert_refused, service_command};

fn api() -> Command {
    service_command(env!("CARGO_BIN_EXE_tronpay-api"))
}

#[test]
fn bad_settings_are_refused_at_start_naming_the_variable() {
    assert_refused(
        api,
        &[
            ("PAYMENT_TTL_SECONDS", "abc", "PAYMENT_TTL_SECONDS is invalid"),
            ("PAYMENT_TTL_SECONDS", "5", "PAYMENT_TTL_SECONDS must be between"),
            ("DB_POOL_SIZE", "1", "DB_POOL_SIZE must be between 2 and 1000"),
            (
                "DB_MAX_OVERFLOW",
                "18446744073709551615",
                "DB_MAX_OVERFLOW must be at most 1000",
            ),
            ("BIND", "nowhere", "BIND must be an address and port"),
            (
                "DATABASE_URL",
                "mysql:://x",
                "DATABASE_URL is not a valid PostgreSQL URL",
            ),
            ("CALLBACK_ALLOW_PRIVATE", "maybe", "CALLBACK_ALLOW_PRIVATE is invalid"),
            ("ADDRESS_MODE", "xpub", "ADDRESS_MODE=xpub needs XPUB"),
            (
                "ADDRESS_MODE",
                "sometimes",
                "ADDRESS_MODE must be given, xpub, pool or unique_amount",
            ),
            (
                "ADDRESS_MODE",
                "unique_amount",
                "ADDRESS_MODE=unique_amount needs RECEIVE_ADDRESS",
            ),
        ],
    );
}

#[test]
fn a_config_file_is_read_and_the_environment_overrides_it() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tronpay.toml");
    std::fs::write(&file, "payment_ttl_seconds = 5\n").unwrap();
    let output = api().arg("--config").arg(&file).output().unwrap();
    assert!(String::from_utf8_lossy(&output.stderr).contains("PAYMENT_TTL_SECONDS must be between"));
    let output = api()
        .arg("--config")
        .arg(dir.path().join("missing.toml"))
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&output.stderr).contains("missing.toml does not exist"));
    // With a valid value in the environment the bad file value is overridden,
    // and the next setting checked (a bad BIND) is reported instead.
    let output = api()
        .arg("--config")
        .arg(&file)
        .env("PAYMENT_TTL_SECONDS", "600")
        .env("BIND", "x")
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("BIND must be"),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_stops_the_service_cleanly() {
    let db = TestDb::new().await;
    let dir = tempfile::tempdir().unwrap();
    let mut command = api();
    command.env("DATABASE_URL", db.url()).env("BIND", "127.0.0.1:0");
    let mut process = ServiceProcess::spawn("api", command, dir.path(), "tronpay-api listening");
    let port = process.port;
    let health = tronpay_testkit::http_client()
        .get(format!("http://127.0.0.1:{port}/health"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);

    let status = process.terminate_within(Duration::from_secs(10));
    assert!(status.success(), "exit status {status}");
    let log = process.log();
    assert!(log.contains("tronpay-api stopped"), "{log}");
}

#[tokio::test(flavor = "multi_thread")]
async fn every_log_line_of_a_request_carries_its_request_id() {
    let db = TestDb::new().await;
    let key = db.api_key("shop", &["payments:write"]).await;
    let dir = tempfile::tempdir().unwrap();
    let mut command = api();
    command
        .env("DATABASE_URL", db.url())
        .env("BIND", "127.0.0.1:0")
        .env("RUST_LOG", "info");
    let mut process = ServiceProcess::spawn("api", command, dir.path(), "tronpay-api listening");
    let response = tronpay_testkit::http_client()
        .post(format!("http://127.0.0.1:{}/v1/payments", process.port))
        .bearer_auth(&key)
        .header("x-request-id", "trace-me-42")
        .header("content-type", "application/json")
        .body(r#"{"order_id":"o-1","amount":"1.5","address":"TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    assert_eq!(response.headers()["x-request-id"], "trace-me-42");
    let status = process.terminate_within(Duration::from_secs(10));
    assert!(status.success(), "exit status {status}");
    let log = process.log();
    let lines: Vec<&str> = log.lines().filter(|line| line.contains("trace-me-42")).collect();
    // The handler's own line and the access-log line, both with the id.
    assert!(lines.iter().any(|line| line.contains("payment created")), "{log}");
    assert!(lines.iter().any(|line| line.contains("POST /v1/payments 201")), "{log}");
    assert!(
        log.lines()
            .filter(|line| line.contains("payment created"))
            .all(|line| line.contains("trace-me-42")),
        "{log}"
    );
}

//! The `tronpay-sandbox` binary: flags, readiness, SIGTERM.

// Integration tests: a failed step should stop the test loudly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use tronpay_testkit::http_client;
use tronpay_testkit::process::ServiceProcess;

#[tokio::test]
async fn the_binary_serves_its_flags_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let mut process = ServiceProcess::start(
        "sandbox",
        Path::new(env!("CARGO_BIN_EXE_tronpay-sandbox")),
        &[
            "--bind",
            "127.0.0.1:0",
            "--block-ms",
            "0",
            "--solid-lag",
            "1",
            "--seed",
            "5",
            "--start-height",
            "10",
        ],
        &[],
        dir.path(),
        "sandbox node listening",
    );
    let url = format!("{}/sandbox/status", process.url());
    let status: serde_json::Value = http_client().get(&url).send().await.unwrap().json().await.unwrap();
    assert_eq!(status["seed"], 5);
    assert_eq!(status["head"], 10);
    assert_eq!(status["solid_lag"], 1);
    assert_eq!(status["block_ms"], 0);

    let exit = process.terminate_within(Duration::from_secs(10));
    assert!(exit.success(), "{exit:?}");
}

#[test]
fn a_bad_flag_is_refused_by_name() {
    let output = Command::new(env!("CARGO_BIN_EXE_tronpay-sandbox"))
        .args(["--usdt-contract", "TYPG8VeuoVAh2hP7Vfw6ww7vK98nvXXXUs"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--usdt-contract"), "{stderr}");
}

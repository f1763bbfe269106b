//! The `tronpay-sandbox` binary: flags, readiness, SIGTERM.

// Integration tests: a failed step should stop the test loudly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Command, Stdio};
use std::time::Duration;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test]
async fn the_binary_serves_its_flags_and_stops_on_sigterm() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let port = free_port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_tronpay-sandbox"))
        .args([
            "--bind",
            &format!("127.0.0.1:{port}"),
            "--block-ms",
            "0",
            "--solid-lag",
            "1",
            "--seed",
            "5",
            "--start-height",
            "10",
        ])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let http = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{port}/sandbox/status");
    let mut status = None;
    for _ in 0..200 {
        if let Ok(response) = http.get(&url).send().await {
            status = Some(response.json::<serde_json::Value>().await.unwrap());
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let status = status.expect("the sandbox never answered");
    assert_eq!(status["seed"], 5);
    assert_eq!(status["head"], 10);
    assert_eq!(status["solid_lag"], 1);
    assert_eq!(status["block_ms"], 0);

    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let mut exit = None;
    for _ in 0..200 {
        if let Some(code) = child.try_wait().unwrap() {
            exit = Some(code);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let exit = exit.unwrap_or_else(|| {
        let _ = child.kill();
        panic!("the sandbox did not stop on SIGTERM");
    });
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

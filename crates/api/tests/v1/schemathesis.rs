//! schemathesis (the property-based API tester, from PyPI) against
//! `/openapi.json` with a key of every scope: every operation's examples,
//! coverage cases, fuzzed and stateful (create → read/cancel/…) requests,
//! checked for server errors and for answers that break the document
//! (status codes, content types, headers, bodies), for accepted bad input
//! and ignored authentication. `make test` installs it into `.local/venv`.
//!
//! `positive_data_acceptance` is left out: the document cannot say
//! everything the API checks (opaque cursors, `expires_in` xor
//! `expires_at`, a payment id that exists), so a schema-valid request may
//! rightly get a 4xx.

use std::path::PathBuf;
use std::process::Command;

use super::super::TestApp;

/// Examples per operation and phase (bounded: the run takes seconds).
const MAX_EXAMPLES: &str = "25";

fn schemathesis() -> PathBuf {
    let candidates = [
        std::env::var_os("TRONPAY_SCHEMATHESIS").map(PathBuf::from),
        std::env::var_os("TRONPAY_PYTHON")
            .map(PathBuf::from)
            .and_then(|python| python.parent().map(|bin| bin.join("schemathesis"))),
        Some(PathBuf::from(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../.local/venv/bin/schemathesis"
        ))),
    ];
    candidates
        .into_iter()
        .flatten()
        .find(|path| path.is_file())
        .expect("schemathesis is not installed: `make test` installs it into .local/venv")
}

#[tokio::test(flavor = "multi_thread")]
async fn schemathesis_finds_no_server_error_and_no_answer_against_the_document() {
    let (db, app) = TestApp::fresh(|_| {}).await;
    let key = db
        .api_key("schemathesis", &["payments:read", "payments:write", "operator"])
        .await;
    let dir = tempfile::tempdir().unwrap();
    let binary = schemathesis();
    let url = format!("{}/openapi.json", app.base);
    let authorization = format!("Authorization: Bearer {key}");
    let output = tokio::task::spawn_blocking(move || {
        Command::new(binary)
            .current_dir(dir.path())
            .args(["run", &url, "-H", &authorization])
            .args(["--checks", "all", "--exclude-checks", "positive_data_acceptance"])
            .args(["--max-examples", MAX_EXAMPLES, "--seed", "1", "--no-color"])
            .args(["--generation-database", "none", "--request-timeout", "10"])
            .env("SCHEMATHESIS_TELEMETRY", "false")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let report = String::from_utf8_lossy(&output.stdout);
    let summary = report
        .lines()
        .find(|line| line.contains(" generated, "))
        .unwrap_or_default()
        .trim()
        .to_owned();
    println!("schemathesis: {summary}");
    assert!(
        output.status.success(),
        "schemathesis failed:\n{report}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let generated: u64 = summary
        .split_whitespace()
        .next()
        .and_then(|count| count.parse().ok())
        .unwrap_or_else(|| panic!("no case count in:\n{report}"));
    assert!(generated >= 500, "only {generated} cases:\n{report}");
    assert!(summary.contains(&format!("{generated} passed")), "{summary}");
}

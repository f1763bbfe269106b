//! `tronpay db …` end to end: the real binary against a real PostgreSQL.

// Integration tests: a failed step should stop the test loudly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use tronpay_testkit::{PAYMENT_STATUS_FIELDS, TestDb};

/// `tronpay args` with `DATABASE_URL` set, in `dir`, its output captured.
fn command(database_url: &str, dir: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_tronpay"));
    command
        .args(args)
        .current_dir(dir)
        .env("DATABASE_URL", database_url)
        .env_remove("TRONPAY_CONFIG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

/// Runs `tronpay` with `DATABASE_URL` set, in `dir`, feeding `stdin`.
fn tronpay(database_url: &str, dir: &Path, args: &[&str], stdin: &str) -> Output {
    let mut child = command(database_url, dir, args)
        .stdin(Stdio::piped())
        .spawn()
        .expect("run tronpay");
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

/// [`tronpay`] with nothing on stdin, which must succeed.
fn tronpay_ok(database_url: &str, dir: &Path, args: &[&str]) -> Output {
    let output = tronpay(database_url, dir, args, "");
    assert!(output.status.success(), "{}", stderr(&output));
    output
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// A failure is one clear line on stderr, a non-zero exit, and no panic.
fn assert_clean_failure(output: &Output, expected: &str) {
    let text = stderr(output);
    assert!(
        !output.status.success(),
        "expected a failure, got success: {}",
        stdout(output)
    );
    assert!(text.contains(expected), "stderr should mention {expected:?}: {text}");
    assert!(!text.contains("panicked"), "{text}");
    assert_eq!(text.trim_end().lines().count(), 1, "one line: {text}");
}

async fn insert_payments(db: &TestDb, count: i64) {
    db.client()
        .await
        .execute(
            "INSERT INTO payments (id, wallet_address, expected_amount_usdt, callback_url, order_id, status, created_at, \
             expires_at, last_checked_timestamp, transaction_hash, received_amount_usdt, completed_at, \
             callback_attempts, last_callback_attempt, callback_success) \
             SELECT 'p-' || n, 'TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t', (n % 1000000) + 0.000001 * (n % 7), \
                    'https://shop.example.com/hook/' || n, 'order-' || n, \
                    (CASE n % 3 WHEN 0 THEN 'pending' WHEN 1 THEN 'completed' ELSE 'expired' END)::payment_status, \
                    timestamp '2026-01-01' + n * interval '1 second' + interval '0.123456 second', \
                    timestamp '2026-01-02' + n * interval '1 second', 1767225600000 + n, \
                    CASE WHEN n % 3 = 1 THEN md5(n::text) || md5(n::text) END, \
                    CASE WHEN n % 3 = 1 THEN (n % 1000000) + 0.000001 * (n % 7) END, \
                    CASE WHEN n % 3 = 1 THEN timestamp '2026-01-01 00:10' + n * interval '1 second' END, \
                    (n % 5)::int, \
                    CASE WHEN n % 5 > 0 THEN timestamp '2026-01-01 00:20' + n * interval '1.000001 second' END, \
                    n % 5 = 2 \
             FROM generate_series(1, $1::bigint) AS n",
            &[&count],
        )
        .await
        .unwrap();
}

/// Every payment as JSON text, for comparing whole tables.
async fn dump(db: &TestDb) -> Vec<String> {
    db.client()
        .await
        .query("SELECT row_to_json(p)::text FROM payments p ORDER BY id", &[])
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn create_tables_is_idempotent_and_test_reports_the_schema() {
    let db = TestDb::empty().await;
    let dir = tempfile::tempdir().unwrap();
    let output = tronpay_ok(db.url(), dir.path(), &["db", "test"]);
    assert!(stdout(&output).contains("Database connection successful!"));
    assert!(stdout(&output).contains("tables: missing: run `tronpay db create-tables`"));

    let output = tronpay_ok(db.url(), dir.path(), &["db", "create-tables"]);
    assert!(stdout(&output).contains("created successfully"));
    let output = tronpay(db.url(), dir.path(), &["db", "create-tables"], "");
    assert!(output.status.success());
    assert!(stdout(&output).contains("up to date"));

    let output = tronpay(db.url(), dir.path(), &["db", "test"], "");
    assert!(
        stdout(&output).contains("tables: present, schema up to date"),
        "{}",
        stdout(&output)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn grants_are_printed_for_a_plain_role_name_and_refused_for_another() {
    let db = TestDb::new().await;
    let dir = tempfile::tempdir().unwrap();
    let output = tronpay_ok(db.url(), dir.path(), &["db", "grants", "--role", "tronpay_app"]);
    let text = stdout(&output);
    for expected in [
        "GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO \"tronpay_app\";",
        "REVOKE INSERT, UPDATE, DELETE ON __diesel_schema_migrations FROM \"tronpay_app\";",
        "ALTER DEFAULT PRIVILEGES FOR ROLE \"postgres\" IN SCHEMA public",
    ] {
        assert!(text.contains(expected), "{expected} in {text}");
    }
    assert!(!text.contains("TRUNCATE") && !text.contains("CREATE"), "{text}");
    let output = tronpay(
        db.url(),
        dir.path(),
        &["db", "grants", "--role", "app; DROP TABLE payments"],
        "",
    );
    assert_clean_failure(&output, "a role name is 1 to 63 lower-case letters");
    // Applying needs the role to exist.
    let output = tronpay(
        db.url(),
        dir.path(),
        &["db", "grants", "--role", "no_such_role_here", "--apply"],
        "",
    );
    assert!(!output.status.success());
    assert!(stderr(&output).contains("no_such_role_here"), "{}", stderr(&output));
}

#[tokio::test(flavor = "multi_thread")]
async fn stats_counts_payments_by_status() {
    let db = TestDb::new().await;
    insert_payments(&db, 30).await;
    let dir = tempfile::tempdir().unwrap();
    let output = tronpay_ok(db.url(), dir.path(), &["db", "stats"]);
    let text = stdout(&output);
    for line in [
        "Total Payments: 30",
        "Pending: 10",
        "Completed: 10",
        "Failed: 0",
        "Expired: 10",
        "Recent Payments:",
        "order-30",
    ] {
        assert!(text.contains(line), "{line} in {text}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn cleanup_logs_deletes_only_old_rows() {
    let db = TestDb::new().await;
    insert_payments(&db, 3).await;
    db.client()
        .await
        .batch_execute(
            "INSERT INTO payment_logs (payment_id, event_type, message, created_at) VALUES \
             ('p-1', 'created', 'old', (now() AT TIME ZONE 'utc') - interval '40 days'), \
             ('p-2', 'created', 'old', (now() AT TIME ZONE 'utc') - interval '31 days'), \
             ('p-3', 'created', 'recent', (now() AT TIME ZONE 'utc') - interval '29 days'), \
             ('p-3', 'checking', 'new', now() AT TIME ZONE 'utc')",
        )
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let output = tronpay_ok(db.url(), dir.path(), &["db", "cleanup-logs", "--days", "30"]);
    assert!(
        stdout(&output).contains("Cleaned up 2 old log entries"),
        "{}",
        stdout(&output)
    );
    let left: Vec<String> = db.column("SELECT message FROM payment_logs ORDER BY id").await;
    assert_eq!(left, ["recent", "new"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn export_reset_import_gives_back_the_same_rows() {
    let db = TestDb::new().await;
    insert_payments(&db, 2_500).await;
    let before = dump(&db).await;
    let dir = tempfile::tempdir().unwrap();

    let output = tronpay_ok(db.url(), dir.path(), &["db", "export", "--file", "backup.json"]);
    assert!(stdout(&output).contains("Exported 2500 payments to backup.json"));
    assert!(!dir.path().join("backup.json.partial").exists());
    let export: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("backup.json")).unwrap()).unwrap();
    assert_eq!(export["total_payments"], 2500);
    assert!(export["export_date"].is_string());
    let first = &export["payments"][0];
    let callback_fields = [
        "callback_url",
        "last_checked_timestamp",
        "callback_attempts",
        "last_callback_attempt",
        "callback_success",
    ];
    for field in PAYMENT_STATUS_FIELDS.into_iter().chain(callback_fields) {
        assert!(first.get(field).is_some(), "exported payments carry {field}");
    }

    tronpay_ok(db.url(), dir.path(), &["db", "reset", "--yes"]);
    assert!(dump(&db).await.is_empty());

    let output = tronpay_ok(db.url(), dir.path(), &["db", "import", "--file", "backup.json"]);
    assert!(
        stdout(&output).contains("Imported 2500 payments"),
        "{}",
        stdout(&output)
    );
    assert_eq!(dump(&db).await, before, "the rows came back identical");

    // Importing again changes nothing.
    let output = tronpay_ok(db.url(), dir.path(), &["db", "import", "--file", "backup.json"]);
    assert!(
        stdout(&output).contains("Imported 0 payments (2500 already present"),
        "{}",
        stdout(&output)
    );
    assert_eq!(dump(&db).await, before);
    let imported_logs: i64 = db
        .client()
        .await
        .query_one("SELECT count(*) FROM payment_logs WHERE event_type = 'imported'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(imported_logs, 2500, "one log row per imported payment, not per attempt");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_original_services_export_imports_exactly() {
    let db = TestDb::new().await;
    let dir = tempfile::tempdir().unwrap();
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/original_export.json");
    let output = tronpay_ok(
        db.url(),
        dir.path(),
        &["db", "import", "--file", fixture.to_str().unwrap()],
    );
    assert!(stdout(&output).contains("Imported 4 payments"), "{}", stdout(&output));
    let rows = db
        .client()
        .await
        .query(
            "SELECT order_id, expected_amount_usdt::text, received_amount_usdt::text, status::text, \
             to_char(created_at, 'YYYY-MM-DD HH24:MI:SS.US'), to_char(expires_at, 'YYYY-MM-DD HH24:MI:SS.US'), \
             callback_success, callback_attempts FROM payments ORDER BY order_id",
            &[],
        )
        .await
        .unwrap();
    let rows: Vec<String> = rows
        .iter()
        .map(|row| {
            format!(
                "{} {} {:?} {} {} {} {} {}",
                row.get::<_, String>(0),
                row.get::<_, String>(1),
                row.get::<_, Option<String>>(2),
                row.get::<_, String>(3),
                row.get::<_, String>(4),
                row.get::<_, String>(5),
                row.get::<_, bool>(6),
                row.get::<_, i32>(7)
            )
        })
        .collect();
    assert_eq!(
        rows,
        [
            "legacy-1 12.340000 Some(\"12.340000\") completed 2025-03-01 10:00:00.123456 2025-03-02 10:00:00.123456 true 1",
            "legacy-2 999999.999999 None pending 2025-03-02 11:00:00.000001 2025-03-03 11:00:00.000001 false 0",
            "legacy-3 0.010000 None expired 2025-03-03 12:00:00.500000 2025-03-04 12:00:00.500000 false 0",
            "legacy-4 1000000.000000 Some(\"1000000.000000\") completed 2025-03-04 13:00:00.000000 2025-03-05 13:00:00.000000 false 3",
        ]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn import_reports_bad_rows_and_keeps_the_good_ones() {
    let db = TestDb::new().await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("mixed.json"),
        r#"{"total_payments": 2, "payments": [
            {"id": "good", "wallet_address": "TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t", "expected_amount_usdt": 5, "order_id": "g",
             "status": "pending", "created_at": 1764000000, "callback_url": "https://shop.example.com/h"},
            {"id": "bad", "wallet_address": "TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t", "expected_amount_usdt": 1.1234567, "order_id": "b",
             "status": "pending", "created_at": 1764000000, "callback_url": "https://shop.example.com/h"}
        ]}"#,
    )
    .unwrap();
    let output = tronpay(db.url(), dir.path(), &["db", "import", "--file", "mixed.json"], "");
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("payments[1] (id \"bad\"): expected_amount_usdt 1.1234567"),
        "{}",
        stderr(&output)
    );
    assert!(stdout(&output).contains("Imported 1 payments"));

    std::fs::write(dir.path().join("garbage.json"), "[1, 2, 3]").unwrap();
    let output = tronpay(db.url(), dir.path(), &["db", "import", "--file", "garbage.json"], "");
    assert!(!output.status.success());
    assert!(stderr(&output).contains("not a payments export"), "{}", stderr(&output));
    assert!(!stderr(&output).contains("panicked"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_row_with_a_nul_is_reported_without_losing_its_batch() {
    let db = TestDb::new().await;
    let dir = tempfile::tempdir().unwrap();
    let row = |id: &str, order: &str| {
        format!(
            r#"{{"id": "{id}", "wallet_address": "TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t", "expected_amount_usdt": 5,
                "order_id": "{order}", "status": "pending", "created_at": 1764000000,
                "callback_url": "https://shop.example.com/h"}}"#
        )
    };
    let rows = [row("one", "a"), row("two\\u0000", "b"), row("three", "c\\u0000")].join(",");
    std::fs::write(dir.path().join("nul.json"), format!(r#"{{"payments": [{rows}]}}"#)).unwrap();
    let output = tronpay(db.url(), dir.path(), &["db", "import", "--file", "nul.json"], "");
    assert!(!output.status.success());
    assert!(stdout(&output).contains("Imported 1 payments"), "{}", stdout(&output));
    assert!(
        stderr(&output).contains(r#"payments[1] (id "two\0"): id contains control characters"#),
        "{}",
        stderr(&output)
    );
    assert!(
        stderr(&output).contains("payments[2]") && stderr(&output).contains("order_id contains control characters"),
        "{}",
        stderr(&output)
    );
    assert_eq!(dump(&db).await.len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_original_services_tables_are_not_adopted_in_place() {
    let db = TestDb::empty().await;
    db.client()
        .await
        .batch_execute(
            "CREATE TYPE paymentstatus AS ENUM ('PENDING', 'COMPLETED', 'FAILED', 'EXPIRED'); \
             CREATE TABLE payments (id VARCHAR(36) PRIMARY KEY, status paymentstatus NOT NULL)",
        )
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let output = tronpay(db.url(), dir.path(), &["db", "create-tables"], "");
    assert_clean_failure(&output, "not created by tronpay");
    assert!(stderr(&output).contains("tronpay db import"), "{}", stderr(&output));
}

#[tokio::test(flavor = "multi_thread")]
async fn cleanup_days_out_of_range_is_a_usage_error() {
    let db = TestDb::new().await;
    let dir = tempfile::tempdir().unwrap();
    for days in ["100000000", "4294967295", "-1", "ten"] {
        let output = tronpay(
            db.url(),
            dir.path(),
            &["db", "cleanup-logs", &format!("--days={days}")],
            "",
        );
        assert!(!output.status.success(), "{days}");
        assert!(stderr(&output).contains("--days"), "{days}: {}", stderr(&output));
        assert!(!stderr(&output).contains("panicked"), "{}", stderr(&output));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn reset_asks_for_yes() {
    let db = TestDb::new().await;
    insert_payments(&db, 5).await;
    let dir = tempfile::tempdir().unwrap();

    let output = tronpay(db.url(), dir.path(), &["db", "reset"], "no\n");
    assert!(!output.status.success());
    assert!(stdout(&output).contains("Type 'yes' to confirm"));
    assert_eq!(dump(&db).await.len(), 5, "nothing was deleted");

    let output = tronpay(db.url(), dir.path(), &["db", "reset"], "");
    assert!(!output.status.success(), "no answer is no confirmation");
    assert_eq!(dump(&db).await.len(), 5);

    let output = tronpay(db.url(), dir.path(), &["db", "reset"], "yes\n");
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(dump(&db).await.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn database_failures_are_one_clear_line() {
    let dir = tempfile::tempdir().unwrap();
    // Nothing listens on port 1.
    let output = tronpay(
        "postgres://postgres@127.0.0.1:1/tronpay",
        dir.path(),
        &["db", "stats"],
        "",
    );
    assert_clean_failure(
        &output,
        "cannot reach PostgreSQL at 127.0.0.1:1/tronpay: connection refused",
    );

    let output = tronpay("not a url", dir.path(), &["db", "test"], "");
    assert_clean_failure(&output, "DATABASE_URL is not a valid PostgreSQL URL");

    let server = tronpay_testkit::server_url();
    let mut missing = server.clone();
    missing.set_path("/tronpay_test_this_database_does_not_exist");
    let output = tronpay(missing.as_str(), dir.path(), &["db", "test"], "");
    assert_clean_failure(
        &output,
        "database \"tronpay_test_this_database_does_not_exist\" does not exist",
    );

    let db = TestDb::empty().await;
    for command in ["stats", "export", "cleanup-logs"] {
        let output = tronpay(db.url(), dir.path(), &["db", command], "");
        assert_clean_failure(
            &output,
            "tables are missing or incomplete: run `tronpay db create-tables`",
        );
    }

    // Roles are cluster-wide: give each its own name and drop it afterwards.
    let client = db.client().await;
    let suffix = uuid_suffix(db.name());
    let (busy, locked) = (format!("tronpay_busy_{suffix}"), format!("tronpay_nologin_{suffix}"));
    client
        .batch_execute(&format!(
            "CREATE ROLE {busy} LOGIN CONNECTION LIMIT 0; CREATE ROLE {locked} NOLOGIN;"
        ))
        .await
        .unwrap();
    let as_role = |role: &str| {
        let mut url = url::Url::parse(db.url()).unwrap();
        url.set_username(role).unwrap();
        url.to_string()
    };
    let too_many = tronpay(&as_role(&busy), dir.path(), &["db", "test"], "");
    let refused = tronpay(&as_role(&locked), dir.path(), &["db", "test"], "");
    client
        .batch_execute(&format!("DROP ROLE {busy}; DROP ROLE {locked};"))
        .await
        .unwrap();
    assert_clean_failure(&too_many, "too many connections");
    assert_clean_failure(&refused, &format!("refused user \"{locked}\""));
}

fn uuid_suffix(name: &str) -> &str {
    name.trim_start_matches(tronpay_testkit::TEST_DATABASE_PREFIX)
}

/// Runs `tronpay` and returns its output and its own peak resident memory
/// (VmHWM, KiB), read from /proc while it runs (the high-water mark only grows).
fn tronpay_with_peak_memory(database_url: &str, dir: &Path, args: &[&str]) -> (Output, u64) {
    let child = command(database_url, dir, args).spawn().expect("run tronpay");
    let status_file = format!("/proc/{}/status", child.id());
    let pid = child.id();
    let waiter = std::thread::spawn(move || child.wait_with_output().unwrap());
    let mut peak = 0;
    while !waiter.is_finished() {
        if let Ok(status) = std::fs::read_to_string(&status_file) {
            let hwm = status
                .lines()
                .find_map(|line| line.strip_prefix("VmHWM:"))
                .and_then(|value| value.trim().trim_end_matches("kB").trim().parse::<u64>().ok());
            peak = peak.max(hwm.unwrap_or(0));
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    assert!(peak > 0, "could not read the memory of pid {pid}");
    (waiter.join().unwrap(), peak)
}

#[tokio::test(flavor = "multi_thread")]
async fn export_memory_does_not_grow_with_the_table() {
    let small = TestDb::new().await;
    insert_payments(&small, 1_000).await;
    let large = TestDb::new().await;
    insert_payments(&large, 60_000).await;
    let dir = tempfile::tempdir().unwrap();

    let (output, small_peak) =
        tronpay_with_peak_memory(small.url(), dir.path(), &["db", "export", "--file", "small.json"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let (output, large_peak) =
        tronpay_with_peak_memory(large.url(), dir.path(), &["db", "export", "--file", "large.json"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let large_file_kib = std::fs::metadata(dir.path().join("large.json")).unwrap().len() / 1024;

    // Holding the 60,000 payments (a ~30 MB file) would add tens of MB; a
    // streamed export stays within a few MB of the small one.
    assert!(large_file_kib > 20_000, "the large export is {large_file_kib} KiB");
    assert!(
        large_peak.saturating_sub(small_peak) < 8 * 1024,
        "peak RSS grew from {small_peak} KiB to {large_peak} KiB for a {large_file_kib} KiB export"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn chain_status_and_unmatched_transfers_are_visible() {
    let db = TestDb::new().await;
    let dir = tempfile::tempdir().unwrap();
    let output = tronpay_ok(db.url(), dir.path(), &["chain", "status"]);
    assert!(stdout(&output).contains("has not started yet"));

    db.client()
        .await
        .batch_execute(
            "INSERT INTO chain_state (cursor_block, tip_block, head_block, head_block_time, final_block, polled_at, \
                                      last_error, last_error_at, block_interval_ms, node_stall_seconds) \
             VALUES (100, 102, 120, (now() AT TIME ZONE 'utc') - interval '2 minutes', 101, \
                     (now() AT TIME ZONE 'utc') - interval '2 minutes', 'http://node: HTTP 503', now(), 3000, 30); \
             INSERT INTO transfers (txid, log_index, block_number, block_time, from_address, to_address, amount_usdt, status, match_kind, applied_at) VALUES \
             (repeat('a', 64), 0, 99, now(), 'TWpZXLfsvVuQuJZLkdWNY7XY2teePqPpz7', 'TBA6CypYJizwA9XdC7Ubgc5F1bxrQ7SqPt', 5.5, 'confirmed', 'unmatched', now()), \
             (repeat('b', 64), 1, 100, now(), 'TWpZXLfsvVuQuJZLkdWNY7XY2teePqPpz7', 'TBA6CypYJizwA9XdC7Ubgc5F1bxrQ7SqPt', 7, 'confirmed', NULL, NULL);",
        )
        .await
        .unwrap();
    let output = tronpay(db.url(), dir.path(), &["chain", "status"], "");
    let text = stdout(&output);
    for expected in [
        "cursor (last final block processed): 100",
        // Two minutes without a successful poll: degraded, and the lag
        // counts the ~39 blocks made since the newest one seen.
        "chain:                               degraded: no successful poll of the node for 12",
        "lag (blocks):                        40",
        "HTTP 503",
    ] {
        assert!(text.contains(expected), "{expected} in {text}");
    }
    let output = tronpay(db.url(), dir.path(), &["chain", "transfers", "--unmatched"], "");
    let text = stdout(&output);
    assert!(
        text.contains(&"a".repeat(64)) && text.contains("5.5 USDT") && text.contains("unmatched"),
        "{text}"
    );
    assert!(!text.contains(&"b".repeat(64)), "{text}");
    let output = tronpay(db.url(), dir.path(), &["chain", "transfers"], "");
    assert!(stdout(&output).contains("not applied yet"));

    // A new chain (a restarted sandbox): forgetting the cursor needs a yes.
    let output = tronpay(db.url(), dir.path(), &["chain", "reset"], "");
    assert!(!output.status.success());
    assert!(
        stdout(&tronpay(db.url(), dir.path(), &["chain", "status"], ""))
            .contains("cursor (last final block processed): 100")
    );
    let output = tronpay(db.url(), dir.path(), &["chain", "reset", "--yes"], "");
    assert!(stdout(&output).contains("at block 100"), "{}", stdout(&output));
    assert!(stdout(&tronpay(db.url(), dir.path(), &["chain", "status"], "")).contains("has not started yet"));
}

#[tokio::test(flavor = "multi_thread")]
async fn webhook_secret_rotation_listing_and_retry() {
    let db = TestDb::new().await;
    let dir = tempfile::tempdir().unwrap();
    let output = tronpay(db.url(), dir.path(), &["webhooks", "secret"], "");
    assert!(
        stdout(&output).contains("generates one on its first start"),
        "{}",
        stdout(&output)
    );

    let output = tronpay_ok(db.url(), dir.path(), &["webhooks", "rotate-secret"]);
    let first = stdout(&output).lines().next().unwrap().to_owned();
    assert!(first.starts_with("whsec_"));
    let output = tronpay(db.url(), dir.path(), &["webhooks", "rotate-secret"], "");
    let second = stdout(&output).lines().next().unwrap().to_owned();
    let shown = stdout(&tronpay(db.url(), dir.path(), &["webhooks", "secret"], ""));
    // Newest first; the previous one still signs during the overlap.
    assert_eq!(shown.lines().collect::<Vec<_>>(), [second.as_str(), first.as_str()]);

    insert_payments(&db, 1).await;
    db.client()
        .await
        .batch_execute(
            "INSERT INTO webhook_deliveries (id, payment_id, event_type, webhook_id, payload, status, attempts, last_error) VALUES \
             ('00000000-0000-0000-0000-000000000001', 'p-1', 'payment.completed', 'msg_dead', '{}', 'dead', 9, 'HTTP 500'), \
             ('00000000-0000-0000-0000-000000000002', 'p-1', 'payment.late', 'msg_ok', '{}', 'delivered', 1, NULL)",
        )
        .await
        .unwrap();
    let listed = stdout(&tronpay(db.url(), dir.path(), &["webhooks", "list", "--dead"], ""));
    assert!(
        listed.contains("msg_dead") && listed.contains("HTTP 500") && !listed.contains("msg_ok"),
        "{listed}"
    );
    let output = tronpay_ok(db.url(), dir.path(), &["webhooks", "retry", "--all-dead"]);
    assert!(stdout(&output).contains("1 delivery queued again"));
    let rows = db
        .client()
        .await
        .query(
            "SELECT status, webhook_id FROM webhook_deliveries WHERE id = '00000000-0000-0000-0000-000000000001'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        (rows[0].get::<_, String>(0), rows[0].get::<_, String>(1)),
        ("pending".into(), "msg_dead".into())
    );
    let queued: i64 = db
        .client()
        .await
        .query_one(
            "SELECT count(*) FROM outbox WHERE routing_key = 'callback.due' AND published_at IS NULL",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(queued, 1, "a callback.due is waiting in the outbox");
    let output = tronpay(db.url(), dir.path(), &["webhooks", "retry", "--all-dead"], "");
    assert!(!output.status.success(), "nothing left to retry");
}

#[tokio::test(flavor = "multi_thread")]
async fn dead_letters_are_visible() {
    let bus = tronpay_testkit::TestBus::new();
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_tronpay"))
            .args(args)
            .current_dir(dir.path())
            .envs(bus.env())
            .output()
            .unwrap()
    };
    // Declare the topology and dead-letter one poison message.
    let connection = tronpay_bus::topology::connect(&bus.settings, "test").await.unwrap();
    let channel = connection.create_channel().await.unwrap();
    let dead = bus
        .settings
        .queue(tronpay_bus::topology::Queue::ApiPaymentDetected)
        .dead_letter();
    channel
        .basic_publish(
            bus.settings.dead_letter_exchange().as_str().into(),
            bus.settings
                .queue(tronpay_bus::topology::Queue::ApiPaymentDetected)
                .name
                .as_str()
                .into(),
            lapin::options::BasicPublishOptions::default(),
            b"{\"broken\": true}",
            lapin::BasicProperties::default().with_message_id("poison-1".into()),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    let output = run(&["bus", "dead-letters", "--show", "5"]);
    let text = stdout(&output);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(text.contains(&format!("{dead}: 1 message(s)")), "{text}");
    assert!(text.contains("poison-1") && text.contains("broken"), "{text}");
    // Peeking leaves it there.
    assert!(stdout(&run(&["bus", "dead-letters"])).contains(&format!("{dead}: 1 message(s)")));
    let _ = connection.close(200, "done".into()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn keys_are_created_once_stored_as_hashes_listed_and_revoked() {
    let db = TestDb::new().await;
    let dir = tempfile::tempdir().unwrap();
    let output = tronpay_ok(
        db.url(),
        dir.path(),
        &[
            "keys",
            "create",
            "--name",
            "shop backend",
            "--scopes",
            "payments:read,payments:write,payments:read",
        ],
    );
    let printed = stdout(&output);
    let key = printed.lines().next().unwrap().to_owned();
    let parsed = tronpay_domain::ApiKeyText::parse(&key).unwrap();
    assert!(printed.contains("shown only now"), "{printed}");

    // Only a hash is stored, and it is the hash of the printed key.
    let rows = db
        .client()
        .await
        .query("SELECT prefix, secret_hash, scopes FROM api_keys", &[])
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    let (prefix, hash, scopes): (String, String, Vec<String>) = (rows[0].get(0), rows[0].get(1), rows[0].get(2));
    assert_eq!(prefix, parsed.prefix());
    assert!(parsed.matches(&hash) && !key.contains(&hash) && hash.len() == 64);
    assert_eq!(scopes, ["payments:read", "payments:write"]);

    let listed = stdout(&tronpay_ok(db.url(), dir.path(), &["keys", "list"]));
    assert!(
        listed.contains(&format!("tpk_{prefix} \"shop backend\" payments:read,payments:write")),
        "{listed}"
    );
    assert!(listed.contains("last used never") && !listed.contains(&key), "{listed}");

    let revoked = stdout(&tronpay_ok(
        db.url(),
        dir.path(),
        &["keys", "revoke", &format!("tpk_{prefix}")],
    ));
    assert!(revoked.contains("revoked"), "{revoked}");
    assert!(stdout(&tronpay_ok(db.url(), dir.path(), &["keys", "list"])).contains("REVOKED"));
    let again = stdout(&tronpay_ok(db.url(), dir.path(), &["keys", "revoke", &key]));
    assert!(again.contains("already revoked"), "{again}");

    assert_clean_failure(
        &tronpay(
            db.url(),
            dir.path(),
            &["keys", "create", "--name", "x", "--scopes", "admin"],
            "",
        ),
        "unknown scope \"admin\"",
    );
    assert_clean_failure(
        &tronpay(db.url(), dir.path(), &["keys", "revoke", "tpk_00000000ff"], ""),
        "no API key tpk_00000000ff",
    );
    assert_clean_failure(
        &tronpay(db.url(), dir.path(), &["keys", "revoke", "nonsense!"], ""),
        "is not a key prefix",
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn admin_users_are_created_with_a_hashed_password_and_reset() {
    let db = TestDb::new().await;
    let dir = tempfile::tempdir().unwrap();
    let output = tronpay(
        db.url(),
        dir.path(),
        &["admin", "create-user", "alice"],
        "a long enough secret\n",
    );
    assert!(output.status.success(), "{}", stderr(&output));
    let hash: Vec<String> = db
        .column("SELECT password_hash FROM operators WHERE name = 'alice'")
        .await;
    assert!(hash[0].starts_with("$argon2id$") && !hash[0].contains("a long enough secret"));
    assert!(tronpay_domain::operator::verify_password(
        "a long enough secret",
        &hash[0]
    ));

    // Taken names, bad names and short passwords: one clear line, nothing written.
    for (args, stdin, said) in [
        (
            &["admin", "create-user", "alice"][..],
            "another long secret\n",
            "exists already",
        ),
        (
            &["admin", "create-user", "bad name"][..],
            "another long secret\n",
            "operator name",
        ),
        (
            &["admin", "create-user", "bob"][..],
            "short\n",
            "at least 12 characters",
        ),
        (
            &["admin", "reset-password", "nobody"][..],
            "another long secret\n",
            "no operator",
        ),
    ] {
        let output = tronpay(db.url(), dir.path(), args, stdin);
        assert!(
            !output.status.success() && stderr(&output).contains(said),
            "{args:?}: {}",
            stderr(&output)
        );
    }
    let names: Vec<String> = db.column("SELECT name FROM operators").await;
    assert_eq!(names, ["alice"]);

    // A reset changes the hash and ends alice's sessions.
    db.client()
        .await
        .batch_execute(
            "INSERT INTO operator_sessions (token_hash, operator_id, csrf_token, expires_at) \
             SELECT 'h', id, 'c', now() + interval '1 hour' FROM operators",
        )
        .await
        .unwrap();
    let output = tronpay(
        db.url(),
        dir.path(),
        &["admin", "reset-password", "alice"],
        "a new long secret!\n",
    );
    assert!(output.status.success(), "{}", stderr(&output));
    let hash: Vec<String> = db.column("SELECT password_hash FROM operators").await;
    assert!(tronpay_domain::operator::verify_password(
        "a new long secret!",
        &hash[0]
    ));
    let sessions: Vec<i64> = db.column("SELECT count(*) FROM operator_sessions").await;
    assert_eq!(sessions, [0]);
}

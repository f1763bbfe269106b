//! `tronpay addresses derive` against an independent implementation: the
//! first 20 receiving addresses of several account xpubs (the BIP39 test
//! mnemonic's among them) as bip_utils (PyPI, installed by `make test` into
//! `.local/venv`) derives them.

// Integration tests: a failed step should stop the test loudly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

fn python() -> PathBuf {
    [
        std::env::var_os("TRONPAY_PYTHON").map(PathBuf::from),
        Some(PathBuf::from(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../.local/venv/bin/python"
        ))),
    ]
    .into_iter()
    .flatten()
    .find(|path| path.is_file())
    .expect("no Python with bip_utils: `make test` installs it into .local/venv")
}

fn derive(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_tronpay"))
        .arg("addresses")
        .arg("derive")
        .args(args)
        .env_remove("XPUB")
        .env_remove("TRONPAY_CONFIG")
        .output()
        .unwrap()
}

#[test]
fn derived_addresses_match_bip_utils() {
    let reference = Command::new(python())
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/bip_utils_reference.py"))
        .output()
        .unwrap();
    assert!(
        reference.status.success(),
        "bip_utils reference failed (is it installed? `make test` does): {}",
        String::from_utf8_lossy(&reference.stderr)
    );
    let cases: Vec<Value> = serde_json::from_slice(&reference.stdout).unwrap();
    assert_eq!(cases.len(), 5);
    // The test mnemonic's first address, as TRON wallets show it.
    assert_eq!(cases[0]["addresses"][0], "TUEZSdKsoDHQMeZwihtdoBiN46zxhGWYdH");
    for case in &cases {
        let xpub = case["xpub"].as_str().unwrap();
        let output = derive(&["--count", "20", "--xpub", xpub]);
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        let lines: Vec<Vec<String>> = String::from_utf8(output.stdout)
            .unwrap()
            .lines()
            .map(|line| line.split('\t').map(str::to_owned).collect())
            .collect();
        assert_eq!(lines.len(), 20);
        for (index, line) in lines.iter().enumerate() {
            assert_eq!(line[0], index.to_string());
            assert_eq!(line[1], format!("m/44'/195'/0'/0/{index}"));
            assert_eq!(line[2], case["addresses"][index], "{} index {index}", case["mnemonic"]);
        }
    }
    // A later window gives the same addresses as the full list.
    let xpub = cases[1]["xpub"].as_str().unwrap();
    let output = String::from_utf8(derive(&["--start", "15", "--count", "5", "--xpub", xpub]).stdout).unwrap();
    let tail: Vec<&str> = output.lines().map(|line| line.split('\t').nth(2).unwrap()).collect();
    let expected: Vec<&str> = (15..20).map(|i| cases[1]["addresses"][i].as_str().unwrap()).collect();
    assert_eq!(tail, expected);
}

#[test]
fn private_keys_and_bad_input_are_refused_in_one_line() {
    for (args, expected) in [
        (
            vec![
                "--xpub",
                "xprv9s21ZrQH143K3QTDL4LXw2F7HEK3wJUD2nW2nRk4stbPy6cq3jPPqjiChkVvvNKmPGJxWUtg6LnF5kejMRNNU3TGtRBeJgk33yuGBxrMPHi",
            ],
            "extended private key",
        ),
        (vec!["--xpub", "xpub-nonsense"], "not an extended public key"),
        (vec![], "set XPUB or pass --xpub"),
        (
            vec!["--count", "0", "--xpub", "x"],
            "--count must be between 1 and 10000",
        ),
    ] {
        let output = derive(&args);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            !output.status.success() && stderr.contains(expected),
            "{args:?}: {stderr}"
        );
        assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
        assert!(!stderr.contains("panicked"));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn list_shows_each_address_handed_out_with_its_path_payment_and_what_it_received() {
    let db = tronpay_testkit::TestDb::new().await;
    let client = db.client().await;
    client
        .batch_execute(
            "INSERT INTO payments (id, wallet_address, expected_amount_usdt, callback_url, order_id, status, created_at, \
                                   expires_at, last_checked_timestamp, address_mode, derivation_account, \
                                   derivation_index) \
             VALUES ('4c1e0c9a-0000-4000-8000-000000000001', 'TUEZSdKsoDHQMeZwihtdoBiN46zxhGWYdH', 5, '', 'o-1', \
                     'completed', now() AT TIME ZONE 'utc', now() AT TIME ZONE 'utc', 0, 'xpub', '0011223344556677', \
                     0); \
             INSERT INTO free_derived_addresses (address, account, derivation_index) \
             VALUES ('TSeJkUh4Qv67VNFwY8LaAxERygNdy6NQZK', '0011223344556677', 1); \
             INSERT INTO transfers (txid, log_index, block_number, block_time, from_address, to_address, amount_usdt, \
                                    status, seen_at) \
             VALUES (repeat('a', 64), 0, 100, now() AT TIME ZONE 'utc', 'TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t', \
                     'TUEZSdKsoDHQMeZwihtdoBiN46zxhGWYdH', 5.5, 'confirmed', now() AT TIME ZONE 'utc'), \
                    (repeat('b', 64), 0, 101, now() AT TIME ZONE 'utc', 'TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t', \
                     'TUEZSdKsoDHQMeZwihtdoBiN46zxhGWYdH', 1.25, 'detected', now() AT TIME ZONE 'utc');",
        )
        .await
        .unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_tronpay"))
        .args(["addresses", "list"])
        .env("DATABASE_URL", db.url())
        .env_remove("TRONPAY_CONFIG")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let lines: Vec<&str> = stdout.lines().collect();
    // Only the address handed out; only final transfers count.
    assert_eq!(
        lines,
        [
            "TUEZSdKsoDHQMeZwihtdoBiN46zxhGWYdH\txpub\t0\tm/44'/195'/0'/0/0\tpayment 4c1e0c9a-0000-4000-8000-000000000001\treceived 5.5 USDT in 1 transfer(s)"
        ],
        "{stdout}"
    );
}

/// Runs `tronpay addresses …` against `db` with `stdin` as standard input.
fn addresses(db: &tronpay_testkit::TestDb, args: &[&str], stdin: &str) -> std::process::Output {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_tronpay"))
        .arg("addresses")
        .args(args)
        .env("DATABASE_URL", db.url())
        .env_remove("TRONPAY_CONFIG")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

/// `count` valid addresses from `start` on (derived from the test
/// mnemonic's account, so their checksums are right).
fn valid_addresses(start: u32, count: u32) -> Vec<String> {
    let output = derive(&[
        "--start",
        &start.to_string(),
        "--count",
        &count.to_string(),
        "--xpub",
        ABANDON_XPUB,
    ]);
    assert!(output.status.success());
    String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|line| line.split('\t').nth(2).unwrap().to_owned())
        .collect()
}

const ABANDON_XPUB: &str =
    "xpub6D1AabNHCupeiLM65ZR9UStMhJ1vCpyV4XbZdyhMZBiJXALQtmn9p42VTQckoHVn8WNqS7dqnJokZHAHcHGoaQgmv8D45oNUKx6DZMNZBCd";

#[tokio::test(flavor = "multi_thread")]
async fn import_fills_the_pool_all_or_nothing_and_list_shows_it() {
    let db = tronpay_testkit::TestDb::new().await;
    let client = db.client().await;
    let pool = valid_addresses(100, 4);
    let count = async || -> i64 {
        client
            .query_one("SELECT count(*) FROM receiving_addresses WHERE source = 'pool'", &[])
            .await
            .unwrap()
            .get(0)
    };

    // A bad checksum (last character changed) and a repeated line: named by
    // line, nothing imported.
    let mut broken = pool[1].clone();
    let last = broken.pop().unwrap();
    broken.push(if last == 'a' { 'b' } else { 'a' });
    let file = format!(
        "# pool\n{}\n\n{broken}\n{}\n  {}  \n{}\n",
        pool[0], pool[2], pool[0], pool[0]
    );
    let output = addresses(&db, &["import", "-"], &file);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains("3 problem(s) in the file; nothing was imported"),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("line 4: {broken:?} is not a TRON address")),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("line 6: {} is already on line 2", pool[0])),
        "{stderr}"
    );
    // A third copy names the first line too, not the second.
    assert!(
        stderr.contains(&format!("line 7: {} is already on line 2", pool[0])),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(count().await, 0);

    // From a file: comments, blank lines and spaces are fine.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pool.txt");
    std::fs::write(&path, format!("# three\n{}\n\n  {}\n{}\n", pool[0], pool[1], pool[2])).unwrap();
    let output = addresses(&db, &["import", path.to_str().unwrap()], "");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(
        String::from_utf8_lossy(&output.stdout).trim(),
        "Imported 3 address(es). The pool holds 3 address(es), 3 of them free."
    );

    // One known address refuses the whole file, and so does one derived
    // from the account key.
    client
        .batch_execute(&format!(
            "INSERT INTO free_derived_addresses (address, account, derivation_index) \
             VALUES ('{}', '0011223344556677', 0)",
            valid_addresses(0, 1)[0]
        ))
        .await
        .unwrap();
    let file = format!("{}\n{}\n{}\n", pool[3], pool[2], valid_addresses(0, 1)[0]);
    let output = addresses(&db, &["import", "-"], &file);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("2 address(es) tronpay knows already"), "{stderr}");
    assert!(
        stderr.contains(&format!("{} is in the pool already", pool[2])),
        "{stderr}"
    );
    assert!(stderr.contains("is derived from the account key"), "{stderr}");
    assert_eq!(count().await, 3);

    // A file of nothing, and a file that is not there.
    let output = addresses(&db, &["import", "-"], "# none\n\n");
    assert!(String::from_utf8_lossy(&output.stderr).contains("no address in the file"));
    let output = addresses(&db, &["import", "/nonexistent/pool.txt"], "");
    assert!(String::from_utf8_lossy(&output.stderr).contains("reading /nonexistent/pool.txt"));

    // list: pool addresses, free or lent, with the last payment of a free one.
    client
        .batch_execute(&format!(
            "INSERT INTO payments (id, wallet_address, expected_amount_usdt, callback_url, order_id, status, \
                                   created_at, expires_at, last_checked_timestamp, address_mode) \
             VALUES ('4c1e0c9a-0000-4000-8000-000000000002', '{a}', 5, '', 'o-2', 'expired', \
                     now() AT TIME ZONE 'utc' - interval '2 days', now() AT TIME ZONE 'utc' - interval '2 days', 0, 'pool'), \
                    ('4c1e0c9a-0000-4000-8000-000000000003', '{b}', 5, '', 'o-3', 'pending', \
                     now() AT TIME ZONE 'utc', now() AT TIME ZONE 'utc' + interval '1 day', 0, 'pool'); \
             UPDATE receiving_addresses SET payment_id = '4c1e0c9a-0000-4000-8000-000000000003', \
                    assigned_at = now() AT TIME ZONE 'utc' WHERE address = '{b}';",
            a = pool[0],
            b = pool[1]
        ))
        .await
        .unwrap();
    let output = addresses(&db, &["list"], "");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let mut lines: Vec<&str> = stdout.lines().collect();
    lines.sort_unstable();
    let mut expected = vec![
        format!(
            "{}\tpool\t-\t-\tfree (last payment 4c1e0c9a-0000-4000-8000-000000000002)\treceived 0 USDT in 0 transfer(s)",
            pool[0]
        ),
        format!(
            "{}\tpool\t-\t-\tpayment 4c1e0c9a-0000-4000-8000-000000000003\treceived 0 USDT in 0 transfer(s)",
            pool[1]
        ),
        format!("{}\tpool\t-\t-\tfree\treceived 0 USDT in 0 transfer(s)", pool[2]),
    ];
    expected.sort_unstable();
    assert_eq!(lines, expected, "{stdout}");
}

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
                                   expires_at, last_checked_timestamp, address_mode) \
             VALUES ('4c1e0c9a-0000-4000-8000-000000000001', 'TUEZSdKsoDHQMeZwihtdoBiN46zxhGWYdH', 5, '', 'o-1', \
                     'completed', now() AT TIME ZONE 'utc', now() AT TIME ZONE 'utc', 0, 'xpub'); \
             INSERT INTO receiving_addresses (address, source, account, derivation_index, payment_id, assigned_at) \
             VALUES ('TUEZSdKsoDHQMeZwihtdoBiN46zxhGWYdH', 'xpub', '0011223344556677', 0, \
                     '4c1e0c9a-0000-4000-8000-000000000001', now() AT TIME ZONE 'utc'), \
                    ('TSeJkUh4Qv67VNFwY8LaAxERygNdy6NQZK', 'xpub', '0011223344556677', 1, NULL, NULL); \
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

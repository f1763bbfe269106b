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

//! The parsers against real mainnet responses.

// Integration tests: a failed step should stop the test loudly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use tronpay_domain::TronAddress;
use tronpay_tron::{Block, TxInfo, usdt_transfers};

fn fixture(name: &str) -> String {
    std::fs::read_to_string(format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

#[test]
fn a_real_block_parses() {
    let block: Block = serde_json::from_str(&fixture("getblockio_getblockbynum_30864544.json")).unwrap();
    assert_eq!(block.number(), Some(30864544));
    assert_eq!(block.timestamp_ms(), Some(1623055923000));
    assert_eq!(
        block.block_id.as_deref(),
        Some("0000000001d6f4a09f60c27befccff6fe3cc593b2d6c46cdc79d3fd4f55db859")
    );
    assert_eq!(block.transactions.len(), 1);
    assert_eq!(
        block.transactions[0].tx_id,
        "979e0823f455f3b67d65b351052f0265233f422792d31d5dbeb7c24737dd5556"
    );
    // A missing block is `{}`.
    let missing: Block = serde_json::from_str("{}").unwrap();
    assert_eq!(missing.number(), None);
}

#[test]
fn real_receipts_decode_to_the_expected_transfer() {
    let infos: Vec<TxInfo> =
        serde_json::from_str(&fixture("getblockio_gettransactioninfobyblocknum_30864600.json")).unwrap();
    assert_eq!(infos.len(), 2);
    let usdt = TronAddress::parse("TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t").unwrap();
    let (transfers, skipped) = usdt_transfers(&infos, &usdt);
    assert!(skipped.is_empty());
    assert_eq!(transfers.len(), 1);
    let transfer = &transfers[0];
    assert_eq!(
        transfer.id.txid.as_str(),
        "0af79242191c6728b79e858a36a4b5c65e4e52b9fcee4dc5af30eac57b6d0953"
    );
    assert_eq!(transfer.id.log_index, 0);
    assert_eq!(transfer.from.to_string(), "TWpZXLfsvVuQuJZLkdWNY7XY2teePqPpz7");
    assert_eq!(transfer.to.to_string(), "TBA6CypYJizwA9XdC7Ubgc5F1bxrQ7SqPt");
    assert_eq!(transfer.amount.base_units(), 532_079_999);
    assert_eq!(
        (transfer.block_number, transfer.block_time_ms),
        (30864600, 1623056091000)
    );
}

#[test]
fn an_empty_block_is_an_empty_list() {
    let infos: Vec<TxInfo> = serde_json::from_str("[]").unwrap();
    assert!(infos.is_empty());
}

//! USDT transfers from a block's receipts.
//!
//! A transfer is one `Transfer(address,address,uint256)` log emitted by the
//! USDT contract in a transaction whose receipt says `SUCCESS`. Reading logs
//! rather than call data counts transfers made by other contracts (routers,
//! exchanges, multisend) and never misreads an ABI word. Its identity is
//! `(txid, log index)`: one transaction can pay several addresses.

use tronpay_domain::{TronAddress, TxId, UsdtAmount};

use crate::types::TxInfo;

/// keccak256("Transfer(address,address,uint256)").
pub const TRANSFER_TOPIC: &str = "ddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transfer {
    pub txid: TxId,
    /// Position of the log in the transaction's log list.
    pub log_index: u32,
    pub from: TronAddress,
    pub to: TronAddress,
    pub amount: UsdtAmount,
    pub block_number: u64,
    pub block_time_ms: i64,
}

/// Why a log that looks like a USDT transfer was not counted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    pub txid: String,
    pub log_index: usize,
    pub reason: &'static str,
}

/// The USDT transfers in one block's transaction infos, and the malformed
/// logs that were skipped (worth a warning, never a crash).
pub fn usdt_transfers(infos: &[TxInfo], usdt: &TronAddress) -> (Vec<Transfer>, Vec<Skipped>) {
    let contract = usdt.to_hex();
    let contract20 = &contract[2..];
    let mut transfers = Vec::new();
    let mut skipped = Vec::new();
    for info in infos {
        if info.receipt.result.as_deref() != Some("SUCCESS") || info.result.as_deref() == Some("FAILED") {
            continue;
        }
        for (index, log) in info.log.iter().enumerate() {
            let address = log
                .address
                .strip_prefix("41")
                .filter(|rest| rest.len() == 40)
                .unwrap_or(&log.address);
            if !address.eq_ignore_ascii_case(contract20) {
                continue;
            }
            if log.topics.len() != 3 || !log.topics[0].eq_ignore_ascii_case(TRANSFER_TOPIC) {
                continue;
            }
            let skip = |reason| Skipped {
                txid: info.id.clone(),
                log_index: index,
                reason,
            };
            let Ok(txid) = TxId::parse(&info.id) else {
                skipped.push(skip("transaction id is not 64 hex digits"));
                continue;
            };
            let (Some(from), Some(to)) = (topic_address(&log.topics[1]), topic_address(&log.topics[2])) else {
                skipped.push(skip("a topic is not a 32-byte address word"));
                continue;
            };
            let Some(amount) = word_amount(&log.data) else {
                skipped.push(skip("the value is not a 32-byte word within NUMERIC(18,6)"));
                continue;
            };
            let Ok(log_index) = u32::try_from(index) else {
                skipped.push(skip("log index out of range"));
                continue;
            };
            transfers.push(Transfer {
                txid,
                log_index,
                from,
                to,
                amount,
                block_number: info.block_number,
                block_time_ms: info.block_timestamp,
            });
        }
    }
    (transfers, skipped)
}

/// The address in the last 20 bytes of a 32-byte topic word.
fn topic_address(word: &str) -> Option<TronAddress> {
    // Checked as bytes first: slicing a non-ASCII text by position could
    // split a character.
    if word.len() != 64
        || !word.bytes().all(|byte| byte.is_ascii_hexdigit())
        || !word.as_bytes()[..24].iter().all(|byte| *byte == b'0')
    {
        return None;
    }
    TronAddress::from_hex(&word[24..]).ok()
}

/// A uint256 value word, if it fits an amount.
fn word_amount(word: &str) -> Option<UsdtAmount> {
    if word.len() != 64 || !word.bytes().all(|byte| byte.is_ascii_hexdigit()) {
        return None;
    }
    // Anything above 16 hex digits exceeds u64 and so any real USDT amount.
    if !word[..48].bytes().all(|byte| byte == b'0') {
        return None;
    }
    let units = u64::from_str_radix(&word[48..], 16).ok()?;
    UsdtAmount::from_base_units(units).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{Log, Receipt};

    fn usdt() -> TronAddress {
        TronAddress::parse("TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t").unwrap()
    }

    fn word(hex: &str) -> String {
        format!("{hex:0>64}")
    }

    fn transfer_log(to20: &str, value_hex: &str) -> Log {
        Log {
            address: "a614f803b6fd780986a42c78ec9c7f77e6ded13c".into(),
            topics: vec![
                TRANSFER_TOPIC.into(),
                word("e4b8075df69297bc24cc4bbaf48cd17206e1f62c"),
                word(to20),
            ],
            data: word(value_hex),
        }
    }

    fn info(result: &str, log: Vec<Log>) -> TxInfo {
        TxInfo {
            id: "0af79242191c6728b79e858a36a4b5c65e4e52b9fcee4dc5af30eac57b6d0953".into(),
            block_number: 30864600,
            block_timestamp: 1623056091000,
            receipt: Receipt {
                result: Some(result.into()),
            },
            log,
            ..TxInfo::default()
        }
    }

    #[test]
    fn several_transfers_in_one_transaction_keep_their_log_index() {
        let other_event = Log {
            address: "a614f803b6fd780986a42c78ec9c7f77e6ded13c".into(),
            topics: vec![word("01")],
            data: String::new(),
        };
        let infos = [info(
            "SUCCESS",
            vec![
                transfer_log("0d0707963952f2fba59dd06f2b425ace40b492fe", "1fb6e57f"),
                other_event,
                transfer_log("94a15629b2b2bbd3a5453e6d6696b2875278633b", "0f4240"),
            ],
        )];
        let (transfers, skipped) = usdt_transfers(&infos, &usdt());
        assert!(skipped.is_empty());
        assert_eq!(transfers.len(), 2);
        assert_eq!(
            (transfers[0].log_index, transfers[0].amount.to_string().as_str()),
            (0, "532.079999")
        );
        assert_eq!(transfers[0].to.to_string(), "TBA6CypYJizwA9XdC7Ubgc5F1bxrQ7SqPt");
        assert_eq!(
            (transfers[1].log_index, transfers[1].amount.to_string().as_str()),
            (2, "1")
        );
        assert_eq!(transfers[1].to.to_string(), "TPX6HK2NRN4XKRX1JAhbC827bm7gMmy5w1");
    }

    #[test]
    fn failed_receipts_and_other_tokens_do_not_count() {
        let mut other_token = transfer_log("0d0707963952f2fba59dd06f2b425ace40b492fe", "01");
        other_token.address = "0fe47f49fd91f0edb7fa2b94a3c45d9c2231709c".into();
        let mut failed = info(
            "REVERT",
            vec![transfer_log("0d0707963952f2fba59dd06f2b425ace40b492fe", "01")],
        );
        failed.result = Some("FAILED".into());
        let infos = [
            failed,
            info(
                "OUT_OF_ENERGY",
                vec![transfer_log("0d0707963952f2fba59dd06f2b425ace40b492fe", "01")],
            ),
            info("SUCCESS", vec![other_token]),
        ];
        assert_eq!(usdt_transfers(&infos, &usdt()), (vec![], vec![]));
    }

    #[test]
    fn hostile_text_in_topics_and_data_is_skipped_not_a_panic() {
        let mut unicode = transfer_log("0d0707963952f2fba59dd06f2b425ace40b492fe", "01");
        unicode.topics[1] = format!("{}{}", "é".repeat(12), "0".repeat(40));
        let mut unicode_data = transfer_log("0d0707963952f2fba59dd06f2b425ace40b492fe", "01");
        unicode_data.data = format!("{}{}", "ü".repeat(24), "1".repeat(16));
        let (transfers, skipped) = usdt_transfers(&[info("SUCCESS", vec![unicode, unicode_data])], &usdt());
        assert!(transfers.is_empty());
        assert_eq!(skipped.len(), 2);
    }

    #[test]
    fn malformed_logs_are_skipped_with_a_reason() {
        let mut bad_topic = transfer_log("0d0707963952f2fba59dd06f2b425ace40b492fe", "01");
        bad_topic.topics[2] = "ffff".into();
        let huge = transfer_log("0d0707963952f2fba59dd06f2b425ace40b492fe", &"f".repeat(64));
        let (transfers, skipped) = usdt_transfers(&[info("SUCCESS", vec![bad_topic, huge])], &usdt());
        assert!(transfers.is_empty());
        assert_eq!(skipped.len(), 2);
    }
}

//! USDT transfers from a block's receipts.
//!
//! A transfer is one `Transfer(address,address,uint256)` log emitted by the
//! USDT contract in a transaction whose receipt says `SUCCESS`. Reading logs
//! rather than call data counts transfers made by other contracts (routers,
//! exchanges, multisend) and never misreads an ABI word. Its identity is
//! `(txid, log index)`: one transaction can pay several addresses.

use tronpay_domain::{Transfer, TransferId, TronAddress, TxId, UsdtAmount};

use crate::types::TxInfo;

/// keccak256("Transfer(address,address,uint256)").
pub const TRANSFER_TOPIC: &str = "ddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef";

/// Why a log that looks like a USDT transfer was not counted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    pub txid: String,
    pub log_index: usize,
    pub reason: SkipReason,
}

/// Which rule a USDT `Transfer` log breaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SkipReason {
    #[error("the transaction id is not 64 hex digits")]
    TransactionId,
    #[error("the Transfer log has {0} topics, not 3 (signature, from, to)")]
    TopicCount(usize),
    #[error("topic {0} is not a 32-byte hex word")]
    TopicNotWord(usize),
    #[error("topic {0} has non-zero bytes above its 20-byte address")]
    TopicNotAddress(usize),
    #[error("the value is not one 32-byte hex word")]
    ValueNotWord,
    #[error("the value exceeds NUMERIC(18,6)")]
    ValueTooLarge,
    #[error("the log index does not fit 32 bits")]
    LogIndex,
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
            // Other events of the contract (Approval, …) are not transfers.
            if !log
                .topics
                .first()
                .is_some_and(|signature| signature.eq_ignore_ascii_case(TRANSFER_TOPIC))
            {
                continue;
            }
            let mut skip = |reason| {
                skipped.push(Skipped {
                    txid: info.id.clone(),
                    log_index: index,
                    reason,
                });
            };
            if log.topics.len() != 3 {
                skip(SkipReason::TopicCount(log.topics.len()));
                continue;
            }
            let Ok(txid) = TxId::parse(&info.id) else {
                skip(SkipReason::TransactionId);
                continue;
            };
            let (from, to) = match (topic_address(&log.topics, 1), topic_address(&log.topics, 2)) {
                (Ok(from), Ok(to)) => (from, to),
                (Err(reason), _) | (_, Err(reason)) => {
                    skip(reason);
                    continue;
                }
            };
            let amount = match word_amount(&log.data) {
                Ok(amount) => amount,
                Err(reason) => {
                    skip(reason);
                    continue;
                }
            };
            let Ok(log_index) = u32::try_from(index) else {
                skip(SkipReason::LogIndex);
                continue;
            };
            transfers.push(Transfer {
                id: TransferId { txid, log_index },
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

/// The address in the last 20 bytes of topic `position` (a 32-byte word).
fn topic_address(topics: &[String], position: usize) -> Result<TronAddress, SkipReason> {
    let word = topics.get(position).map_or("", String::as_str);
    // Checked as bytes first: slicing a non-ASCII text by position could
    // split a character.
    if !is_word(word) {
        return Err(SkipReason::TopicNotWord(position));
    }
    if !word.as_bytes()[..24].iter().all(|byte| *byte == b'0') {
        return Err(SkipReason::TopicNotAddress(position));
    }
    TronAddress::from_hex(&word[24..]).map_err(|_| SkipReason::TopicNotWord(position))
}

/// 64 hex digits.
fn is_word(text: &str) -> bool {
    text.len() == 64 && text.bytes().all(|byte| byte.is_ascii_hexdigit())
}

/// A uint256 value word, if it fits an amount.
fn word_amount(word: &str) -> Result<UsdtAmount, SkipReason> {
    if !is_word(word) {
        return Err(SkipReason::ValueNotWord);
    }
    // Anything above 16 hex digits exceeds u64 and so any real USDT amount.
    if !word[..48].bytes().all(|byte| byte == b'0') {
        return Err(SkipReason::ValueTooLarge);
    }
    let units = u64::from_str_radix(&word[48..], 16).map_err(|_| SkipReason::ValueNotWord)?;
    UsdtAmount::from_base_units(units).map_err(|_| SkipReason::ValueTooLarge)
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
            (transfers[0].id.log_index, transfers[0].amount.to_string().as_str()),
            (0, "532.079999")
        );
        assert_eq!(transfers[0].to.to_string(), "TBA6CypYJizwA9XdC7Ubgc5F1bxrQ7SqPt");
        assert_eq!(
            (transfers[1].id.log_index, transfers[1].amount.to_string().as_str()),
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
    fn malformed_logs_are_skipped_with_the_rule_each_breaks() {
        let to = "0d0707963952f2fba59dd06f2b425ace40b492fe";
        let mut short_topic = transfer_log(to, "01");
        short_topic.topics[2] = "ffff".into();
        let mut wide_topic = transfer_log(to, "01");
        wide_topic.topics[1] = format!("ff{}", &wide_topic.topics[1][2..]);
        let huge = transfer_log(to, &"f".repeat(64));
        let mut short_value = transfer_log(to, "01");
        short_value.data = "01".into();
        // An indexed value (an NFT-style Transfer) is not USDT's event.
        let mut four_topics = transfer_log(to, "01");
        four_topics.topics.push(word("05"));
        let mut approval = transfer_log(to, "01");
        approval.topics[0] = "8c5be1e5ebec7d5bd14f71427d1e84f3dd0314c0f7b2291e5b200ac8c7c3b925".into();
        let logs = vec![short_topic, wide_topic, huge, short_value, four_topics, approval];
        let (transfers, skipped) = usdt_transfers(&[info("SUCCESS", logs)], &usdt());
        assert!(transfers.is_empty());
        let reasons: Vec<(usize, SkipReason)> = skipped.iter().map(|skip| (skip.log_index, skip.reason)).collect();
        assert_eq!(
            reasons,
            [
                (0, SkipReason::TopicNotWord(2)),
                (1, SkipReason::TopicNotAddress(1)),
                (2, SkipReason::ValueTooLarge),
                (3, SkipReason::ValueNotWord),
                (4, SkipReason::TopicCount(4)),
            ]
        );
        assert_eq!(
            SkipReason::TopicCount(4).to_string(),
            "the Transfer log has 4 topics, not 3 (signature, from, to)"
        );
    }
}

//! java-tron's JSON for blocks and transaction infos, written by hand.
//!
//! The shapes follow the real `getblockbynum` and
//! `gettransactioninfobyblocknum` answers (see `crates/tron/tests/fixtures`):
//! protobuf JSON, so empty lists and zero numbers are left out, addresses are
//! 21-byte hex with the `41` prefix except in event logs (20 bytes). Writing
//! into one `String` instead of building `serde_json::Value`s keeps a
//! 200-transfer block well under a millisecond.

use std::fmt::Write;

use sha2::{Digest, Sha256};

use crate::chain::{Addr, Block, Body, Params, Tx, push_hex, router_log_index};

/// keccak256("Transfer(address,address,uint256)").
pub const TRANSFER_TOPIC: &str = "ddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef";
/// The router's own event (a made-up signature hash; nobody decodes it).
const ROUTER_TOPIC: &str = "5d8c2b7e6a3e09f3b1a3b7d0b7c4a54a1b1e4f6e3c2d0f9a8b7c6d5e4f3a2b1c";
/// `transfer(address,uint256)`.
const TRANSFER_SELECTOR: [u8; 4] = [0xa9, 0x05, 0x9c, 0xbb];
/// `transferFrom(address,address,uint256)`.
const TRANSFER_FROM_SELECTOR: [u8; 4] = [0x23, 0xb8, 0x72, 0xdd];
/// The router's multisend call (illustrative selector).
const MULTISEND_SELECTOR: [u8; 4] = [0xc7, 0x3a, 0x2d, 0x60];
/// "REVERT opcode executed", as java-tron reports a reverted call.
const REVERT_MESSAGE: &str = "REVERT opcode executed";

/// The `gettransactioninfobyblocknum` answer for `block`: a bare array.
pub fn tx_infos(params: &Params, block: &Block) -> String {
    let mut out = String::with_capacity(64 + block.tx_count() * 900);
    out.push('[');
    let mut first = true;
    block.for_each_tx(params, |tx| {
        if !first {
            out.push(',');
        }
        first = false;
        tx_info(&mut out, params, block, tx);
    });
    out.push(']');
    out
}

/// The `getblockbynum` / `getnowblock` answer for `block`.
pub fn block(params: &Params, block: &Block) -> String {
    let mut transactions = String::with_capacity(block.tx_count() * 1200);
    let mut trie = Sha256::new();
    let mut first = true;
    block.for_each_tx(params, |tx| {
        transactions.push(if first { '[' } else { ',' });
        first = false;
        trie.update(tx.txid);
        transaction(&mut transactions, params, block, tx);
    });
    let mut out = String::with_capacity(transactions.len() + 700);
    out.push_str("{\"blockID\":\"");
    push_hex(&mut out, &block.id);
    out.push_str("\",\"block_header\":{\"raw_data\":{");
    // Protobuf JSON leaves out a zero height (the genesis block).
    if block.number != 0 {
        let _ = write!(out, "\"number\":{},", block.number);
    }
    out.push_str("\"txTrieRoot\":\"");
    if first {
        out.push_str(&"0".repeat(64));
    } else {
        push_hex(&mut out, &trie.finalize());
    }
    out.push_str("\",\"witness_address\":\"41");
    push_hex(&mut out, params.witness(block.number));
    out.push_str("\",\"parentHash\":\"");
    push_hex(&mut out, &block.parent);
    let _ = write!(
        out,
        "\",\"version\":30,\"timestamp\":{}}},\"witness_signature\":\"",
        block.timestamp
    );
    push_signature(&mut out, &block.id);
    out.push_str("\"}");
    // Protobuf JSON leaves out an empty list.
    if !first {
        transactions.push(']');
        out.push_str(",\"transactions\":");
        out.push_str(&transactions);
    }
    out.push('}');
    out
}

fn tx_info(out: &mut String, params: &Params, block: &Block, tx: &Tx) {
    out.push_str("{\"id\":\"");
    push_hex(out, &tx.txid);
    out.push('"');
    let failed = matches!(
        tx.body,
        Body::Usdt { failed: true, .. } | Body::Router { failed: true, .. }
    );
    let energy = energy_used(tx);
    // A failed call and a router call burn TRX for energy: they carry a fee.
    let fee = match &tx.body {
        Body::Trx { .. } | Body::Usdt { failed: false, .. } => None,
        _ => Some(energy * 100 + 345_000),
    };
    if let Some(fee) = fee {
        let _ = write!(out, ",\"fee\":{fee}");
    }
    let _ = write!(
        out,
        ",\"blockNumber\":{},\"blockTimeStamp\":{}",
        block.number, block.timestamp
    );
    match &tx.body {
        Body::Trx { .. } => out.push_str(",\"contractResult\":[\"\"],\"receipt\":{\"net_usage\":268}"),
        _ if failed => {
            let contract = match tx.body {
                Body::Router { .. } => &params.router,
                _ => &params.usdt20,
            };
            out.push_str(",\"contractResult\":[\"\"],\"contract_address\":\"41");
            push_hex(out, contract);
            let _ = write!(
                out,
                "\",\"receipt\":{{\"energy_fee\":{},\"energy_usage_total\":{energy},\"net_fee\":345000,\"result\":\"REVERT\"}},\"result\":\"FAILED\",\"resMessage\":\"",
                energy * 100
            );
            push_hex(out, REVERT_MESSAGE.as_bytes());
            out.push('"');
        }
        Body::Usdt { from, to, amount, .. } => {
            out.push_str(",\"contractResult\":[\"");
            push_word(out, 1);
            out.push_str("\"],\"contract_address\":\"41");
            push_hex(out, &params.usdt20);
            out.push_str("\",\"log\":[");
            transfer_log(out, &params.usdt20, from, to, *amount);
            // The USDT contract's owner pays part of the energy (as in the real sample).
            let origin = energy / 4;
            let _ = write!(
                out,
                "],\"receipt\":{{\"energy_usage\":{},\"energy_usage_total\":{energy},\"net_usage\":345,\"origin_energy_usage\":{origin},\"result\":\"SUCCESS\"}}",
                energy - origin
            );
        }
        Body::Router { from, outputs, .. } => {
            out.push_str(",\"contractResult\":[\"");
            push_word(out, 1);
            out.push_str("\"],\"contract_address\":\"41");
            push_hex(out, &params.router);
            out.push_str("\",\"log\":[");
            let mut total = 0u64;
            for (index, (to, amount)) in outputs.iter().enumerate() {
                if index > 0 {
                    out.push(',');
                }
                transfer_log(out, &params.usdt20, from, to, *amount);
                total = total.saturating_add(*amount);
                if index == 0 && outputs.len() > 1 {
                    debug_assert_eq!(router_log_index(1), 2);
                    out.push_str(",{\"address\":\"");
                    push_hex(out, &params.router);
                    let _ = write!(out, "\",\"topics\":[\"{ROUTER_TOPIC}\"],\"data\":\"");
                    push_word(out, outputs.len() as u64);
                    out.push_str("\"}");
                }
            }
            let _ = write!(
                out,
                "],\"receipt\":{{\"energy_fee\":{},\"energy_usage_total\":{energy},\"net_usage\":{},\"result\":\"SUCCESS\"}}",
                energy * 100,
                345 + 64 * outputs.len()
            );
        }
    }
    out.push('}');
}

fn transfer_log(out: &mut String, usdt20: &Addr, from: &Addr, to: &Addr, amount: u64) {
    out.push_str("{\"address\":\"");
    push_hex(out, usdt20);
    let _ = write!(out, "\",\"topics\":[\"{TRANSFER_TOPIC}\",\"");
    push_address_word(out, from);
    out.push_str("\",\"");
    push_address_word(out, to);
    out.push_str("\"],\"data\":\"");
    push_word(out, amount);
    out.push_str("\"}");
}

/// Energy a call used: a transfer to a new USDT holder costs about twice as
/// much; which one is read from the txid, so it never changes.
fn energy_used(tx: &Tx) -> u64 {
    let base = if tx.txid[31] & 1 == 0 { 14_650 } else { 29_650 };
    match &tx.body {
        Body::Trx { .. } => 0,
        Body::Usdt { .. } => base,
        Body::Router { outputs, .. } => base + 9_000 * outputs.len() as u64,
    }
}

/// One entry of a block's `transactions`.
fn transaction(out: &mut String, params: &Params, block: &Block, tx: &Tx) {
    let (kind, owner, contract, data, fee_limit) = match &tx.body {
        Body::Trx { from, .. } => ("TransferContract", from, None, Vec::new(), 0),
        Body::Usdt {
            from,
            to,
            amount,
            spender: None,
            ..
        } => {
            let mut data = Vec::with_capacity(68);
            data.extend_from_slice(&TRANSFER_SELECTOR);
            data.extend_from_slice(&address_word(to));
            data.extend_from_slice(&amount_word(*amount));
            ("TriggerSmartContract", from, Some(&params.usdt20), data, 100_000_000)
        }
        // The spender sends the transaction; the tokens move from `from`.
        Body::Usdt {
            from,
            to,
            amount,
            spender: Some(spender),
            ..
        } => {
            let mut data = Vec::with_capacity(100);
            data.extend_from_slice(&TRANSFER_FROM_SELECTOR);
            data.extend_from_slice(&address_word(from));
            data.extend_from_slice(&address_word(to));
            data.extend_from_slice(&amount_word(*amount));
            ("TriggerSmartContract", spender, Some(&params.usdt20), data, 100_000_000)
        }
        Body::Router { from, outputs, .. } => (
            "TriggerSmartContract",
            from,
            Some(&params.router),
            multisend_data(&params.usdt20, outputs),
            150_000_000,
        ),
    };
    let failed = matches!(
        tx.body,
        Body::Usdt { failed: true, .. } | Body::Router { failed: true, .. }
    );
    // Clients sign a little before the block and reference its parent.
    let timestamp = block.timestamp - 1_500 - i64::from(tx.txid[0]) * 4;
    let expiration = timestamp + 60_000;
    let ref_bytes = (block.number.saturating_sub(1) & 0xffff).to_be_bytes();
    let ref_bytes = &ref_bytes[6..8];
    let ref_hash = &block.parent[8..16];

    let _ = write!(
        out,
        "{{\"ret\":[{{\"contractRet\":\"{}\"}}],\"signature\":[\"",
        if failed { "REVERT" } else { "SUCCESS" }
    );
    push_signature(out, &tx.txid);
    out.push_str("\"],\"txID\":\"");
    push_hex(out, &tx.txid);
    out.push_str("\",\"raw_data\":{\"contract\":[{\"parameter\":{\"value\":{");
    match (&tx.body, contract) {
        (Body::Trx { to, amount, .. }, _) => {
            let _ = write!(out, "\"amount\":{amount},\"owner_address\":\"41");
            push_hex(out, owner);
            out.push_str("\",\"to_address\":\"41");
            push_hex(out, to);
            out.push('"');
        }
        (_, Some(contract)) => {
            out.push_str("\"data\":\"");
            push_hex(out, &data);
            out.push_str("\",\"owner_address\":\"41");
            push_hex(out, owner);
            out.push_str("\",\"contract_address\":\"41");
            push_hex(out, contract);
            out.push('"');
        }
        (_, None) => {}
    }
    let _ = write!(
        out,
        "}},\"type_url\":\"type.googleapis.com/protocol.{kind}\"}},\"type\":\"{kind}\"}}],\"ref_block_bytes\":\""
    );
    push_hex(out, ref_bytes);
    out.push_str("\",\"ref_block_hash\":\"");
    push_hex(out, ref_hash);
    let _ = write!(out, "\",\"expiration\":{expiration},");
    if fee_limit > 0 {
        let _ = write!(out, "\"fee_limit\":{fee_limit},");
    }
    let _ = write!(out, "\"timestamp\":{timestamp}}},\"raw_data_hex\":\"");

    // raw_data as protobuf (protocol.Transaction.raw), like java-tron prints it.
    let mut contract_value = Vec::with_capacity(96 + data.len());
    match (&tx.body, contract) {
        (Body::Trx { to, amount, .. }, _) => {
            pb_bytes(&mut contract_value, 1, &with_prefix(owner));
            pb_bytes(&mut contract_value, 2, &with_prefix(to));
            pb_varint_field(&mut contract_value, 3, *amount);
        }
        (_, Some(contract)) => {
            pb_bytes(&mut contract_value, 1, &with_prefix(owner));
            pb_bytes(&mut contract_value, 2, &with_prefix(contract));
            pb_bytes(&mut contract_value, 4, &data);
        }
        (_, None) => {}
    }
    let mut any = Vec::with_capacity(contract_value.len() + 64);
    pb_bytes(&mut any, 1, format!("type.googleapis.com/protocol.{kind}").as_bytes());
    pb_bytes(&mut any, 2, &contract_value);
    let mut contract_message = Vec::with_capacity(any.len() + 8);
    pb_varint_field(
        &mut contract_message,
        1,
        if kind == "TransferContract" { 1 } else { 31 },
    );
    pb_bytes(&mut contract_message, 2, &any);
    let mut raw = Vec::with_capacity(contract_message.len() + 48);
    pb_bytes(&mut raw, 1, ref_bytes);
    pb_bytes(&mut raw, 4, ref_hash);
    pb_varint_field(&mut raw, 8, expiration.unsigned_abs());
    pb_bytes(&mut raw, 11, &contract_message);
    pb_varint_field(&mut raw, 14, timestamp.unsigned_abs());
    if fee_limit > 0 {
        pb_varint_field(&mut raw, 18, fee_limit);
    }
    push_hex(out, &raw);
    out.push_str("\"}");
}

/// `disperseToken(token, recipients[], amounts[])`-style ABI call data.
fn multisend_data(token: &Addr, outputs: &[(Addr, u64)]) -> Vec<u8> {
    let count = outputs.len() as u64;
    let mut data = Vec::with_capacity(4 + 32 * (5 + 2 * outputs.len()));
    data.extend_from_slice(&MULTISEND_SELECTOR);
    data.extend_from_slice(&address_word(token));
    data.extend_from_slice(&amount_word(0x60));
    data.extend_from_slice(&amount_word(0x80 + 32 * count));
    data.extend_from_slice(&amount_word(count));
    for (to, _) in outputs {
        data.extend_from_slice(&address_word(to));
    }
    data.extend_from_slice(&amount_word(count));
    for (_, amount) in outputs {
        data.extend_from_slice(&amount_word(*amount));
    }
    data
}

fn with_prefix(addr: &Addr) -> [u8; 21] {
    let mut out = [0x41; 21];
    out[1..].copy_from_slice(addr);
    out
}

fn address_word(addr: &Addr) -> [u8; 32] {
    let mut word = [0u8; 32];
    word[12..].copy_from_slice(addr);
    word
}

fn amount_word(value: u64) -> [u8; 32] {
    let mut word = [0u8; 32];
    word[24..].copy_from_slice(&value.to_be_bytes());
    word
}

fn push_address_word(out: &mut String, addr: &Addr) {
    out.push_str("000000000000000000000000");
    push_hex(out, addr);
}

fn push_word(out: &mut String, value: u64) {
    out.push_str("000000000000000000000000000000000000000000000000");
    push_hex(out, &value.to_be_bytes());
}

/// 65 bytes that look like a recoverable ECDSA signature, derived from `seed_bytes`.
fn push_signature(out: &mut String, seed_bytes: &[u8; 32]) {
    let mut seed = [0u8; 8];
    seed.copy_from_slice(&seed_bytes[24..]);
    let mut rng = fastrand::Rng::with_seed(u64::from_le_bytes(seed));
    let mut signature = [0u8; 65];
    rng.fill(&mut signature[..64]);
    signature[64] = rng.u8(0..2);
    push_hex(out, &signature);
}

fn pb_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn pb_varint_field(out: &mut Vec<u8>, field: u64, value: u64) {
    pb_varint(out, field << 3);
    pb_varint(out, value);
}

fn pb_bytes(out: &mut Vec<u8>, field: u64, bytes: &[u8]) {
    pb_varint(out, (field << 3) | 2);
    pb_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use tronpay_domain::TronAddress;

    use super::*;
    use crate::chain::hex;

    /// The real block 30864544's only transaction, rebuilt: the protobuf
    /// encoding must give java-tron's `raw_data_hex` byte for byte.
    #[test]
    fn raw_data_hex_matches_java_tron_for_a_trx_transfer() {
        let owner = TronAddress::from_hex("41c33eeefda1059afba41d86759e281bcb851edfc8").unwrap();
        let to = TronAddress::from_hex("4158c85b7b6a5118beb3b23c14fcb2f3551a81d79a").unwrap();
        let mut any_value = Vec::new();
        pb_bytes(&mut any_value, 1, owner.as_bytes());
        pb_bytes(&mut any_value, 2, to.as_bytes());
        pb_varint_field(&mut any_value, 3, 50_000_000);
        let mut any = Vec::new();
        pb_bytes(&mut any, 1, b"type.googleapis.com/protocol.TransferContract");
        pb_bytes(&mut any, 2, &any_value);
        let mut contract = Vec::new();
        pb_varint_field(&mut contract, 1, 1);
        pb_bytes(&mut contract, 2, &any);
        let mut raw = Vec::new();
        pb_bytes(&mut raw, 1, &[0xf4, 0x9e]);
        pb_bytes(&mut raw, 4, &[0xbf, 0x6a, 0x4f, 0xf3, 0x3c, 0xc1, 0xc1, 0x60]);
        pb_varint_field(&mut raw, 8, 1_623_055_977_000);
        pb_bytes(&mut raw, 11, &contract);
        pb_varint_field(&mut raw, 14, 1_623_055_920_560);
        assert_eq!(
            hex(&raw),
            "0a02f49e2208bf6a4ff33cc1c16040a894b3ad9e2f5a68080112640a2d747970652e676f6f676c65617069732e636f6d2f70726f746f636f6c2e5472616e73666572436f6e747261637412330a1541c33eeefda1059afba41d86759e281bcb851edfc812154158c85b7b6a5118beb3b23c14fcb2f3551a81d79a1880e1eb1770b0dbafad9e2f"
        );
    }

    #[test]
    fn rendered_json_parses() {
        let usdt = TronAddress::parse("TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t").unwrap();
        let params = Params::new(1, usdt, 5, 0, 0);
        let block = Block {
            number: 6,
            timestamp: 1_700_000_000_000,
            id: [3; 32],
            parent: [2; 32],
            txs: Arc::from(vec![
                Tx {
                    txid: [1; 32],
                    body: Body::Usdt {
                        from: [4; 20],
                        to: [5; 20],
                        amount: 7,
                        spender: None,
                        failed: false,
                    },
                },
                Tx {
                    txid: [2; 32],
                    body: Body::Router {
                        from: [4; 20],
                        outputs: Arc::from(vec![([5; 20], 1), ([6; 20], 2)]),
                        failed: false,
                    },
                },
                Tx {
                    txid: [3; 32],
                    body: Body::Usdt {
                        from: [4; 20],
                        to: [5; 20],
                        amount: 7,
                        spender: None,
                        failed: true,
                    },
                },
                Tx {
                    txid: [4; 32],
                    body: Body::Trx {
                        from: [4; 20],
                        to: [5; 20],
                        amount: 7,
                    },
                },
            ]),
            traffic: None,
        };
        let infos: serde_json::Value = serde_json::from_str(&tx_infos(&params, &block)).unwrap();
        assert_eq!(infos.as_array().unwrap().len(), 4);
        assert_eq!(infos[1]["log"].as_array().unwrap().len(), 3);
        let json: serde_json::Value = serde_json::from_str(&super::block(&params, &block)).unwrap();
        assert_eq!(json["transactions"].as_array().unwrap().len(), 4);
        let empty = Block {
            txs: Arc::from(Vec::new()),
            ..block
        };
        let json: serde_json::Value = serde_json::from_str(&super::block(&params, &empty)).unwrap();
        assert!(json.get("transactions").is_none());
        assert_eq!(tx_infos(&params, &empty), "[]");
    }
}

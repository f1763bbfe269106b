//! The sandbox over real HTTP on port 0: java-tron endpoints against the
//! real samples and `tronpay_tron`'s decoder, TronGrid listing, the control
//! API, faults, reorgs and determinism.

// Integration tests: a failed step should stop the test loudly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::{Value, json};
use tronpay_domain::{TronAddress, UsdtAmount};
use tronpay_sandbox::{RunningSandbox, Sandbox, SandboxConfig, default_payer, router_address};
use tronpay_testkit::eventually;
use tronpay_tron::{TxInfo, usdt_transfers};

const START: u64 = 1_000_000;
const ALICE: &str = "TBA6CypYJizwA9XdC7Ubgc5F1bxrQ7SqPt";
const BOB: &str = "TPX6HK2NRN4XKRX1JAhbC827bm7gMmy5w1";
const CAROL: &str = "TMVQGm1qAQYVdetCeGRRkTWYYrLXuHK2HC";

struct Node {
    sandbox: RunningSandbox,
    http: reqwest::Client,
}

fn config(solid_lag: u64) -> SandboxConfig {
    SandboxConfig {
        seed: Some(42),
        solid_lag,
        ..SandboxConfig::ephemeral()
    }
}

async fn start(config: SandboxConfig) -> Node {
    // reqwest is built without a default TLS provider in this workspace.
    let _ = rustls::crypto::ring::default_provider().install_default();
    Node {
        sandbox: Sandbox::start(config).await.unwrap(),
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap(),
    }
}

/// A manual-mode sandbox with a solid lag of 3.
async fn manual() -> Node {
    start(config(3)).await
}

fn address(text: &str) -> TronAddress {
    TronAddress::parse(text).unwrap()
}

fn usdt() -> TronAddress {
    address("TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t")
}

impl Node {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.sandbox.url())
    }

    async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let response = self.http.post(self.url(path)).json(&body).send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap())
    }

    async fn post_raw(&self, path: &str, body: &'static str) -> (u16, String) {
        let response = self.http.post(self.url(path)).body(body).send().await.unwrap();
        (response.status().as_u16(), response.text().await.unwrap())
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        let response = self.http.get(self.url(path)).send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap())
    }

    /// A successful control call.
    async fn control(&self, path: &str, body: Value) -> Value {
        let (status, answer) = self.post(path, body).await;
        assert_eq!(status, 200, "{path}: {answer}");
        answer
    }

    /// A transfer request (`POST /sandbox/transfer`), accepted.
    async fn submit(&self, request: Value) -> Value {
        self.control("/sandbox/transfer", request).await
    }

    async fn transfer(&self, to: &str, amount: &str) -> (String, u64) {
        let answer = self.submit(json!({"to": to, "amount": amount})).await;
        (
            answer["txid"].as_str().unwrap().to_owned(),
            answer["block"].as_u64().unwrap(),
        )
    }

    async fn mine(&self, count: u64) -> Value {
        self.control("/sandbox/mine", json!({ "count": count })).await
    }

    async fn block(&self, number: u64) -> Value {
        self.post("/wallet/getblockbynum", json!({ "num": number })).await.1
    }

    async fn infos(&self, number: u64) -> Value {
        let (status, infos) = self
            .post("/wallet/gettransactioninfobyblocknum", json!({ "num": number }))
            .await;
        assert_eq!(status, 200);
        infos
    }

    async fn typed_infos(&self, number: u64) -> Vec<TxInfo> {
        serde_json::from_value(self.infos(number).await).unwrap()
    }

    async fn trc20(&self, address: &str, query: &str) -> (u16, Value) {
        self.get(&format!("/v1/accounts/{address}/transactions/trc20?{query}"))
            .await
    }
}

fn fixture(name: &str) -> Value {
    let path = format!("{}/../tron/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Differences between the key structures of two JSON values: objects must
/// have the same keys (minus `allowed_extra` on our side), recursively;
/// arrays are compared by their first elements.
fn shape_differences(sample: &Value, ours: &Value, path: &str, allowed_extra: &[&str], out: &mut Vec<String>) {
    match (sample, ours) {
        (Value::Object(sample), Value::Object(ours)) => {
            let sample_keys: BTreeSet<&str> = sample.keys().map(String::as_str).collect();
            let our_keys: BTreeSet<&str> = ours
                .keys()
                .map(String::as_str)
                .filter(|key| !allowed_extra.contains(key))
                .collect();
            if sample_keys != our_keys {
                out.push(format!("{path}: sample {sample_keys:?}, sandbox {our_keys:?}"));
            }
            for key in sample_keys.intersection(&our_keys) {
                shape_differences(&sample[*key], &ours[*key], &format!("{path}.{key}"), allowed_extra, out);
            }
        }
        (Value::Array(sample), Value::Array(ours)) => {
            if let (Some(sample), Some(ours)) = (sample.first(), ours.first()) {
                shape_differences(sample, ours, &format!("{path}[0]"), allowed_extra, out);
            }
        }
        (sample, ours) => {
            let kind = |value: &Value| match value {
                Value::Null => "null",
                Value::Bool(_) => "bool",
                Value::Number(_) => "number",
                Value::String(_) => "string",
                Value::Array(_) => "array",
                Value::Object(_) => "object",
            };
            if kind(sample) != kind(ours) {
                out.push(format!(
                    "{path}: sample is a {}, sandbox a {}",
                    kind(sample),
                    kind(ours)
                ));
            }
        }
    }
}

fn assert_same_shape(sample: &Value, ours: &Value, allowed_extra: &[&str]) {
    let mut differences = Vec::new();
    shape_differences(sample, ours, "$", allowed_extra, &mut differences);
    assert!(differences.is_empty(), "{differences:#?}\nsandbox: {ours:#}");
}

fn is_hex(text: &str, len: usize) -> bool {
    text.len() == len && text.bytes().all(|byte| matches!(byte, b'0'..=b'9' | b'a'..=b'f'))
}

#[tokio::test]
async fn manual_mining_advances_head_and_solid() {
    let node = manual().await;
    let (_, head) = node.post("/wallet/getnowblock", json!({})).await;
    assert_eq!(head["block_header"]["raw_data"]["number"], START);
    assert_eq!(node.mine(5).await, json!({"head": START + 5, "solid": START + 2}));
    let (_, head) = node.post("/wallet/getnowblock", json!({})).await;
    let (_, solid) = node.post("/walletsolidity/getnowblock", json!({})).await;
    assert_eq!(head["block_header"]["raw_data"]["number"], START + 5);
    assert_eq!(solid["block_header"]["raw_data"]["number"], START + 2);
    // Ids carry the height in their first 8 bytes and chain by parentHash.
    for number in START + 1..=START + 5 {
        let block = node.block(number).await;
        let id = block["blockID"].as_str().unwrap();
        assert!(is_hex(id, 64));
        assert_eq!(&id[..16], format!("{number:016x}"));
        let parent = node.block(number - 1).await;
        assert_eq!(block["block_header"]["raw_data"]["parentHash"], parent["blockID"]);
        let gap = block["block_header"]["raw_data"]["timestamp"].as_i64().unwrap()
            - parent["block_header"]["raw_data"]["timestamp"].as_i64().unwrap();
        assert!(gap >= 3000, "{gap}");
    }
    // GET with query parameters works too.
    let (status, block) = node.get(&format!("/wallet/getblockbynum?num={}", START + 1)).await;
    assert_eq!(
        (status, block["blockID"].clone()),
        (200, node.block(START + 1).await["blockID"].clone())
    );
    node.sandbox.stop().await;
}

#[tokio::test]
async fn blocks_come_on_their_own_with_block_ms() {
    let node = start(SandboxConfig {
        block_ms: 20,
        ..config(2)
    })
    .await;
    eventually(Duration::from_secs(10), "four blocks made on their own", || async {
        let (_, block) = node.post("/wallet/getnowblock", json!({})).await;
        (block["block_header"]["raw_data"]["number"].as_u64().unwrap() >= START + 4).then_some(())
    })
    .await;
    let (_, solid) = node.post("/walletsolidity/getnowblock", json!({})).await;
    assert!(solid["block_header"]["raw_data"]["number"].as_u64().unwrap() >= START + 2);
    // A transfer goes into the block it was promised.
    let (txid, number) = node.transfer(ALICE, "1").await;
    eventually(Duration::from_secs(10), "the promised block", || async {
        (node.sandbox.heights().head >= number).then_some(())
    })
    .await;
    let infos = node.typed_infos(number).await;
    assert!(infos.iter().any(|info| info.id == txid));
}

#[tokio::test]
async fn a_transfer_decodes_to_the_exact_amount_and_addresses() {
    let node = manual().await;
    let (txid, number) = node.transfer(ALICE, "532.079999").await;
    assert_eq!(number, START + 1);
    assert!(is_hex(&txid, 64));
    assert_eq!(node.get("/sandbox/status").await.1["pending_transfers"], 1);
    node.mine(1).await;

    let block = node.block(number).await;
    assert_eq!(block["transactions"][0]["txID"], txid.as_str());
    let infos = node.typed_infos(number).await;
    let (transfers, skipped) = usdt_transfers(&infos, &usdt());
    assert!(skipped.is_empty());
    assert_eq!(transfers.len(), 1);
    let transfer = &transfers[0];
    assert_eq!(transfer.id.txid.as_str(), txid);
    assert_eq!(transfer.id.log_index, 0);
    assert_eq!(transfer.amount.base_units(), 532_079_999);
    assert_eq!(transfer.from, default_payer());
    assert_eq!(transfer.to, address(ALICE));
    assert_eq!(transfer.block_number, number);
    assert_eq!(
        transfer.block_time_ms,
        block["block_header"]["raw_data"]["timestamp"].as_i64().unwrap()
    );

    // An explicit payer and an amount given as a JSON number.
    let answer = node.submit(json!({"to": BOB, "amount": 0.000001, "from": CAROL})).await;
    node.mine(1).await;
    let (transfers, _) = usdt_transfers(&node.typed_infos(START + 2).await, &usdt());
    assert_eq!(transfers[0].id.txid.as_str(), answer["txid"].as_str().unwrap());
    assert_eq!(transfers[0].amount.base_units(), 1);
    assert_eq!(transfers[0].from, address(CAROL));
}

#[tokio::test]
async fn zero_value_and_transfer_from_transfers_carry_the_logs_a_real_node_shows() {
    let node = manual().await;
    // Address poisoning: BOB calls transferFrom(CAROL, ALICE, 0) — allowed
    // by the USDT contract without any allowance, since the value is 0.
    let answer = node
        .submit(json!({"to": ALICE, "amount": "0", "from": CAROL, "spender": BOB}))
        .await;
    let txid = answer["txid"].as_str().unwrap().to_owned();
    node.mine(1).await;
    let (transfers, skipped) = usdt_transfers(&node.typed_infos(START + 1).await, &usdt());
    assert!(skipped.is_empty(), "{skipped:?}");
    assert_eq!(transfers.len(), 1);
    assert_eq!(transfers[0].id.txid.as_str(), txid);
    assert_eq!(transfers[0].amount.base_units(), 0);
    // The log names the token owner, not the caller.
    assert_eq!((transfers[0].from, transfers[0].to), (address(CAROL), address(ALICE)));
    // The transaction is the spender's call of transferFrom(from, to, value).
    let block = node.block(START + 1).await;
    let value = &block["transactions"][0]["raw_data"]["contract"][0]["parameter"]["value"];
    assert_eq!(value["owner_address"], address(BOB).to_hex());
    let data = value["data"].as_str().unwrap();
    assert!(data.starts_with("23b872dd"), "{data}");
    assert_eq!(&data[8 + 24..8 + 64], &address(CAROL).to_hex()[2..]);
    assert_eq!(&data[8 + 64 + 24..8 + 128], &address(ALICE).to_hex()[2..]);
    assert_eq!(&data[8 + 128..], "0".repeat(64));
    assert_eq!(block["transactions"][0]["ret"][0]["contractRet"], "SUCCESS");
}

#[tokio::test]
async fn a_frozen_node_answers_with_the_same_blocks_while_the_chain_goes_on() {
    let node = manual().await;
    node.mine(3).await;
    let before = node.get("/sandbox/status").await.1;
    let solid = before["solid"].as_u64().unwrap();
    let frozen = node.control("/sandbox/freeze", json!({"frozen": true})).await;
    assert_eq!(
        (frozen["head"].as_u64(), frozen["solid"].as_u64()),
        (Some(START + 3), Some(solid))
    );
    let (txid, number) = node.transfer(ALICE, "5").await;
    node.mine(5).await;
    for _ in 0..2 {
        let (_, head) = node.post("/wallet/getnowblock", json!({})).await;
        assert_eq!(head["block_header"]["raw_data"]["number"], START + 3);
        let (_, block) = node.post("/walletsolidity/getnowblock", json!({})).await;
        assert_eq!(block["block_header"]["raw_data"]["number"], solid);
    }
    // Blocks above where it stopped are missing, as on a node that stopped syncing.
    assert_eq!(node.block(number).await, json!({}));
    assert_eq!(node.infos(number).await, json!([]));
    assert_eq!(node.get("/sandbox/status").await.1["frozen"]["head"], START + 3);
    // Unfrozen, it has caught up at once.
    let thawed = node.control("/sandbox/freeze", json!({"frozen": false})).await;
    assert_eq!(thawed["head"], START + 8);
    assert_eq!(node.infos(number).await[0]["id"], txid.as_str());
    assert_eq!(node.get("/sandbox/status").await.1["frozen"], Value::Null);
}

#[tokio::test]
async fn a_router_transaction_pays_several_addresses_with_distinct_log_indexes() {
    let node = manual().await;
    let answer = node
        .submit(json!({"outputs": [
            {"to": ALICE, "amount": "1.5"},
            {"to": BOB, "amount": "2"},
            {"to": ALICE, "amount": "0.25"},
        ]}))
        .await;
    assert_eq!(answer["log_indexes"], json!([0, 2, 3]));
    node.mine(1).await;
    let infos = node.typed_infos(START + 1).await;
    assert_eq!(infos.len(), 1);
    assert_eq!(
        infos[0].contract_address.as_deref(),
        Some(router_address().to_hex().as_str())
    );
    // The router's own event sits between the first two transfers.
    assert_eq!(infos[0].log.len(), 4);
    assert_eq!(infos[0].log[1].address, router_address().to_hex()[2..]);
    let (transfers, skipped) = usdt_transfers(&infos, &usdt());
    assert!(skipped.is_empty());
    let seen: Vec<(u32, String, u64)> = transfers
        .iter()
        .map(|transfer| {
            (
                transfer.id.log_index,
                transfer.to.to_string(),
                transfer.amount.base_units(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        vec![
            (0, ALICE.to_owned(), 1_500_000),
            (2, BOB.to_owned(), 2_000_000),
            (3, ALICE.to_owned(), 250_000),
        ]
    );
    assert!(
        transfers
            .iter()
            .all(|transfer| transfer.id.txid.as_str() == answer["txid"])
    );
}

#[tokio::test]
async fn failed_transfers_decode_to_nothing() {
    let node = manual().await;
    let failed = node.submit(json!({"to": ALICE, "amount": "10", "failed": true})).await;
    let failed_router = node
        .submit(json!({"outputs": [{"to": ALICE, "amount": "1"}, {"to": BOB, "amount": "1"}], "failed": true}))
        .await;
    assert_eq!(failed_router["log_indexes"], json!([]));
    node.mine(1).await;
    let infos = node.infos(START + 1).await;
    for (info, answer) in infos.as_array().unwrap().iter().zip([&failed, &failed_router]) {
        assert_eq!(info["id"], answer["txid"]);
        assert_eq!(info["result"], "FAILED");
        assert_eq!(info["receipt"]["result"], "REVERT");
        assert!(info.get("log").is_none());
    }
    let block = node.block(START + 1).await;
    assert_eq!(block["transactions"][0]["ret"][0]["contractRet"], "REVERT");
    let (transfers, skipped) = usdt_transfers(&serde_json::from_value::<Vec<TxInfo>>(infos).unwrap(), &usdt());
    assert!(transfers.is_empty() && skipped.is_empty());
}

#[tokio::test]
async fn json_has_the_key_structure_of_the_real_samples() {
    let node = manual().await;
    node.transfer(ALICE, "532.079999").await;
    let answer = node
        .control("/sandbox/blocks", json!({"count": 3, "transfers_per_block": 4}))
        .await;
    let first = answer["from"].as_u64().unwrap();

    // Transaction infos: a TRX transfer and a USDT transfer, as in block 30864600.
    let sample_infos = fixture("getblockio_gettransactioninfobyblocknum_30864600.json");
    let infos = node.infos(first).await;
    let infos = infos.as_array().unwrap();
    let usdt_info = infos.iter().find(|info| info.get("log").is_some()).unwrap();
    let trx_info = infos
        .iter()
        .find(|info| info.get("contract_address").is_none())
        .unwrap();
    assert_same_shape(&sample_infos[0], trx_info, &[]);
    assert_same_shape(&sample_infos[1], usdt_info, &[]);

    // Blocks: the header and a TRX transaction as in block 30864544.
    let sample_block = fixture("getblockio_getblockbynum_30864544.json");
    let block = node.block(first).await;
    let transactions = block["transactions"].as_array().unwrap();
    let trx_tx = transactions
        .iter()
        .find(|tx| tx["raw_data"]["contract"][0]["type"] == "TransferContract")
        .unwrap();
    let usdt_tx = transactions
        .iter()
        .find(|tx| tx["raw_data"]["contract"][0]["type"] == "TriggerSmartContract")
        .unwrap();
    let mut header_only = block.clone();
    header_only["transactions"] = json!([trx_tx]);
    assert_same_shape(&sample_block, &header_only, &[]);
    // A contract call: same structure, with fee_limit and the call's fields.
    let mut sample_call = sample_block["transactions"][0].clone();
    sample_call["raw_data"]["fee_limit"] = json!(100_000_000);
    sample_call["raw_data"]["contract"][0]["parameter"]["value"] =
        json!({"data": "", "owner_address": "", "contract_address": ""});
    assert_same_shape(&sample_call, usdt_tx, &[]);
    let value = &usdt_tx["raw_data"]["contract"][0]["parameter"]["value"];
    assert_eq!(value["contract_address"], usdt().to_hex());
    let data = value["data"].as_str().unwrap();
    assert!(data.starts_with("a9059cbb") && data.len() == 8 + 128, "{data}");
    assert_eq!(
        usdt_tx["raw_data"]["contract"][0]["parameter"]["type_url"],
        "type.googleapis.com/protocol.TriggerSmartContract"
    );
    assert!(is_hex(
        usdt_tx["raw_data_hex"].as_str().unwrap(),
        usdt_tx["raw_data_hex"].as_str().unwrap().len()
    ));

    // An empty block has no `transactions` at all (protobuf JSON).
    node.mine(1).await;
    let empty = node.block(node.sandbox.heights().head).await;
    assert!(empty.get("transactions").is_none());
    let mut sample_header = sample_block.clone();
    sample_header.as_object_mut().unwrap().remove("transactions");
    assert_same_shape(&sample_header, &empty, &[]);
}

#[tokio::test]
async fn missing_and_empty_blocks() {
    let node = manual().await;
    node.mine(1).await;
    assert_eq!(node.block(START + 2).await, json!({}));
    assert_eq!(node.block(START - 1).await, json!({}));
    assert_eq!(node.infos(START + 2).await, json!([]));
    assert_eq!(node.infos(START + 1).await, json!([]));
    let (status, text) = node
        .post_raw("/wallet/gettransactioninfobyblocknum", r#"{"num": 5}"#)
        .await;
    assert_eq!((status, text.as_str()), (200, "[]"));
    let (_, infos) = node
        .get(&format!("/wallet/gettransactioninfobyblocknum?num={}", START + 1))
        .await;
    assert_eq!(infos, json!([]));
    // A numeric string is a number, as java-tron reads it.
    let (_, block) = node
        .post("/wallet/getblockbynum", json!({ "num": (START + 1).to_string() }))
        .await;
    assert_eq!(block["block_header"]["raw_data"]["number"], START + 1);
}

#[tokio::test]
async fn solidity_endpoints_hide_blocks_that_are_not_final() {
    let node = manual().await;
    let (txid, number) = node.transfer(ALICE, "3").await;
    node.mine(1).await;
    let path = "/walletsolidity/gettransactioninfobyblocknum";
    assert_eq!(node.post(path, json!({ "num": number })).await.1, json!([]));
    assert_eq!(node.infos(number).await[0]["id"], txid.as_str());
    let (_, hidden) = node
        .post("/walletsolidity/getblockbynum", json!({ "num": number }))
        .await;
    assert_eq!(hidden, json!({}));
    node.mine(3).await;
    assert_eq!(
        node.post(path, json!({ "num": number })).await.1[0]["id"],
        txid.as_str()
    );
    let (_, solid) = node.post("/walletsolidity/getnowblock", json!({})).await;
    assert_eq!(solid["block_header"]["raw_data"]["number"], number);
}

#[tokio::test]
async fn malformed_node_requests_get_java_tron_errors() {
    let node = manual().await;
    for path in [
        "/wallet/getblockbynum",
        "/wallet/gettransactioninfobyblocknum",
        "/walletsolidity/gettransactioninfobyblocknum",
    ] {
        for body in [
            "not json",
            "{}",
            "",
            r#"{"num": -1}"#,
            r#"{"num": 1.5}"#,
            r#"{"num": "abc"}"#,
            r#"{"num": null}"#,
            "[1]",
        ] {
            let (status, text) = node.post_raw(path, body).await;
            let answer: Value = serde_json::from_str(&text).unwrap_or_else(|_| panic!("{path} {body}: {text}"));
            assert_eq!(status, 200, "{path} {body}");
            assert!(answer["Error"].is_string(), "{path} {body}: {answer}");
        }
    }
    let (status, answer) = node.get("/wallet/getblockbynum?num=-3").await;
    assert_eq!(status, 200);
    assert!(answer["Error"].is_string());
}

#[tokio::test]
async fn a_reorg_replaces_blocks_and_drops_a_transaction() {
    let node = start(config(5)).await;
    node.mine(3).await;
    let (kept, number) = node.transfer(ALICE, "1").await;
    let (dropped, _) = node.transfer(BOB, "2").await;
    node.mine(2).await;
    let before = node.block(number).await;
    let old_next = node.block(number + 1).await;

    let (status, answer) = node.post("/sandbox/reorg", json!({"depth": 6, "drop": []})).await;
    assert_eq!(status, 400, "{answer}");
    assert!(answer["error"].as_str().unwrap().contains("solid"));
    let (status, answer) = node
        .post("/sandbox/reorg", json!({"depth": 1, "drop": [dropped]}))
        .await;
    assert_eq!(status, 400, "{answer}");

    let answer = node
        .control("/sandbox/reorg", json!({"depth": 2, "drop": [dropped]}))
        .await;
    assert_eq!(answer["head"], number + 1);
    let after = node.block(number).await;
    assert_ne!(after["blockID"], before["blockID"]);
    assert_ne!(
        after["block_header"]["raw_data"]["timestamp"],
        before["block_header"]["raw_data"]["timestamp"]
    );
    assert_eq!(
        after["block_header"]["raw_data"]["parentHash"],
        before["block_header"]["raw_data"]["parentHash"]
    );
    let next = node.block(number + 1).await;
    assert_ne!(next["blockID"], old_next["blockID"]);
    assert_eq!(next["block_header"]["raw_data"]["parentHash"], after["blockID"]);
    assert_eq!(answer["block_id"], next["blockID"]);
    let ids: Vec<String> = node.typed_infos(number).await.into_iter().map(|info| info.id).collect();
    assert_eq!(ids, vec![kept]);
    let txs = after["transactions"].as_array().unwrap();
    assert_eq!(txs.len(), 1);
}

#[tokio::test]
async fn each_fault_mode_behaves_and_stops_after_its_count() {
    let node = manual().await;
    let path = "/wallet/getnowblock";
    let expectations: [(&str, u16); 7] = [
        ("http500", 500),
        ("http503", 503),
        ("http429", 429),
        ("http403", 403),
        ("garbage", 200),
        ("error_json", 200),
        ("empty", 200),
    ];
    for (mode, status) in expectations {
        node.control("/sandbox/faults", json!({"mode": mode, "count": 2, "retry_after": 7}))
            .await;
        for _ in 0..2 {
            let response = node.http.post(node.url(path)).json(&json!({})).send().await.unwrap();
            assert_eq!(response.status().as_u16(), status, "{mode}");
            let retry_after = response
                .headers()
                .get("retry-after")
                .map(|value| value.to_str().unwrap().to_owned());
            let expected_retry = matches!(mode, "http503" | "http429").then(|| "7".to_owned());
            assert_eq!(retry_after, expected_retry, "{mode}");
            let body = response.text().await.unwrap();
            match mode {
                "garbage" => assert_eq!(body, "lack of computing resources"),
                "empty" => assert_eq!(body, ""),
                "error_json" => {
                    assert!(serde_json::from_str::<Value>(&body).unwrap()["Error"].is_string());
                }
                _ => assert!(serde_json::from_str::<TxInfo>(&body).is_err(), "{mode}: {body}"),
            }
        }
        // The third request is answered normally.
        let (status, block) = node.post(path, json!({})).await;
        assert_eq!(status, 200);
        assert_eq!(block["block_header"]["raw_data"]["number"], START);
    }

    // TronGrid requests are node requests too; control requests never are.
    node.control("/sandbox/faults", json!({"mode": "http503"})).await;
    for _ in 0..3 {
        let response = node
            .http
            .get(node.url(&format!("/v1/accounts/{ALICE}/transactions/trc20")))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 503);
        let response = node
            .http
            .post(node.url("/wallet/gettransactioninfobyblocknum"))
            .json(&json!({"num": START}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 503);
    }
    let (status, status_body) = node.get("/sandbox/status").await;
    assert_eq!(status, 200);
    assert_eq!(status_body["faults"]["mode"], "http503");
    assert_eq!(node.mine(1).await["head"], START + 1);
    node.control("/sandbox/faults", json!({"mode": "none"})).await;
    assert_eq!(node.post(path, json!({})).await.0, 200);

    // A stall delays the answer, then answers normally.
    node.control("/sandbox/faults", json!({"mode": "stall", "count": 1, "stall_ms": 200}))
        .await;
    let (status, block) = node.post(path, json!({})).await;
    assert_eq!(
        (status, block["block_header"]["raw_data"]["number"].clone()),
        (200, json!(START + 1))
    );
    assert_eq!(node.get("/sandbox/status").await.1["faults"]["mode"], "none");
}

#[tokio::test]
async fn the_trongrid_listing_filters_and_pages() {
    let node = start(config(2)).await;
    let (first, _) = node.transfer(ALICE, "1").await;
    node.mine(1).await;
    let (second, _) = node.transfer(ALICE, "2").await;
    node.submit(json!({"to": ALICE, "amount": "9", "failed": true})).await;
    node.mine(1).await;
    let router = node
        .submit(json!({"outputs": [{"to": BOB, "amount": "3"}, {"to": ALICE, "amount": "4"}], "from": ALICE}))
        .await;
    node.mine(1).await;
    node.mine(2).await;
    let (last, last_block) = node.transfer(ALICE, "5").await;
    node.mine(1).await;
    let router_id = router["txid"].as_str().unwrap();

    // Newest first; the last block is above the solid height.
    let (status, page) = node.trc20(ALICE, "").await;
    assert_eq!(status, 200);
    assert_eq!(page["success"], true);
    let rows = page["data"].as_array().unwrap();
    let summary: Vec<(&str, &str, bool)> = rows
        .iter()
        .map(|row| {
            (
                row["transaction_id"].as_str().unwrap(),
                row["value"].as_str().unwrap(),
                row.get("_unconfirmed").is_some(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            (last.as_str(), "5000000", true),
            (router_id, "4000000", false),
            (router_id, "3000000", false),
            (second.as_str(), "2000000", false),
            (first.as_str(), "1000000", false),
        ]
    );
    assert_eq!(page["meta"]["page_size"], 5);
    assert!(page["meta"].get("fingerprint").is_none());
    assert!(page["meta"]["at"].is_i64());

    // Row shape as in the real TronGrid sample.
    let sample = fixture("trongrid_v1_trc20_transactions_blockatlas.json");
    assert_same_shape(&sample["data"][0], &rows[0], &[]);
    assert_same_shape(&sample["data"][2], &rows[1], &[]);
    assert_eq!(rows[0]["token_info"]["address"], "TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t");
    assert_eq!(rows[0]["from"], default_payer().to_string());
    assert_eq!(rows[0]["to"], ALICE);
    assert_eq!(rows[0]["type"], "Transfer");

    let ids = |page: &Value| -> Vec<String> {
        page["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|row| {
                format!(
                    "{}:{}",
                    row["transaction_id"].as_str().unwrap(),
                    row["value"].as_str().unwrap()
                )
            })
            .collect()
    };
    let (_, confirmed) = node.trc20(ALICE, "only_confirmed=true").await;
    assert_eq!(confirmed["data"].as_array().unwrap().len(), 4);
    let (_, unconfirmed) = node.trc20(ALICE, "only_unconfirmed=true").await;
    assert_eq!(ids(&unconfirmed), vec![format!("{last}:5000000")]);
    let (_, incoming) = node.trc20(ALICE, "only_to=true").await;
    assert_eq!(incoming["data"].as_array().unwrap().len(), 4);
    let (_, outgoing) = node.trc20(ALICE, "only_from=true").await;
    // The router paid from Alice: to Bob and back to herself.
    assert_eq!(
        ids(&outgoing),
        vec![format!("{router_id}:4000000"), format!("{router_id}:3000000")]
    );
    let (_, bob) = node.trc20(BOB, "").await;
    assert_eq!(ids(&bob), vec![format!("{router_id}:3000000")]);
    let last_time = node.block(last_block).await["block_header"]["raw_data"]["timestamp"]
        .as_i64()
        .unwrap();
    let (_, recent) = node.trc20(ALICE, &format!("min_timestamp={last_time}")).await;
    assert_eq!(ids(&recent), vec![format!("{last}:5000000")]);
    let (_, older) = node.trc20(ALICE, &format!("max_timestamp={}", last_time - 1)).await;
    assert_eq!(older["data"].as_array().unwrap().len(), 4);
    let (_, usdt_only) = node
        .trc20(ALICE, "contract_address=TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t")
        .await;
    assert_eq!(usdt_only["data"].as_array().unwrap().len(), 5);
    let (_, other_token) = node
        .trc20(ALICE, "contract_address=TBREsCfBdPyD612xZnwvGPux7osbXvtzLh")
        .await;
    assert_eq!(other_token["data"], json!([]));
    let (_, oldest_first) = node.trc20(ALICE, "order_by=block_timestamp,asc&limit=1").await;
    assert_eq!(ids(&oldest_first), vec![format!("{first}:1000000")]);

    // Paging: two rows at a time, following `links.next`, gives every row once.
    let all = ids(&page);
    let mut seen = Vec::new();
    let (_, mut current) = node.trc20(ALICE, "limit=2").await;
    loop {
        seen.extend(ids(&current));
        assert!(current["meta"]["page_size"].as_u64().unwrap() <= 2);
        let Some(next) = current["meta"]["links"]["next"].as_str() else {
            assert!(current["meta"].get("fingerprint").is_none());
            break;
        };
        assert!(current["meta"]["fingerprint"].is_string());
        assert!(next.contains("limit=2"), "{next}");
        current = node.http.get(next).send().await.unwrap().json().await.unwrap();
    }
    assert_eq!(seen, all);

    // A bad address or parameter is TronGrid's 400.
    for (address, query) in [
        ("TYPG8VeuoVAh2hP7Vfw6ww7vK98nvXXXUs", ""),
        ("nonsense", ""),
        (ALICE, "limit=many"),
        (ALICE, "fingerprint=zz"),
        (ALICE, "order_by=value"),
    ] {
        let (status, answer) = node.trc20(address, query).await;
        assert_eq!(status, 400, "{address} {query}");
        assert_eq!(answer["success"], false);
        assert!(answer["error"].is_string());
    }
}

#[tokio::test]
async fn bulk_blocks_carry_random_traffic_and_queued_transfers() {
    let node = manual().await;
    let (queued, promised) = node.transfer(CAROL, "7").await;
    let answer = node
        .control(
            "/sandbox/blocks",
            json!({"count": 40, "transfers_per_block": 200, "recipients": [ALICE, BOB], "amount": "1.5"}),
        )
        .await;
    assert_eq!(answer, json!({"from": START + 1, "to": START + 40, "transfers": 8000}));
    assert_eq!(promised, START + 1);
    let infos = node.typed_infos(START + 1).await;
    assert_eq!(infos[0].id, queued);
    let (transfers, skipped) = usdt_transfers(&infos, &usdt());
    assert!(skipped.is_empty());
    assert_eq!(transfers.len(), 201);
    assert!(transfers[1..].iter().all(|transfer| {
        transfer.amount.base_units() == 1_500_000 && (transfer.to == address(ALICE) || transfer.to == address(BOB))
    }));
    // Noise: TRX transfers without receipt result.
    assert!(infos.iter().any(|info| info.receipt.result.is_none()));
    let first = node.block(START + 1).await["block_header"]["raw_data"]["timestamp"]
        .as_i64()
        .unwrap();
    let last = node.block(START + 40).await["block_header"]["raw_data"]["timestamp"]
        .as_i64()
        .unwrap();
    assert_eq!(last - first, 39 * 3000);

    // Random recipients and amounts: all valid, exact, and distinct ids.
    let answer = node
        .control("/sandbox/blocks", json!({"count": 2, "transfers_per_block": 50}))
        .await;
    let infos = node.typed_infos(answer["to"].as_u64().unwrap()).await;
    let (transfers, skipped) = usdt_transfers(&infos, &usdt());
    assert!(skipped.is_empty());
    assert_eq!(transfers.len(), 50);
    let ids: BTreeSet<_> = infos.iter().map(|info| info.id.clone()).collect();
    assert_eq!(ids.len(), infos.len());
    assert!(transfers.iter().all(|transfer| transfer.amount > UsdtAmount::ZERO));
}

#[tokio::test]
async fn bad_control_inputs_get_400_json() {
    let node = manual().await;
    let cases: Vec<(&str, &str)> = vec![
        (
            "/sandbox/transfer",
            r#"{"to": "TBA6CypYJizwA9XdC7Ubgc5F1bxrQ7SqPt", "amount": "1.1234567"}"#,
        ),
        (
            "/sandbox/transfer",
            r#"{"to": "TBA6CypYJizwA9XdC7Ubgc5F1bxrQ7SqPt", "amount": "-1"}"#,
        ),
        (
            "/sandbox/transfer",
            r#"{"to": "TBA6CypYJizwA9XdC7Ubgc5F1bxrQ7SqPt", "amount": -1}"#,
        ),
        (
            "/sandbox/transfer",
            r#"{"to": "TBA6CypYJizwA9XdC7Ubgc5F1bxrQ7SqPt", "amount": 1e-7}"#,
        ),
        (
            "/sandbox/transfer",
            r#"{"to": "TBA6CypYJizwA9XdC7Ubgc5F1bxrQ7SqPt", "amount": "abc"}"#,
        ),
        (
            "/sandbox/transfer",
            r#"{"to": "TBA6CypYJizwA9XdC7Ubgc5F1bxrQ7SqPt", "amount": true}"#,
        ),
        (
            "/sandbox/transfer",
            r#"{"to": "TYPG8VeuoVAh2hP7Vfw6ww7vK98nvXXXUs", "amount": "1"}"#,
        ),
        ("/sandbox/transfer", r#"{"to": 5, "amount": "1"}"#),
        (
            "/sandbox/transfer",
            r#"{"to": "TBA6CypYJizwA9XdC7Ubgc5F1bxrQ7SqPt", "amount": "1", "from": "x"}"#,
        ),
        ("/sandbox/transfer", r#"{"to": "TBA6CypYJizwA9XdC7Ubgc5F1bxrQ7SqPt"}"#),
        (
            "/sandbox/transfer",
            r#"{"to": "TBA6CypYJizwA9XdC7Ubgc5F1bxrQ7SqPt", "amount": "1", "memo": "x"}"#,
        ),
        ("/sandbox/transfer", r#"{"outputs": []}"#),
        (
            "/sandbox/transfer",
            r#"{"outputs": [{"to": "TBA6CypYJizwA9XdC7Ubgc5F1bxrQ7SqPt", "amount": "1"}], "spender": "TBA6CypYJizwA9XdC7Ubgc5F1bxrQ7SqPt"}"#,
        ),
        (
            "/sandbox/transfer",
            r#"{"to": "TBA6CypYJizwA9XdC7Ubgc5F1bxrQ7SqPt", "amount": "1", "spender": "nope"}"#,
        ),
        (
            "/sandbox/transfer",
            r#"{"outputs": [{"to": "TBA6CypYJizwA9XdC7Ubgc5F1bxrQ7SqPt", "amount": "1"}], "to": "TBA6CypYJizwA9XdC7Ubgc5F1bxrQ7SqPt", "amount": "1"}"#,
        ),
        ("/sandbox/transfer", "not json"),
        ("/sandbox/transfer", ""),
        ("/sandbox/transfer", "[]"),
        ("/sandbox/mine", r#"{"count": 0}"#),
        ("/sandbox/mine", r#"{"count": -1}"#),
        ("/sandbox/mine", r#"{"count": 100000000}"#),
        ("/sandbox/blocks", r#"{"count": 1}"#),
        ("/sandbox/blocks", r#"{"count": 0, "transfers_per_block": 1}"#),
        ("/sandbox/blocks", r#"{"count": 1, "transfers_per_block": 1000000}"#),
        (
            "/sandbox/blocks",
            r#"{"count": 1, "transfers_per_block": 1, "recipients": ["nope"]}"#,
        ),
        (
            "/sandbox/blocks",
            r#"{"count": 1, "transfers_per_block": 1, "amount": "0.0000001"}"#,
        ),
        (
            "/sandbox/blocks",
            r#"{"count": 1, "transfers_per_block": 1, "amount": "0"}"#,
        ),
        ("/sandbox/freeze", r#"{"frozen": "yes"}"#),
        ("/sandbox/freeze", "{}"),
        ("/sandbox/reorg", r#"{"depth": 0}"#),
        ("/sandbox/reorg", r#"{"depth": 1}"#),
        ("/sandbox/reorg", r#"{"depth": 1, "drop": ["xyz"]}"#),
        ("/sandbox/reorg", "{"),
        ("/sandbox/faults", r#"{"mode": "http418"}"#),
        ("/sandbox/faults", r#"{"mode": "stall", "stall_ms": 99999999}"#),
        ("/sandbox/faults", r#"{"mode": "http500", "count": 0}"#),
        ("/sandbox/faults", r#"{}"#),
    ];
    for (path, body) in cases {
        let (status, text) = node.post_raw(path, body).await;
        assert_eq!(status, 400, "{path} {body}: {text}");
        let answer: Value = serde_json::from_str(&text).unwrap_or_else(|_| panic!("{path} {body}: {text}"));
        assert!(
            answer["error"].as_str().is_some_and(|error| !error.is_empty()),
            "{path} {body}: {answer}"
        );
    }
    // Nothing was queued or sealed by the refused requests.
    let (_, status) = node.get("/sandbox/status").await;
    assert_eq!(
        (status["head"].clone(), status["pending_transfers"].clone()),
        (json!(START), json!(0))
    );
    let (status, answer) = node.get("/sandbox/nowhere").await;
    assert_eq!(status, 404);
    assert!(answer["error"].is_string());
}

#[tokio::test]
async fn the_same_seed_and_calls_give_the_same_transactions() {
    async fn run() -> Vec<String> {
        let node = manual().await;
        let mut ids = Vec::new();
        ids.push(node.transfer(ALICE, "1").await.0);
        let router = node
            .submit(json!({"outputs": [{"to": ALICE, "amount": "1"}, {"to": BOB, "amount": "2"}]}))
            .await;
        ids.push(router["txid"].as_str().unwrap().to_owned());
        node.mine(2).await;
        node.control("/sandbox/blocks", json!({"count": 3, "transfers_per_block": 20}))
            .await;
        for number in START + 1..=START + 5 {
            for info in node.typed_infos(number).await {
                ids.push(format!(
                    "{number}:{}:{:?}",
                    info.id,
                    info.log.first().map(|log| log.data.clone())
                ));
            }
        }
        node.sandbox.stop().await;
        ids
    }
    let first = run().await;
    assert!(first.len() > 60);
    assert_eq!(first, run().await);
    let other = start(SandboxConfig {
        seed: Some(43),
        ..config(3)
    })
    .await;
    assert_ne!(other.transfer(ALICE, "1").await.0, first[0]);
}

#[tokio::test]
async fn status_counts_requests_and_in_process_helpers_work() {
    let node = manual().await;
    let sent = node.sandbox.transfer(address(ALICE), "2.5".parse().unwrap()).unwrap();
    assert_eq!(node.sandbox.mine(1).unwrap().head, sent.block);
    node.infos(sent.block).await;
    node.infos(sent.block).await;
    node.post("/wallet/getnowblock", json!({})).await;
    node.trc20(ALICE, "").await;
    let (_, status) = node.get("/sandbox/status").await;
    assert_eq!(status["requests"]["/wallet/gettransactioninfobyblocknum"], 2);
    assert_eq!(status["requests"]["/wallet/getnowblock"], 1);
    assert_eq!(status["requests"]["/v1/accounts/{address}/transactions/trc20"], 1);
    assert_eq!(status["seed"], 42);
    assert_eq!(status["solid_lag"], 3);
    assert_eq!(status["block_ms"], 0);
    assert_eq!(status["usdt_contract"], "TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t");
    assert_eq!(status["faults"]["mode"], "none");
    assert_eq!(node.sandbox.status()["head"], sent.block);
}

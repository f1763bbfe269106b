//! Nodes that stop moving, refuse or answer errors, and the watcher's first
//! start: no payment is lost, and health tells the operator what is wrong.

// Integration tests: a failed step should stop the test loudly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use serde_json::Value;
use tronpay_chain_watcher::start::first_block_at;
use tronpay_e2e::{Stack, WatcherInstance, eventually, get_json, http_client, sql_values};
use tronpay_sandbox::{FaultMode, FaultPlan};
use tronpay_tron::{NodeClient, NodeError, NodeSettings};

/// The stall bound of these tests: short, so a frozen node shows quickly.
const STALL_SECONDS: u64 = 2;

/// Seals a block on the node at `url` every 200 ms (over its control API)
/// until dropped: a chain that moves, as mainnet's does.
struct Miner(tokio::task::JoinHandle<()>);

impl Miner {
    fn start(url: &str) -> Self {
        let url = format!("{url}/sandbox/mine");
        Self(tokio::spawn(async move {
            let client = http_client();
            loop {
                let _ = client.post(&url).body("{}").send().await;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }))
    }
}

impl Drop for Miner {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The API's and the watcher's view of the chain, once both satisfy `check`.
async fn both_chains(stack: &Stack, what: &str, check: impl Fn(&Value) -> bool) -> (Value, Value) {
    let watcher = stack.watcher.as_ref().unwrap();
    eventually(Duration::from_secs(30), what, || async {
        let api = get_json(&format!("{}/health", stack.api.url)).await;
        let own = watcher.health().await;
        (check(&api["chain"]) && check(&own["chain"])).then_some((api, own))
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_node_that_answers_but_does_not_move_is_left_for_one_that_moves() {
    // The first node stopped syncing at its current block and keeps
    // answering with it (HTTP 200); the second follows the chain.
    let (frozen, moving) = tronpay_e2e::same_chain_twice(11).await;
    frozen.freeze(true);
    let _miner = Miner::start(&moving.url());
    let stack = Stack::without_watcher(|_| {}).await;
    let nodes = format!("{},{}", frozen.url(), moving.url());
    let _watcher = WatcherInstance::start(stack.db.url(), &stack.bus.settings, &nodes, |settings| {
        settings.node_stall_seconds = STALL_SECONDS;
    })
    .await;
    let (id, address) = stack.payment("7.5").await;
    let paid = moving.transfer(address, "7.5".parse().unwrap()).unwrap();
    let body = stack.wait_for(&id, "completed").await;
    assert_eq!(body["transaction_hash"], paid.txid.as_str());
    // The frozen node was recorded as the fault it is.
    let errors = sql_values(&stack.db, "SELECT last_error FROM chain_state").await;
    let error = errors[0]["last_error"].as_str().unwrap_or_default();
    assert!(
        error.contains(&frozen.url()) && error.contains("has stayed at") && error.contains("NODE_STALL_SECONDS"),
        "{errors:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_single_node_that_stalls_or_refuses_shows_as_degraded_with_a_growing_lag() {
    let stack = Stack::start_with(|_| {}, |settings| settings.node_stall_seconds = STALL_SECONDS).await;
    let _miner = Miner::start(&stack.sandbox.url());
    both_chains(&stack, "a current chain", |chain| chain["status"] == "ok").await;

    // The node stops moving but answers: a fault, not a quiet chain.
    stack.sandbox.freeze(true);
    let (api, own) = both_chains(&stack, "the stall to show", |chain| {
        chain["status"] == "degraded" && chain["lag_blocks"].as_i64() > Some(0)
    })
    .await;
    // (The sandbox stamps blocks mined this fast ahead of the clock, so the
    // newest block's age stays 0 here; the age of the last good poll grows.)
    assert!(api["chain"]["poll_age_seconds"].as_i64() >= Some(2), "{api}");
    assert_eq!(api["status"], "healthy", "the API itself still works: {api}");
    assert_eq!(own["status"], "degraded", "{own}");
    let error = own["chain"]["last_error"].as_str().unwrap_or_default();
    assert!(error.contains("has stayed at"), "{own}");
    // The lag keeps growing while it lasts.
    let before = api["chain"]["lag_blocks"].as_i64().unwrap();
    both_chains(&stack, "a growing lag", |chain| {
        chain["lag_blocks"].as_i64() > Some(before + 5)
    })
    .await;

    // Once it moves again, all is well.
    stack.sandbox.freeze(false);
    let (_, own) = both_chains(&stack, "the recovery", |chain| chain["status"] == "ok").await;
    assert_eq!(own["status"], "healthy", "{own}");

    // A rate-limit outage: no successful poll, so degraded with a growing
    // lag (not the lag of the last block read), and the payment made
    // meanwhile completes afterwards.
    stack
        .sandbox
        .set_faults(FaultPlan {
            mode: FaultMode::Http429,
            ..FaultPlan::NONE
        })
        .unwrap();
    let (id, address) = stack.payment("6.25").await;
    stack.sandbox.transfer(address, "6.25".parse().unwrap()).unwrap();
    let (api, _) = both_chains(&stack, "the outage to show", |chain| {
        chain["status"] == "degraded" && chain["poll_age_seconds"].as_i64() >= Some(2)
    })
    .await;
    assert!(api["chain"]["lag_blocks"].as_i64() > Some(0), "{api}");
    assert!(
        api["chain"]["last_error"].as_str().unwrap_or_default().contains("429"),
        "{api}"
    );
    stack.sandbox.set_faults(FaultPlan::NONE).unwrap();
    stack.wait_for(&id, "completed").await;
    both_chains(&stack, "the recovery", |chain| chain["status"] == "ok").await;
}

/// A client of the node at `url` alone.
fn node_client(url: &str) -> NodeClient {
    NodeClient::new(NodeSettings {
        urls: NodeSettings::parse_urls(url).unwrap(),
        api_key: None,
        timeout: Duration::from_secs(2),
        min_backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(100),
        stall_after: Duration::from_secs(3600),
    })
    .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn an_error_answer_to_getnowblock_keeps_the_nodes_own_text() {
    let node = tronpay_e2e::Sandbox::start(tronpay_e2e::test_chain()).await.unwrap();
    let client = node_client(&node.url());
    node.set_faults(FaultPlan::times(FaultMode::ErrorJson, 2)).unwrap();
    for answer in [client.now_block().await, client.solid_block().await] {
        let error = answer.unwrap_err();
        assert!(
            matches!(&error, NodeError::Node { message, .. } if message.contains("BadItemException")),
            "{error:?}"
        );
    }
    assert!(client.now_block().await.is_ok());
}

#[tokio::test(flavor = "multi_thread")]
async fn the_first_start_scans_from_the_oldest_pending_payment() {
    let mut stack = Stack::without_watcher(|_| {}).await;
    // Paid, and final, before the watcher ever ran.
    let (id, address) = stack.payment("4.2").await;
    let paid = stack.pay(address, "4.2");
    stack.sandbox.mine(5).unwrap();
    stack.watcher = Some(stack.start_watcher(|_| {}).await);
    let body = stack.wait_for(&id, "completed").await;
    assert_eq!(body["transaction_hash"], paid.txid.as_str());
    // It began at the payment's block (the one after its creation), not at
    // the genesis block.
    let first = sql_values(&stack.db, "SELECT min(block_number) AS first FROM transfers").await;
    assert_eq!(first[0]["first"], paid.block);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_node_unreachable_at_the_first_start_loses_no_payment() {
    let mut stack = Stack::without_watcher(|_| {}).await;
    stack
        .sandbox
        .set_faults(FaultPlan {
            mode: FaultMode::Http503,
            ..FaultPlan::NONE
        })
        .unwrap();
    stack.watcher = Some(stack.start_watcher(|_| {}).await);
    // Before any successful poll the watcher says what the node answers.
    let health = eventually(Duration::from_secs(30), "the node's error in health", || async {
        let health = stack.watcher.as_ref().unwrap().health().await;
        let error = health["chain"]["last_error"].as_str().unwrap_or_default().to_owned();
        error.contains("503").then_some(health)
    })
    .await;
    assert_eq!(
        (&health["status"], &health["chain"]["status"]),
        (&Value::from("degraded"), &Value::from("degraded")),
        "{health}"
    );
    // A payment made and paid during the outage.
    let (id, address) = stack.payment("3.3").await;
    stack.pay(address, "3.3");
    stack.sandbox.mine(3).unwrap();
    stack.sandbox.set_faults(FaultPlan::NONE).unwrap();
    stack.wait_for(&id, "completed").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_first_block_after_a_time_is_found_by_block_times() {
    let node = tronpay_e2e::Sandbox::start(tronpay_e2e::test_chain()).await.unwrap();
    node.mine(40).unwrap();
    let client = node_client(&node.url());
    let first = node.heights().head - 40;
    let top = first + 40;
    let mut times = Vec::new();
    for number in first..=top {
        times.push(
            client
                .block_by_num(number)
                .await
                .unwrap()
                .unwrap()
                .timestamp_ms()
                .unwrap(),
        );
    }
    let time = |number: u64| times[usize::try_from(number - first).unwrap()];
    let find = |target: i64| first_block_at(&client, target, top, time(top), 3_000);
    for number in [first, first + 1, first + 7, first + 20, first + 39, top] {
        assert_eq!(find(time(number)).await.unwrap(), number, "at block {number}'s time");
        if number > first {
            assert_eq!(
                find(time(number - 1) + 1).await.unwrap(),
                number,
                "just after block {}",
                number - 1
            );
        }
    }
    // Before the node's first block: its first block.
    assert_eq!(find(time(first) - 3_600_000).await.unwrap(), first);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_empty_block_just_polled_costs_no_extra_call() {
    let node = tronpay_e2e::Sandbox::start(tronpay_e2e::test_chain()).await.unwrap();
    node.mine(5).unwrap();
    let client = node_client(&node.url());
    let reads = || node.status()["requests"]["/wallet/getblockbynum"].as_u64().unwrap_or(0);
    let solid = client.solid_block().await.unwrap().number().unwrap();
    assert!(client.tx_infos(solid).await.unwrap().is_empty());
    assert_eq!(reads(), 0, "the final block just polled was empty");
    // An empty block not polled lately is still read to tell it from a
    // missing one.
    assert!(client.tx_infos(solid - 1).await.unwrap().is_empty());
    assert_eq!(reads(), 1);
    // The head block just polled tells an empty block at the tip, not a
    // final one (a reorganisation could still replace it).
    let head = client.now_block().await.unwrap().number().unwrap();
    assert!(client.tip_tx_infos(head).await.unwrap().is_empty());
    assert_eq!(reads(), 1, "the head block just polled was empty");
    assert!(client.tx_infos(head).await.unwrap().is_empty());
    assert_eq!(reads(), 2, "a final read trusts only the final block polled");
}

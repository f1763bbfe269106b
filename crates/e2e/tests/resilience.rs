//! Crashes, upstream faults, a broker outage and several replicas: every
//! payment still completes exactly once.

// Integration tests: a failed step should stop the test loudly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use serde_json::json;
use tronpay_e2e::{ApiInstance, Stack, eventually, payment_status, sql_values};
use tronpay_sandbox::{FaultMode, FaultPlan, GenerateRequest};

/// Every payment of `ids` completed, and each has exactly one `completed`
/// log row and one completion webhook.
async fn assert_completed_once(stack: &Stack, ids: &[String]) {
    for id in ids {
        stack.wait_for(id, "completed").await;
    }
    let completions = sql_values(
        &stack.db,
        "SELECT payment_id, count(*) AS n FROM payment_logs WHERE event_type = 'completed' GROUP BY payment_id",
    )
    .await;
    assert_eq!(completions.len(), ids.len());
    assert!(completions.iter().all(|row| row["n"] == 1), "{completions:?}");
    let deliveries = sql_values(
        &stack.db,
        "SELECT count(*) AS n FROM webhook_deliveries WHERE event_type = 'payment.completed'",
    )
    .await;
    assert_eq!(deliveries[0]["n"], ids.len());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_watcher_killed_mid_catch_up_resumes_without_a_gap() {
    let stack = Stack::without_watcher(|_| {}).await;
    let start = stack.sandbox.heights().head + 1;
    let mut ids = Vec::new();
    // Payments paid in blocks spread over a long stretch of busy chain.
    for round in 0..12 {
        let (id, address) = stack.payment(&format!("{}.25", round + 1)).await;
        stack.send(address, &format!("{}.25", round + 1));
        stack
            .sandbox
            .generate(&GenerateRequest {
                count: 60,
                transfers_per_block: 40,
                ..GenerateRequest::default()
            })
            .unwrap();
        ids.push(id);
    }
    stack.finalize();
    let slow = |settings: &mut tronpay_chain_watcher::WatcherSettings| {
        settings.scan_start_block = Some(start);
        settings.fetch_concurrency = 1;
        settings.catchup_batch = 20;
    };
    let first = stack.start_watcher(slow).await;
    let halfway = i64::try_from(start).unwrap() + 300;
    eventually(Duration::from_secs(60), "the first watcher to get halfway", || async {
        (stack.cursor().await.unwrap_or(0) >= halfway).then_some(())
    })
    .await;
    first.kill();
    let killed_at = stack.cursor().await.unwrap();
    assert!(
        killed_at < i64::try_from(stack.sandbox.heights().solid).unwrap(),
        "killed before the end"
    );

    let _second = stack.start_watcher(slow).await;
    assert_completed_once(&stack, &ids).await;
    let transfers = sql_values(
        &stack.db,
        "SELECT count(*) AS n, count(DISTINCT block_number) AS blocks FROM transfers",
    )
    .await;
    assert_eq!(
        transfers[0],
        json!({"n": 12, "blocks": 12}),
        "each paying transfer stored once, each in its block"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_faulty_node_is_retried_and_no_block_is_skipped() {
    let stack = Stack::start_with(|_| {}, |settings| settings.node_timeout_ms = 500).await;
    let mut ids = Vec::new();
    for (index, mode) in FaultMode::FAULTS.into_iter().enumerate() {
        let (id, address) = stack.payment(&format!("{}.5", index + 1)).await;
        stack
            .sandbox
            .set_faults(FaultPlan {
                mode,
                count: Some(2),
                retry_after: Some(1),
                stall_ms: 1_500,
            })
            .unwrap();
        stack.pay(address, &format!("{}.5", index + 1));
        stack.wait_for(&id, "completed").await;
        ids.push(id);
    }
    assert_completed_once(&stack, &ids).await;
    let errors = sql_values(&stack.db, "SELECT last_error FROM chain_state").await;
    assert!(
        errors[0]["last_error"].is_string(),
        "the last upstream error is recorded: {errors:?}"
    );
    let health: serde_json::Value = stack.watcher.as_ref().unwrap().health().await;
    assert!(health["chain"]["last_error"].is_string(), "{health}");
}

#[tokio::test(flavor = "multi_thread")]
async fn payments_complete_after_a_broker_outage() {
    let (stack, proxy) = Stack::through_broker_proxy(|_| {}).await;
    let mut payments = Vec::new();
    for index in 0..5 {
        payments.push(stack.payment(&format!("{}.1", index + 1)).await);
    }

    proxy.cut();
    for (index, (_, address)) in payments.iter().enumerate() {
        stack.send(*address, &format!("{}.1", index + 1));
    }
    stack.finalize();
    let solid = i64::try_from(stack.sandbox.heights().solid).unwrap();
    // The watcher keeps recording into the outbox while the broker is away.
    eventually(Duration::from_secs(30), "the watcher to record the blocks", || async {
        (stack.cursor().await.unwrap_or(0) >= solid).then_some(())
    })
    .await;
    let waiting = sql_values(&stack.db, "SELECT count(*) AS n FROM outbox WHERE published_at IS NULL").await;
    assert!(
        waiting[0]["n"].as_i64().unwrap() >= 5,
        "events wait in the outbox: {waiting:?}"
    );
    for (id, _) in &payments {
        assert_eq!(payment_status(&stack.api.url, id).await["status"], "pending");
    }
    let health = tronpay_e2e::get_json(&format!("{}/health", stack.api.url)).await;
    assert_eq!(health["broker"], "disconnected", "{health}");

    proxy.restore();
    let ids: Vec<String> = payments.into_iter().map(|(id, _)| id).collect();
    assert_completed_once(&stack, &ids).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn two_api_replicas_complete_each_payment_once() {
    let stack = Stack::start().await;
    let second = ApiInstance::start(stack.db.url(), &stack.bus.settings, |_| {}).await;
    let mut ids = Vec::new();
    let mut addresses = Vec::new();
    for index in 0..30 {
        // Pairs of payments share an address so that replicas contend for it.
        let address = if index % 2 == 0 {
            tronpay_e2e::random_address()
        } else {
            addresses[index - 1]
        };
        let api = if index % 2 == 0 { &stack.api.url } else { &second.url };
        ids.push(tronpay_e2e::create_payment(api, &address, "7", &format!("replica-{index}")).await);
        addresses.push(address);
    }
    for address in &addresses {
        stack.sandbox.transfer(*address, "7".parse().unwrap()).unwrap();
    }
    stack.sandbox.mine(1).unwrap();
    stack.finalize();
    assert_completed_once(&stack, &ids).await;
    let applied = sql_values(
        &stack.db,
        "SELECT count(*) AS n, count(DISTINCT payment_id) AS payments FROM transfers WHERE applied_at IS NOT NULL",
    )
    .await;
    assert_eq!(
        applied[0],
        json!({"n": 30, "payments": 30}),
        "each transfer paid one payment"
    );
    drop(second);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_standby_watcher_takes_over_when_the_scanner_dies() {
    let mut stack = Stack::start().await;
    let standby = stack.start_watcher(|_| {}).await;
    let first = stack.watcher.take().unwrap();
    eventually(Duration::from_secs(20), "exactly one scanner", || async {
        let leaders = [
            first.health().await["leader"].as_bool(),
            standby.health().await["leader"].as_bool(),
        ];
        (leaders == [Some(true), Some(false)]).then_some(())
    })
    .await;

    first.kill();
    eventually(Duration::from_secs(30), "the standby to take over", || async {
        (standby.health().await["leader"] == true).then_some(())
    })
    .await;
    let (id, address) = stack.payment("9.99").await;
    stack.pay(address, "9.99");
    stack.wait_for(&id, "completed").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_poison_message_goes_to_the_dead_letter_queue() {
    let stack = Stack::start().await;
    let publisher = tronpay_bus::Publisher::connect(&stack.bus.settings, "poison test")
        .await
        .unwrap();
    let poison = tronpay_bus::Outgoing {
        routing_key: tronpay_domain::events::PAYMENT_DETECTED.into(),
        message_id: uuid::Uuid::new_v4().to_string(),
        payload: b"{\"this is\": \"not an event\"}".to_vec(),
    };
    publisher.publish(std::slice::from_ref(&poison)).await.unwrap();
    publisher.close().await;
    let dead = stack
        .bus
        .settings
        .queue(tronpay_bus::topology::Queue::ApiPaymentDetected)
        .dead_letter();
    eventually(
        Duration::from_secs(30),
        "the poison message in the dead-letter queue",
        || async { (stack.bus.depth(&dead).await == 1).then_some(()) },
    )
    .await;
    // The consumer goes on with good messages.
    let (id, address) = stack.payment("1.23").await;
    stack.pay(address, "1.23");
    stack.wait_for(&id, "completed").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_node_that_lacks_a_block_is_never_taken_for_an_empty_block() {
    // Two nodes on the same chain; the second one is far behind (it answers
    // `[]` for blocks it does not have, as java-tron does).
    let (ahead, behind) = tronpay_e2e::same_chain_twice(42).await;
    let stack = Stack::without_watcher(|_| {}).await;
    let start = ahead.heights().head + 1;
    let mut ids = Vec::new();
    for index in 0..8 {
        let amount = format!("{}.75", index + 1);
        let address = tronpay_e2e::random_address();
        ids.push(tronpay_e2e::create_payment(&stack.api.url, &address, &amount, &format!("lag-{index}")).await);
        ahead.transfer(address, amount.parse().unwrap()).unwrap();
        ahead.mine(1).unwrap();
    }
    ahead.mine(tronpay_e2e::SOLID_LAG).unwrap();
    let nodes = format!("{},{}", ahead.url(), behind.url());
    let _watcher = tronpay_e2e::WatcherInstance::start(stack.db.url(), &stack.bus.settings, &nodes, |settings| {
        settings.scan_start_block = Some(start);
        settings.fetch_concurrency = 1;
        settings.catchup_batch = 1;
    })
    .await;
    // Once scanning is under way, the first node fails once: the client
    // moves to the node that is behind, mid catch-up.
    let begin = i64::try_from(start).unwrap();
    eventually(Duration::from_secs(30), "the scan to start", || async {
        (stack.cursor().await.unwrap_or(0) > begin).then_some(())
    })
    .await;
    ahead
        .set_faults(FaultPlan {
            mode: FaultMode::Http500,
            count: Some(1),
            retry_after: None,
            stall_ms: 0,
        })
        .unwrap();
    for id in &ids {
        stack.wait_for(id, "completed").await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_client_refuses_an_empty_answer_for_a_block_the_node_lacks() {
    let (ahead, behind) = tronpay_e2e::same_chain_twice(7).await;
    let sent = ahead
        .transfer(tronpay_e2e::random_address(), "5".parse().unwrap())
        .unwrap();
    ahead.mine(3).unwrap();
    let client = tronpay_tron::NodeClient::new(tronpay_tron::NodeSettings {
        urls: tronpay_tron::NodeSettings::parse_urls(&format!("{},{}", ahead.url(), behind.url())).unwrap(),
        api_key: None,
        timeout: Duration::from_secs(2),
        min_backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(100),
        stall_after: Duration::from_secs(3600),
    })
    .unwrap();
    ahead
        .set_faults(FaultPlan {
            mode: FaultMode::Http500,
            count: Some(1),
            retry_after: None,
            stall_ms: 0,
        })
        .unwrap();
    assert!(client.tx_infos(sent.block).await.is_err(), "the first node fails once");
    // Now on the node that is behind: it answers `[]`, which must not pass
    // for an empty block.
    let answer = client.tx_infos(sent.block).await;
    assert!(
        matches!(answer, Err(tronpay_tron::NodeError::Missing { .. })),
        "{answer:?}"
    );
    // And the client is back on the node that has it.
    let infos = client.tx_infos(sent.block).await.unwrap();
    assert_eq!(infos.len(), 1);
}

//! Payments completed by transfers on the sandbox chain, end to end: the
//! watcher reads blocks over HTTP, events cross the real RabbitMQ, the API
//! matches them in PostgreSQL.

// Integration tests: a failed step should stop the test loudly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use serde_json::Value;
use tronpay_e2e::{Stack, eventually, sql_values, wait_for_status};
use tronpay_sandbox::{Output, TransferRequest};

#[tokio::test(flavor = "multi_thread")]
async fn an_exact_transfer_completes_the_payment() {
    let stack = Stack::start().await;
    let (id, address) = stack.payment("12.34").await;
    let sent = stack.send(address, "12.34");
    // Seen at the tip first: recorded as detected, not yet counted.
    eventually(Duration::from_secs(30), "the detection", || async {
        stack.log_of(&id).await.contains(&"detected".to_owned()).then_some(())
    })
    .await;
    assert_eq!(
        tronpay_e2e::payment_status(&stack.api.url, &id).await["status"],
        "pending"
    );
    stack.finalize();

    let body = wait_for_status(&stack.api.url, &id, "completed").await;
    let text = body.to_string();
    assert!(text.contains(r#""received_amount_usdt":12.34"#), "{text}");
    assert_eq!(body["transaction_hash"], sent.txid.as_str());
    assert!(body["completed_at"].as_f64().is_some());
    assert_eq!(stack.log_of(&id).await, ["created", "detected", "completed"]);

    // The API's health and stats show the chain as the watcher follows it.
    let health: Value = tronpay_e2e::http_client()
        .get(format!("{}/health", stack.api.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["broker"], "connected", "{health}");
    for field in ["head_block", "final_block", "cursor_block", "lag_blocks"] {
        assert!(health["chain"][field].is_i64(), "{field} in {health}");
    }
    let watcher = stack.watcher.as_ref().unwrap().health().await;
    assert_eq!(
        (watcher["status"].as_str(), watcher["leader"].as_bool()),
        (Some("healthy"), Some(true)),
        "{watcher}"
    );
    assert_eq!(watcher["database"], "connected");

    // One webhook delivery for the completion, with the original body.
    let deliveries = sql_values(
        &stack.db,
        "SELECT event_type, payload::text AS payload FROM webhook_deliveries",
    )
    .await;
    assert_eq!(deliveries.len(), 1);
    assert_eq!(deliveries[0]["event_type"], "payment.completed");
    let payload: Value = serde_json::from_str(deliveries[0]["payload"].as_str().unwrap()).unwrap();
    for field in [
        "payment_id",
        "order_id",
        "wallet_address",
        "currency",
        "expected_amount_usdt",
        "received_amount_usdt",
        "transaction_hash",
        "block_timestamp",
        "status",
        "event",
    ] {
        assert!(payload.get(field).is_some(), "webhook body has {field}: {payload}");
    }
    assert_eq!(payload["currency"], "USDT_TRC20");
    assert_eq!(payload["status"], "completed");
    assert!(
        deliveries[0]["payload"]
            .as_str()
            .unwrap()
            .contains(r#""expected_amount_usdt": 12.34"#)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn two_payments_of_one_amount_on_one_address_complete_oldest_first() {
    let stack = Stack::start().await;
    let (first, address) = stack.payment("10").await;
    let second = tronpay_e2e::create_payment(&stack.api.url, &address, "10", "second-order").await;
    stack.send(address, "10");
    stack.finalize();
    wait_for_status(&stack.api.url, &first, "completed").await;
    assert_eq!(
        tronpay_e2e::payment_status(&stack.api.url, &second).await["status"],
        "pending"
    );

    stack.send(address, "10");
    stack.finalize();
    wait_for_status(&stack.api.url, &second, "completed").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn partial_payments_add_up_and_complete() {
    let stack = Stack::start().await;
    let (id, address) = stack.payment("10").await;
    stack.send(address, "4.5");
    stack.finalize();
    eventually(Duration::from_secs(30), "the partial credit", || async {
        let body = tronpay_e2e::payment_status(&stack.api.url, &id).await;
        let received = body["received_amount_usdt"].as_number().map(ToString::to_string);
        (received.as_deref() == Some("4.5")).then_some(())
    })
    .await;
    assert_eq!(
        tronpay_e2e::payment_status(&stack.api.url, &id).await["status"],
        "pending"
    );

    let last = stack.send(address, "5.5");
    stack.finalize();
    let body = wait_for_status(&stack.api.url, &id, "completed").await;
    assert_eq!(body["received_amount_usdt"].to_string(), "10.0");
    assert_eq!(body["transaction_hash"], last.txid.as_str());
    let log = stack.log_of(&id).await;
    assert!(
        log.contains(&"partial".to_owned()) && log.ends_with(&["completed".to_owned()]),
        "{log:?}"
    );
    let kinds = sql_values(&stack.db, "SELECT match_kind FROM transfers ORDER BY block_number").await;
    assert_eq!(
        kinds,
        [
            serde_json::json!({"match_kind": "partial"}),
            serde_json::json!({"match_kind": "completing"})
        ]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_overpayment_completes_and_is_recorded() {
    let stack = Stack::start().await;
    let (id, address) = stack.payment("10").await;
    stack.send(address, "12.5");
    stack.finalize();
    let body = wait_for_status(&stack.api.url, &id, "completed").await;
    assert_eq!(body["received_amount_usdt"].to_string(), "12.5");
    assert!(stack.log_of(&id).await.contains(&"overpaid".to_owned()));
    let kinds = sql_values(&stack.db, "SELECT match_kind FROM transfers").await;
    assert_eq!(kinds, [serde_json::json!({"match_kind": "overpaid"})]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_transfer_is_ignored() {
    let stack = Stack::start().await;
    let (id, address) = stack.payment("10").await;
    let mut failed = TransferRequest::new(address, "10".parse().unwrap());
    failed.failed = true;
    stack.sandbox.submit(&failed).unwrap();
    stack.sandbox.mine(1).unwrap();
    stack.finalize();
    // A later good transfer proves the failed block was scanned.
    let good = stack.send(address, "10");
    stack.finalize();
    let body = wait_for_status(&stack.api.url, &id, "completed").await;
    assert_eq!(body["transaction_hash"], good.txid.as_str());
    assert_eq!(sql_values(&stack.db, "SELECT txid FROM transfers").await.len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn one_transaction_paying_two_watched_addresses_completes_both() {
    let stack = Stack::start().await;
    let (first, first_address) = stack.payment("3").await;
    let (second, second_address) = stack.payment("4").await;
    let mut router = TransferRequest::new(first_address, "3".parse().unwrap());
    router.router = true;
    router.outputs.push(Output {
        to: second_address,
        amount: "4".parse().unwrap(),
    });
    let sent = stack.sandbox.submit(&router).unwrap();
    assert_eq!(sent.log_indexes.len(), 2);
    stack.sandbox.mine(1).unwrap();
    stack.finalize();
    let a = wait_for_status(&stack.api.url, &first, "completed").await;
    let b = wait_for_status(&stack.api.url, &second, "completed").await;
    assert_eq!(a["transaction_hash"], sent.txid.as_str());
    assert_eq!(b["transaction_hash"], sent.txid.as_str());
    let rows = sql_values(&stack.db, "SELECT txid, log_index FROM transfers ORDER BY log_index").await;
    assert_eq!(rows.len(), 2, "identity is (txid, log index): {rows:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn without_early_detection_only_final_blocks_are_read_and_payments_complete() {
    let stack = Stack::start_with(|_| {}, |settings| settings.detect_unconfirmed = false).await;
    for round in 0..3 {
        let (id, address) = stack.payment("2.5").await;
        stack.send(address, "2.5");
        stack.finalize();
        wait_for_status(&stack.api.url, &id, "completed").await;
        assert!(
            !stack.log_of(&id).await.contains(&"detected".to_owned()),
            "round {round}"
        );
    }
}

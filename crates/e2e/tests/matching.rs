//! Payments completed by transfers on the sandbox chain, end to end: the
//! watcher reads blocks over HTTP, events cross the real RabbitMQ, the API
//! matches them in PostgreSQL.

// Integration tests: a failed step should stop the test loudly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use serde_json::Value;
use tronpay_domain::UsdtAmount;
use tronpay_e2e::{Stack, eventually, sql_values};
use tronpay_sandbox::{Output, TransferRequest};

#[tokio::test(flavor = "multi_thread")]
async fn an_exact_transfer_completes_the_payment() {
    let stack = Stack::start().await;
    let (id, address) = stack.payment("12.34").await;
    let sent = stack.send(address, "12.34");
    // Seen at the tip first: recorded as detected, not yet counted.
    stack.logged(&id, "detected").await;
    assert_eq!(
        tronpay_e2e::payment_status(&stack.api.url, &id).await["status"],
        "pending"
    );
    stack.finalize();

    let body = stack.wait_for(&id, "completed").await;
    let text = body.to_string();
    assert!(text.contains(r#""received_amount_usdt":12.34"#), "{text}");
    assert_eq!(body["transaction_hash"], sent.txid.as_str());
    assert!(body["completed_at"].as_f64().is_some());
    assert_eq!(stack.log_of(&id).await, ["created", "detected", "completed"]);

    // The API's health and stats show the chain as the watcher follows it.
    let health = tronpay_e2e::get_json(&format!("{}/health", stack.api.url)).await;
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
    stack.pay(address, "10");
    stack.wait_for(&first, "completed").await;
    assert_eq!(
        tronpay_e2e::payment_status(&stack.api.url, &second).await["status"],
        "pending"
    );

    stack.pay(address, "10");
    stack.wait_for(&second, "completed").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn partial_payments_add_up_and_complete() {
    let stack = Stack::start().await;
    let (id, address) = stack.payment("10").await;
    stack.pay(address, "4.5");
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

    let last = stack.pay(address, "5.5");
    let body = stack.wait_for(&id, "completed").await;
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
    stack.pay(address, "12.5");
    let body = stack.wait_for(&id, "completed").await;
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
    let good = stack.pay(address, "10");
    let body = stack.wait_for(&id, "completed").await;
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
    let a = stack.wait_for(&first, "completed").await;
    let b = stack.wait_for(&second, "completed").await;
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
        stack.pay(address, "2.5");
        stack.wait_for(&id, "completed").await;
        assert!(
            !stack.log_of(&id).await.contains(&"detected".to_owned()),
            "round {round}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn zero_value_and_dust_transfers_never_touch_a_payment() {
    let stack = Stack::start().await;
    let merchant = tronpay_e2e::random_address();
    let payer = tronpay_e2e::random_address();
    let stranger = tronpay_e2e::random_address();
    let id = tronpay_e2e::create_payment(&stack.api.url, &merchant, "30", "poisoned-order").await;
    // The merchant asked for every event: a spam transfer must not cause one.
    stack
        .db
        .client()
        .await
        .batch_execute(&format!(
            "UPDATE payments SET notify_events = '{{payment.detected,payment.late,payment.expired}}' WHERE id = '{id}'"
        ))
        .await
        .unwrap();
    // Address poisoning: the stranger calls transferFrom(payer, merchant, 0)
    // (the log is Transfer(payer, merchant, 0), receipt SUCCESS), then sends
    // dust of one base unit; both seen at the tip, then final.
    let zero = stack
        .sandbox
        .submit(
            &TransferRequest::new(merchant, UsdtAmount::ZERO)
                .from(payer)
                .spent_by(stranger),
        )
        .unwrap();
    let dust = stack
        .sandbox
        .submit(&TransferRequest::new(merchant, "0.000001".parse().unwrap()).from(stranger))
        .unwrap();
    stack.sandbox.mine(1).unwrap();
    // Seen at the tip first, and those detections applied by the API.
    eventually(Duration::from_secs(30), "the detections to be applied", || async {
        let detected = sql_values(&stack.db, "SELECT txid FROM transfers WHERE status = 'detected'").await;
        let applied = sql_values(&stack.db, "SELECT message_id FROM processed_messages").await;
        (detected.len() == 2 && applied.len() == 2).then_some(())
    })
    .await;
    stack.finalize();
    let rows = eventually(Duration::from_secs(30), "both transfers to be applied", || async {
        let rows = sql_values(
            &stack.db,
            "SELECT txid, from_address, amount_usdt::text AS amount, match_kind, payment_id, detected_payment_id \
             FROM transfers WHERE applied_at IS NOT NULL ORDER BY amount_usdt",
        )
        .await;
        (rows.len() == 2).then_some(rows)
    })
    .await;
    // Recorded for the operator as ignored, and nothing more.
    assert_eq!(
        rows,
        [
            serde_json::json!({"txid": zero.txid.as_str(), "from_address": payer.to_base58(), "amount": "0.000000",
                               "match_kind": "ignored", "payment_id": null, "detected_payment_id": null}),
            serde_json::json!({"txid": dust.txid.as_str(), "from_address": stranger.to_base58(), "amount": "0.000001",
                               "match_kind": "ignored", "payment_id": null, "detected_payment_id": null}),
        ]
    );
    let body = tronpay_e2e::payment_status(&stack.api.url, &id).await;
    assert_eq!(
        (
            &body["status"],
            &body["received_amount_usdt"],
            &body["transaction_hash"]
        ),
        (&serde_json::json!("pending"), &Value::Null, &Value::Null),
        "{body}"
    );
    assert_eq!(stack.log_of(&id).await, ["created"]);
    assert!(
        sql_values(&stack.db, "SELECT id FROM webhook_deliveries")
            .await
            .is_empty()
    );

    // The buyer's real payment still completes it, with the buyer's hash.
    let paid = stack.pay(merchant, "30");
    let body = stack.wait_for(&id, "completed").await;
    assert_eq!(body["transaction_hash"], paid.txid.as_str());
    assert_eq!(body["received_amount_usdt"].to_string(), "30.0");
    let log = stack.log_of(&id).await;
    assert!(
        log.first().map(String::as_str) == Some("created")
            && log.last().map(String::as_str) == Some("completed")
            && !log.contains(&"partial".to_owned()),
        "{log:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_minimum_credit_is_configurable_and_the_rest_of_a_payment_always_counts() {
    let stack = Stack::start_with(|api| api.min_credit_usdt = "1".parse().unwrap(), |_| {}).await;
    let (id, address) = stack.payment("10").await;
    // Below MIN_CREDIT_USDT: ignored. At it and above: credited.
    stack.send(address, "0.5");
    stack.pay(address, "9.2");
    eventually(Duration::from_secs(30), "the partial credit", || async {
        let body = tronpay_e2e::payment_status(&stack.api.url, &id).await;
        (body["received_amount_usdt"]
            .as_number()
            .map(ToString::to_string)
            .as_deref()
            == Some("9.2"))
        .then_some(())
    })
    .await;
    // The last 0.8 is below the minimum but is exactly what is owed.
    let last = stack.pay(address, "0.8");
    let body = stack.wait_for(&id, "completed").await;
    assert_eq!(body["transaction_hash"], last.txid.as_str());
    let kinds = sql_values(&stack.db, "SELECT match_kind FROM transfers ORDER BY block_number").await;
    assert_eq!(
        kinds,
        [
            serde_json::json!({"match_kind": "ignored"}),
            serde_json::json!({"match_kind": "partial"}),
            serde_json::json!({"match_kind": "completing"})
        ]
    );
}

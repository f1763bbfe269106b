//! Time windows, reorganisations and replays.

// Integration tests: a failed step should stop the test loudly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use serde_json::json;
use tronpay_e2e::{Stack, eventually, payment_status, sql_values, wait_for_status};

async fn execute(stack: &Stack, sql: &str) {
    stack.db.client().await.batch_execute(sql).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_transfer_older_than_the_payment_is_ignored() {
    let stack = Stack::start().await;
    let (id, address) = stack.payment("10").await;
    // The payment is made to start an hour from now: the transfer predates it.
    execute(&stack, &format!("UPDATE payments SET created_at = created_at + interval '1 hour', expires_at = expires_at + interval '1 hour' WHERE id = '{id}'")).await;
    stack.send(address, "10");
    stack.finalize();
    let rows = eventually(Duration::from_secs(30), "the transfer to be applied", || async {
        let rows = sql_values(
            &stack.db,
            "SELECT match_kind, payment_id FROM transfers WHERE applied_at IS NOT NULL",
        )
        .await;
        (!rows.is_empty()).then_some(rows)
    })
    .await;
    assert_eq!(rows, [json!({"match_kind": "unmatched", "payment_id": null})]);
    assert_eq!(payment_status(&stack.api.url, &id).await["status"], "pending");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_transfer_after_expiry_is_late_and_does_not_complete() {
    let stack = Stack::start().await;
    let (id, address) = stack.payment("10").await;
    execute(
        &stack,
        &format!("UPDATE payments SET expires_at = created_at + interval '1 millisecond' WHERE id = '{id}'"),
    )
    .await;
    stack.send(address, "10");
    stack.finalize();
    let body = wait_for_status(&stack.api.url, &id, "expired").await;
    assert_eq!(body["transaction_hash"], serde_json::Value::Null);
    eventually(Duration::from_secs(30), "the late record", || async {
        stack.log_of(&id).await.contains(&"late".to_owned()).then_some(())
    })
    .await;
    let log = stack.log_of(&id).await;
    assert!(!log.contains(&"completed".to_owned()), "{log:?}");
    assert_eq!(log.iter().filter(|event| *event == "expired").count(), 1, "{log:?}");
    assert_eq!(
        sql_values(&stack.db, "SELECT match_kind FROM transfers").await,
        [json!({"match_kind": "late"})]
    );
    // Payments from the original /create_payment get completion webhooks only.
    assert!(
        sql_values(&stack.db, "SELECT id FROM webhook_deliveries")
            .await
            .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unpaid_payment_expires_once_the_chain_passed_its_deadline() {
    let stack = Stack::start().await;
    let (id, _) = stack.payment("10").await;
    execute(
        &stack,
        &format!("UPDATE payments SET expires_at = created_at + interval '1 millisecond' WHERE id = '{id}'"),
    )
    .await;
    // The sweep waits for a final block later than the deadline.
    stack.sandbox.mine(1).unwrap();
    stack.finalize();
    wait_for_status(&stack.api.url, &id, "expired").await;
    assert_eq!(stack.log_of(&id).await, ["created", "expired"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tip_transfer_missing_from_the_final_chain_is_dropped() {
    let stack = Stack::start().await;
    let (id, address) = stack.payment("10").await;
    let sent = stack.send(address, "10");
    eventually(Duration::from_secs(30), "the detection", || async {
        stack.log_of(&id).await.contains(&"detected".to_owned()).then_some(())
    })
    .await;
    // The block holding it is replaced by one without it.
    stack.sandbox.reorg(1, std::slice::from_ref(&sent.txid)).unwrap();
    stack.finalize();
    eventually(Duration::from_secs(30), "the drop", || async {
        stack.log_of(&id).await.contains(&"dropped".to_owned()).then_some(())
    })
    .await;
    assert_eq!(
        sql_values(&stack.db, "SELECT status FROM transfers").await,
        [json!({"status": "dropped"})]
    );
    assert_eq!(payment_status(&stack.api.url, &id).await["status"], "pending");

    // A real payment afterwards still completes it.
    stack.send(address, "10");
    stack.finalize();
    wait_for_status(&stack.api.url, &id, "completed").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn replayed_blocks_and_redelivered_events_count_nothing_twice() {
    let mut stack = Stack::start().await;
    let (id, address) = stack.payment("10").await;
    stack.send(address, "10");
    stack.finalize();
    wait_for_status(&stack.api.url, &id, "completed").await;
    let cursor = stack.cursor().await.unwrap();

    // Every event is published again (same message ids) …
    execute(&stack, "UPDATE outbox SET published_at = NULL").await;
    // … and the watcher restarts from five blocks back, as after restoring a
    // backup: it replays blocks it already processed.
    stack.watcher.take().unwrap().stop().await;
    execute(
        &stack,
        &format!(
            "UPDATE chain_state SET cursor_block = {}, tip_block = {}",
            cursor - 5,
            cursor - 5
        ),
    )
    .await;
    stack.watcher = Some(stack.start_watcher(|_| {}).await);
    stack.sandbox.mine(3).unwrap();
    eventually(Duration::from_secs(30), "the replay to pass the old cursor", || async {
        (stack.cursor().await.unwrap() > cursor).then_some(())
    })
    .await;
    eventually(
        Duration::from_secs(30),
        "the republished events to be consumed",
        || async {
            let backlog = sql_values(&stack.db, "SELECT count(*) AS n FROM outbox WHERE published_at IS NULL").await;
            (backlog[0]["n"] == 0).then_some(())
        },
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;

    assert_eq!(
        stack
            .log_of(&id)
            .await
            .iter()
            .filter(|event| *event == "completed")
            .count(),
        1
    );
    assert_eq!(
        sql_values(&stack.db, "SELECT id FROM webhook_deliveries").await.len(),
        1
    );
    assert_eq!(sql_values(&stack.db, "SELECT txid FROM transfers").await.len(), 1);
    let duplicates = sql_values(&stack.db, "SELECT count(*) AS n FROM processed_messages").await;
    assert!(duplicates[0]["n"].as_i64().unwrap() >= 1);
}

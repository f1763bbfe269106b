//! Time windows, reorganisations and replays.

// Integration tests: a failed step should stop the test loudly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use serde_json::json;
use tronpay_domain::matching::MatchRules;
use tronpay_e2e::{Stack, eventually, payment_status, sql_values};

/// The default matching rules (`MIN_CREDIT_USDT` 0.01).
static RULES: std::sync::LazyLock<MatchRules> = std::sync::LazyLock::new(MatchRules::default);

async fn execute(stack: &Stack, sql: &str) {
    stack.db.client().await.batch_execute(sql).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_transfer_older_than_the_payment_is_ignored() {
    let stack = Stack::start().await;
    let (id, address) = stack.payment("10").await;
    // The payment is made to start an hour from now: the transfer predates it.
    execute(&stack, &format!("UPDATE payments SET created_at = created_at + interval '1 hour', expires_at = expires_at + interval '1 hour' WHERE id = '{id}'")).await;
    stack.pay(address, "10");
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
    stack.expire_now(&id).await;
    stack.pay(address, "10");
    let body = stack.wait_for(&id, "expired").await;
    assert_eq!(body["transaction_hash"], serde_json::Value::Null);
    stack.logged(&id, "late").await;
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
    stack.expire_now(&id).await;
    // The sweep waits for a final block later than the deadline.
    stack.sandbox.mine(1).unwrap();
    stack.finalize();
    stack.wait_for(&id, "expired").await;
    assert_eq!(stack.log_of(&id).await, ["created", "expired"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tip_transfer_missing_from_the_final_chain_is_dropped() {
    let stack = Stack::start().await;
    let (id, address) = stack.payment("10").await;
    let sent = stack.send(address, "10");
    stack.logged(&id, "detected").await;
    // The block holding it is replaced by one without it.
    stack.sandbox.reorg(1, std::slice::from_ref(&sent.txid)).unwrap();
    stack.finalize();
    stack.logged(&id, "dropped").await;
    assert_eq!(
        sql_values(&stack.db, "SELECT status FROM transfers").await,
        [json!({"status": "dropped"})]
    );
    assert_eq!(payment_status(&stack.api.url, &id).await["status"], "pending");

    // A real payment afterwards still completes it.
    stack.pay(address, "10");
    stack.wait_for(&id, "completed").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn replayed_blocks_and_redelivered_events_count_nothing_twice() {
    let mut stack = Stack::start().await;
    // Enough chain behind the payment to rewind into.
    stack.sandbox.mine(10).unwrap();
    let (id, address) = stack.payment("10").await;
    stack.pay(address, "10");
    stack.wait_for(&id, "completed").await;
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
    let queue = stack
        .bus
        .settings
        .queue(tronpay_bus::topology::Queue::ApiPaymentDetected)
        .name;
    eventually(
        Duration::from_secs(30),
        "the republished events to be published and consumed",
        || async {
            let backlog = sql_values(&stack.db, "SELECT count(*) AS n FROM outbox WHERE published_at IS NULL").await;
            (backlog[0]["n"] == 0 && stack.bus.depth(&queue).await == 0).then_some(())
        },
    )
    .await;

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
    let logs = sql_values(&stack.db, "SELECT count(*) AS n FROM payment_logs").await;
    assert_eq!(logs[0]["n"], stack.log_of(&id).await.len(), "nothing was logged twice");
}

/// Inserts a confirmed transfer directly (as the watcher would have).
async fn confirmed_transfer(
    stack: &Stack,
    txid: &str,
    to: &str,
    amount: &str,
    block: i64,
    time_sql: &str,
    confirmed_ago_seconds: i64,
) {
    execute(
        stack,
        &format!(
            "INSERT INTO transfers (txid, log_index, block_number, block_time, from_address, to_address, amount_usdt, status, confirmed_at) \
             VALUES ('{txid}', 0, {block}, {time_sql}, 'TWpZXLfsvVuQuJZLkdWNY7XY2teePqPpz7', '{to}', {amount}, 'confirmed', \
                     (now() AT TIME ZONE 'utc') - interval '{confirmed_ago_seconds} seconds')"
        ),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn transfers_apply_in_chain_order_whatever_order_their_events_arrive_in() {
    let stack = Stack::without_watcher(|api| api.api_process_events = false).await;
    let (id, address) = stack.payment("10").await;
    let payment = &sql_values(
        &stack.db,
        &format!("SELECT created_at::text AS created, expires_at::text AS expires FROM payments WHERE id = '{id}'"),
    )
    .await[0];
    let (on_time, late) = ("a".repeat(64), "b".repeat(64));
    confirmed_transfer(
        &stack,
        &on_time,
        &address.to_base58(),
        "10",
        100,
        &format!(
            "'{}'::timestamp + interval '1 second'",
            payment["created"].as_str().unwrap()
        ),
        0,
    )
    .await;
    confirmed_transfer(
        &stack,
        &late,
        &address.to_base58(),
        "1",
        200,
        &format!(
            "'{}'::timestamp + interval '1 hour'",
            payment["expires"].as_str().unwrap()
        ),
        0,
    )
    .await;

    // The later transfer's event is handled first.
    let incoming = detected_event(&late, address, "1", 200);
    let pool = tronpay_db::DbPool::new(&stack.db.settings(), "test").unwrap();
    tronpay_api::chain_events::handle(
        &pool,
        &tronpay_api::chain_events::Attempts::default(),
        &MatchRules::default(),
        &incoming,
    )
    .await
    .unwrap();

    let body = payment_status(&stack.api.url, &id).await;
    assert_eq!(body["status"], "completed", "the on-time transfer paid it: {body}");
    assert_eq!(body["transaction_hash"], on_time.as_str());
    let kinds = sql_values(&stack.db, "SELECT match_kind FROM transfers ORDER BY block_number").await;
    assert_eq!(
        kinds,
        [json!({"match_kind": "exact"}), json!({"match_kind": "unmatched"})]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_transfer_whose_event_never_came_is_applied_by_the_reconciler() {
    let stack = Stack::without_watcher(|_| {}).await;
    let (id, address) = stack.payment("10").await;
    let created = sql_values(
        &stack.db,
        &format!("SELECT created_at::text AS created FROM payments WHERE id = '{id}'"),
    )
    .await[0]["created"]
        .clone();
    confirmed_transfer(
        &stack,
        &"c".repeat(64),
        &address.to_base58(),
        "10",
        100,
        &format!("'{}'::timestamp + interval '1 second'", created.as_str().unwrap()),
        120,
    )
    .await;
    stack.wait_for(&id, "completed").await;
}

fn detected_event(txid: &str, to: tronpay_domain::TronAddress, amount: &str, block: u64) -> tronpay_bus::Incoming {
    let event = tronpay_domain::events::PaymentDetected {
        transfer: tronpay_domain::Transfer {
            id: tronpay_domain::TransferId {
                txid: tronpay_domain::TxId::parse(txid).unwrap(),
                log_index: 0,
            },
            from: "TWpZXLfsvVuQuJZLkdWNY7XY2teePqPpz7".parse().unwrap(),
            to,
            amount: amount.parse().unwrap(),
            block_number: block,
            block_time_ms: 0,
        },
        state: tronpay_domain::events::TransferState::Confirmed,
    };
    tronpay_bus::Incoming {
        message_id: Some(uuid::Uuid::new_v4().to_string()),
        routing_key: "payment.detected".into(),
        payload: serde_json::to_vec(&event).unwrap(),
        redelivered: false,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn deliveries_in_hand_are_applied_together_and_a_bad_one_holds_back_none() {
    use tronpay_api::chain_events::{Attempts, handle_batch};
    use tronpay_bus::HandlerError;

    let stack = Stack::without_watcher(|api| api.api_process_events = false).await;
    let pool = tronpay_db::DbPool::new(&stack.db.settings(), "test").unwrap();
    let attempts = Attempts::default();
    // A payment on its own address, paid by a confirmed transfer in the table.
    let paid = async |n: usize| {
        let mut events = Vec::new();
        let mut ids = Vec::new();
        for _ in 0..n {
            let (id, address) = stack.payment("10").await;
            let txid = format!("{:064x}", uuid::Uuid::new_v4().as_u128());
            confirmed_transfer(
                &stack,
                &txid,
                &address.to_base58(),
                "10",
                100,
                "now() AT TIME ZONE 'utc'",
                0,
            )
            .await;
            events.push(detected_event(&txid, address, "10", 100));
            ids.push(id);
        }
        (events, ids)
    };
    let completions = async || {
        sql_values(
            &stack.db,
            "SELECT count(*) AS n, count(DISTINCT payment_id) AS payments FROM payment_logs WHERE event_type = 'completed'",
        )
        .await[0]
            .clone()
    };

    // Twenty at once: one transaction, all completed.
    let (first, _) = paid(20).await;
    let outcome = handle_batch(&pool, &attempts, &RULES, &first).await;
    assert!(outcome.together, "{outcome:?}");
    assert!(
        outcome.results.iter().all(|result| matches!(result, Ok(true))),
        "{outcome:?}"
    );
    assert_eq!(completions().await, json!({"n": 20, "payments": 20}));

    // Delivered again (a redelivery after a lost ack): nothing more happens.
    let again = handle_batch(&pool, &attempts, &RULES, &first).await;
    assert!(
        again.results.iter().all(|result| matches!(result, Ok(false))),
        "{again:?}"
    );
    assert_eq!(completions().await, json!({"n": 20, "payments": 20}));

    // Among five good ones, a malformed message and one naming a transfer
    // that is not in the table: the batch transaction fails, each is then
    // applied alone, and only the two bad ones are rejected.
    let (mut mixed, ids) = paid(5).await;
    let mut malformed = mixed[0].clone();
    malformed.payload = b"{not json".to_vec();
    mixed.insert(2, malformed);
    mixed.insert(
        4,
        detected_event(&"f".repeat(64), tronpay_e2e::random_address(), "1", 100),
    );
    let outcome = handle_batch(&pool, &attempts, &RULES, &mixed).await;
    assert!(!outcome.together, "{outcome:?}");
    for (index, result) in outcome.results.iter().enumerate() {
        match index {
            2 | 4 => assert!(matches!(result, Err(HandlerError::Reject(_))), "{index}: {result:?}"),
            _ => assert!(matches!(result, Ok(true)), "{index}: {result:?}"),
        }
    }
    assert_eq!(completions().await, json!({"n": 25, "payments": 25}));
    for id in &ids {
        assert_eq!(payment_status(&stack.api.url, id).await["status"], "completed");
    }

    // Already applied and new ones interleaved (the transaction takes them
    // in address order): each gets its own answer back.
    let (fresh, _) = paid(6).await;
    let mut interleaved = Vec::new();
    for (index, event) in fresh.iter().enumerate() {
        interleaved.push(event.clone());
        interleaved.push(first[index * 3].clone());
    }
    let outcome = handle_batch(&pool, &attempts, &RULES, &interleaved).await;
    assert!(outcome.together, "{outcome:?}");
    for (index, result) in outcome.results.iter().enumerate() {
        let new = index % 2 == 0;
        assert!(
            matches!(result, Ok(enqueued) if *enqueued == new),
            "{index}: {result:?}"
        );
    }
    assert_eq!(completions().await, json!({"n": 31, "payments": 31}));

    // Two batches at once over the same addresses in opposite orders, with
    // the same messages in both (as when a redelivery meets the original):
    // both finish, and each payment completes once.
    let (overlap, _) = paid(8).await;
    let mut reversed = overlap.clone();
    reversed.reverse();
    let (left, right) = tokio::join!(
        handle_batch(&pool, &attempts, &RULES, &overlap),
        handle_batch(&pool, &attempts, &RULES, &reversed)
    );
    for result in left.results.iter().chain(&right.results) {
        assert!(result.is_ok(), "{result:?}");
    }
    assert_eq!(completions().await, json!({"n": 39, "payments": 39}));

    // Through the batcher, as the consumer uses it: concurrent deliveries,
    // each answered.
    let mut tasks = tronpay_runtime::supervise::Tasks::new();
    let batcher = tronpay_api::chain_events::Batcher::start(
        pool.clone(),
        std::sync::Arc::new(Attempts::default()),
        MatchRules::default(),
        2,
        64,
        &mut tasks,
    );
    let (through, _) = paid(10).await;
    let answers = futures_util::future::join_all(through.iter().map(|incoming| batcher.handle(incoming.clone()))).await;
    assert!(answers.iter().all(|answer| matches!(answer, Ok(true))), "{answers:?}");
    assert_eq!(completions().await, json!({"n": 49, "payments": 49}));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_corrupt_row_is_skipped_and_dead_lettered_and_the_reconciler_goes_on() {
    use tronpay_api::chain_events::{Attempts, handle, reconcile};
    use tronpay_bus::HandlerError;

    let stack = Stack::without_watcher(|api| api.api_process_events = false).await;
    let pool = tronpay_db::DbPool::new(&stack.db.settings(), "test").unwrap();
    // Two addresses with a confirmed transfer waiting; the first one's
    // payment has an amount no payment can have (a corrupt row).
    let (bad, bad_address) = stack.payment("10").await;
    // (The schema refuses such an amount; a restore from elsewhere might not.)
    execute(
        &stack,
        &format!(
            "ALTER TABLE payments DROP CONSTRAINT ck_payments_expected_amount_positive; \
             UPDATE payments SET expected_amount_usdt = -10 WHERE id = '{bad}'"
        ),
    )
    .await;
    let (good, good_address) = stack.payment("10").await;
    let bad_txid = format!("{:064x}", 1);
    for (txid, address) in [(bad_txid.clone(), bad_address), (format!("{:064x}", 2), good_address)] {
        confirmed_transfer(
            &stack,
            &txid,
            &address.to_base58(),
            "10",
            100,
            "now() AT TIME ZONE 'utc'",
            60,
        )
        .await;
    }

    // Its event is dead-lettered at once (not retried as if the database
    // were down), naming the row.
    let outcome = handle(
        &pool,
        &Attempts::default(),
        &RULES,
        &detected_event(&bad_txid, bad_address, "10", 100),
    )
    .await;
    match outcome {
        Err(HandlerError::Reject(reason)) => assert!(reason.contains(&bad), "{reason}"),
        other => panic!("expected a rejection, got {other:?}"),
    }

    // The reconciler's round goes past it, completes the other payment, and
    // leaves the bad address out of later rounds.
    let mut skipped = tronpay_api::skips::Skips::default();
    let (handled, _) = reconcile(&pool, &RULES, 0, &mut skipped).await.unwrap();
    assert_eq!(handled, 2);
    assert_eq!(payment_status(&stack.api.url, &good).await["status"], "completed");
    assert_eq!(skipped.current(), [bad_address.to_base58()]);
    let (handled, _) = reconcile(&pool, &RULES, 0, &mut skipped).await.unwrap();
    assert_eq!(handled, 0, "the skipped address is not tried again");
    assert_eq!(
        sql_values(
            &stack.db,
            &format!("SELECT applied_at FROM transfers WHERE txid = '{bad_txid}'")
        )
        .await,
        [json!({"applied_at": null})]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_corrupt_payment_does_not_stop_the_others_from_expiring() {
    let stack = Stack::without_watcher(|api| api.api_process_events = false).await;
    let pool = tronpay_db::DbPool::new(&stack.db.settings(), "test").unwrap();
    let (bad, _) = stack.payment("10").await;
    let (good, _) = stack.payment("10").await;
    // Both past their deadline, the chain past both; the bad one asked for
    // an expiry webhook, whose body needs its (unreadable) amount.
    execute(
        &stack,
        &format!(
            "ALTER TABLE payments DROP CONSTRAINT ck_payments_expected_amount_positive; \
             UPDATE payments SET expected_amount_usdt = -10, notify_events = '{{payment.expired}}' WHERE id = '{bad}'; \
             UPDATE payments SET expires_at = created_at - interval '1 hour' WHERE id IN ('{bad}', '{good}'); \
             INSERT INTO chain_state (cursor_block, cursor_block_time, tip_block) VALUES (100, now() AT TIME ZONE 'utc', 100);"
        ),
    )
    .await;
    let mut skipped = tronpay_api::skips::Skips::default();
    let (expired, _) = tronpay_api::expiry::sweep(&pool, &mut skipped).await.unwrap();
    assert_eq!(expired, 1);
    assert_eq!(payment_status(&stack.api.url, &good).await["status"], "expired");
    assert_eq!(
        sql_values(&stack.db, &format!("SELECT status FROM payments WHERE id = '{bad}'")).await,
        [json!({"status": "pending"})]
    );
    assert_eq!(skipped.current(), std::slice::from_ref(&bad));
    // Later sweeps leave it out instead of failing on it again.
    assert_eq!(tronpay_api::expiry::sweep(&pool, &mut skipped).await.unwrap().0, 0);
}

//! Webhooks end to end: a payment completes on the sandbox chain, the
//! dispatcher delivers a signed webhook to a receiver running in the test.

// Integration tests: a failed step should stop the test loudly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::AsyncReadExt;
use tronpay_domain::TronAddress;
use tronpay_e2e::receiver::{Receiver, Reply, verify_with_reference};
use tronpay_e2e::{DispatcherInstance, Stack, TEST_WEBHOOK_SECRET, eventually, sql_values};

/// A stack whose API accepts callbacks to the local receivers, plus a dispatcher.
async fn stack_with_dispatcher(
    tweak: impl FnOnce(&mut tronpay_webhook_dispatcher::DispatcherSettings),
) -> (Stack, DispatcherInstance) {
    let stack = Stack::start_with(|api| api.callback_allow_private = true, |_| {}).await;
    let dispatcher = DispatcherInstance::start(stack.db.url(), &stack.bus.settings, tweak).await;
    (stack, dispatcher)
}

async fn paid_payment(stack: &Stack, callback: &str, amount: &str) -> String {
    let (id, address) = stack.payment_with_callback(amount, callback).await;
    stack.pay(address, amount);
    stack.wait_for(&id, "completed").await;
    id
}

async fn received_at_least(receiver: &Receiver, count: usize) -> Vec<tronpay_e2e::receiver::Received> {
    eventually(
        Duration::from_secs(30),
        &format!("{count} webhook request(s)"),
        || async {
            let received = receiver.received();
            (received.len() >= count).then_some(received)
        },
    )
    .await
}

async fn delivery(stack: &Stack, payment_id: &str) -> Value {
    eventually(Duration::from_secs(30), "the delivery to settle", || async {
        let rows = sql_values(
            &stack.db,
            &format!("SELECT status, attempts, event_type, webhook_id FROM webhook_deliveries WHERE payment_id = '{payment_id}'"),
        )
        .await;
        rows.into_iter().find(|row| row["status"] != "pending" && row["status"] != "sending")
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_completion_is_delivered_signed_with_the_original_body() {
    let (stack, _dispatcher) = stack_with_dispatcher(|_| {}).await;
    let receiver = Receiver::start(vec![]).await;
    let id = paid_payment(&stack, &receiver.url, "12.34").await;
    let received = received_at_least(&receiver, 1).await;
    let request = &received[0];

    // An independent implementation (the official Python package) agrees.
    verify_with_reference(TEST_WEBHOOK_SECRET, request).unwrap();
    assert!(request.header("webhook-id").unwrap().starts_with("msg_"));
    assert_eq!(request.header("content-type"), Some("application/json"));
    let body: Value = serde_json::from_str(&request.body).unwrap();
    assert_eq!(body["payment_id"], id.as_str());
    assert_eq!(body["currency"], "USDT_TRC20");
    assert_eq!(body["status"], "completed");
    assert_eq!(body["event"], "payment.completed");
    assert!(body["block_timestamp"].is_i64());
    assert!(
        request.body.contains(r#""expected_amount_usdt": 12.34"#),
        "{}",
        request.body
    );
    assert!(
        request.body.contains(r#""received_amount_usdt": 12.34"#),
        "{}",
        request.body
    );

    let row = delivery(&stack, &id).await;
    assert_eq!(
        (row["status"].as_str(), row["attempts"].as_i64()),
        (Some("delivered"), Some(1))
    );
    let payment = sql_values(&stack.db, &format!("SELECT callback_attempts, callback_success, last_callback_attempt IS NOT NULL AS stamped FROM payments WHERE id = '{id}'")).await;
    assert_eq!(
        payment[0],
        json!({"callback_attempts": 1, "callback_success": true, "stamped": true})
    );
    assert!(stack.log_of(&id).await.contains(&"callback_sent".to_owned()));
}

#[tokio::test(flavor = "multi_thread")]
async fn failures_are_retried_with_one_webhook_id() {
    let (stack, _dispatcher) = stack_with_dispatcher(|_| {}).await;
    let receiver = Receiver::start(vec![Reply::Status(500), Reply::RetryAfter(503, 1)]).await;
    let id = paid_payment(&stack, &receiver.url, "3").await;
    let received = received_at_least(&receiver, 3).await;
    let ids: Vec<&str> = received
        .iter()
        .map(|request| request.header("webhook-id").unwrap())
        .collect();
    assert_eq!(ids.len(), 3);
    assert!(ids.iter().all(|id| *id == ids[0]), "{ids:?}");
    for request in &received {
        verify_with_reference(TEST_WEBHOOK_SECRET, request).unwrap();
    }
    let row = delivery(&stack, &id).await;
    assert_eq!(
        (row["status"].as_str(), row["attempts"].as_i64()),
        (Some("delivered"), Some(3))
    );
    let attempts = sql_values(
        &stack.db,
        "SELECT http_status, outcome FROM webhook_attempts ORDER BY id",
    )
    .await;
    assert_eq!(
        attempts,
        [
            json!({"http_status": 500, "outcome": "retry"}),
            json!({"http_status": 503, "outcome": "retry"}),
            json!({"http_status": 200, "outcome": "delivered"})
        ]
    );
    let payment = sql_values(
        &stack.db,
        &format!("SELECT callback_attempts, callback_success FROM payments WHERE id = '{id}'"),
    )
    .await;
    assert_eq!(payment[0], json!({"callback_attempts": 3, "callback_success": true}));
}

#[tokio::test(flavor = "multi_thread")]
async fn retry_after_as_an_http_date_is_honoured() {
    let (stack, _dispatcher) = stack_with_dispatcher(|_| {}).await;
    // The test schedule would retry after 200 ms; the receiver asks for 3 s
    // by date, which is 2 to 3 s from its answer.
    let receiver = Receiver::start(vec![Reply::RetryAt(429, Duration::from_secs(3))]).await;
    let id = paid_payment(&stack, &receiver.url, "4").await;
    // What the dispatcher decided after the 429: the retry is due at the
    // date, not after the schedule's 200 ms.
    let delay = eventually(Duration::from_secs(30), "the 429 to be recorded", || async {
        let rows = sql_values(
            &stack.db,
            &format!(
                "SELECT status, attempts, EXTRACT(EPOCH FROM next_attempt_at - last_attempt_at)::float8 AS delay \
                 FROM webhook_deliveries WHERE payment_id = '{id}'"
            ),
        )
        .await;
        let row = rows.first()?;
        (row["status"] == "pending" && row["attempts"] == 1).then(|| row["delay"].as_f64().unwrap())
    })
    .await;
    assert!(delay >= 1.8, "the retry is due {delay} s after the first attempt");
    let row = delivery(&stack, &id).await;
    assert_eq!(
        (row["status"].as_str(), row["attempts"].as_i64()),
        (Some("delivered"), Some(2))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn gone_stops_and_the_schedule_ends_in_dead() {
    let (stack, _dispatcher) = stack_with_dispatcher(|_| {}).await;
    let gone = Receiver::start(vec![Reply::Status(410)]).await;
    let gone_id = paid_payment(&stack, &gone.url, "1").await;
    let row = delivery(&stack, &gone_id).await;
    assert_eq!(
        (row["status"].as_str(), row["attempts"].as_i64()),
        (Some("failed"), Some(1))
    );

    let failing = Receiver::start(vec![Reply::Status(500); 10]).await;
    let id = paid_payment(&stack, &failing.url, "2").await;
    let row = delivery(&stack, &id).await;
    // The initial attempt plus the three delays of the test schedule.
    assert_eq!(
        (row["status"].as_str(), row["attempts"].as_i64()),
        (Some("dead"), Some(4))
    );
    assert!(stack.log_of(&id).await.contains(&"callback_dead".to_owned()));
    // Meanwhile a whole schedule passed: a retry of the 410 would have come.
    assert_eq!(gone.received().len(), 1, "410 is not retried");
    assert_eq!(delivery(&stack, &gone_id).await["attempts"], 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hanging_receiver_times_out_and_a_redirect_is_not_followed() {
    let (stack, _dispatcher) = stack_with_dispatcher(|_| {}).await;
    let elsewhere = Receiver::start(vec![]).await;
    let receiver = Receiver::start(vec![
        Reply::Hang(Duration::from_secs(5)),
        Reply::Redirect(elsewhere.url.clone()),
    ])
    .await;
    let id = paid_payment(&stack, &receiver.url, "4").await;
    let row = delivery(&stack, &id).await;
    assert_eq!(
        (row["status"].as_str(), row["attempts"].as_i64()),
        (Some("delivered"), Some(3))
    );
    let attempts = sql_values(&stack.db, "SELECT http_status, error FROM webhook_attempts ORDER BY id").await;
    assert!(
        attempts[0]["error"].as_str().unwrap().contains("no answer within"),
        "{attempts:?}"
    );
    assert_eq!(attempts[1]["http_status"], 302);
    assert!(elsewhere.received().is_empty(), "the redirect was not followed");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dispatcher_killed_mid_delivery_delivers_after_restart() {
    let stack = Stack::start_with(|api| api.callback_allow_private = true, |_| {}).await;
    let short = |settings: &mut tronpay_webhook_dispatcher::DispatcherSettings| settings.webhook_timeout_ms = 3_000;
    let first = DispatcherInstance::start(stack.db.url(), &stack.bus.settings, short).await;
    let receiver = Receiver::start(vec![Reply::Hang(Duration::from_secs(20))]).await;
    let id = paid_payment(&stack, &receiver.url, "5").await;
    received_at_least(&receiver, 1).await;
    first.kill();
    assert_eq!(
        sql_values(
            &stack.db,
            &format!("SELECT status FROM webhook_deliveries WHERE payment_id = '{id}'")
        )
        .await[0]["status"],
        "sending"
    );

    let _second = DispatcherInstance::start(stack.db.url(), &stack.bus.settings, short).await;
    let row = eventually(Duration::from_secs(60), "the redelivery", || async {
        let row = sql_values(
            &stack.db,
            &format!("SELECT status, attempts FROM webhook_deliveries WHERE payment_id = '{id}'"),
        )
        .await;
        (row[0]["status"] == "delivered").then(|| row[0].clone())
    })
    .await;
    assert_eq!(row["attempts"], 2);
    let received = receiver.received();
    assert_eq!(
        received[0].header("webhook-id"),
        received.last().unwrap().header("webhook-id")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn webhooks_arrive_after_a_broker_outage() {
    let (stack, proxy) = Stack::through_broker_proxy(|api| api.callback_allow_private = true).await;
    let _dispatcher = DispatcherInstance::start(stack.db.url(), &stack.broker, |_| {}).await;
    let receiver = Receiver::start(vec![]).await;
    let payments = payments_to(&stack, &[receiver.url.as_str(); 4]).await;
    proxy.cut();
    pay_in_one_block(&stack, &payments);
    // The watcher records the transfers while the broker is away…
    eventually(Duration::from_secs(30), "the transfers to be recorded", || async {
        let confirmed = sql_values(
            &stack.db,
            "SELECT count(*) AS n FROM transfers WHERE status = 'confirmed'",
        )
        .await;
        (confirmed[0]["n"] == 4).then_some(())
    })
    .await;
    // …but nothing reaches the merchant without it.
    assert!(
        receiver.received().is_empty(),
        "nothing can move while the broker is away"
    );
    proxy.restore();
    let received = received_at_least(&receiver, 4).await;
    let mut ids: Vec<&str> = received
        .iter()
        .map(|request| request.header("webhook-id").unwrap())
        .collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 4);
}

#[tokio::test(flavor = "multi_thread")]
async fn two_dispatchers_send_each_attempt_once() {
    let (stack, _first) = stack_with_dispatcher(|_| {}).await;
    let _second = DispatcherInstance::start(stack.db.url(), &stack.bus.settings, |_| {}).await;
    let receiver = Receiver::start(vec![]).await;
    complete_in_one_block(&stack, &[receiver.url.as_str(); 20]).await;
    received_at_least(&receiver, 20).await;
    // Every delivery recorded as delivered after one claim (a claim counts
    // an attempt, and only a claimed attempt is sent): nothing more can be
    // sent, and nothing was sent twice.
    let claims = eventually(Duration::from_secs(30), "every delivery to be recorded", || async {
        let rows = sql_values(
            &stack.db,
            "SELECT count(*) AS n, max(attempts) AS most FROM webhook_deliveries WHERE status = 'delivered'",
        )
        .await;
        (rows[0]["n"] == 20).then(|| rows[0]["most"].clone())
    })
    .await;
    assert_eq!(claims, 1, "each delivery claimed once");
    assert_eq!(receiver.received().len(), 20, "each webhook sent once");
    let attempts = sql_values(&stack.db, "SELECT count(*) AS n FROM webhook_attempts").await;
    assert_eq!(attempts[0]["n"], 20);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dead_delivery_retried_by_the_operator_arrives_with_its_webhook_id() {
    let (stack, _dispatcher) = stack_with_dispatcher(|settings| settings.webhook_retry_schedule = "100ms".into()).await;
    let receiver = Receiver::start(vec![Reply::Status(500), Reply::Status(500)]).await;
    let id = paid_payment(&stack, &receiver.url, "6").await;
    let row = delivery(&stack, &id).await;
    assert_eq!(row["status"], "dead");
    let delivery_id: uuid::Uuid = sql_values(
        &stack.db,
        &format!("SELECT id FROM webhook_deliveries WHERE payment_id = '{id}'"),
    )
    .await[0]["id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();

    // What `tronpay webhooks retry <id>` does.
    let db_settings = tronpay_db::DbSettings::for_url(stack.db.url());
    let mut conn = tronpay_db::connect(
        stack.db.url(),
        &tronpay_db::pool::ConnectOptions::new(&db_settings, "test"),
    )
    .await
    .unwrap();
    assert_eq!(
        tronpay_db::deliveries::retry(
            &mut conn,
            Some(&[tronpay_domain::DeliveryId(delivery_id)]),
            "the operator"
        )
        .await
        .unwrap(),
        1
    );
    eventually(Duration::from_secs(30), "the retried delivery", || async {
        let rows = sql_values(
            &stack.db,
            &format!("SELECT status FROM webhook_deliveries WHERE payment_id = '{id}'"),
        )
        .await;
        (rows[0]["status"] == "delivered").then_some(())
    })
    .await;
    let received = receiver.received();
    assert_eq!(received.len(), 3);
    assert!(
        received
            .iter()
            .all(|request| request.header("webhook-id") == received[0].header("webhook-id"))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn private_and_metadata_addresses_are_refused_at_delivery() {
    // The API allows them (as with CALLBACK_ALLOW_PRIVATE during a trial), the
    // dispatcher does not: the check at delivery holds on its own.
    let (stack, _dispatcher) = stack_with_dispatcher(|settings| {
        settings.callback_allow_private = false;
        settings.webhook_retry_schedule = "100ms".into();
    })
    .await;
    let receiver = Receiver::start(vec![]).await;
    let literal = paid_payment(&stack, &receiver.url, "7").await;
    let metadata = paid_payment(&stack, "http://169.254.169.254/latest/meta-data", "8").await;
    let by_name = paid_payment(&stack, &receiver.url.replace("127.0.0.1", "localhost"), "9").await;
    for (id, status) in [(&literal, "failed"), (&metadata, "failed"), (&by_name, "dead")] {
        assert_eq!(delivery(&stack, id).await["status"], status, "{id}");
    }
    let errors = sql_values(&stack.db, "SELECT error FROM webhook_attempts").await;
    assert!(
        errors.iter().all(|row| row["error"]
            .as_str()
            .unwrap_or_default()
            .contains("public addresses only")),
        "{errors:?}"
    );
    assert!(receiver.received().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn legacy_payments_get_completion_webhooks_only() {
    let (stack, _dispatcher) = stack_with_dispatcher(|_| {}).await;
    let receiver = Receiver::start(vec![]).await;
    let (legacy, legacy_address) = stack.payment_with_callback("10", &receiver.url).await;
    let (opted, opted_address) = stack.payment_with_callback("11", &receiver.url).await;
    stack
        .db
        .client()
        .await
        .batch_execute(&format!(
            "UPDATE payments SET notify_events = '{{payment.detected,payment.late,payment.expired}}' WHERE id = '{opted}'"
        ))
        .await
        .unwrap();
    stack.expire_now(&legacy).await;
    stack.expire_now(&opted).await;
    stack.send(legacy_address, "10");
    stack.pay(opted_address, "11");
    stack.wait_for(&legacy, "expired").await;
    stack.wait_for(&opted, "expired").await;
    let events = eventually(Duration::from_secs(30), "the opted-in payment's webhooks", || async {
        let rows = sql_values(&stack.db, &format!("SELECT event_type FROM webhook_deliveries WHERE payment_id = '{opted}' AND status = 'delivered' ORDER BY event_type")).await;
        (rows.len() >= 2).then_some(rows)
    })
    .await;
    assert!(events.contains(&json!({"event_type": "payment.late"})), "{events:?}");
    assert!(events.contains(&json!({"event_type": "payment.expired"})), "{events:?}");
    // The legacy payment went as far: its late transfer is logged, and a
    // webhook is enqueued in the same transaction as its log row.
    stack.logged(&legacy, "late").await;
    assert!(
        sql_values(
            &stack.db,
            &format!("SELECT id FROM webhook_deliveries WHERE payment_id = '{legacy}'")
        )
        .await
        .is_empty()
    );
    let bodies: Vec<Value> = receiver
        .received()
        .iter()
        .map(|request| serde_json::from_str(&request.body).unwrap())
        .collect();
    assert!(
        bodies.iter().all(|body| body["payment_id"] == opted.as_str()),
        "{bodies:?}"
    );
}

/// A callback destination that accepts connections and never answers: it
/// reads and discards what is sent and holds each socket until the other end
/// closes it, counting the connections opened and closed.
struct Hanging {
    url: String,
    opened: Arc<AtomicUsize>,
    closed: Arc<AtomicUsize>,
    accepting: tokio::task::JoinHandle<()>,
}

impl Hanging {
    async fn start() -> Self {
        Self::answering_first(0).await
    }

    /// Answers `200` to its first `answered` requests, then hangs like
    /// [`Self::start`]'s.
    async fn answering_first(answered: usize) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let opened = Arc::new(AtomicUsize::new(0));
        let closed = Arc::new(AtomicUsize::new(0));
        let accepting = tokio::spawn({
            let opened = Arc::clone(&opened);
            let closed = Arc::clone(&closed);
            async move {
                while let Ok((mut socket, _)) = listener.accept().await {
                    let answer = opened.fetch_add(1, Ordering::SeqCst) < answered;
                    let closed = Arc::clone(&closed);
                    tokio::spawn(async move {
                        let mut buffer = [0u8; 4096];
                        if answer && let Ok(1..) = socket.read(&mut buffer).await {
                            let reply = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n";
                            let _ = tokio::io::AsyncWriteExt::write_all(&mut socket, reply).await;
                        }
                        while let Ok(1..) = socket.read(&mut buffer).await {}
                        closed.fetch_add(1, Ordering::SeqCst);
                    });
                }
            }
        });
        Self {
            url: format!("http://127.0.0.1:{port}/hook"),
            opened,
            closed,
            accepting,
        }
    }

    /// (requests open now, connections closed so far).
    fn counts(&self) -> (usize, usize) {
        let closed = self.closed.load(Ordering::SeqCst);
        let opened = self.opened.load(Ordering::SeqCst);
        (opened - closed, closed)
    }
}

impl Drop for Hanging {
    fn drop(&mut self) {
        self.accepting.abort();
    }
}

/// A payment (not paid yet) per callback, in the order of `callbacks`.
async fn payments_to(stack: &Stack, callbacks: &[&str]) -> Vec<(String, TronAddress, String)> {
    let mut payments = Vec::new();
    for (index, callback) in callbacks.iter().enumerate() {
        let amount = format!("{}.75", index + 1);
        let (id, address) = stack.payment_with_callback(&amount, callback).await;
        payments.push((id, address, amount));
    }
    payments
}

/// Sends every payment's transfer, then seals one block and finalizes it:
/// they all complete together.
fn pay_in_one_block(stack: &Stack, payments: &[(String, TronAddress, String)]) {
    for (_, address, amount) in payments {
        stack.sandbox.transfer(*address, amount.parse().unwrap()).unwrap();
    }
    stack.sandbox.mine(1).unwrap();
    stack.finalize();
}

/// A payment per callback, all completed in one block; their ids, in the
/// order of `callbacks`.
async fn complete_in_one_block(stack: &Stack, callbacks: &[&str]) -> Vec<String> {
    let payments = payments_to(stack, callbacks).await;
    pay_in_one_block(stack, &payments);
    payments.into_iter().map(|(id, ..)| id).collect()
}

/// Waits for the healthy receiver's first webhook and returns what `counts`
/// says at that moment.
async fn when_delivered<T>(healthy: &Receiver, counts: impl Fn() -> T) -> T {
    eventually(Duration::from_secs(40), "the healthy receiver's webhook", || async {
        (!healthy.received().is_empty()).then(&counts)
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hanging_receiver_does_not_delay_another_receivers_webhook() {
    // Long enough that nothing times out while the healthy webhook is on
    // its way, on any machine: the test checks order, never time.
    let (stack, _dispatcher) = stack_with_dispatcher(|settings| {
        settings.webhook_concurrency = 4;
        settings.webhook_timeout_ms = 10_000;
    })
    .await;
    let hanging = Hanging::start().await;
    let healthy = Receiver::start(vec![]).await;
    complete_in_one_block(&stack, &[hanging.url.as_str(); 9]).await;
    // The API enqueues the webhooks of one block in its own order, so the
    // healthy payment completes in the next block, once the hanging
    // receiver holds what its origin may have open: it never answered, so
    // one request (WEBHOOK_CONCURRENCY / 16, at least 1).
    eventually(
        Duration::from_secs(30),
        "the hanging receiver to hold a request",
        || async { (hanging.counts().0 >= 1).then_some(()) },
    )
    .await;
    let ids = complete_in_one_block(&stack, &[&healthy.url]).await;

    let (open, closed) = when_delivered(&healthy, || hanging.counts()).await;
    assert_eq!(closed, 0, "the healthy webhook waited for a hanging request to end");
    // Not all nine are open: the other eight wait, parked, for the hanging
    // origin's one slot.
    assert_eq!(open, 1, "a receiver that never answered holds one slot");
    let row = delivery(&stack, &ids[0]).await;
    assert_eq!(
        (row["status"].as_str(), row["attempts"].as_i64()),
        (Some("delivered"), Some(1))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_receiver_that_answered_then_hangs_holds_only_its_share() {
    let (stack, _dispatcher) = stack_with_dispatcher(|settings| {
        settings.webhook_concurrency = 4;
        settings.webhook_timeout_ms = 10_000;
    })
    .await;
    // It answers once (so it has its full share: WEBHOOK_ORIGIN_CONCURRENCY,
    // 3 of 4), then hangs.
    let hanging = Hanging::answering_first(1).await;
    let healthy = Receiver::start(vec![]).await;
    let first = complete_in_one_block(&stack, &[hanging.url.as_str()]).await;
    eventually(Duration::from_secs(30), "the first webhook delivered", || async {
        (delivery(&stack, &first[0]).await["status"] == "delivered").then_some(())
    })
    .await;
    let (_, closed_before) = hanging.counts();
    complete_in_one_block(&stack, &[hanging.url.as_str(); 9]).await;
    eventually(
        Duration::from_secs(30),
        "the hanging receiver to hold its share",
        || async { (hanging.counts().0 >= 3).then_some(()) },
    )
    .await;
    let ids = complete_in_one_block(&stack, &[&healthy.url]).await;
    let (open, closed) = when_delivered(&healthy, || hanging.counts()).await;
    assert_eq!(
        closed, closed_before,
        "the healthy webhook waited for a hanging request to end"
    );
    assert_eq!(open, 3, "one origin holds at most 3 of the 4 slots");
    assert_eq!(delivery(&stack, &ids[0]).await["attempts"], 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn receivers_known_to_hang_leave_the_main_lane_to_healthy_ones() {
    let (stack, _dispatcher) = stack_with_dispatcher(|settings| {
        settings.webhook_concurrency = 4;
        settings.webhook_slow_concurrency = Some(4);
        settings.webhook_timeout_ms = 10_000;
        settings.webhook_retry_schedule = "200ms,1h".into();
    })
    .await;
    // Six merchants whose receivers hang: more than the four main slots.
    let mut hanging = Vec::new();
    for _ in 0..6 {
        hanging.push(Hanging::start().await);
    }
    let counts = || {
        hanging
            .iter()
            .map(Hanging::counts)
            .fold((0, 0), |(open, closed), (o, c)| (open + o, closed + c))
    };
    let urls: Vec<&str> = hanging.iter().map(|receiver| receiver.url.as_str()).collect();
    complete_in_one_block(&stack, &urls).await;
    // Four first attempts fill the main slots and time out; then the last two
    // first attempts and the four retries are all open.
    let (_, closed_before) = eventually(
        Duration::from_secs(40),
        "the first attempts to time out and the retries to be sent",
        || async {
            let (open, closed) = counts();
            (closed >= 4 && open + closed >= 10).then_some((open, closed))
        },
    )
    .await;

    let healthy = Receiver::start(vec![]).await;
    complete_in_one_block(&stack, &[&healthy.url]).await;
    let (open, closed) = when_delivered(&healthy, counts).await;
    assert_eq!(
        closed, closed_before,
        "the healthy webhook waited for a hanging request to end"
    );
    assert!(
        open > 4,
        "the retries to receivers known to hang use the slow lane, not the 4 main slots ({open} open)"
    );
}

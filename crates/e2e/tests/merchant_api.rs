//! The merchant API v1 against the whole stack: a cancel racing a
//! completing transfer, operator assignment, transfer lists, deliveries,
//! redelivery, test webhooks and statistics — with transfers made on the
//! sandbox chain and webhooks sent by a real dispatcher.

// Integration tests: a failed step should stop the test loudly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use serde_json::{Value, json};
use tronpay_e2e::receiver::{Receiver, verify_with_reference};
use tronpay_e2e::{
    DispatcherInstance, Stack, TEST_WEBHOOK_SECRET, eventually, random_address, sql_values, v1, v1_payment,
};

const ALL: &[&str] = &["payments:read", "payments:write", "operator"];

/// Waits until the v1 payment `id` has status `status`.
async fn v1_status(stack: &Stack, key: &str, id: &str, status: &str) -> Value {
    eventually(
        Duration::from_secs(30),
        &format!("payment {id} to be {status}"),
        || async {
            let (_, body) = v1(&stack.api.url, "GET", &format!("/v1/payments/{id}"), key, None).await;
            (body["status"] == status).then_some(body)
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cancel_racing_a_completing_transfer_has_exactly_one_winner() {
    let stack = Stack::start().await;
    let key = stack.db.api_key("shop", ALL).await;
    let api = &stack.api.url;
    // Payment 0 is cancelled before its transfer is final, the last after
    // it completed; the ones between race the finalising block, the cancel
    // sent 0.2 to 1.2 s after it (the watcher polls at least every second).
    let rounds = 8u64;
    let mut outcomes = Vec::new();
    for round in 0..rounds {
        let address = random_address();
        let payment = v1_payment(api, &key, &address, "5", json!({})).await;
        let id = payment["id"].as_str().unwrap().to_owned();
        let sent = stack.send(address, "5");
        stack.logged(&id, "detected").await;
        let cancel = async {
            if round == rounds - 1 {
                v1_status(&stack, &key, &id, "completed").await;
            } else {
                tokio::time::sleep(Duration::from_millis(200 * round)).await;
            }
            v1(
                api,
                "POST",
                &format!("/v1/payments/{id}/cancel"),
                &key,
                Some(json!({"reason": "race"})),
            )
            .await
        };
        let finalize = async {
            if round > 0 {
                stack.finalize();
            }
        };
        let ((status, body), ()) = tokio::join!(cancel, finalize);
        if round == 0 {
            stack.finalize();
        }
        let transfer = stack.applied_transfer(sent.txid.as_str()).await;
        let (_, now) = v1(api, "GET", &format!("/v1/payments/{id}"), &key, None).await;
        let log = stack.log_of(&id).await;
        match status {
            200 => {
                // The cancel won: the payment never completes, the transfer
                // counts for nothing.
                assert_eq!(now["status"], "failed", "{now}");
                assert_eq!(transfer["match_kind"], "unmatched", "{transfer}");
                assert!(!log.contains(&"completed".to_owned()), "{log:?}");
                assert_eq!(log.iter().filter(|event| *event == "cancelled").count(), 1);
            }
            409 => {
                assert_eq!(body["code"], "not_pending", "{body}");
                assert_eq!(now["status"], "completed", "{now}");
                assert_eq!(transfer["payment_id"], id.as_str(), "{transfer}");
                assert!(!log.contains(&"cancelled".to_owned()), "{log:?}");
                assert_eq!(log.iter().filter(|event| *event == "completed").count(), 1);
            }
            other => panic!("cancel answered {other}: {body}"),
        }
        outcomes.push(status);
    }
    assert_eq!(outcomes.first(), Some(&200));
    assert_eq!(outcomes.last(), Some(&409));
    println!("cancel outcomes by round: {outcomes:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_operator_assigns_an_unmatched_transfer_once() {
    let stack = Stack::start().await;
    let operator = stack.db.api_key("ops", ALL).await;
    let merchant = stack.db.api_key("shop", &["payments:read", "payments:write"]).await;
    let api = &stack.api.url;
    let address = random_address();
    let hook = json!({ "notify_url": "https://shop.example.com/hook" });
    let first = v1_payment(api, &operator, &address, "10", hook).await;
    let second = v1_payment(api, &operator, &address, "20", json!({})).await;
    let (first, second) = (first["id"].as_str().unwrap(), second["id"].as_str().unwrap());
    // 12 USDT with two pending payments on the address, neither exact:
    // matching cannot tell whose it is.
    let sent = stack.pay(address, "12");
    let txid = sent.txid.as_str();
    assert_eq!(stack.applied_transfer(txid).await["match_kind"], "unmatched");

    // Operators see it among the unmatched; merchants' keys do not.
    let (status, page) = v1(api, "GET", "/v1/transfers?unmatched=true", &operator, None).await;
    assert_eq!(status, 200, "{page}");
    let listed = &page["data"][0];
    assert_eq!(
        (listed["txid"].as_str(), listed["amount"].as_str()),
        (Some(txid), Some("12")),
        "{page}"
    );
    assert_eq!(
        (listed["state"].as_str(), listed["match_kind"].as_str()),
        (Some("confirmed"), Some("unmatched"))
    );
    let (status, _) = v1(api, "GET", "/v1/transfers?unmatched=true", &merchant, None).await;
    assert_eq!(status, 403);
    let path = format!("/v1/transfers/{txid}/0/assign");
    let (status, _) = v1(api, "POST", &path, &merchant, Some(json!({ "payment_id": first }))).await;
    assert_eq!(status, 403);

    // Assigned to the first payment: 12 of 10, completed (overpaid) once.
    let (status, assigned) = v1(api, "POST", &path, &operator, Some(json!({ "payment_id": first }))).await;
    assert_eq!(status, 200, "{assigned}");
    assert_eq!(assigned["payment"]["status"], "completed", "{assigned}");
    assert_eq!(assigned["payment"]["received_amount"], "12");
    assert_eq!(assigned["payment"]["transaction_hash"], txid);
    assert_eq!(assigned["transfer"]["match_kind"], "assigned");
    assert_eq!(assigned["transfer"]["payment_id"], first);
    assert_eq!(
        stack.log_of(first).await,
        ["created", "assigned", "completed", "overpaid"]
    );
    let delivery = sql_values(
        &stack.db,
        &format!("SELECT event_type FROM webhook_deliveries WHERE payment_id = '{first}'"),
    )
    .await;
    assert_eq!(delivery, [json!({"event_type": "payment.completed"})]);

    // Again, to either payment: refused, nothing changes.
    for target in [first, second] {
        let (status, body) = v1(api, "POST", &path, &operator, Some(json!({ "payment_id": target }))).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (409, Some("already_assigned")),
            "{body}"
        );
    }
    assert_eq!(stack.log_of(first).await.len(), 4);
    let (_, untouched) = v1(api, "GET", &format!("/v1/payments/{second}"), &operator, None).await;
    assert_eq!(
        (untouched["status"].as_str(), &untouched["received_amount"]),
        (Some("pending"), &Value::Null)
    );
    let (_, page) = v1(api, "GET", "/v1/transfers?unmatched=true", &operator, None).await;
    assert_eq!(page["data"], json!([]), "{page}");

    // The payment's transfers show it; unknown or malformed ids are 404s.
    let (_, transfers) = v1(api, "GET", &format!("/v1/payments/{first}/transfers"), &merchant, None).await;
    assert_eq!(transfers["data"][0]["txid"], txid, "{transfers}");
    for (path, payment) in [
        (format!("/v1/transfers/{txid}/7/assign"), second),
        (format!("/v1/transfers/{}/0/assign", "ab".repeat(32)), second),
        ("/v1/transfers/nothex/0/assign".to_owned(), second),
        (path.clone(), "4c1e0c9a-0000-4000-8000-000000000001"),
    ] {
        let (status, body) = v1(api, "POST", &path, &operator, Some(json!({ "payment_id": payment }))).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (404, Some("not_found")),
            "{path}: {body}"
        );
    }

    // A partial credit from a late transfer: the second payment expires,
    // 5 USDT arrives late, the operator credits it: still expired, 5 received.
    stack.expire_now(second).await;
    let late = stack.pay(address, "5");
    assert_eq!(stack.applied_transfer(late.txid.as_str()).await["match_kind"], "late");
    let path = format!("/v1/transfers/{}/0/assign", late.txid.as_str());
    let (status, body) = v1(api, "POST", &path, &operator, Some(json!({ "payment_id": first }))).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (409, Some("not_assignable")),
        "a completed payment: {body}"
    );
    let (status, body) = v1(api, "POST", &path, &operator, Some(json!({ "payment_id": second }))).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (
            body["payment"]["status"].as_str(),
            body["payment"]["received_amount"].as_str()
        ),
        (Some("expired"), Some("5"))
    );
}

/// The `event` of a webhook request's body.
fn event_of(request: &tronpay_e2e::receiver::Received) -> String {
    let body: Value = serde_json::from_str(&request.body).unwrap_or_default();
    body["event"].as_str().unwrap_or_default().to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn deliveries_are_listed_sent_again_and_tested_and_stats_add_up() {
    let stack = Stack::start_with(|api| api.callback_allow_private = true, |_| {}).await;
    let key = stack.db.api_key("shop", &["payments:read", "payments:write"]).await;
    let api = &stack.api.url;
    let receiver = Receiver::start(vec![]).await;
    let address = random_address();
    let extra = json!({ "notify_url": receiver.url, "notify_events": ["payment.completed", "payment.partially_paid"] });
    let paid = v1_payment(api, &key, &address, "7.5", extra.clone()).await;
    let paid = paid["id"].as_str().unwrap();

    // A test webhook with no dispatcher running stays pending: sending it
    // again is refused until it is finished.
    let (status, queued) = v1(api, "POST", &format!("/v1/payments/{paid}/test-webhook"), &key, None).await;
    assert_eq!(status, 202, "{queued}");
    let ping = queued["delivery_id"].as_str().unwrap().to_owned();
    let (status, body) = v1(api, "POST", &format!("/v1/deliveries/{ping}/redeliver"), &key, None).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (409, Some("delivery_unfinished")),
        "{body}"
    );
    let (status, body) = v1(api, "POST", "/v1/deliveries/not-a-uuid/redeliver", &key, None).await;
    assert_eq!((status, body["code"].as_str()), (404, Some("not_found")), "{body}");
    let bare = v1_payment(api, &key, &random_address(), "1", json!({})).await;
    let (status, body) = v1(
        api,
        "POST",
        &format!("/v1/payments/{}/test-webhook", bare["id"].as_str().unwrap()),
        &key,
        None,
    )
    .await;
    assert_eq!((status, body["code"].as_str()), (409, Some("no_notify_url")), "{body}");

    // With a dispatcher: the ping arrives signed, then the payment is paid
    // in two parts.
    let _dispatcher = DispatcherInstance::start(stack.db.url(), &stack.bus.settings, |_| {}).await;
    let received = eventually(Duration::from_secs(30), "the ping", || async {
        receiver
            .received()
            .into_iter()
            .find(|request| event_of(request) == "ping")
    })
    .await;
    verify_with_reference(TEST_WEBHOOK_SECRET, &received).unwrap();
    let body: Value = serde_json::from_str(&received.body).unwrap();
    assert_eq!(
        (body["event"].as_str(), body["payment"]["id"].as_str()),
        (Some("ping"), Some(paid)),
        "{body}"
    );
    stack.pay(address, "2.5");
    stack.pay(address, "5");
    v1_status(&stack, &key, paid, "completed").await;
    let deliveries = eventually(Duration::from_secs(30), "three deliveries delivered", || async {
        let (_, list) = v1(api, "GET", &format!("/v1/payments/{paid}/deliveries"), &key, None).await;
        let data = list["data"].as_array().unwrap().clone();
        (data.len() == 3 && data.iter().all(|delivery| delivery["status"] == "delivered")).then_some(data)
    })
    .await;
    let events: Vec<&str> = deliveries
        .iter()
        .map(|delivery| delivery["event"].as_str().unwrap())
        .collect();
    assert_eq!(events, ["ping", "payment.partially_paid", "payment.completed"]);
    let partial = receiver
        .received()
        .into_iter()
        .find(|request| event_of(request) == "payment.partially_paid")
        .unwrap();
    let partial: Value = serde_json::from_str(&partial.body).unwrap();
    assert_eq!(partial["payment"]["received_amount"], "2.5", "{partial}");
    assert_eq!(partial["transfer"]["amount"], "2.5", "{partial}");

    // The completion again, on request: same webhook-id, one more request.
    let completed = &deliveries[2];
    let before = receiver.received().len();
    let (status, again) = v1(
        api,
        "POST",
        &format!("/v1/deliveries/{}/redeliver", completed["id"].as_str().unwrap()),
        &key,
        None,
    )
    .await;
    assert_eq!(
        (status, again["webhook_id"].as_str()),
        (202, completed["webhook_id"].as_str()),
        "{again}"
    );
    let resent = eventually(Duration::from_secs(30), "the redelivery", || async {
        let received = receiver.received();
        (received.len() > before).then(|| received[before].clone())
    })
    .await;
    assert_eq!(resent.header("webhook-id"), completed["webhook_id"].as_str());
    assert!(stack.log_of(paid).await.contains(&"callback_retry".to_owned()));
    eventually(Duration::from_secs(30), "the redelivery to be recorded", || async {
        let (_, list) = v1(api, "GET", &format!("/v1/payments/{paid}/deliveries"), &key, None).await;
        list["data"]
            .as_array()
            .unwrap()
            .iter()
            .all(|delivery| delivery["status"] == "delivered")
            .then_some(())
    })
    .await;

    // One more payment cancelled; the statistics of the hour add it all up.
    let cancelled = v1_payment(api, &key, &random_address(), "3", json!({})).await;
    let (status, _) = v1(
        api,
        "POST",
        &format!("/v1/payments/{}/cancel", cancelled["id"].as_str().unwrap()),
        &key,
        None,
    )
    .await;
    assert_eq!(status, 200);
    let (status, stats) = v1(api, "GET", "/v1/stats?interval=hour", &key, None).await;
    assert_eq!(status, 200, "{stats}");
    assert_eq!(stats["buckets"].as_array().unwrap().len(), 30, "{stats}");
    assert_eq!(
        stats["total_count"],
        json!({"pending": 1, "completed": 1, "expired": 0, "failed": 1}),
        "{stats}"
    );
    assert_eq!(
        stats["total_amount"],
        json!({"pending": "1", "completed": "7.5", "expired": "0", "failed": "3"}),
        "{stats}"
    );
    assert_eq!(stats["total_received"]["completed"], "7.5", "{stats}");
    assert_eq!(stats["completion"]["completed"], 1, "{stats}");
    assert!(stats["completion"]["p95_seconds"].as_f64().unwrap() > 0.0, "{stats}");
    assert_eq!(stats["webhooks"]["delivered"], 2, "pings are left out: {stats}");
    assert_eq!(stats["webhooks"]["success_rate"], 1.0, "{stats}");
    let bucket_counts: i64 = stats["buckets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|bucket| bucket["count"]["completed"].as_i64().unwrap())
        .sum();
    assert_eq!(bucket_counts, 1);
    let (status, body) = v1(
        api,
        "GET",
        "/v1/stats?from=2020-01-01T00:00:00Z&interval=hour",
        &key,
        None,
    )
    .await;
    assert_eq!((status, body["code"].as_str()), (400, Some("invalid_query")), "{body}");
}

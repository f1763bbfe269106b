//! Receiving addresses end to end (PRODUCT §10): in each mode (`xpub`,
//! `pool`, `unique_amount`) a payment created without an address gets one;
//! paying `amount_to_pay` there on the sandbox chain completes it and its
//! webhook is delivered. A late transfer finds its own payment and no
//! stranger's.

// Integration tests: a failed step should stop the test loudly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use serde_json::{Value, json};
use tronpay_api::ApiSettings;
use tronpay_domain::TronAddress;
use tronpay_e2e::receiver::Receiver;
use tronpay_e2e::{DispatcherInstance, Stack, eventually, v1};

/// The account key of the BIP39 test mnemonic at m/44'/195'/0'.
const XPUB: &str =
    "xpub6D1AabNHCupeiLM65ZR9UStMhJ1vCpyV4XbZdyhMZBiJXALQtmn9p42VTQckoHVn8WNqS7dqnJokZHAHcHGoaQgmv8D45oNUKx6DZMNZBCd";

#[tokio::test(flavor = "multi_thread")]
async fn an_xpub_payment_is_paid_at_its_own_address_and_its_webhook_arrives() {
    let (stack, _dispatcher, receiver, key) = stack_in_mode(|api| {
        api.address_mode = "xpub".into();
        api.xpub = XPUB.into();
    })
    .await;
    let api = &stack.api.url;
    let body = json!({ "order_id": "xpub-1", "amount": "7.25", "notify_url": receiver.url });
    let (status, payment) = v1(api, "POST", "/v1/payments", &key, Some(body)).await;
    assert_eq!(status, 201, "{payment}");
    // m/44'/195'/0'/0/0 of the test mnemonic, as every TRON wallet shows it.
    assert_eq!(payment["address"], "TUEZSdKsoDHQMeZwihtdoBiN46zxhGWYdH");
    let id = payment["id"].as_str().unwrap();
    let address = TronAddress::parse(payment["address"].as_str().unwrap()).unwrap();
    let sent = stack.pay(address, payment["amount_to_pay"].as_str().unwrap());

    let done = eventually(Duration::from_secs(30), "the payment to complete", || async {
        let (_, body) = v1(api, "GET", &format!("/v1/payments/{id}"), &key, None).await;
        (body["status"] == "completed").then_some(body)
    })
    .await;
    assert_eq!(done["transaction_hash"], sent.txid.as_str());
    assert_eq!(done["received_amount"], "7.25");
    let body = completion_webhook(&receiver, id).await;
    assert_eq!(body["payment"]["address"], "TUEZSdKsoDHQMeZwihtdoBiN46zxhGWYdH");
}

/// The stack with its API in the address mode `mode` sets (webhooks to
/// this machine allowed), a dispatcher, a receiver for the webhooks, and a
/// key with payments:read and payments:write.
async fn stack_in_mode(mode: impl FnOnce(&mut ApiSettings)) -> (Stack, DispatcherInstance, Receiver, String) {
    let stack = Stack::start_with(
        |api| {
            api.callback_allow_private = true;
            mode(api);
        },
        |_| {},
    )
    .await;
    let dispatcher = DispatcherInstance::start(stack.db.url(), &stack.bus.settings, |_| {}).await;
    let receiver = Receiver::start(vec![]).await;
    let key = stack.db.api_key("shop", &["payments:read", "payments:write"]).await;
    (stack, dispatcher, receiver, key)
}

/// The body of the `payment.completed` webhook of payment `id` that
/// `receiver` got.
async fn completion_webhook(receiver: &Receiver, id: &str) -> Value {
    eventually(Duration::from_secs(30), "the completion webhook", || async {
        receiver.received().into_iter().find_map(|request| {
            serde_json::from_str::<Value>(&request.body)
                .ok()
                .filter(|body| body["event"] == "payment.completed" && body["payment"]["id"] == id)
        })
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pool_address_is_paid_and_a_late_transfer_there_finds_its_own_payment() {
    let (stack, _dispatcher, receiver, key) = stack_in_mode(|api| api.address_mode = "pool".into()).await;
    let pool = [tronpay_e2e::random_address(), tronpay_e2e::random_address()];
    let mut conn = stack.db.connect().await;
    tronpay_db::receiving::import_pool(&mut conn, &pool.map(|address| address.to_base58()))
        .await
        .unwrap();
    let api = &stack.api.url;
    let create = |order: &'static str| {
        let (key, url) = (key.clone(), receiver.url.clone());
        async move {
            let body = json!({ "order_id": order, "amount": "12.5", "notify_url": url });
            v1(api, "POST", "/v1/payments", &key, Some(body)).await
        }
    };

    // Paid in full at its pool address: completed, webhook delivered.
    let (status, paid) = create("pool-1").await;
    assert_eq!(status, 201, "{paid}");
    assert_eq!(paid["amount_to_pay"], "12.5");
    let paid_id = paid["id"].as_str().unwrap();
    let paid_at = TronAddress::parse(paid["address"].as_str().unwrap()).unwrap();
    assert!(pool.contains(&paid_at), "{paid}");
    let sent = stack.pay(paid_at, "12.5");
    let done = stack.wait_for(paid_id, "completed").await;
    assert_eq!(done["transaction_hash"], sent.txid.as_str());
    let body = completion_webhook(&receiver, paid_id).await;
    assert_eq!(body["payment"]["address"], paid_at.to_base58().as_str());

    // The other address goes to the next payment, whose buyer is late.
    let (_, late) = create("pool-2").await;
    let late_id = late["id"].as_str().unwrap();
    let late_at = TronAddress::parse(late["address"].as_str().unwrap()).unwrap();
    assert_ne!(late_at, paid_at);
    stack.expire_now(late_id).await;
    stack.sandbox.mine(1).unwrap();
    stack.finalize();
    stack.wait_for(late_id, "expired").await;
    // Both addresses stay with their ended payments through the grace
    // period: the pool is empty…
    let (status, empty) = create("pool-3").await;
    assert_eq!((status, empty["code"].as_str()), (409, Some("pool_empty")), "{empty}");
    // …and the late buyer's transfer finds the late payment.
    let sent = stack.pay(late_at, "12.5");
    stack.logged(late_id, "late").await;
    let transfer = stack.applied_transfer(sent.txid.as_str()).await;
    assert_eq!(transfer["payment_id"], late_id, "{transfer}");
}

#[tokio::test(flavor = "multi_thread")]
async fn unique_amounts_on_a_shared_address_complete_the_right_payment() {
    let shared = tronpay_e2e::random_address();
    let (stack, _dispatcher, receiver, key) = stack_in_mode(|api| {
        api.address_mode = "unique_amount".into();
        api.receive_address = shared.to_base58();
    })
    .await;
    let api = &stack.api.url;
    let mut payments = Vec::new();
    for order in ["a", "b", "c"] {
        let body = json!({ "order_id": order, "amount": "10", "notify_url": receiver.url });
        let (status, payment) = v1(api, "POST", "/v1/payments", &key, Some(body)).await;
        assert_eq!(status, 201, "{payment}");
        payments.push(payment);
    }
    let due: Vec<&str> = payments
        .iter()
        .map(|payment| payment["amount_to_pay"].as_str().unwrap())
        .collect();
    assert_eq!(due, ["10", "10.01", "10.02"]);
    let id = |n: usize| payments[n]["id"].as_str().unwrap().to_owned();
    let key = key.as_str();
    let status_of = |n: usize| {
        let path = format!("/v1/payments/{}", id(n));
        async move { v1(api, "GET", &path, key, None).await.1 }
    };

    // b's buyer pays b's raised amount: b completes, nobody else.
    let paid = stack.pay(shared, "10.01");
    stack.wait_for(&id(1), "completed").await;
    assert_eq!(status_of(1).await["transaction_hash"], paid.txid.as_str());
    assert_eq!(status_of(1).await["received_amount"], "10.01");
    let webhook = completion_webhook(&receiver, &id(1)).await;
    assert_eq!(
        (
            webhook["payment"]["amount"].as_str(),
            webhook["payment"]["amount_to_pay"].as_str()
        ),
        (Some("10"), Some("10.01")),
        "{webhook}"
    );

    // A transfer of 0 USDT (address poisoning) changes nothing.
    let zero = stack.pay(shared, "0");
    assert_eq!(
        stack.applied_transfer(zero.txid.as_str()).await["match_kind"],
        "ignored"
    );
    for n in [0, 2] {
        let payment = status_of(n).await;
        assert_eq!(
            (payment["status"].as_str(), &payment["received_amount"]),
            (Some("pending"), &Value::Null)
        );
    }

    // c's buyer sends the base amount instead of c's raised one: it matches
    // a's amount exactly, so it completes a (the README says so); c waits on.
    stack.pay(shared, "10");
    stack.wait_for(&id(0), "completed").await;
    assert_eq!(status_of(2).await["status"], "pending");
    // An amount that matches nothing is nobody's on a shared address — not
    // a partial credit to c, though c is the only payment open there.
    let stray = stack.pay(shared, "4");
    assert_eq!(
        stack.applied_transfer(stray.txid.as_str()).await["match_kind"],
        "unmatched"
    );
    let c = status_of(2).await;
    assert_eq!(
        (c["status"].as_str(), &c["received_amount"]),
        (Some("pending"), &Value::Null)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_late_transfer_of_an_ended_payments_amount_pays_no_stranger() {
    let shared = tronpay_e2e::random_address();
    let stack = Stack::start_with(
        |api| {
            api.address_mode = "unique_amount".into();
            api.receive_address = shared.to_base58();
        },
        |_| {},
    )
    .await;
    let key = stack.db.api_key("shop", &["payments:read", "payments:write"]).await;
    let api = &stack.api.url;
    let create = |order: &'static str| {
        let key = key.clone();
        async move {
            let body = json!({ "order_id": order, "amount": "10" });
            let (status, payment) = v1(api, "POST", "/v1/payments", &key, Some(body)).await;
            assert_eq!(status, 201, "{payment}");
            payment
        }
    };
    // A's buyer never pays in time: A expires, its amount stays held.
    let first = create("late-a").await;
    let first_id = first["id"].as_str().unwrap();
    assert_eq!(first["amount_to_pay"], "10");
    stack.expire_now(first_id).await;
    // The sweep waits for a final block later than the deadline.
    stack.sandbox.mine(1).unwrap();
    stack.finalize();
    stack.wait_for(first_id, "expired").await;
    // A stranger's order of the same amount gets the next amount, not A's.
    let second = create("late-b").await;
    let second_id = second["id"].as_str().unwrap();
    assert_eq!(second["amount_to_pay"], "10.01");

    // A's buyer pays 10 now: late for A, nothing for the stranger.
    stack.pay(shared, "10");
    stack.logged(first_id, "late").await;
    let (_, stranger) = v1(api, "GET", &format!("/v1/payments/{second_id}"), &key, None).await;
    assert_eq!(
        (stranger["status"].as_str(), &stranger["received_amount"]),
        (Some("pending"), &Value::Null)
    );
}

//! Receiving addresses over HTTP (PRODUCT §10): with `ADDRESS_MODE=xpub` a
//! create without an address gets the account's next derived address —
//! distinct and consecutive however many creates race, on one replica or
//! two — and a replay gets the same one without using another; with `pool`
//! an imported address is lent to one pending payment at a time and comes
//! back a grace period after it ended; with `unique_amount` the amounts on
//! the shared address are distinct.

use std::collections::HashSet;

use serde_json::{Value, json};
use tronpay_domain::xpub::AccountXpub;
use tronpay_testkit::TestDb;

use super::super::TestApp;
use super::READ_WRITE;

/// The account key of the BIP39 test mnemonic `abandon … about` at
/// m/44'/195'/0' (as bip_utils exports it; its …/0/0 is TUEZSdKs…).
pub(crate) const XPUB: &str =
    "xpub6D1AabNHCupeiLM65ZR9UStMhJ1vCpyV4XbZdyhMZBiJXALQtmn9p42VTQckoHVn8WNqS7dqnJokZHAHcHGoaQgmv8D45oNUKx6DZMNZBCd";

async fn xpub_app(db: &TestDb) -> TestApp {
    TestApp::start(db.url(), |settings| {
        settings.address_mode = "xpub".into();
        settings.xpub = XPUB.into();
        settings.api_workers = Some(4);
    })
    .await
}

async fn create(app: &TestApp, key: &str, order: &str, idempotency: Option<&str>) -> (u16, Value) {
    let headers: Vec<(&str, &str)> = idempotency
        .map(|value| ("idempotency-key", value))
        .into_iter()
        .collect();
    let answer = app
        .call(
            reqwest::Method::POST,
            "/v1/payments",
            Some(key),
            &headers,
            Some(json!({ "order_id": order, "amount": "5" }).to_string()),
        )
        .await;
    (answer.status, answer.body)
}

fn derived(count: u32) -> Vec<String> {
    let account = AccountXpub::parse(XPUB).unwrap();
    (0..count)
        .map(|index| account.address(index).unwrap().to_base58())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn creates_without_an_address_get_consecutive_derived_addresses_once() {
    let db = TestDb::new().await;
    let key = db.api_key("shop", READ_WRITE).await;
    let (first, second) = (xpub_app(&db).await, xpub_app(&db).await);
    let expected = derived(55);

    let (status, payment) = create(&first, &key, "o-0", Some("k-0")).await;
    assert_eq!(status, 201, "{payment}");
    assert_eq!(payment["address"], expected[0].as_str());
    assert_eq!(payment["amount_to_pay"], "5");
    // A replay is the same payment at the same address, and uses no index.
    let (status, replay) = create(&first, &key, "o-0", Some("k-0")).await;
    assert_eq!((status, &replay["address"]), (201, &payment["address"]));

    // 50 creates at once, half on each of two replicas: 50 distinct
    // addresses, exactly the next 50 indexes.
    let creates = (1..=50).map(|n| {
        let app = if n % 2 == 0 { &first } else { &second };
        let key = key.clone();
        async move { create(app, &key, &format!("o-{n}"), Some(&format!("k-{n}"))).await }
    });
    let answers = futures_util::future::join_all(creates).await;
    let mut addresses = HashSet::new();
    for (status, body) in &answers {
        assert_eq!(*status, 201, "{body}");
        assert!(
            addresses.insert(body["address"].as_str().unwrap().to_owned()),
            "twice: {body}"
        );
    }
    let next: HashSet<String> = expected[1..=50].iter().cloned().collect();
    assert_eq!(addresses, next);
    let (_, last) = create(&second, &key, "o-51", None).await;
    assert_eq!(last["address"], expected[51].as_str(), "no index skipped");
    // A key past its 24 hours starts over: a new payment at the next index.
    db.client()
        .await
        .batch_execute("UPDATE payments SET created_at = created_at - interval '25 hours' WHERE order_id = 'o-0'")
        .await
        .unwrap();
    let (status, again) = create(&second, &key, "o-52", Some("k-0")).await;
    assert_eq!(
        (status, again["address"].as_str()),
        (201, Some(expected[52].as_str())),
        "{again}"
    );
    assert_ne!(again["id"], payment["id"]);
    // Ten requests racing with one key: one payment, and the addresses the
    // losers took come back (the next create gets the index after it).
    let racing = (0..10).map(|n| {
        let app = if n % 2 == 0 { &first } else { &second };
        let key = key.clone();
        async move { create(app, &key, "o-race", Some("k-race")).await }
    });
    let answers = futures_util::future::join_all(racing).await;
    let ids: HashSet<&str> = answers.iter().map(|(_, body)| body["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), 1, "{answers:?}");
    assert_eq!(answers[0].1["address"], expected[53].as_str());
    let (_, after) = create(&first, &key, "o-after-race", None).await;
    assert_eq!(after["address"], expected[54].as_str(), "no index lost in the race");

    // The audit trail names the address; the payment records its index.
    let client = db.client().await;
    let row = client
        .query_one(
            "SELECT l.message, l.metadata::text, p.derivation_index FROM payment_logs l \
             JOIN payments p ON p.id = l.payment_id WHERE p.order_id = 'o-0'",
            &[],
        )
        .await
        .unwrap();
    let (message, metadata, index): (String, String, i32) = (row.get(0), row.get(1), row.get(2));
    assert!(
        message.contains(&expected[0]) && metadata.contains(&expected[0]),
        "{message} {metadata}"
    );
    assert_eq!(index, 0);
    let modes: Vec<String> = db.column("SELECT DISTINCT address_mode FROM payments").await;
    assert_eq!(modes, ["xpub"]);

    // An address given is still used as given.
    let given = first
        .call(
            reqwest::Method::POST,
            "/v1/payments",
            Some(&key),
            &[],
            Some(
                json!({ "order_id": "o-given", "amount": "5", "address": "TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t" })
                    .to_string(),
            ),
        )
        .await;
    assert_eq!(
        (given.status, given.body["address"].as_str()),
        (201, Some("TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t"))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn without_an_address_mode_the_address_is_required() {
    let (db, app) = TestApp::fresh(|_| {}).await;
    let key = db.api_key("shop", READ_WRITE).await;
    let (status, body) = create(&app, &key, "o-1", None).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (400, Some("invalid_request")),
        "{body}"
    );
    assert!(
        body["detail"].as_str().unwrap().contains("ADDRESS_MODE=given"),
        "{body}"
    );
}

/// The shared address of the unique_amount tests.
const SHARED: &str = "TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t";

async fn unique_app(db: &TestDb) -> TestApp {
    TestApp::start(db.url(), |settings| {
        settings.address_mode = "unique_amount".into();
        settings.receive_address = SHARED.into();
        settings.unique_amount_max_offset = "0.49".parse().unwrap();
        settings.api_workers = Some(4);
    })
    .await
}

/// Moves payment `id`'s creation — and the address or amount it took then
/// — 25 hours back; with `cancellation`, its cancellation too: then it
/// ended past the 24-hour grace.
async fn moved_25_hours_back(db: &TestDb, id: &str, cancellation: bool) {
    let mut sql = format!(
        "UPDATE payments SET created_at = created_at - interval '25 hours' WHERE id = '{id}'; \
         UPDATE payment_logs SET created_at = created_at - interval '25 hours' \
         WHERE payment_id = '{id}' AND event_type = 'created'; \
         UPDATE amount_reservations SET created_at = created_at - interval '25 hours' WHERE payment_id = '{id}'; \
         UPDATE receiving_addresses SET assigned_at = assigned_at - interval '25 hours' WHERE payment_id = '{id}';"
    );
    if cancellation {
        sql.push_str(&format!(
            "UPDATE payment_logs SET created_at = created_at - interval '25 hours' \
             WHERE payment_id = '{id}' AND event_type = 'cancelled';"
        ));
    }
    db.client().await.batch_execute(&sql).await.unwrap();
}

async fn create_amount(app: &TestApp, key: &str, order: &str, amount: &str) -> (u16, Value) {
    let answer = app
        .call(
            reqwest::Method::POST,
            "/v1/payments",
            Some(key),
            &[],
            Some(json!({ "order_id": order, "amount": amount }).to_string()),
        )
        .await;
    (answer.status, answer.body)
}

#[tokio::test(flavor = "multi_thread")]
async fn unique_amounts_are_distinct_under_concurrency_run_out_with_409_and_return_after_the_grace() {
    let db = TestDb::new().await;
    let key = db.api_key("shop", READ_WRITE).await;
    let (first, second) = (unique_app(&db).await, unique_app(&db).await);

    // 50 creates of 10 USDT at once on two replicas: 10.00 to 10.49, each once.
    let creates = (0..50).map(|n| {
        let app = if n % 2 == 0 { &first } else { &second };
        let key = key.clone();
        async move { create_amount(app, &key, &format!("u-{n}"), "10").await }
    });
    let answers = futures_util::future::join_all(creates).await;
    let mut amounts = HashSet::new();
    for (status, body) in &answers {
        assert_eq!(*status, 201, "{body}");
        assert_eq!(
            (body["amount"].as_str(), body["address"].as_str()),
            (Some("10"), Some(SHARED))
        );
        assert!(
            amounts.insert(body["amount_to_pay"].as_str().unwrap().to_owned()),
            "twice: {body}"
        );
    }
    let expected: HashSet<String> = (0..50)
        .map(|cents| {
            tronpay_domain::UsdtAmount::from_base_units(10_000_000 + cents * 10_000)
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(amounts, expected);

    // The 51st: none left, a clear 409; another amount still works.
    let (status, body) = create_amount(&first, &key, "u-50", "10").await;
    assert_eq!((status, body["code"].as_str()), (409, Some("no_free_amount")), "{body}");
    assert!(body["detail"].as_str().unwrap().contains("10 USDT"), "{body}");
    let (status, body) = create_amount(&first, &key, "u-other", "20").await;
    assert_eq!((status, body["amount_to_pay"].as_str()), (201, Some("20")), "{body}");

    // A cancelled payment's amount is held through the grace period…
    let held = answers
        .iter()
        .find(|(_, body)| body["amount_to_pay"] == "10.07")
        .unwrap();
    let id = held.1["id"].as_str().unwrap();
    let cancelled = first
        .v1_post(&format!("/v1/payments/{id}/cancel"), &key, &json!({}))
        .await;
    assert_eq!(cancelled.status, 200);
    let mut conn = db.connect().await;
    // (Created a day ago, cancelled now: the grace runs from the end.)
    moved_25_hours_back(&db, id, false).await;
    assert_eq!(
        tronpay_db::receiving::release_amounts(&mut conn, 86_400).await.unwrap(),
        0
    );
    assert_eq!(create_amount(&first, &key, "u-51", "10").await.0, 409);
    // …and free once it is over: the next create gets exactly that amount.
    moved_25_hours_back(&db, id, true).await;
    assert_eq!(
        tronpay_db::receiving::release_amounts(&mut conn, 86_400).await.unwrap(),
        1
    );
    let (status, body) = create_amount(&second, &key, "u-52", "10").await;
    assert_eq!((status, body["amount_to_pay"].as_str()), (201, Some("10.07")), "{body}");

    // A replay keeps its amount and holds no other.
    let keyed = || {
        first.call(
            reqwest::Method::POST,
            "/v1/payments",
            Some(&key),
            &[("idempotency-key", "k-30")],
            Some(json!({ "order_id": "keyed-30", "amount": "30" }).to_string()),
        )
    };
    let (made, again) = (keyed().await, keyed().await);
    assert_eq!((made.status, again.status, &again.text), (201, 201, &made.text));
    let (_, next) = create_amount(&second, &key, "keyed-31", "30").await;
    assert_eq!(next["amount_to_pay"], "30.01", "no amount leaked: {next}");

    // Ten requests with one key at once on both replicas: one payment, and
    // the amounts the losers held go back.
    let racing = (0..10).map(|n| {
        let app = if n % 2 == 0 { &first } else { &second };
        let key = key.clone();
        async move {
            app.call(
                reqwest::Method::POST,
                "/v1/payments",
                Some(&key),
                &[("idempotency-key", "k-40")],
                Some(json!({ "order_id": "keyed-40", "amount": "40" }).to_string()),
            )
            .await
        }
    });
    let ids: HashSet<String> = futures_util::future::join_all(racing)
        .await
        .into_iter()
        .map(|answer| {
            assert_eq!(answer.status, 201, "{}", answer.text);
            answer.body["id"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(ids.len(), 1, "one payment for one key: {ids:?}");
    let (_, next) = create_amount(&second, &key, "keyed-41", "40").await;
    assert_eq!(next["amount_to_pay"], "40.01", "no amount leaked: {next}");
}

async fn pool_app(db: &TestDb) -> TestApp {
    TestApp::start(db.url(), |settings| {
        settings.address_mode = "pool".into();
        settings.api_workers = Some(4);
    })
    .await
}

/// `/health`'s, `/stats`'s and `/v1/stats`'s view of the pool, which must
/// agree: `(free, total)`.
async fn pool_seen(app: &TestApp, key: &str) -> (i64, i64) {
    let health = app.call(reqwest::Method::GET, "/health", None, &[], None).await;
    let stats = app.call(reqwest::Method::GET, "/stats", None, &[], None).await;
    let v1 = app.call(reqwest::Method::GET, "/v1/stats", Some(key), &[], None).await;
    let seen = |body: &Value| {
        (
            body["address_pool"]["free"].as_i64(),
            body["address_pool"]["total"].as_i64(),
        )
    };
    assert_eq!(seen(&health.body), seen(&stats.body), "{} {}", health.body, stats.body);
    assert_eq!(seen(&health.body), seen(&v1.body), "{}", v1.body);
    let (free, total) = seen(&health.body);
    (free.unwrap(), total.unwrap())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pool_of_ten_serves_ten_payments_then_409_and_lends_an_address_again_after_the_grace() {
    let db = TestDb::new().await;
    let key = db.api_key("shop", READ_WRITE).await;
    // Ten valid addresses (from an account key tronpay is not given here).
    let pool: Vec<String> = derived(10);
    let mut conn = db.connect().await;
    assert_eq!(
        tronpay_db::receiving::import_pool(&mut conn, &pool).await.unwrap(),
        tronpay_db::receiving::Imported::Added(10)
    );
    let (first, second) = (pool_app(&db).await, pool_app(&db).await);
    assert_eq!(pool_seen(&first, &key).await, (10, 10));

    // 50 creates at once on two replicas: ten get the ten addresses, each
    // once; forty get a clear 409.
    let creates = (0..50).map(|n| {
        let app = if n % 2 == 0 { &first } else { &second };
        let key = key.clone();
        async move { create(app, &key, &format!("p-{n}"), None).await }
    });
    let answers = futures_util::future::join_all(creates).await;
    let mut lent = HashSet::new();
    let mut refused = 0;
    for (status, body) in &answers {
        match status {
            201 => {
                assert_eq!(body["amount_to_pay"], "5", "{body}");
                assert!(
                    lent.insert(body["address"].as_str().unwrap().to_owned()),
                    "twice: {body}"
                );
            }
            409 => {
                assert_eq!(body["code"], "pool_empty", "{body}");
                assert!(
                    body["detail"].as_str().unwrap().contains("tronpay addresses import"),
                    "{body}"
                );
                refused += 1;
            }
            _ => panic!("{status} {body}"),
        }
    }
    assert_eq!((lent, refused), (pool.iter().cloned().collect(), 40));
    assert_eq!(pool_seen(&second, &key).await, (0, 10));
    let modes: Vec<String> = db.column("SELECT DISTINCT address_mode FROM payments").await;
    assert_eq!(modes, ["pool"]);

    // A cancelled payment keeps its address through the grace period…
    let (_, held) = answers.iter().find(|(status, _)| *status == 201).unwrap();
    let (id, address) = (held["id"].as_str().unwrap(), held["address"].as_str().unwrap());
    let cancelled = first
        .v1_post(&format!("/v1/payments/{id}/cancel"), &key, &json!({}))
        .await;
    assert_eq!(cancelled.status, 200);
    // (Created a day ago, cancelled now: the grace runs from the end.)
    moved_25_hours_back(&db, id, false).await;
    assert_eq!(tronpay_db::receiving::release_pool(&mut conn, 86_400).await.unwrap(), 0);
    assert_eq!(create(&first, &key, "p-50", None).await.0, 409);
    // …and is lent again once it is over.
    moved_25_hours_back(&db, id, true).await;
    assert_eq!(tronpay_db::receiving::release_pool(&mut conn, 86_400).await.unwrap(), 1);
    assert_eq!(pool_seen(&first, &key).await, (1, 10));
    // A replay gets the same address and takes no other.
    let (status, again) = create(&second, &key, "p-51", Some("k-51")).await;
    assert_eq!((status, again["address"].as_str()), (201, Some(address)), "{again}");
    let (status, replay) = create(&first, &key, "p-51", Some("k-51")).await;
    assert_eq!((status, &replay["id"]), (201, &again["id"]));
    assert_eq!(pool_seen(&first, &key).await, (0, 10));
    // Only the current holder is named by the table; both payments by the
    // address.
    let holders: Vec<String> = db
        .column(&format!(
            "SELECT payment_id FROM receiving_addresses WHERE address = '{address}'"
        ))
        .await;
    assert_eq!(holders, [again["id"].as_str().unwrap()]);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_empty_pool_is_a_409_not_a_failed_start() {
    let (db, app) = TestApp::fresh(|settings| settings.address_mode = "pool".into()).await;
    let key = db.api_key("shop", READ_WRITE).await;
    assert_eq!(pool_seen(&app, &key).await, (0, 0));
    let (status, body) = create(&app, &key, "p-0", None).await;
    assert_eq!((status, body["code"].as_str()), (409, Some("pool_empty")), "{body}");
    assert_eq!(body["title"], "No address of the pool is free");
}

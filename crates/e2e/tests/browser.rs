//! The checkout page and the operator dashboard in a real headless Chromium
//! (PRODUCT §11): the whole
//! stack — two API replicas, the chain watcher, the webhook dispatcher and
//! the sandbox node — and a buyer who opens the checkout on the replica that
//! applies nothing (its own broker names, so no `payment.detected` reaches
//! it), reads the amount and the address off the page, pays them on the
//! sandbox and watches the page turn to paid and send them back to the shop;
//! then an operator signs in to the dashboard on that replica, cancels a
//! payment from its page, assigns a late transfer, retries a dead webhook
//! delivery (which then reaches its receiver), creates an API key (shown
//! once, usable) and revokes it (refused), and reads the settings.
//! `browser/checkout.cjs` drives Chromium through playwright-core; `make
//! test` installs both (Debian's `chromium`, npm's `playwright-core` and
//! `axe-core` in `.local/node`). Screenshots go to `target/screenshots/`.

// Integration tests: a failed step should stop the test loudly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Value, json};
use tronpay_e2e::receiver::{Receiver, Reply};
use tronpay_e2e::{ApiInstance, DispatcherInstance, SOLID_LAG, Stack, TestBus, eventually, v1};

/// The dashboard's operator's password.
const OPERATOR_PASSWORD: &str = "browser test password";

/// The account key of the BIP39 test mnemonic at m/44'/195'/0'.
const XPUB: &str =
    "xpub6D1AabNHCupeiLM65ZR9UStMhJ1vCpyV4XbZdyhMZBiJXALQtmn9p42VTQckoHVn8WNqS7dqnJokZHAHcHGoaQgmv8D45oNUKx6DZMNZBCd";

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `TRONPAY_NODE_MODULES`, else `.local/node/node_modules` (where `make test`
/// installs playwright-core and axe-core).
fn node_modules() -> PathBuf {
    let modules = std::env::var_os("TRONPAY_NODE_MODULES")
        .map_or_else(|| workspace().join(".local/node/node_modules"), PathBuf::from);
    assert!(
        modules.join("playwright-core").is_dir() && modules.join("axe-core").is_dir(),
        "no playwright-core and axe-core in {}: `make test` installs them",
        modules.display()
    );
    modules
}

/// `TRONPAY_CHROMIUM`, else Debian's `/usr/bin/chromium` (`make test`
/// installs it).
fn chromium() -> PathBuf {
    let chromium =
        std::env::var_os("TRONPAY_CHROMIUM").map_or_else(|| PathBuf::from("/usr/bin/chromium"), PathBuf::from);
    assert!(
        chromium.is_file(),
        "no Chromium at {}: `make test` installs Debian's chromium",
        chromium.display()
    );
    chromium
}

/// A v1 payment without an address (mode `xpub` gives it one); returns its id.
async fn create(api: &str, key: &str, order: &str, extra: Value) -> String {
    let mut body = json!({ "order_id": order, "amount": "9.75" });
    body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    let (status, payment) = v1(api, "POST", "/v1/payments", key, Some(body)).await;
    assert_eq!(status, 201, "{payment}");
    payment["id"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_buyer_pays_through_the_checkout_page_in_a_real_browser() {
    let (modules, chromium) = (node_modules(), chromium());
    let stack = Stack::start_with(
        |api| {
            api.callback_allow_private = true;
            api.address_mode = "xpub".into();
            api.xpub = XPUB.into();
        },
        |_| {},
    )
    .await;
    // One retry a second after the first attempt, then dead.
    let _dispatcher = DispatcherInstance::start(stack.db.url(), &stack.bus.settings, |dispatcher| {
        dispatcher.webhook_retry_schedule = "1s".into();
    })
    .await;
    let receiver = Receiver::start(vec![]).await;
    // A receiver that is down for both scheduled attempts, then answers.
    let flaky = Receiver::start(vec![Reply::Status(500), Reply::Status(500)]).await;
    // The replica the buyer's browser talks to: its own (silent) broker
    // names, so it never applies a transfer; its stream must learn from the
    // database what the other replica did.
    let quiet_bus = TestBus::new();
    let viewer = ApiInstance::start(stack.db.url(), &quiet_bus.settings, |api| {
        api.address_mode = "xpub".into();
        api.xpub = XPUB.into();
    })
    .await;
    let key = stack.db.api_key("shop", &["payments:read", "payments:write"]).await;
    let applying = &stack.api.url;
    let shop = format!("{}/health?back-from=checkout", viewer.url);

    let paid = create(
        applying,
        &key,
        "browser-paid",
        json!({ "notify_url": receiver.url, "redirect_url": shop }),
    )
    .await;
    let pending = create(applying, &key, "browser-pending", json!({})).await;
    let nojs = create(applying, &key, "browser-no-javascript", json!({})).await;
    let expired = create(applying, &key, "browser-expired", json!({})).await;
    stack.expire_now(&expired).await;
    // The sweep waits for a final block later than the deadline.
    stack.sandbox.mine(1).unwrap();
    stack.finalize();
    let cancelled = create(applying, &key, "browser-cancelled", json!({})).await;
    let (status, body) = v1(
        applying,
        "POST",
        &format!("/v1/payments/{cancelled}/cancel"),
        &key,
        Some(json!({})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    eventually(Duration::from_secs(20), "the expiry sweep", || async {
        let (_, body) = v1(applying, "GET", &format!("/v1/payments/{expired}"), &key, None).await;
        (body["status"] == "expired").then_some(())
    })
    .await;

    // The dashboard part: an operator, and a payment for them to cancel.
    let dashboard_payment = create(applying, &key, "browser-dashboard", json!({})).await;
    let hash = tronpay_domain::operator::hash_password(OPERATOR_PASSWORD).unwrap();
    let mut conn = stack.db.connect().await;
    tronpay_db::operators::create(&mut conn, "olga", &hash)
        .await
        .unwrap()
        .unwrap();
    drop(conn);

    // A late transfer (to the expired payment's address) for the operator to
    // assign to another payment.
    let (_, expired_body) = v1(applying, "GET", &format!("/v1/payments/{expired}"), &key, None).await;
    let late_to = tronpay_domain::TronAddress::parse(expired_body["address"].as_str().unwrap()).unwrap();
    let late = stack.pay(late_to, "9.75");
    eventually(Duration::from_secs(20), "the late transfer", || async {
        let kinds = tronpay_e2e::sql_values(
            &stack.db,
            &format!("SELECT match_kind FROM transfers WHERE txid = '{}'", late.txid.as_str()),
        )
        .await;
        kinds
            .first()
            .is_some_and(|row| row["match_kind"] == "late")
            .then_some(())
    })
    .await;
    let assign_to = create(applying, &key, "browser-assign", json!({})).await;

    // A webhook delivery that died (both attempts answered 500), for the
    // operator to retry.
    let dead = create(
        applying,
        &key,
        "browser-dead-webhook",
        json!({ "notify_url": flaky.url, "notify_events": ["payment.cancelled"] }),
    )
    .await;
    let (status, body) = v1(
        applying,
        "POST",
        &format!("/v1/payments/{dead}/cancel"),
        &key,
        Some(json!({})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let delivery_status = || async {
        tronpay_e2e::sql_values(
            &stack.db,
            &format!("SELECT status FROM webhook_deliveries WHERE payment_id = '{dead}'"),
        )
        .await
        .first()
        .map(|row| row["status"].as_str().unwrap_or_default().to_owned())
    };
    eventually(Duration::from_secs(30), "the delivery to die", || async {
        (delivery_status().await.as_deref() == Some("dead")).then_some(())
    })
    .await;

    let checkout = |id: &str| format!("{}/pay/{id}", viewer.url);
    let screenshots = workspace().join("target/screenshots");
    let config = json!({
        "chromium": chromium,
        "screenshots": screenshots,
        "sandbox": stack.sandbox.url(),
        "solid_lag": SOLID_LAG,
        "redirect": shop,
        "pay": checkout(&paid),
        "pending": checkout(&pending),
        "nojs": checkout(&nojs),
        "expired": checkout(&expired),
        "cancelled": checkout(&cancelled),
        "missing": checkout("0b6f0d6c-1c2d-4c3e-9f00-000000000000"),
        "admin": viewer.url,
        "operator": "olga",
        "password": OPERATOR_PASSWORD,
        "dashboard_payment": dashboard_payment,
        "dashboard_order": "browser-dashboard",
        "late_txid": late.txid.as_str(),
        "assign_to": assign_to,
        "dead_payment": dead,
        "xpub": XPUB,
    });
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("browser/checkout.cjs");
    std::fs::create_dir_all(&screenshots).unwrap();
    let log_path = screenshots.join("browser-checks.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let mut node = std::process::Command::new("node")
        .arg(&script)
        .env("TRONPAY_NODE_MODULES", &modules)
        .env("BROWSER_TEST_CONFIG", config.to_string())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("node runs (the machine's Node.js)");
    let started = std::time::Instant::now();
    let finished = loop {
        if let Some(status) = node.try_wait().unwrap() {
            break Some(status);
        }
        if started.elapsed() > Duration::from_secs(240) {
            node.kill().ok();
            break None;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let printed = std::fs::read_to_string(&log_path).unwrap();
    let status = finished.unwrap_or_else(|| panic!("the browser checks took more than 4 minutes:\n{printed}"));
    println!("{printed}");
    assert!(status.success(), "browser checks failed:\n{printed}");
    assert!(
        printed.contains("ok: the page turned to paid without reloading"),
        "{printed}"
    );

    // What the page showed is what happened, and the shop heard of it.
    let (_, body) = v1(applying, "GET", &format!("/v1/payments/{paid}"), &key, None).await;
    assert_eq!(
        (body["status"].as_str(), body["received_amount"].as_str()),
        (Some("completed"), Some("9.75"))
    );
    eventually(Duration::from_secs(30), "the completion webhook", || async {
        receiver.received().into_iter().find(|request| {
            serde_json::from_str::<Value>(&request.body)
                .is_ok_and(|body| body["event"] == "payment.completed" && body["payment"]["id"] == paid.as_str())
        })
    })
    .await;
    let (_, body) = v1(
        applying,
        "GET",
        &format!("/v1/payments/{dashboard_payment}"),
        &key,
        None,
    )
    .await;
    assert_eq!(body["status"], "failed", "cancelled from the dashboard");
    let (_, body) = v1(applying, "GET", &format!("/v1/payments/{assign_to}"), &key, None).await;
    assert_eq!(
        body["status"], "completed",
        "paid by the transfer assigned in the dashboard"
    );
    // The retried delivery reached its receiver, with the same webhook-id.
    eventually(Duration::from_secs(30), "the retried delivery", || async {
        (delivery_status().await.as_deref() == Some("delivered")).then_some(())
    })
    .await;
    let sent = flaky.received();
    assert_eq!(sent.len(), 3, "two failed attempts and the retry");
    let ids: Vec<Option<&str>> = sent.iter().map(|request| request.header("webhook-id")).collect();
    assert!(ids[0].is_some() && ids.iter().all(|id| *id == ids[0]), "{ids:?}");
    let actions = tronpay_e2e::sql_values(
        &stack.db,
        "SELECT action FROM operator_actions WHERE operator = 'olga' ORDER BY id",
    )
    .await;
    let actions: Vec<&str> = actions.iter().filter_map(|row| row["action"].as_str()).collect();
    assert_eq!(
        actions,
        [
            "cancel payment",
            "assign transfer",
            "retry delivery",
            "create API key",
            "revoke API key"
        ]
    );
    for name in [
        "checkout-waiting",
        "checkout-paid",
        "checkout-phone",
        "checkout-zh",
        "dashboard-overview",
        "dashboard-payment",
        "dashboard-webhooks",
        "dashboard-keys",
        "dashboard-settings",
    ] {
        assert!(screenshots.join(format!("{name}.png")).is_file(), "{name}.png");
    }
}

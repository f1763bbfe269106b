//! The services run as a least-privileged role (PRODUCT §12): the owner
//! migrates, `tronpay db grants --apply` gives the role rows of tronpay's
//! tables and nothing else, and the whole payment path — create, detect,
//! confirm, complete, webhook — works as that role, while DDL, `TRUNCATE`
//! and writes to the migrations table are refused to it.

// Integration tests: a failed step should stop the test loudly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use tronpay_e2e::receiver::Receiver;
use tronpay_e2e::{
    ApiInstance, DispatcherInstance, Sandbox, TestBus, TestDb, WatcherInstance, create_payment_with_callback,
    eventually, random_address, test_chain, wait_for_status,
};

/// The database's URL, connecting as `role` instead.
fn as_role(url: &str, role: &str) -> String {
    let mut url = url::Url::parse(url).unwrap();
    url.set_username(role).unwrap();
    url.set_password(None).unwrap();
    url.to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_payment_completes_with_the_services_running_as_the_least_privileged_role() {
    let db = TestDb::new().await;
    let role = format!("tronpay_app_{:08x}", fastrand::u32(..));
    let owner = db.client().await;
    owner.batch_execute(&format!("CREATE ROLE {role} LOGIN")).await.unwrap();
    let applied = tronpay_db::grants::apply(&mut db.connect().await, &role).await.unwrap();
    assert!(applied.iter().all(|statement| !statement.contains("ALL PRIVILEGES")));
    let url = as_role(db.url(), &role);

    // What the role may not do.
    let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await.unwrap();
    let connection = tokio::spawn(connection);
    for refused in [
        "CREATE TABLE intruder (a int)",
        "DROP TABLE payments",
        "ALTER TABLE payments ADD COLUMN x int",
        "TRUNCATE payments",
        "DELETE FROM __diesel_schema_migrations",
        "INSERT INTO __diesel_schema_migrations (version) VALUES ('99999999999999')",
    ] {
        let error = client.batch_execute(refused).await.unwrap_err();
        assert_eq!(
            error.code(),
            Some(&tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE),
            "{refused}: {error:?}"
        );
    }
    let migrations: i64 = client
        .query_one("SELECT count(*) FROM __diesel_schema_migrations", &[])
        .await
        .unwrap()
        .get(0);
    assert!(migrations > 0, "it may read which migrations were applied");
    drop(client);
    connection.await.unwrap().unwrap();

    // The whole stack as the role.
    let bus = TestBus::new();
    let sandbox = Sandbox::start(test_chain()).await.unwrap();
    let api = ApiInstance::start(&url, &bus.settings, |api| api.callback_allow_private = true).await;
    let watcher = WatcherInstance::start(&url, &bus.settings, &sandbox.url(), |_| {}).await;
    let dispatcher = DispatcherInstance::start(&url, &bus.settings, |_| {}).await;
    let receiver = Receiver::start(vec![]).await;
    let address = random_address();
    let id = create_payment_with_callback(&api.url, &address, "3.25", &receiver.url).await;
    sandbox.transfer(address, "3.25".parse().unwrap()).unwrap();
    sandbox.mine(1 + tronpay_e2e::SOLID_LAG).unwrap();
    let body = wait_for_status(&api.url, &id, "completed").await;
    assert_eq!(body["received_amount_usdt"], 3.25);
    eventually(Duration::from_secs(30), "the webhook", || async {
        (!receiver.received().is_empty()).then_some(())
    })
    .await;
    let connected: Vec<String> = db
        .column(
            "SELECT DISTINCT usename::text FROM pg_stat_activity WHERE datname = current_database() \
             AND application_name LIKE 'tronpay-%'",
        )
        .await;
    assert_eq!(
        connected,
        std::slice::from_ref(&role),
        "every service connected as the role"
    );

    drop((api, watcher, dispatcher));
    // The role goes with its privileges (it owns nothing).
    owner
        .batch_execute(&format!("DROP OWNED BY {role}; DROP ROLE {role}"))
        .await
        .unwrap();
}

//! Two replicas of every service as real processes against one PostgreSQL
//! and one RabbitMQ; one of each is killed with SIGKILL while payments are
//! being paid. Every payment completes once, and every webhook arrives with
//! one `webhook-id`.

// Integration tests: a failed step should stop the test loudly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};
use tronpay_e2e::process::{PgBouncer, ServiceProcess, workspace_binary};
use tronpay_e2e::{TestBus, TestDb, create_payment_with_callback, eventually, http_client, random_address, sql_values};

const PAYMENTS: usize = 200;
const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

fn common_env(database_url: &str, bus: &TestBus) -> Vec<(&'static str, String)> {
    vec![
        ("DATABASE_URL", database_url.to_owned()),
        ("RABBITMQ_URL", bus.settings.rabbitmq_url.clone()),
        ("BUS_EXCHANGE", bus.settings.bus_exchange.clone()),
        ("BUS_QUEUE_PREFIX", bus.settings.bus_queue_prefix.clone()),
        // Six processes share the test server with the other tests.
        ("DB_POOL_SIZE", "3".into()),
        ("DB_MAX_OVERFLOW", "3".into()),
        ("RUST_LOG", "info".into()),
    ]
}

fn with(mut env: Vec<(&'static str, String)>, extra: &[(&'static str, &str)]) -> Vec<(&'static str, String)> {
    env.extend(extra.iter().map(|(key, value)| (*key, (*value).to_owned())));
    env
}

struct Replicas {
    apis: Vec<ServiceProcess>,
    watchers: Vec<ServiceProcess>,
    dispatchers: Vec<ServiceProcess>,
}

fn start_replicas(env: &[(&'static str, String)], node: &str, dir: &Path) -> Replicas {
    let watcher_env = with(
        env.to_vec(),
        &[
            ("TRON_NODE_URL", node),
            ("BLOCK_INTERVAL_MS", "500"),
            ("WATCHER_BIND", "127.0.0.1:0"),
        ],
    );
    let dispatcher_env = with(
        env.to_vec(),
        &[
            ("WEBHOOK_SECRET", SECRET),
            ("CALLBACK_ALLOW_PRIVATE", "true"),
            ("DISPATCHER_BIND", "127.0.0.1:0"),
            ("WEBHOOK_RETRY_SCHEDULE", "1s,1s,2s,5s"),
            ("WEBHOOK_REPUBLISH_SECONDS", "2"),
        ],
    );
    let api_env = with(
        env.to_vec(),
        &[("BIND", "127.0.0.1:0"), ("CALLBACK_ALLOW_PRIVATE", "true")],
    );
    let two = |name: &str, binary: &str, env: &[(&str, String)], listening: &str| {
        ["a", "b"]
            .iter()
            .map(|replica| {
                let mut env = env.to_vec();
                env.push(("INSTANCE_ID", format!("{name}-{replica}")));
                ServiceProcess::start(
                    &format!("{name}-{replica}"),
                    &workspace_binary(binary),
                    &[],
                    &env,
                    dir,
                    listening,
                )
            })
            .collect::<Vec<_>>()
    };
    Replicas {
        watchers: two(
            "watcher",
            "tronpay-chain-watcher",
            &watcher_env,
            "tronpay-chain-watcher health endpoint listening",
        ),
        dispatchers: two(
            "dispatcher",
            "tronpay-webhook-dispatcher",
            &dispatcher_env,
            "tronpay-webhook-dispatcher health endpoint listening",
        ),
        apis: two("api", "tronpay-api", &api_env, "tronpay-api listening"),
    }
}

async fn get_json(url: &str) -> Value {
    http_client().get(url).send().await.unwrap().json().await.unwrap()
}

async fn post_json(url: &str, body: &Value) -> (u16, Value) {
    let response = http_client().post(url).json(body).send().await.unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

async fn completed(db: &TestDb) -> u64 {
    sql_values(db, "SELECT count(*) AS n FROM payments WHERE status = 'completed'").await[0]["n"]
        .as_u64()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn two_replicas_of_each_service_lose_one_each_and_nothing_is_lost() {
    let db = TestDb::new().await;
    two_of_each_lose_one(&db, db.url(), &[]).await;
}

/// The same behind PgBouncer in transaction mode: the scanner lock, the
/// migration lock and prepared statements must not depend on a session.
#[tokio::test(flavor = "multi_thread")]
async fn the_same_behind_pgbouncer_in_transaction_mode() {
    let db = TestDb::new().await;
    let bouncer = PgBouncer::start(&tronpay_testkit::server_url());
    // A statement timeout set per session would stick to whichever server
    // connection took the SET; behind PgBouncer it is set on the role instead.
    two_of_each_lose_one(&db, &bouncer.url_for(db.url()), &[("DB_STATEMENT_TIMEOUT_MS", "0")]).await;
}

/// Two replicas of each service on `database_url`; one of each is killed
/// while the payments are being paid.
async fn two_of_each_lose_one(db: &TestDb, database_url: &str, extra: &[(&'static str, &str)]) {
    let bus = TestBus::new();
    let dir = tempfile::tempdir().unwrap();
    let env = with(common_env(database_url, &bus), extra);

    // Two migration runs at once (a Job and an init container, say): both
    // succeed, the migrations are applied once.
    let migrations: Vec<_> = (0..2)
        .map(|_| {
            std::process::Command::new(workspace_binary("tronpay"))
                .args(["db", "create-tables"])
                .env("DATABASE_URL", database_url)
                .current_dir(dir.path())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for migration in migrations {
        let output = migration.wait_with_output().unwrap();
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    }
    let applied = sql_values(db, "SELECT count(*) AS n FROM __diesel_schema_migrations").await;
    let migrations = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../../migrations"))
        .unwrap()
        .filter(|entry| entry.as_ref().is_ok_and(|entry| entry.path().is_dir()))
        .count();
    assert_eq!(applied[0]["n"], migrations);

    let mut sandbox = ServiceProcess::start(
        "sandbox",
        &workspace_binary("tronpay-sandbox"),
        &["--bind", "127.0.0.1:0", "--block-ms", "500", "--solid-lag", "3"],
        &[("SANDBOX_WEBHOOK_SECRET", SECRET.to_owned())],
        dir.path(),
        "sandbox node listening",
    );
    let mut replicas = start_replicas(&env, &sandbox.url(), dir.path());

    // One watcher scans, the other stands by (both healthy).
    let leader = eventually(Duration::from_secs(30), "a scanning watcher", || async {
        let mut leaders = Vec::new();
        for (index, watcher) in replicas.watchers.iter().enumerate() {
            let health = get_json(&format!("{}/health", watcher.url())).await;
            if health["leader"] == true {
                leaders.push(index);
            }
        }
        (leaders.len() == 1).then(|| leaders[0])
    })
    .await;
    for process in replicas
        .apis
        .iter()
        .chain(&replicas.dispatchers)
        .chain(&replicas.watchers)
    {
        let url = format!("{}/health", process.url());
        eventually(
            Duration::from_secs(30),
            &format!("{} healthy", process.name),
            || async {
                let response = http_client().get(&url).send().await.ok()?;
                (response.status() == 200).then_some(())
            },
        )
        .await;
    }

    // 200 payments, created alternately through both API replicas.
    let callback = format!("{}/sandbox/webhooks", sandbox.url());
    let mut payments = Vec::new();
    for index in 0..PAYMENTS {
        let address = random_address();
        let amount = format!("{}.{:02}", 10 + index % 90, index % 100);
        let api = &replicas.apis[index % 2];
        let id = create_payment_with_callback(&api.url(), &address, &amount, &callback).await;
        payments.push((id, address, amount));
    }

    // Pay the first half; once some have completed, kill one replica of
    // each service — the scanning watcher among them — with SIGKILL.
    let pay = |(_, address, amount): &(String, tronpay_domain::TronAddress, String)| {
        let body = json!({ "to": address.to_string(), "amount": amount });
        let url = format!("{}/sandbox/transfer", sandbox.url());
        async move {
            let (status, answer) = post_json(&url, &body).await;
            assert_eq!(status, 200, "{answer}");
        }
    };
    for payment in &payments[..PAYMENTS / 2] {
        pay(payment).await;
    }
    eventually(Duration::from_secs(60), "the first completions", || async {
        (completed(db).await >= 10).then_some(())
    })
    .await;
    // Mid-way by construction: the second half is not even paid yet.
    let in_flight = completed(db).await;
    eprintln!("killing one replica of each service with {in_flight} of {PAYMENTS} payments completed");
    let standby_before = replicas.watchers[1 - leader].log();
    replicas.watchers[leader].kill();
    replicas.dispatchers[0].kill();
    replicas.apis[0].kill();

    // The survivors carry on: the standby watcher takes over, the other API
    // and dispatcher take the killed ones' unacknowledged messages.
    let survivor = &replicas.apis[1];
    for payment in &payments[PAYMENTS / 2..] {
        pay(payment).await;
    }
    eventually(Duration::from_secs(120), "every payment completed", || async {
        (completed(db).await == PAYMENTS as u64).then_some(())
    })
    .await;
    let standby = &replicas.watchers[1 - leader];
    assert_eq!(get_json(&format!("{}/health", standby.url())).await["leader"], true);
    // Never two scanners at once: the standby stood by until the kill and
    // took over once; each watcher became the scanner exactly once and
    // never found the cursor moved under it.
    const ACTIVE: &str = "this replica is the active scanner";
    assert!(
        standby_before.contains("standing by") && !standby_before.contains(ACTIVE),
        "the standby before the kill:\n{standby_before}"
    );
    for watcher in &replicas.watchers {
        let log = watcher.log();
        assert_eq!(log.matches(ACTIVE).count(), 1, "{}:\n{log}", watcher.name);
        assert!(!log.contains("lost the scanner role"), "{}:\n{log}", watcher.name);
    }

    // Completed once: one completion log row, the exact amount counted once.
    let rows = sql_values(
        db,
        "SELECT p.id, p.status, p.received_amount_usdt = p.expected_amount_usdt AS exact, \
         (SELECT count(*) FROM payment_logs l WHERE l.payment_id = p.id AND l.event_type = 'completed') AS completions \
         FROM payments p",
    )
    .await;
    assert_eq!(rows.len(), PAYMENTS);
    for row in &rows {
        assert_eq!((&row["exact"], &row["completions"]), (&json!(true), &json!(1)), "{row}");
    }
    for (id, _, _) in payments.iter().step_by(37) {
        let status = get_json(&format!("{}/payment_status/{id}", survivor.url())).await;
        assert_eq!(status["status"], "completed", "{status}");
    }

    // Every webhook arrived, signed, under exactly one webhook-id per payment.
    let received = eventually(Duration::from_secs(60), "every webhook at the receiver", || async {
        let listed = get_json(&format!("{}/sandbox/webhooks", sandbox.url())).await;
        let mut ids: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for hook in listed["webhooks"].as_array().unwrap() {
            assert_eq!(hook["verified"], true, "{hook}");
            ids.entry(hook["body"]["payment_id"].as_str().unwrap().to_owned())
                .or_default()
                .insert(hook["webhook_id"].as_str().unwrap().to_owned());
        }
        (ids.len() == PAYMENTS).then_some(ids)
    })
    .await;
    for (id, _, _) in &payments {
        assert_eq!(received[id].len(), 1, "payment {id}: webhook ids {:?}", received[id]);
    }
    let deliveries = sql_values(
        db,
        "SELECT count(*) AS n, count(DISTINCT webhook_id) AS ids FROM webhook_deliveries WHERE event_type = 'payment.completed'",
    )
    .await;
    assert_eq!(
        (&deliveries[0]["n"], &deliveries[0]["ids"]),
        (&json!(PAYMENTS), &json!(PAYMENTS))
    );

    // The survivors stop cleanly on SIGTERM, as in a rolling update.
    for process in [&mut replicas.apis[1], &mut replicas.dispatchers[1]] {
        let status = process.terminate();
        assert!(status.success(), "{}: {status}\n{}", process.name, process.log_tail());
    }
    let status = replicas.watchers[1 - leader].terminate();
    assert!(status.success(), "watcher: {status}");
    sandbox.kill();
}

/// PgBouncer answers for PostgreSQL when its own pool cannot serve: those
/// errors are the database being unavailable (retry), never a bug.
#[tokio::test(flavor = "multi_thread")]
async fn pgbouncer_errors_are_the_database_being_unavailable() {
    use diesel_async::RunQueryDsl;
    use tronpay_db::DbError;

    let proxy = tronpay_e2e::FaultyProxy::for_postgres().await;
    let server = url::Url::parse(&proxy.proxied_url(tronpay_testkit::server_url().as_str())).unwrap();
    let bouncer = PgBouncer::start_with(&server, &[("default_pool_size", "1"), ("query_wait_timeout", "1")]);
    let db = TestDb::new().await;
    let url = bouncer.url_for(db.url());
    let options = tronpay_db::pool::ConnectOptions::new(&db.settings(), "tronpay-pgbouncer-errors");
    let mut holder = tronpay_db::connect(&url, &options).await.unwrap();
    let mut waiter = tronpay_db::connect(&url, &options).await.unwrap();
    let query = async |conn: &mut tronpay_db::AsyncPgConnection| -> Result<usize, DbError> {
        Ok(diesel::sql_query("SELECT 1").execute(conn).await?)
    };

    // The one server connection is held in a transaction: the other client's
    // query waits for it past query_wait_timeout.
    diesel::sql_query("BEGIN").execute(&mut holder).await.unwrap();
    query(&mut holder).await.unwrap();
    let error = query(&mut waiter).await.unwrap_err();
    assert!(error.is_unavailable(), "{error:?}");
    drop(holder);

    // PostgreSQL goes away behind PgBouncer: whatever PgBouncer answers
    // (its server connection crashed, it cannot connect, its logins keep
    // failing), it is unavailable.
    proxy.cut();
    for _ in 0..3 {
        let mut conn = match tronpay_db::connect(&url, &options).await {
            Ok(conn) => conn,
            Err(error) => {
                assert!(error.is_unavailable(), "{error:?}");
                continue;
            }
        };
        let error = query(&mut conn).await.unwrap_err();
        assert!(error.is_unavailable(), "{error:?}");
    }
    let error = query(&mut waiter).await.unwrap_err();
    assert!(error.is_unavailable(), "{error:?}");
}

//! The pool keeps the original's behaviour: a base size plus overflow that is
//! closed again when idle, connections recycled by age, dead ones replaced.

// Integration tests: a failed step should stop the test loudly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use diesel::sql_types::Integer;
use diesel_async::RunQueryDsl;
use tronpay_db::{DbError, DbPool, DbSettings, PooledConnection};
use tronpay_testkit::{TestDb, eventually};

#[derive(diesel::QueryableByName)]
struct Backend {
    #[diesel(sql_type = Integer)]
    pid: i32,
}

async fn backend_pid(conn: &mut PooledConnection) -> i32 {
    diesel::sql_query("SELECT pg_backend_pid() AS pid")
        .get_result::<Backend>(&mut **conn)
        .await
        .unwrap()
        .pid
}

fn settings(db: &TestDb, tweak: impl FnOnce(&mut DbSettings)) -> DbSettings {
    let mut settings = db.settings();
    tweak(&mut settings);
    settings
}

#[tokio::test(flavor = "multi_thread")]
async fn overflow_connections_are_opened_under_load_and_closed_when_idle() {
    let db = TestDb::new().await;
    let pool = DbPool::new(
        &settings(&db, |s| {
            s.db_pool_size = 2;
            s.db_max_overflow = 3;
            s.db_overflow_idle_seconds = 0;
            s.db_pool_timeout_seconds = 1;
        }),
        "tronpay-pool-test",
    )
    .unwrap();

    let mut held = Vec::new();
    for _ in 0..5 {
        held.push(pool.get().await.unwrap());
    }
    assert_eq!(pool.status().size, 5);
    // Base size plus overflow is the ceiling: a sixth request waits, then fails.
    assert!(matches!(
        pool.get().await,
        Err(DbError::Unavailable(tronpay_db::error::Unavailable::PoolTimeout))
    ));

    drop(held);
    assert_eq!(pool.trim_overflow(), 3);
    assert_eq!(pool.status().size, 2, "the base connections stay open");
    assert_eq!(pool.trim_overflow(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn connections_are_replaced_after_the_recycle_age() {
    let db = TestDb::new().await;
    let pool = DbPool::new(&settings(&db, |s| s.db_pool_recycle_seconds = 1), "tronpay-pool-test").unwrap();
    let first = backend_pid(&mut pool.get().await.unwrap()).await;
    assert_eq!(
        backend_pid(&mut pool.get().await.unwrap()).await,
        first,
        "a young connection is reused"
    );
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    assert_ne!(
        backend_pid(&mut pool.get().await.unwrap()).await,
        first,
        "an old one is replaced"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_connection_killed_by_the_server_is_replaced_before_use() {
    let db = TestDb::new().await;
    let pool = DbPool::new(&settings(&db, |s| s.db_pool_pre_ping_idle_ms = 0), "tronpay-pool-test").unwrap();
    let victim = backend_pid(&mut pool.get().await.unwrap()).await;
    let admin = db.client().await;
    admin
        .query("SELECT pg_terminate_backend($1)", &[&victim])
        .await
        .unwrap();
    // Gone from the server's view: its socket is closed.
    eventually(Duration::from_secs(10), "the terminated backend to exit", || async {
        let rows = admin
            .query("SELECT 1 FROM pg_stat_activity WHERE pid = $1", &[&victim])
            .await
            .unwrap();
        rows.is_empty().then_some(())
    })
    .await;
    let mut conn = pool.get().await.expect("a fresh connection replaces the dead one");
    assert_ne!(backend_pid(&mut conn).await, victim);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_pool_starts_while_the_database_is_down() {
    let settings = DbSettings {
        db_connect_timeout_seconds: 1,
        db_pool_timeout_seconds: 1,
        ..DbSettings::for_url("postgres://postgres@127.0.0.1:1/tronpay")
    };
    let pool = DbPool::new(&settings, "tronpay-pool-test").expect("building the pool opens no connection");
    let error = match pool.get().await {
        Ok(_) => panic!("nothing listens on port 1"),
        Err(error) => error,
    };
    assert!(error.is_unavailable(), "{error}");
    assert!(error.to_string().contains("connection refused"), "{error}");
}

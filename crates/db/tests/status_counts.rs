//! Payment counts per status read from totals and deltas (PRODUCT §12) are
//! always what counting the table gives: after creates, status changes,
//! deletes, a bulk load, a truncate, folds at any point, and creates and
//! folds running at once.

// Integration tests: a failed step should stop the test loudly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use tronpay_db::stats::{self, StatusCounts};
use tronpay_testkit::TestDb;

/// Inserts `count` payments with `status` in one statement.
async fn bulk(db: &TestDb, from: usize, count: usize, status: &str) {
    db.client()
        .await
        .batch_execute(&format!(
            "INSERT INTO payments (id, wallet_address, expected_amount_usdt, callback_url, order_id, status, created_at, \
               last_checked_timestamp, callback_attempts, callback_success, expires_at) \
             SELECT 'p-' || n, 'TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t', 1, 'https://shop.example.com/hook', 'o-' || n, \
               '{status}', now() AT TIME ZONE 'utc', 0, 0, false, (now() AT TIME ZONE 'utc') + interval '1 day' \
             FROM generate_series({from}, {}) AS n",
            from + count - 1
        ))
        .await
        .unwrap();
}

async fn both(db: &TestDb) -> (StatusCounts, StatusCounts) {
    let mut conn = db.connect().await;
    (
        stats::status_counts(&mut conn).await.unwrap(),
        stats::recount_statuses(&mut conn).await.unwrap(),
    )
}

async fn exact(db: &TestDb, expected: (i64, i64, i64, i64)) {
    let (read, counted) = both(db).await;
    assert_eq!(read, counted, "totals and deltas vs count(*)");
    assert_eq!((read.pending, read.completed, read.failed, read.expired), expected);
    assert_eq!(read.total, expected.0 + expected.1 + expected.2 + expected.3);
}

async fn fold(db: &TestDb) -> usize {
    stats::fold_status_counts(&mut db.connect().await).await.unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn counts_stay_exact_through_every_kind_of_change_and_fold() {
    let db = TestDb::new().await;
    exact(&db, (0, 0, 0, 0)).await;
    bulk(&db, 1, 1000, "pending").await;
    bulk(&db, 1001, 10, "completed").await;
    exact(&db, (1000, 10, 0, 0)).await;
    // One delta row per payment created, until folded.
    let deltas: Vec<i64> = db.column("SELECT count(*) FROM payment_status_deltas").await;
    assert_eq!(deltas, [1010]);
    assert_eq!(fold(&db).await, 1010);
    exact(&db, (1000, 10, 0, 0)).await;
    assert_eq!(fold(&db).await, 0, "nothing left to fold");

    let client = db.client().await;
    client
        .batch_execute(
            "UPDATE payments SET status = 'completed' WHERE id IN ('p-1', 'p-2', 'p-3'); \
             UPDATE payments SET status = 'expired' WHERE id = 'p-4'; \
             UPDATE payments SET status = 'failed' WHERE id = 'p-5'; \
             UPDATE payments SET last_checked_timestamp = 7 WHERE id = 'p-6'; \
             UPDATE payments SET status = status WHERE id = 'p-7';",
        )
        .await
        .unwrap();
    exact(&db, (995, 13, 1, 1)).await;
    let deltas: Vec<i64> = db.column("SELECT count(*) FROM payment_status_deltas").await;
    assert_eq!(deltas, [10], "two rows per status change, none for other updates");
    fold(&db).await;
    client
        .batch_execute("DELETE FROM payment_logs WHERE payment_id IN ('p-1', 'p-9'); DELETE FROM payments WHERE id IN ('p-1', 'p-9')")
        .await
        .unwrap();
    exact(&db, (994, 12, 1, 1)).await;
    let deltas: Vec<i64> = db.column("SELECT count(*) FROM payment_status_deltas").await;
    assert_eq!(deltas, [2], "a delete appends one row per status it removed from");
    // A transaction rolled back leaves no trace.
    client
        .batch_execute("BEGIN; UPDATE payments SET status = 'expired' WHERE status = 'pending'; ROLLBACK;")
        .await
        .unwrap();
    exact(&db, (994, 12, 1, 1)).await;
    client.batch_execute("TRUNCATE payments CASCADE").await.unwrap();
    exact(&db, (0, 0, 0, 0)).await;
    bulk(&db, 1, 5, "pending").await;
    exact(&db, (5, 0, 0, 0)).await;
    // A large fold leaves no dead pages behind for counts to scan.
    bulk(&db, 6, 20_000, "pending").await;
    assert_eq!(fold(&db).await, 20_005);
    let size: Vec<i64> = db.column("SELECT pg_relation_size('payment_status_deltas')").await;
    assert_eq!(size, [0], "vacuumed after the fold");
    exact(&db, (20_005, 0, 0, 0)).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_changes_and_folds_never_lose_or_double_a_payment() {
    let db = TestDb::new().await;
    let mut writers = Vec::new();
    for writer in 0..8 {
        let db_url = db.url().to_owned();
        writers.push(tokio::spawn(async move {
            let (client, connection) = tokio_postgres::connect(&db_url, tokio_postgres::NoTls).await.unwrap();
            tokio::spawn(connection);
            for n in 0..50 {
                let id = format!("w{writer}-{n}");
                client
                    .batch_execute(&format!(
                        "INSERT INTO payments (id, wallet_address, expected_amount_usdt, callback_url, order_id, created_at, \
                           last_checked_timestamp, callback_attempts, callback_success, expires_at) \
                         VALUES ('{id}', 'TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t', 1, 'https://shop.example.com/hook', '{id}', \
                           now() AT TIME ZONE 'utc', 0, 0, false, (now() AT TIME ZONE 'utc') + interval '1 day')"
                    ))
                    .await
                    .unwrap();
                if n % 2 == 0 {
                    client
                        .batch_execute(&format!("UPDATE payments SET status = 'completed' WHERE id = '{id}'"))
                        .await
                        .unwrap();
                }
            }
        }));
    }
    let folder = {
        let db_url = db.url().to_owned();
        tokio::spawn(async move {
            let mut folded = 0;
            for _ in 0..40 {
                let mut conn = <diesel_async::AsyncPgConnection as diesel_async::AsyncConnection>::establish(&db_url)
                    .await
                    .unwrap();
                folded += stats::fold_status_counts(&mut conn).await.unwrap();
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
            folded
        })
    };
    // Two folders at once, too.
    let second = fold(&db).await;
    for writer in writers {
        writer.await.unwrap();
    }
    let folded = folder.await.unwrap() + second;
    assert!(folded > 0);
    exact(&db, (200, 200, 0, 0)).await;
    fold(&db).await;
    exact(&db, (200, 200, 0, 0)).await;
}

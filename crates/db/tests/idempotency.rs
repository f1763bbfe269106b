//! Idempotency records are forgotten after their 24 hours, in batches, and
//! only then.

// Integration tests: a failed step should stop the test loudly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use tronpay_testkit::TestDb;

#[tokio::test(flavor = "multi_thread")]
async fn records_older_than_a_day_are_pruned_in_batches() {
    let db = TestDb::new().await;
    db.api_key("shop", &["payments:write"]).await;
    let client = db.client().await;
    client
        .batch_execute(
            "INSERT INTO idempotency_keys (api_key_id, idempotency_key, request_hash, response_status, response_body, created_at) \
             SELECT (SELECT id FROM api_keys), 'old-' || n, repeat('0', 64), 201, '{}', \
                    (now() AT TIME ZONE 'utc') - interval '25 hours' FROM generate_series(1, 5) AS n; \
             INSERT INTO idempotency_keys (api_key_id, idempotency_key, request_hash, response_status, response_body, created_at) \
             SELECT (SELECT id FROM api_keys), 'new-' || n, repeat('0', 64), 201, '{}', \
                    (now() AT TIME ZONE 'utc') - interval '23 hours' FROM generate_series(1, 3) AS n;",
        )
        .await
        .unwrap();
    let mut conn = db.connect().await;
    assert_eq!(tronpay_db::idempotency::prune(&mut conn, 2).await.unwrap(), 5);
    assert_eq!(tronpay_db::idempotency::prune(&mut conn, 2).await.unwrap(), 0);
    let left: Vec<String> = db
        .column("SELECT idempotency_key FROM idempotency_keys ORDER BY idempotency_key")
        .await;
    assert_eq!(left, ["new-1", "new-2", "new-3"]);
}

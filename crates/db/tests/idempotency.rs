//! Idempotency keys come off their payments after their 24 hours, in
//! batches over a range of creation times, and only then.

// Integration tests: a failed step should stop the test loudly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use tronpay_testkit::TestDb;

#[tokio::test(flavor = "multi_thread")]
async fn keys_older_than_a_day_are_pruned_in_batches() {
    let db = TestDb::new().await;
    db.api_key("shop", &["payments:write"]).await;
    let client = db.client().await;
    // 5 keyed payments 25 hours old, 3 keyed 23 hours old, 2 unkeyed old.
    client
        .batch_execute(
            "INSERT INTO payments (id, wallet_address, expected_amount_usdt, callback_url, order_id, status, created_at, \
                                   expires_at, last_checked_timestamp, idempotency_key_id, idempotency_key, idempotency_request_hash) \
             SELECT gen_random_uuid()::text, 'TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t', 1, '', 'o-' || n, 'expired', \
                    (now() AT TIME ZONE 'utc') - make_interval(hours => CASE WHEN n <= 5 OR n > 8 THEN 25 ELSE 23 END), \
                    now() AT TIME ZONE 'utc', 0, \
                    CASE WHEN n <= 8 THEN (SELECT id FROM api_keys) END, \
                    CASE WHEN n <= 8 THEN 'k-' || n END, CASE WHEN n <= 8 THEN repeat('0', 64) END \
             FROM generate_series(1, 10) AS n",
        )
        .await
        .unwrap();
    let mut conn = db.connect().await;
    let since = chrono::Utc::now().naive_utc() - chrono::TimeDelta::hours(72);
    let (cleared, until) = tronpay_db::idempotency::prune(&mut conn, since, 2).await.unwrap();
    assert_eq!(cleared, 5);
    assert!(until < chrono::Utc::now().naive_utc() - chrono::TimeDelta::hours(23));
    assert_eq!(tronpay_db::idempotency::prune(&mut conn, since, 2).await.unwrap().0, 0);
    let left: Vec<String> = db
        .column("SELECT idempotency_key FROM payments WHERE idempotency_key IS NOT NULL ORDER BY idempotency_key")
        .await;
    assert_eq!(left, ["k-6", "k-7", "k-8"]);
    // A range that starts after them prunes nothing.
    let later = chrono::Utc::now().naive_utc() - chrono::TimeDelta::hours(24);
    assert_eq!(tronpay_db::idempotency::prune(&mut conn, later, 2).await.unwrap().0, 0);
}

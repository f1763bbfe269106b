//! The outbox relay gives up on a database error retrying cannot cure, so
//! that its service reports it instead of looking healthy.

// Integration tests: a failed step should stop the test loudly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use tokio::sync::watch;
use tronpay_bus::Relay;
use tronpay_db::DbPool;
use tronpay_testkit::{TestBus, TestDb};

#[tokio::test(flavor = "multi_thread")]
async fn the_relay_gives_up_when_the_outbox_table_is_missing() {
    let db = TestDb::new().await;
    let bus = TestBus::new();
    db.client()
        .await
        .batch_execute("ALTER TABLE outbox RENAME TO outbox_gone")
        .await
        .unwrap();
    let pool = DbPool::new(&db.settings(), "tronpay-relay-test").unwrap();
    let (_stop, shutdown) = watch::channel(false);
    let relay = Relay::new(pool, bus.settings.clone(), "tronpay-relay-test");
    // A bound on something that must happen (a few tries with backoff).
    let error = tokio::time::timeout(Duration::from_secs(120), relay.run(shutdown))
        .await
        .expect("the relay gives up")
        .unwrap_err();
    assert!(!error.is_retryable(), "{error}");
    assert!(error.to_string().contains("\"outbox\" does not exist"), "{error}");
}

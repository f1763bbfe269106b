//! The schema against a real PostgreSQL: the original tables, columns, types
//! and indexes, the migration guide's queries, and atomic writes.

// Integration tests: a failed step should stop the test loudly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use bigdecimal::BigDecimal;
use tronpay_db::models::{DbStatus, PaymentRow};
use tronpay_db::payments::{self, CreateError, NewPayment};
use tronpay_db::{migrate, stats};
use tronpay_domain::PaymentStatus;
use tronpay_testkit::TestDb;

fn new_payment<'a>(id: &'a str, order_id: &'a str) -> NewPayment<'a> {
    NewPayment {
        id,
        wallet_address: "TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t",
        expected_amount: "12.34".parse::<BigDecimal>().unwrap(),
        callback_url: "https://shop.example.com/hook",
        order_id,
        ttl_seconds: 86_400,
        log_message: "created",
        log_metadata: "{}",
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn migrations_are_idempotent_and_reversible() {
    let db = TestDb::empty().await;
    let embedded = diesel::migration::MigrationSource::<diesel::pg::Pg>::migrations(&migrate::MIGRATIONS)
        .unwrap()
        .len();
    assert_eq!(migrate::run_pending(db.connect().await).await.unwrap().len(), embedded);
    assert!(migrate::run_pending(db.connect().await).await.unwrap().is_empty());
    assert!(migrate::pending(db.connect().await).await.unwrap().is_empty());
    let mut conn = db.connect().await;
    payments::create(&mut conn, &new_payment("p1", "o1")).await.unwrap();
    migrate::reset(db.connect().await).await.unwrap();
    let mut conn = db.connect().await;
    assert!(stats::tables_exist(&mut conn).await.unwrap());
    assert_eq!(payments::count(&mut conn).await.unwrap(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn tables_have_the_original_columns_types_and_indexes() {
    let db = TestDb::new().await;
    let client = db.client().await;
    let columns = |table: &'static str| {
        let client = &client;
        async move {
            client
                .query(
                    "SELECT column_name::text, udt_name::text, character_maximum_length, numeric_precision, numeric_scale, is_nullable::text \
                     FROM information_schema.columns WHERE table_name = $1 ORDER BY ordinal_position",
                    &[&table],
                )
                .await
                .unwrap()
                .iter()
                .map(|row| {
                    format!(
                        "{} {} {:?} {:?} {:?} {}",
                        row.get::<_, String>(0),
                        row.get::<_, String>(1),
                        row.get::<_, Option<i32>>(2),
                        row.get::<_, Option<i32>>(3),
                        row.get::<_, Option<i32>>(4),
                        row.get::<_, String>(5)
                    )
                })
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(
        columns("payments").await,
        [
            "id varchar Some(36) None None NO",
            "wallet_address varchar Some(34) None None NO",
            "expected_amount_usdt numeric None Some(18) Some(6) NO",
            "callback_url text None None None NO",
            "order_id varchar Some(100) None None NO",
            "status payment_status None None None NO",
            "transaction_hash varchar Some(64) None None YES",
            "received_amount_usdt numeric None Some(18) Some(6) YES",
            "created_at timestamp None None None NO",
            "completed_at timestamp None None None YES",
            "last_checked_timestamp int8 None Some(64) Some(0) NO",
            "callback_attempts int4 None Some(32) Some(0) NO",
            "last_callback_attempt timestamp None None None YES",
            "callback_success bool None None None NO",
            "expires_at timestamp None None None NO",
            "notify_events _text None None None NO",
            "api_version int2 None Some(16) Some(0) NO",
            "redirect_url text None None None YES",
            "metadata_json text None None None YES",
            "checkout_url text None None None YES",
            "idempotency_key_id uuid None None None YES",
            "idempotency_key varchar Some(255) None None YES",
            "idempotency_request_hash varchar Some(64) None None YES",
            "address_mode varchar Some(16) None None NO",
            "amount_to_pay numeric None Some(18) Some(6) YES",
            "derivation_account varchar Some(16) None None YES",
            "derivation_index int4 None Some(32) Some(0) YES",
        ]
    );
    assert_eq!(
        columns("payment_logs").await,
        [
            "id int4 None Some(32) Some(0) NO",
            "payment_id varchar Some(36) None None NO",
            "event_type varchar Some(50) None None NO",
            "message text None None None YES",
            "metadata json None None None YES",
            "created_at timestamp None None None NO",
        ]
    );
    let serial: Option<String> = client
        .query_one("SELECT pg_get_serial_sequence('payment_logs', 'id')", &[])
        .await
        .unwrap()
        .get(0);
    assert!(serial.is_some(), "payment_logs.id is SERIAL");

    let indexes: Vec<String> = client
        .query(
            "SELECT indexdef FROM pg_indexes WHERE tablename IN ('payments', 'payment_logs') ORDER BY indexname",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| row.get::<_, String>(0).replace("public.", ""))
        .collect();
    for expected in [
        "CREATE INDEX ix_payments_wallet_address ON payments USING btree (wallet_address)",
        "CREATE INDEX ix_payments_order_id ON payments USING btree (order_id)",
        "CREATE INDEX ix_payments_status ON payments USING btree (status)",
        "CREATE INDEX ix_payments_created_at ON payments USING btree (created_at)",
        "CREATE UNIQUE INDEX uq_payments_order_id_pending ON payments USING btree (order_id) WHERE (status = 'pending'::payment_status)",
        "CREATE UNIQUE INDEX uq_payments_idempotency ON payments USING btree (idempotency_key_id, idempotency_key) WHERE (idempotency_key IS NOT NULL)",
        "CREATE INDEX ix_payment_logs_payment_id ON payment_logs USING btree (payment_id)",
        "CREATE INDEX ix_payment_logs_event_type ON payment_logs USING btree (event_type)",
    ] {
        assert!(
            indexes.iter().any(|index| index == expected),
            "missing {expected}\nhave {indexes:#?}"
        );
    }
}

/// Every example query of the original PostgreSQL migration guide, verbatim.
const GUIDE_QUERIES: &[(&str, &str)] = &[
    (
        "statistics by status",
        "SELECT \n    status, \n    COUNT(*) as count,\n    SUM(expected_amount_usdt) as total_amount\nFROM payments \nGROUP BY status;",
    ),
    (
        "recent payments",
        "SELECT id, order_id, status, created_at, expected_amount_usdt\nFROM payments \nORDER BY created_at DESC \nLIMIT 10;",
    ),
    (
        "failed callbacks",
        "SELECT id, order_id, callback_attempts, last_callback_attempt\nFROM payments \nWHERE callback_success = false AND status = 'completed';",
    ),
    (
        "average processing time",
        "SELECT \n    AVG(EXTRACT(EPOCH FROM (completed_at - created_at))) as avg_processing_seconds\nFROM payments \nWHERE status = 'completed';",
    ),
    (
        "orphaned logs",
        "SELECT COUNT(*) FROM payment_logs pl LEFT JOIN payments p ON pl.payment_id = p.id WHERE p.id IS NULL;",
    ),
    (
        "table sizes",
        "SELECT \n    schemaname,\n    tablename,\n    pg_size_pretty(pg_total_relation_size(tablename::regclass)) as size\nFROM pg_tables \nWHERE schemaname = 'public';",
    ),
];

#[tokio::test(flavor = "multi_thread")]
async fn the_migration_guide_queries_run_unchanged() {
    let db = TestDb::new().await;
    let mut conn = db.connect().await;
    for (id, order) in [("p1", "o1"), ("p2", "o2"), ("p3", "o3")] {
        payments::create(&mut conn, &new_payment(id, order)).await.unwrap();
    }
    let client = db.client().await;
    client
        .batch_execute(
            "UPDATE payments SET status = 'completed', completed_at = created_at + interval '90 seconds', \
             received_amount_usdt = expected_amount_usdt, callback_attempts = 3 WHERE id IN ('p1', 'p2'); \
             UPDATE payments SET callback_success = true WHERE id = 'p2'",
        )
        .await
        .unwrap();

    let results = |sql: &'static str| {
        let client = &client;
        async move {
            client
                .simple_query(sql)
                .await
                .unwrap_or_else(|error| panic!("{sql}\nfailed: {error}"))
        }
    };
    let rows = |messages: Vec<tokio_postgres::SimpleQueryMessage>| {
        messages
            .into_iter()
            .filter_map(|message| match message {
                tokio_postgres::SimpleQueryMessage::Row(row) => Some(
                    (0..row.len())
                        .map(|index| row.get(index).unwrap_or("NULL").to_owned())
                        .collect::<Vec<_>>(),
                ),
                _ => None,
            })
            .collect::<Vec<_>>()
    };
    let by_status = rows(results(GUIDE_QUERIES[0].1).await);
    assert!(
        by_status.contains(&vec!["completed".into(), "2".into(), "24.680000".into()]),
        "{by_status:?}"
    );
    assert!(
        by_status.contains(&vec!["pending".into(), "1".into(), "12.340000".into()]),
        "{by_status:?}"
    );
    assert_eq!(rows(results(GUIDE_QUERIES[1].1).await).len(), 3);
    let failed = rows(results(GUIDE_QUERIES[2].1).await);
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0][0], "p1");
    let average = rows(results(GUIDE_QUERIES[3].1).await);
    assert_eq!(average[0][0].parse::<f64>().unwrap(), 90.0);
    assert_eq!(rows(results(GUIDE_QUERIES[4].1).await), vec![vec!["0".to_owned()]]);
    let sizes = rows(results(GUIDE_QUERIES[5].1).await);
    for table in ["payments", "payment_logs"] {
        assert!(sizes.iter().any(|row| row[1] == table), "{sizes:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_payment_is_never_stored_without_its_log_row() {
    let db = TestDb::new().await;
    // Make every log insert fail: the payment must not be stored either.
    db.client()
        .await
        .batch_execute(
            "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'log refused'; END $$; \
             CREATE TRIGGER refuse_logs BEFORE INSERT ON payment_logs FOR EACH ROW EXECUTE FUNCTION refuse();",
        )
        .await
        .unwrap();
    let mut conn = db.connect().await;
    let outcome = payments::create(&mut conn, &new_payment("p1", "o1")).await;
    assert!(matches!(outcome, Err(CreateError::Db(_))), "{outcome:?}");
    assert_eq!(payments::count(&mut conn).await.unwrap(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_pending_payment_for_an_order_is_refused_by_name() {
    let db = TestDb::new().await;
    let mut conn = db.connect().await;
    payments::create(&mut conn, &new_payment("p1", "o1")).await.unwrap();
    let outcome = payments::create(&mut conn, &new_payment("p2", "o1")).await;
    assert!(
        matches!(outcome, Err(CreateError::DuplicatePendingOrder)),
        "{outcome:?}"
    );
    // Any other constraint is not mistaken for it.
    let outcome = payments::create(&mut conn, &new_payment("p1", "o2")).await;
    assert!(matches!(outcome, Err(CreateError::Db(_))), "{outcome:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn import_is_idempotent_and_never_duplicates_a_pending_order() {
    let db = TestDb::new().await;
    let mut conn = db.connect().await;
    payments::create(&mut conn, &new_payment("live", "shared-order"))
        .await
        .unwrap();
    let template = payments::find(&mut conn, "live").await.unwrap().unwrap();
    let row = |id: &str, order: &str, status: PaymentStatus| PaymentRow {
        id: tronpay_domain::PaymentId::parse(id).unwrap(),
        order_id: order.into(),
        status: DbStatus(status),
        ..template.clone()
    };
    let batch = vec![
        row("a", "order-a", PaymentStatus::Completed),
        row("b", "order-b", PaymentStatus::Pending),
        row("c", "shared-order", PaymentStatus::Pending),
        row("d", "shared-order", PaymentStatus::Expired),
    ];
    let inserted = payments::import(&mut conn, &batch, "test").await.unwrap();
    assert_eq!(inserted, ["a", "b", "d"]);
    assert!(payments::import(&mut conn, &batch, "test").await.unwrap().is_empty());
    let logs = tronpay_db::logs::for_payment(&mut conn, &tronpay_domain::PaymentId::parse("a").unwrap())
        .await
        .unwrap();
    assert_eq!(logs.len(), 1);
    assert_eq!(logs[0].event(), Some(tronpay_domain::LogEvent::Imported));
}

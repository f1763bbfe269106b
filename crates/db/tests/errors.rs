//! Every way `db::error` classifies a failure, produced for real on a
//! PostgreSQL server: each constraint kind, each row of the message table,
//! and the fallbacks.

// Integration tests: a failed step should stop the test loudly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use diesel::sql_types::Integer;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use tronpay_db::DbError;
use tronpay_db::error::{Conflict, ConstraintKind, DbErrorKind, Setup, Unavailable};
use tronpay_testkit::TestDb;

async fn run(conn: &mut AsyncPgConnection, sql: &str) -> Result<usize, DbError> {
    Ok(diesel::sql_query(sql).execute(conn).await?)
}

async fn fails(conn: &mut AsyncPgConnection, sql: &str) -> DbError {
    match run(conn, sql).await {
        Ok(_) => panic!("{sql} succeeded"),
        Err(error) => error,
    }
}

async fn scratch() -> (TestDb, AsyncPgConnection) {
    let db = TestDb::empty().await;
    let mut conn = db.connect().await;
    run(
        &mut conn,
        "CREATE TABLE t (id INT CONSTRAINT t_pkey PRIMARY KEY, v INT NOT NULL CONSTRAINT t_v_positive CHECK (v > 0), \
                         parent INT CONSTRAINT t_parent_fkey REFERENCES t (id))",
    )
    .await
    .unwrap();
    run(&mut conn, "INSERT INTO t VALUES (1, 1, NULL), (2, 2, NULL)")
        .await
        .unwrap();
    (db, conn)
}

fn constraint(error: &DbError) -> (ConstraintKind, Option<&str>) {
    match error {
        DbError::Conflict(Conflict::Constraint { kind, constraint, .. }) => (*kind, constraint.as_deref()),
        other => panic!("not a constraint conflict: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn constraints_are_conflicts_that_name_the_constraint() {
    let (_db, mut conn) = scratch().await;
    let unique = fails(&mut conn, "INSERT INTO t VALUES (1, 1, NULL)").await;
    assert_eq!(constraint(&unique), (ConstraintKind::Unique, Some("t_pkey")));
    assert_eq!(unique.unique_violation(), Some("t_pkey"));
    assert_eq!(
        constraint(&fails(&mut conn, "INSERT INTO t VALUES (3, 1, 99)").await),
        (ConstraintKind::ForeignKey, Some("t_parent_fkey"))
    );
    assert_eq!(
        constraint(&fails(&mut conn, "INSERT INTO t VALUES (3, -1, NULL)").await),
        (ConstraintKind::Check, Some("t_v_positive"))
    );
    assert_eq!(
        constraint(&fails(&mut conn, "INSERT INTO t VALUES (3, NULL, NULL)").await).0,
        ConstraintKind::NotNull
    );
    run(
        &mut conn,
        "CREATE TABLE boxes (b box, CONSTRAINT boxes_apart EXCLUDE USING gist (b WITH &&))",
    )
    .await
    .unwrap();
    run(&mut conn, "INSERT INTO boxes VALUES ('((0,0),(2,2))')")
        .await
        .unwrap();
    assert_eq!(
        constraint(&fails(&mut conn, "INSERT INTO boxes VALUES ('((1,1),(3,3))')").await),
        (ConstraintKind::Exclusion, Some("boxes_apart"))
    );
    let error = fails(&mut conn, "INSERT INTO t VALUES (1, 1, NULL)").await;
    assert_eq!(error.kind(), DbErrorKind::Conflict);
    assert!(!error.is_retryable() && !error.is_unavailable());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_schema_or_privilege_is_setup_not_unavailable() {
    let (_db, mut conn) = scratch().await;
    for sql in [
        "SELECT * FROM transfers_gone", // 42P01
        "SELECT nope FROM t",           // 42703
        "SELECT nope()",                // 42883
        "SELECT 1::nope",               // 42704
    ] {
        let error = fails(&mut conn, sql).await;
        assert!(
            matches!(error, DbError::Setup(Setup::SchemaMissing(_))),
            "{sql}: {error:?}"
        );
        assert!(!error.is_unavailable() && !error.is_retryable(), "{sql}");
        assert!(error.to_string().contains("tronpay db create-tables"), "{error}");
    }
    // 42501: a role without privileges on the table.
    let role = format!("tronpay_test_nopriv_{}", uuid::Uuid::new_v4().simple());
    run(&mut conn, &format!("CREATE ROLE {role} NOLOGIN")).await.unwrap();
    run(&mut conn, &format!("SET ROLE {role}")).await.unwrap();
    let denied = fails(&mut conn, "SELECT * FROM t").await;
    run(&mut conn, "RESET ROLE").await.unwrap();
    run(&mut conn, &format!("DROP ROLE {role}")).await.unwrap();
    assert!(
        matches!(denied, DbError::Setup(Setup::PermissionDenied(_))),
        "{denied:?}"
    );
    assert_eq!(denied.kind(), DbErrorKind::Setup);
}

#[tokio::test(flavor = "multi_thread")]
async fn timeouts_and_a_read_only_server_are_unavailable() {
    let (db, mut conn) = scratch().await;
    // 57014 statement timeout.
    run(&mut conn, "SET statement_timeout = 50").await.unwrap();
    let error = fails(&mut conn, "SELECT pg_sleep(2)").await;
    assert!(
        matches!(error, DbError::Unavailable(Unavailable::Cancelled(_))),
        "{error:?}"
    );
    assert!(error.is_unavailable() && error.is_retryable());
    run(&mut conn, "SET statement_timeout = 0").await.unwrap();

    // 55P03 lock timeout and NOWAIT, with another session holding the row.
    let mut holder = db.connect().await;
    run(&mut holder, "BEGIN").await.unwrap();
    run(&mut holder, "SELECT * FROM t WHERE id = 1 FOR UPDATE")
        .await
        .unwrap();
    run(&mut conn, "SET lock_timeout = 50").await.unwrap();
    let error = fails(&mut conn, "UPDATE t SET v = 5 WHERE id = 1").await;
    assert!(
        matches!(error, DbError::Unavailable(Unavailable::Cancelled(_))),
        "{error:?}"
    );
    let error = fails(&mut conn, "SELECT * FROM t WHERE id = 1 FOR UPDATE NOWAIT").await;
    assert!(
        matches!(error, DbError::Unavailable(Unavailable::Cancelled(_))),
        "{error:?}"
    );
    run(&mut holder, "ROLLBACK").await.unwrap();

    // 25006: a server (or session) that only reads, as a standby does.
    run(&mut conn, "SET default_transaction_read_only = on").await.unwrap();
    let error = fails(&mut conn, "INSERT INTO t VALUES (9, 9, NULL)").await;
    assert!(
        matches!(error, DbError::Unavailable(Unavailable::ReadOnly(_))),
        "{error:?}"
    );
    run(&mut conn, "SET default_transaction_read_only = off").await.unwrap();

    // 0A000: a prepared plan whose result type a schema change altered.
    run(&mut conn, "PREPARE every_row AS SELECT * FROM t").await.unwrap();
    run(&mut conn, "EXECUTE every_row").await.unwrap();
    run(&mut holder, "ALTER TABLE t ADD COLUMN extra INT").await.unwrap();
    let error = fails(&mut conn, "EXECUTE every_row").await;
    assert!(
        matches!(error, DbError::Unavailable(Unavailable::Other(_))),
        "{error:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_terminated_connection_is_lost() {
    let (db, mut conn) = scratch().await;
    #[derive(diesel::QueryableByName)]
    struct Pid {
        #[diesel(sql_type = Integer)]
        pid: i32,
    }
    let pid = diesel::sql_query("SELECT pg_backend_pid() AS pid")
        .get_result::<Pid>(&mut conn)
        .await
        .unwrap()
        .pid;
    let mut admin = db.connect().await;
    run(&mut admin, &format!("SELECT pg_terminate_backend({pid})"))
        .await
        .unwrap();
    // 57P01 "terminating connection …", or the closed socket itself.
    let error = fails(&mut conn, "SELECT 1").await;
    assert!(
        matches!(error, DbError::Unavailable(Unavailable::ConnectionLost(_))),
        "{error:?}"
    );
    assert!(error.is_retryable());
}

#[tokio::test(flavor = "multi_thread")]
async fn deadlocks_and_serialization_failures_are_conflicts_worth_retrying() {
    let (db, mut first) = scratch().await;
    let mut second = db.connect().await;
    // 40P01: two sessions lock the two rows in opposite orders.
    for conn in [&mut first, &mut second] {
        run(conn, "SET deadlock_timeout = '50ms'").await.unwrap();
        run(conn, "BEGIN").await.unwrap();
    }
    run(&mut first, "UPDATE t SET v = 10 WHERE id = 1").await.unwrap();
    run(&mut second, "UPDATE t SET v = 20 WHERE id = 2").await.unwrap();
    let (a, b) = tokio::join!(
        run(&mut first, "UPDATE t SET v = 11 WHERE id = 2"),
        run(&mut second, "UPDATE t SET v = 21 WHERE id = 1")
    );
    let lost = match (a, b) {
        (Err(error), Ok(_)) | (Ok(_), Err(error)) => error,
        other => panic!("exactly one side should lose: {other:?}"),
    };
    assert!(
        matches!(lost, DbError::Conflict(Conflict::Serialization(_))),
        "{lost:?}"
    );
    assert!(lost.is_retryable());
    for conn in [&mut first, &mut second] {
        run(conn, "ROLLBACK").await.unwrap();
    }

    // 40001: write skew under SERIALIZABLE.
    for conn in [&mut first, &mut second] {
        run(conn, "BEGIN ISOLATION LEVEL SERIALIZABLE").await.unwrap();
        run(conn, "SELECT sum(v) FROM t").await.unwrap();
    }
    run(&mut first, "UPDATE t SET v = v + 1 WHERE id = 1").await.unwrap();
    run(&mut second, "UPDATE t SET v = v + 1 WHERE id = 2").await.unwrap();
    run(&mut first, "COMMIT").await.unwrap();
    let error = match run(&mut second, "COMMIT").await {
        Err(error) => error,
        Ok(_) => panic!("the second serializable transaction committed"),
    };
    assert!(
        matches!(error, DbError::Conflict(Conflict::Serialization(_))),
        "{error:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn unreadable_rows_are_corrupt_and_rejected_statements_are_bugs() {
    let (_db, mut conn) = scratch().await;
    #[derive(Debug, diesel::QueryableByName)]
    #[allow(dead_code)]
    struct Number {
        #[diesel(sql_type = Integer)]
        v: i32,
    }
    // A value that is not what its column must hold.
    let error: DbError = diesel::sql_query("SELECT 'x'::text AS v")
        .get_result::<Number>(&mut conn)
        .await
        .unwrap_err()
        .into();
    assert_eq!(error.kind(), DbErrorKind::Corrupt, "{error:?}");
    assert!(!error.is_retryable());
    for sql in ["SELECT 1/0", "SELEKT 1", "SELECT 'a' + 1"] {
        let error = fails(&mut conn, sql).await;
        assert_eq!(error.kind(), DbErrorKind::Bug, "{sql}: {error:?}");
        assert!(!error.is_retryable());
    }
}

#[test]
fn every_row_of_the_message_table_is_reachable() {
    // Each row is the first to recognise the message it was written for (the
    // texts PostgreSQL and PgBouncer send), so no row is shadowed by an
    // earlier one. The rows for a full disk, memory, I/O errors and a server
    // starting up cannot be produced safely on a shared test server; their
    // texts are checked here, the others also for real above.
    let samples = [
        "relation \"transfers\" does not exist",
        "column \"nope\" does not exist",
        "function nope() does not exist",
        "type \"nope\" does not exist",
        "permission denied for table t",
        "canceling statement due to statement timeout",
        "could not obtain lock on row in relation \"t\"",
        "terminating connection due to administrator command",
        "cached plan must not change result type",
        "cannot execute INSERT in a read-only transaction",
        "the database system is starting up",
        "could not extend file \"base/16384/16397\": wrote only 4096 of 8192 bytes at block 3",
        "could not write to file \"pg_wal/xlogtemp.123\": No space left on device",
        "out of memory",
        "out of shared memory",
        "could not write to hash-join temporary file: Input/output error",
        "could not read from file \"base/16384/16397\": Input/output error",
        "deadlock detected",
        "could not serialize access due to read/write dependencies among transactions",
        "query_wait_timeout",
        "prepared statement \"__diesel_stmt_3\" does not exist",
        "server conn crashed?",
        "no more connections allowed (max_client_conn)",
        "pgbouncer cannot connect to server",
        "server login has been failing, try again later (server_login_retry)",
    ];
    assert_eq!(samples.len(), tronpay_db::error::MESSAGES.len());
    for (row, sample) in samples.iter().enumerate() {
        assert_eq!(tronpay_db::error::row_of(sample), Some(row), "{sample}");
    }
    assert_eq!(tronpay_db::error::meaning_of("division by zero"), None);
}

//! TLS to PostgreSQL with libpq's `sslmode`/`sslrootcert` in DATABASE_URL.
//! The test server runs without TLS, so the tests put a TLS-terminating
//! proxy with a certificate from a test CA in front of it.

// Integration tests: a failed step should stop the test loudly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use diesel::sql_types::Integer;
use diesel_async::RunQueryDsl;
use tronpay_db::{DbPool, DbSettings, migrate};
use tronpay_runtime::Validate;
use tronpay_testkit::TestDb;
use tronpay_testkit::tls::{TestCa, TlsProxy, Upgrade};

#[derive(diesel::QueryableByName)]
struct One {
    #[diesel(sql_type = Integer)]
    one: i32,
}

async fn server_addr() -> std::net::SocketAddr {
    let url = tronpay_testkit::server_url();
    tokio::net::lookup_host((url.host_str().unwrap_or("127.0.0.1"), url.port().unwrap_or(5432)))
        .await
        .unwrap()
        .next()
        .unwrap()
}

/// `db`'s URL through `proxy` (at `host`), with `query` appended.
fn url(db: &TestDb, proxy: &TlsProxy, host: &str, query: &str) -> String {
    let mut url = url::Url::parse(db.url()).unwrap();
    url.set_host(Some(host)).unwrap();
    url.set_port(Some(proxy.addr.port())).unwrap();
    url.set_query(Some(query));
    url.to_string()
}

async fn select_one(database_url: &str) -> Result<i32, String> {
    let settings = DbSettings::for_url(database_url);
    settings.validate()?;
    let options = tronpay_db::pool::ConnectOptions::new(&settings, "tls-test");
    let mut conn = tronpay_db::connect(database_url, &options)
        .await
        .map_err(|error| error.to_string())?;
    let row: One = diesel::sql_query("SELECT 1 AS one")
        .get_result(&mut conn)
        .await
        .map_err(|error| error.to_string())?;
    Ok(row.one)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_services_reach_postgresql_over_verified_tls() {
    let db = TestDb::new().await;
    let ca = TestCa::new("tronpay test CA");
    let proxy = TlsProxy::start(server_addr().await, Upgrade::Postgres, &ca, &["localhost", "127.0.0.1"]).await;
    let root = format!("sslrootcert={}", ca.pem_file.display());

    // verify-full: the chain and the host name, by name and by address.
    for host in ["localhost", "127.0.0.1"] {
        let verified = url(&db, &proxy, host, &format!("sslmode=verify-full&{root}"));
        assert_eq!(select_one(&verified).await, Ok(1), "{host}");
    }
    // require: encrypted, certificate not checked (as libpq).
    assert_eq!(
        select_one(&url(&db, &proxy, "127.0.0.1", "sslmode=require")).await,
        Ok(1)
    );
    let before = proxy.handshakes();
    assert!(before >= 3, "every connection went through TLS ({before})");

    // A whole pool and the migrations over TLS.
    let verified = url(&db, &proxy, "localhost", &format!("sslmode=verify-full&{root}"));
    let pool = DbPool::new(&DbSettings::for_url(&verified), "tls-test").unwrap();
    migrate::run_pending(
        tronpay_db::connect(
            &verified,
            &tronpay_db::pool::ConnectOptions::new(&DbSettings::for_url(&verified), "tls-test"),
        )
        .await
        .unwrap(),
    )
    .await
    .unwrap();
    let mut conn = pool.get().await.unwrap();
    let row: One = diesel::sql_query("SELECT count(*)::int AS one FROM payments")
        .get_result(&mut *conn)
        .await
        .unwrap();
    assert_eq!(row.one, 0);
    assert!(proxy.handshakes() > before);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_certificate_that_does_not_check_out_is_refused_clearly() {
    let db = TestDb::new().await;
    let ca = TestCa::new("tronpay test CA");
    let elsewhere = TlsProxy::start(server_addr().await, Upgrade::Postgres, &ca, &["db.internal"]).await;
    let root = format!("sslrootcert={}", ca.pem_file.display());

    // Issued for another name: verify-ca accepts it, verify-full does not.
    assert_eq!(
        select_one(&url(&db, &elsewhere, "127.0.0.1", &format!("sslmode=verify-ca&{root}"))).await,
        Ok(1)
    );
    let error = select_one(&url(
        &db,
        &elsewhere,
        "127.0.0.1",
        &format!("sslmode=verify-full&{root}"),
    ))
    .await
    .unwrap_err();
    assert!(
        error.contains("TLS handshake failed") && error.contains("sslrootcert"),
        "{error}"
    );

    // Signed by a CA we do not trust (given, or the system's).
    let other = TestCa::new("someone else's CA");
    for query in [
        format!("sslmode=verify-ca&sslrootcert={}", other.pem_file.display()),
        "sslmode=verify-full".to_owned(),
        format!("sslmode=require&sslrootcert={}", other.pem_file.display()),
    ] {
        let error = select_one(&url(&db, &elsewhere, "127.0.0.1", &query))
            .await
            .unwrap_err();
        // (A machine without a CA bundle refuses the system's roots earlier.)
        assert!(
            error.contains("TLS handshake failed") || error.contains("no CA certificate found"),
            "{query}: {error}"
        );
    }

    // Settings are checked before any connection.
    for (query, expected) in [
        ("sslmode=maybe", "sslmode=maybe"),
        (
            "sslmode=verify-full&sslrootcert=/nonexistent/ca.pem",
            "/nonexistent/ca.pem",
        ),
        ("sslmode=require&sslcert=/c.pem", "sslkey"),
        ("sslmode=verify-ca", "sslrootcert"),
        ("sslrootcert=system&sslmode=require", "verify-full"),
        ("sslrootcert=/ca.pem", "without sslmode"),
    ] {
        let error = DbSettings::for_url(url(&db, &elsewhere, "127.0.0.1", query))
            .validate()
            .unwrap_err();
        assert!(
            error.starts_with("DATABASE_URL") && error.contains(expected),
            "{query}: {error}"
        );
    }
}

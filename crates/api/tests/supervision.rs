//! A background task of the API that ends (here: panics) makes `/health`
//! answer 503 naming it, and `run_until` return the failure so that the
//! process exits non-zero.

// Integration tests: a failed step should stop the test loudly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use tronpay_api::{ApiSettings, Config};
use tronpay_testkit::supervision::a_panicking_task_fails;

#[tokio::test(flavor = "multi_thread")]
async fn a_panicking_task_makes_the_api_unhealthy_and_run_return_the_failure() {
    let body = a_panicking_task_fails(async |db, bus| {
        let api = ApiSettings {
            bind: "127.0.0.1:0".into(),
            api_workers: Some(1),
            ..ApiSettings::default()
        };
        tronpay_api::start(Config { service: api, db, bus }).unwrap()
    })
    .await;
    // The API's /health also says so in the original's `error` field.
    assert_eq!(body["database"], "connected", "{body}");
    assert_eq!(
        body["error"], "the doomed task panicked: a bug in a background task",
        "{body}"
    );
}

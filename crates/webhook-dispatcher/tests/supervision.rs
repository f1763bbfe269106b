//! A background task of the dispatcher that ends (here: panics) makes
//! `/health` answer 503 naming it, and `run_until` return the failure so
//! that the process exits non-zero.

// Integration tests: a failed step should stop the test loudly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use tronpay_testkit::supervision::a_panicking_task_fails;
use tronpay_webhook_dispatcher::{Config, DispatcherSettings};

#[tokio::test(flavor = "multi_thread")]
async fn a_panicking_task_makes_the_dispatcher_unhealthy_and_run_return_the_failure() {
    a_panicking_task_fails(async |db, bus| {
        let dispatcher = DispatcherSettings {
            webhook_secret: Some("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".into()),
            dispatcher_bind: "127.0.0.1:0".into(),
            ..DispatcherSettings::default()
        };
        let config = Config {
            service: dispatcher,
            db,
            bus,
        };
        tronpay_webhook_dispatcher::start(config).await.unwrap()
    })
    .await;
}

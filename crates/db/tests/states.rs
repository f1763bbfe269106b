//! Every state column's check constraint lists exactly the values of its
//! domain enum: the one place the two must agree.

// Integration tests: a failed step should stop the test loudly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;

use tronpay_domain::events::WebhookEvent;
use tronpay_domain::{AddressMode, AttemptOutcome, DeliveryStatus, MatchKind, Named, TransferState};
use tronpay_testkit::TestDb;

/// The quoted values in a constraint's definition.
async fn listed(client: &tokio_postgres::Client, constraint: &str) -> BTreeSet<String> {
    let row = client
        .query_one(
            "SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conname = $1",
            &[&constraint],
        )
        .await
        .unwrap_or_else(|error| panic!("constraint {constraint}: {error}"));
    let definition: String = row.get(0);
    definition.split('\'').skip(1).step_by(2).map(str::to_owned).collect()
}

fn names<T: Named>() -> BTreeSet<String> {
    T::ALL.iter().map(|value| value.as_str().to_owned()).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn check_constraints_list_exactly_the_enum_values() {
    let db = TestDb::new().await;
    let client = db.client().await;
    for (constraint, expected) in [
        ("ck_transfers_status", names::<TransferState>()),
        ("ck_transfers_match_kind", names::<MatchKind>()),
        ("ck_webhook_deliveries_status", names::<DeliveryStatus>()),
        ("ck_webhook_attempts_outcome", names::<AttemptOutcome>()),
        ("ck_webhook_deliveries_event_type", names::<WebhookEvent>()),
        ("ck_payments_address_mode", names::<AddressMode>()),
        (
            "ck_payments_notify_events",
            WebhookEvent::SUBSCRIBABLE
                .iter()
                .map(|event| event.as_str().to_owned())
                .collect(),
        ),
    ] {
        assert_eq!(listed(&client, constraint).await, expected, "{constraint}");
    }
}

//! The reconciler: applies confirmed transfers whose `payment.detected`
//! never came (or was given up on), address by address, so a lost message
//! delays a payment and never loses it.

use diesel_async::AsyncConnection;
use tronpay_db::error::DbErrorKind;
use tronpay_db::{DbError, DbPool, matching};
use tronpay_domain::matching::MatchRules;

use super::ApplyError;
use super::apply::apply_confirmed;
use crate::skips::Skips;

/// Applies the confirmed transfers whose message did not come (or was given
/// up on) and that have waited `older_than_seconds`; returns how many
/// addresses were handled and whether webhook work was enqueued.
///
/// An address whose transfers cannot be applied for a reason retrying now
/// will not cure (a corrupt row, a statement the database rejects) is logged
/// with the error and left out of the rounds of the next
/// [`crate::skips::SKIP_FOR`], and the round goes on with the other
/// addresses. A database that is unavailable or lacks its schema ends the
/// round (the next one tries again).
pub async fn reconcile(
    pool: &DbPool,
    rules: &MatchRules,
    older_than_seconds: i64,
    skipped: &mut Skips,
) -> Result<(usize, bool), DbError> {
    let addresses = {
        let excluded = skipped.current();
        let mut conn = pool.get().await?;
        matching::addresses_with_unapplied(&mut conn, older_than_seconds, 100, &excluded).await?
    };
    let mut enqueued = false;
    for address in &addresses {
        let mut conn = pool.get().await?;
        let mut tally = crate::metrics::Tally::default();
        let outcome = conn
            .transaction::<_, ApplyError, _>(async |conn| {
                matching::lock_address(conn, address).await?;
                apply_confirmed(conn, rules, address, &mut tally).await
            })
            .await;
        if outcome.is_ok() {
            tally.record();
        }
        match outcome {
            Ok(done) => enqueued |= done,
            Err(ApplyError::Db(error)) => match error.kind() {
                DbErrorKind::Unavailable | DbErrorKind::Setup => return Err(error),
                DbErrorKind::Conflict if error.is_retryable() => {
                    tracing::info!(%address, %error, "reconciler: lost a race; next round");
                }
                DbErrorKind::Conflict | DbErrorKind::Corrupt | DbErrorKind::Bug => {
                    tracing::error!(%address, %error, "reconciler: the transfers to this address cannot be applied; skipping it");
                    skipped.skip(address.clone());
                }
            },
            Err(ApplyError::UnknownTransfer(id)) => tracing::warn!(%id, "reconciler: transfer vanished"),
        }
    }
    if !addresses.is_empty() {
        tracing::warn!(
            addresses = addresses.len(),
            "applied confirmed transfers whose event had not been applied"
        );
    }
    Ok((addresses.len(), enqueued))
}

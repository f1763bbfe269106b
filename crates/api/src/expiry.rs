//! The expiry sweep: a pending payment expires once the chain watcher has
//! committed every final block up to its deadline and no final transfer that
//! could still pay it waits to be applied — so a payment paid just before its
//! deadline is never expired while its transfer is on its way.

use diesel::sql_types::Text;
use diesel_async::{AsyncConnection, RunQueryDsl};
use tronpay_db::error::DbErrorKind;

use crate::skips::Skips;
use tronpay_db::webhooks;
use tronpay_db::{DbError, DbPool, logs, matching};
use tronpay_domain::events::WebhookEvent;
use tronpay_domain::{LogEvent, PaymentId};

/// Payments expired per transaction.
const BATCH: i64 = 500;

#[derive(diesel::QueryableByName)]
struct Due {
    #[diesel(sql_type = Text)]
    id: String,
}

/// Expires what is due; returns how many payments expired and whether
/// webhook work was enqueued.
///
/// Each payment expires in a savepoint of its own: one whose row cannot be
/// read (corrupt) or trips a statement the database rejects is logged with
/// its id and left out of the sweeps of the next [`crate::skips::SKIP_FOR`],
/// and the others still expire. A database that is unavailable or lacks its
/// schema fails the sweep.
pub async fn sweep(pool: &DbPool, skipped: &mut Skips) -> Result<(usize, bool), DbError> {
    let excluded = skipped.current();
    let mut conn = pool.get().await?;
    let mut bad = Vec::new();
    let outcome = conn
        .transaction::<_, DbError, _>(async |conn| {
            // The cursor's time is a scalar subquery, computed once, so that it
            // bounds the scan of the pending-expiry index: only the payments
            // that are due are read, however many are pending (a join with
            // chain_state could walk all of them).
            let due: Vec<Due> = diesel::sql_query(
                "SELECT p.id FROM payments p \
                 WHERE p.status = 'pending' \
                 AND p.expires_at < (SELECT c.cursor_block_time FROM chain_state c WHERE c.id = 1) \
                 AND NOT EXISTS (SELECT 1 FROM transfers t WHERE t.to_address = p.wallet_address AND t.status = 'confirmed' \
                                 AND t.applied_at IS NULL AND t.block_time <= p.expires_at) \
                 AND p.id <> ALL($2) \
                 ORDER BY p.expires_at LIMIT $1 FOR UPDATE OF p SKIP LOCKED",
            )
            .bind::<diesel::sql_types::BigInt, _>(BATCH)
            .bind::<diesel::sql_types::Array<Text>, _>(&excluded)
            .load(conn)
            .await?;
            let mut enqueued = false;
            let mut expired = 0;
            for Due { id } in due {
                let id = PaymentId::from(id);
                let outcome = conn
                    .transaction::<_, DbError, _>(async |conn| {
                        let Some(payment) = matching::expire(conn, &id).await? else {
                            return Ok(None);
                        };
                        logs::insert(conn, &id, LogEvent::Expired, "Payment expired due to timeout", None).await?;
                        let mut enqueued = false;
                        if payment.wants(WebhookEvent::Expired) {
                            enqueued = webhooks::enqueue(conn, &payment, WebhookEvent::Expired, None)
                                .await?
                                .is_some();
                        }
                        Ok(Some(enqueued))
                    })
                    .await;
                match outcome {
                    Ok(Some(done)) => {
                        expired += 1;
                        enqueued |= done;
                    }
                    Ok(None) => {}
                    Err(error) if matches!(error.kind(), DbErrorKind::Corrupt | DbErrorKind::Bug) => {
                        tracing::error!(payment = %id, %error, "this payment cannot be expired; skipping it");
                        bad.push(id.to_string());
                    }
                    Err(error) => return Err(error),
                }
            }
            Ok((expired, enqueued))
        })
        .await;
    for id in bad {
        skipped.skip(id);
    }
    outcome
}

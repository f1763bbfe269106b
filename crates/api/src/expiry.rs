//! The expiry sweep: a pending payment expires once the chain watcher has
//! committed every final block up to its deadline and no final transfer that
//! could still pay it waits to be applied — so a payment paid just before its
//! deadline is never expired while its transfer is on its way.

use diesel::sql_types::Text;
use diesel_async::{AsyncConnection, RunQueryDsl};
use tronpay_db::webhooks;
use tronpay_db::{DbError, DbPool, logs, matching};
use tronpay_domain::events::WebhookEvent;

/// Payments expired per transaction.
const BATCH: i64 = 500;

#[derive(diesel::QueryableByName)]
struct Due {
    #[diesel(sql_type = Text)]
    id: String,
}

/// Expires what is due; returns how many payments expired and whether
/// webhook work was enqueued.
pub async fn sweep(pool: &DbPool) -> Result<(usize, bool), DbError> {
    let mut conn = pool.get().await?;
    conn.transaction::<_, DbError, _>(async |conn| {
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
             ORDER BY p.expires_at LIMIT $1 FOR UPDATE OF p SKIP LOCKED",
        )
        .bind::<diesel::sql_types::BigInt, _>(BATCH)
        .load(conn)
        .await?;
        let mut enqueued = false;
        let mut expired = 0;
        for Due { id } in due {
            let Some(payment) = matching::expire(conn, &id).await? else { continue };
            expired += 1;
            logs::insert(conn, &id, "expired", "Payment expired due to timeout", None).await?;
            if webhooks::wants(&payment, WebhookEvent::Expired) {
                enqueued |= webhooks::enqueue(conn, &payment, WebhookEvent::Expired, None).await?.is_some();
            }
        }
        Ok((expired, enqueued))
    })
    .await
}

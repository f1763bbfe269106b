//! Webhook deliveries as the API enqueues them: the body is fixed when the
//! event happens, the delivery row is the source of truth, and a
//! `callback.due` event in the outbox hands the work to the dispatcher.

use diesel::sql_types::{Text, Uuid as SqlUuid};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use tronpay_domain::events::{CALLBACK_DUE, CallbackDue, WebhookEvent};
use tronpay_domain::wire::{TransferResource, V1WebhookBody, WebhookBody};
use tronpay_domain::{DeliveryId, JsonAmount, Transfer};

use crate::error::DbError;
use crate::models::PaymentRow;
use crate::outbox;

/// The body goes in as text: JSONB keeps the exact digits of the amounts.
struct InsertDelivery {
    id: uuid::Uuid,
    payment_id: String,
    event_type: &'static str,
    webhook_id: String,
    body: String,
}

impl crate::prepared::Statement for InsertDelivery {
    fn walk_ast<'b>(
        &'b self,
        mut out: diesel::query_builder::AstPass<'_, 'b, diesel::pg::Pg>,
    ) -> diesel::QueryResult<()> {
        out.push_sql(
            "INSERT INTO webhook_deliveries (id, payment_id, event_type, webhook_id, payload, published_at, created_at) \
             VALUES (",
        );
        out.push_bind_param::<SqlUuid, _>(&self.id)?;
        out.push_sql(", ");
        out.push_bind_param::<Text, _>(&self.payment_id)?;
        out.push_sql(", ");
        out.push_bind_param::<Text, _>(&self.event_type)?;
        out.push_sql(", ");
        out.push_bind_param::<Text, _>(&self.webhook_id)?;
        out.push_sql(", ");
        out.push_bind_param::<Text, _>(&self.body)?;
        // Its callback.due event is written in the same transaction.
        // `created_at` is the moment of this insert, not the transaction's
        // start: deliveries enqueued in one transaction (a batch of
        // confirmations) keep the order their events happened in.
        out.push_sql("::jsonb, now() AT TIME ZONE 'utc', clock_timestamp() AT TIME ZONE 'utc') ON CONFLICT DO NOTHING");
        Ok(())
    }
}

/// Enqueues a delivery of `event` for `payment` (in its current, updated
/// state) and its `callback.due` event. A completion is enqueued at most
/// once per payment; returns `None` when it already was.
pub async fn enqueue(
    conn: &mut AsyncPgConnection,
    payment: &PaymentRow,
    event: WebhookEvent,
    transfer: Option<&Transfer>,
) -> Result<Option<DeliveryId>, DbError> {
    let body = if payment.api_version >= 1 {
        let invalid = |error| DbError::corrupt("payment", &payment.id, format!("invalid amount: {error}"));
        let body = V1WebhookBody {
            event: event.as_str(),
            payment: payment.resource().map_err(invalid)?,
            transfer: transfer.map(TransferResource::of),
        };
        serde_json::to_string(&body)
    } else {
        serde_json::to_string(&legacy_body(payment, event, transfer)?)
    };
    let body = body.map_err(|error| DbError::bug(format!("webhook body not serializable: {error}")))?;
    let delivery_id = DeliveryId::generate();
    let row = InsertDelivery {
        id: delivery_id.0,
        payment_id: payment.id.to_string(),
        event_type: event.as_str(),
        webhook_id: delivery_id.webhook_id(),
        body,
    };
    let inserted = crate::prepared::Prepared(row).execute(conn).await?;
    if inserted == 0 {
        return Ok(None);
    }
    let due = CallbackDue {
        delivery_id,
        payment_id: payment.id.clone(),
        event_type: event,
    };
    outbox::insert(conn, CALLBACK_DUE, &due).await?;
    Ok(Some(delivery_id))
}

/// The original service's webhook body (§5), for payments created through
/// the legacy API. `received_amount_usdt` is the transfer's amount for
/// detections and late transfers, and the payment's total on completion.
///
/// # Errors
/// [`DbError`] `Corrupt` when a stored amount does not parse.
fn legacy_body<'a>(
    payment: &'a PaymentRow,
    event: WebhookEvent,
    transfer: Option<&'a Transfer>,
) -> Result<WebhookBody<'a>, DbError> {
    let invalid = |error| DbError::corrupt("payment", &payment.id, format!("invalid amount: {error}"));
    let received = match event {
        WebhookEvent::Completed => payment.received_amount().map_err(invalid)?,
        // For detections and late transfers, the amount of that transfer.
        _ => transfer
            .map(|transfer| transfer.amount)
            .or(payment.received_amount().map_err(invalid)?),
    };
    Ok(WebhookBody {
        payment_id: payment.id.as_str(),
        order_id: &payment.order_id,
        wallet_address: &payment.wallet_address,
        currency: "USDT_TRC20",
        expected_amount_usdt: JsonAmount(payment.expected_amount().map_err(invalid)?),
        received_amount_usdt: received.map(JsonAmount),
        transaction_hash: transfer
            .map(|transfer| transfer.id.txid.as_str())
            .or(payment.transaction_hash.as_deref()),
        block_timestamp: transfer.map(|transfer| transfer.block_time_ms),
        status: payment.status().as_str(),
        event: event.as_str(),
    })
}

//! Webhook deliveries in the merchant API: a payment's deliveries, sending
//! a finished one again, and a signed test webhook (`ping`).

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use serde::Serialize;
use tronpay_db::deliveries::{self, DeliveryRow, Redelivery};
use tronpay_db::webhooks;
use tronpay_domain::events::WebhookEvent;
use tronpay_domain::wire::Rfc3339;
use tronpay_domain::{DeliveryId, Scope};
use utoipa::ToSchema;

use super::auth::Caller;
use super::payments::{json, load};
use super::problem::{self, Problem, ProblemBody};
use crate::state::AppState;

/// A webhook delivery: one event for one payment, and how sending it went.
#[derive(Serialize, ToSchema)]
#[schema(as = Delivery)]
pub struct DeliveryView<'a> {
    pub id: String,
    pub payment_id: &'a str,
    /// `payment.completed`, `payment.detected`, …, or `ping`.
    #[schema(example = "payment.completed")]
    pub event: &'static str,
    /// The Standard Webhooks `webhook-id`, the same on every attempt.
    pub webhook_id: &'a str,
    /// `pending`, `sending`, `delivered`, `failed` (refused for good) or
    /// `dead` (retries used up).
    #[schema(example = "delivered")]
    pub status: &'static str,
    /// Attempts made so far.
    pub attempts: i32,
    /// When the next attempt is due (while `pending`).
    pub next_attempt_at: Rfc3339,
    pub created_at: Rfc3339,
    pub last_attempt_at: Option<Rfc3339>,
    /// The receiver's HTTP status on the last attempt.
    pub last_status: Option<i32>,
    /// Why the last attempt failed.
    pub last_error: Option<&'a str>,
    pub delivered_at: Option<Rfc3339>,
}

impl<'a> DeliveryView<'a> {
    fn of(row: &'a DeliveryRow) -> Self {
        Self {
            id: row.id.0.to_string(),
            payment_id: row.payment_id.as_str(),
            event: row.event_type.as_str(),
            webhook_id: &row.webhook_id,
            status: row.status.as_str(),
            attempts: row.attempts,
            next_attempt_at: Rfc3339::from_naive(row.next_attempt_at),
            created_at: Rfc3339::from_naive(row.created_at),
            last_attempt_at: row.last_attempt_at.map(Rfc3339::from_naive),
            last_status: row.last_status,
            last_error: row.last_error.as_deref(),
            delivered_at: row.delivered_at.map(Rfc3339::from_naive),
        }
    }
}

/// A payment's deliveries.
#[derive(Serialize, ToSchema)]
pub struct DeliveryList<'a> {
    /// Oldest first.
    #[schema(value_type = Vec<DeliveryView>)]
    pub data: Vec<DeliveryView<'a>>,
}

/// The webhook deliveries of a payment, oldest first.
#[utoipa::path(
    get, path = "/v1/payments/{id}/deliveries", tag = "webhooks", operation_id = "listPaymentDeliveries",
    params(("id" = String, Path, description = "The payment id")),
    responses(
        (status = 200, description = "The payment's deliveries", body = DeliveryList),
        (status = 404, description = "No such payment", body = ProblemBody, content_type = "application/problem+json"),
    ),
    security(("api_key" = ["payments:read"]))
)]
pub async fn of_payment(
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, Problem> {
    caller.require(Scope::PaymentsRead)?;
    let payment = load(&state, &path).await?;
    let mut conn = state.pool.get().await?;
    let rows = deliveries::for_payment(&mut conn, &payment.id).await?;
    drop(conn);
    json(
        StatusCode::OK,
        &DeliveryList {
            data: rows.iter().map(DeliveryView::of).collect(),
        },
    )
}

/// Sends a finished delivery (delivered, failed or dead) again, now, with
/// the same body and `webhook-id`: the receiver can tell it is the same
/// event. A delivery still pending or being sent is a 409.
#[utoipa::path(
    post, path = "/v1/deliveries/{id}/redeliver", tag = "webhooks", operation_id = "redeliverDelivery",
    params(("id" = String, Path, description = "The delivery id (a UUID)")),
    responses(
        (status = 202, description = "Queued for an attempt now", body = DeliveryView),
        (status = 404, description = "No such delivery", body = ProblemBody, content_type = "application/problem+json"),
        (status = 409, description = "Still pending or being sent", body = ProblemBody, content_type = "application/problem+json"),
    ),
    security(("api_key" = ["payments:write"]))
)]
pub async fn redeliver(
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, Problem> {
    caller.require(Scope::PaymentsWrite)?;
    let not_found = || {
        let shown: String = path.chars().take(40).collect();
        Problem::new(problem::NOT_FOUND, format!("no delivery {shown:?}"))
    };
    let id = uuid::Uuid::parse_str(&path).map(DeliveryId).map_err(|_| not_found())?;
    let mut conn = state.pool.get().await?;
    let who = format!("API key {}", caller.prefix);
    let outcome = deliveries::redeliver(&mut conn, id, &who).await?;
    drop(conn);
    match outcome {
        Redelivery::Queued(row) => {
            tracing::info!(delivery = %row.id.0, payment_id = %row.payment_id, api_key = %caller.prefix, "delivery queued again");
            json(StatusCode::ACCEPTED, &DeliveryView::of(&row))
        }
        Redelivery::Unfinished(row) => Err(Problem::new(
            problem::DELIVERY_UNFINISHED,
            format!("delivery {} is {}; it is being worked on", id.0, row.status),
        )),
        Redelivery::NotFound => Err(not_found()),
    }
}

/// A delivery just queued.
#[derive(Serialize, ToSchema)]
pub struct Queued {
    /// The new delivery's id (see `GET /v1/payments/{id}/deliveries`).
    pub delivery_id: String,
    /// Its `webhook-id`.
    pub webhook_id: String,
}

/// Sends a signed `ping` webhook for the payment to its `notify_url`, as
/// any event is sent (signature, retries, delivery record), so a merchant
/// can check the receiver and its signature check. The body is
/// `{"event": "ping", "payment": …}` (the original shape for payments made
/// through `/create_payment`).
#[utoipa::path(
    post, path = "/v1/payments/{id}/test-webhook", tag = "webhooks", operation_id = "sendTestWebhook",
    params(("id" = String, Path, description = "The payment id")),
    responses(
        (status = 202, description = "Queued", body = Queued),
        (status = 404, description = "No such payment", body = ProblemBody, content_type = "application/problem+json"),
        (status = 409, description = "The payment has no notify_url", body = ProblemBody, content_type = "application/problem+json"),
    ),
    security(("api_key" = ["payments:write"]))
)]
pub async fn test_webhook(
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, Problem> {
    caller.require(Scope::PaymentsWrite)?;
    let payment = load(&state, &path).await?;
    if payment.callback_url.is_empty() {
        return Err(Problem::new(
            problem::NO_NOTIFY_URL,
            format!("payment {} has no notify_url to send a webhook to", payment.id),
        ));
    }
    let mut conn = state.pool.get().await?;
    // The delivery and its `callback.due` commit together.
    let queued = diesel_async::AsyncConnection::transaction::<_, tronpay_db::DbError, _>(&mut conn, async |conn| {
        webhooks::enqueue(conn, &payment, WebhookEvent::Ping, None).await
    })
    .await?;
    drop(conn);
    let Some(id) = queued else {
        return Err(Problem::internal(anyhow::anyhow!(
            "a ping for {} was not enqueued",
            payment.id
        )));
    };
    tracing::info!(payment_id = %payment.id, delivery = %id.0, api_key = %caller.prefix, "test webhook queued");
    json(
        StatusCode::ACCEPTED,
        &Queued {
            delivery_id: id.0.to_string(),
            webhook_id: id.webhook_id(),
        },
    )
}

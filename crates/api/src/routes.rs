//! The endpoints of the original service, with its JSON shapes.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use actix_web::{HttpRequest, HttpResponse, web};
use futures_util::StreamExt;
use serde::Serialize;
use tronpay_db::chain::{self, ChainState};
use tronpay_db::error::Unavailable;
use tronpay_db::models::epoch_seconds;
use tronpay_db::payments::{self, CreateError, NewPayment};
use tronpay_db::{DbError, stats};
use tronpay_domain::JsonAmount;
use tronpay_domain::wire::EpochSeconds;

use crate::error::{ApiError, text};
use crate::request::CreatePaymentRequest;
use crate::state::AppState;

/// The chain as the watcher last recorded it, for `/health` and `/stats`
/// (`status: degraded` when the node is stalled or unreachable; the API's
/// own `status` stays about the API).
fn chain_json(chain: Option<&ChainState>) -> serde_json::Value {
    chain
        .and_then(|chain| serde_json::to_value(chain.health(chrono::Utc::now().naive_utc())).ok())
        .unwrap_or(serde_json::Value::Null)
}

pub fn configure(config: &mut web::ServiceConfig) {
    let resource = |path| web::resource(path).default_service(web::to(method_not_allowed));
    config
        .service(resource("/create_payment").route(web::post().to(create_payment)))
        .service(
            resource("/payment_status/{payment_id}")
                .route(web::get().to(payment_status))
                .route(web::head().to(payment_status)),
        )
        .service(
            resource("/health")
                .route(web::get().to(health))
                .route(web::head().to(health)),
        )
        .service(
            resource("/health/live")
                .route(web::get().to(tronpay_runtime::health::live))
                .route(web::head().to(tronpay_runtime::health::live)),
        )
        .service(
            resource("/stats")
                .route(web::get().to(get_stats))
                .route(web::head().to(get_stats)),
        );
}

/// Reads the body up to `limit` bytes; more is a 413, never a 500.
async fn read_body(request: &HttpRequest, mut payload: web::Payload, limit: usize) -> Result<web::BytesMut, ApiError> {
    let declared = request
        .headers()
        .get(actix_web::http::header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<usize>().ok());
    if declared.is_some_and(|length| length > limit) {
        return Err(ApiError::PayloadTooLarge(limit));
    }
    let mut body = web::BytesMut::with_capacity(declared.unwrap_or(512).min(limit));
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|_| ApiError::bad_request(text::INVALID_JSON))?;
        if body.len() + chunk.len() > limit {
            return Err(ApiError::PayloadTooLarge(limit));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

#[derive(Serialize)]
struct CreatedBody<'a> {
    payment_id: &'a str,
    status: &'static str,
    message: &'static str,
    expires_at: EpochSeconds,
}

#[derive(Serialize)]
struct CreatedLogMetadata<'a> {
    wallet_address: String,
    expected_amount_usdt: JsonAmount,
    order_id: &'a str,
}

async fn create_payment(
    state: web::Data<AppState>,
    request: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let body = read_body(&request, payload, state.settings.max_body_bytes).await?;
    let create = CreatePaymentRequest::parse(&body)?;
    state
        .callback_guard
        .check(&create.callback_url)
        .await
        .map_err(|refused| ApiError::bad_request(refused.to_string()))?;

    let id = uuid::Uuid::new_v4().to_string();
    let wallet_address = create.wallet_address.to_base58();
    let log_message = format!(
        "Payment watch created for {wallet_address} expecting {} USDT",
        create.expected_amount
    );
    let log_metadata = serde_json::to_string(&CreatedLogMetadata {
        wallet_address: wallet_address.clone(),
        expected_amount_usdt: JsonAmount(create.expected_amount),
        order_id: create.order_id.as_str(),
    })
    .map_err(|error| ApiError::Internal(error.into()))?;
    let new = NewPayment {
        id: &id,
        wallet_address: &wallet_address,
        expected_amount: create.expected_amount.to_decimal(),
        callback_url: create.callback_url.as_str(),
        order_id: create.order_id.as_str(),
        ttl_seconds: state.settings.payment_ttl_seconds,
        log_message: &log_message,
        log_metadata: &log_metadata,
        notify_events: &[],
        api_version: 0,
        redirect_url: None,
        metadata_json: None,
        checkout_url: None,
    };
    let mut conn = state.pool.get().await?;
    let created = payments::create(&mut conn, &new).await.map_err(|error| match error {
        CreateError::DuplicatePendingOrder => ApiError::Conflict(text::ORDER_ID_PENDING),
        CreateError::Db(error) => error.into(),
    })?;
    drop(conn);
    tracing::info!(
        payment_id = %id,
        wallet_address = %wallet_address,
        expected_amount_usdt = %create.expected_amount,
        order_id = %create.order_id,
        "payment watch created"
    );
    Ok(HttpResponse::Created().json(CreatedBody {
        payment_id: &id,
        status: "watching",
        message: "Payment watch created successfully. Waiting for transaction.",
        expires_at: epoch_seconds(created.expires_at),
    }))
}

async fn payment_status(state: web::Data<AppState>, path: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let id = path.into_inner();
    // Ids are at most 36 printable characters (imported ones need not be
    // UUIDs); anything else cannot exist, and a NUL would upset PostgreSQL.
    if id.chars().count() > 36 || id.chars().any(char::is_control) {
        return Err(ApiError::NotFound(text::PAYMENT_NOT_FOUND));
    }
    let mut conn = state.pool.get().await?;
    let row = payments::find(&mut conn, &id).await?;
    drop(conn);
    let row = row.ok_or(ApiError::NotFound(text::PAYMENT_NOT_FOUND))?;
    let view = row
        .view()
        .map_err(|error| ApiError::Internal(anyhow::anyhow!("payment {} has an invalid amount: {error}", row.id)))?;
    Ok(HttpResponse::Ok().json(view))
}

fn now_epoch() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |elapsed| elapsed.as_secs_f64())
}

/// How long `/health` waits for the database before calling it disconnected.
const HEALTH_DB_WAIT: Duration = Duration::from_secs(2);

async fn health(state: web::Data<AppState>) -> HttpResponse {
    // "disconnected" means no connection could be had; a database that
    // answers but is slow, saturated or missing its tables is "connected"
    // and still unhealthy.
    let outcome = async {
        let mut conn = state
            .pool
            .get_within(HEALTH_DB_WAIT)
            .await
            .map_err(|error| (false, error))?;
        tokio::time::timeout(HEALTH_DB_WAIT, async {
            let counts = stats::status_counts(&mut conn).await?;
            let chain = chain::state(&mut conn).await?;
            Ok((counts, chain))
        })
        .await
        .unwrap_or_else(|_| {
            Err(Unavailable::Cancelled(format!("counting payments took over {} s", HEALTH_DB_WAIT.as_secs())).into())
        })
        .map_err(|error| (true, error))
    };
    let outcome = tokio::time::timeout(HEALTH_DB_WAIT * 2, outcome)
        .await
        .unwrap_or_else(|_| {
            Err((
                false,
                Unavailable::Unreachable {
                    target: "the database".into(),
                    detail: format!("no answer within {} s", (HEALTH_DB_WAIT * 2).as_secs()),
                }
                .into(),
            ))
        });
    // A background task of this process ended (it failed, panicked or gave
    // up on an error retrying cannot cure): the process is about to exit
    // so that it is restarted, and must not look healthy meanwhile.
    let failure = state.tasks.failure();
    let mut body = match outcome {
        Ok((counts, chain)) => {
            let mut body = serde_json::json!({
                "status": "healthy",
                "timestamp": now_epoch(),
                "active_payments": counts.pending,
                "total_payments": counts.total,
                "database": "connected",
                "broker": state.broker(),
                "chain": chain_json(chain.as_ref()),
                "version": env!("CARGO_PKG_VERSION"),
            });
            let Some(failure) = &failure else {
                return HttpResponse::Ok().json(body);
            };
            body["status"] = "unhealthy".into();
            body["error"] = failure.to_string().into();
            body
        }
        Err((connected, error)) => {
            // A pooled connection that turns out dead means the database
            // went away, not that it answers slowly.
            let connected = (connected && !matches!(error, DbError::Unavailable(Unavailable::ConnectionLost(_))))
                || matches!(error, DbError::Unavailable(Unavailable::PoolTimeout));
            tracing::warn!(%error, "health check failed");
            serde_json::json!({
                "status": "unhealthy",
                "timestamp": now_epoch(),
                "active_payments": null,
                "total_payments": null,
                "error": error.to_string(),
                "database": if connected { "connected" } else { "disconnected" },
                "broker": state.broker(),
                "version": env!("CARGO_PKG_VERSION"),
            })
        }
    };
    if let Some(failure) = failure {
        body["failure"] = serde_json::json!(failure);
    }
    HttpResponse::ServiceUnavailable().json(body)
}

async fn get_stats(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let mut conn = state.pool.get().await?;
    let counts = stats::status_counts(&mut conn).await?;
    let chain = chain::state(&mut conn).await?;
    drop(conn);
    let pool = state.pool.status();
    Ok(HttpResponse::Ok().json(serde_json::json!({
        "total_payments": counts.total,
        "pending_payments": counts.pending,
        "completed_payments": counts.completed,
        "failed_payments": counts.failed,
        "expired_payments": counts.expired,
        "uptime_seconds": state.started.elapsed().as_secs_f64(),
        "polling_interval": state.settings.polling_interval_seconds,
        "payment_ttl_seconds": state.settings.payment_ttl_seconds,
        "database_pool": {
            "max_size": pool.max_size,
            "open": pool.size,
            "idle": pool.available,
            "waiting": pool.waiting,
        },
        "broker": state.broker(),
        "chain": chain_json(chain.as_ref()),
    })))
}

/// JSON answers for unknown paths and wrong methods (the original answered
/// with Flask's HTML pages).
pub async fn not_found(request: HttpRequest) -> HttpResponse {
    HttpResponse::NotFound().json(serde_json::json!({ "error": format!("Not found: {}", request.path()) }))
}

async fn method_not_allowed(request: HttpRequest) -> HttpResponse {
    HttpResponse::MethodNotAllowed()
        .json(serde_json::json!({ "error": format!("Method {} not allowed on {}", request.method(), request.path()) }))
}

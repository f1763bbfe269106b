//! The endpoints of the original service, with its JSON shapes.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use actix_web::http::Method;
use actix_web::{HttpMessage as _, HttpRequest, HttpResponse, Route, web};
use futures_util::StreamExt;
use serde::Serialize;
use tronpay_db::chain::{self, ChainState};
use tronpay_db::error::Unavailable;
use tronpay_db::models::epoch_seconds;
use tronpay_db::payments::{self, CreateError, NewPayment};
use tronpay_db::{DbError, stats};
use tronpay_domain::wire::EpochSeconds;
use tronpay_domain::{JsonAmount, Scope};

use crate::error::{ApiError, text};
use crate::request::CreatePaymentRequest;
use crate::state::AppState;
use crate::v1::auth::Denied;

/// The chain as the watcher last recorded it, for `/health` and `/stats`
/// (`status: degraded` when the node is stalled or unreachable; the API's
/// own `status` stays about the API).
fn chain_json(chain: Option<&ChainState>) -> serde_json::Value {
    chain
        .and_then(|chain| serde_json::to_value(chain.health(chrono::Utc::now().naive_utc())).ok())
        .unwrap_or(serde_json::Value::Null)
}

/// One route of the API: its method, path (`{name}` segments), whether
/// `/openapi.json` documents it, and its handler. [`endpoints`] is the one
/// list the server is built from and the OpenAPI test checks.
pub struct Endpoint {
    pub method: Method,
    pub path: &'static str,
    pub documented: bool,
    route: fn() -> Route,
}

impl Endpoint {
    pub(crate) fn new(method: Method, path: &'static str, route: fn() -> Route) -> Self {
        Self {
            method,
            path,
            documented: true,
            route,
        }
    }

    /// Served, not in the OpenAPI document (`HEAD` twins, the documents).
    pub(crate) fn undocumented(method: Method, path: &'static str, route: fn() -> Route) -> Self {
        Self {
            documented: false,
            ..Self::new(method, path, route)
        }
    }
}

/// Every route the API serves.
pub fn endpoints() -> Vec<Endpoint> {
    let mut endpoints = vec![
        Endpoint::new(Method::POST, "/create_payment", || web::post().to(create_payment)),
        Endpoint::new(Method::GET, "/payment_status/{payment_id}", || {
            web::get().to(payment_status)
        }),
        Endpoint::undocumented(Method::HEAD, "/payment_status/{payment_id}", || {
            web::head().to(payment_status)
        }),
        Endpoint::new(Method::GET, "/health", || web::get().to(health)),
        Endpoint::undocumented(Method::HEAD, "/health", || web::head().to(health)),
        Endpoint::new(Method::GET, "/health/live", || web::get().to(live)),
        Endpoint::undocumented(Method::HEAD, "/health/live", || web::head().to(live)),
        Endpoint::new(Method::GET, "/stats", || web::get().to(get_stats)),
        Endpoint::undocumented(Method::HEAD, "/stats", || web::head().to(get_stats)),
        // Prometheus, for METRICS_ALLOW only (not in the API document).
        Endpoint::undocumented(Method::GET, "/metrics", || web::get().to(metrics)),
        // The checkout page and its assets (HTML, not in the API document).
        Endpoint::undocumented(Method::GET, "/pay/{payment_id}", || {
            web::get().to(crate::checkout::page)
        }),
        Endpoint::undocumented(Method::GET, "/assets/{name}", || web::get().to(crate::checkout::asset)),
        // The operator dashboard (a session, not a key).
        Endpoint::undocumented(Method::GET, "/admin", || web::get().to(crate::admin::overview)),
        Endpoint::undocumented(Method::GET, "/admin/sign-in", || {
            web::get().to(crate::admin::sign_in_page)
        }),
        Endpoint::undocumented(Method::POST, "/admin/sign-in", || web::post().to(crate::admin::sign_in)),
        Endpoint::undocumented(Method::POST, "/admin/sign-out", || {
            web::post().to(crate::admin::sign_out)
        }),
        Endpoint::undocumented(Method::GET, "/admin/payments", || web::get().to(crate::admin::payments)),
        Endpoint::undocumented(Method::GET, "/admin/payments/{payment_id}", || {
            web::get().to(crate::admin::payment)
        }),
        Endpoint::undocumented(Method::POST, "/admin/payments/{payment_id}/cancel", || {
            web::post().to(crate::admin::cancel)
        }),
        Endpoint::undocumented(Method::GET, "/admin/transfers", || {
            web::get().to(crate::admin::transfers)
        }),
        Endpoint::undocumented(Method::POST, "/admin/transfers/{txid}/{log_index}/assign", || {
            web::post().to(crate::admin::assign)
        }),
        Endpoint::undocumented(Method::POST, "/admin/deliveries/{delivery_id}/redeliver", || {
            web::post().to(crate::admin::redeliver)
        }),
        Endpoint::undocumented(Method::GET, "/admin/webhooks", || {
            web::get().to(crate::admin::operations::webhooks)
        }),
        Endpoint::undocumented(Method::POST, "/admin/webhooks/retry", || {
            web::post().to(crate::admin::operations::retry)
        }),
        Endpoint::undocumented(Method::GET, "/admin/keys", || {
            web::get().to(crate::admin::operations::keys)
        }),
        Endpoint::undocumented(Method::POST, "/admin/keys", || {
            web::post().to(crate::admin::operations::create_key)
        }),
        Endpoint::undocumented(Method::POST, "/admin/keys/{prefix}/revoke", || {
            web::post().to(crate::admin::operations::revoke_key)
        }),
        Endpoint::undocumented(Method::GET, "/admin/settings", || {
            web::get().to(crate::admin::operations::settings)
        }),
    ];
    endpoints.extend(crate::v1::endpoints());
    endpoints
}

/// Registers [`endpoints`], one resource per path; a known path with
/// another method is a 405 (a problem under `/v1`, the original's JSON
/// elsewhere).
pub fn configure(config: &mut web::ServiceConfig) {
    let endpoints = endpoints();
    let mut paths: Vec<&'static str> = Vec::new();
    for endpoint in &endpoints {
        if !paths.contains(&endpoint.path) {
            paths.push(endpoint.path);
        }
    }
    for path in paths {
        let allow = endpoints
            .iter()
            .filter(|endpoint| endpoint.path == path)
            .map(|endpoint| endpoint.method.as_str())
            .collect::<Vec<_>>()
            .join(", ");
        let mut resource = web::resource(path).default_service(web::to(move |request: HttpRequest| {
            let response = method_not_allowed(&request, &allow);
            async move { response }
        }));
        for endpoint in endpoints.iter().filter(|endpoint| endpoint.path == path) {
            resource = resource.route((endpoint.route)());
        }
        config.service(resource);
    }
}

/// Checks the key of a request to an original endpoint when
/// `LEGACY_API_KEY_REQUIRED` is on (401/403 in the original's error shape).
async fn legacy_key(state: &AppState, request: &HttpRequest, scope: Scope) -> Result<(), ApiError> {
    if !state.settings.legacy_api_key_required {
        return Ok(());
    }
    let header = request
        .headers()
        .get(actix_web::http::header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok());
    let caller = crate::v1::auth::authenticate(state, header, crate::v1::auth::client_ip(request))
        .await
        .map_err(|denied| match denied {
            Denied::Unauthorized(why) => ApiError::Unauthorized(why.to_owned()),
            Denied::Unavailable(error) => error.into(),
            Denied::RateLimited(seconds) => ApiError::RateLimited(seconds),
        })?;
    if caller.has(scope) {
        Ok(())
    } else {
        Err(ApiError::Forbidden(format!(
            "this endpoint needs an API key with the scope {scope}"
        )))
    }
}

/// Reads the body up to `limit` bytes; more is a 413, never a 500.
pub(crate) async fn read_body(
    request: &HttpRequest,
    mut payload: web::Payload,
    limit: usize,
) -> Result<web::BytesMut, ApiError> {
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

/// The original's answer to `POST /create_payment`.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = LegacyCreated)]
pub(crate) struct CreatedBody<'a> {
    payment_id: &'a str,
    /// Always `watching`.
    status: &'static str,
    message: &'static str,
    /// Seconds since the Unix epoch, with microseconds.
    #[schema(value_type = f64)]
    expires_at: EpochSeconds,
}

/// The original's request to `POST /create_payment` (documentation only:
/// [`CreatePaymentRequest::parse`] reads it with the original's rules).
#[derive(utoipa::ToSchema)]
#[schema(as = LegacyCreatePayment)]
#[allow(dead_code)]
pub(crate) struct LegacyCreatePayment {
    /// Base58Check TRON address.
    #[schema(example = "TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t")]
    wallet_address: String,
    /// USDT, a JSON number (a decimal string is accepted too).
    #[schema(example = 12.34)]
    expected_amount_usdt: f64,
    /// Where the completion webhook goes.
    #[schema(example = "https://shop.example.com/hook")]
    callback_url: String,
    order_id: String,
}

/// The original's error body.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = LegacyError)]
pub(crate) struct LegacyError {
    error: String,
}

#[derive(Serialize)]
struct CreatedLogMetadata<'a> {
    wallet_address: String,
    expected_amount_usdt: JsonAmount,
    order_id: &'a str,
}

/// Creates a payment watch (the original service's endpoint, unchanged).
#[utoipa::path(
    post, path = "/create_payment", tag = "original",
    request_body = LegacyCreatePayment,
    responses(
        (status = 201, description = "Watching", body = CreatedBody),
        (status = 400, description = "Invalid request", body = LegacyError),
        (status = 401, description = "LEGACY_API_KEY_REQUIRED and no valid key", body = LegacyError),
        (status = 403, description = "The key lacks payments:write", body = LegacyError),
        (status = 409, description = "The order id has a pending payment", body = LegacyError),
        (status = 413, description = "Body too large", body = LegacyError),
    ),
    security((), ("api_key" = ["payments:write"]))
)]
pub(crate) async fn create_payment(
    state: web::Data<AppState>,
    request: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    legacy_key(&state, &request, Scope::PaymentsWrite).await?;
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
    };
    let mut conn = state.pool.get().await?;
    let created = payments::create(&mut conn, &new).await.map_err(|error| match error {
        CreateError::DuplicatePendingOrder => ApiError::Conflict(text::ORDER_ID_PENDING),
        CreateError::Db(error) => error.into(),
    })?;
    drop(conn);
    crate::metrics::created("given");
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

/// A payment's status (the original service's endpoint, unchanged).
#[utoipa::path(
    get, path = "/payment_status/{payment_id}", tag = "original",
    params(("payment_id" = String, Path, description = "The payment id")),
    responses(
        (status = 200, description = "The payment", body = tronpay_domain::wire::PaymentView),
        (status = 401, description = "LEGACY_API_KEY_REQUIRED and no valid key", body = LegacyError),
        (status = 403, description = "The key lacks payments:read", body = LegacyError),
        (status = 404, description = "No such payment", body = LegacyError),
    ),
    security((), ("api_key" = ["payments:read"]))
)]
pub(crate) async fn payment_status(
    state: web::Data<AppState>,
    request: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    legacy_key(&state, &request, Scope::PaymentsRead).await?;
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

/// Liveness: 200 while the process serves (no dependency is checked).
#[utoipa::path(
    get, path = "/health/live", tag = "original",
    responses((status = 200, description = "Alive", body = Object, example = json!({"status": "alive"}))),
)]
pub(crate) async fn live() -> HttpResponse {
    tronpay_runtime::health::live().await
}

/// `GET /metrics` (Prometheus text) for the clients `METRICS_ALLOW` names
/// (by the client IP the edge worked out); a 404 for anyone else, as if
/// there were no such route.
pub(crate) async fn metrics(state: web::Data<AppState>, request: HttpRequest) -> HttpResponse {
    let client = request
        .extensions()
        .get::<crate::edge::RequestContext>()
        .map(|context| context.client_ip);
    let allowed = client.is_some_and(|ip| {
        let ip = match ip {
            std::net::IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, std::net::IpAddr::V4),
            v4 => v4,
        };
        state.metrics_allow.iter().any(|net| net.contains(&ip))
    });
    if !allowed {
        return not_found(request).await;
    }
    tronpay_runtime::metrics::endpoint().await
}

/// Readiness: the database, the broker workers, the chain as last seen.
#[utoipa::path(
    get, path = "/health", tag = "original",
    responses(
        (status = 200, description = "Healthy", body = Object),
        (status = 503, description = "Unhealthy (the body says why)", body = Object),
    ),
)]
pub(crate) async fn health(state: web::Data<AppState>) -> HttpResponse {
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
            let address_pool = state.address_pool(&mut conn).await?;
            Ok((counts, chain, address_pool))
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
        Ok((counts, chain, address_pool)) => {
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
            if let Some(address_pool) = address_pool {
                body["address_pool"] = pool_json(address_pool);
            }
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

/// Counts by status, pool and chain figures (the original's `/stats`).
#[utoipa::path(
    get, path = "/stats", tag = "original",
    responses(
        (status = 200, description = "Statistics", body = Object),
        (status = 401, description = "LEGACY_API_KEY_REQUIRED and no valid key", body = LegacyError),
        (status = 403, description = "The key lacks payments:read", body = LegacyError),
    ),
    security((), ("api_key" = ["payments:read"]))
)]
pub(crate) async fn get_stats(state: web::Data<AppState>, request: HttpRequest) -> Result<HttpResponse, ApiError> {
    legacy_key(&state, &request, Scope::PaymentsRead).await?;
    let mut conn = state.pool.get().await?;
    let counts = stats::status_counts(&mut conn).await?;
    let chain = chain::state(&mut conn).await?;
    let address_pool = state.address_pool(&mut conn).await?;
    drop(conn);
    let pool = state.pool.status();
    let mut body = serde_json::json!({
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
    });
    if let Some(address_pool) = address_pool {
        body["address_pool"] = pool_json(address_pool);
    }
    Ok(HttpResponse::Ok().json(body))
}

/// `{"free": …, "total": …}`: the address pool of `ADDRESS_MODE=pool`, as
/// `/health` and `/stats` show it (the shape `/v1/stats` documents).
fn pool_json(counts: tronpay_db::receiving::PoolCounts) -> serde_json::Value {
    serde_json::json!(crate::v1::stats::AddressPool::from(counts))
}

/// JSON answers for unknown paths and wrong methods (the original answered
/// with Flask's HTML pages).
pub async fn not_found(request: HttpRequest) -> HttpResponse {
    if request.path().starts_with("/v1/") {
        return actix_web::ResponseError::error_response(&crate::v1::problem::Problem::new(
            crate::v1::problem::ROUTE_NOT_FOUND,
            format!("no endpoint {}", request.path()),
        ));
    }
    HttpResponse::NotFound().json(serde_json::json!({ "error": format!("Not found: {}", request.path()) }))
}

/// A 405 naming the methods the path takes in `Allow` (RFC 9110): a
/// problem under `/v1`, the original's JSON elsewhere.
fn method_not_allowed(request: &HttpRequest, allow: &str) -> HttpResponse {
    let mut response = if request.path().starts_with("/v1/") {
        actix_web::ResponseError::error_response(&crate::v1::problem::Problem::new(
            crate::v1::problem::METHOD_NOT_ALLOWED,
            format!(
                "{} does not take {}; it takes {allow}",
                request.path(),
                request.method()
            ),
        ))
    } else {
        HttpResponse::MethodNotAllowed().json(
            serde_json::json!({ "error": format!("Method {} not allowed on {}", request.method(), request.path()) }),
        )
    };
    if let Ok(value) = actix_web::http::header::HeaderValue::from_str(allow) {
        response.headers_mut().insert(actix_web::http::header::ALLOW, value);
    }
    response
}

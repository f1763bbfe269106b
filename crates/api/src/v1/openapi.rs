//! The OpenAPI 3.1 document (`GET /openapi.json`), generated from the
//! handlers' `#[utoipa::path]` annotations and the wire types: the `/v1`
//! resources and the original endpoints.

use std::sync::OnceLock;

use actix_web::HttpResponse;
use utoipa::OpenApi;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};

use crate::routes;
use crate::v1::{deliveries, payments, problem, stats, transfers};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "tronpay",
        description = "Self-hosted TRON USDT (TRC-20) payment monitor. `/v1` needs an API key \
            (`Authorization: Bearer tpk_…`, from `tronpay keys create`); amounts are decimal strings, \
            times RFC 3339 UTC, errors RFC 9457 problem details. The original service's endpoints \
            are kept unchanged.",
    ),
    paths(
        payments::create,
        payments::list,
        payments::get,
        payments::cancel,
        payments::events,
        transfers::of_payment,
        transfers::list,
        transfers::assign,
        deliveries::of_payment,
        deliveries::redeliver,
        deliveries::test_webhook,
        stats::stats,
        routes::create_payment,
        routes::payment_status,
        routes::health,
        routes::live,
        routes::get_stats,
    ),
    components(schemas(problem::ProblemBody)),
    modifiers(&ApiKeys),
    tags(
        (name = "payments", description = "Payments of the merchant API v1"),
        (name = "transfers", description = "USDT transfers to the watched addresses, and operator assignment"),
        (name = "webhooks", description = "Webhook deliveries: list, send again, test"),
        (name = "original", description = "The original service's endpoints, unchanged"),
    )
)]
pub struct ApiDoc;

/// The `api_key` security scheme: a bearer token `tpk_…`.
struct ApiKeys;

impl utoipa::Modify for ApiKeys {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let mut scheme = Http::new(HttpAuthScheme::Bearer);
        scheme.bearer_format = Some("tpk_<prefix>_<secret>".into());
        scheme.description = Some(
            "An API key from `tronpay keys create --name N --scopes …`; the scopes an operation \
             needs are listed with it."
                .into(),
        );
        openapi
            .components
            .get_or_insert_with(Default::default)
            .add_security_scheme("api_key", SecurityScheme::Http(scheme));
    }
}

/// The document as JSON, built once.
pub fn json() -> &'static str {
    static JSON: OnceLock<String> = OnceLock::new();
    JSON.get_or_init(|| {
        ApiDoc::openapi()
            .to_json()
            .unwrap_or_else(|error| format!("{{\"error\":\"{error}\"}}"))
    })
}

/// `GET /openapi.json`.
pub async fn serve() -> HttpResponse {
    HttpResponse::Ok().content_type("application/json").body(json())
}

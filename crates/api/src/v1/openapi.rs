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
    modifiers(&ApiKeys, &CommonResponses),
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

/// The answers any operation may give besides its own: under `/v1`, 401
/// (no valid key), 403 (scope), 429 (rate limits) and 503 (database down)
/// as problem details; on the original endpoints, 429 and 503 in their
/// error shape.
struct CommonResponses;

impl utoipa::Modify for CommonResponses {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
        let answer = |description: &str, content_type: &str, schema: &str| {
            ResponseBuilder::new()
                .description(description)
                .content(
                    content_type,
                    ContentBuilder::new()
                        .schema(Some(Ref::from_schema_name(schema)))
                        .build(),
                )
                .build()
        };
        let v1 = [
            ("401", "No valid API key"),
            ("403", "The key lacks the scope"),
            ("429", "Rate limited: retry after Retry-After seconds"),
            ("503", "The database cannot be reached"),
        ];
        let original = [
            ("429", "Rate limited: retry after Retry-After seconds"),
            ("503", "The database cannot be reached"),
        ];
        for (path, item) in &mut openapi.paths.paths {
            let (common, content_type, schema) = if path.starts_with("/v1/") {
                (&v1[..], "application/problem+json", "Problem")
            } else {
                (&original[..], "application/json", "LegacyError")
            };
            let operations = [
                &mut item.get,
                &mut item.post,
                &mut item.put,
                &mut item.delete,
                &mut item.patch,
            ];
            for operation in operations.into_iter().flatten() {
                for (status, description) in common {
                    operation
                        .responses
                        .responses
                        .entry((*status).to_owned())
                        .or_insert_with(|| answer(description, content_type, schema).into());
                }
            }
        }
    }
}

/// The document as JSON, built once.
pub fn json() -> &'static str {
    static JSON: OnceLock<String> = OnceLock::new();
    JSON.get_or_init(|| {
        let mut document = serde_json::to_value(ApiDoc::openapi()).unwrap_or_default();
        add_links(&mut document);
        serde_json::to_string(&document).unwrap_or_else(|error| format!("{{\"error\":\"{error}\"}}"))
    })
}

/// Where a created payment's id leads (for clients, and for stateful
/// testing): links from `POST /v1/payments`' 201 to the operations on one
/// payment. Added to the JSON because utoipa 5.5 writes a link's
/// `operationId` as `operation_id`.
fn add_links(document: &mut serde_json::Value) {
    let links: serde_json::Map<String, serde_json::Value> = [
        "getPayment",
        "cancelPayment",
        "listPaymentEvents",
        "listPaymentTransfers",
        "listPaymentDeliveries",
        "sendTestWebhook",
    ]
    .into_iter()
    .map(|operation| {
        let link = serde_json::json!({ "operationId": operation, "parameters": { "id": "$response.body#/id" } });
        (operation.to_owned(), link)
    })
    .collect();
    if let Some(created) = document
        .pointer_mut("/paths/~1v1~1payments/post/responses/201")
        .and_then(serde_json::Value::as_object_mut)
    {
        created.insert("links".to_owned(), links.into());
    }
}

/// `GET /openapi.json`.
pub async fn serve() -> HttpResponse {
    HttpResponse::Ok().content_type("application/json").body(json())
}

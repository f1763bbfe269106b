//! The merchant API v1 (PRODUCT §9): `/v1/…` resources behind API keys,
//! with problem-details errors and the OpenAPI document that describes
//! them and the original endpoints.
//!
//! Every `/v1` handler takes a [`auth::Caller`] (401 without a valid key)
//! and requires its scope (403); a route without a key (the checkout's
//! public status stream) simply takes none.

pub mod auth;
pub mod deliveries;
pub mod docs;
pub mod openapi;
pub mod payments;
pub mod problem;
pub mod stats;
pub mod transfers;

use actix_web::http::Method;
use actix_web::web;

use crate::routes::Endpoint;

/// The `/v1` routes, and the documents (`/openapi.json`, `/docs`).
pub(crate) fn endpoints() -> Vec<Endpoint> {
    vec![
        Endpoint::new(Method::POST, "/v1/payments", || web::post().to(payments::create)),
        Endpoint::new(Method::GET, "/v1/payments", || web::get().to(payments::list)),
        Endpoint::new(Method::GET, "/v1/payments/{id}", || web::get().to(payments::get)),
        Endpoint::new(Method::POST, "/v1/payments/{id}/cancel", || {
            web::post().to(payments::cancel)
        }),
        Endpoint::new(Method::GET, "/v1/payments/{id}/events", || {
            web::get().to(payments::events)
        }),
        Endpoint::new(Method::GET, "/v1/payments/{id}/transfers", || {
            web::get().to(transfers::of_payment)
        }),
        Endpoint::new(Method::GET, "/v1/payments/{id}/deliveries", || {
            web::get().to(deliveries::of_payment)
        }),
        Endpoint::new(Method::POST, "/v1/payments/{id}/test-webhook", || {
            web::post().to(deliveries::test_webhook)
        }),
        Endpoint::new(Method::GET, "/v1/transfers", || web::get().to(transfers::list)),
        Endpoint::new(Method::POST, "/v1/transfers/{txid}/{log_index}/assign", || {
            web::post().to(transfers::assign)
        }),
        Endpoint::new(Method::POST, "/v1/deliveries/{id}/redeliver", || {
            web::post().to(deliveries::redeliver)
        }),
        Endpoint::new(Method::GET, "/v1/stats", || web::get().to(stats::stats)),
        // Server-Sent Events for the checkout page: no key, public fields
        // only (not in the OpenAPI document: a stream, not a JSON answer).
        Endpoint::undocumented(Method::GET, "/v1/payments/{id}/stream", || {
            web::get().to(crate::stream::stream)
        }),
        Endpoint::undocumented(Method::GET, "/openapi.json", || web::get().to(openapi::serve)),
        Endpoint::undocumented(Method::GET, "/docs", || web::get().to(docs::serve)),
    ]
}

/// Query strings that do not parse are problems too (`invalid_query`).
pub(crate) fn query_config() -> web::QueryConfig {
    web::QueryConfig::default().error_handler(|error, request| {
        if request.path().starts_with("/v1/") {
            problem::Problem::new(problem::INVALID_QUERY, error.to_string()).into()
        } else {
            error.into()
        }
    })
}

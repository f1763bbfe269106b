//! A built-in webhook receiver, so a local trial needs no outside tool:
//! `POST /sandbox/webhooks[/…]` records a webhook and checks its Standard
//! Webhooks signature against the configured secret; `GET /sandbox/webhooks`
//! lists what arrived.

use std::sync::Mutex;

use actix_web::{HttpRequest, HttpResponse, web};
use serde::Serialize;
use tronpay_domain::signing::WebhookSecret;

/// Webhooks kept (the oldest are dropped beyond this).
const KEEP: usize = 1_000;
/// Largest clock difference accepted in `webhook-timestamp`.
const TOLERANCE_SECONDS: i64 = 300;

#[derive(Debug, Clone, Serialize)]
pub struct ReceivedWebhook {
    pub received_at_ms: i64,
    pub path: String,
    pub webhook_id: Option<String>,
    pub webhook_timestamp: Option<String>,
    /// `true`/`false`, or `null` when the sandbox has no secret to check with.
    pub verified: Option<bool>,
    pub body: serde_json::Value,
}

/// The receiver's state.
pub struct Inbox {
    secret: Option<WebhookSecret>,
    received: Mutex<Vec<ReceivedWebhook>>,
}

impl Inbox {
    pub fn new(secret: Option<WebhookSecret>) -> Self {
        Self {
            secret,
            received: Mutex::new(Vec::new()),
        }
    }
}

pub(crate) fn configure(config: &mut web::ServiceConfig) {
    config
        .service(
            web::resource("/sandbox/webhooks")
                .route(web::post().to(receive))
                .route(web::get().to(list)),
        )
        .service(web::resource("/sandbox/webhooks/{tail:.*}").route(web::post().to(receive)));
}

fn header<'a>(request: &'a HttpRequest, name: &str) -> Option<&'a str> {
    request.headers().get(name).and_then(|value| value.to_str().ok())
}

/// Whether `signatures` (space-separated `v1,…`) hold one made with `secret`
/// over this message, with a timestamp close to now. Signatures are compared
/// in constant time ([`WebhookSecret::verify`]).
fn verify(secret: &WebhookSecret, id: &str, timestamp: &str, signatures: &str, body: &[u8]) -> bool {
    let Ok(seconds) = timestamp.parse::<i64>() else {
        return false;
    };
    if (chrono::Utc::now().timestamp() - seconds).abs() > TOLERANCE_SECONDS {
        return false;
    }
    secret.verify(id, seconds, body, signatures)
}

async fn receive(request: HttpRequest, body: web::Bytes, inbox: web::Data<Inbox>) -> HttpResponse {
    let id = header(&request, "webhook-id");
    let timestamp = header(&request, "webhook-timestamp");
    let verified = inbox
        .secret
        .as_ref()
        .map(|secret| match (id, timestamp, header(&request, "webhook-signature")) {
            (Some(id), Some(timestamp), Some(signatures)) => verify(secret, id, timestamp, signatures, &body),
            _ => false,
        });
    let entry = ReceivedWebhook {
        received_at_ms: chrono::Utc::now().timestamp_millis(),
        path: request.path().to_owned(),
        webhook_id: id.map(str::to_owned),
        webhook_timestamp: timestamp.map(str::to_owned),
        verified,
        body: serde_json::from_slice(&body)
            .unwrap_or_else(|_| serde_json::Value::String(String::from_utf8_lossy(&body).into_owned())),
    };
    if let Ok(mut received) = inbox.received.lock() {
        if received.len() >= KEEP {
            received.remove(0);
        }
        received.push(entry);
    }
    HttpResponse::Ok().json(serde_json::json!({ "received": true, "verified": verified }))
}

async fn list(inbox: web::Data<Inbox>) -> HttpResponse {
    let received = inbox
        .received
        .lock()
        .map(|received| received.clone())
        .unwrap_or_default();
    HttpResponse::Ok().json(serde_json::json!({
        "count": received.len(),
        "secret_configured": inbox.secret.is_some(),
        "webhooks": received,
    }))
}

//! RFC 9457 problem details: how every `/v1` error is answered
//! (`application/problem+json`), and the catalogue of their stable `code`s
//! that `/docs` lists.

use std::borrow::Cow;

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;
use tronpay_db::DbError;
use tronpay_db::error::DbErrorKind;

use crate::error::ApiError;

/// One kind of problem: its stable machine `code`, HTTP status, and the
/// `title` every occurrence shares (the `detail` says what happened this time).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Kind {
    pub code: &'static str,
    pub status: u16,
    pub title: &'static str,
    /// What a client should do about it (shown on `/docs`).
    pub advice: &'static str,
}

macro_rules! kinds {
    ($($name:ident = $code:literal, $status:literal, $title:literal, $advice:literal;)*) => {
        $(
            #[doc = $title]
            pub const $name: Kind = Kind { code: $code, status: $status, title: $title, advice: $advice };
        )*
        /// Every problem kind, in the order `/docs` lists them.
        pub const KINDS: &[Kind] = &[$($name),*];
    };
}

kinds! {
    INVALID_JSON = "invalid_json", 400, "The body is not JSON of the expected shape",
        "Send a JSON object with the documented fields; `detail` names what is wrong.";
    INVALID_REQUEST = "invalid_request", 400, "A field has a value that is not allowed",
        "Correct the field `detail` names.";
    INVALID_AMOUNT = "invalid_amount", 400, "The amount is not a positive USDT amount",
        "Send amounts as decimal strings with at most 6 decimals, such as \"12.34\".";
    INVALID_ADDRESS = "invalid_address", 400, "Not a TRON address",
        "Send a Base58Check TRON address (34 characters starting with T).";
    INVALID_NOTIFY_URL = "invalid_notify_url", 400, "The notify URL is not allowed",
        "Use an http(s) URL on a public host; private networks need CALLBACK_ALLOW_CIDRS.";
    INVALID_QUERY = "invalid_query", 400, "A query parameter is not valid",
        "Correct the parameter `detail` names.";
    INVALID_CURSOR = "invalid_cursor", 400, "The cursor was not issued by this API",
        "Pass back `next_cursor` exactly as received, with the same filters.";
    INVALID_IDEMPOTENCY_KEY = "invalid_idempotency_key", 400, "The Idempotency-Key header is not valid",
        "Use 1 to 255 visible ASCII characters, such as a UUID.";
    UNAUTHORIZED = "unauthorized", 401, "A valid API key is required",
        "Send `Authorization: Bearer tpk_…` with a key from `tronpay keys create` that is not revoked.";
    FORBIDDEN = "forbidden", 403, "The API key lacks the scope this needs",
        "Use a key with the scope `detail` names (`tronpay keys create --scopes …`).";
    NOT_FOUND = "not_found", 404, "No such resource",
        "Check the id; payments, transfers and deliveries are never deleted by the API.";
    ROUTE_NOT_FOUND = "route_not_found", 404, "No such endpoint",
        "See /openapi.json for the endpoints.";
    METHOD_NOT_ALLOWED = "method_not_allowed", 405, "The endpoint does not take this method",
        "See /openapi.json for the methods of each endpoint.";
    ORDER_ID_PENDING = "order_id_pending", 409, "The order id already has a pending payment",
        "Use the pending payment, cancel it first, or use another order id.";
    NOT_PENDING = "not_pending", 409, "The payment is no longer pending",
        "Read the payment: it completed, expired or was cancelled meanwhile.";
    ALREADY_ASSIGNED = "already_assigned", 409, "The transfer already counts for a payment",
        "A transfer is credited once; read the transfer to see its payment.";
    NOT_ASSIGNABLE = "not_assignable", 409, "The transfer cannot be credited to a payment",
        "Only final transfers that no payment counted can be assigned, to a payment that is not completed.";
    DELIVERY_UNFINISHED = "delivery_unfinished", 409, "The delivery is still pending or being sent",
        "Wait for its attempt to finish (see the delivery's status), then ask again.";
    NO_NOTIFY_URL = "no_notify_url", 409, "The payment has no notify URL",
        "Webhooks go to a payment's `notify_url`; create the payment with one.";
    NO_FREE_AMOUNT = "no_free_amount", 409, "No unique amount is free on the shared address",
        "Every raised amount up to UNIQUE_AMOUNT_MAX_OFFSET is held; retry later, or use another amount or address mode.";
    POOL_EMPTY = "pool_empty", 409, "No address of the pool is free",
        "Every imported address is lent to a pending payment or resting for POOL_RELEASE_GRACE_SECONDS after its payment ended; import more with `tronpay addresses import`, or retry later.";
    PAYLOAD_TOO_LARGE = "payload_too_large", 413, "The body is too large",
        "Keep request bodies under MAX_BODY_BYTES and metadata under 4 KiB.";
    IDEMPOTENCY_KEY_REUSED = "idempotency_key_reused", 422, "The Idempotency-Key was used with another body",
        "Send the same body again to get the first response, or use a new key for a new request.";
    RATE_LIMITED = "rate_limited", 429, "Too many requests",
        "Wait the seconds of the Retry-After header before trying again.";
    INTERNAL = "internal", 500, "Internal error",
        "Not your fault: try again; the operator finds the cause in the API's log by the request id.";
    UNAVAILABLE = "unavailable", 503, "Temporarily unavailable",
        "The database cannot be reached; retry after the Retry-After header's seconds.";
}

/// A `/v1` error: its [`Kind`] and what happened.
#[derive(Debug)]
pub struct Problem {
    pub kind: Kind,
    pub detail: Cow<'static, str>,
    /// Seconds for `Retry-After` (429, 503).
    pub retry_after: Option<u64>,
    /// Logged (never sent) for 5xx: the cause.
    cause: Option<anyhow::Error>,
}

/// The JSON body of a problem (RFC 9457 members plus `code`).
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = Problem)]
pub struct ProblemBody {
    /// A URI reference to this kind's documentation (`/docs#problem-{code}`).
    #[schema(example = "/docs#problem-invalid_amount")]
    pub r#type: String,
    /// The kind's fixed summary.
    pub title: &'static str,
    /// The HTTP status.
    #[schema(example = 400)]
    pub status: u16,
    /// What happened this time, for a human.
    pub detail: String,
    /// The stable machine code of the kind.
    #[schema(example = "invalid_amount")]
    pub code: &'static str,
}

impl Problem {
    pub fn new(kind: Kind, detail: impl Into<Cow<'static, str>>) -> Self {
        Self {
            kind,
            detail: detail.into(),
            retry_after: None,
            cause: None,
        }
    }

    /// A 500 whose `cause` goes to the log, never to the client.
    pub fn internal(cause: impl Into<anyhow::Error>) -> Self {
        Self {
            cause: Some(cause.into()),
            ..Self::new(INTERNAL, "the request failed; the operator can find why in the log")
        }
    }

    pub fn retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds);
        self
    }

    /// The body as sent.
    pub fn body(&self) -> ProblemBody {
        ProblemBody {
            r#type: format!("/docs#problem-{}", self.kind.code),
            title: self.kind.title,
            status: self.kind.status,
            detail: self.detail.clone().into_owned(),
            code: self.kind.code,
        }
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({}): {}", self.kind.title, self.kind.code, self.detail)
    }
}

impl From<DbError> for Problem {
    /// Unavailable, or a schema an operator must create: 503; the rest
    /// (conflicts the handler did not expect, corrupt rows, bugs): 500.
    fn from(error: DbError) -> Self {
        if matches!(error.kind(), DbErrorKind::Unavailable | DbErrorKind::Setup) {
            Self {
                cause: Some(error.into()),
                ..Self::new(UNAVAILABLE, "the database cannot be reached; try again shortly").retry_after(5)
            }
        } else {
            Self::internal(error)
        }
    }
}

impl From<ApiError> for Problem {
    /// The shared helpers' errors (body reading), as problems.
    fn from(error: ApiError) -> Self {
        match error {
            ApiError::BadRequest(text) => Self::new(INVALID_JSON, text),
            ApiError::PayloadTooLarge(limit) => Self::new(PAYLOAD_TOO_LARGE, format!("the limit is {limit} bytes")),
            ApiError::Unavailable(error) => error.into(),
            ApiError::NotFound(text) => Self::new(NOT_FOUND, text),
            ApiError::Conflict(text) => Self::new(INVALID_REQUEST, text),
            ApiError::Unauthorized(text) => Self::new(UNAUTHORIZED, text),
            ApiError::Forbidden(text) => Self::new(FORBIDDEN, text),
            ApiError::RateLimited(seconds) => Self::new(RATE_LIMITED, "slow down").retry_after(seconds),
            ApiError::Internal(error) => Self::internal(error),
        }
    }
}

impl ResponseError for Problem {
    fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.kind.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    fn error_response(&self) -> HttpResponse {
        match (&self.cause, self.kind.status) {
            (Some(cause), 503) => tracing::warn!(error = format!("{cause:#}"), "request failed: database unavailable"),
            (Some(cause), _) => tracing::error!(error = format!("{cause:#}"), "request failed"),
            (None, _) => {}
        }
        let mut response = HttpResponse::build(self.status_code());
        if let Some(seconds) = self.retry_after {
            response.insert_header(("Retry-After", seconds.to_string()));
        }
        if self.kind == UNAUTHORIZED {
            response.insert_header(("WWW-Authenticate", "Bearer"));
        }
        let body = serde_json::to_string(&self.body()).unwrap_or_default();
        response.content_type("application/problem+json").body(body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_and_statuses_are_errors() {
        let mut codes: Vec<_> = KINDS.iter().map(|kind| kind.code).collect();
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), KINDS.len());
        assert!(KINDS.iter().all(|kind| (400..600).contains(&kind.status)));
    }

    #[test]
    fn a_problem_is_problem_json_with_its_code() {
        let response = Problem::new(INVALID_AMOUNT, "amount has 7 decimals").error_response();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        assert_eq!(
            response.headers().get("content-type").unwrap(),
            "application/problem+json"
        );
        let body = Problem::new(INVALID_AMOUNT, "amount has 7 decimals").body();
        assert_eq!(body.code, "invalid_amount");
        assert_eq!(body.r#type, "/docs#problem-invalid_amount");
        assert_eq!(body.status, 400);
    }
}

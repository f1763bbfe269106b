//! The API's one error type and how each case is answered.

use std::borrow::Cow;

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use tronpay_db::DbError;
use tronpay_db::error::DbErrorKind;

/// Error texts of the original service, kept exactly.
pub mod text {
    pub const INVALID_JSON: &str = "Invalid JSON or empty request body";
    pub const MISSING_FIELDS: &str =
        "Missing required fields: wallet_address, expected_amount_usdt, callback_url, order_id";
    pub const INVALID_ADDRESS: &str = "Invalid TRON wallet address format";
    pub const INVALID_CALLBACK_URL: &str = "Invalid callback URL format";
    pub const ORDER_ID_PENDING: &str = "order_id already exists with pending status";
    pub const PAYMENT_NOT_FOUND: &str = "Payment ID not found";
    pub const INTERNAL: &str = "Internal server error";
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(Cow<'static, str>),
    #[error("{0}")]
    NotFound(&'static str),
    #[error("{0}")]
    Conflict(&'static str),
    /// No valid API key where one is required (`LEGACY_API_KEY_REQUIRED`).
    #[error("{0}")]
    Unauthorized(String),
    /// A key without the scope the endpoint needs.
    #[error("{0}")]
    Forbidden(String),
    /// Over a rate limit; retry after this many seconds.
    #[error("rate limited, retry after {0} s")]
    RateLimited(u64),
    #[error("request body exceeds {0} bytes")]
    PayloadTooLarge(usize),
    #[error("database unavailable: {0}")]
    Unavailable(DbError),
    #[error("internal error: {0:#}")]
    Internal(anyhow::Error),
}

impl ApiError {
    pub fn bad_request(text: impl Into<Cow<'static, str>>) -> Self {
        Self::BadRequest(text.into())
    }
}

impl From<DbError> for ApiError {
    /// Unavailable, or a schema an operator must create: 503; the rest
    /// (conflicts the handler did not expect, corrupt rows, bugs): 500.
    fn from(error: DbError) -> Self {
        if matches!(error.kind(), DbErrorKind::Unavailable | DbErrorKind::Setup) {
            Self::Unavailable(error)
        } else {
            Self::Internal(error.into())
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::Conflict(_) => StatusCode::CONFLICT,
            Self::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::RateLimited(_) => StatusCode::TOO_MANY_REQUESTS,
            Self::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let text: Cow<'_, str> = match self {
            Self::BadRequest(text) => Cow::Borrowed(text),
            Self::NotFound(text) | Self::Conflict(text) => Cow::Borrowed(text),
            Self::Unauthorized(text) | Self::Forbidden(text) => Cow::Borrowed(text),
            Self::RateLimited(seconds) => Cow::Owned(format!("Too many requests, retry after {seconds} s")),
            Self::PayloadTooLarge(limit) => Cow::Owned(format!("Request body too large (limit {limit} bytes)")),
            Self::Unavailable(error) => {
                tracing::warn!(%error, "request failed: database unavailable");
                Cow::Borrowed("Service temporarily unavailable: database unreachable, try again shortly")
            }
            Self::Internal(error) => {
                // The cause chain goes to the log, never to the client.
                tracing::error!(error = format!("{error:#}"), "request failed");
                Cow::Borrowed(text::INTERNAL)
            }
        };
        let mut response = HttpResponse::build(self.status_code());
        match self {
            Self::Unavailable(_) => {
                response.insert_header(("Retry-After", "5"));
            }
            Self::RateLimited(seconds) => {
                response.insert_header(("Retry-After", seconds.to_string()));
            }
            Self::Unauthorized(_) => {
                response.insert_header(("WWW-Authenticate", "Bearer"));
            }
            _ => {}
        }
        response.json(serde_json::json!({ "error": text }))
    }
}

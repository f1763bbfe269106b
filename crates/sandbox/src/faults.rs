//! Upstream faults on demand: the failures a real public node shows (5xx,
//! rate limits, text instead of JSON, `{"Error": …}`, stalls, empty bodies),
//! applied to the next java-tron and TronGrid requests. Control endpoints are
//! never affected, so a test can always reset them.

use std::time::Duration;

use actix_web::HttpResponse;
use actix_web::http::StatusCode;
use serde::{Deserialize, Serialize};

/// How upcoming node requests fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultMode {
    /// Answer normally.
    #[default]
    None,
    Http500,
    /// With `Retry-After` when `retry_after` is set.
    Http503,
    /// With `Retry-After` when `retry_after` is set.
    Http429,
    Http403,
    /// HTTP 200 with a text that is not JSON (`lack of computing resources`).
    Garbage,
    /// HTTP 200 with java-tron's `{"Error": "…"}`.
    ErrorJson,
    /// Wait `stall_ms`, then answer normally.
    Stall,
    /// HTTP 200 with an empty body.
    Empty,
}

impl FaultMode {
    /// Every fault (every mode but [`Self::None`]).
    pub const FAULTS: [Self; 8] = [
        Self::Http500,
        Self::Http503,
        Self::Http429,
        Self::Http403,
        Self::Garbage,
        Self::ErrorJson,
        Self::Stall,
        Self::Empty,
    ];

    pub fn parse(text: &str) -> Option<Self> {
        serde_json::from_value(serde_json::Value::String(text.to_owned())).ok()
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Http500 => "http500",
            Self::Http503 => "http503",
            Self::Http429 => "http429",
            Self::Http403 => "http403",
            Self::Garbage => "garbage",
            Self::ErrorJson => "error_json",
            Self::Stall => "stall",
            Self::Empty => "empty",
        }
    }
}

/// A fault to inject (the body of `POST /sandbox/faults`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct FaultPlan {
    pub mode: FaultMode,
    /// How many upcoming node requests fail; `None` = until reset.
    pub count: Option<u64>,
    /// Seconds, sent as `Retry-After` on 429 and 503.
    pub retry_after: Option<u64>,
    /// How long `stall` waits.
    pub stall_ms: u64,
}

pub const DEFAULT_STALL_MS: u64 = 30_000;

impl FaultPlan {
    /// No fault.
    pub const NONE: Self = Self {
        mode: FaultMode::None,
        count: None,
        retry_after: None,
        stall_ms: DEFAULT_STALL_MS,
    };

    /// `mode` for the next `count` node requests.
    pub fn times(mode: FaultMode, count: u64) -> Self {
        Self {
            mode,
            count: Some(count),
            ..Self::NONE
        }
    }
}

impl Default for FaultPlan {
    fn default() -> Self {
        Self::NONE
    }
}

/// The fault in force and how many requests it still affects.
#[derive(Debug, Default)]
pub(crate) struct Faults {
    plan: FaultPlan,
    remaining: Option<u64>,
}

impl Faults {
    pub fn set(&mut self, plan: FaultPlan) {
        self.plan = plan;
        self.remaining = plan.count;
        if plan.count == Some(0) {
            self.plan = FaultPlan::NONE;
        }
    }

    /// The fault for one request, counting it down.
    pub fn take(&mut self) -> Option<FaultPlan> {
        if self.plan.mode == FaultMode::None {
            return None;
        }
        let plan = self.plan;
        if let Some(remaining) = &mut self.remaining {
            *remaining = remaining.saturating_sub(1);
            if *remaining == 0 {
                self.plan = FaultPlan::NONE;
                self.remaining = None;
            }
        }
        Some(plan)
    }

    /// For `/sandbox/status`.
    pub fn describe(&self) -> serde_json::Value {
        serde_json::json!({
            "mode": self.plan.mode.as_str(),
            "remaining": self.remaining,
            "retry_after": self.plan.retry_after,
            "stall_ms": self.plan.stall_ms,
        })
    }
}

/// What a faulty node answers instead; `None` means "answer normally now"
/// (after the stall, for `stall`).
pub(crate) async fn respond(plan: FaultPlan) -> Option<HttpResponse> {
    let with_retry_after = |status: StatusCode, body: &'static str| {
        let mut response = HttpResponse::build(status);
        if let Some(seconds) = plan.retry_after {
            response.insert_header(("Retry-After", seconds.to_string()));
        }
        response.content_type("text/plain; charset=utf-8").body(body)
    };
    match plan.mode {
        FaultMode::None => None,
        FaultMode::Stall => {
            tokio::time::sleep(Duration::from_millis(plan.stall_ms)).await;
            None
        }
        FaultMode::Http500 => Some(
            HttpResponse::InternalServerError()
                .content_type("text/plain; charset=utf-8")
                .body("sandbox fault: internal server error"),
        ),
        FaultMode::Http503 => Some(with_retry_after(
            StatusCode::SERVICE_UNAVAILABLE,
            "sandbox fault: service unavailable",
        )),
        FaultMode::Http429 => Some(with_retry_after(
            StatusCode::TOO_MANY_REQUESTS,
            "sandbox fault: too many requests",
        )),
        FaultMode::Http403 => Some(HttpResponse::Forbidden().json(serde_json::json!({
            "Error": "sandbox fault: The key exceeds the frequency limit(15), and the query server is suspended for 30s"
        }))),
        FaultMode::Garbage => Some(
            HttpResponse::Ok()
                .content_type("text/plain; charset=utf-8")
                .body("lack of computing resources"),
        ),
        FaultMode::ErrorJson => Some(HttpResponse::Ok().json(serde_json::json!({
            "Error": "class org.tron.core.exception.BadItemException : sandbox fault"
        }))),
        FaultMode::Empty => Some(HttpResponse::Ok().content_type("application/json").finish()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_counted_fault_stops_after_its_count() {
        let mut faults = Faults::default();
        faults.set(FaultPlan::times(FaultMode::Http500, 2));
        assert!(faults.take().is_some());
        assert!(faults.take().is_some());
        assert!(faults.take().is_none());
        faults.set(FaultPlan {
            mode: FaultMode::Garbage,
            ..FaultPlan::NONE
        });
        for _ in 0..10 {
            assert_eq!(faults.take().map(|plan| plan.mode), Some(FaultMode::Garbage));
        }
        faults.set(FaultPlan::NONE);
        assert!(faults.take().is_none());
    }

    #[test]
    fn modes_have_their_wire_names() {
        for mode in std::iter::once(FaultMode::None).chain(FaultMode::FAULTS) {
            assert_eq!(FaultMode::parse(mode.as_str()), Some(mode));
        }
        assert_eq!(FaultMode::parse("http418"), None);
    }
}

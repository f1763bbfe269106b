//! One delivery attempt: claim it, send it signed, record what happened.

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use tokio::sync::Semaphore;
use tronpay_bus::{HandlerError, Incoming};
use tronpay_db::deliveries::{self, Attempt, Claimed, Outcome};
use tronpay_db::{DbError, DbPool};
use tronpay_domain::events::CallbackDue;
use tronpay_domain::signing::{WebhookSecret, signature_header};
use tronpay_domain::{AddressPolicy, CallbackUrl};

use crate::client;

/// Longest response body kept with an attempt.
const KEEP_BODY_BYTES: usize = 1024;

/// What every delivery shares.
pub struct Dispatcher {
    pub pool: DbPool,
    pub http: reqwest::Client,
    pub policy: AddressPolicy,
    pub schedule: Vec<Duration>,
    pub timeout: Duration,
    pub max_retry_after: Duration,
    /// Signing secrets, newest first (reloaded for rotations).
    pub secrets: Arc<RwLock<Vec<WebhookSecret>>>,
    pub in_flight: Semaphore,
}

impl Dispatcher {
    /// Handles one `callback.due`: an attempt if one is due, else nothing
    /// (the sweep republishes it when it is).
    pub async fn handle(&self, incoming: &Incoming) -> Result<(), HandlerError> {
        let due: CallbackDue = serde_json::from_slice(&incoming.payload)
            .map_err(|error| HandlerError::Reject(format!("not a callback.due event: {error}")))?;
        let id = uuid::Uuid::parse_str(&due.delivery_id)
            .map_err(|_| HandlerError::Reject(format!("bad delivery id {:?}", due.delivery_id)))?;
        let Ok(_permit) = self.in_flight.acquire().await else {
            return Err(HandlerError::Retry("the dispatcher is stopping".into()));
        };
        // Long enough for the request (at most the timeout) and recording it.
        let lease = self.timeout + Duration::from_secs(10);
        let claimed = {
            let mut conn = self.pool.get().await.map_err(retry)?;
            deliveries::claim(&mut conn, id, lease).await.map_err(retry)?
        };
        let Some(claimed) = claimed else { return Ok(()) };
        let attempt = self.attempt(&claimed).await;
        let outcome = attempt.outcome;
        let mut conn = self.pool.get().await.map_err(retry)?;
        // If recording fails the lease expires and the delivery is attempted
        // again: at-least-once, never lost.
        deliveries::record(&mut conn, &claimed, &attempt).await.map_err(retry)?;
        tracing::info!(
            delivery = %claimed.id,
            payment = %claimed.payment_id,
            event = %claimed.event_type,
            attempt = claimed.attempts,
            status = ?attempt.http_status,
            outcome = ?outcome,
            "webhook attempt"
        );
        Ok(())
    }

    /// Sends the attempt and decides its outcome.
    pub async fn attempt(&self, claimed: &Claimed) -> Attempt {
        let started_at = chrono::Utc::now().naive_utc();
        let started = Instant::now();
        let finish = |http_status: Option<u16>,
                      response_body: Option<String>,
                      error: Option<String>,
                      outcome: Outcome| Attempt {
            started_at,
            duration_ms: i32::try_from(started.elapsed().as_millis()).unwrap_or(i32::MAX),
            http_status: http_status.map(i32::from),
            response_body,
            error,
            outcome,
        };
        let url = match CallbackUrl::parse(&claimed.callback_url) {
            Ok(url) => url,
            Err(error) => {
                return finish(
                    None,
                    None,
                    Some(format!("invalid callback URL: {error}")),
                    Outcome::Failed,
                );
            }
        };
        // A literal private address never becomes deliverable; a name may
        // resolve differently later, so a refused name is retried.
        if let Err(refused) = client::check_literal(&url, &self.policy) {
            return finish(None, None, Some(refused.to_string()), Outcome::Failed);
        }
        let timestamp = chrono::Utc::now().timestamp();
        let signature = {
            let secrets = self.secrets.read().map(|secrets| secrets.clone()).unwrap_or_default();
            signature_header(&secrets, &claimed.webhook_id, timestamp, claimed.payload.as_bytes())
        };
        let sent = self
            .http
            .post(url.as_str())
            .header("content-type", "application/json")
            .header("webhook-id", &claimed.webhook_id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(claimed.payload.clone())
            .send()
            .await;
        let response = match sent {
            Ok(response) => response,
            Err(error) => {
                let message = match client::refused_in(&error) {
                    Some(refused) => refused.to_string(),
                    None if error.is_timeout() => format!("no answer within {} ms", self.timeout.as_millis()),
                    None => describe(&error),
                };
                return finish(None, None, Some(message), self.retry_or_dead(claimed.attempts, None));
            }
        };
        let status = response.status();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let body = read_some(response).await;
        let outcome = if status.is_success() {
            Outcome::Delivered
        } else if status.as_u16() == 410 {
            Outcome::Failed
        } else {
            let asked = matches!(status.as_u16(), 429 | 503).then_some(retry_after).flatten();
            self.retry_or_dead(claimed.attempts, asked)
        };
        let error = (!status.is_success()).then(|| {
            if status.is_redirection() {
                format!("HTTP {status} (redirects are not followed)")
            } else {
                format!("HTTP {status}")
            }
        });
        finish(Some(status.as_u16()), Some(body), error, outcome)
    }

    /// The next attempt after `attempts` failed ones: the schedule with ±20 %
    /// jitter, or what the receiver asked for, or dead when the schedule is
    /// used up.
    fn retry_or_dead(&self, attempts: i32, asked: Option<Duration>) -> Outcome {
        let index = usize::try_from(attempts.max(1) - 1).unwrap_or(usize::MAX);
        let Some(delay) = self.schedule.get(index) else {
            return Outcome::Dead;
        };
        let jittered = delay.mul_f64(0.8 + 0.4 * fastrand::f64());
        let delay = match asked {
            Some(asked) => asked.clamp(Duration::from_secs(1), self.max_retry_after),
            None => jittered,
        };
        let delay = chrono::TimeDelta::from_std(delay).unwrap_or(chrono::TimeDelta::hours(24));
        Outcome::Retry(chrono::Utc::now().naive_utc() + delay)
    }
}

fn retry(error: DbError) -> HandlerError {
    HandlerError::Retry(error.to_string())
}

fn describe(error: &reqwest::Error) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Up to [`KEEP_BODY_BYTES`] of the response body (lossy UTF-8).
async fn read_some(response: reqwest::Response) -> String {
    let mut stream = response.bytes_stream();
    let mut kept = Vec::new();
    while let Some(Ok(chunk)) = stream.next().await {
        let room = KEEP_BODY_BYTES - kept.len();
        kept.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if kept.len() >= KEEP_BODY_BYTES {
            break;
        }
    }
    String::from_utf8_lossy(&kept).into_owned()
}

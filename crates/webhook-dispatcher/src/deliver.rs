//! One delivery attempt: find where it goes, take a slot in its lane (or
//! park it), claim it, send it signed, record what happened, and start what
//! its end lets start (see [`crate::lanes`]).

use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use tokio::sync::{Notify, Semaphore, watch};
use tronpay_bus::{HandlerError, Incoming};
use tronpay_db::deliveries::{self, Attempt, Claimed, Outcome};
use tronpay_db::{DbError, DbPool};
use tronpay_domain::DeliveryId;
use tronpay_domain::events::CallbackDue;
use tronpay_domain::signing::{WebhookSecret, signature_header};
use tronpay_domain::{AddressPolicy, CallbackUrl};
use tronpay_runtime::stopped;

use crate::client;
use crate::lanes::{Admission, Ended, Lane, Lanes, Origin, Start};
use crate::outcome::{Answer, Decision, RetryRules};

/// Longest response body kept with an attempt.
const KEEP_BODY_BYTES: usize = 1024;

/// What every delivery shares.
pub struct Dispatcher {
    pub pool: DbPool,
    /// The callback client ([`client::build`]): no redirects, checked addresses.
    pub http: reqwest::Client,
    /// Which addresses callbacks may go to (`CALLBACK_ALLOW_*`).
    pub policy: AddressPolicy,
    /// What an attempt's answer means (`WEBHOOK_RETRY_SCHEDULE`,
    /// `WEBHOOK_MAX_RETRY_AFTER_SECONDS`).
    pub rules: RetryRules,
    /// `WEBHOOK_TIMEOUT_MS`: the whole request, body included.
    pub timeout: Duration,
    /// Signing secrets, newest first (reloaded for rotations).
    pub secrets: Arc<RwLock<Vec<WebhookSecret>>>,
    /// The main lane: `WEBHOOK_CONCURRENCY` permits, one per attempt in
    /// flight to a destination that answers. Slow-lane attempts take none.
    pub in_flight: Semaphore,
    /// Attempts per origin and lane, and the parked deliveries.
    pub lanes: Mutex<Lanes>,
    /// Woken whenever an attempt ends (an origin may have room again).
    pub ended: Notify,
    /// Turns true on shutdown: nothing new starts, parked deliveries are
    /// forgotten (they are still due in the database).
    pub shutdown: watch::Receiver<bool>,
}

/// A slot taken in the lanes for one attempt. Finished explicitly when the
/// attempt ends; dropped unfinished (the attempt was cancelled, e.g. the
/// consumer lost the broker), it frees the slot without starting anything.
struct Held<'a> {
    dispatcher: &'a Dispatcher,
    origin: Origin,
    lane: Lane,
    done: bool,
}

impl Held<'_> {
    /// Frees the slot and returns the parked deliveries that may start.
    fn finish(mut self, ended: Ended) -> Vec<Start> {
        self.done = true;
        let finished = {
            let mut lanes = self.dispatcher.lanes();
            if *self.dispatcher.shutdown.borrow() {
                lanes.close();
            }
            lanes.finish(&self.origin, self.lane, ended)
        };
        match finished.moved_to {
            Some(Lane::Slow) => tracing::warn!(
                origin = %self.origin,
                "a callback destination timed out; its attempts use the slow lane until it answers"
            ),
            Some(Lane::Main) => tracing::info!(origin = %self.origin, "a slow callback destination answers again"),
            None => {}
        }
        self.dispatcher.ended.notify_waiters();
        finished.starts
    }
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.dispatcher.lanes().release(&self.origin, self.lane, Ended::Other);
            self.dispatcher.ended.notify_waiters();
        }
    }
}

impl Dispatcher {
    /// Handles one `callback.due`: an attempt if one is due and its origin
    /// has room, else the delivery is parked (or left to the sweep, which
    /// republishes it while it is due). `Retry` when the database cannot be
    /// reached or the dispatcher is stopping; `Reject` for a malformed message.
    pub async fn handle(self: &Arc<Self>, incoming: &Incoming) -> Result<(), HandlerError> {
        let due: CallbackDue = serde_json::from_slice(&incoming.payload)
            .map_err(|error| HandlerError::Reject(format!("not a callback.due event: {error}")))?;
        let id = due.delivery_id;
        // The origin and its lane must be known before a lease is taken: a
        // claimed attempt that then waited for a slot could outlive its lease.
        let callback = {
            let mut conn = self.pool.get().await.map_err(retry)?;
            deliveries::due_callback(&mut conn, id).await.map_err(retry)?
        };
        let Some(callback) = callback else { return Ok(()) };
        let origin = Origin::of(&callback);
        let lane = loop {
            let ended = self.ended.notified();
            tokio::pin!(ended);
            // Registered before looking, so an end in between is not missed.
            ended.as_mut().enable();
            if *self.shutdown.borrow() {
                return Err(HandlerError::Retry("the dispatcher is stopping".into()));
            }
            let admission = self.lanes().admit(&origin, id);
            match admission {
                Admission::Start(lane) => break lane,
                Admission::Parked => {
                    tracing::debug!(delivery = %id, %origin, "parked until its destination has room");
                    return Ok(());
                }
                Admission::AlreadyParked | Admission::Dropped => return Ok(()),
                // The origin is draining and its queue is full: hold this
                // message (back-pressure) until an attempt ends.
                Admission::Full => {
                    let mut stop = self.shutdown.clone();
                    tokio::select! {
                        () = &mut ended => {}
                        () = stopped(&mut stop) => {}
                    }
                }
            }
        };
        let held = Held {
            dispatcher: self,
            origin,
            lane,
            done: false,
        };
        self.run(held, id).await
    }

    /// Makes the attempt `held` was admitted for, then starts the parked
    /// deliveries its end lets start, each on its own task.
    async fn run(self: &Arc<Self>, held: Held<'_>, id: DeliveryId) -> Result<(), HandlerError> {
        let (result, ended) = self.attempt_once(id, held.lane).await;
        for start in held.finish(ended) {
            self.start_parked(start);
        }
        result
    }

    fn start_parked(self: &Arc<Self>, start: Start) {
        let dispatcher = Arc::clone(self);
        tokio::spawn(async move {
            let held = Held {
                dispatcher: &dispatcher,
                origin: start.origin,
                lane: start.lane,
                done: false,
            };
            if let Err(error) = dispatcher.run(held, start.id).await {
                // Still due in the database: the sweep republishes it.
                tracing::warn!(delivery = %start.id, %error, "a parked delivery was not attempted");
            }
        });
    }

    /// Claims delivery `id`, sends it and records it; says how it ended for
    /// the lanes. A main-lane attempt waits here for a main permit.
    async fn attempt_once(&self, id: DeliveryId, lane: Lane) -> (Result<(), HandlerError>, Ended) {
        let _permit = match lane {
            Lane::Main => match self.in_flight.acquire().await {
                Ok(permit) => Some(permit),
                Err(_) => {
                    return (
                        Err(HandlerError::Retry("the dispatcher is stopping".into())),
                        Ended::Other,
                    );
                }
            },
            Lane::Slow => None,
        };
        // Long enough for the request (at most the timeout) and recording it.
        let lease = self.timeout + Duration::from_secs(10);
        let claimed = async {
            let mut conn = self.pool.get().await?;
            deliveries::claim(&mut conn, id, lease).await
        };
        let claimed = match claimed.await {
            Ok(Some(claimed)) => claimed,
            Ok(None) => return (Ok(()), Ended::Other),
            Err(error) => return (Err(retry(error)), Ended::Other),
        };
        let (attempt, ended) = self.attempt(&claimed).await;
        // If recording fails the lease expires and the delivery is attempted
        // again: at-least-once, never lost.
        let recorded = async {
            let mut conn = self.pool.get().await?;
            deliveries::record(&mut conn, &claimed, &attempt).await
        };
        if let Err(error) = recorded.await {
            return (Err(retry(error)), ended);
        }
        // Counted once recorded: `tronpay_webhook_attempts_total{outcome}`
        // (`delivered`, `retry`, `failed`, `dead`) and how long the
        // receiver took, `tronpay_webhook_attempt_duration_seconds`.
        let outcome = attempt.outcome.kind().as_str();
        metrics::counter!("tronpay_webhook_attempts_total", "outcome" => outcome).increment(1);
        metrics::histogram!("tronpay_webhook_attempt_duration_seconds", "outcome" => outcome)
            .record(f64::from(attempt.duration_ms.max(0)) / 1000.0);
        tracing::info!(
            delivery = %claimed.id,
            payment = %claimed.payment_id,
            event = %claimed.event_type,
            attempt = claimed.attempts,
            status = ?attempt.http_status,
            outcome = ?attempt.outcome,
            lane = ?lane,
            "webhook attempt"
        );
        (Ok(()), ended)
    }

    /// Attempts admitted and not finished yet, both lanes.
    pub fn attempts_in_flight(&self) -> usize {
        self.lanes().in_flight()
    }

    fn lanes(&self) -> MutexGuard<'_, Lanes> {
        // The lock guards plain counters: a panic elsewhere leaves them usable.
        self.lanes.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Sends the attempt and decides its outcome; also says whether the
    /// destination answered or timed out (for the lanes).
    pub async fn attempt(&self, claimed: &Claimed) -> (Attempt, Ended) {
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
                let attempt = finish(
                    None,
                    None,
                    Some(format!("invalid callback URL: {error}")),
                    Outcome::Failed,
                );
                return (attempt, Ended::Other);
            }
        };
        // A literal private address never becomes deliverable; a name may
        // resolve differently later, so a refused name is retried.
        if let Err(refused) = client::check_literal(&url, &self.policy) {
            return (
                finish(None, None, Some(refused.to_string()), Outcome::Failed),
                Ended::Other,
            );
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
                let (message, ended) = match client::refused_in(&error) {
                    Some(refused) => (refused.to_string(), Ended::Other),
                    // A connect timeout counts too: either way the attempt
                    // held its slot for the timeout.
                    None if error.is_timeout() => (
                        format!("no answer within {} ms", self.timeout.as_millis()),
                        Ended::TimedOut,
                    ),
                    None => (describe(&error), Ended::Other),
                };
                let attempt = finish(
                    None,
                    None,
                    Some(message),
                    self.decide(Answer::NoAnswer, claimed.attempts),
                );
                return (attempt, ended);
            }
        };
        let status = response.status();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned);
        let (body, stalled) = read_some(response).await;
        // Headers then a body that never ends hold the slot like no answer.
        let ended = if stalled { Ended::TimedOut } else { Ended::Answered };
        let answer = Answer::Status {
            code: status.as_u16(),
            retry_after: retry_after.as_deref(),
        };
        let outcome = self.decide(answer, claimed.attempts);
        let error = (!status.is_success()).then(|| {
            if status.is_redirection() {
                format!("HTTP {status} (redirects are not followed)")
            } else {
                format!("HTTP {status}")
            }
        });
        (finish(Some(status.as_u16()), Some(body), error, outcome), ended)
    }

    /// The outcome of attempt number `attempts` ([`RetryRules::decide`]), a
    /// retry dated from now.
    fn decide(&self, answer: Answer<'_>, attempts: i32) -> Outcome {
        match self
            .rules
            .decide(answer, attempts, std::time::SystemTime::now(), fastrand::f64())
        {
            Decision::Delivered => Outcome::Delivered,
            Decision::Failed => Outcome::Failed,
            Decision::Dead => Outcome::Dead,
            Decision::Retry(delay) => {
                let delay = chrono::TimeDelta::from_std(delay).unwrap_or(chrono::TimeDelta::hours(24));
                Outcome::Retry(chrono::Utc::now().naive_utc() + delay)
            }
        }
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

/// Up to [`KEEP_BODY_BYTES`] of the response body (lossy UTF-8), and
/// whether reading it ran into the timeout.
async fn read_some(response: reqwest::Response) -> (String, bool) {
    let mut stream = response.bytes_stream();
    let mut kept = Vec::new();
    let mut stalled = false;
    while let Some(chunk) = stream.next().await {
        let chunk = match chunk {
            Ok(chunk) => chunk,
            Err(error) => {
                stalled = error.is_timeout();
                break;
            }
        };
        let room = KEEP_BODY_BYTES - kept.len();
        kept.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if kept.len() >= KEEP_BODY_BYTES {
            break;
        }
    }
    (String::from_utf8_lossy(&kept).into_owned(), stalled)
}

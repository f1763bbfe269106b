//! What every request passes on its way in: its request id, its client IP,
//! the per-IP rate limit, a tracing span that every log line of the request
//! carries, and one access-log line and the HTTP metrics
//! ([`tronpay_runtime::metrics::record_request`]) on the way out. Also the per-key and
//! failed-authentication limits the key check applies ([`RateLimits`]).
//!
//! Request ids: a client's `X-Request-Id` (1 to 128 characters of
//! `A-Z a-z 0-9 - _ . :`) is kept, anything else is replaced by a new one
//! (32 hex digits); the id is echoed in the response's `X-Request-Id`.
//!
//! Client IP: the TCP peer, unless the peer is one of `TRUSTED_PROXIES`; then
//! `X-Forwarded-For` is read from the right, skipping trusted proxies, and
//! the first other address is the client. A header from any other peer is
//! ignored, so clients cannot pick the IP they are limited as.
//!
//! Limits are per replica (in memory, `governor`'s GCRA): with N replicas a
//! client gets up to N times the configured rate. An IPv6 client is limited
//! by its /64 (one subscriber's prefix: changing the interface id does not
//! buy a new budget); an IPv4-mapped IPv6 address counts as the IPv4 one.

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{HttpMessage, ResponseError, web};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};
use ipnet::IpNet;
use tracing::Instrument;

use crate::error::ApiError;
use crate::state::AppState;
use crate::v1::problem::{self, Problem};

/// The request id header (accepted, or generated, and echoed).
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
/// Longest accepted client request id.
const MAX_REQUEST_ID_LEN: usize = 128;
/// Limiter states are pruned of idle keys every this many checks.
const PRUNE_EVERY: u64 = 50_000;

/// What the edge learned about a request (in its extensions).
#[derive(Debug, Clone)]
pub struct RequestContext {
    pub request_id: String,
    pub client_ip: IpAddr,
}

/// A keyed limiter that forgets idle keys now and then.
struct Limiter<K: std::hash::Hash + Eq + Clone> {
    limiter: DefaultKeyedRateLimiter<K>,
    checks: AtomicU64,
}

impl<K: std::hash::Hash + Eq + Clone> Limiter<K> {
    fn new(quota: Quota) -> Self {
        Self {
            limiter: DefaultKeyedRateLimiter::dashmap(quota),
            checks: AtomicU64::new(0),
        }
    }

    /// `Err(seconds to wait)` when `key` is over its rate.
    fn check(&self, key: &K) -> Result<(), u64> {
        if self.checks.fetch_add(1, Ordering::Relaxed) % PRUNE_EVERY == PRUNE_EVERY - 1 {
            self.limiter.retain_recent();
            self.limiter.shrink_to_fit();
        }
        self.limiter
            .check_key(key)
            .map_err(|not_until| retry_seconds(not_until.wait_time_from(DefaultClock::default().now())))
    }
}

/// The per-IP, per-key and failed-authentication limits of one replica.
pub struct RateLimits {
    per_ip: Option<Limiter<IpAddr>>,
    per_key: Option<Limiter<uuid::Uuid>>,
    auth_failures: Limiter<IpAddr>,
    /// Clients over `AUTH_FAILURES_PER_MINUTE`, and until when: refused
    /// before any key lookup.
    auth_blocked: Mutex<HashMap<IpAddr, Instant>>,
    trusted_proxies: Vec<IpNet>,
}

/// Most clients remembered as blocked; past it, the expired ones go.
const MAX_BLOCKED: usize = 10_000;

/// What a client IP is limited as: IPv4 as is (also when IPv4-mapped),
/// IPv6 by its /64.
fn limit_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let [a, b, c, d, ..] = v6.segments();
                IpAddr::V6(std::net::Ipv6Addr::new(a, b, c, d, 0, 0, 0, 0))
            }
        },
    }
}

impl RateLimits {
    /// From `RATE_LIMIT_PER_IP`, `RATE_LIMIT_PER_KEY` (per second, 0: none),
    /// `AUTH_FAILURES_PER_MINUTE` and the parsed `TRUSTED_PROXIES`.
    pub fn new(per_ip: u32, per_key: u32, auth_failures_per_minute: u32, trusted_proxies: Vec<IpNet>) -> Self {
        Self {
            per_ip: NonZeroU32::new(per_ip).map(|rate| Limiter::new(Quota::per_second(rate))),
            per_key: NonZeroU32::new(per_key).map(|rate| Limiter::new(Quota::per_second(rate))),
            auth_failures: Limiter::new(Quota::per_minute(
                NonZeroU32::new(auth_failures_per_minute).unwrap_or(NonZeroU32::MIN),
            )),
            auth_blocked: Mutex::new(HashMap::new()),
            trusted_proxies,
        }
    }

    /// `Err(seconds)` when `ip` is over `RATE_LIMIT_PER_IP`.
    pub fn check_ip(&self, ip: IpAddr) -> Result<(), u64> {
        self.per_ip
            .as_ref()
            .map_or(Ok(()), |limiter| limiter.check(&limit_key(ip)))
    }

    /// `Err(seconds)` when the key `id` is over `RATE_LIMIT_PER_KEY`.
    pub fn check_key(&self, id: uuid::Uuid) -> Result<(), u64> {
        self.per_key.as_ref().map_or(Ok(()), |limiter| limiter.check(&id))
    }

    /// Counts a failed authentication from `ip`; `Err(seconds)` once it is
    /// over `AUTH_FAILURES_PER_MINUTE`, and then the client is
    /// [`Self::auth_blocked`] for those seconds.
    pub fn auth_failed(&self, ip: IpAddr) -> Result<(), u64> {
        let key = limit_key(ip);
        self.auth_failures.check(&key).inspect_err(|seconds| {
            let mut blocked = self
                .auth_blocked
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let now = Instant::now();
            if blocked.len() >= MAX_BLOCKED {
                blocked.retain(|_, until| *until > now);
            }
            blocked.insert(key, now + Duration::from_secs(*seconds));
        })
    }

    /// Seconds `ip` must wait, when it went over `AUTH_FAILURES_PER_MINUTE`
    /// lately: its requests with a key are refused (429) without a lookup,
    /// whatever the key.
    pub fn auth_blocked(&self, ip: IpAddr) -> Option<u64> {
        let blocked = self
            .auth_blocked
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let until = *blocked.get(&limit_key(ip))?;
        until.checked_duration_since(Instant::now()).map(retry_seconds)
    }

    /// The client of a request from `peer` with these `X-Forwarded-For`
    /// values (see the module docs).
    pub fn client_ip<'a>(&self, peer: IpAddr, forwarded_for: impl Iterator<Item = &'a str>) -> IpAddr {
        if !self.trusts(peer) {
            return peer;
        }
        let hops: Vec<&str> = forwarded_for
            .flat_map(|value| value.split(','))
            .map(str::trim)
            .collect();
        let mut client = peer;
        for hop in hops.iter().rev() {
            let Ok(ip) = hop.parse::<IpAddr>() else {
                // A hop that is not an address ends what can be believed.
                return client;
            };
            client = ip;
            if !self.trusts(ip) {
                break;
            }
        }
        client
    }

    fn trusts(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            IpAddr::V4(_) => ip,
        };
        self.trusted_proxies.iter().any(|net| net.contains(&ip))
    }
}

/// The client's request id if it is acceptable, else a new one.
fn request_id(header: Option<&HeaderValue>) -> String {
    header
        .and_then(|value| value.to_str().ok())
        .filter(|text| {
            (1..=MAX_REQUEST_ID_LEN).contains(&text.len())
                && text
                    .bytes()
                    .all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b':'))
        })
        .map_or_else(|| uuid::Uuid::new_v4().simple().to_string(), str::to_owned)
}

/// A 429 in the shape of the endpoint: problem details under `/v1/`, the
/// original's `{"error": …}` elsewhere.
pub fn too_many_requests(path: &str, retry_after: u64) -> actix_web::HttpResponse {
    if path.starts_with("/v1/") {
        Problem::new(problem::RATE_LIMITED, "too many requests from this client")
            .retry_after(retry_after)
            .error_response()
    } else {
        ApiError::RateLimited(retry_after).error_response()
    }
}

/// The middleware (see the module docs).
pub async fn edge(
    request: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let started = Instant::now();
    let id = request_id(request.headers().get(REQUEST_ID));
    let state = request.app_data::<web::Data<AppState>>().cloned();
    let peer = request
        .peer_addr()
        .map_or(IpAddr::from([127, 0, 0, 1]), |addr| addr.ip());
    let client_ip = match &state {
        Some(state) => state.limits.client_ip(
            peer,
            request
                .headers()
                .get_all("x-forwarded-for")
                .filter_map(|value| value.to_str().ok()),
        ),
        None => peer,
    };
    request.extensions_mut().insert(RequestContext {
        request_id: id.clone(),
        client_ip,
    });
    let method = request.method().clone();
    let path = request.path().to_owned();
    // The route's template (`/v1/payments/{payment_id}`), for the metrics.
    let route = request.match_pattern();
    let span = tracing::info_span!("request", request_id = %id, %method, %path, %client_ip);
    let limited = state.as_ref().and_then(|state| state.limits.check_ip(client_ip).err());
    let outcome = match limited {
        Some(retry_after) => {
            let response = too_many_requests(&path, retry_after);
            Ok(request.into_response(response))
        }
        None => next
            .call(request)
            .instrument(span.clone())
            .await
            .map(ServiceResponse::map_into_boxed_body),
    };
    let mut response = match outcome {
        Ok(response) => response,
        Err(error) => {
            span.in_scope(|| tracing::warn!(%error, "request failed"));
            return Err(error);
        }
    };
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(REQUEST_ID, value);
    }
    let status = response.status().as_u16();
    let elapsed = started.elapsed();
    tronpay_runtime::metrics::record_request(method.as_str(), route.as_deref(), status, elapsed);
    span.in_scope(|| {
        tracing::info!(
            status,
            duration_ms = elapsed.as_secs_f64() * 1000.0,
            "{method} {path} {status} {:.1} ms",
            elapsed.as_secs_f64() * 1000.0
        );
    });
    Ok(response)
}

/// How long until a limiter check may pass again, at least a second (for
/// `Retry-After`).
pub fn retry_seconds(wait: Duration) -> u64 {
    (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(trusted: &str) -> RateLimits {
        let nets = trusted
            .split(',')
            .filter(|text| !text.is_empty())
            .map(|text| text.parse().unwrap())
            .collect();
        RateLimits::new(0, 0, 60, nets)
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let none = limits("");
        assert_eq!(
            none.client_ip(ip("203.0.113.9"), ["1.2.3.4"].into_iter()),
            ip("203.0.113.9")
        );
        let proxies = limits("10.0.0.0/8");
        // The rightmost address that is not a proxy is the client.
        assert_eq!(
            proxies.client_ip(ip("10.0.0.2"), ["6.6.6.6, 1.2.3.4, 10.0.0.1"].into_iter()),
            ip("1.2.3.4")
        );
        assert_eq!(
            proxies.client_ip(ip("10.0.0.2"), ["6.6.6.6", "1.2.3.4"].into_iter()),
            ip("1.2.3.4")
        );
        // No header, or garbage: the peer (or the last believable hop).
        assert_eq!(proxies.client_ip(ip("10.0.0.2"), [].into_iter()), ip("10.0.0.2"));
        assert_eq!(
            proxies.client_ip(ip("10.0.0.2"), ["1.2.3.4, junk, 10.0.0.1"].into_iter()),
            ip("10.0.0.1")
        );
        // An IPv4 proxy seen as an IPv4-mapped IPv6 peer is still trusted.
        assert_eq!(
            proxies.client_ip(ip("::ffff:10.0.0.2"), ["1.2.3.4"].into_iter()),
            ip("1.2.3.4")
        );
    }

    #[test]
    fn ipv6_clients_are_limited_by_their_64() {
        let limits = RateLimits::new(1, 0, 60, Vec::new());
        assert!(limits.check_ip(ip("2001:db8:1:2::1")).is_ok());
        assert!(limits.check_ip(ip("2001:db8:1:2:ffff::9")).is_err(), "same /64");
        assert!(limits.check_ip(ip("2001:db8:1:3::1")).is_ok(), "another /64");
        assert!(limits.check_ip(ip("192.0.2.9")).is_ok());
        assert!(
            limits.check_ip(ip("::ffff:192.0.2.9")).is_err(),
            "IPv4-mapped is the IPv4 client"
        );
    }

    #[test]
    fn request_ids_are_kept_when_sane_and_made_otherwise() {
        let kept = HeaderValue::from_static("req-42_a.b:c");
        assert_eq!(request_id(Some(&kept)), "req-42_a.b:c");
        for bad in ["", "has space", "<script>"] {
            let made = request_id(Some(&HeaderValue::from_str(bad).unwrap()));
            assert_eq!(made.len(), 32, "{bad}");
            assert!(made.bytes().all(|byte| byte.is_ascii_hexdigit()));
        }
        let long = HeaderValue::from_str(&"a".repeat(129)).unwrap();
        assert_eq!(request_id(Some(&long)).len(), 32);
        assert_ne!(request_id(None), request_id(None));
    }

    #[test]
    fn limits_refuse_past_the_rate_with_a_wait() {
        let limits = RateLimits::new(2, 1, 1, Vec::new());
        let client = ip("192.0.2.1");
        assert!(limits.check_ip(client).is_ok());
        assert!(limits.check_ip(client).is_ok());
        assert!(limits.check_ip(client).is_err_and(|wait| wait >= 1));
        assert!(
            limits.check_ip(ip("192.0.2.2")).is_ok(),
            "another client has its own budget"
        );
        let key = uuid::Uuid::new_v4();
        assert!(limits.check_key(key).is_ok());
        assert!(limits.check_key(key).is_err());
        assert!(limits.auth_failed(client).is_ok());
        assert_eq!(limits.auth_blocked(client), None);
        assert!(limits.auth_failed(client).is_err_and(|wait| wait >= 1));
        assert!(limits.auth_blocked(client).is_some_and(|wait| wait >= 1));
        assert_eq!(limits.auth_blocked(ip("192.0.2.2")), None);
        assert_eq!(retry_seconds(Duration::from_millis(1)), 1);
        assert_eq!(retry_seconds(Duration::from_millis(2500)), 3);
    }
}

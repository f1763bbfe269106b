//! API keys on requests: `Authorization: Bearer tpk_…` read into a
//! [`Caller`], checked against what a short per-replica cache ([`KeyCache`])
//! knows of the key, and its scope required per endpoint.
//!
//! The cache keeps what the database said about a key prefix for
//! `API_KEY_CACHE_SECONDS` (default 5): a busy key costs one lookup per
//! replica per interval, not one per request, and a revoke (or a new key) is
//! seen by every replica within that interval. The presented key is hashed
//! and compared with the stored hash in constant time on every request. The
//! key's `last_used_at` is written when a lookup finds it older than
//! [`TOUCH_EVERY`], so it is accurate to about a minute.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::{FromRequest, HttpMessage, HttpRequest, dev::Payload, web};
use chrono::NaiveDateTime;
use tronpay_db::api_keys::{self, ApiKeyRow};
use tronpay_db::{DbError, DbPool};
use tronpay_domain::{ApiKeyText, Scope};

use crate::state::AppState;
use crate::v1::problem::{self, Problem};

/// How stale `last_used_at` may get before a lookup rewrites it.
pub const TOUCH_EVERY: Duration = Duration::from_secs(60);

/// More cached prefixes than this (a flood of made-up keys) empties the
/// cache rather than growing it.
const MAX_ENTRIES: usize = 10_000;

/// The key a request was made with, checked: who it is and what it may do.
#[derive(Debug, Clone)]
pub struct Caller {
    /// `api_keys.id`.
    pub key_id: uuid::Uuid,
    /// The key's name, for logs and audit rows.
    pub name: String,
    /// Its public prefix (`tpk_<prefix>_…`).
    pub prefix: String,
    scopes: Vec<Scope>,
}

impl Caller {
    /// Whether the key has `scope` (scopes are independent: `operator` does
    /// not imply the `payments:` ones).
    pub fn has(&self, scope: Scope) -> bool {
        self.scopes.contains(&scope)
    }

    /// `Ok` with `scope`, else 403 naming it.
    pub fn require(&self, scope: Scope) -> Result<(), Problem> {
        if self.has(scope) {
            Ok(())
        } else {
            Err(Problem::new(
                problem::FORBIDDEN,
                format!(
                    "this endpoint needs the scope {scope}; key {} has not got it",
                    self.prefix
                ),
            ))
        }
    }
}

/// Why a request has no [`Caller`].
#[derive(Debug)]
pub enum Denied {
    /// 401: no key, not a key, an unknown, wrong or revoked key.
    Unauthorized(&'static str),
    /// 503: the key could not be looked up.
    Unavailable(DbError),
    /// 429: the key is over `RATE_LIMIT_PER_KEY`, or its client IP over
    /// `AUTH_FAILURES_PER_MINUTE`; retry after this many seconds.
    RateLimited(u64),
}

impl From<Denied> for Problem {
    fn from(denied: Denied) -> Self {
        match denied {
            Denied::Unauthorized(why) => Problem::new(problem::UNAUTHORIZED, why),
            Denied::Unavailable(error) => error.into(),
            Denied::RateLimited(seconds) => Problem::new(
                problem::RATE_LIMITED,
                "too many requests with this API key, or failed key checks from this client",
            )
            .retry_after(seconds),
        }
    }
}

/// Authenticates a request's `Authorization` header value for a client at
/// `client_ip`, under the limits: a key over `RATE_LIMIT_PER_KEY`, a failure
/// past `AUTH_FAILURES_PER_MINUTE` for the IP, and any key from that IP
/// while it waits out the failures (checked before any lookup) is
/// [`Denied::RateLimited`].
pub(crate) async fn authenticate(
    state: &AppState,
    header: Option<&str>,
    client_ip: std::net::IpAddr,
) -> Result<Caller, Denied> {
    if let Some(seconds) = state.limits.auth_blocked(client_ip) {
        return Err(Denied::RateLimited(seconds));
    }
    match state.keys.authenticate(&state.pool, header).await {
        Ok(caller) => match state.limits.check_key(caller.key_id) {
            Ok(()) => Ok(caller),
            Err(seconds) => Err(Denied::RateLimited(seconds)),
        },
        Err(Denied::Unauthorized(why)) => match state.limits.auth_failed(client_ip) {
            Ok(()) => Err(Denied::Unauthorized(why)),
            Err(seconds) => Err(Denied::RateLimited(seconds)),
        },
        Err(other) => Err(other),
    }
}

/// The client IP the edge found for `request` (the peer when it ran not).
pub(crate) fn client_ip(request: &HttpRequest) -> std::net::IpAddr {
    request
        .extensions()
        .get::<crate::edge::RequestContext>()
        .map(|context| context.client_ip)
        .or_else(|| request.peer_addr().map(|addr| addr.ip()))
        .unwrap_or(std::net::IpAddr::from([127, 0, 0, 1]))
}

/// What the database said about a key prefix, and when.
struct Entry {
    fetched: Instant,
    key: Option<Arc<ApiKeyRow>>,
}

/// Per-replica cache of key lookups by prefix (see the module docs).
pub struct KeyCache {
    ttl: Duration,
    entries: Mutex<HashMap<String, Entry>>,
}

impl KeyCache {
    /// A cache that trusts a lookup for `ttl` (`API_KEY_CACHE_SECONDS`).
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// Checks the `Authorization` header's value.
    ///
    /// # Errors
    /// [`Denied::Unauthorized`] when it is missing, not `Bearer tpk_…`, or
    /// names no key, a revoked key or a wrong secret;
    /// [`Denied::Unavailable`] when the key had to be looked up and the
    /// database could not answer.
    pub async fn authenticate(&self, pool: &DbPool, header: Option<&str>) -> Result<Caller, Denied> {
        let header = header.ok_or(Denied::Unauthorized(
            "send the API key as `Authorization: Bearer tpk_…`",
        ))?;
        let token = header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("bearer "))
            .ok_or(Denied::Unauthorized("the Authorization header must be `Bearer tpk_…`"))?;
        let key = ApiKeyText::parse(token.trim()).map_err(|_| Denied::Unauthorized("that is not a tronpay API key"))?;
        let row = match self.cached(key.prefix()) {
            Some(row) => row,
            None => self.fetch(pool, key.prefix()).await.map_err(Denied::Unavailable)?,
        };
        // The hash is compared even for an unknown prefix, so that timing
        // tells nothing about which prefixes exist.
        let stored = row.as_ref().map_or(UNKNOWN_HASH, |row| row.secret_hash.as_str());
        let matches = key.matches(stored);
        let row = row.filter(|_| matches).ok_or(Denied::Unauthorized("unknown API key"))?;
        if row.revoked_at.is_some() {
            return Err(Denied::Unauthorized("this API key was revoked"));
        }
        Ok(Caller {
            key_id: row.id,
            name: row.name.clone(),
            prefix: row.prefix.clone(),
            scopes: row.scopes(),
        })
    }

    /// Drops what this replica knows of `prefix` (after a revoke here, so
    /// this replica refuses the key at once; the others within their TTL).
    pub fn forget(&self, prefix: &str) {
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(prefix);
    }

    /// The cached lookup of `prefix` if it is recent; `None` when the
    /// database must be asked.
    fn cached(&self, prefix: &str) -> Option<Option<Arc<ApiKeyRow>>> {
        let entries = self.entries.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let entry = entries.get(prefix)?;
        (entry.fetched.elapsed() < self.ttl).then(|| entry.key.clone())
    }

    /// Reads `prefix` from the database, records the key's use when its
    /// `last_used_at` is older than [`TOUCH_EVERY`], and caches the row.
    async fn fetch(&self, pool: &DbPool, prefix: &str) -> Result<Option<Arc<ApiKeyRow>>, DbError> {
        let mut conn = pool.get().await?;
        let mut row = api_keys::find(&mut conn, prefix).await?;
        if let Some(row) = row.as_mut().filter(|row| row.revoked_at.is_none()) {
            let now = chrono::Utc::now().naive_utc();
            if stale(row.last_used_at, now) {
                api_keys::touch(&mut conn, &[row.id], now).await?;
                row.last_used_at = Some(now);
            }
        }
        drop(conn);
        let row = row.map(Arc::new);
        let mut entries = self.entries.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if entries.len() >= MAX_ENTRIES {
            entries.retain(|_, entry| entry.key.is_some() && entry.fetched.elapsed() < self.ttl);
            if entries.len() >= MAX_ENTRIES {
                entries.clear();
            }
        }
        entries.insert(
            prefix.to_owned(),
            Entry {
                fetched: Instant::now(),
                key: row.clone(),
            },
        );
        Ok(row)
    }
}

/// A hash no key has (compared against for unknown prefixes).
const UNKNOWN_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

fn stale(last_used: Option<NaiveDateTime>, now: NaiveDateTime) -> bool {
    last_used.is_none_or(|last| (now - last).to_std().is_ok_and(|age| age >= TOUCH_EVERY))
}

impl FromRequest for Caller {
    type Error = Problem;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Problem>>>>;

    /// Authenticates the request's key (401/503 as problem details); the
    /// handler then [`Caller::require`]s its scope. Routes without a key
    /// (the checkout's public status stream) simply do not take a `Caller`.
    fn from_request(request: &HttpRequest, _: &mut Payload) -> Self::Future {
        let state = request.app_data::<web::Data<AppState>>().cloned();
        let header = request
            .headers()
            .get(actix_web::http::header::AUTHORIZATION)
            .map(|value| value.to_str().map(str::to_owned));
        let ip = client_ip(request);
        Box::pin(async move {
            let state = state.ok_or_else(|| Problem::internal(anyhow::anyhow!("no application state")))?;
            let header = match header {
                Some(Ok(header)) => Some(header),
                Some(Err(_)) => return Err(Denied::Unauthorized("the Authorization header is not ASCII").into()),
                None => None,
            };
            Ok(authenticate(&state, header.as_deref(), ip).await?)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_use_is_rewritten_once_a_minute() {
        let now = chrono::Utc::now().naive_utc();
        assert!(stale(None, now));
        assert!(stale(Some(now - chrono::TimeDelta::seconds(61)), now));
        assert!(!stale(Some(now - chrono::TimeDelta::seconds(5)), now));
        assert!(!stale(Some(now + chrono::TimeDelta::seconds(5)), now));
    }
}

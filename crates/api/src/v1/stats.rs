//! `GET /v1/stats`: what the payments of a time range did, per hour or
//! day — counts and sums by status, time from creation to completion, and
//! how webhook delivery went.

use std::collections::BTreeMap;

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use chrono::{DurationRound, NaiveDateTime, Utc};
use serde::{Deserialize, Serialize};
use tronpay_db::stats::{self, Interval};
use tronpay_domain::wire::Rfc3339;
use tronpay_domain::{DeliveryStatus, PaymentStatus, Scope, UsdtAmount};
use utoipa::{IntoParams, ToSchema};

use super::auth::Caller;
use super::payments::{json, parse_time};
use super::problem::{self, Problem, ProblemBody};
use crate::state::AppState;

/// Most buckets one request may ask for (a year of days, a month of hours).
pub const MAX_BUCKETS: i64 = 744;
/// The range when `from` is not given: this many buckets before `to`.
const DEFAULT_BUCKETS: i64 = 30;

/// The range and bucket width of `GET /v1/stats`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StatsQuery {
    /// Start (RFC 3339, inclusive; rounded down to the interval); default
    /// 30 intervals before `to`.
    #[param(format = DateTime)]
    pub from: Option<String>,
    /// End (RFC 3339, exclusive); default now.
    #[param(format = DateTime)]
    pub to: Option<String>,
    /// `day` (default) or `hour`; at most 744 buckets.
    #[param(example = "day")]
    pub interval: Option<String>,
}

/// Per status: a count, or a USDT sum as a decimal string.
#[derive(Debug, Default, Serialize, ToSchema)]
pub struct ByStatus<T> {
    pub pending: T,
    pub completed: T,
    pub expired: T,
    /// Cancelled (the original's `failed`).
    pub failed: T,
}

impl<T> ByStatus<T> {
    fn get(&mut self, status: PaymentStatus) -> &mut T {
        match status {
            PaymentStatus::Pending => &mut self.pending,
            PaymentStatus::Completed => &mut self.completed,
            PaymentStatus::Expired => &mut self.expired,
            PaymentStatus::Failed => &mut self.failed,
        }
    }
}

/// A sum of USDT amounts, exact.
#[derive(Debug, Default, Clone, Copy)]
pub struct Sum(UsdtAmount);

impl Serialize for Sum {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&self.0)
    }
}

impl Sum {
    fn add(&mut self, amount: UsdtAmount) -> Result<(), Problem> {
        self.0 = self
            .0
            .checked_add(amount)
            .ok_or_else(|| Problem::internal(anyhow::anyhow!("USDT sum out of range")))?;
        Ok(())
    }
}

/// What the payments created in one interval did.
#[derive(Debug, Serialize, ToSchema)]
pub struct Bucket {
    /// The interval's start (UTC).
    pub start: Rfc3339,
    /// Payments created in it, per current status.
    #[schema(value_type = ByStatus<i64>)]
    pub count: ByStatus<i64>,
    /// Their amounts (what was asked), per status, USDT.
    #[schema(value_type = ByStatus<String>)]
    pub amount: ByStatus<Sum>,
    /// What they received, per status, USDT (partial payments count).
    #[schema(value_type = ByStatus<String>)]
    pub received: ByStatus<Sum>,
}

/// Creation to completion of the range's completed payments, in seconds.
#[derive(Debug, Serialize, ToSchema)]
pub struct CompletionTimes {
    pub completed: i64,
    /// `null` without completed payments.
    pub average_seconds: Option<f64>,
    /// The 95th percentile (continuous); `null` without completed payments.
    pub p95_seconds: Option<f64>,
}

/// Webhook deliveries of the range (test pings left out), by status.
#[derive(Debug, Default, Serialize, ToSchema)]
pub struct WebhookStats {
    pub delivered: i64,
    /// Refused for good.
    pub failed: i64,
    /// Retries used up.
    pub dead: i64,
    /// Still pending or being sent.
    pub in_progress: i64,
    /// `delivered / (delivered + failed + dead)`, 0 to 1; `null` when none
    /// finished.
    pub success_rate: Option<f64>,
}

/// `GET /v1/stats`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Stats {
    pub from: Rfc3339,
    pub to: Rfc3339,
    /// `day` or `hour`.
    pub interval: &'static str,
    /// Every interval of the range, oldest first (empty ones too).
    pub buckets: Vec<Bucket>,
    /// The whole range, per status.
    #[schema(value_type = ByStatus<i64>)]
    pub total_count: ByStatus<i64>,
    #[schema(value_type = ByStatus<String>)]
    pub total_amount: ByStatus<Sum>,
    #[schema(value_type = ByStatus<String>)]
    pub total_received: ByStatus<Sum>,
    pub completion: CompletionTimes,
    pub webhooks: WebhookStats,
    /// With `ADDRESS_MODE=pool`: the pool now (not limited to the range).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address_pool: Option<AddressPool>,
}

/// The address pool now (`ADDRESS_MODE=pool`).
#[derive(Debug, Serialize, ToSchema)]
pub struct AddressPool {
    /// Addresses no payment holds: the next creates get them.
    pub free: i64,
    /// Every imported address.
    pub total: i64,
}

impl From<tronpay_db::receiving::PoolCounts> for AddressPool {
    fn from(counts: tronpay_db::receiving::PoolCounts) -> Self {
        Self {
            free: counts.free,
            total: counts.total,
        }
    }
}

fn bad(detail: impl Into<std::borrow::Cow<'static, str>>) -> Problem {
    Problem::new(problem::INVALID_QUERY, detail)
}

/// The range of a query, rounded to whole intervals: `(from, to, interval)`.
fn range(query: &StatsQuery, now: NaiveDateTime) -> Result<(NaiveDateTime, NaiveDateTime, Interval), Problem> {
    let interval = match query.interval.as_deref() {
        None | Some("day") => Interval::Day,
        Some("hour") => Interval::Hour,
        Some(_) => return Err(bad("interval must be day or hour")),
    };
    let step = interval.length();
    let to = match &query.to {
        Some(text) => parse_time("to", text, problem::INVALID_QUERY)?,
        None => now,
    };
    let round = |time: NaiveDateTime| {
        time.duration_trunc(step)
            .map_err(|_| bad("from and to must be times between the years 1970 and 9999"))
    };
    // `to` is exclusive: round it up to the end of its interval.
    let to_floor = round(to)?;
    let to = if to_floor == to { to } else { to_floor + step };
    let from = match &query.from {
        Some(text) => round(parse_time("from", text, problem::INVALID_QUERY)?)?,
        None => to - step * i32::try_from(DEFAULT_BUCKETS).unwrap_or(30),
    };
    if from >= to {
        return Err(bad("from must be before to"));
    }
    if (to - from) > step * i32::try_from(MAX_BUCKETS).unwrap_or(744) {
        return Err(bad(format!(
            "at most {MAX_BUCKETS} intervals per request: narrow the range or use interval=day"
        )));
    }
    Ok((from, to, interval))
}

fn amount(value: &bigdecimal::BigDecimal) -> Result<UsdtAmount, Problem> {
    UsdtAmount::from_decimal(value).map_err(|error| Problem::internal(anyhow::anyhow!("USDT sum {value}: {error}")))
}

/// Counts and sums of payments by status per interval, creation-to-completion
/// times, and the webhook success rate, for payments created in a range.
#[utoipa::path(
    get, path = "/v1/stats", tag = "payments", operation_id = "getStats",
    params(StatsQuery),
    responses(
        (status = 200, description = "Statistics of the range", body = Stats),
        (status = 400, description = "Invalid range or interval", body = ProblemBody, content_type = "application/problem+json"),
    ),
    security(("api_key" = ["payments:read"]))
)]
pub async fn stats(
    caller: Caller,
    state: web::Data<AppState>,
    query: web::Query<StatsQuery>,
) -> Result<HttpResponse, Problem> {
    caller.require(Scope::PaymentsRead)?;
    let (from, to, interval) = range(&query, Utc::now().naive_utc())?;
    let mut conn = state.pool.get().await?;
    let rows = stats::payments_by_interval(&mut conn, from, to, interval).await?;
    let times = stats::completion_times(&mut conn, from, to).await?;
    let deliveries = stats::deliveries_by_status(&mut conn, from, to).await?;
    let address_pool = state.address_pool(&mut conn).await?;
    drop(conn);

    let mut buckets: BTreeMap<NaiveDateTime, Bucket> = BTreeMap::new();
    let mut start = from;
    while start < to {
        buckets.insert(
            start,
            Bucket {
                start: Rfc3339::from_naive(start),
                count: ByStatus::default(),
                amount: ByStatus::default(),
                received: ByStatus::default(),
            },
        );
        start += interval.length();
    }
    let mut total_count = ByStatus::<i64>::default();
    let mut total_amount = ByStatus::<Sum>::default();
    let mut total_received = ByStatus::<Sum>::default();
    for row in &rows {
        let status: PaymentStatus = row
            .status
            .parse()
            .map_err(|_| Problem::internal(anyhow::anyhow!("unknown payment status {}", row.status)))?;
        let (expected, received) = (amount(&row.expected)?, amount(&row.received)?);
        *total_count.get(status) += row.count;
        total_amount.get(status).add(expected)?;
        total_received.get(status).add(received)?;
        if let Some(bucket) = buckets.get_mut(&row.bucket) {
            *bucket.count.get(status) += row.count;
            bucket.amount.get(status).add(expected)?;
            bucket.received.get(status).add(received)?;
        }
    }
    let mut webhooks = WebhookStats::default();
    for (status, count) in deliveries {
        match status.parse::<DeliveryStatus>() {
            Ok(DeliveryStatus::Delivered) => webhooks.delivered += count,
            Ok(DeliveryStatus::Failed) => webhooks.failed += count,
            Ok(DeliveryStatus::Dead) => webhooks.dead += count,
            Ok(DeliveryStatus::Pending | DeliveryStatus::Sending) | Err(_) => webhooks.in_progress += count,
        }
    }
    let finished = webhooks.delivered + webhooks.failed + webhooks.dead;
    // Counts of deliveries are far below 2^52: the ratio is exact enough.
    #[allow(clippy::cast_precision_loss)]
    let rate = (finished > 0).then(|| webhooks.delivered as f64 / finished as f64);
    webhooks.success_rate = rate;
    json(
        StatusCode::OK,
        &Stats {
            from: Rfc3339::from_naive(from),
            to: Rfc3339::from_naive(to),
            interval: interval.as_str(),
            buckets: buckets.into_values().collect(),
            total_count,
            total_amount,
            total_received,
            completion: CompletionTimes {
                completed: times.count,
                average_seconds: times.average_seconds,
                p95_seconds: times.p95_seconds,
            },
            webhooks,
            address_pool: address_pool.map(AddressPool::from),
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(from: Option<&str>, to: Option<&str>, interval: Option<&str>) -> StatsQuery {
        StatsQuery {
            from: from.map(str::to_owned),
            to: to.map(str::to_owned),
            interval: interval.map(str::to_owned),
        }
    }

    fn at(text: &str) -> NaiveDateTime {
        chrono::DateTime::parse_from_rfc3339(text).unwrap().naive_utc()
    }

    #[test]
    fn ranges_are_whole_intervals_and_bounded() {
        let now = at("2026-11-30T21:30:00Z");
        let (from, to, interval) = range(&query(None, None, None), now).unwrap();
        assert_eq!(
            (from, to, interval),
            (at("2026-11-01T00:00:00Z"), at("2026-12-01T00:00:00Z"), Interval::Day)
        );
        let (from, to, _) = range(
            &query(Some("2026-11-30T10:15:00Z"), Some("2026-11-30T12:00:00Z"), Some("hour")),
            now,
        )
        .unwrap();
        assert_eq!((from, to), (at("2026-11-30T10:00:00Z"), at("2026-11-30T12:00:00Z")));
        for (from, to, interval) in [
            (Some("2020-01-01T00:00:00Z"), None, Some("day")),
            (Some("2026-10-01T00:00:00Z"), None, Some("hour")),
            (Some("2026-12-02T00:00:00Z"), None, None),
            (None, None, Some("week")),
            (Some("yesterday"), None, None),
        ] {
            assert!(
                range(&query(from, to, interval), now).is_err(),
                "{from:?} {to:?} {interval:?}"
            );
        }
    }
}

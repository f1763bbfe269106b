//! When to try again: the `Retry-After` response header, as every HTTP
//! client of tronpay reads it (the node client, the webhook dispatcher), and
//! the jittered exponential backoff the node client and the broker
//! reconnect share.
//!
//! `Retry-After` (RFC 9110 §10.2.3) is either delay-seconds (`120`) or an
//! HTTP-date (`Sun, 06 Nov 1994 08:49:37 GMT`, or one of the two obsolete
//! forms RFC 9110 still asks recipients to accept). Either way the answer is
//! a delay from now; callers decide how much of it to honour.

use std::time::{Duration, SystemTime};

use backon::{BackoffBuilder, ExponentialBuilder};

/// The delay a `Retry-After` value asks for, measured from `now`.
///
/// `value` is the header's text; blanks around it are ignored. A date in the
/// past (or `now` itself) is [`Duration::ZERO`]. `None` when the value is
/// neither a non-negative whole number of seconds that fits in a `u64` nor
/// an HTTP-date.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if !value.is_empty() && value.bytes().all(|byte| byte.is_ascii_digit()) {
        return value.parse::<u64>().ok().map(Duration::from_secs);
    }
    let date = httpdate::parse_http_date(value).ok()?;
    Some(date.duration_since(now).unwrap_or(Duration::ZERO))
}

/// Doublings past which every step is already at the cap (`min` ≥ 1 ms and
/// `max` < 2³² ms, 49 days).
const MAX_DOUBLINGS: u32 = 32;

/// The delay before retry `attempt` (0 for the first retry after a
/// failure): a step of `min` doubled per attempt up to `max`, jittered
/// uniformly between half the step and the whole step so that many
/// processes failing together do not retry in step.
///
/// The result is in whole milliseconds and never more than `max`; `min` is
/// taken as at least 1 ms and `max` as at least `min`.
pub fn backoff(min: Duration, max: Duration, attempt: u32) -> Duration {
    let min = min.max(Duration::from_millis(1));
    let max = max.max(min);
    // backon jitters upwards by up to the step itself, so half-size steps
    // land between half the step and the step. Its builder yields the delays
    // of successive retries; the one of this attempt is its `attempt`-th.
    let delay = ExponentialBuilder::new()
        .with_min_delay(min / 2)
        .with_max_delay(max / 2)
        .with_factor(2.0)
        .with_jitter()
        .without_max_times()
        .build()
        .nth(usize::try_from(attempt.min(MAX_DOUBLINGS)).unwrap_or(0))
        .unwrap_or(max);
    // backon computes in f32 seconds; rounding to the millisecond keeps the
    // bounds of whole-millisecond steps exact.
    let millis = (delay.as_nanos() + 500_000) / 1_000_000;
    Duration::from_millis(u64::try_from(millis).unwrap_or(u64::MAX)).min(max)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 1994-11-06T08:49:37Z, the date of RFC 9110's examples.
    fn rfc_example() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(784_111_777)
    }

    #[test]
    fn delay_seconds_are_a_delay() {
        let now = SystemTime::now();
        assert_eq!(parse_retry_after("120", now), Some(Duration::from_secs(120)));
        assert_eq!(parse_retry_after(" 0 ", now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("007", now), Some(Duration::from_secs(7)));
    }

    #[test]
    fn an_http_date_is_the_time_until_it() {
        let now = rfc_example() - Duration::from_secs(90);
        // IMF-fixdate, the form every sender must use.
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", now),
            Some(Duration::from_secs(90))
        );
        // The obsolete RFC 850 and asctime forms, which recipients still accept.
        assert_eq!(
            parse_retry_after("Sunday, 06-Nov-94 08:49:37 GMT", now),
            Some(Duration::from_secs(90))
        );
        assert_eq!(
            parse_retry_after("Sun Nov  6 08:49:37 1994", now),
            Some(Duration::from_secs(90))
        );
    }

    #[test]
    fn a_date_already_past_asks_for_no_delay() {
        let now = rfc_example() + Duration::from_secs(3600);
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", rfc_example()),
            Some(Duration::ZERO)
        );
    }

    #[test]
    fn anything_else_is_no_answer() {
        let now = SystemTime::now();
        for value in [
            "",
            " ",
            "-5",
            "1.5",
            "+3",
            "soon",
            "99999999999999999999999",
            "Sun, 06 Nov 1994 08:49:37 PST",
            "06 Nov 1994 08:49:37 GMT",
        ] {
            assert_eq!(parse_retry_after(value, now), None, "{value:?}");
        }
    }

    #[test]
    fn backoff_doubles_up_to_its_cap_and_stays_in_the_upper_half_of_each_step() {
        let (min, max) = (Duration::from_millis(250), Duration::from_secs(30));
        for attempt in 0..40u32 {
            let step = (min * 2u32.saturating_pow(attempt.min(20))).min(max);
            for _ in 0..200 {
                let delay = backoff(min, max, attempt);
                assert!(
                    delay >= step / 2 && delay <= step,
                    "attempt {attempt}: {delay:?} for a step of {step:?}"
                );
                assert_eq!(delay.subsec_nanos() % 1_000_000, 0, "{delay:?}");
            }
        }
        let delay = backoff(min, max, u32::MAX);
        assert!(delay >= max / 2 && delay <= max, "{delay:?}");
    }

    #[test]
    fn backoff_is_jittered() {
        let delays: std::collections::HashSet<Duration> = (0..50)
            .map(|_| backoff(Duration::from_millis(500), Duration::from_secs(30), 3))
            .collect();
        assert!(delays.len() > 10, "{delays:?}");
    }

    #[test]
    fn backoff_survives_odd_bounds() {
        // No minimum is taken as 1 ms; a cap below the minimum as the minimum.
        assert!(backoff(Duration::ZERO, Duration::ZERO, 0) <= Duration::from_millis(1));
        let delay = backoff(Duration::from_secs(5), Duration::from_secs(1), 9);
        assert!(
            delay >= Duration::from_millis(2500) && delay <= Duration::from_secs(5),
            "{delay:?}"
        );
    }
}

//! The delivery outcome rules: what an attempt's answer means for its
//! delivery, decided without I/O so that every rule has a unit test.
//!
//! - 2xx: delivered.
//! - 410 Gone: failed; the receiver said it does not want it, never retried.
//! - 429 or 503 with a `Retry-After` (seconds or an HTTP-date): retried after
//!   that delay, at least 1 s and at most `WEBHOOK_MAX_RETRY_AFTER_SECONDS`.
//! - Anything else (other 4xx and 5xx, a redirect — never followed —, no
//!   answer within the timeout, a connection refused or reset): retried after
//!   the schedule's next delay (`WEBHOOK_RETRY_SCHEDULE`) with ±20 % jitter.
//! - A retry past the schedule's last delay: dead.

use std::time::{Duration, SystemTime};

/// The shortest `Retry-After` honoured: a receiver asking for 0 s (or a date
/// in the past) is not hammered.
const MIN_RETRY_AFTER: Duration = Duration::from_secs(1);

/// What came back from one attempt, as far as its outcome goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer<'a> {
    /// An HTTP status line, with the `Retry-After` header's text if any.
    Status { code: u16, retry_after: Option<&'a str> },
    /// No HTTP answer: a timeout, a refused or reset connection, a name that
    /// does not resolve or resolves to an address the policy refuses.
    NoAnswer,
}

/// What becomes of the delivery after an attempt.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Decision {
    Delivered,
    /// Never attempted again (410).
    Failed,
    /// Attempted again after this delay.
    Retry(Duration),
    /// The schedule is used up.
    Dead,
}

/// The retry schedule and the bound on what a receiver may ask for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryRules {
    /// `WEBHOOK_RETRY_SCHEDULE`: the delay after each failed attempt.
    pub schedule: Vec<Duration>,
    /// `WEBHOOK_MAX_RETRY_AFTER_SECONDS`: the longest `Retry-After` honoured.
    pub max_retry_after: Duration,
}

impl RetryRules {
    /// The decision after attempt number `attempts` (1 for the first) got
    /// `answer`. `now` reads an HTTP-date `Retry-After`; `jitter`, uniform in
    /// `[0, 1)`, spreads a scheduled delay over ±20 %.
    pub fn decide(&self, answer: Answer<'_>, attempts: i32, now: SystemTime, jitter: f64) -> Decision {
        let asked = match answer {
            Answer::Status { code: 200..=299, .. } => return Decision::Delivered,
            Answer::Status { code: 410, .. } => return Decision::Failed,
            Answer::Status {
                code: 429 | 503,
                retry_after,
            } => retry_after.and_then(|value| tronpay_domain::parse_retry_after(value, now)),
            Answer::Status { .. } | Answer::NoAnswer => None,
        };
        let index = usize::try_from(attempts.max(1) - 1).unwrap_or(usize::MAX);
        let Some(scheduled) = self.schedule.get(index) else {
            return Decision::Dead;
        };
        Decision::Retry(match asked {
            Some(asked) => asked.clamp(MIN_RETRY_AFTER, self.max_retry_after.max(MIN_RETRY_AFTER)),
            None => scheduled.mul_f64(0.8 + 0.4 * jitter),
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    const MINUTE: Duration = Duration::from_secs(60);

    fn rules() -> RetryRules {
        RetryRules {
            schedule: vec![Duration::from_secs(5), 5 * MINUTE, 30 * MINUTE],
            max_retry_after: 10 * MINUTE,
        }
    }

    fn status(code: u16) -> Answer<'static> {
        Answer::Status {
            code,
            retry_after: None,
        }
    }

    fn decide(answer: Answer<'_>, attempts: i32) -> Decision {
        rules().decide(answer, attempts, SystemTime::now(), 0.5)
    }

    #[test]
    fn any_2xx_is_delivered_even_on_the_last_attempt() {
        for code in [200, 201, 202, 204, 299] {
            assert_eq!(decide(status(code), 1), Decision::Delivered, "{code}");
            assert_eq!(decide(status(code), 4), Decision::Delivered, "{code}");
        }
    }

    #[test]
    fn gone_fails_at_once_whatever_the_schedule_left() {
        assert_eq!(decide(status(410), 1), Decision::Failed);
        assert_eq!(decide(status(410), 9), Decision::Failed);
        let asked = Answer::Status {
            code: 410,
            retry_after: Some("30"),
        };
        assert_eq!(decide(asked, 1), Decision::Failed);
    }

    #[test]
    fn retry_after_in_seconds_is_honoured_on_429_and_503() {
        for code in [429, 503] {
            let answer = Answer::Status {
                code,
                retry_after: Some("120"),
            };
            // Instead of the schedule's 5 s (first) or 30 min (third).
            assert_eq!(decide(answer, 1), Decision::Retry(2 * MINUTE), "{code}");
            assert_eq!(decide(answer, 3), Decision::Retry(2 * MINUTE), "{code}");
        }
    }

    #[test]
    fn retry_after_as_an_http_date_is_the_delay_to_that_date() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let date = httpdate::fmt_http_date(now + 90 * Duration::from_secs(1));
        let answer = Answer::Status {
            code: 503,
            retry_after: Some(&date),
        };
        assert_eq!(
            rules().decide(answer, 1, now, 0.5),
            Decision::Retry(Duration::from_secs(90))
        );
    }

    #[test]
    fn retry_after_is_clamped_between_one_second_and_the_maximum() {
        let asked = |value| Answer::Status {
            code: 429,
            retry_after: Some(value),
        };
        assert_eq!(decide(asked("86400"), 1), Decision::Retry(10 * MINUTE));
        assert_eq!(decide(asked("0"), 1), Decision::Retry(Duration::from_secs(1)));
        // A date in the past asks for no wait at all.
        assert_eq!(
            decide(asked("Sun, 06 Nov 1994 08:49:37 GMT"), 1),
            Decision::Retry(Duration::from_secs(1))
        );
    }

    #[test]
    fn retry_after_on_another_status_or_unreadable_follows_the_schedule() {
        let answer = |code, value| Answer::Status {
            code,
            retry_after: Some(value),
        };
        let scheduled = Decision::Retry(Duration::from_secs(5));
        assert_eq!(decide(answer(500, "120"), 1), scheduled);
        assert_eq!(decide(answer(429, "soon"), 1), scheduled);
        assert_eq!(decide(answer(503, "-5"), 1), scheduled);
    }

    #[test]
    fn failures_and_timeouts_follow_the_schedule_with_twenty_percent_jitter() {
        let rules = rules();
        for answer in [
            status(400),
            status(404),
            status(429),
            status(500),
            status(503),
            Answer::NoAnswer,
        ] {
            for (attempts, delay) in [(1, Duration::from_secs(5)), (2, 5 * MINUTE), (3, 30 * MINUTE)] {
                let now = SystemTime::now();
                assert_eq!(
                    rules.decide(answer, attempts, now, 0.0),
                    Decision::Retry(delay.mul_f64(0.8))
                );
                assert_eq!(rules.decide(answer, attempts, now, 0.5), Decision::Retry(delay));
                let Decision::Retry(longest) = rules.decide(answer, attempts, now, 0.999_999) else {
                    panic!("{answer:?} is retried");
                };
                assert!(
                    longest < delay.mul_f64(1.2) && longest > delay.mul_f64(1.199),
                    "{longest:?}"
                );
            }
        }
    }

    #[test]
    fn a_redirect_is_a_failure_that_is_retried() {
        for code in [301, 302, 307, 308] {
            assert_eq!(
                decide(status(code), 1),
                Decision::Retry(Duration::from_secs(5)),
                "{code}"
            );
        }
    }

    #[test]
    fn the_attempt_after_the_last_scheduled_delay_is_dead() {
        // Three delays: the initial attempt and three retries, then dead.
        for answer in [
            status(500),
            Answer::NoAnswer,
            Answer::Status {
                code: 429,
                retry_after: Some("60"),
            },
        ] {
            assert!(matches!(decide(answer, 3), Decision::Retry(_)), "{answer:?}");
            assert_eq!(decide(answer, 4), Decision::Dead, "{answer:?}");
            assert_eq!(decide(answer, 5), Decision::Dead, "{answer:?}");
        }
    }

    #[test]
    fn an_empty_schedule_makes_the_first_failure_dead() {
        let rules = RetryRules {
            schedule: Vec::new(),
            max_retry_after: MINUTE,
        };
        assert_eq!(
            rules.decide(Answer::NoAnswer, 1, SystemTime::now(), 0.5),
            Decision::Dead
        );
        assert_eq!(
            rules.decide(status(200), 1, SystemTime::now(), 0.5),
            Decision::Delivered
        );
    }
}

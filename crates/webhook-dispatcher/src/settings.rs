//! Settings of `tronpay-webhook-dispatcher` (see the README).

use std::time::Duration;

use serde::Deserialize;
use tronpay_domain::AddressPolicy;
use tronpay_domain::signing::WebhookSecret;
use tronpay_runtime::Validate;

#[derive(Clone, Deserialize)]
#[serde(default)]
pub struct DispatcherSettings {
    /// `WEBHOOK_SECRET`: `whsec_…`; when unset, one is generated on first
    /// start and stored (`tronpay webhooks secret` shows it).
    pub webhook_secret: Option<String>,
    /// `WEBHOOK_RETRY_SCHEDULE`: delays between attempts (`5s,5m,30m,…`); the
    /// delivery is dead after the last.
    pub webhook_retry_schedule: String,
    /// `WEBHOOK_TIMEOUT_MS`: an answer must come within this.
    pub webhook_timeout_ms: u64,
    /// `WEBHOOK_CONCURRENCY`: requests in flight at once per dispatcher to
    /// destinations that answer (the main lane).
    pub webhook_concurrency: usize,
    /// `WEBHOOK_ORIGIN_CONCURRENCY`: requests in flight at once per
    /// dispatcher to one origin (scheme, host, port), in either lane; unset:
    /// three quarters of `WEBHOOK_CONCURRENCY`, at least 1
    /// ([`Self::origin_concurrency`]).
    pub webhook_origin_concurrency: Option<usize>,
    /// `WEBHOOK_SLOW_CONCURRENCY`: requests in flight at once per dispatcher
    /// to origins whose last attempt timed out (the slow lane, besides the
    /// main one); unset: a quarter of `WEBHOOK_CONCURRENCY`, at least 1
    /// ([`Self::slow_concurrency`]).
    pub webhook_slow_concurrency: Option<usize>,
    /// `WEBHOOK_MAX_RETRY_AFTER_SECONDS`: the longest `Retry-After` honoured.
    pub webhook_max_retry_after_seconds: u64,
    /// `WEBHOOK_REPUBLISH_SECONDS`: a due delivery whose `callback.due` is
    /// older than this is published again.
    pub webhook_republish_seconds: u64,
    /// `CALLBACK_ALLOW_PRIVATE`: deliver to loopback and private networks.
    pub callback_allow_private: bool,
    /// `CALLBACK_ALLOW_CIDRS`: private networks deliveries may go to anyway.
    pub callback_allow_cidrs: String,
    /// `DISPATCHER_BIND`: the health endpoint.
    pub dispatcher_bind: String,
}

impl Default for DispatcherSettings {
    fn default() -> Self {
        Self {
            webhook_secret: None,
            webhook_retry_schedule: "5s,5m,30m,2h,5h,10h,10h,24h".into(),
            webhook_timeout_ms: 15_000,
            webhook_concurrency: 64,
            webhook_origin_concurrency: None,
            webhook_slow_concurrency: None,
            webhook_max_retry_after_seconds: 24 * 3600,
            webhook_republish_seconds: 30,
            callback_allow_private: false,
            callback_allow_cidrs: String::new(),
            dispatcher_bind: "127.0.0.1:5002".into(),
        }
    }
}

impl std::fmt::Debug for DispatcherSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DispatcherSettings")
            .field("webhook_secret", &self.webhook_secret.as_ref().map(|_| "whsec_…"))
            .field("webhook_retry_schedule", &self.webhook_retry_schedule)
            .field("webhook_timeout_ms", &self.webhook_timeout_ms)
            .finish_non_exhaustive()
    }
}

impl Validate for DispatcherSettings {
    /// Checks every setting; the error names the bad one.
    fn validate(&self) -> Result<(), String> {
        self.schedule()?;
        self.policy()?;
        self.secret()?;
        if !(100..=120_000).contains(&self.webhook_timeout_ms) {
            return Err("WEBHOOK_TIMEOUT_MS must be between 100 and 120000".into());
        }
        if !(1..=1024).contains(&self.webhook_concurrency) {
            return Err("WEBHOOK_CONCURRENCY must be between 1 and 1024".into());
        }
        if !(1..=self.webhook_concurrency).contains(&self.origin_concurrency()) {
            return Err(format!(
                "WEBHOOK_ORIGIN_CONCURRENCY must be between 1 and WEBHOOK_CONCURRENCY ({})",
                self.webhook_concurrency
            ));
        }
        if !(1..=1024).contains(&self.slow_concurrency()) {
            return Err("WEBHOOK_SLOW_CONCURRENCY must be between 1 and 1024".into());
        }
        if self.webhook_republish_seconds == 0 {
            return Err("WEBHOOK_REPUBLISH_SECONDS must be at least 1".into());
        }
        self.dispatcher_bind.parse::<std::net::SocketAddr>().map_err(|_| {
            format!(
                "DISPATCHER_BIND must be an address and port, not {:?}",
                self.dispatcher_bind
            )
        })?;
        Ok(())
    }
}

impl DispatcherSettings {
    /// The retry delays; an error names `WEBHOOK_RETRY_SCHEDULE`.
    pub fn schedule(&self) -> Result<Vec<Duration>, String> {
        let schedule: Vec<Duration> = self
            .webhook_retry_schedule
            .split(',')
            .map(str::trim)
            .filter(|part| !part.is_empty())
            .map(|part| {
                parse_duration(part)
                    .ok_or_else(|| format!("WEBHOOK_RETRY_SCHEDULE: {part:?} is not a delay such as 5s, 5m, 2h"))
            })
            .collect::<Result<_, _>>()?;
        if schedule.len() > 50 {
            return Err("WEBHOOK_RETRY_SCHEDULE has more than 50 delays".into());
        }
        Ok(schedule)
    }

    /// Where callbacks may go; an error names `CALLBACK_ALLOW_CIDRS`.
    pub fn policy(&self) -> Result<AddressPolicy, String> {
        Ok(AddressPolicy {
            allow_private: self.callback_allow_private,
            allow: AddressPolicy::parse_allow_list(&self.callback_allow_cidrs)
                .map_err(|error| format!("CALLBACK_ALLOW_CIDRS: {error}"))?,
        })
    }

    /// `WEBHOOK_SECRET` parsed, `None` when unset or blank; an error names it.
    pub fn secret(&self) -> Result<Option<WebhookSecret>, String> {
        self.webhook_secret
            .as_deref()
            .filter(|text| !text.trim().is_empty())
            .map(|text| WebhookSecret::parse(text).map_err(|error| format!("WEBHOOK_SECRET: {error}")))
            .transpose()
    }

    /// `WEBHOOK_TIMEOUT_MS` as a duration.
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.webhook_timeout_ms)
    }

    /// Attempts one origin may have in flight: `WEBHOOK_ORIGIN_CONCURRENCY`,
    /// else ¾ of `WEBHOOK_CONCURRENCY` rounded down, at least 1 (48 of 64,
    /// 3 of 4), so that one destination never holds every main slot while a
    /// single-merchant deployment keeps most of its throughput.
    pub fn origin_concurrency(&self) -> usize {
        self.webhook_origin_concurrency
            .unwrap_or((self.webhook_concurrency.saturating_mul(3) / 4).max(1))
    }

    /// Attempts in flight to an origin that has not answered yet: 1/16 of
    /// `WEBHOOK_CONCURRENCY` rounded down, at least 1 (4 of 64, 1 of 4),
    /// at most its full share.
    pub fn first_contact_concurrency(&self) -> usize {
        (self.webhook_concurrency / 16).clamp(1, self.origin_concurrency())
    }

    /// Size of the slow lane: `WEBHOOK_SLOW_CONCURRENCY`, else ¼ of
    /// `WEBHOOK_CONCURRENCY` rounded down, at least 1 (16 of 64, 1 of 4).
    pub fn slow_concurrency(&self) -> usize {
        self.webhook_slow_concurrency
            .unwrap_or((self.webhook_concurrency / 4).max(1))
    }
}

/// `100ms`, `5s`, `5m`, `2h`, `1d`.
pub fn parse_duration(text: &str) -> Option<Duration> {
    let split = text.find(|c: char| !c.is_ascii_digit())?;
    let (number, unit) = text.split_at(split);
    let number: u64 = number.parse().ok()?;
    let millis = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return None,
    };
    number.checked_mul(millis).map(Duration::from_millis)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_schedule_is_the_documented_one() {
        let minutes = |m: u64| Duration::from_secs(m * 60);
        assert_eq!(
            DispatcherSettings::default().schedule().unwrap(),
            [
                Duration::from_secs(5),
                minutes(5),
                minutes(30),
                minutes(120),
                minutes(300),
                minutes(600),
                minutes(600),
                minutes(1440)
            ]
        );
        assert!(DispatcherSettings::default().validate().is_ok());
    }

    #[test]
    fn fairness_limits_default_to_shares_of_the_concurrency() {
        let with = |concurrency: usize| DispatcherSettings {
            webhook_concurrency: concurrency,
            ..DispatcherSettings::default()
        };
        let limits = |settings: &DispatcherSettings| (settings.origin_concurrency(), settings.slow_concurrency());
        assert_eq!(limits(&DispatcherSettings::default()), (48, 16));
        assert_eq!(limits(&with(4)), (3, 1));
        assert_eq!(limits(&with(1)), (1, 1));
        let chosen = DispatcherSettings {
            webhook_origin_concurrency: Some(64),
            webhook_slow_concurrency: Some(200),
            ..DispatcherSettings::default()
        };
        assert_eq!(limits(&chosen), (64, 200));
        assert!(chosen.validate().is_ok());
        for bad in [Some(0), Some(65)] {
            let settings = DispatcherSettings {
                webhook_origin_concurrency: bad,
                ..DispatcherSettings::default()
            };
            assert!(
                settings
                    .validate()
                    .unwrap_err()
                    .starts_with("WEBHOOK_ORIGIN_CONCURRENCY must be between 1 and WEBHOOK_CONCURRENCY (64)")
            );
        }
        let bad = DispatcherSettings {
            webhook_slow_concurrency: Some(0),
            ..DispatcherSettings::default()
        };
        assert!(bad.validate().unwrap_err().starts_with("WEBHOOK_SLOW_CONCURRENCY"));
    }

    #[test]
    fn bad_values_name_the_setting() {
        let bad = DispatcherSettings {
            webhook_retry_schedule: "5s,soon".into(),
            ..DispatcherSettings::default()
        };
        assert!(bad.validate().unwrap_err().starts_with("WEBHOOK_RETRY_SCHEDULE"));
        let bad = DispatcherSettings {
            webhook_secret: Some("nope".into()),
            ..DispatcherSettings::default()
        };
        assert!(bad.validate().unwrap_err().starts_with("WEBHOOK_SECRET"));
        let bad = DispatcherSettings {
            callback_allow_cidrs: "10.0.0.0/99".into(),
            ..DispatcherSettings::default()
        };
        assert!(bad.validate().unwrap_err().starts_with("CALLBACK_ALLOW_CIDRS"));
        assert_eq!(parse_duration("100ms"), Some(Duration::from_millis(100)));
        assert_eq!(parse_duration("2h"), Some(Duration::from_secs(7200)));
        assert_eq!(parse_duration("h"), None);
        assert_eq!(parse_duration("5y"), None);
    }
}

//! Settings of `tronpay-api` (see the README's configuration table).

use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tronpay_domain::matching::MatchRules;
use tronpay_domain::xpub::AccountXpub;
use tronpay_domain::{AddressMode, TronAddress, UsdtAmount};
use tronpay_runtime::Validate;

/// The API's own settings, each read from the environment variable its
/// doc names (or the config file); serialized (for the dashboard's
/// settings page) with `XPUB` shortened.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct ApiSettings {
    /// `BIND`: address and port to listen on (`--bind` overrides).
    pub bind: String,
    /// `PAYMENT_TTL_SECONDS`: how long a payment waits before it expires.
    pub payment_ttl_seconds: i64,
    /// `POLLING_INTERVAL_SECONDS`: the chain watcher's idle poll interval,
    /// reported by `/stats` as the original did.
    pub polling_interval_seconds: u64,
    /// `CALLBACK_ALLOW_PRIVATE`: accept callback URLs on loopback and
    /// private networks (local trials only).
    pub callback_allow_private: bool,
    /// `CALLBACK_ALLOW_CIDRS`: private networks callbacks may point to anyway
    /// (comma-separated CIDRs, e.g. an internal receiver's `10.1.0.0/16`).
    pub callback_allow_cidrs: String,
    /// `CALLBACK_DNS_TIMEOUT_MS`: how long creation waits to resolve a
    /// callback host before accepting it unchecked (checked again at delivery).
    pub callback_dns_timeout_ms: u64,
    /// `MAX_BODY_BYTES`: larger request bodies are answered with 413.
    pub max_body_bytes: usize,
    /// `API_WORKERS`: HTTP worker threads (default: one per CPU).
    pub api_workers: Option<usize>,
    /// `SHUTDOWN_TIMEOUT_SECONDS`: how long in-flight requests may finish
    /// after SIGTERM.
    pub shutdown_timeout_seconds: u64,
    /// `API_PROCESS_EVENTS`: run the event consumer, the expiry sweep and the
    /// outbox relay in this process (turn off only for HTTP-only replicas).
    pub api_process_events: bool,
    /// `MIN_CREDIT_USDT` (a decimal text, default `0.01`): a transfer below
    /// it never credits a payment, never makes one late and is never shown
    /// as detected — unless it is exactly a payment's outstanding amount;
    /// it is recorded as ignored (address-poisoning dust). A transfer of 0
    /// is always ignored.
    pub min_credit_usdt: UsdtAmount,
    /// `PUBLIC_BASE_URL`: where buyers and merchants reach this API from
    /// outside (`https://pay.example.com`); `checkout_url` is this plus
    /// `/pay/{id}`. Default: `http://` + the bound address.
    pub public_base_url: String,
    /// `LEGACY_API_KEY_REQUIRED`: the original endpoints (`/create_payment`,
    /// `/payment_status/{id}`, `/stats`) take an API key like `/v1` does.
    /// Off by default, since the original's clients send none.
    pub legacy_api_key_required: bool,
    /// `API_KEY_CACHE_SECONDS`: how long a replica trusts what it read about
    /// a key; a revoked key is refused everywhere within this many seconds.
    pub api_key_cache_seconds: u64,
    /// `RATE_LIMIT_PER_IP`: requests per second one client IP may make to
    /// this replica, with bursts of as many (0: no limit). Over it: 429 with
    /// `Retry-After`.
    pub rate_limit_per_ip: u32,
    /// `RATE_LIMIT_PER_KEY`: requests per second one API key may make to
    /// this replica, with bursts of as many (0: no limit).
    pub rate_limit_per_key: u32,
    /// `AUTH_FAILURES_PER_MINUTE`: requests with a wrong or unknown key one
    /// client IP may make per minute before they get 429 instead of 401.
    pub auth_failures_per_minute: u32,
    /// `TRUSTED_PROXIES`: comma-separated CIDRs of reverse proxies whose
    /// `X-Forwarded-For` names the client (e.g. `10.0.0.0/8`); from any
    /// other peer the header is ignored.
    pub trusted_proxies: String,
    /// `METRICS_ALLOW`: comma-separated CIDRs of the clients that may read
    /// `/metrics` (Prometheus); from anywhere else it is a 404. Default:
    /// loopback and the private networks (a scraper in the cluster); empty:
    /// nobody.
    pub metrics_allow: String,
    /// `ADDRESS_MODE`: where a v1 payment created without an `address` gets
    /// one: `given` (none: `address` is required), `xpub` (derived from
    /// `XPUB`, one per payment), `pool` (a free imported address, lent
    /// while the payment needs it), `unique_amount` (`RECEIVE_ADDRESS`, the
    /// amount raised to be unique). Payments with an `address`, and every
    /// `/create_payment`, are `given`.
    pub address_mode: String,
    /// `XPUB`: the account's extended public key (`xpub…` at m/44'/195'/0')
    /// for `ADDRESS_MODE=xpub`; never a private key. Shown shortened: it
    /// is no secret, but it gives away every address of the account.
    #[serde(serialize_with = "shortened")]
    pub xpub: String,
    /// `RECEIVE_ADDRESS`: the shared address of `ADDRESS_MODE=unique_amount`.
    pub receive_address: String,
    /// `UNIQUE_AMOUNT_STEP` (USDT, default 0.01): the amount is raised by
    /// the smallest multiple of this that no payment on the address holds…
    pub unique_amount_step: UsdtAmount,
    /// `UNIQUE_AMOUNT_MAX_OFFSET` (USDT, default 0.99): …up to this much.
    pub unique_amount_max_offset: UsdtAmount,
    /// `UNIQUE_AMOUNT_RELEASE_GRACE_SECONDS` (default 86400): how long after
    /// its payment ended an amount stays taken, so a late transfer never
    /// pays a stranger.
    pub unique_amount_release_grace_seconds: u64,
    /// `POOL_RELEASE_GRACE_SECONDS` (default 86400): how long after its
    /// payment ended a pool address stays with it before it can be lent
    /// again, so a late transfer still finds its payment.
    pub pool_release_grace_seconds: u64,
}

/// Where v1 payments created without an address get one (`ADDRESS_MODE`
/// and what the mode needs, checked).
#[derive(Debug, Clone)]
pub enum Receiving {
    /// They do not: `address` is required.
    Given,
    /// The account's next derived address.
    Xpub(AccountXpub),
    /// A free address of the imported pool (`tronpay addresses import`).
    Pool,
    /// The shared address, the amount raised by `step` up to `steps` times.
    UniqueAmount {
        address: TronAddress,
        step: UsdtAmount,
        steps: u32,
    },
}

/// A comma-separated list of addresses and CIDRs (setting `name`'s value).
fn networks(name: &str, list: &str) -> Result<Vec<ipnet::IpNet>, String> {
    list.split(',')
        .map(str::trim)
        .filter(|text| !text.is_empty())
        .map(|text| {
            text.parse::<ipnet::IpNet>()
                .or_else(|_| text.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                .map_err(|_| format!("{name}: {text:?} is not an address or CIDR such as 10.0.0.0/8"))
        })
        .collect()
}

/// The first 12 characters, `…` and the last 4; only stars when 16
/// characters or fewer (nothing when unset).
fn shortened<S: serde::Serializer>(text: &str, serializer: S) -> Result<S::Ok, S::Error> {
    let chars: Vec<char> = text.chars().collect();
    if chars.len() <= 16 {
        return serializer.serialize_str(&"*".repeat(chars.len()));
    }
    let head: String = chars[..12].iter().collect();
    let tail: String = chars[chars.len() - 4..].iter().collect();
    serializer.serialize_str(&format!("{head}…{tail}"))
}

impl Default for ApiSettings {
    fn default() -> Self {
        Self {
            bind: "127.0.0.1:5000".to_owned(),
            payment_ttl_seconds: 24 * 60 * 60,
            polling_interval_seconds: 3,
            callback_allow_private: false,
            callback_allow_cidrs: String::new(),
            callback_dns_timeout_ms: 1_500,
            max_body_bytes: 64 * 1024,
            api_workers: None,
            shutdown_timeout_seconds: 30,
            api_process_events: true,
            min_credit_usdt: MatchRules::default().min_credit,
            public_base_url: String::new(),
            legacy_api_key_required: false,
            api_key_cache_seconds: 5,
            rate_limit_per_ip: 50_000,
            rate_limit_per_key: 20_000,
            auth_failures_per_minute: 60,
            trusted_proxies: String::new(),
            metrics_allow: "127.0.0.0/8,::1/128,10.0.0.0/8,172.16.0.0/12,192.168.0.0/16,fc00::/7".to_owned(),
            address_mode: "given".to_owned(),
            xpub: String::new(),
            receive_address: String::new(),
            // 0.01 and 0.99 USDT.
            unique_amount_step: UsdtAmount::from_base_units(10_000).unwrap_or(UsdtAmount::ZERO),
            unique_amount_max_offset: UsdtAmount::from_base_units(990_000).unwrap_or(UsdtAmount::ZERO),
            unique_amount_release_grace_seconds: 24 * 60 * 60,
            pool_release_grace_seconds: 24 * 60 * 60,
        }
    }
}

impl Validate for ApiSettings {
    /// Checks the values, naming the setting that is wrong.
    fn validate(&self) -> Result<(), String> {
        self.bind_addr()?;
        self.callback_policy()?;
        tronpay_domain::check_payment_ttl(self.payment_ttl_seconds)?;
        if self.polling_interval_seconds == 0 {
            return Err("POLLING_INTERVAL_SECONDS must be at least 1".into());
        }
        if self.max_body_bytes < 1024 {
            return Err("MAX_BODY_BYTES must be at least 1024".into());
        }
        if self.api_workers == Some(0) {
            return Err("API_WORKERS must be at least 1".into());
        }
        if self.min_credit_usdt == UsdtAmount::ZERO {
            return Err("MIN_CREDIT_USDT must be at least 0.000001".into());
        }
        if !self.public_base_url.is_empty() {
            self.public_base_url_at(0)?;
        }
        self.trusted_proxy_nets()?;
        self.metrics_allow_nets()?;
        self.receiving()?;
        if self.unique_amount_release_grace_seconds > 31_622_400 {
            return Err("UNIQUE_AMOUNT_RELEASE_GRACE_SECONDS must be at most 31622400 (366 days)".into());
        }
        if self.pool_release_grace_seconds > 31_622_400 {
            return Err("POOL_RELEASE_GRACE_SECONDS must be at most 31622400 (366 days)".into());
        }
        if self.auth_failures_per_minute == 0 {
            return Err("AUTH_FAILURES_PER_MINUTE must be at least 1".into());
        }
        if self.api_key_cache_seconds > 300 {
            return Err("API_KEY_CACHE_SECONDS must be at most 300 (a revoked key stays usable that long)".into());
        }
        Ok(())
    }
}

impl ApiSettings {
    /// The matching rules these settings choose.
    pub fn match_rules(&self) -> MatchRules {
        MatchRules {
            min_credit: self.min_credit_usdt,
        }
    }

    pub fn bind_addr(&self) -> Result<SocketAddr, String> {
        self.bind.parse().map_err(|_| {
            format!(
                "BIND must be an address and port such as 127.0.0.1:5000, not {:?}",
                self.bind
            )
        })
    }

    pub fn callback_policy(&self) -> Result<tronpay_domain::AddressPolicy, String> {
        Ok(tronpay_domain::AddressPolicy {
            allow_private: self.callback_allow_private,
            allow: tronpay_domain::AddressPolicy::parse_allow_list(&self.callback_allow_cidrs)
                .map_err(|error| format!("CALLBACK_ALLOW_CIDRS: {error}"))?,
        })
    }

    /// `PUBLIC_BASE_URL` without a trailing `/`, or `http://` + the bound
    /// address (`port`, the one actually bound) when it is unset.
    pub fn public_base_url_at(&self, port: u16) -> Result<String, String> {
        if self.public_base_url.is_empty() {
            let mut addr = self.bind_addr()?;
            addr.set_port(port);
            return Ok(format!("http://{addr}"));
        }
        let url = url::Url::parse(&self.public_base_url)
            .map_err(|error| format!("PUBLIC_BASE_URL must be an absolute http(s) URL: {error}"))?;
        if !matches!(url.scheme(), "http" | "https") || url.host().is_none() || url.query().is_some() {
            return Err(format!(
                "PUBLIC_BASE_URL must be an http(s) URL without a query, such as https://pay.example.com, not {:?}",
                self.public_base_url
            ));
        }
        Ok(self.public_base_url.trim_end_matches('/').to_owned())
    }

    /// Whether the original endpoints are open on an address other hosts can
    /// reach (worth a warning at start).
    pub fn legacy_open_to_network(&self) -> bool {
        !self.legacy_api_key_required && self.bind_addr().is_ok_and(|addr| !addr.ip().is_loopback())
    }

    /// `ADDRESS_MODE` and, for `xpub`, the parsed `XPUB`; errors name the
    /// setting.
    pub fn receiving(&self) -> Result<Receiving, String> {
        let mode: AddressMode = self.address_mode.trim().parse().map_err(|_| {
            format!(
                "ADDRESS_MODE must be given, xpub, pool or unique_amount, not {:?}",
                self.address_mode
            )
        })?;
        match mode {
            AddressMode::Given => Ok(Receiving::Given),
            AddressMode::Xpub if self.xpub.trim().is_empty() => {
                Err("ADDRESS_MODE=xpub needs XPUB, the account's extended public key (xpub… at m/44'/195'/0')".into())
            }
            AddressMode::Xpub => {
                let account = AccountXpub::parse(&self.xpub).map_err(|error| format!("XPUB: {error}"))?;
                Ok(Receiving::Xpub(account))
            }
            AddressMode::UniqueAmount => {
                if self.receive_address.trim().is_empty() {
                    return Err("ADDRESS_MODE=unique_amount needs RECEIVE_ADDRESS, the shared TRON address".into());
                }
                let address = TronAddress::parse(self.receive_address.trim())
                    .map_err(|error| format!("RECEIVE_ADDRESS: {error}"))?;
                let step = self.unique_amount_step;
                if step == UsdtAmount::ZERO {
                    return Err("UNIQUE_AMOUNT_STEP must be more than 0".into());
                }
                let steps = self.unique_amount_max_offset.base_units() / step.base_units();
                if steps == 0 {
                    return Err(
                        "UNIQUE_AMOUNT_MAX_OFFSET must be at least UNIQUE_AMOUNT_STEP (else no amount can be raised)"
                            .into(),
                    );
                }
                Ok(Receiving::UniqueAmount {
                    address,
                    step,
                    steps: u32::try_from(steps.min(100_000)).unwrap_or(100_000),
                })
            }
            // An empty pool is a 409 per create, not a refusal to start:
            // the addresses may be imported after the service started.
            AddressMode::Pool => Ok(Receiving::Pool),
        }
    }

    /// `TRUSTED_PROXIES` parsed.
    pub fn trusted_proxy_nets(&self) -> Result<Vec<ipnet::IpNet>, String> {
        networks("TRUSTED_PROXIES", &self.trusted_proxies)
    }

    /// `METRICS_ALLOW` parsed.
    pub fn metrics_allow_nets(&self) -> Result<Vec<ipnet::IpNet>, String> {
        networks("METRICS_ALLOW", &self.metrics_allow)
    }

    pub fn callback_dns_timeout(&self) -> Duration {
        Duration::from_millis(self.callback_dns_timeout_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_bad_values_are_named() {
        assert!(ApiSettings::default().validate().is_ok());
        let bad = ApiSettings {
            bind: "localhost".into(),
            ..ApiSettings::default()
        };
        assert!(bad.validate().unwrap_err().starts_with("BIND"));
        let bad = ApiSettings {
            payment_ttl_seconds: 0,
            ..ApiSettings::default()
        };
        assert!(bad.validate().unwrap_err().starts_with("PAYMENT_TTL_SECONDS"));
        let bad = ApiSettings {
            api_workers: Some(0),
            ..ApiSettings::default()
        };
        assert!(bad.validate().unwrap_err().starts_with("API_WORKERS"));
        let bad = ApiSettings {
            min_credit_usdt: UsdtAmount::ZERO,
            ..ApiSettings::default()
        };
        assert!(bad.validate().unwrap_err().starts_with("MIN_CREDIT_USDT"));
        for (mode, xpub, error) in [
            ("xpub", "", "ADDRESS_MODE=xpub needs XPUB"),
            ("xpub", "xprv9s21ZrQH143K", "XPUB: this is an extended private key"),
            ("xpub", "xpub-nonsense", "XPUB: not an extended public key"),
            ("random", "", "ADDRESS_MODE must be given, xpub, pool or unique_amount"),
            ("unique_amount", "", "ADDRESS_MODE=unique_amount needs RECEIVE_ADDRESS"),
        ] {
            let bad = ApiSettings {
                address_mode: mode.into(),
                xpub: xpub.into(),
                ..ApiSettings::default()
            };
            assert!(bad.validate().unwrap_err().starts_with(error), "{mode} {xpub}");
        }
        let bad = ApiSettings {
            pool_release_grace_seconds: 31_622_401,
            ..ApiSettings::default()
        };
        assert!(bad.validate().unwrap_err().starts_with("POOL_RELEASE_GRACE_SECONDS"));
        let pool = ApiSettings {
            address_mode: "pool".into(),
            ..ApiSettings::default()
        };
        assert!(matches!(pool.receiving(), Ok(Receiving::Pool)));
        let bad = ApiSettings {
            trusted_proxies: "10.0.0.0/8, nonsense".into(),
            ..ApiSettings::default()
        };
        assert!(bad.validate().unwrap_err().starts_with("TRUSTED_PROXIES"));
        let proxies = ApiSettings {
            trusted_proxies: "10.0.0.0/8, 192.0.2.7".into(),
            ..ApiSettings::default()
        };
        assert_eq!(proxies.trusted_proxy_nets().unwrap().len(), 2);
        for url in ["ftp://x", "pay.example.com", "https://pay.example.com/?a=1"] {
            let bad = ApiSettings {
                public_base_url: url.into(),
                ..ApiSettings::default()
            };
            assert!(bad.validate().unwrap_err().starts_with("PUBLIC_BASE_URL"), "{url}");
        }
    }

    #[test]
    fn the_public_base_url_defaults_to_the_bound_address() {
        let settings = ApiSettings {
            bind: "127.0.0.1:0".into(),
            ..ApiSettings::default()
        };
        assert_eq!(settings.public_base_url_at(8080).unwrap(), "http://127.0.0.1:8080");
        let settings = ApiSettings {
            public_base_url: "https://pay.example.com/".into(),
            ..settings
        };
        assert_eq!(settings.public_base_url_at(8080).unwrap(), "https://pay.example.com");
        assert!(!settings.legacy_open_to_network());
        let open = ApiSettings {
            bind: "0.0.0.0:5000".into(),
            ..ApiSettings::default()
        };
        assert!(open.legacy_open_to_network());
    }
}

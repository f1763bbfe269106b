//! Refusing callback URLs that point into private networks, at creation.
//!
//! A literal IP is judged directly. A host name is resolved (bounded by
//! `CALLBACK_DNS_TIMEOUT_MS`) and refused if *any* address it resolves to is
//! not public. A name that cannot be resolved right now is accepted — a DNS
//! hiccup must never block a payment — because the webhook dispatcher checks
//! the address again at every delivery.

use std::net::IpAddr;
use std::time::Duration;

use tronpay_domain::{AddressPolicy, CallbackUrl, NonPublicReason};

#[derive(Debug, Clone)]
pub struct CallbackGuard {
    policy: AddressPolicy,
    dns_timeout: Duration,
}

/// A callback URL refused because it reaches a non-public address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("callback_url must point to a public internet address: {host} is {reason} ({ip})")]
pub struct PrivateCallback {
    pub host: String,
    pub ip: IpAddr,
    pub reason: NonPublicReason,
}

impl CallbackGuard {
    pub fn new(policy: AddressPolicy, dns_timeout: Duration) -> Self {
        Self { policy, dns_timeout }
    }

    pub async fn check(&self, url: &CallbackUrl) -> Result<(), PrivateCallback> {
        if self.policy.allow_private {
            return Ok(());
        }
        let host = url.url().host_str().unwrap_or_default().to_owned();
        let refuse = |ip: IpAddr| {
            self.policy.check(ip).err().map(|reason| PrivateCallback {
                host: host.clone(),
                ip,
                reason,
            })
        };
        if let Some(ip) = url.host_ip() {
            return refuse(ip).map_or(Ok(()), Err);
        }
        let Some(name) = url.host_name() else {
            return Ok(());
        };
        let lookup = tokio::net::lookup_host((name, url.port()));
        match tokio::time::timeout(self.dns_timeout, lookup).await {
            Ok(Ok(addresses)) => addresses
                .map(|address| address.ip())
                .find_map(refuse)
                .map_or(Ok(()), Err),
            // Unresolvable or slow: accepted now, checked at delivery.
            Ok(Err(_)) | Err(_) => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guard() -> CallbackGuard {
        CallbackGuard::new(AddressPolicy::default(), Duration::from_millis(500))
    }

    fn url(text: &str) -> CallbackUrl {
        CallbackUrl::parse(text).unwrap()
    }

    #[tokio::test]
    async fn literal_private_addresses_are_refused() {
        for text in [
            "http://127.0.0.1/h",
            "http://169.254.169.254/latest",
            "http://10.0.0.1/",
            "http://[::1]/",
            "http://[fd00::1]/",
            "http://100.64.1.1/",
            "http://0.0.0.0/",
        ] {
            assert!(guard().check(&url(text)).await.is_err(), "{text}");
        }
    }

    #[tokio::test]
    async fn names_resolving_to_loopback_are_refused() {
        let error = guard().check(&url("http://localhost:8080/hook")).await.unwrap_err();
        assert_eq!(error.reason, NonPublicReason::Loopback);
        assert!(error.to_string().contains("localhost is a loopback address"), "{error}");
    }

    #[tokio::test]
    async fn public_and_unresolvable_hosts_are_accepted() {
        assert!(guard().check(&url("https://93.184.216.34/hook")).await.is_ok());
        assert!(guard().check(&url("https://no-such-host.invalid/hook")).await.is_ok());
    }

    #[tokio::test]
    async fn the_local_trial_switch_allows_private_addresses() {
        let open = CallbackGuard::new(
            AddressPolicy {
                allow_private: true,
                allow: vec![],
            },
            Duration::from_millis(500),
        );
        assert!(open.check(&url("http://127.0.0.1:9000/hook")).await.is_ok());
        let listed = AddressPolicy {
            allow_private: false,
            allow: AddressPolicy::parse_allow_list("10.9.0.0/16").unwrap(),
        };
        let listed = CallbackGuard::new(listed, Duration::from_millis(500));
        assert!(listed.check(&url("http://10.9.1.1/hook")).await.is_ok());
        assert!(listed.check(&url("http://10.8.1.1/hook")).await.is_err());
    }
}

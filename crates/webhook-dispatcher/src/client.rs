//! The HTTP client for callbacks: never follows redirects, and never
//! connects to an address the policy refuses. Host names go through a
//! resolver that checks every address it returns, so the address checked is
//! the address connected to (no DNS-rebinding window); literal IPs are
//! checked before the request.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use tronpay_domain::{AddressPolicy, CallbackUrl};

/// A callback destination refused by the policy.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{host} is {reason} ({ip}); callbacks go to public addresses only")]
pub struct Refused {
    pub host: String,
    pub ip: IpAddr,
    pub reason: tronpay_domain::NonPublicReason,
}

struct PolicyResolver {
    policy: AddressPolicy,
}

impl Resolve for PolicyResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.policy.clone();
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let addresses: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            // Any refused address refuses the host: a name that resolves to
            // both a public and a private address could be steered.
            if let Some(refused) = addresses.iter().find_map(|address| {
                policy.check(address.ip()).err().map(|reason| Refused {
                    host: host.clone(),
                    ip: address.ip(),
                    reason,
                })
            }) {
                return Err(Box::new(refused) as Box<dyn std::error::Error + Send + Sync>);
            }
            if addresses.is_empty() {
                return Err(format!("{host} has no address").into());
            }
            Ok(Box::new(addresses.into_iter()) as Addrs)
        })
    }
}

/// Builds the callback client.
pub fn build(policy: &AddressPolicy, timeout: Duration) -> Result<reqwest::Client, String> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(10)))
        .redirect(reqwest::redirect::Policy::none())
        .dns_resolver(Arc::new(PolicyResolver { policy: policy.clone() }))
        .user_agent(concat!("tronpay-webhooks/", env!("CARGO_PKG_VERSION")))
        .pool_max_idle_per_host(16)
        .build()
        .map_err(|error| format!("cannot build the HTTP client: {error}"))
}

/// Checks a literal-IP callback URL against the policy (host names are
/// checked by the resolver when connecting).
pub fn check_literal(url: &CallbackUrl, policy: &AddressPolicy) -> Result<(), Refused> {
    match url.host_ip() {
        Some(ip) => policy.check(ip).map_err(|reason| Refused {
            host: ip.to_string(),
            ip,
            reason,
        }),
        None => Ok(()),
    }
}

/// Whether `error` (from reqwest) is the resolver refusing an address.
pub fn refused_in(error: &reqwest::Error) -> Option<Refused> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(current) = source {
        if let Some(refused) = current.downcast_ref::<Refused>() {
            return Some(refused.clone());
        }
        source = current.source();
    }
    None
}

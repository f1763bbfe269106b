//! Merchant callback URLs and the network rules they must obey.
//!
//! A callback is an outgoing request from inside the operator's network, so a
//! URL that points back inside (loopback, private ranges, cloud metadata at
//! 169.254.169.254) would let anyone who can create a payment probe that
//! network. [`classify_ip`] says which addresses are not public; the services
//! apply it to literal IPs and to every address a host name resolves to.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use url::{Host, Url};

/// Longest callback URL accepted.
pub const MAX_CALLBACK_URL_LEN: usize = 2048;

/// An absolute `http`/`https` URL with a host and no embedded credentials.
#[derive(Clone, PartialEq, Eq)]
pub struct CallbackUrl(Url);

/// Why a text is not an acceptable callback URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CallbackUrlError {
    #[error("not an absolute URL")]
    Syntax,
    #[error("only http and https callbacks are supported")]
    Scheme,
    #[error("the URL has no host")]
    NoHost,
    #[error("credentials in the URL are not accepted")]
    Credentials,
    #[error("the URL is longer than {MAX_CALLBACK_URL_LEN} characters")]
    TooLong,
}

/// Where a callback host points, when it is not the public internet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NonPublicReason {
    Unspecified,
    Loopback,
    Private,
    LinkLocal,
    SharedAddressSpace,
    UniqueLocal,
    Multicast,
    Reserved,
    Documentation,
}

impl fmt::Display for NonPublicReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Unspecified => "an unspecified address",
            Self::Loopback => "a loopback address",
            Self::Private => "a private network address",
            Self::LinkLocal => "a link-local address (such as cloud metadata)",
            Self::SharedAddressSpace => "a carrier-grade NAT address",
            Self::UniqueLocal => "a unique-local IPv6 address",
            Self::Multicast => "a multicast address",
            Self::Reserved => "a reserved address",
            Self::Documentation => "a documentation or benchmarking address",
        })
    }
}

impl CallbackUrl {
    pub fn parse(text: &str) -> Result<Self, CallbackUrlError> {
        if text.len() > MAX_CALLBACK_URL_LEN {
            return Err(CallbackUrlError::TooLong);
        }
        // The URL parser forgives leading and trailing blanks; a callback
        // stored with them would be a different string than the one sent.
        if text.trim() != text {
            return Err(CallbackUrlError::Syntax);
        }
        let url = Url::parse(text).map_err(|_| CallbackUrlError::Syntax)?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(CallbackUrlError::Scheme);
        }
        match url.host() {
            None => return Err(CallbackUrlError::NoHost),
            Some(Host::Domain("")) => return Err(CallbackUrlError::NoHost),
            Some(_) => {}
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(CallbackUrlError::Credentials);
        }
        Ok(Self(url))
    }

    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }

    pub fn url(&self) -> &Url {
        &self.0
    }

    /// The literal IP address of the host, if the URL names one.
    pub fn host_ip(&self) -> Option<IpAddr> {
        match self.0.host()? {
            Host::Ipv4(ip) => Some(IpAddr::V4(ip)),
            Host::Ipv6(ip) => Some(IpAddr::V6(ip)),
            Host::Domain(_) => None,
        }
    }

    /// The host name to resolve, when the host is not a literal IP.
    pub fn host_name(&self) -> Option<&str> {
        match self.0.host()? {
            Host::Domain(domain) => Some(domain),
            _ => None,
        }
    }

    /// The port, explicit or the scheme's default.
    pub fn port(&self) -> u16 {
        self.0.port_or_known_default().unwrap_or(443)
    }
}

impl fmt::Display for CallbackUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for CallbackUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CallbackUrl({})", self.as_str())
    }
}

/// An IP network in CIDR notation (`10.0.0.0/8`, `fd00::/8`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl Cidr {
    pub fn parse(text: &str) -> Result<Self, String> {
        let (address, prefix) = text.trim().split_once('/').unwrap_or((text.trim(), ""));
        let network: IpAddr = address.parse().map_err(|_| format!("{text:?} is not an IP network"))?;
        let max = if network.is_ipv4() { 32 } else { 128 };
        let prefix = if prefix.is_empty() {
            max
        } else {
            prefix
                .parse::<u8>()
                .map_err(|_| format!("{text:?}: bad prefix length"))?
        };
        if prefix > max {
            return Err(format!("{text:?}: prefix longer than {max}"));
        }
        Ok(Self { network, prefix })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.network, ip) {
            (IpAddr::V4(network), IpAddr::V4(ip)) => in_v4(ip, network.octets(), u32::from(self.prefix)),
            (IpAddr::V6(network), IpAddr::V6(ip)) => in_v6(ip, network, u32::from(self.prefix)),
            _ => false,
        }
    }
}

/// Which callback destinations are allowed: public addresses always;
/// non-public ones when `allow_private` is set or they fall in `allow`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AddressPolicy {
    pub allow_private: bool,
    pub allow: Vec<Cidr>,
}

impl AddressPolicy {
    /// `Err(reason)` when a callback must not be sent to `ip`.
    pub fn check(&self, ip: IpAddr) -> Result<(), NonPublicReason> {
        match classify_ip(ip) {
            None => Ok(()),
            Some(_) if self.allow_private || self.allow.iter().any(|cidr| cidr.contains(ip)) => Ok(()),
            Some(reason) => Err(reason),
        }
    }

    /// Parses `CALLBACK_ALLOW_CIDRS` (comma-separated).
    pub fn parse_allow_list(text: &str) -> Result<Vec<Cidr>, String> {
        text.split(',')
            .filter(|part| !part.trim().is_empty())
            .map(Cidr::parse)
            .collect()
    }
}

/// `None` when `ip` is a public unicast address, else why it is not.
pub fn classify_ip(ip: IpAddr) -> Option<NonPublicReason> {
    match ip {
        IpAddr::V4(ip) => classify_v4(ip),
        IpAddr::V6(ip) => classify_v6(ip),
    }
}

fn in_v4(ip: Ipv4Addr, network: [u8; 4], prefix: u32) -> bool {
    let mask = u32::MAX.checked_shl(32 - prefix).unwrap_or(0);
    u32::from(ip) & mask == u32::from(Ipv4Addr::from(network)) & mask
}

fn classify_v4(ip: Ipv4Addr) -> Option<NonPublicReason> {
    use NonPublicReason::*;
    let rules: &[([u8; 4], u32, NonPublicReason)] = &[
        ([0, 0, 0, 0], 8, Unspecified),
        ([10, 0, 0, 0], 8, Private),
        ([100, 64, 0, 0], 10, SharedAddressSpace),
        ([127, 0, 0, 0], 8, Loopback),
        ([169, 254, 0, 0], 16, LinkLocal),
        ([172, 16, 0, 0], 12, Private),
        ([192, 0, 0, 0], 24, Reserved),
        ([192, 0, 2, 0], 24, Documentation),
        ([192, 88, 99, 0], 24, Reserved),
        ([192, 168, 0, 0], 16, Private),
        ([198, 18, 0, 0], 15, Documentation),
        ([198, 51, 100, 0], 24, Documentation),
        ([203, 0, 113, 0], 24, Documentation),
        ([224, 0, 0, 0], 4, Multicast),
        ([240, 0, 0, 0], 4, Reserved),
    ];
    rules
        .iter()
        .find(|(network, prefix, _)| in_v4(ip, *network, *prefix))
        .map(|(_, _, reason)| *reason)
}

fn in_v6(ip: Ipv6Addr, network: Ipv6Addr, prefix: u32) -> bool {
    let mask = u128::MAX.checked_shl(128 - prefix).unwrap_or(0);
    u128::from(ip) & mask == u128::from(network) & mask
}

fn classify_v6(ip: Ipv6Addr) -> Option<NonPublicReason> {
    use NonPublicReason::*;
    if ip.is_unspecified() {
        return Some(Unspecified);
    }
    if ip.is_loopback() {
        return Some(Loopback);
    }
    // IPv4 embedded in IPv6 is judged as IPv4: mapped ::ffff:a.b.c.d, the
    // deprecated compatible ::a.b.c.d, NAT64 64:ff9b::a.b.c.d, and 6to4
    // 2002:aabb:ccdd::.
    let low = Ipv4Addr::from((u128::from(ip) & 0xffff_ffff) as u32);
    let embedded = if let Some(mapped) = ip.to_ipv4_mapped() {
        Some(mapped)
    } else if in_v6(ip, Ipv6Addr::new(0x64, 0xff9b, 0, 0, 0, 0, 0, 0), 96) || in_v6(ip, Ipv6Addr::UNSPECIFIED, 96) {
        Some(low)
    } else if in_v6(ip, Ipv6Addr::new(0x2002, 0, 0, 0, 0, 0, 0, 0), 16) {
        let [_, high, low, ..] = ip.segments();
        Some(Ipv4Addr::from((u32::from(high) << 16) | u32::from(low)))
    } else {
        None
    };
    if let Some(v4) = embedded {
        return classify_v4(v4);
    }
    let rules: &[(Ipv6Addr, u32, NonPublicReason)] = &[
        (Ipv6Addr::new(0x100, 0, 0, 0, 0, 0, 0, 0), 64, Reserved),
        // Teredo tunnels hide the client's IPv4 address; refuse them whole.
        (Ipv6Addr::new(0x2001, 0, 0, 0, 0, 0, 0, 0), 32, Reserved),
        (Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0), 32, Documentation),
        (Ipv6Addr::new(0xfc00, 0, 0, 0, 0, 0, 0, 0), 7, UniqueLocal),
        (Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0), 10, LinkLocal),
        (Ipv6Addr::new(0xfec0, 0, 0, 0, 0, 0, 0, 0), 10, Private),
        (Ipv6Addr::new(0xff00, 0, 0, 0, 0, 0, 0, 0), 8, Multicast),
    ];
    rules
        .iter()
        .find(|(network, prefix, _)| in_v6(ip, *network, *prefix))
        .map(|(_, _, reason)| *reason)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_http_and_https_urls() {
        for text in [
            "https://shop.example.com/hook",
            "http://shop.example.com:8080/payments/callback?x=1",
            "https://93.184.216.34/hook",
            "https://[2606:2800:220:1::1]/hook",
            "http://localhost:5001/hook",
        ] {
            assert_eq!(CallbackUrl::parse(text).unwrap().as_str(), text);
        }
    }

    #[test]
    fn rejects_what_is_not_a_web_url() {
        assert_eq!(CallbackUrl::parse("not a url"), Err(CallbackUrlError::Syntax));
        assert_eq!(CallbackUrl::parse("/relative/path"), Err(CallbackUrlError::Syntax));
        assert_eq!(CallbackUrl::parse(" https://a.example/"), Err(CallbackUrlError::Syntax));
        assert_eq!(CallbackUrl::parse("ftp://a.example/"), Err(CallbackUrlError::Scheme));
        assert_eq!(CallbackUrl::parse("file:///etc/passwd"), Err(CallbackUrlError::Scheme));
        assert_eq!(CallbackUrl::parse("javascript:alert(1)"), Err(CallbackUrlError::Scheme));
        assert_eq!(
            CallbackUrl::parse("https://user:pw@a.example/"),
            Err(CallbackUrlError::Credentials)
        );
        let long = format!("https://a.example/{}", "x".repeat(MAX_CALLBACK_URL_LEN));
        assert_eq!(CallbackUrl::parse(&long), Err(CallbackUrlError::TooLong));
    }

    #[test]
    fn exposes_literal_ips_and_names() {
        let url = CallbackUrl::parse("http://169.254.169.254/latest/meta-data").unwrap();
        assert_eq!(url.host_ip(), Some("169.254.169.254".parse().unwrap()));
        assert_eq!(url.port(), 80);
        let url = CallbackUrl::parse("https://Shop.Example.com/hook").unwrap();
        assert_eq!(url.host_name(), Some("shop.example.com"));
        assert_eq!(url.port(), 443);
        // Decimal and hex IPv4 spellings are normalised by the URL parser, so
        // they cannot smuggle a loopback address past the literal-IP check.
        let url = CallbackUrl::parse("http://2130706433/").unwrap();
        assert_eq!(url.host_ip(), Some("127.0.0.1".parse().unwrap()));
        let url = CallbackUrl::parse("http://0x7f.1/").unwrap();
        assert_eq!(url.host_ip(), Some("127.0.0.1".parse().unwrap()));
    }

    #[test]
    fn classifies_non_public_addresses() {
        let cases = [
            ("0.0.0.0", NonPublicReason::Unspecified),
            ("10.1.2.3", NonPublicReason::Private),
            ("100.64.0.1", NonPublicReason::SharedAddressSpace),
            ("127.0.0.1", NonPublicReason::Loopback),
            ("169.254.169.254", NonPublicReason::LinkLocal),
            ("172.16.0.1", NonPublicReason::Private),
            ("172.31.255.255", NonPublicReason::Private),
            ("192.168.1.1", NonPublicReason::Private),
            ("224.0.0.1", NonPublicReason::Multicast),
            ("255.255.255.255", NonPublicReason::Reserved),
            ("::", NonPublicReason::Unspecified),
            ("::1", NonPublicReason::Loopback),
            ("fd00::1", NonPublicReason::UniqueLocal),
            ("fe80::1", NonPublicReason::LinkLocal),
            ("ff02::1", NonPublicReason::Multicast),
            ("::ffff:127.0.0.1", NonPublicReason::Loopback),
            ("::ffff:169.254.169.254", NonPublicReason::LinkLocal),
            ("64:ff9b::10.0.0.1", NonPublicReason::Private),
            ("2002:7f00:1::", NonPublicReason::Loopback),
            ("2002:a9fe:a9fe::1", NonPublicReason::LinkLocal),
            ("2001:0:4136:e378:8000:63bf:3fff:fdd2", NonPublicReason::Reserved),
        ];
        for (ip, reason) in cases {
            assert_eq!(classify_ip(ip.parse().unwrap()), Some(reason), "{ip}");
        }
    }

    #[test]
    fn an_allow_list_lets_chosen_private_networks_through() {
        let policy = AddressPolicy {
            allow_private: false,
            allow: AddressPolicy::parse_allow_list("10.1.0.0/16, fd00::/8").unwrap(),
        };
        assert!(policy.check("10.1.2.3".parse().unwrap()).is_ok());
        assert!(policy.check("fd00::5".parse().unwrap()).is_ok());
        assert_eq!(policy.check("10.2.0.1".parse().unwrap()), Err(NonPublicReason::Private));
        assert_eq!(
            policy.check("169.254.169.254".parse().unwrap()),
            Err(NonPublicReason::LinkLocal)
        );
        assert!(policy.check("8.8.8.8".parse().unwrap()).is_ok());
        assert!(
            AddressPolicy {
                allow_private: true,
                allow: vec![]
            }
            .check("127.0.0.1".parse().unwrap())
            .is_ok()
        );
        assert!(Cidr::parse("10.0.0.0/33").is_err());
        assert!(Cidr::parse("nope").is_err());
        assert!(
            Cidr::parse("192.168.1.7")
                .unwrap()
                .contains("192.168.1.7".parse().unwrap())
        );
    }

    #[test]
    fn public_addresses_pass() {
        for ip in [
            "93.184.216.34",
            "8.8.8.8",
            "172.32.0.1",
            "100.128.0.1",
            "2606:2800:220:1::1",
            "::ffff:8.8.8.8",
        ] {
            assert_eq!(classify_ip(ip.parse().unwrap()), None, "{ip}");
        }
    }
}

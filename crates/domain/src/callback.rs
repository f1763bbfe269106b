//! Merchant callback URLs and the network rules they must obey.
//!
//! A callback is an outgoing request from inside the operator's network, so a
//! URL that points back inside (loopback, private ranges, cloud metadata at
//! 169.254.169.254) would let anyone who can create a payment probe that
//! network. [`classify_ip`] says which addresses are not public (a table
//! drawn from IANA's special-purpose address registries); the services apply
//! it to literal IPs and to every address a host name resolves to, and
//! [`AddressPolicy`] adds the operator's exceptions (`CALLBACK_ALLOW_*`).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
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

/// Where a callback host points, when it is not the public internet. Its
/// `Display` is the phrase the API's error message uses ("a loopback
/// address").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NonPublicReason {
    /// `0.0.0.0/8`, `::`.
    Unspecified,
    /// `127.0.0.0/8`, `::1`.
    Loopback,
    /// RFC 1918 networks, IPv6 site-local, local-use NAT64.
    Private,
    /// `169.254.0.0/16` (cloud metadata), `fe80::/10`.
    LinkLocal,
    /// Carrier-grade NAT, `100.64.0.0/10`.
    SharedAddressSpace,
    /// `fc00::/7`.
    UniqueLocal,
    /// `224.0.0.0/4`, `ff00::/8`.
    Multicast,
    /// Reserved, broadcast, IETF protocol blocks, IPv6 outside `2000::/3`.
    Reserved,
    /// Documentation and benchmarking ranges.
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

/// Which callback destinations are allowed: public addresses always;
/// non-public ones when `allow_private` is set or they fall in `allow`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AddressPolicy {
    /// `CALLBACK_ALLOW_PRIVATE`: every non-public address is allowed.
    pub allow_private: bool,
    /// `CALLBACK_ALLOW_CIDRS`: networks allowed although not public.
    pub allow: Vec<IpNet>,
}

impl AddressPolicy {
    /// `Err(reason)` when a callback must not be sent to `ip`.
    pub fn check(&self, ip: IpAddr) -> Result<(), NonPublicReason> {
        match classify_ip(ip) {
            None => Ok(()),
            Some(_) if self.allow_private || self.allow.iter().any(|network| network.contains(&ip)) => Ok(()),
            Some(reason) => Err(reason),
        }
    }

    /// Parses `CALLBACK_ALLOW_CIDRS`: comma-separated networks in CIDR
    /// notation (`10.1.0.0/16, fd00::/8`) or single addresses
    /// (`192.168.1.7`, taken as `/32` or `/128`); blanks around entries and
    /// empty entries are ignored, host bits below the prefix are dropped.
    ///
    /// # Errors
    ///
    /// A message quoting the entry that is not an IP address, has a prefix
    /// length that is not a number, or one longer than 32 (IPv4) or 128
    /// (IPv6); callers prefix it with the setting's name.
    pub fn parse_allow_list(text: &str) -> Result<Vec<IpNet>, String> {
        text.split(',')
            .map(str::trim)
            .filter(|part| !part.is_empty())
            .map(parse_network)
            .collect()
    }
}

/// One entry of an allow list: `a.b.c.d/n`, `x::/n` or a single address.
fn parse_network(text: &str) -> Result<IpNet, String> {
    let (address, prefix) = match text.split_once('/') {
        Some((address, prefix)) => (address, Some(prefix)),
        None => (text, None),
    };
    let address: IpAddr = address.parse().map_err(|_| format!("{text:?} is not an IP network"))?;
    let Some(prefix) = prefix else {
        return Ok(IpNet::from(address));
    };
    let prefix: u8 = prefix.parse().map_err(|_| format!("{text:?}: bad prefix length"))?;
    let max = if address.is_ipv4() { 32 } else { 128 };
    IpNet::new(address, prefix)
        .map(|network| network.trunc())
        .map_err(|_| format!("{text:?}: prefix longer than {max}"))
}

/// `None` when `ip` is a public unicast address, else why it is not.
///
/// Decided by the most specific (longest) matching prefix of the tables
/// below, which follow IANA's IPv4 and IPv6 Special-Purpose Address
/// Registries: every block there that is not globally reachable is refused,
/// and so are a few that are, where noted. IPv6 outside `2000::/3` (the only
/// block allocated for global unicast) is refused, and an IPv6 address that
/// carries an IPv4 address on the way out (mapped, NAT64, 6to4) is judged as
/// that IPv4 address.
pub fn classify_ip(ip: IpAddr) -> Option<NonPublicReason> {
    match ip {
        IpAddr::V4(ip) => classify_v4(ip),
        IpAddr::V6(ip) => classify_v6(ip),
    }
}

const fn v4(a: u8, b: u8, c: u8, d: u8, prefix: u8) -> Ipv4Net {
    Ipv4Net::new_assert(Ipv4Addr::new(a, b, c, d), prefix)
}

const fn v6(address: Ipv6Addr, prefix: u8) -> Ipv6Net {
    Ipv6Net::new_assert(address, prefix)
}

const fn segments(a: u16, b: u16, c: u16) -> Ipv6Addr {
    Ipv6Addr::new(a, b, c, 0, 0, 0, 0, 0)
}

/// IPv4 networks that are not the public internet. Globally reachable
/// entries of the registry not listed here are public: AS112
/// `192.31.196.0/24` (RFC 7535) and `192.175.48.0/24` (RFC 7534), AMT
/// `192.52.193.0/24` (RFC 7450).
const V4_TABLE: &[(Ipv4Net, NonPublicReason)] = {
    use NonPublicReason::*;
    &[
        // "This network" (RFC 791).
        (v4(0, 0, 0, 0, 8), Unspecified),
        // Private-Use (RFC 1918).
        (v4(10, 0, 0, 0, 8), Private),
        // Shared Address Space, carrier-grade NAT (RFC 6598).
        (v4(100, 64, 0, 0, 10), SharedAddressSpace),
        // Loopback (RFC 1122).
        (v4(127, 0, 0, 0, 8), Loopback),
        // Link Local, where cloud metadata services answer (RFC 3927).
        (v4(169, 254, 0, 0, 16), LinkLocal),
        // Private-Use (RFC 1918).
        (v4(172, 16, 0, 0, 12), Private),
        // IETF Protocol Assignments (RFC 6890), all of it: the IPv4 service
        // continuity prefix 192.0.0.0/29 (RFC 7335), the dummy address
        // 192.0.0.8 (RFC 7600) and NAT64 discovery 192.0.0.170-171
        // (RFC 8880) are not globally reachable; the PCP (192.0.0.9,
        // RFC 7723) and TURN (192.0.0.10, RFC 8155) anycast addresses are,
        // but anycast reaches the nearest such server, often the operator's
        // own gateway.
        (v4(192, 0, 0, 0, 24), Reserved),
        // Documentation, TEST-NET-1 (RFC 5737).
        (v4(192, 0, 2, 0, 24), Documentation),
        // Deprecated 6to4 relay anycast (RFC 7526).
        (v4(192, 88, 99, 0, 24), Reserved),
        // Private-Use (RFC 1918).
        (v4(192, 168, 0, 0, 16), Private),
        // Benchmarking (RFC 2544).
        (v4(198, 18, 0, 0, 15), Documentation),
        // Documentation, TEST-NET-2 and TEST-NET-3 (RFC 5737).
        (v4(198, 51, 100, 0, 24), Documentation),
        (v4(203, 0, 113, 0, 24), Documentation),
        // Multicast (RFC 5771; IANA's multicast registry, not this one).
        (v4(224, 0, 0, 0, 4), Multicast),
        // Reserved for future use (RFC 1112).
        (v4(240, 0, 0, 0, 4), Reserved),
        // Limited Broadcast (RFC 919, RFC 8190).
        (v4(255, 255, 255, 255, 32), Reserved),
    ]
};

fn classify_v4(ip: Ipv4Addr) -> Option<NonPublicReason> {
    V4_TABLE
        .iter()
        .filter(|(network, _)| network.contains(&ip))
        .max_by_key(|(network, _)| network.prefix_len())
        .map(|(_, reason)| *reason)
}

/// What an IPv6 prefix means for a callback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum V6Rule {
    Public,
    Refused(NonPublicReason),
    /// The last 32 bits are an IPv4 address the packets go to.
    Ipv4InLast32,
    /// 6to4: bits 16 to 47 are the IPv4 address of the site's relay.
    Ipv4After16,
}

/// IPv6 prefixes; the most specific match decides. Globally reachable
/// entries of the registry inside `2000::/3` that no other entry covers are
/// public without a line here: AS112 `2620:4f:8000::/48` (RFC 7534).
const V6_TABLE: &[(Ipv6Net, V6Rule)] = {
    use NonPublicReason::*;
    use V6Rule::*;
    &[
        // Outside global unicast: reserved by the IETF or not allocated
        // (IANA IPv6 Address Space registry). Among them the deprecated
        // IPv4-compatible ::a.b.c.d (RFC 4291) and the dummy prefix 100::/8.
        (v6(Ipv6Addr::UNSPECIFIED, 0), Refused(Reserved)),
        // Global unicast (RFC 4291).
        (v6(segments(0x2000, 0, 0), 3), Public),
        // Unspecified and Loopback (RFC 4291).
        (v6(Ipv6Addr::UNSPECIFIED, 128), Refused(Unspecified)),
        (v6(Ipv6Addr::LOCALHOST, 128), Refused(Loopback)),
        // IPv4-mapped (RFC 4291): a dual-stack socket connects over IPv4.
        (v6(Ipv6Addr::new(0, 0, 0, 0, 0, 0xffff, 0, 0), 96), Ipv4InLast32),
        // IPv4-IPv6 translation, well-known NAT64 prefix (RFC 6052):
        // globally reachable, but the packets go to the embedded address.
        (v6(segments(0x64, 0xff9b, 0), 96), Ipv4InLast32),
        // Local-use IPv4-IPv6 translation (RFC 8215).
        (v6(segments(0x64, 0xff9b, 1), 48), Refused(Private)),
        // Discard-only (RFC 6666).
        (v6(segments(0x100, 0, 0), 64), Refused(Reserved)),
        // IETF Protocol Assignments (RFC 2928): not globally reachable but
        // for the entries below. Refused with it: Teredo 2001::/32 (RFC
        // 4380; the tunnel hides the host it reaches), the deprecated ORCHID
        // 2001:10::/28 (RFC 4843) and the PCP, TURN and DNS-SD SRP anycast
        // addresses 2001:1::1-3 (RFC 7723, 8155, 9665; anycast reaches the
        // nearest such server, often the operator's own).
        (v6(segments(0x2001, 0, 0), 23), Refused(Reserved)),
        (v6(segments(0x2001, 0, 0), 32), Refused(Reserved)),
        // Benchmarking (RFC 5180).
        (v6(segments(0x2001, 2, 0), 48), Refused(Documentation)),
        // Globally reachable: AMT (RFC 7450), AS112-v6 (RFC 7535), ORCHIDv2
        // (RFC 7343), Drone Remote ID entity tags (RFC 9374).
        (v6(segments(0x2001, 3, 0), 32), Public),
        (v6(segments(0x2001, 4, 0x112), 48), Public),
        (v6(segments(0x2001, 0x20, 0), 28), Public),
        (v6(segments(0x2001, 0x30, 0), 28), Public),
        // Documentation (RFC 3849, RFC 9637).
        (v6(segments(0x2001, 0xdb8, 0), 32), Refused(Documentation)),
        (v6(segments(0x3fff, 0, 0), 20), Refused(Documentation)),
        // 6to4 (RFC 3056): the packets go to the embedded IPv4 relay.
        (v6(segments(0x2002, 0, 0), 16), Ipv4After16),
        // Segment Routing (SRv6) SIDs (RFC 9602).
        (v6(segments(0x5f00, 0, 0), 16), Refused(Reserved)),
        // Unique-Local (RFC 4193).
        (v6(segments(0xfc00, 0, 0), 7), Refused(UniqueLocal)),
        // Link-Local Unicast (RFC 4291).
        (v6(segments(0xfe80, 0, 0), 10), Refused(LinkLocal)),
        // Site-local, deprecated (RFC 3879) but still routed inside sites.
        (v6(segments(0xfec0, 0, 0), 10), Refused(Private)),
        // Multicast (RFC 4291).
        (v6(segments(0xff00, 0, 0), 8), Refused(Multicast)),
    ]
};

fn classify_v6(ip: Ipv6Addr) -> Option<NonPublicReason> {
    let rule = V6_TABLE
        .iter()
        .filter(|(network, _)| network.contains(&ip))
        .max_by_key(|(network, _)| network.prefix_len())
        .map_or(V6Rule::Refused(NonPublicReason::Reserved), |(_, rule)| *rule);
    let [_, s1, s2, .., s6, s7] = ip.segments();
    match rule {
        V6Rule::Public => None,
        V6Rule::Refused(reason) => Some(reason),
        V6Rule::Ipv4InLast32 => classify_v4(ipv4(s6, s7)),
        V6Rule::Ipv4After16 => classify_v4(ipv4(s1, s2)),
    }
}

fn ipv4(high: u16, low: u16) -> Ipv4Addr {
    Ipv4Addr::from((u32::from(high) << 16) | u32::from(low))
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

    /// The IANA special-purpose blocks that are not globally reachable, at
    /// their first and last address.
    #[test]
    fn refuses_the_special_purpose_blocks_at_both_ends() {
        use NonPublicReason::*;
        let cases = [
            ("0.0.0.0", "0.255.255.255", Unspecified),
            ("192.0.0.0", "192.0.0.255", Reserved),
            ("192.0.0.9", "192.0.0.10", Reserved),
            ("192.0.2.0", "192.0.2.255", Documentation),
            ("192.88.99.0", "192.88.99.255", Reserved),
            ("198.18.0.0", "198.19.255.255", Documentation),
            ("198.51.100.0", "198.51.100.255", Documentation),
            ("203.0.113.0", "203.0.113.255", Documentation),
            ("240.0.0.0", "255.255.255.254", Reserved),
            ("255.255.255.255", "255.255.255.255", Reserved),
            ("64:ff9b:1::", "64:ff9b:1:ffff:ffff:ffff:ffff:ffff", Private),
            ("100::", "100::ffff:ffff:ffff:ffff", Reserved),
            ("2001::", "2001:1ff:ffff:ffff:ffff:ffff:ffff:ffff", Reserved),
            ("2001:1::1", "2001:1::3", Reserved),
            ("2001:2::", "2001:2:0:ffff:ffff:ffff:ffff:ffff", Documentation),
            ("2001:10::", "2001:1f:ffff:ffff:ffff:ffff:ffff:ffff", Reserved),
            ("2001:db8::", "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff", Documentation),
            ("3fff::", "3fff:fff:ffff:ffff:ffff:ffff:ffff:ffff", Documentation),
            ("5f00::", "5f00:ffff:ffff:ffff:ffff:ffff:ffff:ffff", Reserved),
            ("fc00::", "fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", UniqueLocal),
            ("fe80::", "febf:ffff:ffff:ffff:ffff:ffff:ffff:ffff", LinkLocal),
            ("fec0::", "feff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", Private),
            ("ff00::", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", Multicast),
            // Outside 2000::/3, including the deprecated IPv4-compatible form.
            ("::2", "1fff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", Reserved),
            ("::8.8.8.8", "::127.0.0.1", Reserved),
            ("4000::", "5eff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", Reserved),
            ("8000::", "fbff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", Reserved),
        ];
        for (first, last, reason) in cases {
            for ip in [first, last] {
                assert_eq!(
                    classify_ip(ip.parse().unwrap()),
                    Some(reason),
                    "{ip} in {first}..{last}"
                );
            }
        }
    }

    /// Embedded IPv4 decides for mapped, NAT64 and 6to4 addresses; the rest
    /// of 64:ff9b::/32 beyond the two registered prefixes is ordinary
    /// reserved space.
    #[test]
    fn ipv6_that_carries_ipv4_is_judged_by_it() {
        assert_eq!(
            classify_ip("::ffff:192.0.2.1".parse().unwrap()),
            Some(NonPublicReason::Documentation)
        );
        assert_eq!(
            classify_ip("64:ff9b::100.64.0.1".parse().unwrap()),
            Some(NonPublicReason::SharedAddressSpace)
        );
        assert_eq!(classify_ip("64:ff9b::8.8.8.8".parse().unwrap()), None);
        assert_eq!(
            classify_ip("64:ff9b:1::8.8.8.8".parse().unwrap()),
            Some(NonPublicReason::Private)
        );
        assert_eq!(classify_ip("2002:808:808::1".parse().unwrap()), None);
        assert_eq!(
            classify_ip("2002:c0a8:101::1".parse().unwrap()),
            Some(NonPublicReason::Private)
        );
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
    }

    #[test]
    fn the_allow_list_takes_networks_and_single_addresses() {
        let allow = AddressPolicy::parse_allow_list(" 10.1.2.3/16,, 192.168.1.7 ,fd00::/8,::1").unwrap();
        let shown: Vec<String> = allow.iter().map(ToString::to_string).collect();
        assert_eq!(shown, ["10.1.0.0/16", "192.168.1.7/32", "fd00::/8", "::1/128"]);
        assert_eq!(AddressPolicy::parse_allow_list("").unwrap(), []);
        let policy = AddressPolicy {
            allow_private: false,
            allow,
        };
        assert!(policy.check("192.168.1.7".parse().unwrap()).is_ok());
        assert!(policy.check("192.168.1.8".parse().unwrap()).is_err());
        assert!(policy.check("::1".parse().unwrap()).is_ok());

        let error = |text: &str| AddressPolicy::parse_allow_list(text).unwrap_err();
        assert_eq!(error("10.0.0.0/33"), "\"10.0.0.0/33\": prefix longer than 32");
        assert_eq!(error("fd00::/129"), "\"fd00::/129\": prefix longer than 128");
        assert_eq!(error("10.0.0.0/x"), "\"10.0.0.0/x\": bad prefix length");
        assert_eq!(error("10.0.0.0/8,nope"), "\"nope\" is not an IP network");
        assert_eq!(error("10.0.0/8"), "\"10.0.0/8\" is not an IP network");
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
            // Globally reachable entries of the IANA registries.
            "192.31.196.1",
            "192.52.193.1",
            "192.175.48.1",
            "2001:3::1",
            "2001:4:112::1",
            "2001:20::1",
            "2001:3f:ffff::1",
            "2620:4f:8000::1",
            // Global unicast just beside the refused blocks.
            "2001:200::1",
            "2001:db9::1",
            "3ffe:ffff::1",
            "3fff:1000::1",
            "2000::1",
        ] {
            assert_eq!(classify_ip(ip.parse().unwrap()), None, "{ip}");
        }
    }
}

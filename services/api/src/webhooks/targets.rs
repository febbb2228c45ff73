//! Where webhooks may be sent: by default never to this machine, the cluster's private
//! network, link-local addresses or a cloud metadata service, in every role. The operator
//! opts in to ranges with `--webhook-allow loopback,private,link-local`; metadata services
//! are reachable only when `link-local` is named.
//!
//! URLs are checked when a webhook is saved, and every address is checked again when a call
//! resolves its host (so a DNS answer that changes to 127.0.0.1 later is still refused).
//! IPv6 forms that embed an IPv4 address (mapped, NAT64, 6to4, Teredo) are judged by the IPv4
//! address they lead to.

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::task::{Context, Poll};

use hyper_util::client::legacy::connect::dns::Name;
use url::Url;

/// Which address ranges the operator allows webhooks to reach (public addresses always).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TargetPolicy {
    /// 127.0.0.0/8 and ::1.
    pub loopback: bool,
    /// 10/8, 172.16/12, 192.168/16, 100.64/10 (shared), 198.18/15 (benchmarking), fc00::/7,
    /// fec0::/10, 2001:2::/48 and the local-use NAT64 prefix 64:ff9b:1::/48.
    pub private: bool,
    /// 169.254/16 and fe80::/10, and the cloud metadata services (169.254.169.254,
    /// fd00:ec2::254, 100.100.100.200, 168.63.129.16), which no other range lets through.
    pub link_local: bool,
}

/// Cloud metadata services that sit outside 169.254/16: reachable only with `link_local`.
const METADATA_V4: [Ipv4Addr; 2] = [
    Ipv4Addr::new(100, 100, 100, 200), // Alibaba Cloud (inside 100.64/10)
    Ipv4Addr::new(168, 63, 129, 16),   // Azure's wire server (a public address)
];
/// AWS's IPv6 metadata service (inside fc00::/7).
const METADATA_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254);

impl TargetPolicy {
    /// Allows this machine and private networks, for local development (never metadata).
    pub fn development() -> Self {
        Self { loopback: true, private: true, link_local: false }
    }

    /// Whether a call may go to `ip`.
    pub fn permits(&self, ip: IpAddr) -> bool {
        needs(ip).is_some_and(|needed| {
            (!needed.loopback || self.loopback)
                && (!needed.private || self.private)
                && (!needed.link_local || self.link_local)
        })
    }

    /// The policy as `--webhook-allow` spells it.
    pub fn describe(&self) -> String {
        let ranges: Vec<&str> =
            [(self.loopback, "loopback"), (self.private, "private"), (self.link_local, "link-local")]
                .into_iter()
                .filter_map(|(on, name)| on.then_some(name))
                .collect();
        if ranges.is_empty() { "none".to_owned() } else { ranges.join(",") }
    }
}

const LOOPBACK: TargetPolicy = TargetPolicy { loopback: true, private: false, link_local: false };
const PRIVATE: TargetPolicy = TargetPolicy { loopback: false, private: true, link_local: false };
const LINK_LOCAL: TargetPolicy = TargetPolicy { loopback: false, private: false, link_local: true };
const PUBLIC: TargetPolicy = TargetPolicy { loopback: false, private: false, link_local: false };

/// The ranges an operator must allow for a call to reach `ip`; `None` when nothing may
/// (unspecified, multicast, broadcast, reserved and documentation addresses).
fn needs(ip: IpAddr) -> Option<TargetPolicy> {
    match ip {
        IpAddr::V4(v4) => needs_v4(v4),
        IpAddr::V6(v6) => needs_v6(v6),
    }
}

fn needs_v4(ip: Ipv4Addr) -> Option<TargetPolicy> {
    let [a, b, c, _] = ip.octets();
    if METADATA_V4.contains(&ip) {
        return Some(LINK_LOCAL);
    }
    let never = a == 0 // "this network", 0.0.0.0 included (Linux connects it to this machine)
        || a >= 224 // multicast, reserved and broadcast
        || (a, b, c) == (192, 0, 0) // IETF protocol assignments
        || (a, b, c) == (192, 0, 2) // documentation (TEST-NET-1)
        || (a, b, c) == (198, 51, 100) // documentation (TEST-NET-2)
        || (a, b, c) == (203, 0, 113) // documentation (TEST-NET-3)
        || (a, b, c) == (192, 88, 99); // the deprecated 6to4 relay anycast
    if never {
        return None;
    }
    if a == 127 {
        return Some(LOOPBACK);
    }
    if a == 169 && b == 254 {
        return Some(LINK_LOCAL);
    }
    let private = a == 10
        || (a == 172 && (16..32).contains(&b))
        || (a == 192 && b == 168)
        || (a == 100 && (64..128).contains(&b)) // shared address space (carrier NAT)
        || (a == 198 && (18..20).contains(&b)); // benchmarking, used as a private network
    Some(if private { PRIVATE } else { PUBLIC })
}

fn embedded_v4(high: u16, low: u16) -> Ipv4Addr {
    let [a, b] = high.to_be_bytes();
    let [c, d] = low.to_be_bytes();
    Ipv4Addr::new(a, b, c, d)
}

fn union(a: Option<TargetPolicy>, b: Option<TargetPolicy>) -> Option<TargetPolicy> {
    let (a, b) = (a?, b?);
    Some(TargetPolicy {
        loopback: a.loopback || b.loopback,
        private: a.private || b.private,
        link_local: a.link_local || b.link_local,
    })
}

fn needs_v6(ip: Ipv6Addr) -> Option<TargetPolicy> {
    let s = ip.segments();
    let last_v4 = embedded_v4(s[6], s[7]);
    if ip.is_unspecified() {
        return None;
    }
    if ip.is_loopback() {
        return Some(LOOPBACK);
    }
    if ip == METADATA_V6 {
        return Some(LINK_LOCAL);
    }
    match s {
        // IPv4-mapped (::ffff:a.b.c.d) and IPv4-translated (::ffff:0:a.b.c.d): the IPv4 address.
        [0, 0, 0, 0, 0, 0xffff, _, _] | [0, 0, 0, 0, 0xffff, 0, _, _] => needs_v4(last_v4),
        // IPv4-compatible (::a.b.c.d), deprecated since 2006: nothing legitimate uses it.
        [0, 0, 0, 0, 0, 0, _, _] => None,
        // NAT64, well-known prefix: where the translator sends it, the IPv4 address.
        [0x64, 0xff9b, 0, 0, 0, 0, _, _] => needs_v4(last_v4),
        // NAT64, local-use prefix: a private network, and whatever IPv4 address it embeds.
        [0x64, 0xff9b, 1, ..] => union(Some(PRIVATE), needs_v4(last_v4)),
        // 6to4: the IPv4 address of the site.
        [0x2002, high, low, ..] => needs_v4(embedded_v4(high, low)),
        // Teredo: the server's IPv4 address, and the client's (stored inverted).
        [0x2001, 0, server_high, server_low, _, _, client_high, client_low] => {
            union(needs_v4(embedded_v4(server_high, server_low)), needs_v4(embedded_v4(!client_high, !client_low)))
        }
        // Benchmarking (2001:2::/48), used as a private network.
        [0x2001, 2, 0, ..] => Some(PRIVATE),
        // The rest of the IETF protocol assignments (2001::/23), documentation (2001:db8::/32
        // and 3fff::/20) and the discard prefix (100::/64).
        [0x2001, 0..=0x1ff, ..] | [0x2001, 0xdb8, ..] | [0x3fff, 0..=0x0fff, ..] | [0x100, 0, 0, 0, ..] => None,
        [first, ..] if first & 0xff00 == 0xff00 => None, // multicast
        [first, ..] if first & 0xffc0 == 0xfe80 => Some(LINK_LOCAL),
        [first, ..] if first & 0xffc0 == 0xfec0 => Some(PRIVATE), // site-local, deprecated
        [first, ..] if first & 0xfe00 == 0xfc00 => Some(PRIVATE), // unique local
        _ => Some(PUBLIC),
    }
}

/// Why a URL cannot be a webhook target.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    #[error("must be an absolute http:// or https:// URL of at most 2048 characters")]
    Malformed,
    #[error("must not carry credentials; authenticate with the signature instead")]
    Credentials,
    #[error("the address {0} is not allowed (loopback, private, link-local and metadata addresses are refused)")]
    Forbidden(IpAddr),
    #[error("the host resolves to no allowed address")]
    NoAllowedAddress,
    #[error("the host cannot be resolved: {0}")]
    Unresolvable(String),
}

/// Parses and checks a webhook URL; resolves its host to check every address.
pub async fn check_url(raw: &str, policy: TargetPolicy) -> Result<Url, TargetError> {
    let url = parse(raw)?;
    match url.host() {
        Some(url::Host::Ipv4(ip)) => permit_literal(IpAddr::V4(ip), policy)?,
        Some(url::Host::Ipv6(ip)) => permit_literal(IpAddr::V6(ip), policy)?,
        Some(url::Host::Domain(host)) => {
            let port = url.port_or_known_default().unwrap_or(443);
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
                .await
                .map_err(|e| TargetError::Unresolvable(e.to_string()))?
                .collect();
            if let Some(bad) = addrs.iter().find(|a| !policy.permits(a.ip())) {
                return Err(TargetError::Forbidden(bad.ip()));
            }
            if addrs.is_empty() {
                return Err(TargetError::NoAllowedAddress);
            }
        }
        None => return Err(TargetError::Malformed),
    }
    Ok(url)
}

fn parse(raw: &str) -> Result<Url, TargetError> {
    if raw.len() > 2048 {
        return Err(TargetError::Malformed);
    }
    let url = Url::parse(raw).map_err(|_| TargetError::Malformed)?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err(TargetError::Malformed);
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(TargetError::Credentials);
    }
    Ok(url)
}

fn permit_literal(ip: IpAddr, policy: TargetPolicy) -> Result<(), TargetError> {
    if policy.permits(ip) { Ok(()) } else { Err(TargetError::Forbidden(ip)) }
}

/// Checks a URL's literal IP host at call time (hostnames go through [`GuardedResolver`]).
pub fn check_literal_host(url: &Url, policy: TargetPolicy) -> Result<(), TargetError> {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => permit_literal(IpAddr::V4(ip), policy),
        Some(url::Host::Ipv6(ip)) => permit_literal(IpAddr::V6(ip), policy),
        _ => Ok(()),
    }
}

/// The resolver of the webhook client: the system's, minus every address the policy refuses.
#[derive(Debug, Clone, Copy)]
pub struct GuardedResolver(pub TargetPolicy);

type Resolving = Pin<Box<dyn Future<Output = std::io::Result<std::vec::IntoIter<SocketAddr>>> + Send>>;

impl tower_service::Service<Name> for GuardedResolver {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = std::io::Error;
    type Future = Resolving;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: Name) -> Self::Future {
        let policy = self.0;
        Box::pin(async move {
            let resolved = tokio::net::lookup_host((name.as_str(), 0)).await?;
            let allowed: Vec<SocketAddr> = resolved.filter(|a| policy.permits(a.ip())).collect();
            if allowed.is_empty() {
                return Err(std::io::Error::new(std::io::ErrorKind::PermissionDenied, TargetError::NoAllowedAddress));
            }
            Ok(allowed.into_iter())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    fn allow(ranges: &str) -> TargetPolicy {
        let mut policy = TargetPolicy::default();
        for range in ranges.split(',') {
            match range {
                "loopback" => policy.loopback = true,
                "private" => policy.private = true,
                "link-local" => policy.link_local = true,
                _ => {}
            }
        }
        policy
    }

    /// Every form of an address, and the ranges that must be allowed for it ("never": none
    /// may; "" : public).
    const CASES: &[(&str, &str)] = &[
        // IPv4
        ("127.0.0.1", "loopback"),
        ("127.255.0.9", "loopback"),
        ("10.1.2.3", "private"),
        ("172.20.0.1", "private"),
        ("192.168.1.1", "private"),
        ("100.64.0.1", "private"),
        ("198.18.0.1", "private"),
        ("169.254.1.1", "link-local"),
        ("169.254.169.254", "link-local"),
        ("100.100.100.200", "link-local"),
        ("168.63.129.16", "link-local"),
        ("0.0.0.0", "never"),
        ("0.1.2.3", "never"),
        ("224.0.0.1", "never"),
        ("239.255.255.250", "never"),
        ("240.0.0.1", "never"),
        ("255.255.255.255", "never"),
        ("192.0.0.170", "never"),
        ("192.0.2.1", "never"),
        ("198.51.100.7", "never"),
        ("203.0.113.9", "never"),
        ("192.88.99.1", "never"),
        ("93.184.216.34", ""),
        ("100.128.0.1", ""),
        ("172.32.0.1", ""),
        ("198.20.0.1", ""),
        // IPv6
        ("::1", "loopback"),
        ("::", "never"),
        ("fe80::1", "link-local"),
        ("fd00:ec2::254", "link-local"),
        ("fc00::1", "private"),
        ("fd12:3456::1", "private"),
        ("fec0::1", "private"),
        ("ff02::1", "never"),
        ("2001:db8::1", "never"),
        ("3fff::1", "never"),
        ("100::1", "never"),
        ("2001:2::1", "private"),
        ("2001:10::1", "never"),
        ("2606:2800:220:1::1", ""),
        // IPv4-mapped and IPv4-translated
        ("::ffff:127.0.0.1", "loopback"),
        ("::ffff:10.0.0.1", "private"),
        ("::ffff:169.254.169.254", "link-local"),
        ("::ffff:0.0.0.0", "never"),
        ("::ffff:93.184.216.34", ""),
        ("::ffff:0:127.0.0.1", "loopback"),
        // IPv4-compatible (deprecated)
        ("::127.0.0.1", "never"),
        ("::169.254.169.254", "never"),
        ("::93.184.216.34", "never"),
        // NAT64
        ("64:ff9b::127.0.0.1", "loopback"),
        ("64:ff9b::10.0.0.1", "private"),
        ("64:ff9b::169.254.169.254", "link-local"),
        ("64:ff9b::93.184.216.34", ""),
        ("64:ff9b:1::93.184.216.34", "private"),
        ("64:ff9b:1::127.0.0.1", "loopback,private"),
        ("64:ff9b:1::169.254.169.254", "private,link-local"),
        // 6to4 (2002:AABB:CCDD::/48 embeds AA.BB.CC.DD)
        ("2002:7f00:1::1", "loopback"),
        ("2002:a9fe:a9fe::1", "link-local"),
        ("2002:0a00:0001::1", "private"),
        ("2002:5db8:d822::1", ""),
        // Teredo: server 65.54.227.120; client stored inverted (!127.0.0.1 = 80ff:fffe)
        ("2001:0:4136:e378:8000:63bf:80ff:fffe", "loopback"),
        ("2001:0:4136:e378:8000:63bf:5601:5601", "link-local"),
        ("2001:0:7f00:1:8000:63bf:a247:27dd", "loopback"),
        ("2001:0:4136:e378:8000:63bf:a247:27dd", ""),
    ];

    #[test]
    fn every_address_form_needs_its_range() {
        let every = [
            "",
            "loopback",
            "private",
            "link-local",
            "loopback,private",
            "private,link-local",
            "loopback,private,link-local",
        ];
        for (address, needed) in CASES {
            let address = ip(address);
            assert_eq!(needs(address).is_none(), *needed == "never", "{address}: never?");
            for ranges in every {
                let granted = allow(ranges);
                let expected = *needed != "never"
                    && needed.split(',').filter(|n| !n.is_empty()).all(|n| ranges.split(',').any(|r| r == n));
                assert_eq!(granted.permits(address), expected, "{address} with --webhook-allow {ranges:?}");
            }
        }
    }

    #[test]
    fn the_default_policy_refuses_internal_addresses_and_metadata_needs_link_local() {
        let strict = TargetPolicy::default();
        assert!(!strict.permits(ip("127.0.0.1")) && !strict.permits(ip("::1")));
        let dev = TargetPolicy::development();
        assert!(dev.permits(ip("127.0.0.1")) && dev.permits(ip("10.0.0.1")) && dev.permits(ip("fd12::1")));
        for metadata in ["169.254.169.254", "fd00:ec2::254", "100.100.100.200", "::ffff:169.254.169.254"] {
            assert!(!dev.permits(ip(metadata)), "{metadata} is not a private address");
            assert!(allow("link-local").permits(ip(metadata)), "{metadata} with link-local");
        }
        assert_eq!(TargetPolicy::default().describe(), "none");
        assert_eq!(dev.describe(), "loopback,private");
    }

    #[tokio::test]
    async fn urls_are_checked() {
        let strict = TargetPolicy::default();
        assert_eq!(check_url("ftp://example.com/x", strict).await, Err(TargetError::Malformed));
        assert_eq!(check_url("not a url", strict).await, Err(TargetError::Malformed));
        assert_eq!(check_url("https://u:p@example.com/", strict).await, Err(TargetError::Credentials));
        assert_eq!(check_url("http://127.0.0.1:9/hook", strict).await, Err(TargetError::Forbidden(ip("127.0.0.1"))));
        // Other spellings of an IPv4 address are parsed as one.
        for spelling in ["http://2130706433/", "http://0x7f.1/", "http://0177.0.0.1/", "http://127.1/"] {
            assert_eq!(check_url(spelling, strict).await, Err(TargetError::Forbidden(ip("127.0.0.1"))), "{spelling}");
        }
        assert_eq!(
            check_url("http://[::ffff:169.254.169.254]/latest", strict).await,
            Err(TargetError::Forbidden(ip("::ffff:169.254.169.254")))
        );
        assert!(matches!(check_url("http://[64:ff9b::a9fe:a9fe]/", strict).await, Err(TargetError::Forbidden(_))));
        assert!(matches!(check_url("http://localhost:9/hook", strict).await, Err(TargetError::Forbidden(_))));
        assert!(check_url("http://127.0.0.1:9/hook", TargetPolicy::development()).await.is_ok());
    }

    #[tokio::test]
    async fn the_resolver_drops_refused_addresses() {
        use tower_service::Service as _;
        let name: Name = "localhost".parse().expect("name");
        let refused = GuardedResolver(TargetPolicy::default()).call(name.clone()).await;
        let err = refused.expect_err("localhost is loopback");
        assert_eq!(err.kind(), std::io::ErrorKind::PermissionDenied);
        let allowed = GuardedResolver(allow("loopback")).call(name).await.expect("allowed");
        assert!(allowed.into_iter().all(|a| a.ip().is_loopback()));
    }
}

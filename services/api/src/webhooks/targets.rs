//! Where webhooks may be sent: never to this machine, the cluster's private network, link-local
//! addresses or a cloud metadata service — unless the operator allows it (`signalbox serve`
//! allows loopback and private addresses, for local development).
//!
//! URLs are checked when a webhook is saved, and every address is checked again when a call
//! resolves its host (so a DNS answer that changes to 127.0.0.1 later is still refused).

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::task::{Context, Poll};

use hyper_util::client::legacy::connect::dns::Name;
use url::Url;

/// Which address ranges the operator allows webhooks to reach.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TargetPolicy {
    /// 127.0.0.0/8 and ::1.
    pub loopback: bool,
    /// 10/8, 172.16/12, 192.168/16, 100.64/10 (shared), fc00::/7.
    pub private: bool,
    /// 169.254/16 and fe80::/10, where cloud metadata services live.
    pub link_local: bool,
}

impl TargetPolicy {
    /// Everything reachable (for local development).
    pub fn development() -> Self {
        Self { loopback: true, private: true, link_local: false }
    }

    /// Whether a call may go to `ip`.
    pub fn permits(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
            v4 => v4,
        };
        match ip {
            IpAddr::V4(v4) => self.permits_v4(v4),
            IpAddr::V6(v6) => self.permits_v6(v6),
        }
    }

    fn permits_v4(&self, ip: Ipv4Addr) -> bool {
        let [a, b, ..] = ip.octets();
        if ip.is_unspecified() || ip.is_broadcast() || ip.is_multicast() || a == 0 {
            return false;
        }
        if ip.is_loopback() {
            return self.loopback;
        }
        if ip.is_link_local() {
            return self.link_local;
        }
        let shared = a == 100 && (64..128).contains(&b);
        if ip.is_private() || shared {
            return self.private;
        }
        true
    }

    fn permits_v6(&self, ip: Ipv6Addr) -> bool {
        let first = ip.segments()[0];
        if ip.is_unspecified() || ip.is_multicast() {
            return false;
        }
        if ip.is_loopback() {
            return self.loopback;
        }
        if first & 0xffc0 == 0xfe80 {
            return self.link_local;
        }
        if first & 0xfe00 == 0xfc00 {
            // Unique local, where AWS's IPv6 metadata service (fd00:ec2::254) lives too.
            return self.private && ip != Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254);
        }
        true
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

    #[test]
    fn the_default_policy_refuses_internal_addresses() {
        let strict = TargetPolicy::default();
        for bad in [
            "127.0.0.1",
            "::1",
            "10.1.2.3",
            "172.20.0.1",
            "192.168.1.1",
            "100.64.0.1",
            "169.254.169.254",
            "fe80::1",
            "fd00:ec2::254",
            "fc00::1",
            "0.0.0.0",
            "::",
            "224.0.0.1",
            "255.255.255.255",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
        ] {
            assert!(!strict.permits(ip(bad)), "{bad}");
        }
        for good in ["93.184.216.34", "2606:2800:220:1::1", "100.128.0.1", "172.32.0.1"] {
            assert!(strict.permits(ip(good)), "{good}");
        }
    }

    #[test]
    fn the_operator_can_allow_ranges_but_never_metadata_by_private() {
        let dev = TargetPolicy::development();
        assert!(dev.permits(ip("127.0.0.1")) && dev.permits(ip("10.0.0.1")) && dev.permits(ip("fd12::1")));
        assert!(!dev.permits(ip("169.254.169.254")), "link-local stays off unless named");
        assert!(!dev.permits(ip("fd00:ec2::254")), "the metadata address is not a private one");
        let link_local = TargetPolicy { link_local: true, ..TargetPolicy::default() };
        assert!(link_local.permits(ip("169.254.169.254")));
    }

    #[tokio::test]
    async fn urls_are_checked() {
        let strict = TargetPolicy::default();
        assert_eq!(check_url("ftp://example.com/x", strict).await, Err(TargetError::Malformed));
        assert_eq!(check_url("not a url", strict).await, Err(TargetError::Malformed));
        assert_eq!(check_url("https://u:p@example.com/", strict).await, Err(TargetError::Credentials));
        assert_eq!(check_url("http://127.0.0.1:9/hook", strict).await, Err(TargetError::Forbidden(ip("127.0.0.1"))));
        assert_eq!(
            check_url("http://[::ffff:169.254.169.254]/latest", strict).await,
            Err(TargetError::Forbidden(ip("::ffff:169.254.169.254")))
        );
        assert!(matches!(check_url("http://localhost:9/hook", strict).await, Err(TargetError::Forbidden(_))));
        assert!(check_url("http://127.0.0.1:9/hook", TargetPolicy::development()).await.is_ok());
    }
}

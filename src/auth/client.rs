//! Who is asking: the client's network address, for per-address throttling.
//!
//! The socket's peer is the client unless a proxy sits in front of every
//! instance; then the peer is the proxy, and the client's address is in a
//! header that proxy sets. Such a header is trusted only when configured
//! (`PODFORGE_TRUSTED_PROXY`): without a proxy anyone can send it, and an
//! attacker would pick a fresh address for every attempt.

use std::net::{IpAddr, Ipv6Addr};

use crate::config::TrustedProxy;

/// The client address of a request, as request data for the resolvers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr(pub IpAddr);

/// The client's address: from the trusted proxy's header (`header(name)`
/// looks one up) when configured and present and valid, else the peer's.
/// `X-Forwarded-For` gives its last entry, the address the proxy itself saw.
pub fn client_addr<'h>(
    peer: Option<IpAddr>,
    trusted: TrustedProxy,
    header: impl Fn(&str) -> Option<&'h str>,
) -> Option<ClientAddr> {
    let from_proxy = match trusted {
        TrustedProxy::None => None,
        TrustedProxy::XForwardedFor => header("x-forwarded-for").and_then(|v| v.rsplit(',').next()),
        TrustedProxy::FlyClientIp => header("fly-client-ip"),
    }
    .and_then(|v| v.trim().parse::<IpAddr>().ok());
    from_proxy.or(peer).map(|ip| ClientAddr(canonical(ip)))
}

/// IPv4-mapped IPv6 addresses as IPv4.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

impl ClientAddr {
    /// The throttle's key for this address: the address itself for IPv4,
    /// its /64 network for IPv6 (one subscriber usually holds a whole /64).
    pub fn bucket_key(&self) -> String {
        match self.0 {
            IpAddr::V4(v4) => v4.to_string(),
            IpAddr::V6(v6) => {
                let s = v6.segments();
                format!("{}/64", Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<&'a str> {
        move |name| pairs.iter().find(|(k, _)| *k == name).map(|(_, v)| *v)
    }

    #[test]
    fn proxy_headers_count_only_when_trusted() {
        let peer = Some("10.0.0.5".parse().unwrap());
        let sent = [
            ("x-forwarded-for", "198.51.100.1, 203.0.113.9"),
            ("fly-client-ip", "192.0.2.44"),
        ];
        let at = |t| client_addr(peer, t, headers(&sent)).unwrap().0.to_string();
        assert_eq!(at(TrustedProxy::None), "10.0.0.5");
        assert_eq!(at(TrustedProxy::XForwardedFor), "203.0.113.9", "the proxy's own entry");
        assert_eq!(at(TrustedProxy::FlyClientIp), "192.0.2.44");
        // A missing or malformed header falls back to the peer.
        let junk = [("x-forwarded-for", "not an address")];
        assert_eq!(
            client_addr(peer, TrustedProxy::XForwardedFor, headers(&junk))
                .unwrap()
                .0
                .to_string(),
            "10.0.0.5"
        );
        assert_eq!(client_addr(None, TrustedProxy::None, headers(&[])), None);
    }

    #[test]
    fn ipv6_clients_are_bucketed_by_their_64() {
        let a = client_addr(
            Some("2001:db8:1:2:aaaa::1".parse().unwrap()),
            TrustedProxy::None,
            headers(&[]),
        )
        .unwrap();
        let b = client_addr(
            Some("2001:db8:1:2:bbbb::7".parse().unwrap()),
            TrustedProxy::None,
            headers(&[]),
        )
        .unwrap();
        assert_eq!(a.bucket_key(), b.bucket_key());
        assert_eq!(a.bucket_key(), "2001:db8:1:2::/64");
        let mapped = client_addr(
            Some("::ffff:192.0.2.1".parse().unwrap()),
            TrustedProxy::None,
            headers(&[]),
        )
        .unwrap();
        assert_eq!(mapped.bucket_key(), "192.0.2.1");
    }
}

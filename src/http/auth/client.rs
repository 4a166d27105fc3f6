//! Who a request comes from, for the failure budgets: the TCP peer's address, or, only when that peer
//! is a proxy named in `server.trusted_proxies`, the address the proxy says it forwarded for.
//!
//! `X-Forwarded-For` is written by whoever sends the request, so it is believed only from a trusted
//! proxy, and read from the right: the nearest address that is not itself a trusted proxy is the
//! client (the left part is whatever the client claimed). With no trusted proxy (the default) the
//! header is ignored. Behind a proxy that is not listed, every client looks like the proxy and shares
//! one budget: safe, but one guesser then holds back everyone.

use std::fmt;
use std::net::{IpAddr, Ipv6Addr};

use axum::http::HeaderMap;

use crate::config::IpNet;

/// What a client is counted as: its IPv4 address, or the /64 of its IPv6 address (one host usually
/// holds a whole /64).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClientKey(IpAddr);

impl ClientKey {
    pub fn of(ip: IpAddr) -> Self {
        match ip.to_canonical() {
            IpAddr::V6(v6) => {
                let net = u128::from(v6) & !(u128::MAX >> 64);
                Self(IpAddr::V6(Ipv6Addr::from(net)))
            }
            v4 => Self(v4),
        }
    }
}

/// Shown in log lines: the address, or the IPv6 network.
impl fmt::Display for ClientKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            IpAddr::V6(net) => write!(f, "{net}/64"),
            v4 => write!(f, "{v4}"),
        }
    }
}

/// The client of a request from `peer` (`None`: unknown, when a test calls the routes without a
/// socket) with `headers`, given the `trusted` proxies.
pub fn client_of(peer: Option<IpAddr>, headers: &HeaderMap, trusted: &[IpNet]) -> ClientKey {
    let unknown = IpAddr::V6(Ipv6Addr::UNSPECIFIED);
    let Some(peer) = peer else {
        return ClientKey::of(unknown);
    };
    let is_trusted = |ip: IpAddr| trusted.iter().any(|n| n.contains(ip));
    if !is_trusted(peer) {
        return ClientKey::of(peer);
    }
    // Every X-Forwarded-For header in order, each a comma-separated list: nearest hop last.
    let hops: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect();
    for hop in hops.iter().rev() {
        match hop.parse::<IpAddr>() {
            Ok(ip) if is_trusted(ip) => continue,
            Ok(ip) => return ClientKey::of(ip),
            // A hop we cannot read: what is left of it is the client's own claim. The last proxy
            // we trust is as far as we can tell.
            Err(_) => break,
        }
    }
    ClientKey::of(peer)
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    fn with_xff(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append("x-forwarded-for", HeaderValue::from_str(v).expect("header"));
        }
        h
    }

    #[test]
    fn ipv6_clients_are_counted_by_their_64() {
        assert_eq!(
            ClientKey::of(ip("2001:db8:1:2:aaaa::1")),
            ClientKey::of(ip("2001:db8:1:2:bbbb::9"))
        );
        assert_ne!(
            ClientKey::of(ip("2001:db8:1:2::1")),
            ClientKey::of(ip("2001:db8:1:3::1"))
        );
        assert_eq!(
            ClientKey::of(ip("2001:db8:1:2::1")).to_string(),
            "2001:db8:1:2::/64"
        );
        assert_eq!(
            ClientKey::of(ip("::ffff:192.0.2.1")),
            ClientKey::of(ip("192.0.2.1"))
        );
    }

    #[test]
    fn x_forwarded_for_is_believed_only_from_a_trusted_proxy_read_from_the_right() {
        let proxy = ip("10.0.0.2");
        let trusted: Vec<IpNet> = vec!["10.0.0.0/24".parse().expect("net")];
        let spoofed = with_xff(&["203.0.113.9"]);
        // Not trusted (the default): the header is ignored.
        assert_eq!(client_of(Some(proxy), &spoofed, &[]), ClientKey::of(proxy));
        let direct = ip("198.51.100.4");
        assert_eq!(
            client_of(Some(direct), &spoofed, &trusted),
            ClientKey::of(direct)
        );
        // From the proxy: the nearest untrusted hop, whatever the client put on the left.
        let h = with_xff(&["1.1.1.1, 203.0.113.9", "10.0.0.7"]);
        assert_eq!(
            client_of(Some(proxy), &h, &trusted),
            ClientKey::of(ip("203.0.113.9"))
        );
        // Garbage or nothing: the proxy itself.
        assert_eq!(
            client_of(Some(proxy), &with_xff(&["unknown"]), &trusted),
            ClientKey::of(proxy)
        );
        assert_eq!(
            client_of(Some(proxy), &HeaderMap::new(), &trusted),
            ClientKey::of(proxy)
        );
        assert_eq!(
            client_of(None, &spoofed, &trusted),
            ClientKey::of(IpAddr::V6(Ipv6Addr::UNSPECIFIED))
        );
    }
}

//! The client's address (issue 8 §1): the TCP peer, or, when the peer is a trusted reverse proxy
//! (`[server] trusted_proxies`), the rightmost address in `X-Forwarded-For` that is not itself a trusted proxy.
//! The throttle and the audit use it.
//!
//! `X-Forwarded-For` from any other peer is ignored: a client can write whatever it likes there. This module
//! does not read `Forwarded` (RFC 7239) or `X-Real-IP`; a proxy is expected to append to `X-Forwarded-For`
//! (nginx `$proxy_add_x_forwarded_for`, Caddy and HAProxy by default).

use std::net::IpAddr;
use std::str::FromStr;

use axum::http::HeaderMap;

/// An address block (`10.0.0.0/8`, `fd00::/8`) or a single address (`127.0.0.1`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    net: IpAddr,
    prefix: u8,
}

/// Why a `trusted_proxies` entry is not an address or block.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0:?} is not an IP address or CIDR block, e.g. \"10.0.0.1\" or \"10.0.0.0/8\"")]
pub struct CidrError(String);

impl FromStr for Cidr {
    type Err = CidrError;
    fn from_str(s: &str) -> Result<Cidr, CidrError> {
        let bad = || CidrError(s.to_owned());
        let (addr, prefix) = match s.trim().split_once('/') {
            Some((a, p)) => (a, Some(p.parse::<u8>().map_err(|_| bad())?)),
            None => (s.trim(), None),
        };
        let net = addr.parse::<IpAddr>().map_err(|_| bad())?.to_canonical();
        let max = if net.is_ipv4() { 32 } else { 128 };
        let prefix = prefix.unwrap_or(max);
        if prefix > max {
            return Err(bad());
        }
        Ok(Cidr { net, prefix })
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.net, self.prefix)
    }
}

impl Cidr {
    /// Whether `ip` lies in this block (IPv4-mapped IPv6 addresses count as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.net, ip.to_canonical()) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.prefix)).unwrap_or(0);
                u32::from(n) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(self.prefix)).unwrap_or(0);
                u128::from(n) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

/// One `X-Forwarded-For` entry: an address, possibly with a port (`1.2.3.4:5`, `[::1]:5`).
fn parse_hop(s: &str) -> Option<IpAddr> {
    let s = s.trim();
    s.parse::<IpAddr>()
        .ok()
        .or_else(|| s.parse::<std::net::SocketAddr>().ok().map(|a| a.ip()))
        .map(|a| a.to_canonical())
}

/// The client's address: the peer itself unless it is a trusted proxy; then the rightmost untrusted hop of
/// `X-Forwarded-For`. An unreadable hop stops the walk at the last trusted one (never believe what lies beyond it).
pub fn client_address(peer: Option<IpAddr>, headers: &HeaderMap, trusted: &[Cidr]) -> Option<IpAddr> {
    let peer = peer?.to_canonical();
    let is_trusted = |ip: IpAddr| trusted.iter().any(|c| c.contains(ip));
    if !is_trusted(peer) {
        return Some(peer);
    }
    let hops: Vec<&str> =
        headers.get_all("x-forwarded-for").iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(',')).collect();
    let mut client = peer;
    for hop in hops.iter().rev() {
        match parse_hop(hop) {
            Some(ip) if is_trusted(ip) => client = ip,
            Some(ip) => return Some(ip),
            None => break,
        }
    }
    Some(client)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nets(list: &[&str]) -> Vec<Cidr> {
        list.iter().map(|s| s.parse().unwrap()).collect()
    }

    fn xff(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", v.parse().unwrap());
        h
    }

    #[test]
    fn blocks_parse_and_contain() {
        let n: Cidr = "10.0.0.0/8".parse().unwrap();
        assert!(n.contains("10.255.0.1".parse().unwrap()));
        assert!(!n.contains("11.0.0.1".parse().unwrap()));
        assert!(n.contains("::ffff:10.0.0.1".parse().unwrap()));
        let one: Cidr = "::1".parse().unwrap();
        assert!(one.contains("::1".parse().unwrap()) && !one.contains("::2".parse().unwrap()));
        assert!("0.0.0.0/0".parse::<Cidr>().unwrap().contains("8.8.8.8".parse().unwrap()));
        for bad in ["", "10.0.0.0/33", "example.org", "10.0.0.0/x", "::/129"] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad}");
        }
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_peers() {
        let trusted = nets(&["127.0.0.1", "10.0.0.0/8"]);
        let peer = "127.0.0.1".parse().ok();
        let stranger = "192.0.2.1".parse().ok();
        // The rightmost untrusted hop is the client; what lies left of it may be forged.
        assert_eq!(
            client_address(peer, &xff("6.6.6.6, 198.51.100.7, 10.0.0.5"), &trusted),
            "198.51.100.7".parse().ok()
        );
        assert_eq!(client_address(peer, &xff("198.51.100.7:4711"), &trusted), "198.51.100.7".parse().ok());
        assert_eq!(client_address(stranger, &xff("198.51.100.7"), &trusted), stranger);
        assert_eq!(client_address(peer, &xff("198.51.100.7"), &[]), peer);
        assert_eq!(client_address(peer, &HeaderMap::new(), &trusted), peer);
        assert_eq!(client_address(peer, &xff("garbage, 10.0.0.5"), &trusted), "10.0.0.5".parse().ok());
        assert_eq!(client_address(None, &xff("198.51.100.7"), &trusted), None);
    }
}

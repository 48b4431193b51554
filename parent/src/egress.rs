//! Which destinations the SOCKS5 proxy may connect to. The enclave reaches
//! the internet only through the parent, so the parent must not become a way
//! into the host's own network: loopback, private, shared, link-local
//! (including the instance metadata service at 169.254.169.254), multicast,
//! broadcast, reserved and unspecified addresses are refused unless an
//! operator allows one explicitly (a local relay in development).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;

/// One allow-list entry: an address, or an address and port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Allowed {
    /// Any port on this address.
    Ip(IpAddr),
    /// This address and port only.
    Socket(SocketAddr),
}

impl FromStr for Allowed {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if let Ok(sock) = s.parse::<SocketAddr>() {
            return Ok(Self::Socket(sock));
        }
        s.parse::<IpAddr>()
            .map(Self::Ip)
            .map_err(|_| format!("{s:?} is not an IP address or IP:PORT"))
    }
}

impl fmt::Display for Allowed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Ip(ip) => write!(f, "{ip}"),
            Self::Socket(s) => write!(f, "{s}"),
        }
    }
}

/// The proxy's egress rule: public addresses, plus an explicit allow-list.
#[derive(Debug, Clone, Default)]
pub struct EgressPolicy {
    allowed: Vec<Allowed>,
}

impl EgressPolicy {
    /// Public addresses only, plus `allowed`.
    pub fn new(allowed: Vec<Allowed>) -> Self {
        Self { allowed }
    }

    /// Whether the proxy may connect to `addr`; `Err` says why not.
    pub fn check(&self, addr: SocketAddr) -> Result<(), &'static str> {
        let listed = self.allowed.iter().any(|a| match a {
            Allowed::Ip(ip) => canonical(*ip) == canonical(addr.ip()),
            Allowed::Socket(s) => {
                canonical(s.ip()) == canonical(addr.ip()) && s.port() == addr.port()
            }
        });
        if listed {
            return Ok(());
        }
        if addr.port() == 0 {
            return Err("port 0");
        }
        match non_public(canonical(addr.ip())) {
            Some(why) => Err(why),
            None => Ok(()),
        }
    }
}

/// IPv4-mapped IPv6 addresses are judged as the IPv4 address they carry.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// Why an address is not a public internet address, if it is not.
fn non_public(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => non_public_v4(v4),
        IpAddr::V6(v6) => non_public_v6(v6),
    }
}

fn non_public_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, ..] = ip.octets();
    if ip.is_unspecified() || a == 0 {
        Some("unspecified or \"this network\" address")
    } else if ip.is_loopback() {
        Some("loopback address")
    } else if ip.is_private() {
        Some("private address")
    } else if a == 100 && (64..128).contains(&b) {
        Some("shared (carrier-grade NAT) address")
    } else if ip.is_link_local() {
        Some("link-local address (includes the instance metadata service)")
    } else if ip.is_multicast() {
        Some("multicast address")
    } else if ip.is_broadcast() || a >= 240 {
        Some("reserved or broadcast address")
    } else {
        None
    }
}

fn non_public_v6(ip: Ipv6Addr) -> Option<&'static str> {
    let first = ip.segments().first().copied().unwrap_or(0);
    if ip.is_unspecified() {
        Some("unspecified address")
    } else if ip.is_loopback() {
        Some("loopback address")
    } else if ip.is_multicast() {
        Some("multicast address")
    } else if first & 0xfe00 == 0xfc00 {
        Some("unique local (private) address")
    } else if first & 0xffc0 == 0xfe80 || first & 0xffc0 == 0xfec0 {
        Some("link-local or site-local address")
    } else if let Some(v4) = ip.to_ipv4() {
        // IPv4-compatible (::a.b.c.d) and NAT-style embeddings.
        non_public_v4(v4).map(|_| "IPv6 address embedding a non-public IPv4 address")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(policy: &EgressPolicy, addr: &str) -> bool {
        policy.check(addr.parse().unwrap()).is_ok()
    }

    #[test]
    fn refuses_everything_but_public_addresses() {
        let p = EgressPolicy::default();
        for refused in [
            "127.0.0.1:443",
            "10.1.2.3:443",
            "172.16.0.1:443",
            "192.168.1.1:443",
            "169.254.169.254:80",
            "100.64.0.1:443",
            "0.0.0.0:443",
            "224.0.0.1:443",
            "255.255.255.255:443",
            "240.0.0.1:443",
            "[::1]:443",
            "[::]:443",
            "[fd00::1]:443",
            "[fe80::1]:443",
            "[ff02::1]:443",
            "[::ffff:127.0.0.1]:443",
            "[::ffff:169.254.169.254]:80",
            "[::10.0.0.1]:443",
            "1.1.1.1:0",
        ] {
            assert!(!check(&p, refused), "{refused}");
        }
        for allowed in ["1.1.1.1:443", "8.8.8.8:80", "[2606:4700::1111]:443"] {
            assert!(check(&p, allowed), "{allowed}");
        }
    }

    #[test]
    fn allow_list_opens_exactly_what_it_names() {
        let p = EgressPolicy::new(vec![
            "127.0.0.1:7777".parse().unwrap(),
            "10.0.0.5".parse().unwrap(),
        ]);
        assert!(check(&p, "127.0.0.1:7777"));
        assert!(check(&p, "[::ffff:127.0.0.1]:7777"));
        assert!(!check(&p, "127.0.0.1:7778"));
        assert!(check(&p, "10.0.0.5:1"));
        assert!(!check(&p, "10.0.0.6:1"));
        assert!(!check(&p, "169.254.169.254:80"));
        assert!("localhost".parse::<Allowed>().is_err());
    }
}

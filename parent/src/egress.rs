//! Which destinations the SOCKS5 proxy may connect to. The enclave reaches
//! the internet only through the parent, so the parent must not become a way
//! into the host's own network: loopback, private, shared, link-local
//! (including the instance metadata service at 169.254.169.254), multicast,
//! broadcast, reserved, documentation and unspecified addresses are refused,
//! and so are IPv6 addresses that carry one of those inside them (IPv4-mapped
//! and -compatible, NAT64 `64:ff9b::/96`, 6to4 `2002::/16`) or that tunnel
//! to somewhere unknowable (Teredo `2001::/32`, local-use NAT64
//! `64:ff9b:1::/48`). Only the ports relays use, 443 (`wss://`) and 80
//! (`ws://`), are allowed. An operator opens anything else explicitly with
//! `--allow-egress`: an address, an address and port (a local relay in
//! development), or `*:PORT` for a port on any public address.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;

/// The ports relays listen on: `wss://` and `ws://` defaults.
pub const RELAY_PORTS: [u16; 2] = [443, 80];

/// One allow-list entry: an address, an address and port, or a port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Allowed {
    /// Any port on this address.
    Ip(IpAddr),
    /// This address and port only.
    Socket(SocketAddr),
    /// This port on any public address (`*:PORT`).
    Port(u16),
}

impl FromStr for Allowed {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if let Some(port) = s.strip_prefix("*:") {
            return match port.parse::<u16>() {
                Ok(0) | Err(_) => Err(format!("{s:?}: *:PORT takes a port from 1 to 65535")),
                Ok(port) => Ok(Self::Port(port)),
            };
        }
        if let Ok(sock) = s.parse::<SocketAddr>() {
            return Ok(Self::Socket(sock));
        }
        s.parse::<IpAddr>()
            .map(Self::Ip)
            .map_err(|_| format!("{s:?} is not an IP address, IP:PORT or *:PORT"))
    }
}

impl fmt::Display for Allowed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Ip(ip) => write!(f, "{ip}"),
            Self::Socket(s) => write!(f, "{s}"),
            Self::Port(p) => write!(f, "*:{p}"),
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
            Allowed::Port(_) => false,
        });
        if listed {
            return Ok(());
        }
        if addr.port() == 0 {
            return Err("port 0");
        }
        if let Some(why) = non_public(canonical(addr.ip())) {
            return Err(why);
        }
        let port_opened = self
            .allowed
            .iter()
            .any(|a| *a == Allowed::Port(addr.port()));
        if !RELAY_PORTS.contains(&addr.port()) && !port_opened {
            return Err("a port relays do not use (443 and 80 are allowed; --allow-egress *:PORT opens another)");
        }
        Ok(())
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
    } else if (a, b) == (192, 0) && ip.octets().get(2) == Some(&0) {
        Some("IETF protocol assignment (192.0.0.0/24)")
    } else if a == 198 && (b == 18 || b == 19) {
        Some("benchmarking address (198.18.0.0/15)")
    } else if ip.is_documentation() {
        Some("documentation address")
    } else if (a, b) == (192, 88) && ip.octets().get(2) == Some(&99) {
        Some("6to4 relay anycast address (192.88.99.0/24)")
    } else {
        None
    }
}

fn non_public_v6(ip: Ipv6Addr) -> Option<&'static str> {
    let [a, b, c, d, e, f, g, h] = ip.segments();
    let embedded = |hi: u16, lo: u16| Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo));
    let embeds = |v4: Ipv4Addr| {
        non_public_v4(v4).map(|_| "IPv6 address embedding a non-public IPv4 address")
    };
    if ip.is_unspecified() {
        Some("unspecified address")
    } else if ip.is_loopback() {
        Some("loopback address")
    } else if ip.is_multicast() {
        Some("multicast address")
    } else if a & 0xfe00 == 0xfc00 {
        Some("unique local (private) address")
    } else if a & 0xffc0 == 0xfe80 || a & 0xffc0 == 0xfec0 {
        Some("link-local or site-local address")
    } else if (a, b) == (0x0064, 0xff9b) && c == 1 {
        Some("local-use NAT64 address (64:ff9b:1::/48)")
    } else if (a, b, c, d, e, f) == (0x0064, 0xff9b, 0, 0, 0, 0) {
        // NAT64 (RFC 6052): the IPv4 address is the last 32 bits.
        embeds(embedded(g, h))
    } else if a == 0x2002 {
        // 6to4 (RFC 3056): the IPv4 address follows the prefix.
        embeds(embedded(b, c))
    } else if (a, b) == (0x2001, 0) {
        Some("Teredo tunnel address (2001::/32)")
    } else if (a, b) == (0x2001, 0x0db8)
        || (a == 0x3fff && b & 0xf000 == 0)
        || (a, b, c, d) == (0x0100, 0, 0, 0)
    {
        Some("documentation or discard-only address")
    } else if (a, b, c, d, e) == (0, 0, 0, 0, 0) && (f == 0 || f == 0xffff) {
        // IPv4-compatible (::a.b.c.d) and IPv4-mapped (::ffff:a.b.c.d).
        embeds(embedded(g, h))
    } else if (a, b, c, d, e, f) == (0, 0, 0, 0, 0xffff, 0) {
        // IPv4-translated (::ffff:0:a.b.c.d, RFC 2765).
        embeds(embedded(g, h))
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
            // NAT64, 6to4, Teredo and IPv4-translated carrying private IPv4.
            "[64:ff9b::a9fe:a9fe]:80",
            "[64:ff9b::7f00:1]:443",
            "[64:ff9b::10.0.0.1]:443",
            "[64:ff9b:1::8.8.8.8]:443",
            "[2002:a9fe:a9fe::1]:80",
            "[2002:c0a8:0101::]:443",
            "[2001:0:4136:e378:8000:63bf:3fff:fdd2]:443",
            "[::ffff:0:a00:1]:443",
            "[2001:db8::1]:443",
            "[3fff::1]:443",
            "192.0.0.8:443",
            "198.18.0.1:443",
            "198.19.255.1:443",
            "192.0.2.1:443",
            "198.51.100.7:443",
            "203.0.113.9:443",
            "192.88.99.1:443",
            // Ports relays do not use.
            "1.1.1.1:22",
            "1.1.1.1:25",
            "1.1.1.1:6379",
        ] {
            assert!(!check(&p, refused), "{refused}");
        }
        for allowed in [
            "1.1.1.1:443",
            "8.8.8.8:80",
            "[2606:4700::1111]:443",
            "[64:ff9b::808:808]:443",
            "[2002:808:808::1]:443",
        ] {
            assert!(check(&p, allowed), "{allowed}");
        }
    }

    #[test]
    fn a_port_is_opened_only_for_public_addresses() {
        let p = EgressPolicy::new(vec!["*:7777".parse().unwrap()]);
        assert!(check(&p, "1.1.1.1:7777"));
        assert!(!check(&p, "1.1.1.1:7778"));
        assert!(!check(&p, "10.0.0.1:7777"));
        assert!(!check(&p, "[64:ff9b::a00:1]:7777"));
        assert!("*:0".parse::<Allowed>().is_err());
        assert!("*:x".parse::<Allowed>().is_err());
        assert_eq!("*:7777".parse::<Allowed>().unwrap().to_string(), "*:7777");
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
        // An address allowed explicitly: any port.
        assert!(check(&p, "10.0.0.5:1"));
        assert!(!check(&p, "10.0.0.6:1"));
        assert!(!check(&p, "169.254.169.254:80"));
        assert!("localhost".parse::<Allowed>().is_err());
    }
}

//! SOCKS5 CONNECT through the parent (fast-socks5's client over the link).
//! Names are sent unresolved: the parent resolves them and applies its
//! egress policy; the enclave has no resolver.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use fast_socks5::client::{Config, Socks5Stream};
use fast_socks5::util::target_addr::TargetAddr;
use fast_socks5::Socks5Command;
use nostr::Url;

use crate::link::{ParentAddr, Stream};

/// How long reaching the proxy may take; the whole relay connection has
/// its own, longer deadline.
pub const PROXY_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Where a relay connection goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A host name, resolved by the parent.
    Domain(String, u16),
    /// An address.
    Ip(IpAddr, u16),
}

impl Target {
    /// The host and port of a `ws://` or `wss://` URL.
    pub fn of_url(url: &Url) -> Result<Self, SocksError> {
        let port = url
            .port_or_known_default()
            .ok_or_else(|| SocksError(format!("{url}: no port")))?;
        match url.host() {
            Some(nostr::types::url::Host::Domain(d)) if !d.is_empty() => {
                Ok(Self::Domain(d.to_owned(), port))
            }
            Some(nostr::types::url::Host::Ipv4(ip)) => Ok(Self::Ip(ip.into(), port)),
            Some(nostr::types::url::Host::Ipv6(ip)) => Ok(Self::Ip(ip.into(), port)),
            _ => Err(SocksError(format!("{url}: no host"))),
        }
    }

    fn to_socks(&self) -> TargetAddr {
        match self {
            Self::Domain(d, port) => TargetAddr::Domain(d.clone(), *port),
            Self::Ip(ip, port) => TargetAddr::Ip(SocketAddr::new(*ip, *port)),
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Domain(d, p) => write!(f, "{d}:{p}"),
            Self::Ip(ip, p) => write!(f, "{}", SocketAddr::new(*ip, *p)),
        }
    }
}

/// Why the proxy did not connect us.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SocksError(pub String);

impl fmt::Display for SocksError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for SocksError {}

/// Opens a tunnel to `target` through the proxy at `proxy`.
pub async fn connect(proxy: ParentAddr, target: &Target) -> Result<Box<dyn Stream>, SocksError> {
    let link = proxy
        .connect(PROXY_CONNECT_TIMEOUT)
        .await
        .map_err(|e| SocksError(format!("cannot reach the parent's proxy at {proxy}: {e}")))?;
    let mut socks = Socks5Stream::use_stream(link, None, Config::default())
        .await
        .map_err(|e| SocksError(format!("SOCKS5 handshake with {proxy}: {e}")))?;
    socks
        .request(Socks5Command::TCPConnect, target.to_socks())
        .await
        .map_err(|e| {
            SocksError(format!(
                "the parent's proxy did not connect to {target}: {e}"
            ))
        })?;
    Ok(Box::new(socks))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_from_relay_urls() {
        let t = |s: &str| Target::of_url(&Url::parse(s).unwrap()).unwrap();
        assert_eq!(
            t("wss://relay.example"),
            Target::Domain("relay.example".into(), 443)
        );
        assert_eq!(
            t("ws://relay.example/x"),
            Target::Domain("relay.example".into(), 80)
        );
        assert_eq!(
            t("ws://127.0.0.1:7777"),
            Target::Ip("127.0.0.1".parse().unwrap(), 7777)
        );
        assert_eq!(t("wss://[::1]:1"), Target::Ip("::1".parse().unwrap(), 1));
    }
}

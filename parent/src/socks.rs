//! The SOCKS5 proxy (RFC 1928, CONNECT only, no authentication) through
//! which the enclave reaches relays. The enclave terminates TLS itself, so
//! the proxy only ever sees ciphertext. Names are resolved here, on the
//! parent; every resolved address goes through the [`EgressPolicy`], and the
//! proxy connects to the address it checked (no second lookup). Each
//! accepted or refused connection is logged with its destination, never its
//! payload.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use fast_socks5::server::Socks5ServerProtocol;
use fast_socks5::util::target_addr::TargetAddr;
use fast_socks5::{ReplyError, Socks5Command};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tracing::{info, warn};

use crate::egress::EgressPolicy;
use crate::transport::{serve_each, ConnectionLimit, Listener};

/// Time allowed for the SOCKS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Time allowed to resolve a name and connect.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The proxy's settings.
#[derive(Debug, Clone)]
pub struct SocksConfig {
    /// Which destinations are allowed.
    pub policy: EgressPolicy,
    /// Most connections proxied at once; more are closed at once.
    pub max_connections: usize,
}

/// The SOCKS5 proxy.
#[derive(Debug, Clone)]
pub struct SocksProxy {
    config: Arc<SocksConfig>,
    limit: ConnectionLimit,
}

/// How a request ended, for the log and for tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Proxied to this address; bytes sent each way.
    Proxied {
        /// The address connected to.
        to: SocketAddr,
        /// Bytes from the client to the destination.
        sent: u64,
        /// Bytes from the destination to the client.
        received: u64,
    },
    /// Refused before any connection was made.
    Refused(String),
    /// The client broke the protocol or went away.
    Failed(String),
}

impl SocksProxy {
    /// A proxy with `config`.
    pub fn new(config: SocksConfig) -> Self {
        Self {
            limit: ConnectionLimit::new(config.max_connections),
            config: Arc::new(config),
        }
    }

    /// The proxied connections, to wait for them at shutdown.
    pub fn connections(&self) -> &ConnectionLimit {
        &self.limit
    }

    /// Accepts clients on `listener` until the task is dropped.
    pub async fn run(self, listener: Listener) -> std::io::Result<()> {
        let limit = self.limit.clone();
        serve_each(listener, &limit, "socks", |stream, peer| {
            let proxy = self.clone();
            async move {
                proxy.serve(stream, &peer).await;
            }
        })
        .await
    }

    /// Serves one client and logs how it ended.
    pub async fn serve<S: AsyncRead + AsyncWrite + Unpin>(&self, stream: S, peer: &str) -> Outcome {
        let outcome = self.proxy(stream).await;
        match &outcome {
            Outcome::Proxied { to, sent, received } => {
                info!(%peer, %to, sent, received, "socks: connection closed")
            }
            Outcome::Refused(why) => warn!(%peer, "socks: refused {why}"),
            Outcome::Failed(why) => warn!(%peer, "socks: failed: {why}"),
        }
        outcome
    }

    async fn proxy<S: AsyncRead + AsyncWrite + Unpin>(&self, stream: S) -> Outcome {
        let handshake = async {
            Socks5ServerProtocol::accept_no_auth(stream)
                .await?
                .read_command()
                .await
        };
        let (proto, command, target) =
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake).await {
                Ok(Ok(r)) => r,
                Ok(Err(e)) => return Outcome::Failed(format!("handshake: {e}")),
                Err(_) => return Outcome::Failed("handshake timed out".into()),
            };
        if command != Socks5Command::TCPConnect {
            let _ = proto.reply_error(&ReplyError::CommandNotSupported).await;
            return Outcome::Refused(format!("command {command:?} (only CONNECT is served)"));
        }
        let connected = tokio::time::timeout(CONNECT_TIMEOUT, self.connect(&target)).await;
        let (outbound, to) = match connected {
            Ok(Ok(c)) => c,
            Ok(Err((reply, why))) => {
                let _ = proto.reply_error(&reply).await;
                return Outcome::Refused(why);
            }
            Err(_) => {
                let _ = proto.reply_error(&ReplyError::TtlExpired).await;
                return Outcome::Refused(format!("{target}: connect timed out"));
            }
        };
        let bound = outbound
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
        info!(%target, %to, from = %bound, "socks: connected");
        let mut inbound = match proto.reply_success(bound).await {
            Ok(s) => s,
            Err(e) => return Outcome::Failed(format!("reply: {e}")),
        };
        let mut outbound = outbound;
        match tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await {
            Ok((sent, received)) => Outcome::Proxied { to, sent, received },
            Err(e) => Outcome::Failed(format!("{to}: {e}")),
        }
    }

    /// Resolves `target`, keeps the addresses the policy allows and connects
    /// to the first that answers.
    async fn connect(
        &self,
        target: &TargetAddr,
    ) -> Result<(TcpStream, SocketAddr), (ReplyError, String)> {
        let candidates: Vec<SocketAddr> = match target {
            TargetAddr::Ip(addr) => vec![*addr],
            TargetAddr::Domain(host, port) => tokio::net::lookup_host((host.as_str(), *port))
                .await
                .map_err(|e| {
                    (
                        ReplyError::HostUnreachable,
                        format!("{target}: cannot resolve: {e}"),
                    )
                })?
                .collect(),
        };
        let mut refusals = Vec::new();
        let mut allowed = Vec::new();
        for addr in candidates {
            match self.config.policy.check(addr) {
                Ok(()) => allowed.push(addr),
                Err(why) => refusals.push(format!("{addr} ({why})")),
            }
        }
        if allowed.is_empty() {
            return Err((
                ReplyError::ConnectionNotAllowed,
                format!("{target}: not allowed: {}", refusals.join(", ")),
            ));
        }
        let mut last_error = String::new();
        for addr in allowed {
            match TcpStream::connect(addr).await {
                Ok(s) => {
                    // Small request/reply messages: no Nagle delay.
                    let _ = s.set_nodelay(true);
                    return Ok((s, addr));
                }
                Err(e) => last_error = format!("{addr}: {e}"),
            }
        }
        Err((
            ReplyError::ConnectionRefused,
            format!("{target}: {last_error}"),
        ))
    }
}

//! Where the parent listens: native vsock in production (the enclave
//! connects to CID 3), TCP on 127.0.0.1 for development and tests (vsock
//! loopback does not work on development machines). Protocol code takes any
//! `AsyncRead + AsyncWrite` stream, so it is the same over both.

use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;

use std::future::Future;
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tracing::warn;

/// A byte stream from one client.
pub trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// A listening address: `tcp:HOST:PORT` or `vsock:PORT`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenAddr {
    /// TCP, for development and tests.
    Tcp(SocketAddr),
    /// vsock on any CID, for production.
    Vsock(u32),
}

impl FromStr for ListenAddr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if let Some(addr) = s.strip_prefix("tcp:") {
            return addr
                .parse()
                .map(Self::Tcp)
                .map_err(|e| format!("{addr:?} is not HOST:PORT ({e})"));
        }
        if let Some(port) = s.strip_prefix("vsock:") {
            return port
                .parse()
                .map(Self::Vsock)
                .map_err(|e| format!("{port:?} is not a vsock port ({e})"));
        }
        Err(format!("{s:?}: expected tcp:HOST:PORT or vsock:PORT"))
    }
}

impl fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Tcp(a) => write!(f, "tcp:{a}"),
            Self::Vsock(p) => write!(f, "vsock:{p}"),
        }
    }
}

/// A bound listener of either kind.
pub enum Listener {
    /// TCP.
    Tcp(TcpListener),
    /// vsock.
    #[cfg(target_os = "linux")]
    Vsock(tokio_vsock::VsockListener),
}

impl Listener {
    /// Binds `addr`.
    pub async fn bind(addr: &ListenAddr) -> std::io::Result<Self> {
        match addr {
            ListenAddr::Tcp(a) => Ok(Self::Tcp(TcpListener::bind(a).await?)),
            #[cfg(target_os = "linux")]
            ListenAddr::Vsock(port) => {
                let addr = tokio_vsock::VsockAddr::new(tokio_vsock::VMADDR_CID_ANY, *port);
                Ok(Self::Vsock(tokio_vsock::VsockListener::bind(addr)?))
            }
            #[cfg(not(target_os = "linux"))]
            ListenAddr::Vsock(_) => Err(std::io::Error::new(
                std::io::ErrorKind::Unsupported,
                "vsock needs Linux",
            )),
        }
    }

    /// The bound address (the real port when bound to port 0).
    pub fn local_addr(&self) -> std::io::Result<ListenAddr> {
        match self {
            Self::Tcp(l) => l.local_addr().map(ListenAddr::Tcp),
            #[cfg(target_os = "linux")]
            Self::Vsock(l) => l.local_addr().map(|a| ListenAddr::Vsock(a.port())),
        }
    }

    /// Waits for the next client; returns its stream and a printable peer.
    pub async fn accept(&self) -> std::io::Result<(Box<dyn Stream>, String)> {
        match self {
            Self::Tcp(l) => {
                let (s, peer) = l.accept().await?;
                // Relay traffic is small request/reply messages: no Nagle delay.
                s.set_nodelay(true)?;
                Ok((Box::new(s), format!("tcp:{peer}")))
            }
            #[cfg(target_os = "linux")]
            Self::Vsock(l) => {
                let (s, peer) = l.accept().await?;
                Ok((Box::new(s), format!("vsock:{}:{}", peer.cid(), peer.port())))
            }
        }
    }
}

/// A cap on the clients served at once, shared by an accept loop and
/// whoever waits for its connections to finish.
#[derive(Debug, Clone)]
pub struct ConnectionLimit {
    permits: Arc<Semaphore>,
    max: usize,
}

impl ConnectionLimit {
    /// At most `max` at once.
    pub fn new(max: usize) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(max)),
            max,
        }
    }

    /// How many are open now.
    pub fn open(&self) -> usize {
        self.max.saturating_sub(self.permits.available_permits())
    }

    /// Waits up to `grace` for every connection to end; returns how many are
    /// still open. For a clean stop: the enclave closes its relay
    /// connections when it stops, and they should not be cut first.
    pub async fn drain(&self, grace: std::time::Duration) -> usize {
        let deadline = tokio::time::Instant::now() + grace;
        while self.open() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        self.open()
    }
}

/// Something that hands out client streams: a [`Listener`], or a test's.
pub trait Accept {
    /// Waits for the next client; its stream and a printable peer.
    fn accept(&self) -> impl Future<Output = std::io::Result<(Box<dyn Stream>, String)>> + Send;
}

impl Accept for Listener {
    fn accept(&self) -> impl Future<Output = std::io::Result<(Box<dyn Stream>, String)>> + Send {
        Listener::accept(self)
    }
}

/// How long the accept loop pauses after a failed `accept()` (out of file
/// descriptors, a connection reset before it was taken): long enough not to
/// spin, short enough that service resumes at once.
pub const ACCEPT_RETRY: std::time::Duration = std::time::Duration::from_millis(100);

/// Accepts clients on `listener` forever, serving each with `serve` in its
/// own task; with `limit` clients being served, a new one is closed at once.
/// A failed `accept()` is logged and the loop goes on: one bad connection
/// or a moment without file descriptors must not end the server.
pub async fn serve_each<A, F, Fut>(
    listener: A,
    limit: &ConnectionLimit,
    what: &'static str,
    serve: F,
) -> std::io::Result<()>
where
    A: Accept,
    F: Fn(Box<dyn Stream>, String) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                warn!("{what}: accept failed ({e}); still listening");
                tokio::time::sleep(ACCEPT_RETRY).await;
                continue;
            }
        };
        let Ok(permit) = Arc::clone(&limit.permits).try_acquire_owned() else {
            warn!(%peer, "{what}: refusing connection, {} already open", limit.max);
            continue;
        };
        let task = serve(stream, peer);
        tokio::spawn(async move {
            task.await;
            drop(permit);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Fails its first two accepts, then hands out in-memory streams.
    struct Flaky(AtomicUsize);

    impl Accept for Flaky {
        fn accept(
            &self,
        ) -> impl Future<Output = std::io::Result<(Box<dyn Stream>, String)>> + Send {
            let n = self.0.fetch_add(1, Ordering::SeqCst);
            async move {
                if n < 2 {
                    return Err(std::io::Error::from_raw_os_error(24)); // EMFILE
                }
                if n > 4 {
                    std::future::pending::<()>().await;
                }
                let (a, _b) = tokio::io::duplex(64);
                Ok((Box::new(a) as Box<dyn Stream>, format!("test:{n}")))
            }
        }
    }

    #[tokio::test]
    async fn a_failed_accept_does_not_end_the_server() {
        let served = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&served);
        let limit = ConnectionLimit::new(8);
        let server = serve_each(Flaky(AtomicUsize::new(0)), &limit, "test", move |_, _| {
            let counter = Arc::clone(&counter);
            async move {
                counter.fetch_add(1, Ordering::SeqCst);
            }
        });
        let _ = tokio::time::timeout(std::time::Duration::from_secs(2), server).await;
        assert_eq!(served.load(Ordering::SeqCst), 3);
    }

    #[test]
    fn parses_listen_addresses() {
        assert_eq!(
            "tcp:127.0.0.1:2080".parse::<ListenAddr>().unwrap(),
            ListenAddr::Tcp("127.0.0.1:2080".parse().unwrap())
        );
        assert_eq!(
            "vsock:2080".parse::<ListenAddr>().unwrap(),
            ListenAddr::Vsock(2080)
        );
        for bad in ["2080", "tcp:localhost", "vsock:x", "udp:1"] {
            assert!(bad.parse::<ListenAddr>().is_err(), "{bad}");
        }
    }
}

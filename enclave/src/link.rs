//! How the enclave reaches the parent: native vsock in production (the
//! parent is CID 3), TCP on 127.0.0.1 in development and tests. These are
//! the enclave's only sockets; everything else is tunnelled through them.

use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};

/// A byte stream to the parent.
pub trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// An address of the parent: `vsock:CID:PORT` or `tcp:HOST:PORT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParentAddr {
    /// vsock (production).
    Vsock {
        /// The parent's context id (3).
        cid: u32,
        /// The port.
        port: u32,
    },
    /// TCP (development and tests).
    Tcp(SocketAddr),
}

impl ParentAddr {
    /// The parent's vsock `port`.
    pub fn vsock(port: u32) -> Self {
        Self::Vsock {
            cid: verifier::protocol::PARENT_CID,
            port,
        }
    }

    /// Connects, giving up after `timeout`.
    pub async fn connect(&self, timeout: Duration) -> std::io::Result<Box<dyn Stream>> {
        let connect = async {
            match *self {
                Self::Tcp(addr) => {
                    let s = tokio::net::TcpStream::connect(addr).await?;
                    s.set_nodelay(true)?;
                    Ok(Box::new(s) as Box<dyn Stream>)
                }
                #[cfg(target_os = "linux")]
                Self::Vsock { cid, port } => {
                    let s =
                        tokio_vsock::VsockStream::connect(tokio_vsock::VsockAddr::new(cid, port))
                            .await?;
                    Ok(Box::new(s) as Box<dyn Stream>)
                }
                #[cfg(not(target_os = "linux"))]
                Self::Vsock { .. } => Err(std::io::Error::new(
                    std::io::ErrorKind::Unsupported,
                    "vsock needs Linux",
                )),
            }
        };
        tokio::time::timeout(timeout, connect).await.map_err(|_| {
            std::io::Error::new(std::io::ErrorKind::TimedOut, format!("{self}: timed out"))
        })?
    }
}

impl FromStr for ParentAddr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if let Some(addr) = s.strip_prefix("tcp:") {
            return addr
                .parse()
                .map(Self::Tcp)
                .map_err(|e| format!("{addr:?} is not IP:PORT ({e})"));
        }
        if let Some(rest) = s.strip_prefix("vsock:") {
            let (cid, port) = rest
                .split_once(':')
                .ok_or_else(|| format!("{s:?}: expected vsock:CID:PORT"))?;
            let cid = cid
                .parse()
                .map_err(|e| format!("{cid:?} is not a CID ({e})"))?;
            let port = port
                .parse()
                .map_err(|e| format!("{port:?} is not a port ({e})"))?;
            return Ok(Self::Vsock { cid, port });
        }
        Err(format!("{s:?}: expected vsock:CID:PORT or tcp:IP:PORT"))
    }
}

impl fmt::Display for ParentAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Vsock { cid, port } => write!(f, "vsock:{cid}:{port}"),
            Self::Tcp(a) => write!(f, "tcp:{a}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_parent_addresses() {
        assert_eq!(
            "vsock:3:2080".parse::<ParentAddr>().unwrap(),
            ParentAddr::vsock(2080)
        );
        assert_eq!(
            "tcp:127.0.0.1:1080".parse::<ParentAddr>().unwrap(),
            ParentAddr::Tcp("127.0.0.1:1080".parse().unwrap())
        );
        for bad in ["vsock:2080", "tcp:localhost:1", "3:2080", "vsock:x:1"] {
            assert!(bad.parse::<ParentAddr>().is_err(), "{bad}");
        }
        assert_eq!(ParentAddr::vsock(1080).to_string(), "vsock:3:1080");
    }
}

//! The dev stack's embedded relay: nostr-relay-builder's LocalRelay behind
//! our own accept loop, so that its sockets send without delay.
//!
//! LocalRelay's own listener leaves Nagle's algorithm on for the sockets it
//! accepts. It answers an `EVENT` with `OK` and, a moment later, forwards
//! the signer's reply on the same socket: Nagle holds that second small
//! write until the client acknowledges the first, and the client delays
//! that acknowledgement (delayed ACK, 40 ms on Linux). Every round trip
//! through the relay cost a fixed ~44 ms that had nothing to do with load.
//! Here each accepted socket gets `TCP_NODELAY`, its WebSocket upgrade is
//! answered with tungstenite's handshake functions, and the upgraded stream
//! is handed to the relay (`LocalRelay::take_connection`), which serves it
//! exactly as it serves its own.
//!
//! The relay can also be stopped and started again on the same port, to
//! show what the enclave does when a relay goes away.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use nostr_relay_builder::{LocalRelay, RelayBuilder};
use tokio::io::{AsyncBufReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tracing::debug;

/// The largest HTTP upgrade request read (browsers send about 600 bytes).
const MAX_UPGRADE_BYTES: usize = 16 * 1024;
/// The most headers read from an upgrade request.
const MAX_HEADERS: usize = 64;
/// How long a client may take to send its upgrade request.
const UPGRADE_TIMEOUT: Duration = Duration::from_secs(10);

/// A running relay on 127.0.0.1 (or the builder's address).
#[derive(Debug)]
pub struct DevRelay {
    relay: LocalRelay,
    addr: SocketAddr,
    accept: JoinHandle<()>,
}

impl DevRelay {
    /// Starts a relay from `builder` on `addr` (port 0: any free port).
    pub async fn start(builder: RelayBuilder, addr: SocketAddr) -> Result<Self> {
        let listener = TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on {addr}"))?;
        let addr = listener.local_addr()?;
        let relay = LocalRelay::new(builder);
        let accept = tokio::spawn(accept_loop(listener, relay.clone()));
        Ok(Self {
            relay,
            addr,
            accept,
        })
    }

    /// Starts a relay from `builder` on a free port of 127.0.0.1.
    pub async fn local(builder: RelayBuilder) -> Result<Self> {
        Self::start(
            builder,
            SocketAddr::from((std::net::Ipv4Addr::LOCALHOST, 0)),
        )
        .await
    }

    /// The relay's `ws://` URL.
    pub fn url(&self) -> String {
        format!("ws://{}", self.addr)
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The relay itself (to shut it down, or notify it of events).
    pub fn relay(&self) -> &LocalRelay {
        &self.relay
    }

    /// Stops listening and closes every connection, as a relay that crashed
    /// or restarted does. Its stored events are gone with it.
    pub fn stop(&self) {
        self.accept.abort();
        self.relay.shutdown();
    }
}

impl Drop for DevRelay {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn accept_loop(listener: TcpListener, relay: LocalRelay) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                debug!(error = %e, "relay: cannot accept a connection");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let relay = relay.clone();
        tokio::spawn(async move {
            if let Err(e) = serve(stream, peer, relay).await {
                debug!(%peer, error = %format!("{e:#}"), "relay: connection ended");
            }
        });
    }
}

async fn serve(stream: TcpStream, peer: SocketAddr, relay: LocalRelay) -> Result<()> {
    stream.set_nodelay(true)?;
    let mut stream = BufReader::new(stream);
    let head = tokio::time::timeout(UPGRADE_TIMEOUT, read_head(&mut stream))
        .await
        .context("no upgrade request in time")??;
    match upgrade_response(&head) {
        Ok(response) => {
            stream.write_all(response.as_bytes()).await?;
            stream.flush().await?;
        }
        Err(e) => {
            refuse(&mut stream).await;
            return Err(e);
        }
    }
    // Whatever the client sent after its request stays in the BufReader.
    relay
        .take_connection(stream, peer)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(())
}

/// Reads an HTTP request head, up to and including its blank line.
pub(super) async fn read_head(stream: &mut BufReader<TcpStream>) -> Result<Vec<u8>> {
    let mut head = Vec::new();
    loop {
        let available = stream.fill_buf().await?;
        if available.is_empty() {
            bail!("connection closed during the upgrade request");
        }
        let mut used = 0;
        for &b in available {
            used += 1;
            head.push(b);
            if head.ends_with(b"\r\n\r\n") {
                stream.consume(used);
                return Ok(head);
            }
            if head.len() >= MAX_UPGRADE_BYTES {
                bail!("upgrade request over {MAX_UPGRADE_BYTES} bytes");
            }
        }
        stream.consume(used);
    }
}

/// Checks a WebSocket upgrade request and makes its `101` response.
pub(super) fn upgrade_response(head: &[u8]) -> Result<String> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut headers);
    if !parsed.parse(head)?.is_complete() {
        bail!("incomplete upgrade request");
    }
    let mut request = http::Request::builder()
        .method(parsed.method.unwrap_or_default())
        .uri(parsed.path.unwrap_or("/"))
        .version(http::Version::HTTP_11);
    for h in parsed.headers.iter() {
        request = request.header(h.name, h.value);
    }
    let request = request.body(())?;
    let response = tungstenite::handshake::server::create_response(&request)?;
    let mut out = String::from("HTTP/1.1 101 Switching Protocols\r\n");
    for (name, value) in response.headers() {
        out.push_str(name.as_str());
        out.push_str(": ");
        out.push_str(value.to_str()?);
        out.push_str("\r\n");
    }
    out.push_str("\r\n");
    Ok(out)
}

async fn refuse<S: AsyncWrite + Unpin>(stream: &mut S) {
    let _ = stream
        .write_all(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
        .await;
    let _ = stream.shutdown().await;
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use super::*;

    #[test]
    fn answers_an_upgrade_with_the_accept_key() {
        // RFC 6455 section 1.3's example key and answer.
        let head = b"GET /chat HTTP/1.1\r\nHost: server.example.com\r\nUpgrade: websocket\r\n\
Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
        let response = upgrade_response(head).unwrap();
        assert!(response.starts_with("HTTP/1.1 101 "));
        assert!(response.contains("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="));
    }

    #[test]
    fn refuses_what_is_not_an_upgrade() {
        assert!(upgrade_response(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").is_err());
        assert!(upgrade_response(b"\x00\x01garbage\r\n\r\n").is_err());
    }
}

//! The SOCKS5 proxy on 127.0.0.1, driven by fast-socks5's client: it
//! refuses non-public destinations unless allowed, and proxies the allowed
//! one. Every destination here is on this machine or refused before any
//! packet leaves it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;

use fast_socks5::client::{Config, Socks5Stream};
use parent::egress::EgressPolicy;
use parent::socks::{SocksConfig, SocksProxy};
use parent::transport::{ListenAddr, Listener};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// An echo server on 127.0.0.1; returns its address.
async fn echo_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = s.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    addr
}

async fn proxy(policy: EgressPolicy) -> SocketAddr {
    proxy_with(policy, 8).await
}

async fn proxy_with(policy: EgressPolicy, max_connections: usize) -> SocketAddr {
    let listener = Listener::bind(&"tcp:127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let ListenAddr::Tcp(addr) = listener.local_addr().unwrap() else {
        unreachable!()
    };
    let proxy = SocksProxy::new(SocksConfig {
        policy,
        max_connections,
    });
    tokio::spawn(proxy.run(listener));
    addr
}

fn config() -> Config {
    let mut c = Config::default();
    c.set_skip_auth(false);
    c
}

async fn through(
    proxy: SocketAddr,
    host: &str,
    port: u16,
) -> Result<Socks5Stream<tokio::net::TcpStream>, String> {
    Socks5Stream::connect(proxy, host.to_owned(), port, config())
        .await
        .map_err(|e| e.to_string())
}

#[tokio::test]
async fn refuses_private_destinations_by_default() {
    let echo = echo_server().await;
    let proxy = proxy(EgressPolicy::default()).await;
    for (host, port) in [
        ("127.0.0.1", echo.port()),
        ("localhost", echo.port()),
        ("169.254.169.254", 80),
        ("10.0.0.1", 443),
        ("192.168.0.1", 443),
        ("::1", echo.port()),
        ("0.0.0.0", echo.port()),
    ] {
        let result = through(proxy, host, port).await;
        let error = result.err().unwrap_or_default();
        assert!(
            error.contains("not allowed"),
            "{host}:{port} must be refused by policy: {error}"
        );
    }
}

#[tokio::test]
async fn proxies_the_allowed_destination_only() {
    let echo = echo_server().await;
    let other = echo_server().await;
    let proxy = proxy(EgressPolicy::new(vec![parent::egress::Allowed::Socket(
        echo,
    )]))
    .await;
    let mut stream = through(proxy, "127.0.0.1", echo.port()).await.unwrap();
    stream.write_all(b"hello relay").await.unwrap();
    let mut buf = [0u8; 11];
    stream.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"hello relay");
    let error = through(proxy, "127.0.0.1", other.port())
        .await
        .err()
        .unwrap_or_default();
    assert!(error.contains("not allowed"), "{error}");
}

#[tokio::test]
async fn logs_outcomes_without_payload() {
    let echo = echo_server().await;
    let proxy = SocksProxy::new(SocksConfig {
        policy: EgressPolicy::new(vec![parent::egress::Allowed::Socket(echo)]),
        max_connections: 1,
    });
    // Serve one client over an in-memory pipe: generic over AsyncRead + AsyncWrite.
    let (client, server) = tokio::io::duplex(4096);
    let serving = tokio::spawn(async move { proxy.serve(server, "test").await });
    let mut client = client;
    // Greeting (no auth), then CONNECT 127.0.0.1:port.
    client.write_all(&[5, 1, 0]).await.unwrap();
    let mut reply = [0u8; 2];
    client.read_exact(&mut reply).await.unwrap();
    assert_eq!(reply, [5, 0]);
    let mut connect = vec![5, 1, 0, 1, 127, 0, 0, 1];
    connect.extend_from_slice(&echo.port().to_be_bytes());
    client.write_all(&connect).await.unwrap();
    let mut reply = [0u8; 10];
    client.read_exact(&mut reply).await.unwrap();
    assert_eq!(reply[1], 0, "succeeded");
    client.write_all(b"secret payload").await.unwrap();
    let mut buf = [0u8; 14];
    client.read_exact(&mut buf).await.unwrap();
    drop(client);
    let outcome = serving.await.unwrap();
    assert_eq!(
        outcome,
        parent::socks::Outcome::Proxied {
            to: echo,
            sent: 14,
            received: 14
        }
    );
}

#[tokio::test]
async fn closes_connections_over_the_limit() {
    let addr = proxy_with(EgressPolicy::default(), 1).await;
    // The first client holds its slot by not finishing the handshake.
    let mut first = tokio::net::TcpStream::connect(addr).await.unwrap();
    first.write_all(&[5, 1, 0]).await.unwrap();
    let mut reply = [0u8; 2];
    first.read_exact(&mut reply).await.unwrap();
    // The second is closed without an answer.
    let mut second = tokio::net::TcpStream::connect(addr).await.unwrap();
    let _ = second.write_all(&[5, 1, 0]).await;
    let mut buf = [0u8; 2];
    let read = tokio::time::timeout(std::time::Duration::from_secs(5), second.read(&mut buf)).await;
    assert!(matches!(read, Ok(Ok(0)) | Ok(Err(_))), "{read:?}");
    // Once the first leaves, a new client is served (retry until the
    // server has seen it go; bounded).
    drop(first);
    for attempt in 0.. {
        let mut next = tokio::net::TcpStream::connect(addr).await.unwrap();
        next.write_all(&[5, 1, 0]).await.unwrap();
        if next.read_exact(&mut reply).await.is_ok() {
            assert_eq!(reply, [5, 0]);
            break;
        }
        assert!(attempt < 50, "the slot was never freed");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

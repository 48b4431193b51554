//! Relay connections through the parent's real SOCKS5 proxy: plain `ws://`
//! to a LocalRelay, `wss://` with TLS ending in the enclave, and refusals
//! (a destination the proxy does not allow, a certificate nobody trusts).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use enclave::link::ParentAddr;
use enclave::relay::inbox::{Inbox, InboxLimits};
use enclave::relay::tls::TlsConfig;
use enclave::relay::{client, PoolLimits, ProxiedTransport};
use enclave::signer::SignerConfig;
use nostr::{EventBuilder, Filter, Keys, Kind};
use nostr_relay_builder::RelayBuilder;
use parent::dev_stack::relay::DevRelay;
use parent::egress::{Allowed, EgressPolicy};
use parent::socks::{SocksConfig, SocksProxy};
use parent::transport::Listener;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair, SanType};
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio_rustls::rustls::{RootCertStore, ServerConfig};

async fn local_relay() -> (DevRelay, SocketAddr) {
    let relay = DevRelay::local(RelayBuilder::default()).await.unwrap();
    let addr = relay.addr();
    (relay, addr)
}

/// The parent's proxy on TCP, allowing only `allow`.
async fn proxy(allow: Vec<SocketAddr>) -> ParentAddr {
    let listener = Listener::bind(&"tcp:127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let policy = EgressPolicy::new(
        allow
            .iter()
            .map(|a| a.to_string().parse::<Allowed>().unwrap())
            .collect(),
    );
    let proxy = SocksProxy::new(SocksConfig {
        policy,
        max_connections: 16,
    });
    tokio::spawn(proxy.run(listener));
    addr.parse::<ParentAddr>().unwrap()
}

/// Publishes a note through `transport` to `url` and reads it back directly.
async fn round_trip(transport: ProxiedTransport, url: &str, direct: &str) -> Result<(), String> {
    let keys = Keys::generate();
    let inbox = Inbox::new(InboxLimits::default());
    let limits = PoolLimits {
        max_request_bytes: SignerConfig::default().max_request_bytes,
        max_relays: 8,
    };
    let c = client(keys.clone(), transport, &inbox, limits);
    c.add_relay(url).await.map_err(|e| e.to_string())?;
    c.try_connect_relay(url, Duration::from_secs(5))
        .await
        .map_err(|e| e.to_string())?;
    let event = EventBuilder::text_note("through the parent")
        .sign_with_keys(&keys)
        .unwrap();
    let out = c.send_event(&event).await.map_err(|e| e.to_string())?;
    if out.success.is_empty() {
        return Err(format!("not accepted: {:?}", out.failed));
    }
    c.shutdown().await;
    let reader = nostr_sdk::Client::default();
    reader.add_relay(direct).await.unwrap();
    reader.connect().await;
    let got = reader
        .fetch_events(
            Filter::new().kind(Kind::TextNote).author(keys.public_key()),
            Duration::from_secs(5),
        )
        .await
        .unwrap();
    assert_eq!(got.first().map(|e| e.id), Some(event.id));
    Ok(())
}

#[tokio::test]
async fn reaches_a_relay_only_through_the_proxy() {
    let (_relay, addr) = local_relay().await;
    let url = format!("ws://{addr}");
    let allowed =
        ProxiedTransport::new(proxy(vec![addr]).await, TlsConfig::webpki_roots().unwrap());
    round_trip(allowed, &url, &url).await.unwrap();
    // The same relay, through a proxy that does not allow it.
    let refused = ProxiedTransport::new(proxy(vec![]).await, TlsConfig::webpki_roots().unwrap());
    let err = round_trip(refused, &url, &url).await.unwrap_err();
    assert!(err.contains("not allowed"), "{err}");
}

/// A CA, and a server certificate for 127.0.0.1 signed by it.
fn tls_pair() -> (
    CertificateDer<'static>,
    CertificateDer<'static>,
    PrivateKeyDer<'static>,
) {
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().unwrap()).unwrap();
    let mut leaf = CertificateParams::new(Vec::<String>::new()).unwrap();
    leaf.subject_alt_names = vec![SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST))];
    let key = KeyPair::generate().unwrap();
    let cert = leaf.signed_by(&key, &ca).unwrap();
    (
        CertificateDer::from(ca.der().to_vec()),
        CertificateDer::from(cert.der().to_vec()),
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
    )
}

/// A TLS front for the relay at `relay`: what a `wss://` relay looks like.
async fn tls_front(
    relay: SocketAddr,
    cert: CertificateDer<'static>,
    key: PrivateKeyDer<'static>,
) -> SocketAddr {
    let provider = Arc::new(tokio_rustls::rustls::crypto::aws_lc_rs::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut upstream = tokio::net::TcpStream::connect(relay).await.unwrap();
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut upstream).await;
            });
        }
    });
    addr
}

#[tokio::test]
async fn wss_is_terminated_inside_and_checks_the_certificate() {
    let (_relay, relay_addr) = local_relay().await;
    let (ca, cert, key) = tls_pair();
    let front = tls_front(relay_addr, cert, key).await;
    let socks = proxy(vec![front]).await;
    let url = format!("wss://{front}");
    let direct = format!("ws://{relay_addr}");
    let mut roots = RootCertStore::empty();
    roots.add(ca).unwrap();
    let trusting = ProxiedTransport::new(socks, TlsConfig::with_roots(roots).unwrap());
    round_trip(trusting, &url, &direct).await.unwrap();
    // The Mozilla roots do not include our CA: the connection must fail.
    let strict = ProxiedTransport::new(socks, TlsConfig::webpki_roots().unwrap());
    let err = round_trip(strict, &url, &direct).await.unwrap_err();
    assert!(err.contains("UnknownIssuer"), "{err}");
}

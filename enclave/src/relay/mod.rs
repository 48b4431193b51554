//! Relay access, only ever through the parent's SOCKS5 proxy: a nostr-sdk
//! WebSocket transport that opens each relay connection as a SOCKS5
//! CONNECT over the link to the parent ([`socks`]), then TLS inside the
//! enclave for `wss://` ([`tls`]), then the WebSocket handshake. The parent
//! sees only ciphertext and the destination. There is no other way out:
//! the enclave's [`nostr_sdk::Client`] is always built by [`client`].

mod chunks;
pub mod inbox;
pub mod outbox;
pub mod socks;
pub mod subscriptions;
pub mod tls;

pub use chunks::PUBKEYS_PER_FILTER;

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use async_wsocket::{ConnectionMode, Message};
use futures_util::stream::SplitSink;
use futures_util::{Sink, SinkExt, StreamExt};
use nostr::util::BoxedFuture;
use nostr::{Keys, Url};
use nostr_sdk::pool::transport::error::TransportError;
use nostr_sdk::pool::transport::websocket::{WebSocketSink, WebSocketStream, WebSocketTransport};
use nostr_sdk::pool::{RelayLimits, RelayPoolOptions};
use nostr_sdk::{Client, ClientBuilder, ClientOptions};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tracing::debug;
use verifier::protocol::MAX_ANNOUNCE_RELAYS;
use verifier::rpc::message::MAX_REQUEST_EVENT;

use crate::link::{ParentAddr, Stream};

use inbox::Inbox;

/// Largest WebSocket message accepted from a relay: the largest request
/// event the signer can be set to read, with room for the relay's
/// `["EVENT", <subscription>, …]` envelope. Anything larger is refused
/// before it is parsed. (The pool's own limits, [`PoolLimits`], follow the
/// configured request size and are tighter.)
pub const MAX_RELAY_MESSAGE: usize = MAX_REQUEST_EVENT + 4096;

/// A nostr-sdk transport that tunnels every relay connection through the
/// parent's SOCKS5 proxy.
#[derive(Debug, Clone)]
pub struct ProxiedTransport {
    socks: ParentAddr,
    tls: Arc<tls::TlsConfig>,
}

impl ProxiedTransport {
    /// Through the proxy at `socks`, trusting `tls` for `wss://`.
    pub fn new(socks: ParentAddr, tls: tls::TlsConfig) -> Self {
        Self {
            socks,
            tls: Arc::new(tls),
        }
    }

    /// Opens a WebSocket to `url` through the proxy.
    pub async fn open(
        &self,
        url: &Url,
    ) -> Result<tokio_tungstenite::WebSocketStream<Box<dyn Stream>>, TransportError> {
        let target = socks::Target::of_url(url).map_err(TransportError::backend)?;
        debug!(%url, proxy = %self.socks, "opening a relay connection through the parent");
        let tunnel = socks::connect(self.socks, &target)
            .await
            .map_err(TransportError::backend)?;
        let stream: Box<dyn Stream> = if url.scheme() == "wss" {
            Box::new(
                self.tls
                    .connect(&target, tunnel)
                    .await
                    .map_err(TransportError::backend)?,
            )
        } else {
            tunnel
        };
        let config = WebSocketConfig::default()
            .max_message_size(Some(MAX_RELAY_MESSAGE))
            .max_frame_size(Some(MAX_RELAY_MESSAGE));
        let (ws, _) =
            tokio_tungstenite::client_async_with_config(url.as_str(), stream, Some(config))
                .await
                .map_err(TransportError::backend)?;
        Ok(ws)
    }
}

impl WebSocketTransport for ProxiedTransport {
    fn support_ping(&self) -> bool {
        true
    }

    fn connect<'a>(
        &'a self,
        url: &'a Url,
        // Ignored on purpose: every connection goes through the parent.
        _mode: &'a ConnectionMode,
        timeout: Duration,
    ) -> BoxedFuture<'a, Result<(WebSocketSink, WebSocketStream), TransportError>> {
        Box::pin(async move {
            let ws = tokio::time::timeout(timeout, self.open(url))
                .await
                .map_err(|_| TransportError::backend(TimedOut))??;
            let (tx, rx) = ws.split();
            let sink: WebSocketSink = Box::new(TransportSink(tx));
            let stream: WebSocketStream = Box::pin(rx.filter_map(|m| async move {
                match m {
                    Ok(m) => from_tungstenite(m).map(Ok),
                    Err(e) => Some(Err(TransportError::backend(e))),
                }
            }));
            Ok((sink, stream))
        })
    }
}

type WsSink = SplitSink<tokio_tungstenite::WebSocketStream<Box<dyn Stream>>, WsMessage>;

/// The sending half, mapping message types and errors. (Not `sink_map_err`:
/// it panics when polled again after an error, see rust-nostr issue 984.)
struct TransportSink(WsSink);

impl Sink<Message> for TransportSink {
    type Error = TransportError;

    fn poll_ready(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.0.poll_ready_unpin(cx).map_err(TransportError::backend)
    }

    fn start_send(mut self: Pin<&mut Self>, item: Message) -> Result<(), Self::Error> {
        self.0
            .start_send_unpin(to_tungstenite(item))
            .map_err(TransportError::backend)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.0.poll_flush_unpin(cx).map_err(TransportError::backend)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.0.poll_close_unpin(cx).map_err(TransportError::backend)
    }
}

/// A connection that took too long.
#[derive(Debug)]
struct TimedOut;

impl std::fmt::Display for TimedOut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("timed out connecting through the parent's proxy")
    }
}

impl std::error::Error for TimedOut {}

fn to_tungstenite(m: Message) -> WsMessage {
    match m {
        Message::Text(t) => WsMessage::text(t),
        Message::Binary(b) => WsMessage::binary(b),
        Message::Ping(b) => WsMessage::Ping(b.into()),
        Message::Pong(b) => WsMessage::Pong(b.into()),
        Message::Close(frame) => {
            WsMessage::Close(
                frame.map(|f| tokio_tungstenite::tungstenite::protocol::CloseFrame {
                    code: f.code.into(),
                    reason: f.reason.into(),
                }),
            )
        }
    }
}

fn from_tungstenite(m: WsMessage) -> Option<Message> {
    Some(match m {
        WsMessage::Text(t) => Message::Text(t.to_string()),
        WsMessage::Binary(b) => Message::Binary(b.to_vec()),
        WsMessage::Ping(b) => Message::Ping(b.to_vec()),
        WsMessage::Pong(b) => Message::Pong(b.to_vec()),
        WsMessage::Close(frame) => {
            Message::Close(frame.map(|f| async_wsocket::message::CloseFrame {
                code: f.code.into(),
                reason: f.reason.to_string(),
            }))
        }
        // Raw frames are never yielded when reading.
        WsMessage::Frame(_) => return None,
    })
}

/// What the relay pool accepts.
#[derive(Debug, Clone, Copy)]
pub struct PoolLimits {
    /// The signer's cap on a request's content and tags, in bytes.
    pub max_request_bytes: usize,
    /// The most distinct relays keys may use.
    pub max_relays: usize,
}

impl PoolLimits {
    /// Per relay: messages and events a little over the largest request the
    /// signer reads, and few tags (a request has one `p` tag).
    fn relay_limits(&self) -> RelayLimits {
        let event = u32::try_from(self.max_request_bytes.saturating_add(1024)).unwrap_or(u32::MAX);
        let mut limits = RelayLimits::default();
        limits.messages.max_size = Some(event.saturating_add(512));
        limits.events.max_size = Some(event);
        limits.events.max_num_tags = Some(MAX_REQUEST_TAGS);
        limits
    }
}

/// Most tags a request event may carry.
pub const MAX_REQUEST_TAGS: u16 = 64;

/// The enclave's nostr client: signs with `keys`, reaches relays only
/// through `transport`, and hands request events to `inbox`.
pub fn client(
    keys: Keys,
    transport: ProxiedTransport,
    inbox: &Inbox,
    limits: PoolLimits,
) -> Client {
    client_builder(keys, inbox, limits)
        .websocket_transport(transport)
        .build()
}

/// A client that only fetches public events (custodians' instance events
/// at start): no signer, so it never signs anything a relay asks, and the
/// events it fetches are returned to it, not handed to the signer. Through
/// `transport` in production, directly without.
pub fn fetch_client(transport: Option<ProxiedTransport>) -> Client {
    let event = u32::try_from(verifier::event::MAX_EVENT_JSON).unwrap_or(u32::MAX);
    let mut limits = RelayLimits::default();
    limits.messages.max_size = Some(event.saturating_add(512));
    limits.events.max_size = Some(event);
    let builder = Client::builder().opts(
        ClientOptions::default()
            .relay_limits(limits)
            .pool(RelayPoolOptions::default().automatic_authentication(false)),
    );
    match transport {
        Some(t) => builder.websocket_transport(t).build(),
        None => builder.build(),
    }
}

/// The client's settings, in production and in tests (which connect
/// directly): relays may only deliver events that match a subscription
/// they were sent, sizes are capped near the largest request, the pool
/// holds at most the relays keys may use plus the announce relays, and
/// request events go to `inbox` instead of the pool's broadcast channel.
///
/// NIP-42 authentication is off: nostr-sdk would otherwise answer any
/// relay's `AUTH` challenge with an event signed by the client's signer,
/// the service key, and any relay a stranger names in an import would get
/// one, with a challenge of its choosing. Nothing the enclave does needs
/// it: requests and replies are public events, p-tagged and encrypted.
pub fn client_builder(keys: Keys, inbox: &Inbox, limits: PoolLimits) -> ClientBuilder {
    let max_relays = limits
        .max_relays
        .saturating_add(MAX_ANNOUNCE_RELAYS)
        .saturating_add(1);
    Client::builder()
        .signer(keys)
        .admit_policy(inbox.clone())
        .opts(
            ClientOptions::default()
                .relay_limits(limits.relay_limits())
                .verify_subscriptions(true)
                .pool(
                    RelayPoolOptions::default()
                        .max_relays(Some(max_relays))
                        .automatic_authentication(false),
                ),
        )
}

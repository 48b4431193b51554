//! The client side of the parent's metadata server. At start, one `start`
//! request carrying our attestation, answered with the builder's and
//! launcher's signature events and the relays to announce on; then the
//! sealed state the parent keeps for us ([`state`]). Wire format:
//! [`verifier::protocol`]. Nothing in an answer is trusted: the caller
//! checks it ([`crate::startup`], [`verifier::state`]).

pub mod state;

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;
use verifier::protocol::{Reply, Request, StartResult, MAX_STATE_MESSAGE};

/// How long the parent has to answer each request.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a request to the parent failed.
#[derive(Debug)]
pub enum MetadataError {
    /// The connection or the WebSocket failed, or no answer came in time.
    Transport(String),
    /// The parent answered with an error.
    Refused(String),
    /// The answer could not be parsed.
    Malformed(String),
}

impl std::fmt::Display for MetadataError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Transport(e) => write!(f, "cannot talk to the parent: {e}"),
            Self::Refused(e) => write!(f, "the parent refused: {e}"),
            Self::Malformed(e) => write!(f, "the parent's answer is malformed: {e}"),
        }
    }
}

impl std::error::Error for MetadataError {}

/// One WebSocket to the metadata server, carrying requests one at a time.
pub struct MetadataClient<S> {
    ws: WebSocketStream<S>,
    next_id: u64,
}

fn transport(e: tokio_tungstenite::tungstenite::Error) -> MetadataError {
    MetadataError::Transport(e.to_string())
}

impl<S: AsyncRead + AsyncWrite + Unpin> MetadataClient<S> {
    /// Opens the WebSocket over `stream`.
    pub async fn connect(stream: S) -> Result<Self, MetadataError> {
        let config = WebSocketConfig::default()
            .max_message_size(Some(MAX_STATE_MESSAGE))
            .max_frame_size(Some(MAX_STATE_MESSAGE));
        let handshake =
            tokio_tungstenite::client_async_with_config("ws://parent/", stream, Some(config));
        let (ws, _) = tokio::time::timeout(REPLY_TIMEOUT, handshake)
            .await
            .map_err(|_| MetadataError::Transport("no handshake in time".into()))?
            .map_err(transport)?;
        Ok(Self { ws, next_id: 0 })
    }

    /// Sends `method` with `params` and returns the result, within
    /// [`REPLY_TIMEOUT`].
    pub async fn call(&mut self, mut request: Request) -> Result<String, MetadataError> {
        if request.id.is_empty() {
            self.next_id += 1;
            request.id = self.next_id.to_string();
        }
        tokio::time::timeout(REPLY_TIMEOUT, self.call_inner(request))
            .await
            .map_err(|_| MetadataError::Transport("no answer in time".into()))?
    }

    async fn call_inner(&mut self, request: Request) -> Result<String, MetadataError> {
        let text =
            serde_json::to_string(&request).map_err(|e| MetadataError::Transport(e.to_string()))?;
        self.ws.send(Message::text(text)).await.map_err(transport)?;
        loop {
            let message = match self.ws.next().await {
                Some(m) => m.map_err(transport)?,
                None => return Err(MetadataError::Transport("closed before answering".into())),
            };
            let text = match message {
                Message::Text(t) => t,
                Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => continue,
                Message::Binary(_) => {
                    return Err(MetadataError::Malformed("a binary message".into()))
                }
                Message::Close(_) => {
                    return Err(MetadataError::Transport("closed before answering".into()))
                }
            };
            let reply = Reply::from_json(text.as_str())
                .map_err(|e| MetadataError::Malformed(e.to_string()))?;
            if reply.id != request.id {
                return Err(MetadataError::Malformed(format!("reply to {:?}", reply.id)));
            }
            if let Some(error) = reply.error {
                return Err(MetadataError::Refused(error));
            }
            return Ok(reply.result);
        }
    }

    /// Closes the WebSocket, best effort.
    pub async fn close(mut self) {
        let _ = self.ws.close(None).await;
    }
}

/// Sends `start` with `attestation` over `stream` and returns the answer, unverified.
pub async fn start<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    attestation: &[u8],
) -> Result<StartResult, MetadataError> {
    let mut client = MetadataClient::connect(stream).await?;
    let result = client.call(Request::start(attestation)).await;
    // Best effort: we have what we came for.
    client.close().await;
    StartResult::from_json(&result?).map_err(|e| MetadataError::Malformed(e.to_string()))
}

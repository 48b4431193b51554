//! The client side of the parent's metadata server: one `start` request
//! carrying our attestation, answered with the builder's and launcher's
//! signature events and the relays to announce on. Wire format:
//! [`verifier::protocol`]. Nothing in the answer is trusted: the caller
//! checks it ([`crate::startup`]).

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use verifier::protocol::{Reply, Request, StartResult, MAX_MESSAGE};

/// How long the parent has to answer.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(30);

/// Why `start` failed.
#[derive(Debug)]
pub enum StartError {
    /// The connection or the WebSocket failed.
    Transport(String),
    /// The parent answered with an error.
    Refused(String),
    /// The answer could not be parsed.
    Malformed(String),
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Transport(e) => write!(f, "cannot talk to the parent: {e}"),
            Self::Refused(e) => write!(f, "the parent refused start: {e}"),
            Self::Malformed(e) => write!(f, "the parent's answer is malformed: {e}"),
        }
    }
}

impl std::error::Error for StartError {}

/// Sends `start` with `attestation` over `stream` and returns the answer, unverified.
pub async fn start<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    attestation: &[u8],
) -> Result<StartResult, StartError> {
    tokio::time::timeout(REPLY_TIMEOUT, start_inner(stream, attestation))
        .await
        .map_err(|_| StartError::Transport("no answer in time".into()))?
}

async fn start_inner<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    attestation: &[u8],
) -> Result<StartResult, StartError> {
    let config = WebSocketConfig::default()
        .max_message_size(Some(MAX_MESSAGE))
        .max_frame_size(Some(MAX_MESSAGE));
    let transport = |e: tokio_tungstenite::tungstenite::Error| StartError::Transport(e.to_string());
    let (mut ws, _) =
        tokio_tungstenite::client_async_with_config("ws://parent/", stream, Some(config))
            .await
            .map_err(transport)?;
    let request = Request::start(attestation);
    let text = serde_json::to_string(&request).map_err(|e| StartError::Transport(e.to_string()))?;
    ws.send(Message::text(text)).await.map_err(transport)?;
    loop {
        let message = match ws.next().await {
            Some(m) => m.map_err(transport)?,
            None => return Err(StartError::Transport("closed before answering".into())),
        };
        let text = match message {
            Message::Text(t) => t,
            Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => continue,
            Message::Binary(_) => return Err(StartError::Malformed("a binary message".into())),
            Message::Close(_) => {
                return Err(StartError::Transport("closed before answering".into()))
            }
        };
        let reply =
            Reply::from_json(text.as_str()).map_err(|e| StartError::Malformed(e.to_string()))?;
        // Best effort: we have what we came for.
        let _ = ws.close(None).await;
        if reply.id != request.id {
            return Err(StartError::Malformed(format!("reply to {:?}", reply.id)));
        }
        if let Some(error) = reply.error {
            return Err(StartError::Refused(error));
        }
        return StartResult::from_json(&reply.result)
            .map_err(|e| StartError::Malformed(e.to_string()));
    }
}

//! A relay that misbehaves on purpose, on 127.0.0.1: it speaks WebSocket,
//! records what it is sent, and answers a REQ however the test says:
//! never (a relay that hangs), with events it was never asked for, with a
//! flood, or with garbage frames.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};

use futures_util::{SinkExt, StreamExt};
use nostr::RelayUrl;
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::Message;

/// What the relay sends after it reads a REQ for `subscription`: text
/// messages, in order. An empty list: it never answers.
pub(crate) type OnReq = Arc<dyn Fn(&str) -> Vec<Message> + Send + Sync>;

pub(crate) struct FakeRelay {
    pub(crate) url: RelayUrl,
    /// Every text message a client sent.
    pub(crate) received: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeRelay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeRelay {
    /// A relay that answers REQs with `on_req`.
    pub(crate) async fn start(on_req: OnReq) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = RelayUrl::parse(&format!("ws://{}", listener.local_addr().unwrap())).unwrap();
        let received: Arc<Mutex<Vec<String>>> = Arc::default();
        let log = Arc::clone(&received);
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let (on_req, log) = (Arc::clone(&on_req), Arc::clone(&log));
                tokio::spawn(async move {
                    let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else {
                        return;
                    };
                    while let Some(Ok(message)) = ws.next().await {
                        let Message::Text(text) = message else {
                            continue;
                        };
                        let text = text.to_string();
                        log.lock().unwrap().push(text.clone());
                        let Some(sub) = req_id(&text) else { continue };
                        for out in on_req(&sub) {
                            if ws.send(out).await.is_err() {
                                return;
                            }
                        }
                    }
                });
            }
        });
        Self {
            url,
            received,
            task,
        }
    }

    /// A relay that reads everything and answers nothing.
    pub(crate) async fn silent() -> Self {
        Self::start(Arc::new(|_| Vec::new())).await
    }

    /// The events clients published here.
    pub(crate) fn published(&self) -> Vec<nostr::Event> {
        self.received
            .lock()
            .unwrap()
            .iter()
            .filter_map(|m| {
                let v: serde_json::Value = serde_json::from_str(m).ok()?;
                let items = v.as_array()?;
                if items.first()?.as_str()? != "EVENT" {
                    return None;
                }
                nostr::JsonUtil::from_json(items.get(1)?.to_string()).ok()
            })
            .collect()
    }
}

/// The subscription id of a `["REQ", id, …]` message.
fn req_id(text: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(text).ok()?;
    let items = v.as_array()?;
    if items.first()?.as_str()? != "REQ" {
        return None;
    }
    Some(items.get(1)?.as_str()?.to_owned())
}

/// `["EVENT", sub, event]`.
pub(crate) fn event_message(sub: &str, event: &nostr::Event) -> Message {
    Message::text(format!(
        "[\"EVENT\",{},{}]",
        serde_json::Value::String(sub.to_owned()),
        nostr::JsonUtil::as_json(event)
    ))
}

/// `["EOSE", sub]`.
pub(crate) fn eose(sub: &str) -> Message {
    Message::text(format!(
        "[\"EOSE\",{}]",
        serde_json::Value::String(sub.to_owned())
    ))
}

//! The metadata server: answers the enclave's `start` request with the
//! builder's and launcher's signature events and the relays to announce on.
//! Wire format: [`verifier::protocol`] (compatible with the original).
//!
//! Before it answers, it verifies the enclave's attestation (signature and
//! certificate path to the AWS root, or the dev root it was given) and that
//! `build.json` and `instance.json` match it, with the verifier library. The
//! enclave checks the same again; this check is for the operator, who learns
//! of a wrong file from a clear error instead of an enclave that stops.
//!
//! With a [`StateStore`] (`--state-dir`), it also keeps the enclave's sealed
//! state chunks and hands them back ([`verifier::protocol::state`]).

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tracing::{debug, info, warn};
use verifier::attestation::{Attestation, TrustedRoot};
use verifier::event::npub;
use verifier::protocol::state::{chunk_to_result, list_to_result};
use verifier::protocol::{
    Reply, Request, StartResult, StateRequest, MAX_STATE_MESSAGE, METHOD_START,
};
use verifier::verify::check_signatures;

use crate::signature_files::SignatureFiles;
use crate::state_store::StateStore;
use crate::transport::{serve_each, ConnectionLimit, Listener};

/// How long a connection may stay silent before it is closed.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// What the server serves and trusts.
#[derive(Debug, Clone)]
pub struct MetadataConfig {
    /// `build.json` and `instance.json`, read again for every request.
    pub files: SignatureFiles,
    /// The root attestations must chain to.
    pub root: TrustedRoot,
    /// Relays the enclave announces its instance event on.
    pub announce_relays: Vec<String>,
    /// Whether this is a production instance.
    pub prod: bool,
    /// Most connections served at once; more are closed at once.
    pub max_connections: usize,
    /// Where the enclave's sealed state is kept; without it, the state
    /// methods are refused.
    pub state: Option<Arc<StateStore>>,
}

/// The metadata server.
#[derive(Debug, Clone)]
pub struct MetadataServer {
    config: Arc<MetadataConfig>,
}

impl MetadataServer {
    /// A server with `config`.
    pub fn new(config: MetadataConfig) -> Self {
        Self {
            config: Arc::new(config),
        }
    }

    /// Accepts clients on `listener` until the task is dropped.
    pub async fn run(self, listener: Listener) -> std::io::Result<()> {
        let limit = ConnectionLimit::new(self.config.max_connections);
        serve_each(listener, &limit, "metadata", |stream, peer| {
            let server = self.clone();
            async move {
                server.serve(stream, &peer).await;
            }
        })
        .await
    }

    /// Serves one client: a WebSocket carrying JSON text requests.
    pub async fn serve<S: AsyncRead + AsyncWrite + Unpin>(&self, stream: S, peer: &str) {
        let config = WebSocketConfig::default()
            .max_message_size(Some(MAX_STATE_MESSAGE))
            .max_frame_size(Some(MAX_STATE_MESSAGE));
        let mut ws = match tokio::time::timeout(
            IDLE_TIMEOUT,
            tokio_tungstenite::accept_async_with_config(stream, Some(config)),
        )
        .await
        {
            Ok(Ok(ws)) => ws,
            Ok(Err(e)) => return warn!(%peer, "metadata: handshake failed: {e}"),
            Err(_) => return warn!(%peer, "metadata: handshake timed out"),
        };
        loop {
            let message = match tokio::time::timeout(IDLE_TIMEOUT, ws.next()).await {
                Ok(Some(Ok(m))) => m,
                Ok(Some(Err(e))) => return warn!(%peer, "metadata: connection error: {e}"),
                Ok(None) => return,
                Err(_) => return info!(%peer, "metadata: closing idle connection"),
            };
            let reply = match message {
                Message::Text(text) => {
                    // State requests touch the disk: off the async threads.
                    let (server, peer) = (self.clone(), peer.to_owned());
                    match tokio::task::spawn_blocking(move || {
                        server.handle(text.as_str(), now(), &peer)
                    })
                    .await
                    {
                        Ok(reply) => reply,
                        Err(e) => Reply::error("", format!("the request failed: {e}")),
                    }
                }
                Message::Close(_) => return,
                Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => continue,
                Message::Binary(_) => Reply::error("", "expected a JSON text message"),
            };
            if let Err(e) = ws.send(Message::text(reply.to_json())).await {
                return warn!(%peer, "metadata: cannot reply: {e}");
            }
        }
    }

    /// Answers one request at time `now` (unix seconds).
    pub fn handle(&self, text: &str, now: u64, peer: &str) -> Reply {
        let request = match Request::from_json(text) {
            Ok(r) => r,
            Err(e) => {
                warn!(%peer, "metadata: bad request: {e}");
                return Reply::error("", e);
            }
        };
        match StateRequest::from_request(&request) {
            Ok(Some(state)) => return self.state(&request.id, state, peer),
            Ok(None) => {}
            Err(e) => {
                warn!(%peer, method = %request.method, "metadata: bad request: {e}");
                return Reply::error(&request.id, e);
            }
        }
        match self.start(&request, now) {
            Ok(result) => {
                info!(%peer, relays = result.announce_relays.len(), "metadata: start answered");
                Reply::ok(&request.id, &result)
            }
            Err(e) => {
                warn!(%peer, method = %request.method, "metadata: refused: {e}");
                Reply::error(&request.id, e)
            }
        }
    }

    /// Stores, returns or lists sealed state.
    fn state(&self, id: &str, request: StateRequest, peer: &str) -> Reply {
        let Some(store) = &self.config.state else {
            warn!(%peer, "metadata: the enclave sent state, but this parent keeps none (run with --state-dir)");
            return Reply::error(
                id,
                "this parent keeps no state (it runs without --state-dir)",
            );
        };
        let result = match request {
            StateRequest::Put(chunk) => {
                let h = &chunk.header;
                debug!(%peer, state = %h.identity, epoch = h.epoch, version = h.version, index = h.index, count = h.count, "metadata: storing a state chunk");
                store.put(&chunk).map(|()| String::new())
            }
            StateRequest::Get {
                identity,
                epoch,
                version,
                index,
            } => match store.get(&identity, epoch, version, index) {
                Ok(Some(bytes)) => Ok(chunk_to_result(&bytes)),
                Ok(None) => Err(format!(
                    "no chunk {index} of snapshot {epoch}.{version} of {identity} is kept here"
                )),
                Err(e) => Err(e),
            },
            StateRequest::List { identity } => store.list(&identity).map(|l| list_to_result(&l)),
            StateRequest::Pin {
                identity,
                epoch,
                version,
            } => store.pin(&identity, epoch, version).map(|()| String::new()),
        };
        match result {
            Ok(text) => Reply::ok_text(id, text),
            Err(e) => {
                warn!(%peer, "metadata: state request refused: {e}");
                Reply::error(id, e)
            }
        }
    }

    fn start(&self, request: &Request, now: u64) -> Result<StartResult, String> {
        if request.method != METHOD_START {
            return Err(format!("unknown method {:?}", request.method));
        }
        let [attestation] = request.params.as_slice() else {
            return Err("start takes one parameter, the base64 attestation".into());
        };
        let attestation = Attestation::from_base64(attestation)
            .and_then(|a| a.verify(&self.config.root, now))
            .map_err(|e| format!("attestation refused: {e}"))?;
        let files = self.config.files.load()?;
        check_signatures(&attestation, files.build.clone(), files.instance.clone()).map_err(
            |e| format!("build.json or instance.json does not match the attestation: {e}"),
        )?;
        // Release signatures of other images are the operator's mistake:
        // say so here; the enclave would set them aside anyway.
        let pcrs = &attestation.doc().pcrs;
        let mut releases = Vec::new();
        for release in files.releases {
            if release.signs(pcrs) {
                releases.push(release.event().clone());
            } else {
                warn!(
                    id = %release.event().id,
                    maintainer = %npub(&release.event().pubkey),
                    version = %release.version(),
                    "a release signature signs other measurements than the enclave's; not served"
                );
            }
        }
        if releases.is_empty() && self.config.prod {
            warn!("no release signature of the enclave's measurements: a prod enclave will refuse to start");
        }
        Ok(StartResult {
            build: files.build,
            instance: files.instance,
            announce_relays: self.config.announce_relays.clone(),
            prod: self.config.prod,
            releases,
        })
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

//! The signer test harness: a LocalRelay, the real signer with its
//! subscriptions and event loop, and a client that sends raw requests.

#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing
)]

pub(crate) mod clocked;
pub(crate) mod custodians;
pub(crate) mod fake_relay;
pub(crate) mod in_process;
pub(crate) mod nsec;
pub(crate) mod parent_store;
pub(crate) mod released;

use std::sync::Arc;
use std::time::Duration;

use enclave::relay::outbox::OutboxLimits;
use enclave::serve;
use enclave::signer::{Signer, SignerConfig};
use nostr::{Event, Filter, Keys, Kind, PublicKey, RelayUrl, Timestamp};
use nostr_relay_builder::RelayBuilder;
use nostr_sdk::{Client, RelayPoolNotification};
use parent::dev_stack::relay::DevRelay;
use verifier::event::{KIND_ADMIN, KIND_NIP46};
use verifier::rpc::admin::AdminRequest;
use verifier::rpc::cipher::Scheme;
use verifier::rpc::{open_response, seal_request, Params, Request, Response};

pub(crate) const WAIT: Duration = Duration::from_secs(10);

pub(crate) struct Stack {
    pub(crate) relay: DevRelay,
    pub(crate) url: RelayUrl,
    pub(crate) service: PublicKey,
    pub(crate) signer: Arc<Signer>,
    pub(crate) outbox: enclave::relay::outbox::Outbox,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for Stack {
    fn drop(&mut self) {
        self.server.abort();
    }
}

pub(crate) async fn stack(config: SignerConfig) -> Stack {
    stack_on(RelayBuilder::default(), config).await
}

/// Starts `service`'s event loop; returns its task once its admin relay
/// listens.
pub(crate) async fn run_service(service: serve::Service) -> tokio::task::JoinHandle<()> {
    let (ready, is_ready) = tokio::sync::oneshot::channel();
    let task = tokio::spawn(serve::run(service, ready));
    tokio::time::timeout(WAIT, is_ready).await.unwrap().unwrap();
    task
}

/// A relay on a free port of 127.0.0.1, its sockets without Nagle's delay.
pub(crate) async fn local_relay(builder: RelayBuilder) -> DevRelay {
    DevRelay::local(builder).await.unwrap()
}

pub(crate) async fn stack_on(builder: RelayBuilder, config: SignerConfig) -> Stack {
    stack_with(builder, config, OutboxLimits::default()).await
}

pub(crate) async fn stack_with(
    builder: RelayBuilder,
    config: SignerConfig,
    outbox: OutboxLimits,
) -> Stack {
    let relay = local_relay(builder).await;
    let url = RelayUrl::parse(&relay.url()).unwrap();
    stack_reaching(relay, url, config, outbox).await
}

/// The signer on `relay`, which it reaches at `url` (the relay's own, or a
/// proxy's in front of it).
pub(crate) async fn stack_reaching(
    relay: DevRelay,
    url: RelayUrl,
    config: SignerConfig,
    outbox: OutboxLimits,
) -> Stack {
    let service = Keys::generate();
    let parts = serve::Service::direct(service.clone(), url.clone(), config).outbox_limits(outbox);
    let signer = Arc::clone(&parts.signer);
    let outbox = parts.outbox.clone();
    let (ready, is_ready) = tokio::sync::oneshot::channel();
    let server = tokio::spawn(serve::run(parts, ready));
    tokio::time::timeout(WAIT, is_ready).await.unwrap().unwrap();
    Stack {
        relay,
        url,
        service: service.public_key(),
        signer,
        outbox,
        server,
    }
}

/// A client sending raw requests and reading raw replies.
pub(crate) struct Raw {
    pub(crate) keys: Keys,
    client: Client,
    notifications: tokio::sync::broadcast::Receiver<RelayPoolNotification>,
}

impl Raw {
    pub(crate) async fn new(url: &RelayUrl) -> Self {
        Self::with_keys(url, Keys::generate()).await
    }

    pub(crate) async fn with_keys(url: &RelayUrl, keys: Keys) -> Self {
        let client = Client::builder().signer(keys.clone()).build();
        client.add_relay(url.clone()).await.unwrap();
        client.connect().await;
        client.wait_for_connection(WAIT).await;
        let notifications = client.notifications();
        let filter = Filter::new()
            .kinds([Kind::from(KIND_ADMIN), Kind::from(KIND_NIP46)])
            .pubkey(keys.public_key())
            .since(Timestamp::now() - 5);
        client.subscribe(filter, None).await.unwrap();
        Self {
            keys,
            client,
            notifications,
        }
    }

    pub(crate) async fn send_event(&self, event: &Event) {
        self.client.send_event(event).await.unwrap();
    }

    /// Sends `events` without waiting for each OK.
    pub(crate) async fn send_all(&self, events: Vec<Event>) {
        let relays = self.client.relays().await;
        for relay in relays.values() {
            relay
                .batch_msg(
                    events
                        .iter()
                        .map(|e| nostr::ClientMessage::event(e.clone()))
                        .collect(),
                )
                .unwrap();
        }
    }

    /// Sends `request` and waits for the reply with its id.
    pub(crate) async fn call_with(
        &mut self,
        kind: u16,
        to: &PublicKey,
        request: &Request,
        scheme: Scheme,
    ) -> Response {
        let event = seal_request(&self.keys, to, kind, request, scheme).unwrap();
        self.send_event(&event).await;
        self.reply(&request.id, Some(scheme))
            .await
            .unwrap_or_else(|| panic!("no reply to {}", request.method))
    }

    pub(crate) async fn call(
        &mut self,
        kind: u16,
        to: &PublicKey,
        method: &str,
        params: &[&str],
    ) -> Response {
        let request = Request::new(method, Params::new(params.iter().copied()));
        self.call_with(kind, to, &request, Scheme::Nip44).await
    }

    pub(crate) async fn admin(
        &mut self,
        service: &PublicKey,
        request: &AdminRequest,
    ) -> Result<String, String> {
        self.call_with(KIND_ADMIN, service, &request.to_request(), Scheme::Nip44)
            .await
            .into_result()
    }

    /// The reply with `id`, if one comes within `WAIT`.
    pub(crate) async fn reply(&mut self, id: &str, scheme: Option<Scheme>) -> Option<Response> {
        self.reply_within(id, scheme, WAIT).await
    }

    /// The replies to all of `ids`, in any order, if they come within `wait`.
    pub(crate) async fn replies_within(
        &mut self,
        ids: &[String],
        wait: Duration,
    ) -> Result<Vec<Response>, usize> {
        let mut found: Vec<Response> = Vec::new();
        let _ = tokio::time::timeout(wait, async {
            while found.len() < ids.len() {
                if let Ok(RelayPoolNotification::Event { event, .. }) =
                    self.notifications.recv().await
                {
                    if let Ok(response) = open_response(&self.keys, &event) {
                        if ids.contains(&response.id) && !found.iter().any(|r| r.id == response.id)
                        {
                            found.push(response);
                        }
                    }
                }
            }
        })
        .await;
        if found.len() == ids.len() {
            Ok(found)
        } else {
            Err(found.len())
        }
    }

    pub(crate) async fn reply_within(
        &mut self,
        id: &str,
        scheme: Option<Scheme>,
        wait: Duration,
    ) -> Option<Response> {
        tokio::time::timeout(wait, async {
            loop {
                if let Ok(RelayPoolNotification::Event { event, .. }) =
                    self.notifications.recv().await
                {
                    if let Ok(response) = open_response(&self.keys, &event) {
                        if response.id == id {
                            if let Some(scheme) = scheme {
                                assert_eq!(
                                    Scheme::of(&event.content),
                                    scheme,
                                    "answered in another scheme"
                                );
                            }
                            return response;
                        }
                    }
                }
            }
        })
        .await
        .ok()
    }
}

pub(crate) fn relays_csv(url: &RelayUrl) -> Vec<RelayUrl> {
    vec![url.clone()]
}

/// `import_key` of `user` on the stack's relay.
pub(crate) fn import_request(stack: &Stack, user: &Keys) -> AdminRequest {
    AdminRequest::ImportKey {
        keys: user.clone(),
        relays: relays_csv(&stack.url),
        apps: verifier::rpc::admin::KeptApps::Keep,
    }
}

pub(crate) async fn import(stack: &Stack, user: &Keys) -> Raw {
    let mut owner = Raw::with_keys(&stack.url, user.clone()).await;
    let r = owner
        .admin(&stack.service, &import_request(stack, user))
        .await;
    assert_eq!(r, Ok("ok".into()));
    owner
}

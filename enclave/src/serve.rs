//! The signer's event loop: request events from the shared relay pool go
//! to the [`Signer`], and its replies go back out, without waiting for
//! relay OKs (some relays never acknowledge ephemeral events). When a
//! request changed the held keys, subscriptions are brought up to date
//! before its reply is sent. Test keys and secrets expire on a timer.

use std::sync::Arc;
use std::time::Duration;

use nostr::ClientMessage;
use nostr_sdk::{Client, RelayPoolNotification};
use tokio::sync::Semaphore;
use tracing::{debug, info, warn};
use verifier::event::{KIND_ADMIN, KIND_NIP46};

use crate::relay::subscriptions::Subscriptions;
use crate::signer::{Reply, Signer};

/// Most requests handled at once; more wait (the relay pool buffers them).
pub const MAX_IN_FLIGHT: usize = 256;
/// How often expired test keys and secrets are removed.
pub const EXPIRY_INTERVAL: Duration = Duration::from_secs(60);

/// Subscribes for the service key and every held key, says `ready` once
/// those subscriptions are in place, and serves requests until the client
/// shuts down.
pub async fn run(
    signer: Arc<Signer>,
    subscriptions: Subscriptions,
    client: Client,
    ready: tokio::sync::oneshot::Sender<()>,
) {
    let mut notifications = client.notifications();
    sync(&signer, &subscriptions).await;
    let _ = ready.send(());
    info!(
        admin_relay = %signer.admin_relay(),
        "listening for admin requests (kind 24135) and NIP-46 requests (kind 24133)"
    );
    let expiry = tokio::spawn(expire(Arc::clone(&signer), subscriptions.clone()));
    let permits = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    loop {
        let (relay_url, event) = match notifications.recv().await {
            Ok(RelayPoolNotification::Event {
                relay_url, event, ..
            }) => (relay_url, event),
            Ok(RelayPoolNotification::Shutdown) => break,
            Ok(_) => continue,
            Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                warn!(
                    "{n} relay events were dropped: requests arrive faster than they are handled"
                );
                continue;
            }
            Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
        };
        let kind = event.kind.as_u16();
        if kind != KIND_NIP46 && kind != KIND_ADMIN {
            continue;
        }
        let Ok(permit) = Arc::clone(&permits).acquire_owned().await else {
            break;
        };
        let (signer, subscriptions, client) =
            (Arc::clone(&signer), subscriptions.clone(), client.clone());
        tokio::spawn(async move {
            let outcome = signer.handle(&event, &relay_url, crate::unix_now());
            if outcome.keys_changed {
                sync(&signer, &subscriptions).await;
            }
            if let Some(reply) = outcome.reply {
                send(&client, reply).await;
            }
            drop(permit);
        });
    }
    expiry.abort();
}

/// Brings subscriptions in line with the held keys.
pub async fn sync(signer: &Signer, subscriptions: &Subscriptions) {
    subscriptions.sync(|| signer.store().relay_map()).await;
}

/// Sends `reply` to each of its relays in the pool, without waiting for OK.
pub async fn send(client: &Client, reply: Reply) {
    for url in &reply.relays {
        match client.relay(url.clone()).await {
            Ok(relay) => {
                if let Err(e) = relay.send_msg(ClientMessage::event(reply.event.clone())) {
                    debug!(%url, id = %reply.event.id, "reply not sent: {e}");
                }
            }
            Err(e) => debug!(%url, "reply not sent, relay not in the pool: {e}"),
        }
    }
}

async fn expire(signer: Arc<Signer>, subscriptions: Subscriptions) {
    let mut tick = tokio::time::interval(EXPIRY_INTERVAL);
    loop {
        tick.tick().await;
        if signer.expire(crate::unix_now()) {
            info!("expired test keys deleted");
            sync(&signer, &subscriptions).await;
        }
    }
}

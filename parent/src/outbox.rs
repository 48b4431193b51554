//! The relays an instance is announced on: the builder's and launcher's
//! write relays (their outboxes), looked up by the parent over its own
//! network on discovery relays, as the original did. The rule for reading
//! a relay list is the verifier's (`verifier::event::relay_list`); this
//! module only fetches. When nothing is found the fallback list is used,
//! so an instance is always announced somewhere.

use std::time::Duration;

use nostr::{Filter, Kind, PublicKey, RelayUrl};
use nostr_sdk::Client;
use tracing::{info, warn};
use verifier::event::npub;
use verifier::event::relay_list::{outbox_of, KIND_CONTACTS, KIND_RELAY_LIST};
use verifier::protocol::MAX_ANNOUNCE_RELAYS;

/// Where and how long to look.
#[derive(Debug, Clone)]
pub struct OutboxConfig {
    /// Relays that index relay lists.
    pub discovery: Vec<RelayUrl>,
    /// Used when no outbox is found.
    pub fallback: Vec<RelayUrl>,
    /// How long to wait for the discovery relays.
    pub timeout: Duration,
}

/// The union of the write relays of `authors` (in order, at most
/// [`MAX_ANNOUNCE_RELAYS`]), or the fallback list if there are none.
pub async fn announce_relays(config: &OutboxConfig, authors: &[PublicKey]) -> Vec<RelayUrl> {
    let events = match fetch(config, authors).await {
        Ok(events) => events,
        Err(e) => {
            warn!("cannot read relay lists: {e}");
            Vec::new()
        }
    };
    let mut relays: Vec<RelayUrl> = Vec::new();
    for author in authors {
        let outbox = outbox_of(&events, author);
        info!(author = %npub(author), relays = outbox.len(), "outbox found");
        for url in outbox {
            if !relays.contains(&url) && relays.len() < MAX_ANNOUNCE_RELAYS {
                relays.push(url);
            }
        }
    }
    if relays.is_empty() {
        warn!("no outbox relays found; announcing on the fallback relays");
        return config
            .fallback
            .iter()
            .take(MAX_ANNOUNCE_RELAYS)
            .cloned()
            .collect();
    }
    relays
}

async fn fetch(config: &OutboxConfig, authors: &[PublicKey]) -> Result<Vec<nostr::Event>, String> {
    if config.discovery.is_empty() || authors.is_empty() {
        return Ok(Vec::new());
    }
    let client = Client::default();
    for url in &config.discovery {
        client
            .add_relay(url.clone())
            .await
            .map_err(|e| format!("{url}: {e}"))?;
    }
    client.connect().await;
    client.wait_for_connection(config.timeout).await;
    let filter = Filter::new()
        .kinds([Kind::from(KIND_RELAY_LIST), Kind::from(KIND_CONTACTS)])
        .authors(authors.iter().copied());
    let events = client
        .fetch_events(filter, config.timeout)
        .await
        .map_err(|e| e.to_string());
    client.shutdown().await;
    Ok(events?.into_iter().collect())
}

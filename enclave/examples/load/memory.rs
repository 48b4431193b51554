//! Many keys: memory per key, relay connections, and a burst of admin
//! imports sent at once, every one of which must be answered.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use enclave::custody::{AdmissionLimits, Limits};
use enclave::signer::SignerConfig;
use futures_util::{SinkExt, StreamExt};
use nostr::{Filter, JsonUtil, Keys, Kind, PublicKey, RelayMessage, RelayUrl, Timestamp};
use nostr_sdk::RelayStatus;
use tokio_tungstenite::tungstenite::Message;
use verifier::event::KIND_ADMIN;
use verifier::rpc::admin::{AdminRequest, KeptApps};
use verifier::rpc::cipher::Scheme;
use verifier::rpc::{open_response, seal_request};

use crate::harness::{connected, connections_to, local_relay, rss_kib, send_waiting, start_signer};

fn config(keys: usize) -> SignerConfig {
    // This measures the signer, not admission control: no proof of work.
    SignerConfig {
        limits: Limits {
            max_keys: keys.max(1),
            admission: AdmissionLimits::off(),
            ..Default::default()
        },
        ..Default::default()
    }
}

/// Relays in a child process of this binary (`load serve-relays`), so
/// that the memory measured is the signer's alone: an in-process relay
/// holds its own copy of every subscription filter.
struct ChildRelays {
    child: std::process::Child,
    urls: Vec<RelayUrl>,
}

impl ChildRelays {
    fn start(count: usize) -> Self {
        use std::io::BufRead;
        let mut child = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["serve-relays", "--count", &count.to_string()])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let urls = std::io::BufReader::new(stdout)
            .lines()
            .take(count)
            .map(|l| RelayUrl::parse(&l.unwrap()).unwrap())
            .collect();
        Self { child, urls }
    }

    fn port(url: &RelayUrl) -> u16 {
        url.as_str()
            .trim_end_matches('/')
            .rsplit(':')
            .next()
            .unwrap()
            .parse()
            .unwrap()
    }
}

impl Drop for ChildRelays {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `load serve-relays`: `count` relays, their URLs on stdout, until killed.
pub(crate) async fn serve_relays(count: usize) {
    let mut relays = Vec::new();
    for _ in 0..count {
        let (relay, url) = local_relay().await;
        println!("{url}");
        relays.push(relay);
    }
    std::future::pending::<()>().await;
}

/// Imports `keys` keys spread over `relays` relays (in another process);
/// prints the signer's memory growth per key and its relay connections.
pub(crate) async fn memory(keys: usize, relays: usize) {
    let list = ChildRelays::start(relays.max(1));
    let urls: Vec<RelayUrl> = list.urls.clone();
    let admin = urls[0].clone();
    let (signer, client, service) = start_signer(&admin, config(keys)).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = rss_kib();
    let sender = connected(&admin, &Keys::generate()).await;
    let start = Instant::now();
    // At most WINDOW imports outstanding: LocalRelay forwards events to a
    // connection through a broadcast channel of 1,024 and drops what a
    // slower reader misses (see `imports` for a burst sent at once).
    const WINDOW: usize = 512;
    // Each request is made just before it is sent, so that what the
    // process holds is the signer's, not a queue of prepared events.
    for i in 0..keys {
        while i >= WINDOW && signer.store().len() + WINDOW < i {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let user = Keys::generate();
        let request = AdminRequest::ImportKey {
            keys: user.clone(),
            relays: vec![urls[i % urls.len()].clone()],
            apps: KeptApps::Keep,
        };
        let event = seal_request(
            &user,
            &service.public_key(),
            KIND_ADMIN,
            &request.to_request(),
            Scheme::Nip44,
        )
        .unwrap();
        send_waiting(&sender, &admin, &event).await;
    }
    let deadline = Instant::now() + Duration::from_secs(1800);
    while signer.store().len() < keys && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let took = start.elapsed();
    sender.shutdown().await;
    // Let the request path's buffers go (the dedupe cache of request ids
    // stays: it is bounded, and part of what holding many keys costs).
    tokio::time::sleep(Duration::from_secs(5)).await;
    let after = rss_kib();
    let connected_relays = client
        .relays()
        .await
        .values()
        .filter(|r| r.status() == RelayStatus::Connected)
        .count();
    let sockets: usize = urls
        .iter()
        .map(|u| connections_to(ChildRelays::port(u)))
        .sum();
    let held = signer.store().len();
    println!(
        "{held} of {keys} keys over {} relays imported in {:.2} s",
        urls.len(),
        took.as_secs_f64()
    );
    println!(
        "RSS before {before} KiB, after {after} KiB: +{} KiB ({:.0} bytes per key)",
        after.saturating_sub(before),
        (after.saturating_sub(before) * 1024) as f64 / keys.max(1) as f64
    );
    println!("signer relay connections: {connected_relays} in its pool, {sockets} sockets open to the relays");
}

/// A subscriber that reads every message itself (no broadcast channel
/// that could drop under a burst): the admin replies of `service`.
async fn raw_replies(
    url: &RelayUrl,
    service: PublicKey,
) -> tokio::sync::mpsc::UnboundedReceiver<nostr::Event> {
    let (mut ws, _) = tokio_tungstenite::connect_async(url.as_str())
        .await
        .unwrap();
    let filter = Filter::new()
        .kind(Kind::from(KIND_ADMIN))
        .author(service)
        .since(Timestamp::now() - 5);
    let req = nostr::ClientMessage::req(nostr::SubscriptionId::new("replies"), filter);
    ws.send(Message::text(req.as_json())).await.unwrap();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(Ok(msg)) = ws.next().await {
            if let Message::Text(text) = msg {
                if let Ok(RelayMessage::Event { event, .. }) =
                    RelayMessage::from_json(text.as_str())
                {
                    if tx.send(event.into_owned()).is_err() {
                        return;
                    }
                }
            }
        }
    });
    rx
}

/// `count` admin imports from as many owners, all sent at once: how many
/// are answered (a reply each, read off the relay), and when.
pub(crate) async fn imports(count: usize) {
    let (_relay, url) = local_relay().await;
    let (signer, _client, service) = start_signer(&url, config(count)).await;
    let owners: HashMap<PublicKey, Keys> = (0..count)
        .map(|_| {
            let k = Keys::generate();
            (k.public_key(), k)
        })
        .collect();
    let mut ids = HashMap::new();
    let events: Vec<_> = owners
        .values()
        .map(|user| {
            let request = AdminRequest::ImportKey {
                keys: user.clone(),
                relays: vec![url.clone()],
                apps: KeptApps::Keep,
            }
            .to_request();
            ids.insert(request.id.clone(), false);
            seal_request(
                user,
                &service.public_key(),
                KIND_ADMIN,
                &request,
                Scheme::Nip44,
            )
            .unwrap()
        })
        .collect();
    let mut replies = raw_replies(&url, service.public_key()).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let sender = connected(&url, &Keys::generate()).await;
    let start = Instant::now();
    for event in &events {
        send_waiting(&sender, &url, event).await;
    }
    let sent = start.elapsed();
    let (mut answered, mut errors, mut last) = (0usize, 0usize, Duration::ZERO);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(300);
    while answered < count {
        let Ok(Some(event)) = tokio::time::timeout_at(deadline, replies.recv()).await else {
            break;
        };
        let Some(owner) = event.tags.public_keys().next().and_then(|p| owners.get(p)) else {
            continue;
        };
        let Ok(response) = open_response(owner, &event) else {
            continue;
        };
        if let Some(seen) = ids.get_mut(&response.id) {
            if !*seen {
                *seen = true;
                answered += 1;
                last = start.elapsed();
                if response.is_error() {
                    errors += 1;
                }
            }
        }
    }
    println!(
        "{count} imports sent at once (in {:.2} s): {answered} answered ({errors} with an error), the last after {:.2} s; {} keys held",
        sent.as_secs_f64(),
        last.as_secs_f64(),
        signer.store().len()
    );
}

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

use crate::harness::{
    connected, connections_to, local_relay, rss_kib, send_waiting, start_signer, RawSender,
};

fn config(keys: usize, perm_relays: Vec<RelayUrl>) -> SignerConfig {
    // This measures the signer, not admission control: no proof of work.
    SignerConfig {
        limits: Limits {
            max_keys: keys.max(1),
            admission: AdmissionLimits::off(),
            ..Default::default()
        },
        perm_relays,
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
/// With `perm_relays` more relays where every key's nsec.app permission
/// events are read (a production enclave reads five).
pub(crate) async fn memory(keys: usize, relays: usize, perm_relays: usize) {
    let list = ChildRelays::start(relays.max(1) + perm_relays);
    let (urls, perms) = list.urls.split_at(relays.max(1));
    let (urls, perms) = (urls.to_vec(), perms.to_vec());
    let admin = urls[0].clone();
    let (signer, client, service) = start_signer(&admin, config(keys, perms)).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = rss_kib();
    let mut sender = RawSender::connect(&admin).await;
    let start = Instant::now();
    // At most WINDOW imports outstanding: LocalRelay forwards events to a
    // connection through a broadcast channel of 1,024 and drops what a
    // slower reader misses (see `imports` for a burst sent at once).
    // Requests and replies share that channel, as do the relay's answers
    // to each subscription change: 128 leaves room.
    const WINDOW: usize = 128;
    let mut stalled = false;
    // Each request is made just before it is sent, so that what the
    // process holds is the signer's, not a queue of prepared events.
    for i in 0..keys {
        let mut waited = Instant::now();
        let mut held = signer.store().len();
        while i >= WINDOW && held + WINDOW < i {
            tokio::time::sleep(Duration::from_millis(2)).await;
            let now_held = signer.store().len();
            if now_held != held {
                (held, waited) = (now_held, Instant::now());
            } else if waited.elapsed() > Duration::from_secs(20) {
                // Lost on the relay: say so, and send on.
                stalled = true;
                break;
            }
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
        sender.send(&event).await;
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while signer.store().len() < keys && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let took = start.elapsed();
    drop(sender);
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
    let sockets: usize = list
        .urls
        .iter()
        .map(|u| connections_to(ChildRelays::port(u)))
        .sum();
    let held = signer.store().len();
    println!(
        "{held} of {keys} keys over {} relays imported in {:.2} s",
        urls.len(),
        took.as_secs_f64()
    );
    if stalled {
        println!("(some imports were lost on the way: the relay dropped events for a slow reader)");
    }
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
    let (signer, _client, service) = start_signer(&url, config(count, Vec::new())).await;
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

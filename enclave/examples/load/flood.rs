//! A stranger's flood of signed junk at the service key and at a held
//! key, beside an app's requests; and a long run at a steady mixed load.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use enclave::signer::SignerConfig;
use nostr::{Event, EventBuilder, Keys, Kind, PublicKey, RelayUrl, Tag};
use verifier::event::{KIND_ADMIN, KIND_NIP46};
use verifier::rpc::admin::AdminRequest;
use verifier::rpc::cipher::Scheme;
use verifier::rpc::{seal_request, Params, Request};

use crate::harness::{
    connected, drive_apps, local_relay, ms, rss_kib, send_waiting, start_signer, template,
};

/// `n` events, each from a fresh key, in four kinds of junk: content
/// that decrypts to nothing, to the service key and to `user`; and real
/// requests from strangers: an admin `ping` (answered: it costs a reply)
/// and a `sign_event` to `user`, whose apps they are not.
fn junk(n: usize, service: PublicKey, user: PublicKey) -> Vec<Event> {
    (0..n)
        .map(|i| {
            let stranger = Keys::generate();
            let garbage = |kind: u16, to: PublicKey| {
                EventBuilder::new(Kind::from(kind), format!("A{}", "x".repeat(180 + i % 50)))
                    .tag(Tag::public_key(to))
                    .sign_with_keys(&stranger)
                    .unwrap()
            };
            match i % 4 {
                0 => garbage(KIND_ADMIN, service),
                1 => garbage(KIND_NIP46, user),
                2 => {
                    let ping = Request::new("ping", Params::default());
                    seal_request(&stranger, &service, KIND_ADMIN, &ping, Scheme::Nip44).unwrap()
                }
                _ => {
                    let sign = Request::new("sign_event", Params::new([template(&user)]));
                    seal_request(&stranger, &user, KIND_NIP46, &sign, Scheme::Nip44).unwrap()
                }
            }
        })
        .collect()
}

/// Sends `events` at `rate` per second from one connection; returns how
/// many went out. Stops early if `stop` is set.
async fn flood(url: RelayUrl, events: Vec<Event>, rate: usize, stop: Arc<AtomicBool>) -> usize {
    let client = connected(&url, &Keys::generate()).await;
    let start = Instant::now();
    let mut sent = 0;
    for (i, event) in events.iter().enumerate() {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let due = start + Duration::from_secs_f64(i as f64 / rate as f64);
        tokio::time::sleep_until(due.into()).await;
        send_waiting(&client, &url, event).await;
        sent += 1;
    }
    client.shutdown().await;
    sent
}

/// An app's `requests` sign_event round trips unloaded, then while a
/// stranger sends `rate` junk events a second for as long as they take.
pub(crate) async fn flood_test(rate: usize, requests: usize) {
    let (_relay, url) = local_relay().await;
    let (signer, _client, service) = start_signer(&url, SignerConfig::default()).await;
    let (user, app) = (Keys::generate(), Keys::generate());
    let sender = connected(&url, &Keys::generate()).await;
    let grant = AdminRequest::ConnectKey {
        keys: user.clone(),
        app: app.public_key(),
        relays: vec![url.clone()],
        policy: None,
    };
    let event = seal_request(
        &user,
        &service.public_key(),
        KIND_ADMIN,
        &grant.to_request(),
        Scheme::Nip44,
    )
    .unwrap();
    send_waiting(&sender, &url, &event).await;
    while signer.store().is_empty() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;

    // One request every 20 ms, so that the loaded run spans the flood.
    let pace = Duration::from_millis(20);
    let mut unloaded = drive_apps(&url, user.public_key(), vec![app.clone()], requests, pace).await;
    println!("unloaded:            {}", unloaded.line());
    let rss_before = rss_kib();

    // Enough junk for the loaded run (generated before it starts).
    let seconds = (requests as f64 * 0.02) as usize + 5;
    let events = junk(rate * seconds, service.public_key(), user.public_key());
    let stop = Arc::new(AtomicBool::new(false));
    let peak = Arc::new(AtomicU64::new(0));
    let sampler = {
        let (stop, peak) = (Arc::clone(&stop), Arc::clone(&peak));
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                peak.fetch_max(rss_kib(), Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    let flooder = tokio::spawn(flood(url.clone(), events, rate, Arc::clone(&stop)));
    tokio::time::sleep(Duration::from_secs(2)).await;
    let flood_start = Instant::now();
    let mut loaded = drive_apps(&url, user.public_key(), vec![app], requests, pace).await;
    stop.store(true, Ordering::Relaxed);
    let sent = flooder.await.unwrap();
    let _ = sampler.await;
    let flood_secs = flood_start.elapsed().as_secs_f64() + 2.0;
    println!("under {rate} junk/s:  {}", loaded.line());
    println!(
        "junk sent: {sent} in about {flood_secs:.1} s ({:.0} /s); RSS before the flood {rss_before} KiB, peak {} KiB (+{} KiB)",
        sent as f64 / flood_secs,
        peak.load(Ordering::Relaxed),
        peak.load(Ordering::Relaxed).saturating_sub(rss_before)
    );
    println!(
        "p99 {:.2} ms loaded against {:.2} ms unloaded",
        ms(loaded.pct(0.99)),
        ms(unloaded.pct(0.99))
    );
}

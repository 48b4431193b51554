//! Load and memory figures for BENCHMARKS.md, on in-process LocalRelays
//! with the real signer, subscriptions and event loop (no attestation).
//!
//! ```sh
//! cargo run --release -p enclave --example load -- latency --clients 20 --requests 50
//! cargo run --release -p enclave --example load -- memory --keys 10000 --relays 3
//! ```

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use enclave::serve;
use enclave::signer::{Signer, SignerConfig};
use nostr::{ClientMessage, Filter, Keys, Kind, RelayUrl, Timestamp};
use nostr_relay_builder::builder::RateLimit;
use nostr_relay_builder::RelayBuilder;
use nostr_sdk::{Client, RelayPoolNotification, RelayStatus};
use parent::dev_stack::relay::DevRelay;
use verifier::event::{KIND_ADMIN, KIND_NIP46};
use verifier::rpc::admin::AdminRequest;
use verifier::rpc::cipher::Scheme;
use verifier::rpc::{open_response, seal_request, Params, Request};

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    mode: Mode,
}

#[derive(Subcommand)]
enum Mode {
    /// N apps, each with its own key and relay connection, send sign_event
    /// requests one after another; prints throughput and latency.
    Latency {
        #[arg(long, default_value_t = 20)]
        clients: usize,
        #[arg(long, default_value_t = 50)]
        requests: usize,
    },
    /// Imports K keys spread over R relays; prints the signer's memory
    /// growth and its relay connections.
    Memory {
        #[arg(long, default_value_t = 1000)]
        keys: usize,
        #[arg(long, default_value_t = 3)]
        relays: usize,
    },
}

const TEMPLATE: &str = r#"{"kind":1,"content":"a note of ordinary length, signed in the enclave under load","tags":[["t","load"]],"created_at":1700000000}"#;

async fn local_relay() -> (DevRelay, RelayUrl) {
    // No rate limit: the signer's one connection carries every reply.
    let unlimited = RateLimit {
        max_reqs: 10_000,
        notes_per_minute: u32::MAX,
    };
    let relay = DevRelay::local(RelayBuilder::default().rate_limit(unlimited))
        .await
        .unwrap();
    let url = RelayUrl::parse(&relay.url()).unwrap();
    (relay, url)
}

async fn signer(admin: &RelayUrl, config: SignerConfig) -> (Arc<Signer>, Client, Keys) {
    let service = Keys::generate();
    let parts = serve::Service::direct(service.clone(), admin.clone(), config);
    let signer = Arc::clone(&parts.signer);
    let client = parts.subscriptions.client().clone();
    let (ready, is_ready) = tokio::sync::oneshot::channel();
    tokio::spawn(serve::run(parts, ready));
    is_ready.await.unwrap();
    (signer, client, service)
}

async fn connected(url: &RelayUrl, keys: &Keys) -> Client {
    let client = Client::builder().signer(keys.clone()).build();
    client.add_relay(url.clone()).await.unwrap();
    client.connect().await;
    client.wait_for_connection(Duration::from_secs(5)).await;
    client
}

/// Sends admin requests from one connection and waits until the store holds `n` keys.
async fn import_all(
    signer: &Signer,
    sender: &Client,
    admin: &RelayUrl,
    service: &Keys,
    requests: Vec<(Keys, AdminRequest)>,
    n: usize,
) {
    for (keys, request) in &requests {
        let event = seal_request(
            keys,
            &service.public_key(),
            KIND_ADMIN,
            &request.to_request(),
            Scheme::Nip44,
        )
        .unwrap();
        // nostr-sdk queues at most 1,024 messages per relay and drops the
        // rest: wait for room instead of losing requests before they leave.
        loop {
            let out = sender
                .send_msg_to([admin.clone()], ClientMessage::event(event.clone()))
                .await
                .unwrap();
            if out.failed.is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    let deadline = Instant::now() + Duration::from_secs(600);
    while signer.store().len() < n {
        assert!(
            Instant::now() < deadline,
            "only {} of {n} keys imported",
            signer.store().len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Established TCP connections accepted on `port` (the relays' side).
fn connections_to(port: u16) -> usize {
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap_or_default();
    let local = format!(":{port:04X}");
    table
        .lines()
        .skip(1)
        .filter(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.len() > 3 && f[1].ends_with(&local) && f[3] == "01"
        })
        .count()
}

async fn latency(clients: usize, requests: usize) {
    let (_relay, url) = local_relay().await;
    let (signer, _client, service) = signer(&url, SignerConfig::default()).await;
    let pairs: Vec<(Keys, Keys)> = (0..clients)
        .map(|_| (Keys::generate(), Keys::generate()))
        .collect();
    let sender = connected(&url, &Keys::generate()).await;
    let grants = pairs
        .iter()
        .map(|(user, app)| {
            (
                user.clone(),
                AdminRequest::ConnectKey {
                    keys: user.clone(),
                    app: app.public_key(),
                    relays: vec![url.clone()],
                    policy: None,
                },
            )
        })
        .collect();
    import_all(&signer, &sender, &url, &service, grants, clients).await;
    tokio::time::sleep(Duration::from_secs(1)).await;

    let start = Instant::now();
    let tasks: Vec<_> = pairs
        .into_iter()
        .map(|(user, app)| {
            let url = url.clone();
            tokio::spawn(async move {
                let client = connected(&url, &app).await;
                let mut notifications = client.notifications();
                let filter = Filter::new()
                    .kind(Kind::from(KIND_NIP46))
                    .pubkey(app.public_key())
                    .since(Timestamp::now() - 5);
                client.subscribe(filter, None).await.unwrap();
                let mut latencies = Vec::with_capacity(requests);
                let mut lost = 0;
                for _ in 0..requests {
                    let request = Request::new("sign_event", Params::new([TEMPLATE]));
                    let event = seal_request(
                        &app,
                        &user.public_key(),
                        KIND_NIP46,
                        &request,
                        Scheme::Nip44,
                    )
                    .unwrap();
                    let sent = Instant::now();
                    client
                        .send_msg_to([url.clone()], ClientMessage::event(event))
                        .await
                        .unwrap();
                    let got = tokio::time::timeout(Duration::from_secs(10), async {
                        while let Ok(n) = notifications.recv().await {
                            if let RelayPoolNotification::Event { event, .. } = n {
                                if open_response(&app, &event)
                                    .is_ok_and(|r| r.id == request.id && r.error.is_none())
                                {
                                    return;
                                }
                            }
                        }
                    })
                    .await;
                    match got {
                        Ok(()) => latencies.push(sent.elapsed()),
                        Err(_) => lost += 1,
                    }
                }
                client.shutdown().await;
                (latencies, lost)
            })
        })
        .collect();
    let mut all = Vec::new();
    let mut lost = 0;
    for t in tasks {
        let (l, n) = t.await.unwrap();
        all.extend(l);
        lost += n;
    }
    let elapsed = start.elapsed();
    all.sort();
    let pct = |p: f64| {
        all.get(((all.len() as f64 * p) as usize).min(all.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    };
    println!(
        "clients {clients}, requests each {requests}: {} answered, {lost} lost",
        all.len()
    );
    println!(
        "throughput {:.0} sign_event/s over {:.2} s",
        all.len() as f64 / elapsed.as_secs_f64(),
        elapsed.as_secs_f64()
    );
    println!(
        "latency p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        ms(pct(0.5)),
        ms(pct(0.99)),
        ms(all.last().copied().unwrap_or_default())
    );
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

async fn memory(keys: usize, relays: usize) {
    let mut list = Vec::new();
    for _ in 0..relays.max(1) {
        list.push(local_relay().await);
    }
    let urls: Vec<RelayUrl> = list.iter().map(|(_, u)| u.clone()).collect();
    let admin = urls[0].clone();
    // This measures the signer, not admission control: no proof of work.
    let config = SignerConfig {
        limits: enclave::custody::Limits {
            max_keys: keys.max(1),
            admission: enclave::custody::AdmissionLimits::off(),
            ..Default::default()
        },
        ..Default::default()
    };
    let (signer, client, service) = signer(&admin, config).await;
    let before = rss_kib();
    let sender = connected(&admin, &Keys::generate()).await;
    let imports = (0..keys)
        .map(|i| {
            let user = Keys::generate();
            (
                user.clone(),
                AdminRequest::ImportKey {
                    keys: user,
                    relays: vec![urls[i % urls.len()].clone()],
                    apps: verifier::rpc::admin::KeptApps::Keep,
                },
            )
        })
        .collect();
    let start = Instant::now();
    import_all(&signer, &sender, &admin, &service, imports, keys).await;
    let took = start.elapsed();
    sender.shutdown().await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = rss_kib();
    let connected_relays = client
        .relays()
        .await
        .values()
        .filter(|r| r.status() == RelayStatus::Connected)
        .count();
    let sockets: usize = urls
        .iter()
        .map(|u| {
            connections_to(
                u.as_str()
                    .trim_end_matches('/')
                    .rsplit(':')
                    .next()
                    .unwrap()
                    .parse()
                    .unwrap(),
            )
        })
        .sum();
    println!(
        "{keys} keys over {} relays imported in {:.2} s",
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

#[tokio::main]
async fn main() {
    // Warnings (shed or refused traffic) go to stderr; RUST_LOG for more.
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().mode {
        Mode::Latency { clients, requests } => latency(clients, requests).await,
        Mode::Memory { keys, relays } => memory(keys, relays).await,
    }
}

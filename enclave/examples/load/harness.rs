//! What the load modes share: relays, the signer, app clients and figures.

use std::sync::Arc;
use std::time::{Duration, Instant};

use enclave::serve;
use enclave::signer::{Signer, SignerConfig};
use nostr::{ClientMessage, Event, Filter, Keys, Kind, PublicKey, RelayUrl, Timestamp};
use nostr_relay_builder::builder::RateLimit;
use nostr_relay_builder::RelayBuilder;
use nostr_sdk::{Client, RelayPoolNotification};
use parent::dev_stack::relay::DevRelay;
use verifier::event::KIND_NIP46;
use verifier::rpc::cipher::Scheme;
use verifier::rpc::{open_response, seal_request, Params, Request};

/// The `sign_event` template every app sends (its `pubkey` is the user's).
pub(crate) fn template(user: &PublicKey) -> String {
    format!(
        r#"{{"kind":1,"pubkey":"{user}","content":"a note of ordinary length, signed in the enclave under load","tags":[["t","load"]],"created_at":{}}}"#,
        Timestamp::now().as_secs()
    )
}

/// A dev relay (TCP_NODELAY, as every relay the stack uses) without a
/// rate limit: the signer's one connection carries every reply.
pub(crate) async fn local_relay() -> (DevRelay, RelayUrl) {
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

/// Our signer with its subscriptions and event loop, on `admin`.
pub(crate) async fn start_signer(
    admin: &RelayUrl,
    config: SignerConfig,
) -> (Arc<Signer>, Client, Keys) {
    let service = Keys::generate();
    let parts = serve::Service::direct(service.clone(), admin.clone(), config);
    let signer = Arc::clone(&parts.signer);
    let client = parts.subscriptions.client().clone();
    let (ready, is_ready) = tokio::sync::oneshot::channel();
    tokio::spawn(serve::run(parts, ready));
    is_ready.await.unwrap();
    (signer, client, service)
}

/// A client of its own, connected to `url`.
pub(crate) async fn connected(url: &RelayUrl, keys: &Keys) -> Client {
    let client = Client::builder().signer(keys.clone()).build();
    client.add_relay(url.clone()).await.unwrap();
    client.connect().await;
    client.wait_for_connection(Duration::from_secs(5)).await;
    client
}

/// Sends `event`, waiting for room: nostr-sdk queues at most 1,024
/// messages per relay and refuses the rest.
pub(crate) async fn send_waiting(sender: &Client, url: &RelayUrl, event: &Event) {
    loop {
        let out = sender
            .send_msg_to([url.clone()], ClientMessage::event(event.clone()))
            .await
            .unwrap();
        if out.failed.is_empty() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// The process's resident memory, KiB.
pub(crate) fn rss_kib() -> u64 {
    rss_kib_of("self")
}

/// The resident memory of process `pid` ("self": this one), KiB.
pub(crate) fn rss_kib_of(pid: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Established TCP connections accepted on `port` (the relays' side).
pub(crate) fn connections_to(port: u16) -> usize {
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

/// Latencies of answered requests, and those that were not.
#[derive(Debug, Default)]
pub(crate) struct Stats {
    pub(crate) latencies: Vec<Duration>,
    pub(crate) lost: usize,
    pub(crate) errors: usize,
    pub(crate) elapsed: Duration,
}

impl Stats {
    pub(crate) fn merge(&mut self, other: Stats) {
        self.latencies.extend(other.latencies);
        self.lost += other.lost;
        self.errors += other.errors;
    }

    pub(crate) fn pct(&mut self, p: f64) -> Duration {
        self.latencies.sort();
        let n = self.latencies.len();
        self.latencies
            .get(((n as f64 * p) as usize).min(n.saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    }

    pub(crate) fn throughput(&self) -> f64 {
        self.latencies.len() as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// One line: answered, lost, errors, throughput, p50, p99, max.
    pub(crate) fn line(&mut self) -> String {
        let (p50, p99, max) = (self.pct(0.5), self.pct(0.99), self.pct(1.0));
        format!(
            "{} answered, {} lost, {} errors; {:.0} /s over {:.2} s; p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            self.latencies.len(),
            self.lost,
            self.errors,
            self.throughput(),
            self.elapsed.as_secs_f64(),
            ms(p50),
            ms(p99),
            ms(max)
        )
    }
}

pub(crate) fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// `apps`, each on its own connection to `url`, send `requests`
/// `sign_event` requests to `user` one after another, each waiting for
/// its reply (at most 10 s), and starting at most every `pace`.
pub(crate) async fn drive_apps(
    url: &RelayUrl,
    user: PublicKey,
    apps: Vec<Keys>,
    requests: usize,
    pace: Duration,
) -> Stats {
    let mut clients = Vec::new();
    for app in apps {
        let client = connected(url, &app).await;
        let notifications = client.notifications();
        let filter = Filter::new()
            .kind(Kind::from(KIND_NIP46))
            .pubkey(app.public_key())
            .since(Timestamp::now() - 5);
        client.subscribe(filter, None).await.unwrap();
        clients.push((app, client, notifications));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let start = Instant::now();
    let tasks: Vec<_> = clients
        .into_iter()
        .map(|(app, client, mut notifications)| {
            let url = url.clone();
            tokio::spawn(async move {
                let mut stats = Stats::default();
                let mut tick = tokio::time::interval(pace.max(Duration::from_micros(1)));
                for _ in 0..requests {
                    tick.tick().await;
                    let request = Request::new("sign_event", Params::new([template(&user)]));
                    let event =
                        seal_request(&app, &user, KIND_NIP46, &request, Scheme::Nip44).unwrap();
                    let sent = Instant::now();
                    client
                        .send_msg_to([url.clone()], ClientMessage::event(event))
                        .await
                        .unwrap();
                    let got = tokio::time::timeout(Duration::from_secs(10), async {
                        while let Ok(n) = notifications.recv().await {
                            if let RelayPoolNotification::Event { event, .. } = n {
                                match open_response(&app, &event) {
                                    Ok(r) if r.id == request.id => return r.error.is_none(),
                                    _ => {}
                                }
                            }
                        }
                        false
                    })
                    .await;
                    match got {
                        Ok(true) => stats.latencies.push(sent.elapsed()),
                        Ok(false) => stats.errors += 1,
                        Err(_) => stats.lost += 1,
                    }
                }
                client.shutdown().await;
                stats
            })
        })
        .collect();
    let mut all = Stats::default();
    for t in tasks {
        all.merge(t.await.unwrap());
    }
    all.elapsed = start.elapsed();
    all
}

/// A bare WebSocket client that publishes events and keeps nothing (a
/// nostr-sdk client remembers the ids of what it sent, which would count
/// in the memory figures of this process).
pub(crate) struct RawSender {
    sink: futures_util::stream::SplitSink<
        tokio_tungstenite::WebSocketStream<
            tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
        >,
        tokio_tungstenite::tungstenite::Message,
    >,
    reader: tokio::task::JoinHandle<()>,
}

impl Drop for RawSender {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

impl RawSender {
    pub(crate) async fn connect(url: &RelayUrl) -> Self {
        use futures_util::StreamExt;
        let (ws, _) = tokio_tungstenite::connect_async(url.as_str())
            .await
            .unwrap();
        let (sink, mut stream) = ws.split();
        // The relay's OKs are read and dropped.
        let reader = tokio::spawn(async move { while let Some(Ok(_)) = stream.next().await {} });
        Self { sink, reader }
    }

    pub(crate) async fn send(&mut self, event: &Event) {
        use futures_util::SinkExt;
        use nostr::JsonUtil;
        let msg = ClientMessage::event(event.clone()).as_json();
        self.sink
            .send(tokio_tungstenite::tungstenite::Message::text(msg))
            .await
            .unwrap();
    }
}

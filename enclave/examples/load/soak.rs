//! A long run at a steady mixed load: apps signing, encrypting,
//! decrypting and pinging, owners adding and deleting keys, a stranger's
//! junk; every minute, what was answered and the process's memory.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use enclave::signer::SignerConfig;
use nostr::{ClientMessage, Filter, Keys, Kind, RelayUrl, Timestamp};
use nostr_sdk::RelayPoolNotification;
use verifier::event::{KIND_ADMIN, KIND_NIP46};
use verifier::rpc::admin::{AdminRequest, KeptApps};
use verifier::rpc::cipher::{Conversation, Scheme};
use verifier::rpc::{open_response, seal_request, Params, Request};

use crate::harness::{
    connected, local_relay, rss_kib, rss_kib_of, send_waiting, start_signer, template,
};

#[derive(Default)]
struct Counts {
    sent: AtomicU64,
    answered: AtomicU64,
    errors: AtomicU64,
    lost: AtomicU64,
    first_errors: std::sync::Mutex<Vec<String>>,
}

/// A request of the mix; encryption is with `friend`, someone the user
/// writes to (never the app itself: its conversation is its NIP-46 channel).
fn request_for(i: u64, user: &Keys, friend: &Keys) -> Request {
    let peer = friend.public_key().to_hex();
    match i % 5 {
        0 => Request::new("sign_event", Params::new([template(&user.public_key())])),
        1 => Request::new(
            "nip44_encrypt",
            Params::new([peer, "a message to an app".to_owned()]),
        ),
        2 => {
            let sealed = Conversation::nip44(friend.secret_key(), &user.public_key())
                .and_then(|c| c.encrypt("a message from a friend"))
                .unwrap();
            Request::new("nip44_decrypt", Params::new([peer, sealed]))
        }
        3 => Request::new("ping", Params::default()),
        _ => Request::new("get_public_key", Params::default()),
    }
}

/// One app sending a request every `period`, waiting (10 s at most) for each reply.
async fn app_loop(
    url: RelayUrl,
    user: Keys,
    app: Keys,
    period: Duration,
    counts: Arc<Counts>,
    stop: Arc<AtomicBool>,
) {
    let client = connected(&url, &app).await;
    let mut notifications = client.notifications();
    let filter = Filter::new()
        .kind(Kind::from(KIND_NIP46))
        .pubkey(app.public_key())
        .since(Timestamp::now() - 5);
    client.subscribe(filter, None).await.unwrap();
    let mut tick = tokio::time::interval(period);
    let mut i = 0u64;
    let friend = Keys::generate();
    while !stop.load(Ordering::Relaxed) {
        tick.tick().await;
        let request = request_for(i, &user, &friend);
        i += 1;
        let event = seal_request(
            &app,
            &user.public_key(),
            KIND_NIP46,
            &request,
            Scheme::Nip44,
        )
        .unwrap();
        counts.sent.fetch_add(1, Ordering::Relaxed);
        let _ = client
            .send_msg_to([url.clone()], ClientMessage::event(event))
            .await;
        let got = tokio::time::timeout(Duration::from_secs(10), async {
            while let Ok(n) = notifications.recv().await {
                if let RelayPoolNotification::Event { event, .. } = n {
                    match open_response(&app, &event) {
                        Ok(r) if r.id == request.id => {
                            if r.is_error() {
                                let mut first = counts.first_errors.lock().unwrap();
                                if first.len() < 5 {
                                    first.push(format!("{}: {:?}", request.method, r.error));
                                }
                            }
                            return !r.is_error();
                        }
                        _ => {}
                    }
                }
            }
            false
        })
        .await;
        let counter = match got {
            Ok(true) => &counts.answered,
            Ok(false) => &counts.errors,
            Err(_) => &counts.lost,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
    client.shutdown().await;
}

/// What is measured: the signer in this process, or the real stack's
/// `enclave run` process (built with `cargo build --release`), whose
/// memory is then the enclave's alone.
enum Measured {
    InProcess(Arc<enclave::signer::Signer>),
    Stack(Box<parent::dev_stack::Stack>),
}

impl Measured {
    fn rss(&self) -> u64 {
        match self {
            Self::InProcess(_) => rss_kib(),
            Self::Stack(stack) => stack
                .enclave
                .id()
                .map_or(0, |pid| rss_kib_of(&pid.to_string())),
        }
    }

    fn keys(&self) -> String {
        match self {
            Self::InProcess(signer) => signer.store().len().to_string(),
            Self::Stack(_) => "-".into(),
        }
    }
}

async fn real_stack(
    relay: &parent::dev_stack::relay::DevRelay,
) -> (Box<parent::dev_stack::Stack>, nostr::PublicKey) {
    let exe = std::env::current_exe().unwrap();
    let bin_dir = exe.parent().and_then(|p| p.parent()).unwrap().to_owned();
    let dir = bin_dir.join("soak-stack");
    let config = parent::dev_stack::StackConfig {
        dir,
        bin_dir,
        relay_url: relay.url(),
        relay_addr: relay.addr(),
        announce_interval: 3600,
        echo_logs: false,
        enclave_args: Vec::new(),
        parent_args: Vec::new(),
        prod: false,
        release: parent::dev_stack::ReleaseSetup::default(),
        member: None,
    };
    let mut stack = parent::dev_stack::Stack::start(&config)
        .await
        .expect("the stack starts (cargo build --release --workspace first)");
    let event = stack.wait_for_event(Duration::from_secs(60)).await.unwrap();
    (Box::new(stack), event.pubkey)
}

/// Runs for `minutes` with `apps` apps (each its own key), each sending
/// a request every `period_ms`; on the real stack if `stack`.
pub(crate) async fn soak(minutes: u64, apps: usize, period_ms: u64, stack: bool) {
    let (relay, url) = local_relay().await;
    let (measured, service) = if stack {
        let (stack, service) = real_stack(&relay).await;
        (Measured::Stack(stack), service)
    } else {
        let (signer, _client, service) = start_signer(&url, SignerConfig::default()).await;
        (Measured::InProcess(signer), service.public_key())
    };
    let admin = connected(&url, &Keys::generate()).await;
    let pairs: Vec<(Keys, Keys)> = (0..apps)
        .map(|_| (Keys::generate(), Keys::generate()))
        .collect();
    let seal_admin = |user: &Keys, request: &AdminRequest| {
        seal_request(
            user,
            &service,
            KIND_ADMIN,
            &request.to_request(),
            Scheme::Nip44,
        )
        .unwrap()
    };
    for (user, app) in &pairs {
        let grant = AdminRequest::ConnectKey {
            keys: user.clone(),
            app: app.public_key(),
            relays: vec![url.clone()],
            policy: None,
        };
        send_waiting(&admin, &url, &seal_admin(user, &grant)).await;
    }
    // Imports are answered in milliseconds; the apps' first requests
    // would count as lost if one were not.
    tokio::time::sleep(Duration::from_secs(3)).await;

    let counts = Arc::new(Counts::default());
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for (user, app) in pairs {
        tasks.push(tokio::spawn(app_loop(
            url.clone(),
            user,
            app,
            Duration::from_millis(period_ms),
            Arc::clone(&counts),
            Arc::clone(&stop),
        )));
    }
    // Owners come and go: a key imported and deleted every 5 s; a
    // stranger sends 20 junk events a second.
    let churn = {
        let (url, stop) = (url.clone(), Arc::clone(&stop));
        tokio::spawn(async move {
            let client = connected(&url, &Keys::generate()).await;
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let owner = Keys::generate();
                let import = AdminRequest::ImportKey {
                    keys: owner.clone(),
                    relays: vec![url.clone()],
                    apps: KeptApps::Keep,
                };
                let e = seal_request(
                    &owner,
                    &service,
                    KIND_ADMIN,
                    &import.to_request(),
                    Scheme::Nip44,
                )
                .unwrap();
                send_waiting(&client, &url, &e).await;
                for _ in 0..100 {
                    n += 1;
                    let junk =
                        nostr::EventBuilder::new(Kind::from(KIND_NIP46), format!("junk {n}"))
                            .tag(nostr::Tag::public_key(service))
                            .sign_with_keys(&Keys::generate())
                            .unwrap();
                    send_waiting(&client, &url, &junk).await;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                let delete = Request::new("delete_key", Params::default());
                let e = seal_request(&owner, &service, KIND_ADMIN, &delete, Scheme::Nip44).unwrap();
                send_waiting(&client, &url, &e).await;
            }
            client.shutdown().await;
        })
    };

    let start = Instant::now();
    let mut first_rss = None;
    println!("minute | sent | answered | errors | lost | keys | RSS KiB");
    for minute in 1..=minutes {
        tokio::time::sleep_until((start + Duration::from_secs(60 * minute)).into()).await;
        let rss = measured.rss();
        first_rss.get_or_insert(rss);
        println!(
            "{minute:>6} | {} | {} | {} | {} | {} | {rss}",
            counts.sent.load(Ordering::Relaxed),
            counts.answered.load(Ordering::Relaxed),
            counts.errors.load(Ordering::Relaxed),
            counts.lost.load(Ordering::Relaxed),
            measured.keys(),
        );
    }
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        let _ = t.await;
    }
    let _ = churn.await;
    for e in counts.first_errors.lock().unwrap().iter() {
        println!("error reply: {e}");
    }
    let last = measured.rss();
    let first = first_rss.unwrap_or(last);
    println!(
        "soak of {minutes} min: {} requests, {} answered, {} errors, {} lost; RSS after minute 1 {first} KiB, at the end {last} KiB ({:+} KiB)",
        counts.sent.load(Ordering::Relaxed),
        counts.answered.load(Ordering::Relaxed),
        counts.errors.load(Ordering::Relaxed),
        counts.lost.load(Ordering::Relaxed),
        last as i64 - first as i64
    );
    if let Measured::Stack(stack) = measured {
        let _ = stack.stop().await;
    }
    drop(relay);
}

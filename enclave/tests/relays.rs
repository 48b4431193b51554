//! Relays that refuse, hang, flood or lie, against the signer in process on
//! a real LocalRelay: replies that a relay refuses are sent again until one
//! takes them; a relay that never answers delays only the requests that
//! name it; a relay may deliver events only on subscriptions it was sent;
//! one relay's flood does not starve another's requests.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::fake_relay::{eose, event_message, FakeRelay};
use common::{stack_on, Raw, WAIT};
use enclave::custody::{AdmissionLimits, Limits};
use enclave::relay::outbox::OutboxLimits;
use enclave::signer::SignerConfig;
use nostr::{EventBuilder, Keys, Kind, PublicKey, RelayUrl, Tag};
use parent::dev_stack::faults::RefuseWrites;
use tokio_tungstenite::tungstenite::Message;
use verifier::event::{KIND_ADMIN, KIND_NIP46};
use verifier::rpc::admin::{AdminRequest, KeptApps};
use verifier::rpc::cipher::Scheme;
use verifier::rpc::{seal_request, Params, Request};

fn config() -> SignerConfig {
    SignerConfig {
        limits: Limits {
            admission: AdmissionLimits::off(),
            ..Limits::default()
        },
        ..SignerConfig::default()
    }
}

fn import_on(user: &Keys, relays: &[&RelayUrl]) -> AdminRequest {
    AdminRequest::ImportKey {
        keys: user.clone(),
        relays: relays.iter().map(|r| (*r).clone()).collect(),
        apps: KeptApps::Keep,
    }
}

/// `user` held on `relays`, with `app` allowed.
async fn held_with_app(stack: &common::Stack, relays: &[&RelayUrl]) -> (Keys, Keys) {
    let (user, app) = (Keys::generate(), Keys::generate());
    let mut owner = Raw::with_keys(&stack.url, user.clone()).await;
    assert_eq!(
        owner.admin(&stack.service, &import_on(&user, relays)).await,
        Ok("ok".into())
    );
    let grant = AdminRequest::ConnectKey {
        keys: user.clone(),
        app: app.public_key(),
        relays: relays.iter().map(|r| (*r).clone()).collect(),
        policy: None,
    };
    assert_eq!(owner.admin(&stack.service, &grant).await, Ok("ok".into()));
    (user, app)
}

#[tokio::test(flavor = "multi_thread")]
async fn refused_replies_are_sent_again_until_the_relay_takes_them() {
    let refuser = RefuseWrites::default();
    let stack = stack_on(
        parent::dev_stack::relay_builder().write_policy(refuser.clone()),
        config(),
    )
    .await;
    let (user, app) = held_with_app(&stack, &[&stack.url]).await;
    let pk = user.public_key();
    // The relay refuses every reply of this key for three seconds.
    refuser.refuse(pk, Duration::from_secs(3));
    let mut client = Raw::with_keys(&stack.url, app).await;
    let mut ids = Vec::new();
    for _ in 0..5 {
        let request = Request::new("ping", Params::default());
        let event = seal_request(&client.keys, &pk, KIND_NIP46, &request, Scheme::Nip44).unwrap();
        client.send_event(&event).await;
        ids.push(request.id);
    }
    let replies = client
        .replies_within(&ids, Duration::from_secs(30))
        .await
        .unwrap_or_else(|n| panic!("{n} of {} replies arrived", ids.len()));
    for reply in replies {
        assert_eq!(reply.into_result(), Ok("pong".into()));
    }
    assert!(
        refuser.refused() >= 5,
        "the relay refused the first attempts"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reply_refused_on_one_relay_arrives_through_the_keys_other_relay() {
    let refuser = RefuseWrites::default();
    let stack = stack_on(parent::dev_stack::relay_builder(), config()).await;
    let second =
        common::local_relay(parent::dev_stack::relay_builder().write_policy(refuser.clone())).await;
    let second_url = RelayUrl::parse(&second.url()).unwrap();
    let (user, app) = held_with_app(&stack, &[&second_url, &stack.url]).await;
    let pk = user.public_key();
    refuser.refuse(pk, Duration::from_secs(600));
    // The app sends on the refusing relay and listens on both.
    let sender = Raw::with_keys(&second_url, app.clone()).await;
    let mut listener = Raw::with_keys(&stack.url, app.clone()).await;
    let request = Request::new("get_public_key", Params::default());
    let event = seal_request(&app, &pk, KIND_NIP46, &request, Scheme::Nip44).unwrap();
    sender.send_event(&event).await;
    let reply = listener.reply(&request.id, None).await.expect("no reply");
    assert_eq!(reply.into_result(), Ok(pk.to_hex()));
    // The reply goes to both relays at once and may arrive through the
    // other before the refusing relay has answered: wait (bounded) for it.
    let deadline = tokio::time::Instant::now() + WAIT;
    while refuser.refused() == 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        refuser.refused() >= 1,
        "the refusing relay was offered the reply"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_relay_that_never_answers_delays_only_the_requests_that_name_it() {
    let stack = stack_on(parent::dev_stack::relay_builder(), config()).await;
    let silent = FakeRelay::silent().await;
    let (user, app) = held_with_app(&stack, &[&stack.url]).await;
    let pk = user.public_key();
    let mut app = Raw::with_keys(&stack.url, app).await;

    // Every admin reply, seen by a watcher (counted by their p tags).
    let watcher = nostr_sdk::Client::default();
    watcher.add_relay(stack.url.clone()).await.unwrap();
    watcher.connect().await;
    watcher.wait_for_connection(WAIT).await;
    let mut replies = watcher.notifications();
    watcher
        .subscribe(
            nostr::Filter::new()
                .kind(Kind::from(KIND_ADMIN))
                .author(stack.service)
                .since(nostr::Timestamp::now() - 5),
            None,
        )
        .await
        .unwrap();

    // 300 strangers import their own keys naming the silent relay: more
    // than the signer handles at once, each waiting for an EOSE that never
    // comes.
    let sender = Raw::new(&stack.url).await;
    let mut strangers = std::collections::HashSet::new();
    let mut events = Vec::new();
    for _ in 0..300 {
        let keys = Keys::generate();
        let request = import_on(&keys, &[&silent.url, &stack.url]).to_request();
        events.push(
            seal_request(&keys, &stack.service, KIND_ADMIN, &request, Scheme::Nip44).unwrap(),
        );
        strangers.insert(keys.public_key());
    }
    let started = Instant::now();
    sender.send_all(events).await;
    eprintln!("300 imports sent in {:?}", started.elapsed());
    let mut answered = std::collections::HashSet::new();
    let count =
        |replies: &mut tokio::sync::broadcast::Receiver<nostr_sdk::RelayPoolNotification>,
         answered: &mut std::collections::HashSet<PublicKey>| {
            while let Ok(n) = replies.try_recv() {
                if let nostr_sdk::RelayPoolNotification::Event { event, .. } = n {
                    for p in event.tags.public_keys() {
                        if strangers.contains(p) {
                            answered.insert(*p);
                        }
                    }
                }
            }
        };
    // The user's app is served as usual, before the imports that wait for
    // the silent relay are answered.
    for _ in 0..20 {
        let reply = app.call(KIND_NIP46, &pk, "ping", &[]).await;
        assert_eq!(reply.into_result(), Ok("pong".into()));
    }
    count(&mut replies, &mut answered);
    eprintln!(
        "20 pings answered {:?} after the imports were sent",
        started.elapsed()
    );
    assert!(
        answered.len() < 150,
        "the pings waited behind the imports: {} imports were answered first",
        answered.len()
    );
    // Every import is answered too, once its wait for the silent relay ends.
    let deadline = Instant::now() + Duration::from_secs(60);
    while answered.len() < 300 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
        count(&mut replies, &mut answered);
    }
    assert_eq!(
        answered.len(),
        300,
        "imports naming a silent relay are still answered"
    );
    assert!(
        !silent.received.lock().unwrap().is_empty(),
        "the enclave did subscribe on the silent relay"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_relay_cannot_deliver_events_on_subscriptions_it_was_not_sent() {
    let stack = stack_on(parent::dev_stack::relay_builder(), config()).await;
    let service = stack.service;
    let user = Keys::generate();
    let pk = user.public_key();
    let (forger_a, forger_b, forger_c, honest) = (
        Keys::generate(),
        Keys::generate(),
        Keys::generate(),
        Keys::generate(),
    );
    let ping = Request::new("ping", Params::default());
    // (a) an admin request on the admin subscription, which this relay was never sent;
    let on_admin = seal_request(&forger_a, &service, KIND_ADMIN, &ping, Scheme::Nip44).unwrap();
    // (b) an admin request on a NIP-46 subscription (does not match its filter);
    let wrong_kind = seal_request(&forger_b, &service, KIND_ADMIN, &ping, Scheme::Nip44).unwrap();
    // (c) a request larger than any valid one, on the right subscription;
    let huge = EventBuilder::new(Kind::from(KIND_NIP46), "A".repeat(200_000))
        .tag(Tag::public_key(pk))
        .sign_with_keys(&forger_c)
        .unwrap();
    // (d) a proper NIP-46 request on the subscription it was sent: answered.
    let proper = seal_request(&honest, &pk, KIND_NIP46, &ping, Scheme::Nip44).unwrap();
    let messages = vec![
        event_message("admin", &on_admin),
        event_message("nip46-0", &wrong_kind),
        event_message("nip46-0", &huge),
        Message::text("this is not JSON"),
        Message::binary(vec![0u8, 159, 146, 150]),
        event_message("nip46-0", &proper),
    ];
    let hostile = FakeRelay::start(Arc::new(move |sub: &str| {
        if sub == "nip46-0" {
            let mut out = messages.clone();
            out.push(eose(sub));
            out
        } else {
            vec![eose(sub)]
        }
    }))
    .await;
    let mut watchers = Vec::new();
    for keys in [&forger_a, &forger_b, &forger_c, &honest] {
        watchers.push(Raw::with_keys(&stack.url, (*keys).clone()).await);
    }
    let mut owner = Raw::with_keys(&stack.url, user.clone()).await;
    assert_eq!(
        owner
            .admin(&service, &import_on(&user, &[&hostile.url, &stack.url]))
            .await,
        Ok("ok".into())
    );
    // The proper request is answered (an app the key does not allow: on
    // the relay it came on); the others never are.
    let to = |keys: &Keys| {
        hostile
            .published()
            .iter()
            .filter(|e| e.tags.public_keys().any(|p| *p == keys.public_key()))
            .count()
    };
    let deadline = Instant::now() + WAIT;
    while to(&honest) == 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for watcher in &mut watchers[..3] {
        assert!(watcher
            .reply_within(&ping.id, None, Duration::from_secs(2))
            .await
            .is_none());
    }
    assert_eq!(to(&honest), 1);
    assert_eq!(to(&forger_a) + to(&forger_b) + to(&forger_c), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn one_relays_flood_does_not_starve_another_relays_requests() {
    let stack = stack_on(parent::dev_stack::relay_builder(), config()).await;
    let user = Keys::generate();
    let pk = user.public_key();
    // 3,000 signed events that match the key's subscription, 8 KB each,
    // undecryptable, interleaved with garbage frames.
    let junk = Keys::generate();
    let flood: Vec<Message> = (0..3_000)
        .flat_map(|i| {
            let event =
                EventBuilder::new(Kind::from(KIND_NIP46), format!("{i}{}", "x".repeat(8_000)))
                    .tag(Tag::public_key(pk))
                    .sign_with_keys(&junk)
                    .unwrap();
            [
                event_message("nip46-0", &event),
                Message::text("[\"NOTICE\""),
            ]
        })
        .collect();
    let flooder = FakeRelay::start(Arc::new(move |sub: &str| {
        if sub == "nip46-0" {
            flood.clone()
        } else {
            vec![eose(sub)]
        }
    }))
    .await;
    let app = Keys::generate();
    let mut owner = Raw::with_keys(&stack.url, user.clone()).await;
    assert_eq!(
        owner
            .admin(
                &stack.service,
                &import_on(&user, &[&flooder.url, &stack.url])
            )
            .await,
        Ok("ok".into())
    );
    let grant = AdminRequest::ConnectKey {
        keys: user.clone(),
        app: app.public_key(),
        relays: vec![flooder.url.clone(), stack.url.clone()],
        policy: None,
    };
    assert_eq!(owner.admin(&stack.service, &grant).await, Ok("ok".into()));
    let mut app = Raw::with_keys(&stack.url, app).await;
    for _ in 0..20 {
        let reply = app.call(KIND_NIP46, &pk, "ping", &[]).await;
        assert_eq!(reply.into_result(), Ok("pong".into()));
    }
    assert!(stack.signer.store().holds(&pk));
    let _ = WAIT;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_relay_that_refuses_every_reply_holds_only_its_own_share_of_the_outbox() {
    // A small outbox, so one relay's refused replies would fill it many
    // times over if its share were not bounded.
    let limits = OutboxLimits {
        total_bytes: 1024 * 1024,
        per_relay_bytes: 256 * 1024,
        ..OutboxLimits::default()
    };
    let good = RefuseWrites::default();
    let stack = common::stack_with(
        parent::dev_stack::relay_builder().write_policy(good.clone()),
        config(),
        limits,
    )
    .await;
    let refuser = RefuseWrites::default();
    let hostile =
        common::local_relay(parent::dev_stack::relay_builder().write_policy(refuser.clone())).await;
    let hostile_url = RelayUrl::parse(&hostile.url()).unwrap();
    // A stranger's own key on the hostile relay only, and its own app.
    let (stranger, its_app) = held_with_app(&stack, &[&hostile_url]).await;
    refuser.refuse(stranger.public_key(), Duration::from_secs(600));
    // A user on the good relay.
    let (user, app) = held_with_app(&stack, &[&stack.url]).await;
    let pk = user.public_key();
    let mut app = Raw::with_keys(&stack.url, app).await;

    // 150 replies of about 40 KB each, all refused: 6 MB, six times the outbox.
    let flooder = Raw::with_keys(&hostile_url, its_app.clone()).await;
    let template = serde_json::json!({
        "kind": 1, "content": "x".repeat(30_000), "tags": [], "created_at": nostr::Timestamp::now().as_secs(),
    })
    .to_string();
    let events: Vec<nostr::Event> = (0..150)
        .map(|_| {
            let request = Request::new("sign_event", Params::new([template.clone()]));
            seal_request(
                &its_app,
                &stranger.public_key(),
                KIND_NIP46,
                &request,
                Scheme::Nip44,
            )
            .unwrap()
        })
        .collect();
    flooder.send_all(events).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(refuser.refused() > 0, "the hostile relay refused replies");
    let held = stack.outbox.held(&hostile_url);
    assert!(
        held > 0 && held <= 256 * 1024,
        "the hostile relay holds {held} bytes of replies"
    );
    // The user's app is still answered, every time, while those retry.
    for _ in 0..10 {
        let reply = app.call(KIND_NIP46, &pk, "ping", &[]).await;
        assert_eq!(reply.into_result(), Ok("pong".into()));
    }
    // And its replies are still tracked and sent again when refused: had
    // the hostile relay taken the whole budget, they would go out once,
    // untracked, and be lost.
    good.refuse(pk, Duration::from_secs(2));
    let mut ids = Vec::new();
    for _ in 0..5 {
        let request = Request::new("ping", Params::default());
        let event = seal_request(&app.keys, &pk, KIND_NIP46, &request, Scheme::Nip44).unwrap();
        app.send_event(&event).await;
        ids.push(request.id);
    }
    let replies = app
        .replies_within(&ids, Duration::from_secs(30))
        .await
        .unwrap_or_else(|n| panic!("{n} of 5 replies arrived"));
    assert_eq!(replies.len(), 5);
    assert!(good.refused() >= 5, "the good relay refused them first");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_event_sent_to_each_relay_reaches_one_that_refused_it_at_first() {
    // A nostrconnect app waits on its own relay only: that relay must get
    // the connect response even though another relay took it at once.
    let taker = common::local_relay(parent::dev_stack::relay_builder()).await;
    let refuser = RefuseWrites::default();
    let slow =
        common::local_relay(parent::dev_stack::relay_builder().write_policy(refuser.clone())).await;
    let urls: Vec<RelayUrl> = vec![
        RelayUrl::parse(&taker.url()).unwrap(),
        RelayUrl::parse(&slow.url()).unwrap(),
    ];
    let client = nostr_sdk::Client::default();
    for url in &urls {
        client.add_relay(url.clone()).await.unwrap();
    }
    client.connect().await;
    client.wait_for_connection(WAIT).await;
    let author = Keys::generate();
    refuser.refuse(author.public_key(), Duration::from_secs(2));
    // Kind 1, so the relays keep it and can be asked afterwards.
    let event = EventBuilder::text_note("connect response stand-in")
        .sign_with_keys(&author)
        .unwrap();
    let outbox = enclave::relay::outbox::Outbox::new(client.clone(), OutboxLimits::default());
    outbox
        .send_each(enclave::signer::Reply {
            event: event.clone(),
            relays: urls.clone(),
        })
        .await;
    let reader = nostr_sdk::Client::default();
    reader.add_relay(urls[1].clone()).await.unwrap();
    reader.connect().await;
    reader.wait_for_connection(WAIT).await;
    let mut found = false;
    for _ in 0..20 {
        let events = reader
            .fetch_events(nostr::Filter::new().id(event.id), Duration::from_secs(2))
            .await
            .unwrap();
        if !events.is_empty() {
            found = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(refuser.refused() >= 1, "the slow relay refused it first");
    assert!(found, "the slow relay got it after all");
    reader.shutdown().await;
    client.shutdown().await;
}

/// A TCP proxy to `to` that holds each connection for `delay` before
/// passing anything on: a relay slow to connect.
async fn slow_proxy(to: std::net::SocketAddr, delay: Duration) -> RelayUrl {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = RelayUrl::parse(&format!("ws://{}", listener.local_addr().unwrap())).unwrap();
    tokio::spawn(async move {
        while let Ok((mut inbound, _)) = listener.accept().await {
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                if let Ok(mut outbound) = tokio::net::TcpStream::connect(to).await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
            });
        }
    });
    url
}

#[tokio::test(flavor = "multi_thread")]
async fn ready_means_the_admin_relay_hears_the_first_request() {
    // The signer's connection to its admin relay takes a second to open.
    // Ready comes once its subscription is acknowledged, so a request
    // sent at once (directly to the relay) is heard: kind 24135 is
    // ephemeral, and one sent before the signer's REQ would be lost.
    let relay = common::local_relay(parent::dev_stack::relay_builder()).await;
    let direct = RelayUrl::parse(&relay.url()).unwrap();
    let slow = slow_proxy(relay.addr(), Duration::from_secs(1)).await;
    let stack = common::stack_reaching(relay, slow, config(), Default::default()).await;
    let mut owner = Raw::new(&direct).await;
    let reply = owner.call(KIND_ADMIN, &stack.service, "ping", &[]).await;
    assert_eq!(reply.into_result(), Ok("pong".into()));
}

/// The review's finding: nostr-sdk answered any relay's NIP-42 challenge
/// with an event signed by the service key, and any relay a stranger names
/// in an import would get one, with a challenge of its choosing.
#[tokio::test(flavor = "multi_thread")]
async fn a_relay_that_asks_for_authentication_gets_no_signed_event() {
    let stack = stack_on(parent::dev_stack::relay_builder(), config()).await;
    let challenger = FakeRelay::start(Arc::new(|sub: &str| {
        vec![
            Message::text(r#"["AUTH","challenge-chosen-by-the-relay"]"#),
            eose(sub),
        ]
    }))
    .await;
    let stranger = Keys::generate();
    let mut owner = Raw::with_keys(&stack.url, stranger.clone()).await;
    assert_eq!(
        owner
            .admin(&stack.service, &import_on(&stranger, &[&challenger.url]))
            .await,
        Ok("ok".into())
    );
    // The relay was sent the key's subscription, challenged, and has had
    // time to be answered.
    let deadline = Instant::now() + WAIT;
    let subscribed = || {
        challenger
            .received
            .lock()
            .unwrap()
            .iter()
            .any(|m| m.starts_with("[\"REQ\""))
    };
    while !subscribed() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(subscribed());
    tokio::time::sleep(Duration::from_secs(2)).await;
    let received = challenger.received.lock().unwrap().clone();
    assert!(
        !received.iter().any(|m| m.starts_with("[\"AUTH\"")),
        "the enclave answered the challenge: {received:?}"
    );
}

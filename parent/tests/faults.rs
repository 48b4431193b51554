//! Faults through the real stack (`parent run`, `enclave run --attester
//! dev`, the dev relay), as real processes on 127.0.0.1: the relay killed
//! mid-load and started again on its port; a key with a relay that never
//! answers and one that sends garbage; the parent restarted while the
//! enclave runs. (A relay refusing replies with `OK false` for a while is
//! in attacks.rs.) Every wait is bounded; nothing here asserts speed.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use common::{relay_with, stack_config, test_dir, Key};
use nostr::{EventId, Filter, Keys, Kind, PublicKey, Timestamp, ToBech32};
use nostr_sdk::{Client, RelayPoolNotification};
use parent::dev_stack::faults::{BadRelay, Misbehaviour};
use parent::dev_stack::relay::DevRelay;
use parent::dev_stack::Stack;
use verifier::event::KIND_NIP46;
use verifier::rpc::cipher::Scheme;
use verifier::rpc::{open_response, seal_request, Params, Request};

/// An app connected to one relay, sending pings to `user` and counting
/// the distinct reply events each request gets.
struct App {
    keys: Keys,
    user: PublicKey,
    client: Client,
    notifications: tokio::sync::broadcast::Receiver<RelayPoolNotification>,
    replies: HashMap<String, HashSet<EventId>>,
}

impl App {
    async fn new(url: &str, keys: Keys, user: PublicKey) -> Self {
        let client = Client::default();
        client.add_relay(url).await.unwrap();
        client.connect().await;
        client.wait_for_connection(Duration::from_secs(10)).await;
        let notifications = client.notifications();
        client
            .subscribe(
                Filter::new()
                    .kind(Kind::from(KIND_NIP46))
                    .pubkey(keys.public_key())
                    .since(Timestamp::now() - 5),
                None,
            )
            .await
            .unwrap();
        Self {
            keys,
            user,
            client,
            notifications,
            replies: HashMap::new(),
        }
    }

    /// Publishes a ping; its id if the relay accepted it.
    async fn send(&self) -> Option<String> {
        let ping = Request::new("ping", Params::default());
        let event = seal_request(&self.keys, &self.user, KIND_NIP46, &ping, Scheme::Nip44).unwrap();
        let sent =
            tokio::time::timeout(Duration::from_secs(2), self.client.send_event(&event)).await;
        match sent {
            Ok(Ok(out)) if !out.success.is_empty() => Some(ping.id),
            _ => None,
        }
    }

    /// Reads replies for up to `wait`, or until every one of `ids` has one.
    async fn collect(&mut self, wait: Duration, ids: &[String]) {
        let deadline = tokio::time::Instant::now() + wait;
        while !ids.iter().all(|id| self.replies.contains_key(id)) {
            let Ok(n) = tokio::time::timeout_at(deadline, self.notifications.recv()).await else {
                return;
            };
            match n {
                Ok(RelayPoolNotification::Event { event, .. }) => {
                    if let Ok(r) = open_response(&self.keys, &event) {
                        if r.result == "pong" {
                            self.replies
                                .entry(r.id.clone())
                                .or_default()
                                .insert(event.id);
                        }
                    }
                }
                Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(_) => return,
            }
        }
    }

    /// A ping and its reply within `wait`; the time it took.
    async fn ping(&mut self, wait: Duration) -> Option<Duration> {
        let start = Instant::now();
        let id = self.send().await?;
        self.collect(wait, std::slice::from_ref(&id)).await;
        self.replies.contains_key(&id).then(|| start.elapsed())
    }

    /// Pings until one is answered, for at most `secs` seconds.
    async fn until_answered(&mut self, secs: u64) -> bool {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while Instant::now() < deadline {
            if self.ping(Duration::from_secs(1)).await.is_some() {
                return true;
            }
        }
        false
    }

    fn answered(&self, ids: &[String]) -> usize {
        ids.iter()
            .filter(|id| self.replies.contains_key(*id))
            .count()
    }

    /// No request got two different replies.
    fn assert_none_answered_twice(&self) {
        for (id, events) in &self.replies {
            assert_eq!(
                events.len(),
                1,
                "request {id} answered {} times",
                events.len()
            );
        }
    }
}

/// A stack on `relay` with a user key and one app connected with full
/// access; `extra` goes to `verifier key connect`.
async fn stack_with_app(
    name: &str,
    relay: &DevRelay,
    parent_args: Vec<String>,
    extra: &[&str],
) -> (Stack, App) {
    let dir = test_dir(name);
    let mut config = stack_config(dir.clone(), relay.url(), relay.addr(), 3600);
    config.parent_args = parent_args;
    let mut stack = Stack::start(&config).await.unwrap();
    stack.wait_for_event(Duration::from_secs(60)).await.unwrap();
    let user = Keys::generate();
    let file = dir.join("user.nsec");
    std::fs::write(&file, user.secret_key().to_bech32().unwrap()).unwrap();
    let key = Key::new(&stack.paths, &file);
    let app_keys = Keys::generate();
    let npub = app_keys.public_key().to_bech32().unwrap();
    let mut args = vec!["--app", npub.as_str(), "--full-access"];
    args.extend_from_slice(extra);
    key.ok_with("connect", &args);
    let app = App::new(&relay.url(), app_keys, user.public_key()).await;
    (stack, app)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_relay_killed_mid_load_and_restarted_is_used_again() {
    let builder = parent::dev_stack::relay_builder;
    let (relay, _, addr) = relay_with(builder()).await;
    let (stack, mut app) = stack_with_app("relay-restart", &relay, Vec::new(), &[]).await;

    // Load: 40 pings 10 ms apart, the relay killed after the 20th.
    let mut before = Vec::new();
    let mut relay = Some(relay);
    for i in 0..40 {
        if i == 20 {
            if let Some(r) = relay.take() {
                r.stop();
            }
        }
        if let Some(id) = app.send().await {
            before.push(id);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(before.len() >= 20, "the first pings were published");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let _relay = DevRelay::start(builder(), addr).await.unwrap();

    // Once the enclave is back (its first answer), every request is answered.
    assert!(app.until_answered(60).await, "the enclave never came back");
    let mut after = Vec::new();
    for _ in 0..50 {
        if let Some(id) = app.send().await {
            after.push(id);
        }
    }
    app.collect(Duration::from_secs(30), &after).await;
    assert_eq!(after.len(), 50, "the restarted relay takes every ping");
    assert_eq!(
        app.answered(&after),
        50,
        "every request after the restart is answered"
    );
    // Those answered before the kill, and nothing answered twice.
    app.collect(Duration::from_secs(2), &before).await;
    assert!(app.answered(&before) >= 1);
    app.assert_none_answered_twice();
    let log = std::fs::read_to_string(stack.enclave.log()).unwrap();
    stack.stop().await.unwrap();
    assert!(
        log.contains("relay connection lost") && log.contains("reconnected"),
        "the operator log says what happened"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_silent_relay_and_a_garbage_relay_do_not_slow_the_others() {
    let (relay, _, _) = relay_with(parent::dev_stack::relay_builder()).await;
    let silent = BadRelay::start(Misbehaviour::Silent).await.unwrap();
    let garbage = BadRelay::start(Misbehaviour::Garbage).await.unwrap();
    let egress = vec![
        "--allow-egress".into(),
        silent.addr().to_string(),
        "--allow-egress".into(),
        garbage.addr().to_string(),
    ];
    let (silent_url, garbage_url, good_url) = (silent.url(), garbage.url(), relay.url());
    let relays = [
        "--signer-relay",
        good_url.as_str(),
        "--signer-relay",
        silent_url.as_str(),
        "--signer-relay",
        garbage_url.as_str(),
    ];
    let (stack, mut app) = stack_with_app("bad-relays", &relay, egress, &relays).await;

    // 30 pings one after another on the good relay: each is answered, and
    // none waits for the bad relays (a wait would be the connect timeout,
    // seconds; the bound here is far above a normal answer).
    let mut took = Vec::new();
    for _ in 0..30 {
        match app.ping(Duration::from_secs(5)).await {
            Some(t) => took.push(t),
            None => panic!("a ping was not answered while the bad relays held on"),
        }
    }
    took.sort();
    println!(
        "pings with a silent and a garbage relay: p50 {:?}, max {:?}",
        took[took.len() / 2],
        took[took.len() - 1]
    );
    app.assert_none_answered_twice();
    let log = std::fs::read_to_string(stack.enclave.log()).unwrap();
    stack.stop().await.unwrap();
    assert!(!log.contains("panicked"), "the enclave did not panic");
}

#[tokio::test(flavor = "multi_thread")]
async fn relay_traffic_resumes_through_a_restarted_parent() {
    let (relay, _, _) = relay_with(parent::dev_stack::relay_builder()).await;
    let (mut stack, mut app) = stack_with_app("parent-restart", &relay, Vec::new(), &[]).await;
    assert!(app.ping(Duration::from_secs(10)).await.is_some());
    let enclave = stack.enclave.id();

    stack.restart_parent().await.unwrap();

    // The enclave's relay connections went through the old proxy: they
    // come back through the new one, with no restart of the enclave.
    assert!(
        app.until_answered(60).await,
        "no answer through the new parent"
    );
    let mut ids = Vec::new();
    for _ in 0..20 {
        ids.extend(app.send().await);
    }
    app.collect(Duration::from_secs(20), &ids).await;
    assert_eq!(app.answered(&ids), ids.len());
    assert_eq!(
        stack.enclave.exited().unwrap(),
        None,
        "the enclave kept running"
    );
    assert_eq!(stack.enclave.id(), enclave);
    app.assert_none_answered_twice();
    let log = std::fs::read_to_string(stack.enclave.log()).unwrap();
    stack.stop().await.unwrap();
    assert!(
        log.contains("reconnected"),
        "the operator log says the relay came back"
    );
}

//! The security review's attacks against the whole stack (`parent run`,
//! `enclave run --attester dev`, a LocalRelay), as real processes: a
//! connected app (rust-nostr's NostrConnect) trying to read the owner's key
//! or act as the owner; a stranger making the enclave answer its own
//! replies; `verifier key` asked to hand a key to unpinned or foreign code;
//! and replies under load and refusals. `enclave/tests/attacks.rs` performs
//! the same on the signer in process.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::path::Path;
use std::time::Duration;

use common::{relay, relay_with, stack_config, test_dir, Key, Writers};
use nostr::nips::nip46::NostrConnectURI;
use nostr::{Event, Filter, Keys, Kind, NostrSigner, PublicKey, RelayUrl, Timestamp, ToBech32};
use nostr_connect::client::NostrConnect;
use nostr_sdk::{Client, RelayPoolNotification};
use parent::dev_stack::faults::RefuseWrites;
use parent::dev_stack::Stack;
use verifier::event::{KIND_ADMIN, KIND_NIP46};
use verifier::rpc::cipher::Scheme;
use verifier::rpc::{open_response, seal_request, Params, Request};

/// A client on `url` that records every event of `kind` by `authors`.
async fn recorder(url: &str, kind: u16, authors: Vec<PublicKey>) -> (Client, Recorded) {
    let client = Client::default();
    client.add_relay(url).await.unwrap();
    client.connect().await;
    client.wait_for_connection(Duration::from_secs(10)).await;
    let notifications = client.notifications();
    client
        .subscribe(
            Filter::new()
                .kind(Kind::from(kind))
                .authors(authors)
                .since(Timestamp::now() - 5),
            None,
        )
        .await
        .unwrap();
    (client, Recorded(notifications))
}

struct Recorded(tokio::sync::broadcast::Receiver<RelayPoolNotification>);

impl Recorded {
    /// Every event seen within `wait`.
    async fn collect(&mut self, wait: Duration) -> Vec<Event> {
        let mut events = Vec::new();
        let _ = tokio::time::timeout(wait, async {
            while let Ok(n) = self.0.recv().await {
                if let RelayPoolNotification::Event { event, .. } = n {
                    events.push(*event);
                }
            }
        })
        .await;
        events
    }

    /// Events seen until `done` says so, or for at most `secs` seconds.
    async fn until(&mut self, secs: u64, done: impl Fn(&[Event]) -> bool) -> Vec<Event> {
        let mut seen = Vec::new();
        for _ in 0..secs {
            seen.extend(self.collect(Duration::from_secs(1)).await);
            if done(&seen) {
                break;
            }
        }
        seen
    }
}

fn key_file(dir: &Path, name: &str, keys: &Keys) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, keys.secret_key().to_bech32().unwrap()).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread")]
async fn an_app_cannot_take_the_key_and_strangers_cannot_loop_the_enclave() {
    let (_relay, url, relay_addr) = relay(Writers::default()).await;
    let dir = test_dir("attacks");
    // No free allowance: every new key costs proof of work, which
    // `verifier key` is asked for and computes.
    let mut config = stack_config(dir.clone(), url.clone(), relay_addr, 3600);
    config.enclave_args = ["--free-keys-per-hour", "0", "--pow-bits", "10"]
        .map(String::from)
        .to_vec();
    let mut stack = Stack::start(&config).await.unwrap();
    let service = stack
        .wait_for_event(Duration::from_secs(60))
        .await
        .unwrap()
        .pubkey;
    let paths = stack.paths.clone();
    let user = Keys::generate();
    let key = Key::new(&paths, &key_file(&dir, "user.nsec", &user));
    let secret = user.secret_key().to_secret_hex();

    // --- 4: verifier key sends nothing to code that is not pinned. ---
    let bare = |action: &str, extra: &[&str]| {
        let mut args = vec![
            "key",
            action,
            "--instance",
            &key.instance,
            "--root",
            &key.root,
            "--key-file",
            &key.file,
            "--timeout",
            "10",
        ];
        args.extend_from_slice(extra);
        common::verifier(&args)
    };
    let out = bare("import", &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("without pinned code"));
    // Measurements of another image: the instance is refused.
    let other = dir.join("other-pcrs.json");
    let mine = std::fs::read_to_string(&paths.pcrs).unwrap();
    let pcr0 = verifier::pcr::Measurements::from_json(mine.as_bytes())
        .unwrap()
        .get(0)
        .unwrap()
        .to_string();
    std::fs::write(&other, mine.replace(&pcr0, &"ab".repeat(48))).unwrap();
    let out = bare("import", &["--pcrs", other.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("expected_pcrs"));
    // A pcrs.json that pins only the signer (PCR8), not the code.
    let only8 = dir.join("only-pcr8.json");
    let m = verifier::pcr::Measurements::from_json(mine.as_bytes()).unwrap();
    let mut signer_only = verifier::pcr::Measurements::default();
    signer_only.pcrs.insert(8, *m.get(8).unwrap());
    std::fs::write(&only8, signer_only.to_json()).unwrap();
    let out = bare("import", &["--pcrs", only8.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    // Another builder or launcher than the ones asked for.
    let stranger = Keys::generate().public_key().to_bech32().unwrap();
    for flag in ["--builder", "--launcher"] {
        let (code, _, stderr) = key.run("import", &[flag, &stranger]);
        assert_eq!(code, Some(1), "{stderr}");
        assert!(stderr.contains("refusing to talk"), "{stderr}");
    }
    // None of that reached the enclave.
    let (code, _, _) = key.run("status", &[]);
    assert_eq!(code, Some(1), "the key must not be held yet");
    // The right builder and launcher, with the pinned release: accepted.
    let builder = stack.signatures.build.pubkey.to_bech32().unwrap();
    let launcher = stack.signatures.instance.pubkey.to_bech32().unwrap();
    let (_recorder, mut admin_events) = recorder(&url, KIND_ADMIN, vec![user.public_key()]).await;
    let (code, stdout, stderr) =
        key.run("import", &["--builder", &builder, "--launcher", &launcher]);
    assert_eq!(
        (code, stdout.as_str()),
        (Some(0), "key imported"),
        "{stderr}"
    );
    assert!(
        stderr.contains("bits of proof of work; computing it"),
        "{stderr}"
    );
    // --any-code works, loudly.
    let out = bare("status", &["--any-code"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stderr).contains("WARNING: --any-code"));

    // --- 1: a connected app cannot read the owner's key or act as owner. ---
    let app = Keys::generate();
    let app_npub = app.public_key().to_bech32().unwrap();
    let connected = key.ok_with("connect", &["--app", &app_npub, "--full-access"]);
    assert!(
        connected.starts_with("key imported and the app allowed\ngranted to ")
            && connected.contains("full access"),
        "{connected}"
    );
    let captured = admin_events
        .collect(Duration::from_secs(1))
        .await
        .into_iter()
        .find(|e| e.tags.public_keys().any(|p| *p == service))
        .expect("the owner's import_key went through the relay");
    let uri = format!("bunker://{}?relay={url}", user.public_key().to_hex());
    let signer = NostrConnect::new(
        NostrConnectURI::parse(&uri).unwrap(),
        app.clone(),
        Duration::from_secs(15),
        None,
    )
    .unwrap();
    assert_eq!(signer.get_public_key().await.unwrap(), user.public_key());
    let stolen = signer.nip44_decrypt(&service, &captured.content).await;
    let refusal = stolen.unwrap_err().to_string();
    assert!(refusal.contains("forbidden"), "{refusal}");
    assert!(!refusal.contains(&secret));
    let forged = AdminRequestJson::connect_key(&Keys::generate(), &Keys::generate().public_key());
    let sealed = signer.nip44_encrypt(&service, &forged).await;
    assert!(sealed.unwrap_err().to_string().contains("forbidden"));
    let as_owner = nostr::UnsignedEvent::new(
        user.public_key(),
        Timestamp::now(),
        Kind::from(KIND_ADMIN),
        [nostr::Tag::public_key(service)],
        "x",
    );
    assert!(signer
        .sign_event(as_owner)
        .await
        .unwrap_err()
        .to_string()
        .contains("forbidden"));
    // What an app may do still works.
    let note = nostr::EventBuilder::text_note("still signing").build(user.public_key());
    signer.sign_event(note).await.unwrap().verify().unwrap();
    // The owner revokes this one app, keeping the key.
    assert_eq!(
        key.ok_with("revoke", &["--app", &app_npub]),
        "the app's access is revoked"
    );
    let note = nostr::EventBuilder::text_note("after revoke").build(user.public_key());
    let after = signer.sign_event(note).await;
    assert!(
        after.unwrap_err().to_string().contains("unauthorized"),
        "a revoked app is refused"
    );
    signer.shutdown().await;
    let (code, held, _) = key.run("status", &[]);
    assert_eq!(
        (code, held.lines().next()),
        (Some(0), Some("the enclave holds your key"))
    );

    // --- 2: a stranger's ping from its key to itself is never answered. ---
    let loner = Keys::generate();
    let loner_key = Key::new(&paths, &key_file(&dir, "loner.nsec", &loner));
    assert_eq!(loner_key.ok("import"), "key imported");
    let (watcher, mut by_loner) = recorder(&url, KIND_NIP46, vec![loner.public_key()]).await;
    let (sender, _) = recorder(&url, KIND_NIP46, Vec::new()).await;
    let ping = Request::new("ping", Params::default());
    let own = seal_request(
        &loner,
        &loner.public_key(),
        KIND_NIP46,
        &ping,
        Scheme::Nip44,
    )
    .unwrap();
    sender.send_event(&own).await.unwrap();
    // And one held key to another.
    let across =
        seal_request(&user, &loner.public_key(), KIND_NIP46, &ping, Scheme::Nip44).unwrap();
    sender.send_event(&across).await.unwrap();
    let seen = by_loner.collect(Duration::from_secs(4)).await;
    assert_eq!(
        seen.iter().map(|e| e.id).collect::<Vec<_>>(),
        vec![own.id],
        "the enclave answered an event its own keys authored"
    );
    sender.shutdown().await;
    watcher.shutdown().await;

    let logs: String = [stack.enclave.log(), stack.parent.log()]
        .iter()
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect();
    stack.stop().await.unwrap();
    assert!(!logs.contains(&secret), "the user's key is in a log");
    assert!(logs.contains("app revoked by the owner"));
}

/// The JSON of an admin request an app would forge.
struct AdminRequestJson;

impl AdminRequestJson {
    fn connect_key(keys: &Keys, app: &PublicKey) -> String {
        verifier::rpc::admin::AdminRequest::ConnectKey {
            keys: keys.clone(),
            app: *app,
            relays: vec![RelayUrl::parse("wss://relay.example").unwrap()],
            policy: None,
        }
        .to_request()
        .to_json()
        .to_string()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn every_reply_arrives_under_load_and_through_refusals() {
    let refuse = RefuseWrites::default();
    let (_relay, url, relay_addr) =
        relay_with(parent::dev_stack::relay_builder().write_policy(refuse.clone())).await;
    let dir = test_dir("replies");
    let mut stack = Stack::start(&stack_config(dir.clone(), url.clone(), relay_addr, 3600))
        .await
        .unwrap();
    stack.wait_for_event(Duration::from_secs(60)).await.unwrap();
    let user = Keys::generate();
    let key = Key::new(&stack.paths, &key_file(&dir, "user.nsec", &user));
    let app = Keys::generate();
    key.ok_with(
        "connect",
        &[
            "--app",
            &app.public_key().to_bech32().unwrap(),
            "--full-access",
        ],
    );
    let pk = user.public_key();

    // 500 pings from one app at once: every one answered.
    let (client, mut replies) = recorder(&url, KIND_NIP46, vec![pk]).await;
    let send_pings = |n: usize| {
        let requests: Vec<(String, Event)> = (0..n)
            .map(|_| {
                let ping = Request::new("ping", Params::default());
                let event = seal_request(&app, &pk, KIND_NIP46, &ping, Scheme::Nip44).unwrap();
                (ping.id, event)
            })
            .collect();
        requests
    };
    let answered = |events: &[Event], ids: &[String]| {
        let mut got: Vec<String> = events
            .iter()
            .filter_map(|e| open_response(&app, e).ok())
            .filter(|r| ids.contains(&r.id) && r.result == "pong")
            .map(|r| r.id.clone())
            .collect();
        got.sort();
        got.dedup();
        got.len()
    };
    let batch = send_pings(500);
    let ids: Vec<String> = batch.iter().map(|(id, _)| id.clone()).collect();
    for relay in client.relays().await.values() {
        relay
            .batch_msg(
                batch
                    .iter()
                    .map(|(_, e)| nostr::ClientMessage::event(e.clone()))
                    .collect(),
            )
            .unwrap();
    }
    let seen = replies.until(30, |seen| answered(seen, &ids) == 500).await;
    assert_eq!(answered(&seen, &ids), 500, "every ping is answered");

    // The relay refuses the key's replies for a while: they still arrive.
    refuse.refuse(pk, Duration::from_secs(3));
    let batch = send_pings(5);
    let ids: Vec<String> = batch.iter().map(|(id, _)| id.clone()).collect();
    for (_, event) in &batch {
        client.send_event(event).await.unwrap();
    }
    let seen = replies.until(30, |seen| answered(seen, &ids) == 5).await;
    assert_eq!(answered(&seen, &ids), 5, "refused replies are sent again");
    assert!(refuse.refused() >= 5);
    client.shutdown().await;
    let log = std::fs::read_to_string(stack.enclave.log()).unwrap();
    stack.stop().await.unwrap();
    assert!(
        log.contains("relay refused reply") && log.contains("reply delivered after a refusal"),
        "the operator log says what happened"
    );
}

//! nsec.app permission events through the whole stack: events signed by
//! the user's key (NIP-04 to itself) on the key's relay become grants —
//! one published before the key was imported (the initial fetch), one
//! after (live) — and a deletion ends the app. A rust-nostr client then
//! signs what it was granted and is refused the rest.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::time::Duration;

use nostr::nips::nip46::NostrConnectURI;
use nostr::{Event, EventBuilder, Keys, Kind, NostrSigner, PublicKey, Tag, ToBech32};
use nostr_connect::client::NostrConnect;
use nostr_sdk::Client;
use parent::dev_stack::Stack;
use verifier::grant::nsecapp::{d_tag, KIND_APP_DATA, PERM_TAG};
use verifier::grant::wire::AppReport;
use verifier::rpc::cipher::{Conversation, Scheme};

mod common;
use common::{relay, stack_config, test_dir, Key, Writers};

fn perm_event(user: &Keys, app: &PublicKey, body: serde_json::Value) -> Event {
    perm_event_at(user, app, body, nostr::Timestamp::now())
}

fn perm_event_at(
    user: &Keys,
    app: &PublicKey,
    body: serde_json::Value,
    at: nostr::Timestamp,
) -> Event {
    let mut body = body;
    body["npub"] = user.public_key().to_bech32().unwrap().into();
    body["appNpub"] = app.to_bech32().unwrap().into();
    let content = Conversation::new(Scheme::Nip04, user.secret_key(), &user.public_key())
        .unwrap()
        .encrypt(&body.to_string())
        .unwrap();
    EventBuilder::new(Kind::from(KIND_APP_DATA), content)
        .tag(Tag::identifier(d_tag(&user.public_key(), app)))
        .tag(Tag::hashtag(PERM_TAG))
        .custom_created_at(at)
        .sign_with_keys(user)
        .unwrap()
}

fn allow(kinds: &[u16], at_ms: u64) -> serde_json::Value {
    let mut perms =
        vec![serde_json::json!({"id": "c", "perm": "connect", "value": "1", "timestamp": at_ms})];
    perms.extend(kinds.iter().map(|k| serde_json::json!({"id": k.to_string(), "perm": format!("sign_event:{k}"), "value": "1", "timestamp": at_ms})));
    serde_json::json!({"name": "Coracle", "url": "https://coracle.example", "timestamp": at_ms,
        "updateTimestamp": at_ms, "permUpdateTimestamp": at_ms, "perms": perms})
}

/// The apps on the key, once `done` holds of them (within 20 s).
async fn apps_until(key: &Key, done: impl Fn(&[AppReport]) -> bool) -> Vec<AppReport> {
    for _ in 0..40 {
        let apps: Vec<AppReport> = serde_json::from_str(&key.ok_with("apps", &["--json"])).unwrap();
        if done(&apps) {
            return apps;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    panic!("the apps never got there");
}

#[tokio::test(flavor = "multi_thread")]
async fn permissions_set_in_nsec_app_are_enforced() {
    let (_relay, url, relay_addr) = relay(Writers::default()).await;
    // The key's own relay, new to the enclave when the key arrives: its
    // stored permission events must still be fetched once it connects.
    let (_own, own_url, own_addr) = relay(Writers::default()).await;
    let dir = test_dir("nsec-app");
    let mut config = stack_config(dir.clone(), url.clone(), relay_addr, 3600);
    config.parent_args = vec!["--allow-egress".into(), own_addr.to_string()];
    let mut stack = Stack::start(&config).await.unwrap();
    stack.wait_for_event(Duration::from_secs(60)).await.unwrap();
    let user = Keys::generate();
    let key_file = dir.join("user.nsec");
    std::fs::write(&key_file, user.secret_key().to_bech32().unwrap()).unwrap();
    let key = Key::new(&stack.paths, &key_file);

    let publisher = Client::default();
    publisher.add_relay(&own_url).await.unwrap();
    publisher.connect().await;
    let now_ms = nostr::Timestamp::now().as_secs() * 1000;
    // Set in nsec.app before the key was handed over: fetched at import.
    let early = Keys::generate();
    publisher
        .send_event(&perm_event_at(
            &user,
            &early.public_key(),
            allow(&[1], now_ms - 3_600_000),
            // An hour old: only the one-shot fetch at import reaches it.
            nostr::Timestamp::from(now_ms / 1000 - 3600),
        ))
        .await
        .unwrap();
    assert_eq!(
        key.ok_with("import", &["--signer-relay", &own_url]),
        "key imported"
    );
    let apps = apps_until(&key, |a| a.len() == 1).await;
    assert_eq!(
        (apps[0].app.as_str(), apps[0].source.as_str()),
        (early.public_key().to_hex().as_str(), "nsec.app")
    );

    // Set while it is held: followed live.
    let app = Keys::generate();
    publisher
        .send_event(&perm_event(
            &user,
            &app.public_key(),
            allow(&[1, 7], now_ms),
        ))
        .await
        .unwrap();
    apps_until(&key, |a| a.len() == 2).await;
    let bunker = format!("bunker://{}?relay={own_url}", user.public_key().to_hex());
    let client = NostrConnect::new(
        NostrConnectURI::parse(&bunker).unwrap(),
        app.clone(),
        Duration::from_secs(15),
        None,
    )
    .unwrap();
    assert_eq!(client.get_public_key().await.unwrap(), user.public_key());
    let note = EventBuilder::text_note("allowed by nsec.app").build(user.public_key());
    client.sign_event(note).await.unwrap().verify().unwrap();
    let profile = EventBuilder::new(Kind::Metadata, "{}").build(user.public_key());
    let e = client.sign_event(profile).await.unwrap_err().to_string();
    assert!(e.contains("forbidden: sign_event of kind 0"), "{e}");
    // An event by another author about this key changes nothing.
    let forger = Keys::generate();
    let mut body = allow(&[0], now_ms + 1000);
    body["npub"] = user.public_key().to_bech32().unwrap().into();
    publisher
        .send_event(&perm_event(&forger, &app.public_key(), body))
        .await
        .unwrap();

    // Deleted in nsec.app: the app is gone.
    let deletion = serde_json::json!({"updateTimestamp": now_ms + 2000, "deleted": true});
    publisher
        .send_event(&perm_event(&user, &app.public_key(), deletion))
        .await
        .unwrap();
    apps_until(&key, |a| a.len() == 1).await;
    let note = EventBuilder::text_note("after deletion").build(user.public_key());
    let e = client.sign_event(note).await.unwrap_err().to_string();
    assert!(e.contains("unauthorized"), "{e}");
    client.shutdown().await;
    publisher.shutdown().await;

    let log = std::fs::read_to_string(stack.enclave.log()).unwrap();
    stack.stop().await.unwrap();
    assert_eq!(
        log.matches("nsec.app permissions applied").count(),
        3,
        "{log}"
    );
    assert!(!log.contains(&user.secret_key().to_secret_hex()));
}

//! The signer end to end on a real relay (an in-process LocalRelay): the
//! admin API, NIP-46 through rust-nostr's `NostrConnect` client and raw
//! requests shaped like nostr-tools' and NDK's, every refusal answered,
//! and the limits. Every wait has a timeout, so a silent signer fails.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::time::Duration;

use common::{import, import_request, relays_csv, stack, Raw, WAIT};
use enclave::custody::{AdmissionLimits, Limits};
use enclave::signer::SignerConfig;
use nostr::nips::nip46::NostrConnectURI;
use nostr::{Event, EventBuilder, JsonUtil, Keys, Kind, NostrSigner};
use nostr_connect::client::NostrConnect;
use nostr_relay_builder::RelayBuilder;
use parent::dev_stack::relay::DevRelay;
use verifier::event::{KIND_ADMIN, KIND_NIP46};
use verifier::rpc::admin::AdminRequest;
use verifier::rpc::cipher::Scheme;
use verifier::rpc::{seal_request, Params, Request};

#[tokio::test]
async fn admin_api_acts_on_the_signers_own_key() {
    let stack = stack(SignerConfig::default()).await;
    let user = Keys::generate();
    let mut owner = Raw::with_keys(&stack.url, user.clone()).await;
    assert_eq!(
        owner.admin(&stack.service, &AdminRequest::Ping).await,
        Ok("pong".into())
    );
    assert_eq!(
        owner.admin(&stack.service, &AdminRequest::HasKey).await,
        Ok("false".into())
    );

    // A key that is not the request's signer is refused.
    let foreign = Keys::generate();
    let r = owner
        .admin(&stack.service, &import_request(&stack, &foreign))
        .await;
    assert!(r.unwrap_err().contains("not the key that signed"));
    assert!(stack.signer.store().get(&foreign.public_key()).is_none());

    drop(owner);
    let mut owner = import(&stack, &user).await;
    assert_eq!(
        owner.admin(&stack.service, &AdminRequest::HasKey).await,
        Ok("true".into())
    );
    // Importing again updates the relays.
    assert_eq!(
        owner
            .admin(
                &stack.service,
                &AdminRequest::ImportKey {
                    keys: user.clone(),
                    relays: relays_csv(&stack.url),
                    apps: verifier::rpc::admin::KeptApps::Keep,
                }
            )
            .await,
        Ok("ok".into())
    );
    assert_eq!(stack.signer.store().len(), 1);

    // Someone else cannot delete it: delete acts on their own (absent) key.
    let mut other = Raw::new(&stack.url).await;
    assert!(other
        .admin(&stack.service, &AdminRequest::DeleteKey)
        .await
        .unwrap_err()
        .contains("no key"));
    assert!(stack.signer.store().get(&user.public_key()).is_some());

    // Bad parameters and unknown methods are answered.
    let r = other
        .call(KIND_ADMIN, &stack.service, "import_key", &["nonsense"])
        .await;
    assert!(r.into_result().unwrap_err().contains("not valid"));
    let r = other
        .call(KIND_ADMIN, &stack.service, "frobnicate", &[])
        .await;
    assert!(r.into_result().unwrap_err().contains("unknown method"));

    assert_eq!(
        owner.admin(&stack.service, &AdminRequest::DeleteKey).await,
        Ok("ok".into())
    );
    assert_eq!(
        owner.admin(&stack.service, &AdminRequest::HasKey).await,
        Ok("false".into())
    );
}

#[tokio::test]
async fn rust_nostr_connect_client_signs_and_encrypts() {
    let stack = stack(SignerConfig::default()).await;
    let user = Keys::generate();
    let mut owner = import(&stack, &user).await;
    let url = owner
        .admin(
            &stack.service,
            &AdminRequest::CreateBunkerUrl { policy: None },
        )
        .await
        .unwrap();
    let app = NostrConnect::new(
        NostrConnectURI::parse(&url).unwrap(),
        Keys::generate(),
        WAIT,
        None,
    )
    .unwrap();
    assert_eq!(app.get_public_key().await.unwrap(), user.public_key());
    let unsigned = EventBuilder::text_note("through the enclave").build(user.public_key());
    let event = app.sign_event(unsigned.clone()).await.unwrap();
    event.verify().unwrap();
    assert_eq!(
        (event.kind, &event.content, event.created_at),
        (unsigned.kind, &unsigned.content, unsigned.created_at)
    );
    let peer = Keys::generate();
    let sealed = app
        .nip44_encrypt(&peer.public_key(), "hello")
        .await
        .unwrap();
    assert_eq!(
        nostr::nips::nip44::decrypt(peer.secret_key(), &user.public_key(), &sealed).unwrap(),
        "hello"
    );
    assert_eq!(
        app.nip44_decrypt(&peer.public_key(), &sealed)
            .await
            .unwrap(),
        "hello"
    );
    let old = app.nip04_encrypt(&peer.public_key(), "old").await.unwrap();
    assert_eq!(
        app.nip04_decrypt(&peer.public_key(), &old).await.unwrap(),
        "old"
    );
    app.shutdown().await;
}

#[tokio::test]
async fn nip46_like_nostr_tools_and_ndk() {
    let stack = stack(SignerConfig::default()).await;
    let user = Keys::generate();
    let pk = user.public_key();
    let mut owner = import(&stack, &user).await;
    let bunker = owner
        .admin(
            &stack.service,
            &AdminRequest::CreateBunkerUrl { policy: None },
        )
        .await
        .unwrap();
    let secret = verifier::rpc::bunker::parse_bunker_url(&bunker)
        .unwrap()
        .secret
        .unwrap();

    // A client that never connected is refused, with a reply.
    let mut stranger = Raw::new(&stack.url).await;
    let r = stranger.call(KIND_NIP46, &pk, "get_public_key", &[]).await;
    assert!(r.into_result().unwrap_err().contains("unauthorized"));
    let r = stranger
        .call(KIND_NIP46, &pk, "connect", &[&pk.to_hex()])
        .await;
    assert!(r.into_result().unwrap_err().contains("secret is required"));

    // NDK connects with "" and a 4th metadata parameter.
    let mut app = Raw::new(&stack.url).await;
    let r = app
        .call(
            KIND_NIP46,
            &pk,
            "connect",
            &["", &secret, "", r#"{"name":"ndk"}"#],
        )
        .await;
    assert_eq!(r.into_result(), Ok("ack".into()));
    // The secret is spent.
    let r = stranger
        .call(KIND_NIP46, &pk, "connect", &[&pk.to_hex(), &secret])
        .await;
    assert!(r.into_result().unwrap_err().contains("already used"));

    assert_eq!(
        app.call(KIND_NIP46, &pk, "get_public_key", &[])
            .await
            .into_result(),
        Ok(pk.to_hex())
    );
    assert_eq!(
        app.call(KIND_NIP46, &pk, "ping", &[]).await.into_result(),
        Ok("pong".into())
    );

    // nostr-tools sends templates without pubkey.
    let template = r#"{"kind":1,"content":"hi","tags":[["t","enclaved"]],"created_at":1700000000}"#;
    let signed = app
        .call(KIND_NIP46, &pk, "sign_event", &[template])
        .await
        .into_result()
        .unwrap();
    let event = Event::from_json(&signed).unwrap();
    event.verify().unwrap();
    assert_eq!(
        (event.pubkey, event.kind, event.content.as_str()),
        (pk, Kind::from(1), "hi")
    );
    assert_eq!(event.created_at.as_secs(), 1_700_000_000);
    let wrong = template.replace(
        "{\"kind\"",
        &format!(
            "{{\"pubkey\":\"{}\",\"kind\"",
            Keys::generate().public_key().to_hex()
        ),
    );
    assert!(app
        .call(KIND_NIP46, &pk, "sign_event", &[&wrong])
        .await
        .into_result()
        .unwrap_err()
        .contains("not this signer"));
    assert!(app
        .call(KIND_NIP46, &pk, "sign_event", &["{"])
        .await
        .is_error());
    assert!(app
        .call(KIND_NIP46, &pk, "sign_event", &[])
        .await
        .into_result()
        .unwrap_err()
        .contains("missing"));

    let relays = app
        .call(KIND_NIP46, &pk, "switch_relays", &[])
        .await
        .into_result()
        .unwrap();
    assert_eq!(
        serde_json::from_str::<Vec<String>>(&relays).unwrap(),
        vec![stack.url.as_str_without_trailing_slash()]
    );
    let r = app.call(KIND_NIP46, &pk, "frobnicate", &[]).await;
    assert!(r.into_result().unwrap_err().contains("unknown method"));

    // A NIP-04 request is answered in NIP-04.
    let request = Request::new("ping", Params::default());
    assert_eq!(
        app.call_with(KIND_NIP46, &pk, &request, Scheme::Nip04)
            .await
            .into_result(),
        Ok("pong".into())
    );

    assert_eq!(
        app.call(KIND_NIP46, &pk, "logout", &[]).await.into_result(),
        Ok("ack".into())
    );
    assert!(app
        .call(KIND_NIP46, &pk, "ping", &[])
        .await
        .into_result()
        .unwrap_err()
        .contains("unauthorized"));
}

#[tokio::test]
async fn connect_key_grants_an_app_and_test_keys_work_like_bunkers() {
    let stack = stack(SignerConfig::default()).await;
    let user = Keys::generate();
    let mut owner = Raw::with_keys(&stack.url, user.clone()).await;
    let mut app = Raw::new(&stack.url).await;
    let grant = AdminRequest::ConnectKey {
        keys: user.clone(),
        app: app.keys.public_key(),
        relays: relays_csv(&stack.url),
        policy: None,
    };
    assert_eq!(owner.admin(&stack.service, &grant).await, Ok("ok".into()));
    let pk = user.public_key();
    assert_eq!(
        app.call(KIND_NIP46, &pk, "get_public_key", &[])
            .await
            .into_result(),
        Ok(pk.to_hex())
    );

    let bunker = owner
        .admin(
            &stack.service,
            &AdminRequest::GenerateTestKey {
                relays: relays_csv(&stack.url),
            },
        )
        .await
        .unwrap();
    let parsed = verifier::rpc::bunker::parse_bunker_url(&bunker).unwrap();
    assert_ne!(parsed.signer, pk);
    let client = NostrConnect::new(
        NostrConnectURI::parse(&bunker).unwrap(),
        Keys::generate(),
        WAIT,
        None,
    )
    .unwrap();
    assert_eq!(client.get_public_key().await.unwrap(), parsed.signer);
    client.shutdown().await;
    assert!(stack
        .signer
        .store()
        .get(&parsed.signer)
        .unwrap()
        .expires_at()
        .is_some());
}

#[tokio::test]
async fn limits_are_answered_with_clear_errors() {
    let config = SignerConfig {
        limits: Limits {
            max_keys: 1,
            max_test_keys: 1,
            max_relays_per_key: 1,
            test_keys_per_hour: 1,
            admission: AdmissionLimits::off(),
            ..Limits::default()
        },
        max_request_bytes: 4096,
        ..SignerConfig::default()
    };
    let stack = stack(config).await;
    let user = Keys::generate();
    let mut owner = import(&stack, &user).await;
    let second = Keys::generate();
    let mut other = Raw::with_keys(&stack.url, second.clone()).await;
    let r = other
        .admin(&stack.service, &import_request(&stack, &second))
        .await;
    assert!(r.unwrap_err().contains("maximum of 1 keys"));
    let two = "ws://127.0.0.1:1,ws://127.0.0.1:2";
    let r = owner
        .call(
            KIND_ADMIN,
            &stack.service,
            "import_key",
            &[&user.secret_key().to_secret_hex(), two],
        )
        .await;
    assert!(r.into_result().unwrap_err().contains("more than 1 relays"));
    let r = owner
        .call(
            KIND_ADMIN,
            &stack.service,
            "import_key",
            &[&user.secret_key().to_secret_hex(), "wss://u:p@x.example"],
        )
        .await;
    assert!(r.into_result().unwrap_err().contains("credentials"));
    owner
        .admin(&stack.service, &AdminRequest::DeleteKey)
        .await
        .unwrap();
    let test_key = AdminRequest::GenerateTestKey {
        relays: relays_csv(&stack.url),
    };
    owner.admin(&stack.service, &test_key).await.unwrap();
    assert!(owner
        .admin(&stack.service, &test_key)
        .await
        .unwrap_err()
        .contains("test keys per hour"));
    // Test keys have their own slots: the one test key fills them, and
    // never an import's.
    let mut third = Raw::new(&stack.url).await;
    assert!(third
        .admin(&stack.service, &test_key)
        .await
        .unwrap_err()
        .contains("maximum of 1 test keys"));

    // Over the size cap: dropped before decryption, so no reply.
    let big = Request::new("ping", Params::new(["x".repeat(8000)]));
    let event = seal_request(&owner.keys, &stack.service, KIND_ADMIN, &big, Scheme::Nip44).unwrap();
    owner.send_event(&event).await;
    assert!(owner
        .reply_within(&big.id, None, Duration::from_secs(2))
        .await
        .is_none());
}

#[tokio::test]
async fn a_request_seen_on_two_paths_is_answered_once() {
    let stack = stack(SignerConfig::default()).await;
    let mut raw = Raw::new(&stack.url).await;
    let request = AdminRequest::Ping.to_request();
    let event = seal_request(
        &raw.keys,
        &stack.service,
        KIND_ADMIN,
        &request,
        Scheme::Nip44,
    )
    .unwrap();
    raw.send_event(&event).await;
    assert!(raw.reply(&request.id, None).await.is_some());
    // The same event again (as another relay would deliver it).
    let again = Raw::new(&stack.url).await;
    again.send_event(&event).await;
    assert!(raw
        .reply_within(&request.id, None, Duration::from_secs(2))
        .await
        .is_none());
}

#[tokio::test]
async fn subscriptions_come_back_after_the_relay_restarts() {
    let mut stack = stack(SignerConfig::default()).await;
    let addr = stack.relay.addr();
    let user = Keys::generate();
    let mut owner = Raw::with_keys(&stack.url, user.clone()).await;
    let app_keys = Keys::generate();
    let grant = AdminRequest::ConnectKey {
        keys: user.clone(),
        app: app_keys.public_key(),
        relays: relays_csv(&stack.url),
        policy: None,
    };
    assert_eq!(owner.admin(&stack.service, &grant).await, Ok("ok".into()));
    drop(owner);

    // The relay goes away and comes back on the same address, empty.
    stack.relay.stop();
    tokio::time::sleep(Duration::from_millis(500)).await;
    stack.relay = DevRelay::start(RelayBuilder::default(), addr)
        .await
        .unwrap();

    // Both the admin and the NIP-46 subscriptions are back, with no restart
    // of the signer (reconnects back off from 10 s).
    let mut owner = Raw::with_keys(&stack.url, user.clone()).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let request = AdminRequest::HasKey.to_request();
        let event = seal_request(
            &owner.keys,
            &stack.service,
            KIND_ADMIN,
            &request,
            Scheme::Nip44,
        )
        .unwrap();
        owner.send_event(&event).await;
        if let Some(r) = owner
            .reply_within(&request.id, None, Duration::from_secs(2))
            .await
        {
            assert_eq!(r.into_result(), Ok("true".into()));
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the signer did not come back"
        );
    }
    let mut app = Raw::with_keys(&stack.url, app_keys).await;
    let pk = user.public_key();
    assert_eq!(
        app.call(KIND_NIP46, &pk, "get_public_key", &[])
            .await
            .into_result(),
        Ok(pk.to_hex())
    );
}

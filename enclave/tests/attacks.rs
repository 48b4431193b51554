//! The other attacks of the security review, performed in process on
//! `Signer`: what a stranger with fresh keys, an app that connected once or
//! a hostile relay would send, and what must (not) come back — replies to
//! replies, replays after a flood, exhausting shared slots, oversized
//! requests and replies. The isolation rule has its own file
//! (`isolation.rs`); `parent/tests/attacks.rs` performs these through the
//! real stack.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use common::in_process::{enclave, import, now};
use enclave::custody::{AdmissionLimits, Limits};
use enclave::signer::{Dropped, SignerConfig, REPLY_TOO_LARGE};
use nostr::{EventBuilder, Keys, Kind, RelayUrl, Tag};
use verifier::event::{KIND_ADMIN, KIND_NIP46};
use verifier::rpc::admin::{AdminRequest, KeptApps};
use verifier::rpc::admission::parse_pow_required;
use verifier::rpc::cipher::{Conversation, Scheme};
use verifier::rpc::{seal_request, seal_request_with_pow, Params, Request};

#[test]
fn the_owner_revokes_one_app_and_reimports_say_what_is_kept() {
    let e = enclave(SignerConfig::default());
    let (user, app) = e.user_with_app();
    let pk = user.public_key();
    let second = Keys::generate();
    e.grant(&user, &second.public_key());
    let revoke = AdminRequest::RevokeApp {
        app: app.public_key(),
    };
    assert_eq!(e.admin(&user, &revoke), Ok("ok".into()));
    // The revoked app is told its access ended, not that it never connected.
    let r = e.call(&app, &pk, "get_public_key", &[]);
    let err = r.into_result().unwrap_err();
    assert!(
        err.contains("unauthorized") && err.contains("access to the key has ended"),
        "{err}"
    );
    // An app that never connected is told that.
    let never = Keys::generate();
    let err = e.call(&never, &pk, "ping", &[]).into_result().unwrap_err();
    assert!(err.contains("needs a connect first"), "{err}");
    assert!(e.call(&second, &pk, "ping", &[]).into_result().is_ok());
    assert!(e.signer.store().holds(&pk));
    // Revoking an app that is not there says so; a stranger revokes nothing.
    assert!(e.admin(&user, &revoke).unwrap_err().contains("not allowed"));
    let stranger = Keys::generate();
    let theirs = AdminRequest::RevokeApp {
        app: second.public_key(),
    };
    assert!(e.admin(&stranger, &theirs).unwrap_err().contains("no key"));
    assert!(e.call(&second, &pk, "ping", &[]).into_result().is_ok());

    // Importing again keeps the remaining app, and says so.
    let _pending = e
        .admin(&user, &AdminRequest::CreateBunkerUrl { policy: None })
        .unwrap();
    let kept = e.admin(&user, &import(&e.relay, &user)).unwrap();
    assert!(
        kept.contains("1 app") && kept.contains("1 pending bunker secret"),
        "{kept}"
    );
    // ... or drops them all.
    let drop_all = AdminRequest::ImportKey {
        keys: user.clone(),
        relays: vec![e.relay.clone()],
        apps: KeptApps::Drop,
    };
    assert_eq!(e.admin(&user, &drop_all), Ok("ok".into()));
    let r = e.call(&second, &pk, "ping", &[]);
    let err = r.into_result().unwrap_err();
    assert!(err.contains("access to the key has ended"), "{err}");
}

#[test]
fn responses_and_the_enclaves_own_events_are_never_answered() {
    let e = enclave(SignerConfig::default());
    // A stranger imports their own key and pings it from itself.
    let stranger = Keys::generate();
    assert!(e.admin(&stranger, &import(&e.relay, &stranger)).is_ok());
    let spk = stranger.public_key();
    let ping = Request::new("ping", Params::default());
    let own = seal_request(&stranger, &spk, KIND_NIP46, &ping, Scheme::Nip44).unwrap();
    assert_eq!(
        e.signer.try_handle(&own, &e.relay, now()).unwrap_err(),
        Dropped::OwnEvent
    );
    // Two held keys: one's request to the other is not handled.
    let (other, _) = e.user_with_app();
    let across = seal_request(
        &stranger,
        &other.public_key(),
        KIND_NIP46,
        &ping,
        Scheme::Nip44,
    )
    .unwrap();
    assert_eq!(
        e.signer.try_handle(&across, &e.relay, now()).unwrap_err(),
        Dropped::OwnEvent
    );
    // The enclave's replies, seen again on its subscriptions.
    let app = Keys::generate();
    let request = seal_request(&app, &spk, KIND_NIP46, &ping, Scheme::Nip44).unwrap();
    let reply = e.reply_event(&request);
    assert_eq!(
        e.signer.try_handle(&reply, &e.relay, now()).unwrap_err(),
        Dropped::OwnEvent
    );
    let admin_reply = e.reply_event(&e.admin_event(&stranger, &AdminRequest::Ping));
    assert_eq!(
        e.signer
            .try_handle(&admin_reply, &e.relay, now())
            .unwrap_err(),
        Dropped::OwnEvent
    );
    // A response (an id, no method) from anyone is not answered.
    for body in [
        r#"{"id":"1","result":"pong"}"#,
        r#"{"id":"2","result":"","error":"unauthorized"}"#,
        r#"{"id":"3"}"#,
    ] {
        for (kind, to) in [(KIND_NIP46, spk), (KIND_ADMIN, e.service)] {
            let content = Conversation::nip44(app.secret_key(), &to)
                .unwrap()
                .encrypt(body)
                .unwrap();
            let event = EventBuilder::new(Kind::from(kind), content)
                .tag(Tag::public_key(to))
                .sign_with_keys(&app)
                .unwrap();
            assert_eq!(
                e.signer.try_handle(&event, &e.relay, now()).unwrap_err(),
                Dropped::NotARequest,
                "{body}"
            );
        }
    }
}

#[test]
fn a_flood_never_lets_a_captured_request_be_replayed() {
    let e = enclave(SignerConfig {
        max_seen: 200,
        ..SignerConfig::default()
    });
    let (user, app) = e.user_with_app();
    let pk = user.public_key();
    let logout = Request::new("logout", Params::default());
    let captured = seal_request(&app, &pk, KIND_NIP46, &logout, Scheme::Nip44).unwrap();
    let delete = e.admin_event(&user, &AdminRequest::DeleteKey);
    assert!(e.handle(&captured, &app).unwrap().into_result().is_ok());
    // Re-allow the app, then flood the cache with cheap signed events.
    e.grant(&user, &app.public_key());
    let junk = Keys::generate();
    for i in 0..2_000u32 {
        let event = EventBuilder::new(Kind::from(KIND_NIP46), format!("junk {i}"))
            .tag(Tag::public_key(pk))
            .sign_with_keys(&junk)
            .unwrap();
        let _ = e.signer.try_handle(&event, &e.relay, now());
    }
    // The replay of the captured logout is refused; the app keeps access.
    let replayed = e.signer.try_handle(&captured, &e.relay, now()).unwrap_err();
    assert!(
        matches!(replayed, Dropped::Duplicate | Dropped::MaybeReplayed),
        "{replayed:?}"
    );
    assert!(e.allows(&pk, &app.public_key()));
    // An admin request handled before the flood and replayed after it too.
    assert!(e.handle(&delete, &user).unwrap().into_result().is_ok());
    assert!(e.admin(&user, &import(&e.relay, &user)).is_ok());
    for i in 0..500u32 {
        let event = EventBuilder::new(Kind::from(KIND_ADMIN), format!("junk {i}"))
            .tag(Tag::public_key(e.service))
            .sign_with_keys(&junk)
            .unwrap();
        let _ = e.signer.try_handle(&event, &e.relay, now());
    }
    assert!(e.signer.try_handle(&delete, &e.relay, now()).is_err());
    assert!(e.signer.store().holds(&pk));
    // Fresh requests are still handled.
    e.grant(&user, &app.public_key());
    assert!(e.call(&app, &pk, "ping", &[]).into_result().is_ok());
}

#[test]
fn strangers_with_fresh_keys_cannot_exhaust_keys_test_keys_or_relays() {
    let e = enclave(SignerConfig {
        limits: Limits {
            max_keys: 40,
            max_test_keys: 20,
            max_relays: 40,
            admission: AdmissionLimits {
                free_keys_per_hour: 4,
                free_test_keys_per_hour: 2,
                free_relays_per_hour: 4,
                free_grant_kib_per_hour: 64,
                pow_bits: 8,
                ..AdmissionLimits::default()
            },
            ..Limits::default()
        },
        ..SignerConfig::default()
    });
    let junk_relays = |n: usize| -> Vec<RelayUrl> {
        (0..8)
            .map(|i| RelayUrl::parse(&format!("wss://junk{n}-{i}.example")).unwrap())
            .collect()
    };
    let mut refused = 0;
    for n in 0..100 {
        let stranger = Keys::generate();
        let attempts = [
            import(&e.relay, &stranger),
            AdminRequest::GenerateTestKey {
                relays: vec![e.relay.clone()],
            },
            AdminRequest::ImportKey {
                keys: stranger.clone(),
                relays: junk_relays(n),
                apps: KeptApps::Keep,
            },
        ];
        for request in &attempts {
            if let Err(why) = e.admin(&stranger, request) {
                assert!(parse_pow_required(&why).is_some(), "{why}");
                refused += 1;
            }
        }
    }
    assert!(refused > 250, "{refused}");
    {
        let store = e.signer.store();
        assert!(store.len() - store.test_key_count() <= 4, "keys");
        assert!(store.test_key_count() <= 2, "test keys");
        assert!(store.relay_count() <= 5, "relays");
    }
    // A legitimate import pays the price it is told and gets in.
    let user = Keys::generate();
    let why = e.admin(&user, &import(&e.relay, &user)).unwrap_err();
    let bits = parse_pow_required(&why).unwrap();
    let wire = import(&e.relay, &user).to_request();
    let paid =
        seal_request_with_pow(&user, &e.service, KIND_ADMIN, &wire, Scheme::Nip44, bits).unwrap();
    assert_eq!(
        e.handle(&paid, &user).unwrap().into_result(),
        Ok("ok".into())
    );
    assert!(e.signer.store().holds(&user.public_key()));
}

#[test]
fn every_valid_request_size_is_read_and_a_reply_too_large_is_still_answered() {
    let e = enclave(SignerConfig::default());
    let (user, app) = e.user_with_app();
    let pk = user.public_key();
    // The largest NIP-44 plaintext: 65,535 bytes of request.
    let base = Request::new("nip44_encrypt", Params::new([pk.to_hex(), String::new()]));
    let overhead = base.to_json().len();
    let request = Request {
        params: Params::new([pk.to_hex(), "x".repeat(65_535 - overhead)]),
        ..base
    };
    assert_eq!(request.to_json().len(), 65_535);
    let event = seal_request(&app, &pk, KIND_NIP46, &request, Scheme::Nip44).unwrap();
    assert!(event.content.len() > 87_000);
    // Its reply (87 KB of ciphertext) does not fit in NIP-44: a short error.
    let r = e.handle(&event, &app).unwrap();
    assert_eq!(r.id, request.id);
    assert_eq!(r.into_result(), Err(REPLY_TOO_LARGE.to_owned()));
}

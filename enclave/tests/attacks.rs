//! The attacks of the security review, performed in process on `Signer`:
//! each test is what an app that connected once, a stranger with fresh
//! keys or a hostile relay would send, and what must (not) come back.
//! `parent/tests/attacks.rs` performs the same through the real stack.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use enclave::custody::{AdmissionLimits, Limits};
use enclave::signer::{Dropped, Signer, SignerConfig, REPLY_TOO_LARGE};
use nostr::{Event, EventBuilder, Keys, Kind, PublicKey, RelayUrl, Tag};
use verifier::event::{KIND_ADMIN, KIND_NIP46};
use verifier::rpc::admin::{AdminRequest, KeptApps};
use verifier::rpc::admission::parse_pow_required;
use verifier::rpc::cipher::{Conversation, Scheme};
use verifier::rpc::{
    open_response, seal_request, seal_request_with_pow, Params, Request, Response,
};

struct Enclave {
    signer: Signer,
    service: PublicKey,
    relay: RelayUrl,
}

fn now() -> u64 {
    enclave::unix_now()
}

fn enclave(config: SignerConfig) -> Enclave {
    let service = Keys::generate();
    let relay = RelayUrl::parse("ws://127.0.0.1:1").unwrap();
    Enclave {
        service: service.public_key(),
        signer: Signer::new(service, relay.clone(), config),
        relay,
    }
}

impl Enclave {
    /// Hands `event` to the signer; the reply's response, or why it was dropped.
    fn handle(&self, event: &Event, reader: &Keys) -> Result<Response, Dropped> {
        let outcome = self.signer.try_handle(event, &self.relay, now())?;
        let reply = outcome.reply.expect("a handled request has a reply");
        Ok(open_response(reader, &reply.event).unwrap())
    }

    fn reply_event(&self, event: &Event) -> Event {
        self.signer
            .try_handle(event, &self.relay, now())
            .unwrap()
            .reply
            .unwrap()
            .event
    }

    fn admin_event(&self, user: &Keys, request: &AdminRequest) -> Event {
        seal_request(
            user,
            &self.service,
            KIND_ADMIN,
            &request.to_request(),
            Scheme::Nip44,
        )
        .unwrap()
    }

    fn admin(&self, user: &Keys, request: &AdminRequest) -> Result<String, String> {
        self.handle(&self.admin_event(user, request), user)
            .unwrap()
            .into_result()
    }

    fn call(&self, app: &Keys, user: &PublicKey, method: &str, params: &[&str]) -> Response {
        let request = Request::new(method, Params::new(params.iter().copied()));
        let event = seal_request(app, user, KIND_NIP46, &request, Scheme::Nip44).unwrap();
        self.handle(&event, app).unwrap()
    }

    /// `user` imported with `app` allowed.
    fn user_with_app(&self) -> (Keys, Keys) {
        let (user, app) = (Keys::generate(), Keys::generate());
        let grant = AdminRequest::ConnectKey {
            keys: user.clone(),
            app: app.public_key(),
            relays: vec![self.relay.clone()],
        };
        assert_eq!(self.admin(&user, &grant), Ok("ok".into()));
        (user, app)
    }
}

fn import(relay: &RelayUrl, user: &Keys) -> AdminRequest {
    AdminRequest::ImportKey {
        keys: user.clone(),
        relays: vec![relay.clone()],
        apps: KeptApps::Keep,
    }
}

fn forbidden(r: Response) -> String {
    let e = r.into_result().unwrap_err();
    assert!(e.contains("forbidden"), "{e}");
    e
}

#[test]
fn an_app_cannot_read_the_owners_key_from_the_admin_channel() {
    let e = enclave(SignerConfig::default());
    let (user, app) = e.user_with_app();
    let pk = user.public_key();
    let secret = user.secret_key().to_secret_hex();
    // The owner's import_key, as a relay (or the app) captured it, in both schemes.
    for scheme in [Scheme::Nip44, Scheme::Nip04] {
        let captured = seal_request(
            &user,
            &e.service,
            KIND_ADMIN,
            &import(&e.relay, &user).to_request(),
            scheme,
        )
        .unwrap();
        let method = match scheme {
            Scheme::Nip44 => "nip44_decrypt",
            Scheme::Nip04 => "nip04_decrypt",
        };
        let r = e.call(&app, &pk, method, &[&e.service.to_hex(), &captured.content]);
        assert!(!r.to_json().contains(&secret));
        assert!(forbidden(r).contains("service key"));
    }
    // The owner's admin requests to another enclave, whose service key this
    // one cannot know: refused by what the plaintext is.
    let elsewhere = Keys::generate().public_key();
    let captured = seal_request(
        &user,
        &elsewhere,
        KIND_ADMIN,
        &import(&e.relay, &user).to_request(),
        Scheme::Nip44,
    )
    .unwrap();
    let r = e.call(
        &app,
        &pk,
        "nip44_decrypt",
        &[&elsewhere.to_hex(), &captured.content],
    );
    assert!(!r.to_json().contains(&secret));
    forbidden(r);
    // The key itself, encrypted to the user by anyone: never handed out.
    let carrier = Keys::generate();
    let sealed = Conversation::nip44(carrier.secret_key(), &pk)
        .unwrap()
        .encrypt(&format!("here: {}", secret.to_uppercase()))
        .unwrap();
    let r = e.call(
        &app,
        &pk,
        "nip44_decrypt",
        &[&carrier.public_key().to_hex(), &sealed],
    );
    assert!(forbidden(r).contains("private key"));
}

#[test]
fn an_app_cannot_act_as_the_owner_on_the_admin_channel() {
    let e = enclave(SignerConfig::default());
    let (user, app) = e.user_with_app();
    let pk = user.public_key();
    let intruder = Keys::generate().public_key();
    let grant = AdminRequest::ConnectKey {
        keys: Keys::generate(),
        app: intruder,
        relays: vec![e.relay.clone()],
    }
    .to_request()
    .to_json();
    // Encrypt an admin request to the service key: refused.
    let r = e.call(&app, &pk, "nip44_encrypt", &[&e.service.to_hex(), &grant]);
    assert!(forbidden(r).contains("service key"));
    let r = e.call(&app, &pk, "nip04_encrypt", &[&e.service.to_hex(), &grant]);
    forbidden(r);
    // Or to any other peer: the plaintext is a protocol message.
    let r = e.call(&app, &pk, "nip44_encrypt", &[&intruder.to_hex(), &grant]);
    forbidden(r);
    // Sign an admin request, or a NIP-46 one, as the user: refused.
    for (kind, to) in [
        (KIND_ADMIN, e.service),
        (KIND_NIP46, pk),
        (KIND_NIP46, intruder),
    ] {
        let template = serde_json::json!({
            "kind": kind, "content": "x", "tags": [["p", to.to_hex()]],
            "created_at": now(),
        })
        .to_string();
        let r = e.call(&app, &pk, "sign_event", &[&template]);
        assert!(forbidden(r).contains(&kind.to_string()));
    }
    // Nothing changed: no other app, the key still held.
    assert!(!e.signer.store().get(&pk).unwrap().allows(&intruder));
    // What apps may do still works: encrypt to oneself, to a stranger.
    for peer in [pk, intruder] {
        let sealed = e
            .call(&app, &pk, "nip44_encrypt", &[&peer.to_hex(), "a note"])
            .into_result()
            .unwrap();
        let back = e
            .call(&app, &pk, "nip44_decrypt", &[&peer.to_hex(), &sealed])
            .into_result();
        assert_eq!(back, Ok("a note".into()));
    }
}

#[test]
fn an_app_cannot_use_another_held_keys_or_apps_conversations() {
    let e = enclave(SignerConfig::default());
    let (user, app) = e.user_with_app();
    let (other, other_app) = e.user_with_app();
    let pk = user.public_key();
    // Another held key is never a peer.
    let r = e.call(
        &app,
        &pk,
        "nip44_encrypt",
        &[&other.public_key().to_hex(), "hi"],
    );
    assert!(forbidden(r).contains("another key held"));
    // Another app's NIP-46 request to the same user, and the enclave's reply.
    let second = Keys::generate();
    let grant = AdminRequest::ConnectKey {
        keys: user.clone(),
        app: second.public_key(),
        relays: vec![e.relay.clone()],
    };
    assert!(e.admin(&user, &grant).is_ok());
    let request = Request::new("get_public_key", Params::default());
    let captured = seal_request(&second, &pk, KIND_NIP46, &request, Scheme::Nip44).unwrap();
    let reply = e.reply_event(&captured);
    // While that app is connected its key is not a peer at all; once it is
    // gone, its old traffic is still refused for what it is.
    for connected in [true, false] {
        if !connected {
            let revoke = AdminRequest::RevokeApp {
                app: second.public_key(),
            };
            assert!(e.admin(&user, &revoke).is_ok());
        }
        for content in [&captured.content, &reply.content] {
            let r = e.call(
                &app,
                &pk,
                "nip44_decrypt",
                &[&second.public_key().to_hex(), content],
            );
            let why = forbidden(r);
            let expected = if connected {
                "app connected"
            } else {
                "protocol"
            };
            assert!(why.contains(expected), "{why}");
        }
    }
    drop(other_app);
}

#[test]
fn the_owner_revokes_one_app_and_reimports_say_what_is_kept() {
    let e = enclave(SignerConfig::default());
    let (user, app) = e.user_with_app();
    let pk = user.public_key();
    let second = Keys::generate();
    let grant = AdminRequest::ConnectKey {
        keys: user.clone(),
        app: second.public_key(),
        relays: vec![e.relay.clone()],
    };
    assert!(e.admin(&user, &grant).is_ok());
    let revoke = AdminRequest::RevokeApp {
        app: app.public_key(),
    };
    assert_eq!(e.admin(&user, &revoke), Ok("ok".into()));
    let r = e.call(&app, &pk, "get_public_key", &[]);
    assert!(r.into_result().unwrap_err().contains("unauthorized"));
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
    let _pending = e.admin(&user, &AdminRequest::CreateBunkerUrl).unwrap();
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
    assert!(r.into_result().unwrap_err().contains("unauthorized"));
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
    let grant = AdminRequest::ConnectKey {
        keys: user.clone(),
        app: app.public_key(),
        relays: vec![e.relay.clone()],
    };
    assert!(e.admin(&user, &grant).is_ok());
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
    assert!(e.signer.store().get(&pk).unwrap().allows(&app.public_key()));
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
    assert!(e.admin(&user, &grant).is_ok());
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
                pow_bits: 8,
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

#[test]
fn strangers_are_answered_only_on_the_relay_they_used() {
    let e = enclave(SignerConfig::default());
    let (a, b) = (
        RelayUrl::parse("wss://a.example").unwrap(),
        RelayUrl::parse("wss://b.example").unwrap(),
    );
    let (user, app) = (Keys::generate(), Keys::generate());
    let grant = AdminRequest::ConnectKey {
        keys: user.clone(),
        app: app.public_key(),
        relays: vec![a.clone(), b.clone()],
    };
    assert_eq!(e.admin(&user, &grant), Ok("ok".into()));
    let pk = user.public_key();
    let ping = Request::new("ping", Params::default());
    let relays_of = |from: &Keys| {
        let event = seal_request(from, &pk, KIND_NIP46, &ping, Scheme::Nip44).unwrap();
        e.signer
            .try_handle(&event, &a, now())
            .unwrap()
            .reply
            .unwrap()
            .relays
    };
    assert_eq!(relays_of(&Keys::generate()), vec![a.clone()]);
    let mut allowed = relays_of(&app);
    allowed.sort_by(|x, y| x.as_str().cmp(y.as_str()));
    assert_eq!(allowed, vec![a, b]);
}

#[test]
fn nip04_is_refused_on_the_admin_api_and_apps_cannot_use_other_apps_channels() {
    let e = enclave(SignerConfig::default());
    // An import sealed with NIP-04 (malleable: no MAC) is answered with an
    // error, in NIP-04, and nothing is imported.
    let user = Keys::generate();
    let event = seal_request(
        &user,
        &e.service,
        KIND_ADMIN,
        &import(&e.relay, &user).to_request(),
        Scheme::Nip04,
    )
    .unwrap();
    let r = e.handle(&event, &user).unwrap();
    assert_eq!(
        r.into_result(),
        Err(verifier::rpc::isolation::ADMIN_NEEDS_NIP44.to_owned())
    );
    assert!(!e.signer.store().holds(&user.public_key()));

    // An app may not decrypt (even block by block, as NIP-04 allows) what
    // the user exchanged with another app: that app's key is not a peer.
    let (user, app) = e.user_with_app();
    let pk = user.public_key();
    let other = Keys::generate();
    let grant = AdminRequest::ConnectKey {
        keys: user.clone(),
        app: other.public_key(),
        relays: vec![e.relay.clone()],
    };
    assert!(e.admin(&user, &grant).is_ok());
    let request = Request::new("get_public_key", Params::default());
    let captured = seal_request(&other, &pk, KIND_NIP46, &request, Scheme::Nip04).unwrap();
    let (ct, iv) = captured.content.split_once("?iv=").unwrap();
    let first_block = {
        use base64::Engine;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(ct)
            .unwrap();
        base64::engine::general_purpose::STANDARD.encode(&bytes[..16])
    };
    for content in [captured.content.clone(), format!("{first_block}?iv={iv}")] {
        for method in ["nip04_decrypt", "nip44_decrypt", "nip04_encrypt"] {
            let r = e.call(&app, &pk, method, &[&other.public_key().to_hex(), &content]);
            assert!(
                forbidden(r).contains("app connected to this key"),
                "{method}"
            );
        }
    }
    // A NIP-04 failure says one thing, whatever the cause.
    let stranger = Keys::generate().public_key().to_hex();
    for junk in ["AAAA?iv=AAAAAAAAAAAAAAAAAAAAAA==", "not base64?iv=x"] {
        let r = e.call(&app, &pk, "nip04_decrypt", &[&stranger, junk]);
        assert_eq!(
            r.into_result(),
            Err(verifier::rpc::isolation::NIP04_DECRYPT_FAILED.to_owned())
        );
    }
}

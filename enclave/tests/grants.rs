//! Scoped grants enforced in process on `Signer`, with an injected clock:
//! each refusal with its message, narrowing by `connect` perms, expiry,
//! use counts, rate limits, the owner's `grant`, `list_apps` and the
//! decision log. `parent/tests/grants.rs` does the same through the real
//! stack with nostr-tools and NDK.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use common::in_process::{enclave, now, Enclave};
use enclave::signer::SignerConfig;
use nostr::{EventBuilder, Keys, Kind, PublicKey, Tag, Timestamp};
use verifier::event::{KIND_ADMIN, KIND_NIP46};
use verifier::grant::wire::{AppView, LogEntry, Page};
use verifier::grant::{Expiry, Perms, Policy, Rates};
use verifier::rpc::admin::AdminRequest;
use verifier::rpc::cipher::{Conversation, Scheme};
use verifier::rpc::{open_response, Params, Request, Response};

/// A request event of `kind` from `from` to `to` dated `at`.
fn sealed(from: &Keys, to: &PublicKey, kind: u16, request: &Request, at: u64) -> nostr::Event {
    let content = Conversation::new(Scheme::Nip44, from.secret_key(), to)
        .unwrap()
        .encrypt(&request.to_json())
        .unwrap();
    EventBuilder::new(Kind::from(kind), content)
        .tag(Tag::public_key(*to))
        .custom_created_at(Timestamp::from(at))
        .sign_with_keys(from)
        .unwrap()
}

/// `app` calls `method` on `user`'s key at `at`.
fn call_at(
    e: &Enclave,
    app: &Keys,
    user: &PublicKey,
    method: &str,
    params: &[&str],
    at: u64,
) -> Response {
    let request = Request::new(method, Params::new(params.iter().copied()));
    let event = sealed(app, user, KIND_NIP46, &request, at);
    let reply = e
        .signer
        .try_handle(&event, &e.relay, at)
        .unwrap()
        .reply
        .unwrap();
    open_response(app, &reply.event).unwrap()
}

/// The owner's admin request at `at`.
fn admin_at(e: &Enclave, user: &Keys, request: &AdminRequest, at: u64) -> Result<String, String> {
    let event = sealed(user, &e.service, KIND_ADMIN, &request.to_request(), at);
    let reply = e
        .signer
        .try_handle(&event, &e.relay, at)
        .unwrap()
        .reply
        .unwrap();
    open_response(user, &reply.event).unwrap().into_result()
}

fn note(kind: u16, at: u64) -> String {
    serde_json::json!({"kind": kind, "content": "hello", "tags": [], "created_at": at}).to_string()
}

fn scoped(perms: &str) -> Policy {
    Policy::new(Perms::parse(perms).unwrap())
}

/// The user's key imported; a bunker secret for `policy`, spent by a new
/// app whose connect asks for `asked` and says `claims`.
fn connected(e: &Enclave, policy: Policy, asked: &str, claims: &str, at: u64) -> (Keys, Keys) {
    let user = Keys::generate();
    let import = AdminRequest::ImportKey {
        keys: user.clone(),
        relays: vec![e.relay.clone()],
        apps: Default::default(),
    };
    assert_eq!(admin_at(e, &user, &import, at), Ok("ok".into()));
    let url = admin_at(
        e,
        &user,
        &AdminRequest::CreateBunkerUrl {
            policy: Some(policy),
        },
        at,
    )
    .unwrap();
    let secret = url.split("secret=").nth(1).unwrap().to_owned();
    let app = Keys::generate();
    let pk = user.public_key().to_hex();
    let r = call_at(
        e,
        &app,
        &user.public_key(),
        "connect",
        &[&pk, &secret, asked, claims],
        at,
    );
    assert_eq!(r.into_result(), Ok("ack".into()));
    (user, app)
}

fn refused(r: Response) -> String {
    r.into_result().unwrap_err()
}

#[test]
fn a_scoped_app_signs_what_it_was_granted_and_nothing_else() {
    let e = enclave(SignerConfig::default());
    let t = now();
    let (user, app) = connected(&e, scoped("sign_event:1,sign_event:1111"), "", "", t);
    let pk = user.public_key();
    let signed = call_at(&e, &app, &pk, "sign_event", &[&note(1, t)], t)
        .into_result()
        .unwrap();
    assert!(signed.contains("\"kind\":1"), "{signed}");
    assert_eq!(
        refused(call_at(&e, &app, &pk, "sign_event", &[&note(0, t)], t)),
        "forbidden: sign_event of kind 0 is not granted to this app"
    );
    // NIP-98 is never implied, and neither are DMs.
    assert!(
        refused(call_at(&e, &app, &pk, "sign_event", &[&note(27235, t)], t))
            .starts_with("forbidden")
    );
    let peer = Keys::generate().public_key().to_hex();
    let r = refused(call_at(&e, &app, &pk, "nip44_decrypt", &[&peer, "x"], t));
    assert!(r.starts_with("forbidden: nip44_decrypt from "), "{r}");
    assert!(
        refused(call_at(&e, &app, &pk, "nip04_encrypt", &[&peer, "x"], t)).starts_with("forbidden")
    );
    // A peer it may not use tells it nothing about which keys are held.
    let r = refused(call_at(
        &e,
        &app,
        &pk,
        "nip44_encrypt",
        &[&e.service.to_hex(), "x"],
        t,
    ));
    assert!(
        r.starts_with("forbidden: nip44_encrypt to ") && !r.contains("service"),
        "{r}"
    );
    // The plumbing works.
    assert_eq!(
        call_at(&e, &app, &pk, "get_public_key", &[], t).into_result(),
        Ok(pk.to_hex())
    );
    assert_eq!(
        call_at(&e, &app, &pk, "ping", &[], t).into_result(),
        Ok("pong".into())
    );
    // Back- and forward-dated events are refused (±10 min by default).
    let r = refused(call_at(
        &e,
        &app,
        &pk,
        "sign_event",
        &[&note(1, t - 3600)],
        t,
    ));
    assert!(r.contains("created_at is 1 h behind"), "{r}");
    assert!(refused(call_at(
        &e,
        &app,
        &pk,
        "sign_event",
        &[&note(1, t + 700)],
        t
    ))
    .contains("ahead of"));
}

#[test]
fn the_sixth_signature_in_ten_seconds_is_rate_limited() {
    let e = enclave(SignerConfig::default());
    let t = now();
    let (user, app) = connected(&e, scoped("sign_event:1"), "", "", t);
    let pk = user.public_key();
    for i in 0..5 {
        call_at(&e, &app, &pk, "sign_event", &[&note(1, t)], t + i / 2)
            .into_result()
            .unwrap();
    }
    let r = refused(call_at(&e, &app, &pk, "sign_event", &[&note(1, t)], t + 3));
    assert_eq!(r, "rate-limited: 5 per 10 s; retry in 7 s");
    // Refusals do not count; waiting as told is enough.
    call_at(&e, &app, &pk, "sign_event", &[&note(1, t)], t + 10)
        .into_result()
        .unwrap();
    // Pings and public keys are not counted.
    for _ in 0..20 {
        call_at(&e, &app, &pk, "get_public_key", &[], t + 10)
            .into_result()
            .unwrap();
    }
}

#[test]
fn connect_perms_narrow_a_grant_and_never_widen_it() {
    let e = enclave(SignerConfig::default());
    let t = now();
    let (user, app) = connected(
        &e,
        scoped("sign_event:1,sign_event:7"),
        "sign_event:1,sign_event:0,nip44_decrypt",
        "",
        t,
    );
    let pk = user.public_key();
    call_at(&e, &app, &pk, "sign_event", &[&note(1, t)], t)
        .into_result()
        .unwrap();
    for kind in [7, 0] {
        assert!(
            refused(call_at(&e, &app, &pk, "sign_event", &[&note(kind, t)], t))
                .starts_with("forbidden")
        );
    }
    let peer = Keys::generate().public_key().to_hex();
    assert!(
        refused(call_at(&e, &app, &pk, "nip44_decrypt", &[&peer, "x"], t)).starts_with("forbidden")
    );
    // Full access asked for by the app is still only the grant.
    let (user, app) = connected(&e, scoped("sign_event:1"), "full", "", t);
    assert!(refused(call_at(
        &e,
        &app,
        &user.public_key(),
        "sign_event",
        &[&note(0, t)],
        t
    ))
    .starts_with("forbidden"));
}

#[test]
fn a_connect_that_would_leave_nothing_is_refused_and_keeps_the_secret() {
    let e = enclave(SignerConfig::default());
    let t = now();
    let user = Keys::generate();
    let import = AdminRequest::ImportKey {
        keys: user.clone(),
        relays: vec![e.relay.clone()],
        apps: Default::default(),
    };
    assert_eq!(admin_at(&e, &user, &import, t), Ok("ok".into()));
    let create = AdminRequest::CreateBunkerUrl {
        policy: Some(scoped("sign_event:1")),
    };
    let url = admin_at(&e, &user, &create, t).unwrap();
    let secret = url.split("secret=").nth(1).unwrap();
    let (pk, hex) = (user.public_key(), user.public_key().to_hex());
    let app = Keys::generate();
    let r = refused(call_at(
        &e,
        &app,
        &pk,
        "connect",
        &[&hex, secret, "sign_event:7,nip44_decrypt"],
        t,
    ));
    assert!(
        r.contains("leave nothing of what this bunker URL grants (sign_event:1)"),
        "{r}"
    );
    assert!(refused(call_at(&e, &app, &pk, "ping", &[], t)).contains("unauthorized"));
    // The secret still works, for a request that asks for part of it.
    let r = call_at(
        &e,
        &app,
        &pk,
        "connect",
        &[&hex, secret, "sign_event:1,sign_event:7"],
        t,
    );
    assert_eq!(r.into_result(), Ok("ack".into()));
    call_at(&e, &app, &pk, "sign_event", &[&note(1, t)], t)
        .into_result()
        .unwrap();
    // A policy that has expired already is refused when given.
    let mut past = scoped("sign_event:1");
    past.expiry = Some(Expiry::At(t - 1));
    let create = AdminRequest::CreateBunkerUrl { policy: Some(past) };
    assert!(admin_at(&e, &user, &create, t)
        .unwrap_err()
        .contains("expired already"));
}

#[test]
fn grants_expire_and_uses_run_out() {
    let e = enclave(SignerConfig::default());
    let t = now();
    let mut policy = scoped("sign_event:1");
    policy.expiry = Some(Expiry::After(3600));
    policy.uses = Some(3);
    policy.rates = Rates::none();
    let (user, app) = connected(&e, policy.clone(), "", "", t);
    let pk = user.public_key();
    for _ in 0..3 {
        call_at(&e, &app, &pk, "sign_event", &[&note(1, t)], t)
            .into_result()
            .unwrap();
    }
    assert_eq!(
        refused(call_at(&e, &app, &pk, "sign_event", &[&note(1, t)], t)),
        "forbidden: sign_event of kind 1: this app's grant allowed 3 uses; all are spent"
    );
    // The TTL counts from the connect.
    let (user, app) = connected(&e, policy, "", "", t);
    let pk = user.public_key();
    let later = t + 3599;
    call_at(&e, &app, &pk, "sign_event", &[&note(1, later)], later)
        .into_result()
        .unwrap();
    let after = t + 3600;
    let r = refused(call_at(
        &e,
        &app,
        &pk,
        "sign_event",
        &[&note(1, after)],
        after,
    ));
    assert!(
        r.starts_with("forbidden: sign_event of kind 1: this app's grant expired at "),
        "{r}"
    );
    assert!(refused(call_at(&e, &app, &pk, "get_public_key", &[], after)).contains("expired"));
    // logout still works, and ends the session.
    assert_eq!(
        call_at(&e, &app, &pk, "logout", &[], after).into_result(),
        Ok("ack".into())
    );
    assert!(refused(call_at(&e, &app, &pk, "ping", &[], after)).contains("unauthorized"));
}

#[test]
fn the_owner_grants_changes_and_lists() {
    let e = enclave(SignerConfig::default());
    let t = now();
    let claims = r#"{"name":"agent \u001b[31m","url":"https://agent.example"}"#;
    let (user, app) = connected(&e, scoped("sign_event:1"), "", claims, t);
    let pk = user.public_key();
    // A wider grant from the owner takes effect at once.
    let grant = AdminRequest::Grant {
        app: app.public_key(),
        policy: scoped("sign_event:1,sign_event:0"),
    };
    assert_eq!(admin_at(&e, &user, &grant, t), Ok("ok".into()));
    call_at(&e, &app, &pk, "sign_event", &[&note(0, t)], t)
        .into_result()
        .unwrap();
    // A grant to a new app allows it; connect_key takes a policy too.
    let other = Keys::generate();
    let grant = AdminRequest::Grant {
        app: other.public_key(),
        policy: scoped("nip44_encrypt"),
    };
    assert_eq!(admin_at(&e, &user, &grant, t), Ok("ok".into()));
    assert!(
        refused(call_at(&e, &other, &pk, "sign_event", &[&note(1, t)], t)).starts_with("forbidden")
    );
    let third = Keys::generate();
    let connect_key = AdminRequest::ConnectKey {
        keys: user.clone(),
        app: third.public_key(),
        relays: vec![e.relay.clone()],
        policy: Some(scoped("sign_event:7")),
    };
    assert_eq!(admin_at(&e, &user, &connect_key, t), Ok("ok".into()));
    assert!(
        refused(call_at(&e, &third, &pk, "sign_event", &[&note(1, t)], t)).starts_with("forbidden")
    );
    // A stranger's grant touches nothing.
    let stranger = Keys::generate();
    let theirs = AdminRequest::Grant {
        app: stranger.public_key(),
        policy: Policy::full(),
    };
    assert!(admin_at(&e, &stranger, &theirs, t)
        .unwrap_err()
        .contains("no key"));

    let page: Page<AppView> = serde_json::from_str(
        &admin_at(&e, &user, &AdminRequest::ListApps { cursor: None }, t).unwrap(),
    )
    .unwrap();
    assert_eq!(page.items.len(), 3);
    assert_eq!(page.next, None);
    let first = page
        .items
        .iter()
        .find(|a| a.app == app.public_key().to_hex())
        .unwrap();
    assert_eq!(first.source, "grant");
    assert_eq!(first.used, 1);
    assert_eq!(first.last_request, Some((t, "sign_event".into())));
    assert_eq!(first.claims.as_deref(), Some(claims));
    assert_eq!(
        Policy::from_json(&first.policy).unwrap().perms.to_string(),
        "sign_event:0-1"
    );
    let third_view = page
        .items
        .iter()
        .find(|a| a.app == third.public_key().to_hex())
        .unwrap();
    assert_eq!(third_view.source, "connect_key");
    // Without a policy, connect_key is full access, as in the original.
    let full = Keys::generate();
    let legacy = AdminRequest::ConnectKey {
        keys: user.clone(),
        app: full.public_key(),
        relays: vec![e.relay.clone()],
        policy: None,
    };
    assert_eq!(admin_at(&e, &user, &legacy, t), Ok("ok".into()));
    for kind in [0, 3, 27235, 30078] {
        call_at(&e, &full, &pk, "sign_event", &[&note(kind, 1)], t)
            .into_result()
            .unwrap();
    }
}

#[test]
fn a_new_bunker_secret_replaces_the_grant_and_a_spent_one_changes_nothing() {
    let e = enclave(SignerConfig::default());
    let t = now();
    let (user, app) = connected(&e, Policy::full(), "", "", t);
    let pk = user.public_key();
    let hex = pk.to_hex();
    call_at(&e, &app, &pk, "sign_event", &[&note(0, t)], t)
        .into_result()
        .unwrap();
    let url = admin_at(
        &e,
        &user,
        &AdminRequest::CreateBunkerUrl {
            policy: Some(scoped("sign_event:1")),
        },
        t,
    )
    .unwrap();
    let secret = url.split("secret=").nth(1).unwrap();
    assert_eq!(
        call_at(&e, &app, &pk, "connect", &[&hex, secret], t).into_result(),
        Ok("ack".into())
    );
    assert!(
        refused(call_at(&e, &app, &pk, "sign_event", &[&note(0, t)], t)).starts_with("forbidden")
    );
    // Reconnecting with the spent secret (as clients do on start) keeps it.
    assert_eq!(
        call_at(&e, &app, &pk, "connect", &[&hex, secret, "full"], t).into_result(),
        Ok("ack".into())
    );
    assert!(
        refused(call_at(&e, &app, &pk, "sign_event", &[&note(0, t)], t)).starts_with("forbidden")
    );
}

#[test]
fn peer_scoped_decryption_reads_only_its_peer() {
    let e = enclave(SignerConfig::default());
    let t = now();
    let vault = Keys::generate();
    let (user, app) = connected(
        &e,
        scoped(&format!("nip44_decrypt:{}", vault.public_key().to_hex())),
        "",
        "",
        t,
    );
    let pk = user.public_key();
    let blob = Conversation::nip44(vault.secret_key(), &pk)
        .unwrap()
        .encrypt("agent state")
        .unwrap();
    let r = call_at(
        &e,
        &app,
        &pk,
        "nip44_decrypt",
        &[&vault.public_key().to_hex(), &blob],
        t,
    );
    assert_eq!(r.into_result(), Ok("agent state".into()));
    let friend = Keys::generate();
    let dm = Conversation::nip44(friend.secret_key(), &pk)
        .unwrap()
        .encrypt("a DM")
        .unwrap();
    let r = refused(call_at(
        &e,
        &app,
        &pk,
        "nip44_decrypt",
        &[&friend.public_key().to_hex(), &dm],
        t,
    ));
    assert!(r.starts_with("forbidden: nip44_decrypt from "), "{r}");
}

#[test]
fn the_log_shows_decisions_and_never_contents() {
    let e = enclave(SignerConfig::default());
    let t = now();
    let (user, app) = connected(&e, scoped("sign_event:1,nip44_encrypt"), "", "", t);
    let pk = user.public_key();
    let peer = Keys::generate().public_key().to_hex();
    call_at(&e, &app, &pk, "sign_event", &[&note(1, t)], t)
        .into_result()
        .unwrap();
    call_at(
        &e,
        &app,
        &pk,
        "nip44_encrypt",
        &[&peer, "zz-secret-plaintext-zz"],
        t,
    )
    .into_result()
    .unwrap();
    refused(call_at(&e, &app, &pk, "sign_event", &[&note(0, t)], t));
    for _ in 0..5 {
        let _ = call_at(&e, &app, &pk, "sign_event", &[&note(1, t)], t);
    }
    // The isolation rule's refusals are logged too.
    refused(call_at(
        &e,
        &app,
        &pk,
        "nip44_encrypt",
        &[&e.service.to_hex(), "x"],
        t,
    ));
    for _ in 0..50 {
        call_at(&e, &app, &pk, "get_public_key", &[], t)
            .into_result()
            .unwrap();
    }
    let json = admin_at(&e, &user, &AdminRequest::GetLog { cursor: None }, t).unwrap();
    assert!(
        !json.contains("zz-secret-plaintext-zz")
            && !json.contains("hello")
            && !json.contains(&peer),
        "{json}"
    );
    let page: Page<LogEntry> = serde_json::from_str(&json).unwrap();
    let lines: Vec<(String, Option<u16>, String, Option<String>)> = page
        .items
        .iter()
        .map(|l| {
            (
                l.method.clone(),
                l.kind,
                l.decision.clone(),
                l.reason.clone(),
            )
        })
        .collect();
    assert_eq!(lines[0], ("connect".into(), None, "allowed".into(), None));
    assert_eq!(
        lines[1],
        ("sign_event".into(), Some(1), "allowed".into(), None)
    );
    assert_eq!(lines[2].0, "nip44_encrypt");
    assert_eq!(
        lines[3],
        (
            "sign_event".into(),
            Some(0),
            "refused".into(),
            Some("forbidden: sign_event of kind 0 is not granted to this app".into())
        )
    );
    // Four more signatures (a run of the same decision, counted once),
    // then the refusal of the fifth.
    assert_eq!(
        lines[4],
        ("sign_event".into(), Some(1), "allowed".into(), None)
    );
    assert_eq!(page.items[4].count, 4);
    assert!(lines[5]
        .3
        .as_deref()
        .is_some_and(|r| r.starts_with("rate-limited: 5 per 10 s")));
    // Allowed plumbing is not logged, and a request the isolation rule
    // refuses is logged once, as that refusal.
    assert!(lines.iter().all(|l| l.0 != "get_public_key"));
    assert_eq!(lines.len(), 7, "{lines:?}");
    assert!(lines
        .last()
        .unwrap()
        .3
        .as_deref()
        .unwrap()
        .contains("protocol keys"));
    assert!(page
        .items
        .iter()
        .all(|l| l.app == app.public_key().to_hex() && l.time == t));
    // Strangers cannot read it, nor fill it.
    let stranger = Keys::generate();
    assert!(
        admin_at(&e, &stranger, &AdminRequest::GetLog { cursor: None }, t)
            .unwrap_err()
            .contains("no key")
    );
    let before = e.signer.store().log().len();
    for _ in 0..10 {
        let r = call_at(&e, &Keys::generate(), &pk, "sign_event", &[&note(0, t)], t);
        assert!(refused(r).contains("unauthorized"));
    }
    assert_eq!(e.signer.store().log().len(), before);
}

#[test]
fn test_keys_keep_full_access() {
    let e = enclave(SignerConfig::default());
    let t = now();
    let requester = Keys::generate();
    let generate = AdminRequest::GenerateTestKey {
        relays: vec![e.relay.clone()],
    };
    let url = admin_at(&e, &requester, &generate, t).unwrap();
    let parsed = verifier::rpc::bunker::parse_bunker_url(&url).unwrap();
    let app = Keys::generate();
    let secret = parsed.secret.unwrap();
    let hex = parsed.signer.to_hex();
    assert_eq!(
        call_at(&e, &app, &parsed.signer, "connect", &[&hex, &secret], t).into_result(),
        Ok("ack".into())
    );
    for i in 0..20 {
        call_at(&e, &app, &parsed.signer, "sign_event", &[&note(i, 0)], t)
            .into_result()
            .unwrap();
    }
}

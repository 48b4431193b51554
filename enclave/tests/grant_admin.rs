//! The owner's side of grants, in process: `grant`, `connect_key` with a
//! policy, `list_apps`, the decision log, and test keys' full access.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use common::clocked::{admin_at, call_at, connected, note, refused, scoped};
use common::in_process::{enclave, now};
use enclave::signer::SignerConfig;
use nostr::Keys;
use verifier::grant::wire::{AppView, LogEntry, Page};
use verifier::grant::Policy;
use verifier::rpc::admin::AdminRequest;

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
        app: Keys::generate().public_key(),
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

#[test]
fn a_nostrconnect_answer_goes_to_the_apps_relays_and_the_keys_own_only() {
    use common::clocked::sealed;
    use nostr::RelayUrl;
    use verifier::event::KIND_ADMIN;
    use verifier::rpc::cipher::Conversation;
    use verifier::rpc::nostrconnect::NostrConnect;
    use verifier::rpc::Response;

    let e = enclave(SignerConfig::default());
    let t = now();
    let user = Keys::generate();
    let import = AdminRequest::ImportKey {
        keys: user.clone(),
        relays: vec![e.relay.clone()],
        apps: Default::default(),
    };
    assert_eq!(admin_at(&e, &user, &import, t), Ok("ok".into()));
    let app = Keys::generate();
    let theirs = RelayUrl::parse("wss://app-relay.example").unwrap();
    let uri = |perms: &str| {
        NostrConnect::parse(
            &format!(
                "nostrconnect://{}?relay={theirs}&secret=app-secret&perms={perms}&name=Agent",
                app.public_key().to_hex()
            ),
            8,
        )
        .unwrap()
    };
    // Asking only for what the policy does not grant: refused, nothing sent.
    let request = AdminRequest::NostrConnect {
        uri: uri("sign_event%3A7"),
        policy: Some(scoped("sign_event:1")),
    };
    let event = sealed(&user, &e.service, KIND_ADMIN, &request.to_request(), t);
    let outcome = e.signer.try_handle(&event, &e.relay, t).unwrap();
    assert!(outcome.also.is_none());
    assert!(!e.allows(&user.public_key(), &app.public_key()));

    let request = AdminRequest::NostrConnect {
        uri: uri("sign_event%3A1%2Csign_event%3A0"),
        policy: Some(scoped("sign_event:1,sign_event:1111")),
    };
    let event = sealed(&user, &e.service, KIND_ADMIN, &request.to_request(), t);
    let outcome = e.signer.try_handle(&event, &e.relay, t).unwrap();
    let also = outcome.also.expect("a connect response");
    assert_eq!(also.relays, vec![theirs.clone(), e.relay.clone()]);
    assert_eq!(also.event.pubkey, user.public_key());
    assert_eq!(also.event.kind.as_u16(), 24133);
    let (_, plain) =
        Conversation::open(app.secret_key(), &user.public_key(), &also.event.content).unwrap();
    assert_eq!(Response::parse(&plain).unwrap().result, "app-secret");
    let key = e.signer.store();
    let held = key.get(&user.public_key()).unwrap();
    assert!(held.relays().contains(&theirs));
    let (_, granted) = held.apps().find(|(a, _)| **a == app.public_key()).unwrap();
    // The URI's perms narrowed the policy.
    assert_eq!(granted.grant().policy().perms.to_string(), "sign_event:1");
    drop(key);
    // The connected app is served like any other.
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

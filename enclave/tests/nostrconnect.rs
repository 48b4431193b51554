//! Answering an app's nostrconnect:// URI (the admin method
//! `nostrconnect`), in process on `Signer`: the defaults an app gets when
//! the owner names no perms, limits checked before anything changes, and
//! the relays an app added going with it.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use common::clocked::{admin_at, call_at, note, refused};
use common::in_process::{enclave, now, Enclave};
use common::nsec::imported;
use enclave::custody::apps::{App, RELAY_BYTES};
use enclave::custody::{AdmissionLimits, Limits};
use enclave::signer::SignerConfig;
use nostr::{Keys, RelayUrl};
use verifier::grant::{Perms, Policy};
use verifier::rpc::admin::AdminRequest;
use verifier::rpc::nostrconnect::NostrConnect;

fn nostrconnect_uri(app: &Keys, relays: &[&str], perms: Option<&str>) -> NostrConnect {
    let relays: Vec<String> = relays
        .iter()
        .map(|r| format!("relay={}", r.replace(':', "%3A").replace('/', "%2F")))
        .collect();
    let perms = perms
        .map(|p| format!("&perms={}", p.replace(':', "%3A").replace(',', "%2C")))
        .unwrap_or_default();
    let uri = format!(
        "nostrconnect://{}?{}&secret=s3cret{}&name=app",
        app.public_key().to_hex(),
        relays.join("&"),
        perms
    );
    NostrConnect::parse(&uri, 8).unwrap()
}

/// The owner of `user` answers `uri` at `t`, without a policy of its own.
fn answer(e: &Enclave, user: &Keys, uri: NostrConnect, t: u64) -> Result<String, String> {
    admin_at(
        e,
        user,
        &AdminRequest::NostrConnect { uri, policy: None },
        t,
    )
}

/// An enclave without admission control and at most `relays` relays per
/// key, a key imported at `t`, and an app for it.
fn held(relays: usize) -> (Enclave, u64, Keys, Keys) {
    let e = enclave(SignerConfig {
        limits: Limits {
            max_relays_per_key: relays,
            admission: AdmissionLimits::off(),
            ..Limits::default()
        },
        ..SignerConfig::default()
    });
    let t = now();
    let user = imported(&e, t);
    (e, t, user, Keys::generate())
}

#[test]
fn a_nostrconnect_app_without_owner_perms_gets_the_scoped_defaults() {
    let e = enclave(SignerConfig::default());
    let t = now();
    let user = imported(&e, t);
    let pk = user.public_key();
    let app = Keys::generate();
    let uri = nostrconnect_uri(&app, &[e.relay.as_str()], Some("sign_event:1"));
    answer(&e, &user, uri, t).unwrap();
    // What it asked for, at a human pace and within the created_at window.
    for _ in 0..5 {
        call_at(&e, &app, &pk, "sign_event", &[&note(1, t)], t)
            .into_result()
            .unwrap();
    }
    assert!(
        refused(call_at(&e, &app, &pk, "sign_event", &[&note(1, t)], t))
            .starts_with("rate-limited")
    );
    let later = t + 3600;
    let backdated = refused(call_at(&e, &app, &pk, "sign_event", &[&note(1, t)], later));
    assert!(backdated.contains("created_at"), "{backdated}");
    assert!(refused(call_at(
        &e,
        &app,
        &pk,
        "sign_event",
        &[&note(0, later)],
        later
    ))
    .starts_with("forbidden"));
    // A URI that asks for NIP-04 decryption, answered without --perms, is a
    // scoped grant: NIP-04 only from peers it names (issue 20: NIP-04 has
    // no MAC).
    let dm = Keys::generate();
    let uri = nostrconnect_uri(
        &dm,
        &[e.relay.as_str()],
        Some("nip04_decrypt,nip44_decrypt"),
    );
    answer(&e, &user, uri, t).unwrap();
    let peer = Keys::generate();
    let sealed = verifier::rpc::cipher::Conversation::new(
        verifier::rpc::cipher::Scheme::Nip04,
        peer.secret_key(),
        &pk,
    )
    .unwrap()
    .encrypt("hello")
    .unwrap();
    let from = peer.public_key().to_hex();
    let why = refused(call_at(&e, &dm, &pk, "nip04_decrypt", &[&from, &sealed], t));
    assert!(why.contains("NIP-04 has no MAC"), "{why}");
}

#[test]
fn a_refused_nostrconnect_changes_nothing_and_a_revoked_app_takes_its_relays() {
    let (e, t, user, app) = held(2);
    let pk = user.public_key();
    let grant = AdminRequest::Grant {
        app: app.public_key(),
        policy: Policy::new(Perms::parse("sign_event:1").unwrap()),
    };
    admin_at(&e, &user, &grant, t).unwrap();
    // Too many relays: refused, and the app keeps the grant it had.
    let uri = nostrconnect_uri(
        &app,
        &["wss://a.example", "wss://b.example"],
        Some("sign_event:7"),
    );
    let why = answer(&e, &user, uri, t).unwrap_err();
    assert!(why.contains("relays per key"), "{why}");
    call_at(&e, &app, &pk, "sign_event", &[&note(1, t)], t)
        .into_result()
        .unwrap();
    assert!(
        refused(call_at(&e, &app, &pk, "sign_event", &[&note(7, t)], t)).starts_with("forbidden")
    );
    // One relay: the key listens there for this app, and keeps it when the
    // owner imports again keeping the apps.
    let theirs = RelayUrl::parse("wss://a.example").unwrap();
    let uri = nostrconnect_uri(&app, &["wss://a.example"], Some("sign_event:7"));
    answer(&e, &user, uri, t).unwrap();
    let relays = |e: &Enclave| e.signer.store().get(&pk).unwrap().relays().to_vec();
    assert_eq!(relays(&e), vec![e.relay.clone(), theirs.clone()]);
    admin_at(&e, &user, &common::in_process::import(&e.relay, &user), t).unwrap();
    assert_eq!(relays(&e), vec![e.relay.clone(), theirs.clone()]);
    // Revoked, the app takes its relay with it.
    let revoke = AdminRequest::RevokeApp {
        app: app.public_key(),
    };
    admin_at(&e, &user, &revoke, t).unwrap();
    assert_eq!(relays(&e), vec![e.relay.clone()]);
    // And so when it logs out itself.
    let uri = nostrconnect_uri(&app, &["wss://a.example"], Some("sign_event:7"));
    answer(&e, &user, uri, t).unwrap();
    assert_eq!(relays(&e).len(), 2);
    call_at(&e, &app, &pk, "logout", &[], t)
        .into_result()
        .unwrap();
    assert_eq!(relays(&e), vec![e.relay.clone()]);
}

#[test]
fn an_app_keeps_its_relays_when_it_connects_again_or_its_grant_changes() {
    let (e, t, user, app) = held(Limits::default().max_relays_per_key);
    let pk = user.public_key();
    let uri = nostrconnect_uri(&app, &["wss://a.example"], Some("sign_event:1"));
    answer(&e, &user, uri, t).unwrap();
    let relays = |e: &Enclave| e.signer.store().get(&pk).unwrap().relays().len();
    assert_eq!(relays(&e), 2);
    // The owner changes its grant: the relay is still its, and counted.
    let before = e.signer.store().grant_bytes();
    let first = e
        .signer
        .store()
        .get(&pk)
        .unwrap()
        .app(&app.public_key())
        .unwrap()
        .bytes();
    let grant = AdminRequest::Grant {
        app: app.public_key(),
        policy: Policy::new(Perms::parse("sign_event:1,sign_event:7").unwrap()),
    };
    admin_at(&e, &user, &grant, t).unwrap();
    assert_eq!(relays(&e), 2);
    // Counted at its grant and its relay: the memory moved by exactly the
    // difference of the two policies.
    {
        let store = e.signer.store();
        let counted = store
            .get(&pk)
            .unwrap()
            .app(&app.public_key())
            .unwrap()
            .bytes();
        let policy = store
            .get(&pk)
            .unwrap()
            .app(&app.public_key())
            .unwrap()
            .grant()
            .policy()
            .clone();
        assert_eq!(counted, App::bytes_of(&policy) + RELAY_BYTES);
        assert_eq!(store.grant_bytes(), before + counted - first);
    }
    // It connects again with a new bunker secret: still its.
    let url = admin_at(
        &e,
        &user,
        &AdminRequest::CreateBunkerUrl { policy: None },
        t,
    )
    .unwrap();
    let secret = url.split("secret=").nth(1).unwrap().to_owned();
    call_at(&e, &app, &pk, "connect", &[&pk.to_hex(), &secret], t)
        .into_result()
        .unwrap();
    assert_eq!(relays(&e), 2);
    // And it takes it along when it goes.
    call_at(&e, &app, &pk, "logout", &[], t)
        .into_result()
        .unwrap();
    assert_eq!(relays(&e), 1);
    assert!(refused(call_at(&e, &app, &pk, "sign_event", &[&note(1, t)], t)).contains("connect"));
}

//! Scoped grants enforced in process on `Signer`, with an injected clock:
//! each refusal with its message, narrowing by `connect` perms, expiry,
//! use counts and rate limits. `grant_admin.rs` has the owner's side;
//! `parent/tests/grants.rs` does it through the real stack with
//! nostr-tools and NDK.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use common::clocked::{admin_at, call_at, connected, note, refused, scoped};
use common::in_process::{enclave, now};
use enclave::signer::SignerConfig;
use nostr::Keys;
use verifier::grant::{Expiry, Policy, Rates};
use verifier::rpc::admin::AdminRequest;
use verifier::rpc::cipher::Conversation;

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

//! App permissions managed from nsec.app (kind 30078, `t` nsec.app/perm),
//! with events generated here: signed by the user's key, NIP-04 to itself.
//! Every merge branch, a deletion, a `value: "0"`, a refused `connect`, a
//! forged event by another author, a payload naming another npub, how they
//! combine with the owner's admin grants, and an app trying to sign one.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use common::clocked::{admin_at, call_at, note, refused, scoped};
use common::in_process::{enclave, now, Enclave};
use common::nsec::{deleted, deliver, imported, ms, perm_event, perms, set};
use enclave::signer::{Dropped, SignerConfig};
use nostr::{Keys, PublicKey};
use verifier::grant::nsecapp::{KIND_APP_DATA, PERM_TAG};
use verifier::grant::wire::{AppView, Page};
use verifier::rpc::admin::AdminRequest;
use verifier::rpc::cipher::{Conversation, Scheme};

/// `app` signs a note of `kind` dated `at` on `user`'s key at `t`.
fn signs(e: &Enclave, app: &Keys, user: &PublicKey, kind: u16, at: u64, t: u64) {
    call_at(e, app, user, "sign_event", &[&note(kind, at)], t)
        .into_result()
        .unwrap();
}

/// `app` is refused a note of `kind`.
fn forbids(e: &Enclave, app: &Keys, user: &PublicKey, kind: u16, at: u64, t: u64) {
    let r = refused(call_at(e, app, user, "sign_event", &[&note(kind, at)], t));
    assert!(r.starts_with("forbidden"), "{r}");
}

#[test]
fn permissions_from_nsec_app_become_grants_and_merge() {
    let e = enclave(SignerConfig::default());
    let t = now();
    let user = imported(&e, t);
    let (pk, app) = (user.public_key(), Keys::generate());
    let allow = [
        ("connect", "1"),
        ("get_public_key", "1"),
        ("sign_event:1", "1"),
        ("sign_event:0", "0"),
    ];
    set(&e, &user, &app, perms(ms(t - 60), ms(t - 60), &allow), t);
    signs(&e, &app, &pk, 1, t, t);
    // value "0", and anything not named, is refused with an error reply
    forbids(&e, &app, &pk, 0, t, t);
    forbids(&e, &app, &pk, 7, t, t);
    // nsec.app's grants have no rate limit and no created_at window
    for _ in 0..10 {
        signs(&e, &app, &pk, 1, 1, t);
    }
    let page: Page<AppView> = serde_json::from_str(
        &admin_at(&e, &user, &AdminRequest::ListApps { cursor: None }, t).unwrap(),
    )
    .unwrap();
    assert_eq!(page.items[0].source, "nsec.app");
    assert!(page.items[0].claims.as_deref().unwrap().contains("Coracle"));

    // an older or equal event changes nothing
    let wider = [("sign_event:1", "1"), ("sign_event:7", "1")];
    set(&e, &user, &app, perms(ms(t - 60), ms(t - 60), &wider), t);
    forbids(&e, &app, &pk, 7, t, t);
    // an info-only update keeps the permissions
    set(&e, &user, &app, perms(ms(t - 30), ms(t - 60), &wider), t);
    signs(&e, &app, &pk, 1, t, t);
    forbids(&e, &app, &pk, 7, t, t);
    // a newer permission list replaces the whole list
    set(
        &e,
        &user,
        &app,
        perms(ms(t - 30), ms(t - 20), &[("sign_event:7", "1")]),
        t,
    );
    signs(&e, &app, &pk, 7, t, t);
    forbids(&e, &app, &pk, 1, t, t);
    // basic, and connect refused: nothing at all
    set(
        &e,
        &user,
        &app,
        perms(ms(t - 30), ms(t - 10), &[("basic", "1")]),
        t,
    );
    signs(&e, &app, &pk, 30023, t, t);
    set(
        &e,
        &user,
        &app,
        perms(ms(t - 30), ms(t - 5), &[("connect", "0"), ("basic", "1")]),
        t,
    );
    assert!(refused(call_at(&e, &app, &pk, "get_public_key", &[], t)).contains("unauthorized"));
    // What nsec.app's events leave behind is counted with the grants.
    let store = e.signer.store();
    assert!(store.grant_bytes() > 0);
    assert_eq!(store.grant_bytes(), store.get(&pk).unwrap().grant_bytes());
}

#[test]
fn a_deletion_sticks_and_replays_do_not_bring_an_app_back() {
    let e = enclave(SignerConfig::default());
    let t = now();
    let user = imported(&e, t);
    let (pk, app) = (user.public_key(), Keys::generate());
    let grant = perm_event(
        &user,
        &pk,
        &app.public_key(),
        perms(ms(t - 60), ms(t - 60), &[("sign_event:1", "1")]),
    );
    deliver(&e, &grant, t).unwrap();
    call_at(&e, &app, &pk, "ping", &[], t)
        .into_result()
        .unwrap();
    // an older deletion changes nothing; a newer one ends the app
    set(&e, &user, &app, deleted(ms(t - 61)), t);
    call_at(&e, &app, &pk, "ping", &[], t)
        .into_result()
        .unwrap();
    set(&e, &user, &app, deleted(ms(t - 50)), t);
    assert!(refused(call_at(&e, &app, &pk, "ping", &[], t)).contains("unauthorized"));
    // a relay replaying the grant does not bring it back
    assert_eq!(deliver(&e, &grant, t), Err(Dropped::Duplicate));
    // nor does the same grant re-signed (a new id), as a stale relay might hold
    let resigned = perm_event(
        &user,
        &pk,
        &app.public_key(),
        perms(ms(t - 60), ms(t - 60), &[("sign_event:1", "1")]),
    );
    deliver(&e, &resigned, t).unwrap();
    assert!(refused(call_at(&e, &app, &pk, "ping", &[], t)).contains("unauthorized"));
    // a newer grant does
    set(
        &e,
        &user,
        &app,
        perms(ms(t - 40), ms(t - 40), &[("sign_event:1", "1")]),
        t,
    );
    call_at(&e, &app, &pk, "ping", &[], t)
        .into_result()
        .unwrap();
}

#[test]
fn only_the_keys_own_events_about_itself_count() {
    let e = enclave(SignerConfig::default());
    let t = now();
    let user = imported(&e, t);
    let (pk, app) = (user.public_key(), Keys::generate());
    let body = perms(ms(t), ms(t), &[("sign_event:0", "1")]);
    // by a stranger
    let stranger = Keys::generate();
    assert_eq!(
        deliver(
            &e,
            &perm_event(&stranger, &pk, &app.public_key(), body.clone()),
            t
        ),
        Err(Dropped::NotOurs)
    );
    // by another held key, naming this key (the original trusted it)
    let other = imported(&e, t);
    assert_eq!(
        deliver(
            &e,
            &perm_event(&other, &pk, &app.public_key(), body.clone()),
            t
        ),
        Err(Dropped::BadPermissions)
    );
    // with a tampered signature
    let mut forged = perm_event(&user, &pk, &app.public_key(), body.clone());
    forged.content = Conversation::new(Scheme::Nip04, user.secret_key(), &pk)
        .unwrap()
        .encrypt("{}")
        .unwrap();
    assert_eq!(deliver(&e, &forged, t), Err(Dropped::Signature));
    assert!(refused(call_at(&e, &app, &pk, "ping", &[], t)).contains("unauthorized"));
    assert!(!e.allows(&other.public_key(), &app.public_key()));
}

#[test]
fn the_newest_change_wins_between_nsec_app_and_the_admin_api() {
    let e = enclave(SignerConfig::default());
    let t = now();
    let user = imported(&e, t);
    let (pk, app) = (user.public_key(), Keys::generate());
    // nsec.app granted kind 1 a minute ago; the owner grants kind 7 now
    set(
        &e,
        &user,
        &app,
        perms(ms(t - 60), ms(t - 60), &[("sign_event:1", "1")]),
        t,
    );
    let grant = AdminRequest::Grant {
        app: app.public_key(),
        policy: scoped("sign_event:7"),
    };
    assert_eq!(admin_at(&e, &user, &grant, t), Ok("ok".into()));
    signs(&e, &app, &pk, 7, t, t);
    // an nsec.app change older than the owner's grant does not undo it
    set(
        &e,
        &user,
        &app,
        perms(ms(t - 60), ms(t - 30), &[("sign_event:0", "1")]),
        t,
    );
    signs(&e, &app, &pk, 7, t, t);
    // a newer one replaces it
    set(
        &e,
        &user,
        &app,
        perms(ms(t - 60), ms(t + 1), &[("sign_event:0", "1")]),
        t + 2,
    );
    signs(&e, &app, &pk, 0, t + 2, t + 2);
    assert!(refused(call_at(
        &e,
        &app,
        &pk,
        "sign_event",
        &[&note(7, t + 2)],
        t + 2
    ))
    .starts_with("forbidden"));
}

#[test]
fn no_app_may_sign_a_permission_event() {
    let e = enclave(SignerConfig::default());
    let (user, app) = e.user_with_app();
    let pk = user.public_key();
    let t = now();
    for tags in [
        serde_json::json!([["d", "x"], ["t", PERM_TAG]]),
        serde_json::json!([["t", "other", PERM_TAG]]),
    ] {
        let template = serde_json::json!({"kind": KIND_APP_DATA, "content": "x", "tags": tags, "created_at": t}).to_string();
        let r = refused(call_at(&e, &app, &pk, "sign_event", &[&template], t));
        assert!(r.contains("nsec.app permission event"), "{r}");
    }
    // other kind 30078 events are signed as usual
    let template = serde_json::json!({"kind": KIND_APP_DATA, "content": "x", "tags": [["d", "settings"]], "created_at": t}).to_string();
    call_at(&e, &app, &pk, "sign_event", &[&template], t)
        .into_result()
        .unwrap();
}

#[test]
fn an_owners_revoke_is_not_undone_by_an_older_nsec_app_event() {
    let e = enclave(SignerConfig::default());
    let t = now();
    let user = imported(&e, t);
    let (pk, app) = (user.public_key(), Keys::generate());
    let grant = AdminRequest::Grant {
        app: app.public_key(),
        policy: scoped("sign_event:1"),
    };
    assert_eq!(admin_at(&e, &user, &grant, t), Ok("ok".into()));
    let revoke = AdminRequest::RevokeApp {
        app: app.public_key(),
    };
    assert_eq!(admin_at(&e, &user, &revoke, t), Ok("ok".into()));
    // An nsec.app grant from before the revoke (first seen now) stays undone,
    // and so does one from the same second: the owner wins a tie.
    for at in [ms(t - 30), ms(t) + 500] {
        set(&e, &user, &app, perms(at, at, &[("sign_event:1", "1")]), t);
        assert!(refused(call_at(&e, &app, &pk, "ping", &[], t)).contains("unauthorized"));
    }
    // A later one is the newest change.
    set(
        &e,
        &user,
        &app,
        perms(ms(t + 5), ms(t + 5), &[("sign_event:1", "1")]),
        t + 6,
    );
    call_at(&e, &app, &pk, "ping", &[], t + 6)
        .into_result()
        .unwrap();
}

#[test]
fn a_deletion_seen_before_the_grant_still_wins() {
    let e = enclave(SignerConfig::default());
    let t = now();
    let user = imported(&e, t);
    let (pk, app) = (user.public_key(), Keys::generate());
    set(&e, &user, &app, deleted(ms(t - 10)), t);
    let older = perm_event(
        &user,
        &pk,
        &app.public_key(),
        perms(ms(t - 60), ms(t - 60), &[("sign_event:1", "1")]),
    );
    deliver(&e, &older, t).unwrap();
    assert!(refused(call_at(&e, &app, &pk, "ping", &[], t)).contains("unauthorized"));
    // A replay of an event applied lately is not even decrypted again.
    assert_eq!(deliver(&e, &older, t), Err(Dropped::Duplicate));
}

#[test]
fn permissions_that_do_not_fit_leave_nothing_in_force() {
    use enclave::custody::Limits;
    let e = enclave(SignerConfig {
        limits: Limits {
            max_apps_per_key: 1,
            ..Limits::default()
        },
        ..SignerConfig::default()
    });
    let t = now();
    let user = imported(&e, t);
    let pk = user.public_key();
    let (first, second) = (Keys::generate(), Keys::generate());
    set(
        &e,
        &user,
        &first,
        perms(ms(t - 60), ms(t - 60), &[("sign_event:1", "1")]),
        t,
    );
    call_at(&e, &first, &pk, "ping", &[], t)
        .into_result()
        .unwrap();
    // The key remembers nsec.app's word on as many apps as it may have:
    // a newer app takes the place of the oldest, whose grant goes with
    // what the key remembered of it (it could not be undone in order any
    // more), never leaving two in force.
    set(
        &e,
        &user,
        &second,
        perms(ms(t - 50), ms(t - 50), &[("sign_event:1", "1")]),
        t,
    );
    call_at(&e, &second, &pk, "ping", &[], t)
        .into_result()
        .unwrap();
    assert!(refused(call_at(&e, &first, &pk, "ping", &[], t)).contains("unauthorized"));
    // The slot held by the owner's own grant is not taken by nsec.app.
    let owner_app = Keys::generate();
    let revoke = AdminRequest::RevokeApp {
        app: second.public_key(),
    };
    admin_at(&e, &user, &revoke, t).unwrap();
    let grant = AdminRequest::Grant {
        app: owner_app.public_key(),
        policy: scoped("sign_event:1"),
    };
    admin_at(&e, &user, &grant, t).unwrap();
    let third = Keys::generate();
    set(
        &e,
        &user,
        &third,
        perms(ms(t - 40), ms(t - 40), &[("sign_event:1", "1")]),
        t,
    );
    assert!(refused(call_at(&e, &third, &pk, "ping", &[], t)).contains("unauthorized"));
    call_at(&e, &owner_app, &pk, "ping", &[], t)
        .into_result()
        .unwrap();
}

#[test]
fn perms_an_app_made_up_grant_nothing() {
    let e = enclave(SignerConfig::default());
    let t = now();
    let user = imported(&e, t);
    let (pk, app) = (user.public_key(), Keys::generate());
    let invented = [
        ("sign_event:", "1"),
        ("sign_event:1-65535", "1"),
        ("sign_event:1,nip04_decrypt", "1"),
    ];
    set(&e, &user, &app, perms(ms(t - 60), ms(t - 60), &invented), t);
    for kind in [0, 1, 7, 27235] {
        forbids(&e, &app, &pk, kind, t, t);
    }
    let peer = Keys::generate().public_key().to_hex();
    assert!(refused(call_at(
        &e,
        &app,
        &pk,
        "nip04_decrypt",
        &[&peer, "x?iv=y"],
        t
    ))
    .starts_with("forbidden"));
}

#[test]
fn a_permission_event_cannot_make_the_service_key_or_the_users_own_an_app() {
    let e = enclave(SignerConfig::default());
    let t = now();
    let user = imported(&e, t);
    let body = perms(ms(t), ms(t), &[("sign_event:1", "1")]);
    for app in [e.service, user.public_key()] {
        let event = perm_event(&user, &user.public_key(), &app, body.clone());
        assert_eq!(deliver(&e, &event, t), Err(Dropped::OwnKeyAsApp));
        assert!(!e.allows(&user.public_key(), &app));
    }
}

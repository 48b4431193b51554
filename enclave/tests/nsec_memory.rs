//! What a key's holder can make the enclave keep with nsec.app permission
//! events and free admin requests, and what those grants are worth to the
//! rules that let keys go, in process on `Signer`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use common::clocked::{admin_at, call_at, note, refused};
use common::in_process::{enclave, import, now};
use common::nsec::{deleted, deliver, imported, ms, perm_event, perms, set};
use enclave::custody::Limits;
use enclave::signer::SignerConfig;
use nostr::Keys;
use verifier::rpc::admin::{AdminRequest, KeptApps};

/// The review's loop: nsec.app deletes a made-up app (a free event), the
/// owner revokes it (a free request), again and again. Nothing the owner
/// pays for grows.
#[test]
fn revoking_apps_that_have_no_grant_keeps_nothing() {
    let e = enclave(SignerConfig::default());
    let t = now();
    let user = imported(&e, t);
    for _ in 0..200 {
        let app = Keys::generate();
        set(&e, &user, &app, deleted(ms(t)), t);
        let revoke = AdminRequest::RevokeApp {
            app: app.public_key(),
        };
        assert!(admin_at(&e, &user, &revoke, t)
            .unwrap_err()
            .contains("not allowed"));
    }
    let store = e.signer.store();
    let memory = store.grant_memory();
    assert_eq!(memory.owner, 0, "{memory:?}");
    // nsec.app's states: at most one per app slot.
    let limits = Limits::default();
    assert!(memory.event <= limits.max_apps_per_key * 128, "{memory:?}");
}

/// The second review's loop: nsec.app grants a made-up app (a free
/// event), then the app logs out or the owner revokes it (free requests),
/// again and again. The revoke is remembered in nsec.app's state of the
/// app, which its event paid for, never in the owner's memory; and an
/// older event still cannot give the app back.
#[test]
fn ending_grants_nsec_app_gave_keeps_nothing_in_the_owners_memory() {
    let e = enclave(SignerConfig::default());
    let t = now();
    let user = imported(&e, t);
    let pk = user.public_key();
    let allow = [("sign_event:1", "1")];
    for n in 0..200 {
        // A second a round, as time goes.
        let now = t + n;
        let app = Keys::generate();
        set(
            &e,
            &user,
            &app,
            perms(ms(now) - 10, ms(now) - 10, &allow),
            now,
        );
        if n % 2 == 0 {
            call_at(&e, &app, &pk, "logout", &[], now)
                .into_result()
                .unwrap();
        } else {
            let revoke = AdminRequest::RevokeApp {
                app: app.public_key(),
            };
            admin_at(&e, &user, &revoke, now).unwrap();
        }
        // An nsec.app event from before the revoke, seen late: the
        // owner's revoke stands.
        set(
            &e,
            &user,
            &app,
            perms(ms(now) - 5, ms(now) - 5, &allow),
            now,
        );
        let r = call_at(&e, &app, &pk, "sign_event", &[&note(1, now)], now);
        assert!(refused(r).contains("connect"));
    }
    let memory = e.signer.store().grant_memory();
    assert_eq!(memory.owner, 0, "{memory:?}");
}

/// nsec.app's grants cost nothing, so they keep a key only while it is
/// used: a stranger's keys with one each do not hold their slots for good.
#[test]
fn nsec_app_grants_keep_a_key_only_while_it_is_used() {
    let e = enclave(SignerConfig::default());
    let t = now();
    let idle_ttl = Limits::default().idle_ttl;
    let (dormant, busy) = (imported(&e, t), imported(&e, t));
    let (dormant_app, busy_app) = (Keys::generate(), Keys::generate());
    let allow = [("sign_event:1", "1")];
    set(&e, &dormant, &dormant_app, perms(ms(t), ms(t), &allow), t);
    set(&e, &busy, &busy_app, perms(ms(t), ms(t), &allow), t);
    // One app signs now and then: that keeps its key.
    let mid = t + idle_ttl / 2;
    call_at(
        &e,
        &busy_app,
        &busy.public_key(),
        "sign_event",
        &[&note(1, mid)],
        mid,
    )
    .into_result()
    .unwrap();
    assert!(e.signer.expire(t + idle_ttl));
    let store = e.signer.store();
    assert!(!store.holds(&dormant.public_key()));
    assert!(store.holds(&busy.public_key()));
}

/// A key deleted (by its owner, by idleness or displacement) forgot its
/// owner's revokes; imported again with "drop", nsec.app's stored events
/// from before do not bring those apps back.
#[test]
fn an_import_that_drops_apps_is_not_undone_by_stored_permission_events() {
    let e = enclave(SignerConfig::default());
    let t = now();
    let user = imported(&e, t - 100);
    let app = Keys::generate();
    let allow = [("sign_event:1", "1")];
    let stored = perm_event(
        &user,
        &user.public_key(),
        &app.public_key(),
        perms(ms(t - 90), ms(t - 90), &allow),
    );
    deliver(&e, &stored, t - 90).unwrap();
    let pk = user.public_key();
    assert!(
        call_at(&e, &app, &pk, "sign_event", &[&note(1, t - 80)], t - 80)
            .into_result()
            .is_ok()
    );
    let revoke = AdminRequest::RevokeApp {
        app: app.public_key(),
    };
    admin_at(&e, &user, &revoke, t - 70).unwrap();
    admin_at(&e, &user, &AdminRequest::DeleteKey, t - 60).unwrap();
    let drop = AdminRequest::ImportKey {
        keys: user.clone(),
        relays: vec![e.relay.clone()],
        apps: KeptApps::Drop,
    };
    admin_at(&e, &user, &drop, t).unwrap();
    // The relay hands over the stored event again, as it does after an import.
    let again = perm_event(
        &user,
        &user.public_key(),
        &app.public_key(),
        perms(ms(t - 90), ms(t - 90), &allow),
    );
    let _ = deliver(&e, &again, t);
    assert!(refused(call_at(&e, &app, &pk, "sign_event", &[&note(1, t)], t)).contains("connect"));
    // A newer change in nsec.app is read as usual.
    set(
        &e,
        &user,
        &app,
        perms(ms(t + 10), ms(t + 10), &allow),
        t + 10,
    );
    assert!(
        call_at(&e, &app, &pk, "sign_event", &[&note(1, t + 10)], t + 10)
            .into_result()
            .is_ok()
    );
    // Without "drop", a fresh import reads the stored events.
    let other = Keys::generate();
    admin_at(&e, &other, &import(&e.relay, &other), t).unwrap();
    set(&e, &other, &app, perms(ms(t - 90), ms(t - 90), &allow), t);
    assert!(call_at(
        &e,
        &app,
        &other.public_key(),
        "sign_event",
        &[&note(1, t)],
        t
    )
    .into_result()
    .is_ok());
}

/// The third review's sequence: the owner revokes an app nsec.app granted,
/// the app's state is later forgotten (the key remembers 64 apps), and an
/// nsec.app event from before the revoke arrives: the revoke stands.
#[test]
fn a_revoke_outlives_the_state_it_was_kept_in() {
    let e = enclave(SignerConfig::default());
    let t = now();
    let user = imported(&e, t);
    let pk = user.public_key();
    let allow = [("sign_event:1", "1")];
    let app = Keys::generate();
    set(
        &e,
        &user,
        &app,
        perms(ms(t - 100), ms(t - 100), &allow),
        t - 100,
    );
    let revoke = AdminRequest::RevokeApp {
        app: app.public_key(),
    };
    admin_at(&e, &user, &revoke, t - 50).unwrap();
    // 64 other apps, newer, deleted in nsec.app (no grant, so the app
    // slots stay free): the revoked app's state is the oldest, forgotten.
    for n in 0..64 {
        set(
            &e,
            &user,
            &Keys::generate(),
            deleted(ms(t - 40) + n),
            t - 40,
        );
    }
    // nsec.app's permissions from before the revoke, its info from after.
    set(&e, &user, &app, perms(ms(t - 20), ms(t - 90), &allow), t);
    let r = call_at(&e, &app, &pk, "sign_event", &[&note(1, t)], t);
    assert!(refused(r).contains("connect"));
}

/// Only the key's owner and its apps keep it in use: a stranger's requests
/// to it (answered, as any request is) do not keep a dormant key.
#[test]
fn a_strangers_requests_do_not_keep_a_key_in_use() {
    let e = enclave(SignerConfig::default());
    let t = now();
    let idle_ttl = Limits::default().idle_ttl;
    let user = imported(&e, t);
    let pk = user.public_key();
    let stranger = Keys::generate();
    let mid = t + idle_ttl / 2;
    let r = call_at(&e, &stranger, &pk, "sign_event", &[&note(1, mid)], mid);
    assert!(refused(r).contains("connect"));
    assert!(e.signer.expire(t + idle_ttl));
    assert!(!e.signer.store().holds(&pk));
}

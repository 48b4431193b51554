//! What a stranger with unlimited fresh keys can make the enclave keep,
//! performed in process on `Signer` with small limits (the `enclave run`
//! flags of the same names): nsec.app permission events cannot fill the
//! memory owners' grants need, key slots are not held for good, and one
//! key's decision log survives other keys' floods.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use common::clocked::{admin_at, call_at, note};
use common::in_process::{enclave, now, Enclave};
use common::nsec::{imported, ms, perms, set};
use enclave::custody::{AdmissionLimits, Limits, LogLimits};
use enclave::signer::SignerConfig;
use nostr::{Keys, RelayUrl};
use verifier::event::KIND_ADMIN;
use verifier::grant::{Perms, Policy};
use verifier::rpc::admin::{AdminRequest, KeptApps};
use verifier::rpc::admission::parse_pow_required;
use verifier::rpc::cipher::Scheme;
use verifier::rpc::seal_request_with_pow;
use verifier::rpc::status::KeyStatus;

fn template(kind: u16) -> String {
    serde_json::json!({
        "kind": kind, "content": "x", "tags": [],
        "created_at": now(),
    })
    .to_string()
}

/// `user` held with `app` allowed `perms`.
fn scoped(e: &Enclave, perms: &str) -> (Keys, Keys) {
    let (user, app) = (Keys::generate(), Keys::generate());
    let connect = AdminRequest::ConnectKey {
        keys: user.clone(),
        app: app.public_key(),
        relays: vec![e.relay.clone()],
        policy: Some(Policy::new(Perms::parse(perms).unwrap())),
    };
    assert_eq!(e.admin(&user, &connect), Ok("ok".into()));
    (user, app)
}

#[test]
fn a_strangers_keys_cannot_drain_another_keys_decision_log() {
    // --log-total 60 --log-per-key 50
    let e = enclave(SignerConfig {
        limits: Limits {
            log: LogLimits {
                total: 60,
                per_key: 50,
                ..LogLimits::default()
            },
            ..Limits::default()
        },
        ..SignerConfig::default()
    });
    let (victim, agent) = scoped(&e, "sign_event:1-2");
    let pk = victim.public_key();
    for kind in [1, 0, 2, 3, 4] {
        let _ = e.call(&agent, &pk, "sign_event", &[&template(kind)]);
    }
    let log = |user: &Keys| {
        let page = e
            .admin(user, &AdminRequest::GetLog { cursor: None })
            .unwrap();
        let page: serde_json::Value = serde_json::from_str(&page).unwrap();
        page["items"].as_array().unwrap().clone()
    };
    assert_eq!(log(&victim).len(), 5);
    // The agent's operator imports 36 keys of their own and logs twice on each.
    for _ in 0..36 {
        let (user, app) = scoped(&e, "sign_event:1");
        let upk = user.public_key();
        assert!(e
            .call(&app, &upk, "sign_event", &[&template(1)])
            .into_result()
            .is_ok());
        assert!(e
            .call(&app, &upk, "sign_event", &[&template(7)])
            .into_result()
            .is_err());
    }
    let kept = log(&victim);
    assert_eq!(kept.len(), 5, "{kept:?}");
    let refused = kept.iter().filter(|e| e["decision"] == "refused").count();
    assert_eq!(refused, 3);
}

/// `app` connects to `user`'s key with a fresh bunker URL of the owner's.
fn mint_and_connect(e: &Enclave, user: &Keys, t: u64) -> Result<Keys, String> {
    let url = admin_at(e, user, &AdminRequest::CreateBunkerUrl { policy: None }, t)?;
    let secret = url.split("secret=").nth(1).unwrap().to_owned();
    let app = Keys::generate();
    let pk = user.public_key();
    call_at(e, &app, &pk, "connect", &[&pk.to_hex(), &secret], t).into_result()?;
    call_at(e, &app, &pk, "sign_event", &[&note(1, t)], t).into_result()?;
    Ok(app)
}

/// The review's attack on nsec.app: a stranger imports keys of their own and
/// publishes permission events on each, naming fresh apps with 64 kinds,
/// until grant memory is full.
#[test]
fn a_strangers_permission_events_leave_owners_room_for_their_grants() {
    // --max-grant-mib 1
    let e = enclave(SignerConfig {
        limits: Limits {
            max_grant_bytes: 1 << 20,
            ..Limits::default()
        },
        ..SignerConfig::default()
    });
    let t = now();
    let owner = imported(&e, t);
    let opk = owner.public_key();
    let early = Keys::generate();
    set(
        &e,
        &owner,
        &early,
        perms(ms(t - 60), ms(t - 60), &[("sign_event:1", "1")]),
        t,
    );
    // 64 kinds apart, so none merge into a range: the most a grant holds.
    let kinds: Vec<String> = (0..64).map(|k| format!("sign_event:{}", 2 * k)).collect();
    let wide: Vec<(&str, &str)> = kinds.iter().map(|k| (k.as_str(), "1")).collect();
    for _ in 0..10 {
        let stranger = imported(&e, t);
        for _ in 0..64 {
            set(
                &e,
                &stranger,
                &Keys::generate(),
                perms(ms(t), ms(t), &wide),
                t,
            );
        }
    }
    {
        let store = e.signer.store();
        let memory = store.grant_memory();
        assert!(memory.event <= 512 << 10, "{memory:?}");
        assert!(memory.total() <= 1 << 20, "{memory:?}");
    }
    // The owner mints a bunker URL and an app connects and signs.
    mint_and_connect(&e, &owner, t).unwrap();
    // The owner's nsec.app app still signs, and a new one it allows in
    // nsec.app now takes room from the strangers' keys (each holds more
    // than its share).
    call_at(&e, &early, &opk, "sign_event", &[&note(1, t)], t)
        .into_result()
        .unwrap();
    let late = Keys::generate();
    set(&e, &owner, &late, perms(ms(t), ms(t), &wide), t);
    call_at(&e, &late, &opk, "sign_event", &[&note(2, t)], t)
        .into_result()
        .unwrap();
    let memory = e.signer.store().grant_memory();
    assert!(memory.event <= 512 << 10, "{memory:?}");
}

fn displacing() -> SignerConfig {
    SignerConfig {
        limits: Limits {
            max_keys: 3,
            admission: AdmissionLimits {
                pow_bits: 4,
                max_bits: 10,
                ..AdmissionLimits::default()
            },
            ..Limits::default()
        },
        ..SignerConfig::default()
    }
}

/// `user`'s import at `t` with `bits` of proof of work.
fn import_paid(e: &Enclave, user: &Keys, bits: u8, t: u64) -> Result<String, String> {
    let wire = AdminRequest::ImportKey {
        keys: user.clone(),
        relays: vec![e.relay.clone()],
        apps: KeptApps::Keep,
    }
    .to_request();
    let mut event =
        seal_request_with_pow(user, &e.service, KIND_ADMIN, &wire, Scheme::Nip44, bits).unwrap();
    if event.created_at.as_secs() != t {
        // Dated as the test's clock says, mined again.
        event = nostr::EventBuilder::new(event.kind, event.content.clone())
            .tags(
                event
                    .tags
                    .iter()
                    .filter(|t| t.kind() != nostr::TagKind::Nonce)
                    .cloned(),
            )
            .custom_created_at(nostr::Timestamp::from(t))
            .pow(bits)
            .sign_with_keys(user)
            .unwrap();
    }
    e.signer
        .try_handle(&event, &e.relay, t)
        .map_err(|d| format!("{d:?}"))?
        .reply
        .map(|r| verifier::rpc::open_response(user, &r.event).unwrap())
        .unwrap()
        .into_result()
}

fn status(e: &Enclave, user: &Keys, t: u64) -> KeyStatus {
    KeyStatus::from_json(&admin_at(e, user, &AdminRequest::KeyStatus, t).unwrap()).unwrap()
}

#[test]
fn a_full_enclave_lets_a_paying_newcomer_take_the_slot_of_a_key_that_serves_no_one() {
    let e = enclave(displacing());
    let t = now();
    // A stranger fills every slot (paying as the enclave fills); one of
    // the keys serves an app.
    let paid = |t: u64| {
        let user = Keys::generate();
        assert_eq!(import_paid(&e, &user, 10, t), Ok("ok".into()));
        user
    };
    let (busy, _app) = {
        let user = paid(t);
        let app = Keys::generate();
        let grant = AdminRequest::Grant {
            app: app.public_key(),
            policy: Policy::full(),
        };
        admin_at(&e, &user, &grant, t).unwrap();
        (user, app)
    };
    let idle_a = paid(t);
    let idle_b = paid(t);
    // The newest keys are never displaced (their owners may be about to
    // connect an app): full.
    let newcomer = Keys::generate();
    let why = admin_at(
        &e,
        &newcomer,
        &common::in_process::import(&e.relay, &newcomer),
        t + 60,
    )
    .unwrap_err();
    assert!(why.contains("maximum of 3 keys"), "{why}");
    // Later, the newcomer is asked the price of the last slot, pays it and
    // takes the slot of the key heard from least lately.
    let later = t + 3600;
    admin_at(&e, &idle_a, &AdminRequest::Ping, later - 10).unwrap();
    // The minute's sweep sees which keys could go.
    assert!(!e.signer.expire(later - 5));
    let why = admin_at(
        &e,
        &newcomer,
        &common::in_process::import(&e.relay, &newcomer),
        later,
    )
    .unwrap_err();
    assert_eq!(parse_pow_required(&why), Some(10), "{why}");
    assert_eq!(import_paid(&e, &newcomer, 10, later), Ok("ok".into()));
    let store = e.signer.store();
    assert!(store.holds(&newcomer.public_key()));
    assert!(
        !store.holds(&idle_b.public_key()),
        "the least lately used went"
    );
    assert!(store.holds(&idle_a.public_key()));
    assert!(
        store.holds(&busy.public_key()),
        "a key that serves an app stays"
    );
}

#[test]
fn a_key_that_serves_no_one_is_let_go_after_its_idle_days_and_its_owner_can_see_when() {
    let e = enclave(SignerConfig::default());
    let t = now();
    let idle_ttl = Limits::default().idle_ttl;
    let user = imported(&e, t);
    let seen = status(&e, &user, t);
    assert!(seen.held && !seen.test_key);
    assert_eq!(seen.deleted_after, Some(t + idle_ttl));
    assert!(
        seen.describe().contains("deleted after"),
        "{}",
        seen.describe()
    );
    // Just imported, it may not be displaced yet; ten minutes on, it may.
    assert!(!seen.displaceable);
    assert!(status(&e, &user, t + 601).displaceable);
    // Without admission control nobody pays, so nobody displaces.
    let off = enclave(SignerConfig {
        limits: Limits {
            admission: AdmissionLimits::off(),
            ..Limits::default()
        },
        ..SignerConfig::default()
    });
    let other = imported(&off, t);
    assert!(!status(&off, &other, t + 601).displaceable);
    // Any admin request starts the time again.
    let later = t + idle_ttl / 2;
    assert_eq!(
        status(&e, &user, later).deleted_after,
        Some(later + idle_ttl)
    );
    assert!(!e.signer.expire(t + idle_ttl + 1));
    assert!(e.signer.store().holds(&user.public_key()));
    // A key with an app is kept however long its owner is silent.
    let served = imported(&e, t);
    let grant = AdminRequest::Grant {
        app: Keys::generate().public_key(),
        policy: Policy::full(),
    };
    admin_at(&e, &served, &grant, t).unwrap();
    assert_eq!(status(&e, &served, t).deleted_after, None);
    assert!(e.signer.expire(later + idle_ttl));
    let store = e.signer.store();
    assert!(!store.holds(&user.public_key()));
    assert!(store.holds(&served.public_key()));
}

#[test]
fn a_newcomer_can_always_listen_on_the_admin_relay() {
    let e = enclave(SignerConfig {
        limits: Limits {
            max_relays: 2,
            admission: AdmissionLimits::off(),
            ..Limits::default()
        },
        ..SignerConfig::default()
    });
    let t = now();
    for n in 0..2 {
        let stranger = Keys::generate();
        let import = AdminRequest::ImportKey {
            keys: stranger.clone(),
            relays: vec![RelayUrl::parse(&format!("wss://junk{n}.example")).unwrap()],
            apps: KeptApps::Keep,
        };
        admin_at(&e, &stranger, &import, t).unwrap();
    }
    let newcomer = Keys::generate();
    let elsewhere = AdminRequest::ImportKey {
        keys: newcomer.clone(),
        relays: vec![RelayUrl::parse("wss://mine.example").unwrap()],
        apps: KeptApps::Keep,
    };
    let why = admin_at(&e, &newcomer, &elsewhere, t).unwrap_err();
    assert!(why.contains("admin relay"), "{why}");
    assert_eq!(
        admin_at(
            &e,
            &newcomer,
            &common::in_process::import(&e.relay, &newcomer),
            t
        ),
        Ok("ok".into())
    );
}

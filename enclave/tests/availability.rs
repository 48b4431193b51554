//! What a stranger with unlimited fresh keys can make the enclave keep,
//! performed in process on `Signer` with small limits (the `enclave run`
//! flags of the same names): nsec.app permission events cannot fill the
//! memory owners' grants need, key slots are not held for good, and one
//! key's decision log survives other keys' floods.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use common::in_process::{enclave, Enclave};
use enclave::custody::{Limits, LogLimits};
use enclave::signer::SignerConfig;
use nostr::Keys;
use verifier::grant::{Perms, Policy};
use verifier::rpc::admin::AdminRequest;

fn template(kind: u16) -> String {
    serde_json::json!({
        "kind": kind, "content": "x", "tags": [],
        "created_at": common::in_process::now(),
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

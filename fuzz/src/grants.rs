//! Scoped grants: perms strings, policies with their decisions, and
//! nsec.app's permission payloads.

use nostr::PublicKey;
use verifier::grant::duration::parse_duration;
use verifier::grant::nsecapp::{self, d_tag, merge, parse_payload, to_policy};
use verifier::grant::{Action, Grant, Method, Perms, Policy, Rates};

use crate::support::{fixed_keys, text};

/// Actions to ask a grant about, chosen by the input's bytes.
fn actions(bytes: &[u8], peer: PublicKey) -> Vec<Action> {
    bytes
        .chunks(3)
        .map(|c| {
            let method = Method::ALL[usize::from(c[0]) % Method::ALL.len()];
            let kind = u16::from_be_bytes([
                c.get(1).copied().unwrap_or(0),
                c.get(2).copied().unwrap_or(1),
            ]);
            match method {
                Method::SignEvent => {
                    Action::sign(kind, Some(1_700_000_000 + u64::from(kind % 2000)))
                }
                m if m.has_peer() => Action::crypto(m, peer),
                m => Action::method(m),
            }
        })
        .take(64)
        .collect()
}

/// A perms string (first line) and what an app asks for (second line):
/// what parses prints and parses to the same, and narrowing never allows
/// what the grant did not.
pub fn perms(data: &[u8]) {
    let Some(t) = text(data) else {
        return;
    };
    let mut lines = t.splitn(3, '\n');
    let granted = lines.next().unwrap_or_default();
    let asked = lines.next().unwrap_or_default();
    let probe = lines.next().unwrap_or_default().as_bytes();
    let Ok(perms) = Perms::parse(granted) else {
        let _ = Perms::parse_requested(granted);
        return;
    };
    match Perms::parse(&perms.to_string()) {
        Ok(again) => assert_eq!(again, perms, "perms round trip"),
        Err(e) => panic!("printed perms {perms} do not parse: {e}"),
    }
    let requested = Perms::parse_requested(asked);
    let narrowed = perms.narrow(requested.as_ref());
    let peer = fixed_keys(4).public_key();
    for a in actions(probe, peer) {
        let (m, k, p) = (a.method, a.kind, a.peer.as_ref());
        if narrowed.allows(m, k, p) {
            assert!(
                perms.allows(m, k, p),
                "narrowing to {asked:?} widened {perms}"
            );
            if let Some(req) = &requested {
                assert!(
                    req.allows(m, k, p),
                    "narrowing allowed what {req} did not ask for"
                );
            }
        }
    }
}

/// A policy as JSON (first line), then actions decided one after another
/// (the rest, as bytes): the policy prints and parses to the same, and no
/// decision allows more than its perms, its uses, or its rate.
pub fn policy(data: &[u8]) {
    let split = data.iter().position(|b| *b == b'\n').unwrap_or(data.len());
    let (json, probe) = data.split_at(split);
    let Some(json) = text(json) else {
        return;
    };
    let _ = Rates::parse(json);
    let _ = parse_duration(json);
    let Ok(policy) = Policy::from_json(json) else {
        return;
    };
    match Policy::from_json(&policy.to_json()) {
        Ok(again) => assert_eq!(again.to_json(), policy.to_json(), "policy round trip"),
        Err(e) => panic!("a printed policy does not parse: {e}"),
    }
    let _ = policy.check_at(1_700_000_000);
    let _ = policy.describe(1_700_000_000);
    let mut grant = Grant::new(&policy, None, 1_700_000_000);
    let peer = fixed_keys(4).public_key();
    let mut now = 1_700_000_000u64;
    let mut allowed_counted = 0u64;
    for (i, a) in actions(probe, peer).into_iter().enumerate() {
        now += u64::from(probe.get(i).copied().unwrap_or(0) % 8);
        let decision = grant.decide(&a, now);
        if decision.is_allowed() {
            assert!(
                a.method == Method::Logout
                    || policy.perms.allows(a.method, a.kind, a.peer.as_ref()),
                "allowed outside the perms"
            );
            if a.method.is_counted() {
                allowed_counted += 1;
            }
        }
        let _ = decision;
    }
    assert_eq!(grant.used(), allowed_counted, "uses counted wrongly");
    if let Some(uses) = policy.uses {
        assert!(grant.used() <= uses, "more uses than granted");
    }
}

/// nsec.app's decrypted permission payloads, for a fixed user and app:
/// parsed with and without the `d` tag, merged in order, and turned into
/// a policy.
pub fn nsec_app_payload(data: &[u8]) {
    let Some(t) = text(data) else {
        return;
    };
    let user = fixed_keys(0).public_key();
    let app = fixed_keys(5).public_key();
    let d = d_tag(&user, &app);
    let mut state: Option<nsecapp::AppState> = None;
    for payload in t.split('\0').take(8) {
        let _ = parse_payload(payload, &user, None);
        if let Ok(p) = parse_payload(payload, &user, Some(&d)) {
            merge(&mut state, p);
            if let Some(s) = &state {
                if let Some(policy) = to_policy(s) {
                    assert!(
                        Policy::from_json(&policy.to_json()).is_ok(),
                        "nsec.app policy does not print"
                    );
                }
            }
        }
    }
}

#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use nostr::Keys;
use proptest::prelude::*;

use super::*;

fn scoped(perms: &str) -> Policy {
    Policy::new(Perms::parse(perms).unwrap())
}

const NOW: u64 = 1_800_000_000;

#[test]
fn refusals_name_method_kind_and_rule() {
    let mut g = Grant::new(&scoped("sign_event:1,sign_event:1111"), None, NOW);
    assert!(g.decide(&Action::sign(1, Some(NOW)), NOW).is_allowed());
    let zero = Action::sign(0, Some(NOW));
    let Decision::Refused(r) = g.decide(&zero, NOW) else {
        panic!("kind 0 allowed")
    };
    assert_eq!(r, Refusal::NotGranted);
    assert_eq!(
        r.message(&zero),
        "forbidden: sign_event of kind 0 is not granted to this app"
    );
    let peer = Keys::generate().public_key();
    let dec = Action::crypto(Method::Nip44Decrypt, peer);
    let Decision::Refused(r) = g.decide(&dec, NOW) else {
        panic!()
    };
    assert!(
        r.message(&dec)
            .starts_with("forbidden: nip44_decrypt from "),
        "{}",
        r.message(&dec)
    );
    // plumbing is allowed and not counted
    for _ in 0..20 {
        assert!(g
            .decide(&Action::method(Method::GetPublicKey), NOW)
            .is_allowed());
    }
    assert_eq!(g.used(), 1);
}

#[test]
fn the_seeds_rates_by_default() {
    let mut g = Grant::new(&scoped("sign_event:1"), None, NOW);
    for i in 0..5 {
        assert!(g.decide(&Action::sign(1, Some(NOW)), NOW + i).is_allowed());
    }
    let a = Action::sign(1, Some(NOW + 4));
    let Decision::Refused(r) = g.decide(&a, NOW + 4) else {
        panic!("6th allowed")
    };
    assert_eq!(r.message(&a), "rate-limited: 5 per 10 s; retry in 6 s");
    assert_eq!(r.code(), "rate-limited");
    // refused requests are not counted
    assert_eq!(g.used(), 5);
    assert!(g.decide(&a, NOW + 10).is_allowed());
    // full has no limit
    let mut full = Grant::full();
    for _ in 0..1000 {
        assert!(full.decide(&Action::sign(0, Some(1)), NOW).is_allowed());
    }
}

#[test]
fn expiry_uses_and_window() {
    let mut p = scoped("sign_event:1");
    p.expiry = Some(Expiry::After(3600));
    p.uses = Some(2);
    p.rates = Rates::none();
    let mut g = Grant::new(&p, None, NOW);
    assert_eq!(g.policy().expiry, Some(Expiry::At(NOW + 3600)));
    let late = Action::sign(1, Some(NOW - 601));
    let Decision::Refused(r) = g.decide(&late, NOW) else {
        panic!()
    };
    assert_eq!(
        r,
        Refusal::CreatedAtOutOfWindow {
            window: 600,
            offset: -601
        }
    );
    assert!(
        r.message(&late).contains("10 min 1 s behind"),
        "{}",
        r.message(&late)
    );
    let early = Action::sign(1, Some(NOW + 601));
    assert!(!g.decide(&early, NOW).is_allowed());
    assert!(g
        .decide(&Action::sign(1, Some(NOW + 600)), NOW)
        .is_allowed());
    assert!(g.decide(&Action::sign(1, Some(NOW)), NOW).is_allowed());
    let a = Action::sign(1, Some(NOW));
    let Decision::Refused(r) = g.decide(&a, NOW) else {
        panic!()
    };
    assert_eq!(r, Refusal::UsedUp { uses: 2 });
    assert_eq!(
        r.message(&a),
        "forbidden: sign_event of kind 1: this app's grant allowed 2 uses; all are spent"
    );
    let Decision::Refused(r) = g.decide(&a, NOW + 3600) else {
        panic!()
    };
    assert_eq!(r.code(), "expired");
    assert!(r.message(&a).contains("expired at"), "{}", r.message(&a));
    assert!(!g
        .decide(&Action::method(Method::GetPublicKey), NOW + 3600)
        .is_allowed());
    // logout always works
    assert!(g
        .decide(&Action::method(Method::Logout), NOW + 9999)
        .is_allowed());
    // full has no created_at window
    assert!(Grant::full()
        .decide(&Action::sign(1, Some(0)), NOW)
        .is_allowed());
}

#[test]
fn a_new_grant_keeps_the_rate_log() {
    let mut g = Grant::new(&scoped("sign_event:1"), None, NOW);
    for _ in 0..5 {
        assert!(g.decide(&Action::sign(1, None), NOW).is_allowed());
    }
    g.replace(&scoped("sign_event:1,sign_event:7"), NOW);
    assert_eq!(g.used(), 0);
    assert!(!g.decide(&Action::sign(7, None), NOW).is_allowed());
    assert!(g.decide(&Action::sign(7, None), NOW + 10).is_allowed());
}

#[test]
fn connect_perms_narrow_the_grant() {
    let asked = Perms::parse_requested("sign_event:1,sign_event:0,nip44_encrypt");
    let mut g = Grant::new(&scoped("sign_event:1,sign_event:1111"), asked.as_ref(), NOW);
    assert_eq!(g.policy().perms.to_string(), "sign_event:1");
    assert!(!g.decide(&Action::sign(0, None), NOW).is_allowed());
    assert!(!g.decide(&Action::sign(1111, None), NOW).is_allowed());
}

#[test]
fn policy_json() {
    let p = Policy::from_json(r#"{"perms":"sign_event:1"}"#).unwrap();
    assert_eq!(p, scoped("sign_event:1"));
    assert_eq!(p.rates, Rates::default_scoped());
    assert_eq!(p.window, Some(DEFAULT_WINDOW));
    let full = Policy::from_json(r#"{"perms":"full"}"#).unwrap();
    assert_eq!(full, Policy::full());
    let off =
        Policy::from_json(r#"{"perms":"basic","rate":"none","created_at_window":"none"}"#).unwrap();
    assert!(off.rates.is_none() && off.window.is_none());
    for bad in [
        "",
        "{}",
        r#"{"perms":"sign_event"}"#,
        r#"{"perms":"sign_event:1","ttl":5,"expires_at":9}"#,
        r#"{"perms":"sign_event:1","ttl":0}"#,
        r#"{"perms":"sign_event:1","uses":0}"#,
        r#"{"perms":"sign_event:1","rate":"fast"}"#,
        r#"{"perms":"sign_event:1","created_at_window":"wide"}"#,
        r#"{"perms":"sign_event:1","admin":true}"#,
    ] {
        assert!(Policy::from_json(bad).is_err(), "{bad}");
    }
    assert!(Policy::from_json(&" ".repeat(wire::MAX_POLICY_JSON + 1)).is_err());
}

#[test]
fn in_words() {
    let mut p = scoped("sign_event:1,sign_event:1111");
    p.expiry = Some(Expiry::After(8 * 3600));
    let words = p.describe(NOW);
    assert!(
        words.starts_with("sign_event of kinds 1 and 1111"),
        "{words}"
    );
    assert!(
        words.contains("for 8 h from when the app connects"),
        "{words}"
    );
    // Given now (key grant), it runs from now.
    let words = p.started(NOW).describe(NOW);
    assert!(words.contains("(8 h from now)"), "{words}");
    assert!(
        words.contains("at most 5 per 10 s, 10 per 1 min, 100 per 1 h"),
        "{words}"
    );
    assert!(words.contains("±10 min"), "{words}");
    let g = Grant::new(&p, None, NOW);
    assert!(
        g.policy().describe(NOW).contains("until "),
        "{}",
        g.policy().describe(NOW)
    );
    assert!(Policy::full().describe(NOW).starts_with("full access"));
}

fn policy() -> impl Strategy<Value = Policy> {
    let perms = proptest::sample::select(vec![
        "full",
        "basic",
        "none",
        "sign_event:1,sign_event:1111",
        "sign_event:30000-39999,nip44_encrypt,ping",
        "nip44_decrypt:79be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798",
    ]);
    let expiry = prop_oneof![
        Just(None),
        (1u64..duration::MAX_SECS).prop_map(|t| Some(Expiry::After(t))),
        any::<u64>().prop_map(|t| Some(Expiry::At(t))),
    ];
    let rates = proptest::collection::vec((1u32..100, 1u32..100_000), 0..4).prop_map(|v| {
        Rates::new(
            v.into_iter()
                .map(|(count, window)| Rate { count, window })
                .collect(),
        )
        .unwrap()
    });
    (
        perms,
        expiry,
        proptest::option::of(1u64..1_000_000),
        rates,
        proptest::option::of(0u64..100_000),
    )
        .prop_map(|(perms, expiry, uses, rates, window)| Policy {
            perms: Perms::parse(perms).unwrap(),
            expiry,
            uses,
            rates,
            window,
        })
}

proptest! {
    #[test]
    fn policies_round_trip(p in policy()) {
        prop_assert_eq!(Policy::from_json(&p.to_json()), Ok(p));
    }

    #[test]
    fn uses_are_never_exceeded(uses in 1u64..20, times in proptest::collection::vec(0u64..5, 1..60)) {
        let mut p = scoped("sign_event:1");
        p.uses = Some(uses);
        p.rates = Rates::none();
        let mut g = Grant::new(&p, None, NOW);
        let mut now = NOW;
        let mut allowed = 0;
        for t in times {
            now += t;
            if g.decide(&Action::sign(1, Some(now)), now).is_allowed() {
                allowed += 1;
            }
        }
        prop_assert!(allowed <= uses);
        prop_assert_eq!(g.used(), allowed);
    }
}

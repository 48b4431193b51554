#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use nostr::Keys;
use proptest::prelude::*;

use super::*;

fn kinds(p: &Perms, k: u16) -> bool {
    p.allows(Method::SignEvent, Some(k), None)
}

#[test]
fn parses_the_nip46_syntax() {
    let p = Perms::parse("sign_event:1, sign_event:30000-39999,nip44_encrypt,ping").unwrap();
    assert!(kinds(&p, 1) && kinds(&p, 30000) && kinds(&p, 39999));
    assert!(!kinds(&p, 0) && !kinds(&p, 7) && !kinds(&p, 40000));
    let peer = Keys::generate().public_key();
    assert!(p.allows(Method::Nip44Encrypt, None, Some(&peer)));
    assert!(!p.allows(Method::Nip44Decrypt, None, Some(&peer)));
    assert!(!p.allows(Method::Nip04Encrypt, None, Some(&peer)));
    // plumbing is always allowed
    for m in [
        Method::GetPublicKey,
        Method::Ping,
        Method::SwitchRelays,
        Method::Logout,
    ] {
        assert!(Perms::parse("sign_event:1").unwrap().allows(m, None, None));
    }
    assert_eq!(
        p.to_string(),
        "ping,nip44_encrypt,sign_event:1,sign_event:30000-39999"
    );
}

#[test]
fn kind_ranges_are_merged_and_narrowing_stays_small() {
    let p =
        Perms::parse("sign_event:1,sign_event:2,sign_event:3-9,sign_event:20-30,sign_event:25-40")
            .unwrap();
    assert_eq!(p.to_string(), "sign_event:1-9,sign_event:20-40");
    // NIP-98 named alone is never merged away
    let p = Perms::parse("sign_event:27234,sign_event:27235,sign_event:27236-27300").unwrap();
    assert!(kinds(&p, KIND_HTTP_AUTH));
    assert_eq!(Perms::parse(&p.to_string()).unwrap(), p);
    // the review's blow-up: 64 overlapping ranges against 64 others
    let g: Vec<String> = (0..64)
        .map(|i| format!("sign_event:{i}-{}", 1000 + i))
        .collect();
    let a: Vec<String> = (0..64)
        .map(|j| format!("sign_event:{}-{}", 100 + j, 2000 + j))
        .collect();
    let g = Perms::parse(&g.join(",")).unwrap();
    let a = Perms::parse_requested(&a.join(",")).unwrap();
    assert_eq!(g.narrow(Some(&a)).to_string(), "sign_event:100-1063");
    // a peer entry under the same unscoped method is dropped
    let peer = Keys::generate().public_key().to_hex();
    let p = Perms::parse(&format!("nip44_decrypt,nip44_decrypt:{peer}")).unwrap();
    assert_eq!(p.to_string(), "nip44_decrypt");
}

#[test]
fn a_malformed_entry_in_an_apps_request_is_skipped() {
    let asked = Perms::parse_requested("sign_event:x,sign_event:5-1,sign_event:1,frob:2").unwrap();
    assert_eq!(asked.to_string(), "sign_event:1");
    assert_eq!(Perms::parse_requested(" , ,"), None);
    let long = format!("sign_event:1,{}", "é".repeat(MAX_PERMS_TEXT));
    assert_eq!(
        Perms::parse_requested(&long).unwrap().to_string(),
        "sign_event:1"
    );
}

#[test]
fn none_is_only_the_plumbing() {
    let none = Perms::parse("none").unwrap();
    assert_eq!(none, Perms::Listed(Vec::new()));
    assert_eq!(none.to_string(), "none");
    assert!(none.allows(Method::GetPublicKey, None, None));
    assert!(!none.allows(Method::SignEvent, Some(1), None));
    assert!(Perms::parse("none,sign_event:1").is_err());
    // an app asking only for what is not granted is left with none
    let g = Perms::parse("sign_event:1").unwrap();
    assert_eq!(
        g.narrow(Perms::parse_requested("sign_event:7").as_ref()),
        none
    );
}

#[test]
fn refuses_what_it_cannot_read() {
    for bad in [
        "",
        "sign_event",
        "sign_event:",
        "sign_event:x",
        "sign_event:70000",
        "sign_event:10-5",
        "sign_events:1",
        "nip44_decrypt:nothex",
        "ping:1",
        "full,sign_event:1",
        "delete_everything",
    ] {
        assert!(Perms::parse(bad).is_err(), "{bad}");
    }
    assert!(Perms::parse(&"sign_event:1,".repeat(3000)).is_err());
    let many: Vec<String> = (0..=MAX_PERMS as u16)
        .map(|k| format!("sign_event:{}", 2 * k))
        .collect();
    assert!(Perms::parse(&many.join(",")).is_err());
}

#[test]
fn basic_is_nsec_apps_set_and_full_is_everything() {
    let basic = Perms::parse("basic").unwrap();
    for k in BASIC_KINDS {
        assert!(kinds(&basic, k), "{k}");
    }
    assert!(!kinds(&basic, 4) && !kinds(&basic, 30078));
    let peer = Keys::generate().public_key();
    assert!(basic.allows(Method::Nip04Decrypt, None, Some(&peer)));
    assert!(Perms::parse("full")
        .unwrap()
        .allows(Method::SignEvent, Some(27235), None));
    assert!(Perms::parse("full").unwrap().is_full());
}

#[test]
fn nip98_only_by_name() {
    assert!(!kinds(
        &Perms::parse("sign_event:0-65535").unwrap(),
        KIND_HTTP_AUTH
    ));
    assert!(!kinds(
        &Perms::parse("sign_event:27000-28000").unwrap(),
        KIND_HTTP_AUTH
    ));
    assert!(kinds(
        &Perms::parse("sign_event:27235").unwrap(),
        KIND_HTTP_AUTH
    ));
    assert!(kinds(
        &Perms::parse("sign_event:27235-27235").unwrap(),
        KIND_HTTP_AUTH
    ));
    // two ranges whose overlap is just 27235 still do not cover it
    let a = Perms::parse("sign_event:20000-27235").unwrap();
    let b = Perms::parse_requested("sign_event:27235-30000").unwrap();
    assert!(!kinds(&a.narrow(Some(&b)), KIND_HTTP_AUTH));
}

#[test]
fn peer_scoped_crypto() {
    let vault = Keys::generate().public_key();
    let other = Keys::generate().public_key();
    let p = Perms::parse(&format!("nip44_decrypt:{}", vault.to_hex())).unwrap();
    assert!(p.allows(Method::Nip44Decrypt, None, Some(&vault)));
    assert!(!p.allows(Method::Nip44Decrypt, None, Some(&other)));
    assert!(!p.allows(Method::Nip44Encrypt, None, Some(&vault)));
    assert_eq!(Perms::parse(&p.to_string()).unwrap(), p);
}

#[test]
fn connect_perms_only_narrow() {
    let granted = Perms::parse("sign_event:1,sign_event:1111,nip44_encrypt").unwrap();
    let asked =
        Perms::parse_requested("sign_event:0,sign_event:1,nip44_decrypt,nip04_encrypt,frob")
            .unwrap();
    let narrowed = granted.narrow(Some(&asked));
    assert_eq!(narrowed.to_string(), "sign_event:1");
    // a bare sign_event asks for any kind: the grant's kinds stay
    let any = Perms::parse_requested("sign_event").unwrap();
    assert_eq!(
        granted.narrow(Some(&any)).to_string(),
        "sign_event:1,sign_event:1111"
    );
    // nothing asked: nothing narrowed; full asked: nothing widened
    assert_eq!(granted.narrow(None), granted);
    assert_eq!(granted.narrow(Perms::parse_requested("").as_ref()), granted);
    assert_eq!(granted.narrow(Some(&Perms::Full)), granted);
    // full narrows to what is asked, a bare sign_event spelled out
    assert_eq!(Perms::Full.narrow(Some(&asked)), asked);
    let spelled = Perms::Full.narrow(Some(&any));
    assert_eq!(spelled.to_string(), "sign_event:0-65535,sign_event:27235");
    assert!(kinds(&spelled, KIND_HTTP_AUTH) && kinds(&spelled, 0));
    assert_eq!(Perms::parse(&spelled.to_string()).unwrap(), spelled);
    // a peer-scoped ask narrows an unscoped grant
    let vault = Keys::generate().public_key();
    let g = Perms::parse("nip44_decrypt").unwrap();
    let a = Perms::parse_requested(&format!("nip44_decrypt:{}", vault.to_hex())).unwrap();
    assert_eq!(g.narrow(Some(&a)), a);
    assert_eq!(a.narrow(Some(&g)), a);
}

/// Kinds, often at and around NIP-98's.
fn kind() -> impl Strategy<Value = u16> {
    prop_oneof![
        any::<u16>(),
        Just(KIND_HTTP_AUTH),
        (KIND_HTTP_AUTH - 3)..(KIND_HTTP_AUTH + 3),
        0u16..8,
    ]
}

fn perm() -> impl Strategy<Value = Perm> {
    let methods = proptest::sample::select(
        Method::ALL
            .into_iter()
            .filter(|m| *m != Method::SignEvent)
            .collect::<Vec<_>>(),
    );
    let crypto = proptest::sample::select(vec![
        Method::Nip04Encrypt,
        Method::Nip04Decrypt,
        Method::Nip44Encrypt,
        Method::Nip44Decrypt,
    ]);
    prop_oneof![
        methods.prop_map(Perm::Method),
        (kind(), kind()).prop_map(|(a, b)| Perm::Kinds(a.min(b), a.max(b))),
        (crypto, any::<u64>()).prop_map(|(m, seed)| {
            let mut bytes = [0u8; 32];
            bytes[..8].copy_from_slice(&seed.to_le_bytes());
            bytes[31] = 1;
            let key = Keys::new(nostr::SecretKey::from_slice(&bytes).unwrap()).public_key();
            Perm::Peer(m, key.to_bytes())
        }),
    ]
}

/// What an app may ask for: a grant's entries or a bare `sign_event`.
fn asked() -> impl Strategy<Value = Perms> {
    prop_oneof![
        perms(),
        proptest::collection::vec(
            prop_oneof![perm(), Just(Perm::Method(Method::SignEvent))],
            1..12
        )
        .prop_map(|mut v| {
            v.sort();
            v.dedup();
            Perms::Listed(v)
        }),
    ]
}

fn perms() -> impl Strategy<Value = Perms> {
    prop_oneof![
        Just(Perms::Full),
        proptest::collection::vec(perm(), 1..MAX_PERMS).prop_map(|v| Perms::Listed(normalize(v))),
    ]
}

proptest! {
    #[test]
    fn print_then_parse_is_identity(p in perms()) {
        prop_assert_eq!(Perms::parse(&p.to_string()).unwrap(), p);
    }

    #[test]
    fn parse_never_panics(s in "[a-z_0-9:,\\- ]{0,80}") {
        let _ = Perms::parse(&s);
        let _ = Perms::parse_requested(&s);
    }

    #[test]
    fn narrowing_never_widens(g in perms(), a in asked(), kind in kind(), m in 0usize..10) {
        let n = g.narrow(Some(&a));
        // What narrowing leaves is always a grant that prints and parses,
        // and no longer than the longest allowed.
        prop_assert_eq!(Perms::parse(&n.to_string()), Ok(n.clone()));
        if let Perms::Listed(list) = &n {
            prop_assert!(list.len() <= MAX_PERMS);
        }
        let method = Method::ALL[m];
        let peer = Keys::generate().public_key();
        for peer in [None, Some(&peer)] {
            if n.allows(method, Some(kind), peer) {
                prop_assert!(g.allows(method, Some(kind), peer), "{} widened {}", n, g);
                prop_assert!(a.allows(method, Some(kind), peer), "{} widened {}", n, a);
            }
        }
    }
}

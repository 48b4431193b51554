#![allow(clippy::unwrap_used)]

use nostr::{Keys, ToBech32};

use super::*;
use crate::grant::Method;

fn payload(
    user: &PublicKey,
    app: &PublicKey,
    updated: u64,
    perms_updated: u64,
    perms: &[(&str, &str)],
) -> String {
    let perms: Vec<serde_json::Value> = perms
        .iter()
        .map(|(p, v)| serde_json::json!({"id": "x", "npub": user.to_bech32().unwrap(), "appNpub": app.to_bech32().unwrap(), "perm": p, "value": v, "timestamp": 1}))
        .collect();
    serde_json::json!({
        "appNpub": app.to_bech32().unwrap(), "npub": user.to_bech32().unwrap(),
        "name": "An app", "icon": "", "url": "https://app.example",
        "timestamp": 1, "updateTimestamp": updated, "permUpdateTimestamp": perms_updated,
        "userAgent": "test", "token": "t", "perms": perms,
    })
    .to_string()
}

fn deleted(user: &PublicKey, app: &PublicKey, updated: u64) -> String {
    serde_json::json!({"appNpub": app.to_bech32().unwrap(), "npub": user.to_bech32().unwrap(), "updateTimestamp": updated, "deleted": true}).to_string()
}

fn keys() -> (PublicKey, PublicKey) {
    (Keys::generate().public_key(), Keys::generate().public_key())
}

fn parse(text: &str, user: &PublicKey, app: &PublicKey) -> Payload {
    parse_payload(text, user, Some(&d_tag(user, app))).unwrap()
}

#[test]
fn the_d_tag_is_nsec_apps() {
    let user =
        PublicKey::from_hex("79be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798")
            .unwrap();
    let expected = hex::encode(Sha256::digest(
        format!(
            "nsec.app_{}_{}",
            user.to_bech32().unwrap(),
            user.to_bech32().unwrap()
        )
        .as_bytes(),
    ));
    assert_eq!(d_tag(&user, &user), expected);
    assert!(is_perm_event(
        30078,
        [vec!["t".to_owned(), PERM_TAG.to_owned()].as_slice()]
    ));
    assert!(is_perm_event(
        30078,
        [vec!["t".to_owned(), "x".to_owned(), PERM_TAG.to_owned()].as_slice()]
    ));
    assert!(!is_perm_event(
        30078,
        [vec!["t".to_owned(), "other".to_owned()].as_slice()]
    ));
    assert!(!is_perm_event(
        1,
        [vec!["t".to_owned(), PERM_TAG.to_owned()].as_slice()]
    ));
}

#[test]
fn payloads_must_be_the_authors_and_match_d() {
    let (user, app) = keys();
    let other = Keys::generate().public_key();
    let text = payload(&user, &app, 1, 1, &[("sign_event:1", "1")]);
    // Read as another key's: refused (the original trusted the payload).
    assert!(parse_payload(&text, &other, Some(&d_tag(&other, &app)))
        .unwrap_err()
        .contains("another key"));
    assert!(parse_payload(&text, &user, Some("00"))
        .unwrap_err()
        .contains("d tag"));
    assert!(parse_payload(&text, &user, None).is_err());
    assert!(parse_payload("{}", &user, None).is_err());
    assert!(parse_payload(&"x".repeat(MAX_PAYLOAD + 1), &user, None).is_err());
    let Payload::App { info, perms, .. } = parse(&text, &user, &app) else {
        panic!()
    };
    assert_eq!(info.name.as_deref(), Some("An app"));
    assert_eq!(info.icon, None);
    assert_eq!(perms, vec![("sign_event:1".to_owned(), true)]);
}

#[test]
fn every_merge_branch() {
    let (user, app) = keys();
    let mut state = None;
    // a deletion of an unknown app: remembered
    assert_eq!(
        merge(&mut state, parse(&deleted(&user, &app, 5), &user, &app)),
        Merged::Deleted
    );
    // a new app
    assert_eq!(
        merge(
            &mut state,
            parse(
                &payload(&user, &app, 10, 10, &[("sign_event:1", "1")]),
                &user,
                &app
            )
        ),
        Merged::Perms
    );
    // older or equal: nothing
    assert_eq!(
        merge(
            &mut state,
            parse(
                &payload(&user, &app, 10, 10, &[("sign_event:0", "1")]),
                &user,
                &app
            )
        ),
        Merged::Unchanged
    );
    // newer info only: info changes, perms stay (the original wiped them)
    let renamed = payload(&user, &app, 20, 10, &[("sign_event:0", "1")]);
    assert_eq!(
        merge(&mut state, parse(&renamed, &user, &app)),
        Merged::Info
    );
    assert_eq!(
        state.as_ref().unwrap().perms,
        vec![("sign_event:1".to_owned(), true)]
    );
    // newer perms only: the whole list is replaced
    let regranted = payload(&user, &app, 20, 30, &[("sign_event:7", "1")]);
    assert_eq!(
        merge(&mut state, parse(&regranted, &user, &app)),
        Merged::Perms
    );
    assert_eq!(
        state.as_ref().unwrap().perms,
        vec![("sign_event:7".to_owned(), true)]
    );
    // an older deletion: nothing; a newer one: gone
    assert_eq!(
        merge(&mut state, parse(&deleted(&user, &app, 20), &user, &app)),
        Merged::Unchanged
    );
    assert_eq!(
        merge(&mut state, parse(&deleted(&user, &app, 21), &user, &app)),
        Merged::Deleted
    );
    assert!(state.as_ref().unwrap().deleted);
    assert_eq!(to_policy(state.as_ref().unwrap()), None);
    // a replay of the older grant does not bring it back; a newer one does
    assert_eq!(
        merge(&mut state, parse(&regranted, &user, &app)),
        Merged::Unchanged
    );
    let again = payload(&user, &app, 22, 31, &[("sign_event:1", "1")]);
    assert_eq!(merge(&mut state, parse(&again, &user, &app)), Merged::Perms);
    assert!(!state.as_ref().unwrap().deleted);
}

fn state(perms: &[(&str, bool)]) -> AppState {
    AppState {
        info: Info::default(),
        updated: 1,
        perms_updated: 1,
        perms: perms.iter().map(|(p, v)| ((*p).to_owned(), *v)).collect(),
        deleted: false,
    }
}

#[test]
fn permissions_become_a_grant() {
    let peer = Keys::generate().public_key();
    let p = to_policy(&state(&[
        ("connect", true),
        ("get_public_key", true),
        ("sign_event:1", true),
        ("sign_event:0", false),
        ("nip44_encrypt", true),
    ]))
    .unwrap();
    assert!(p.perms.allows(Method::SignEvent, Some(1), None));
    assert!(!p.perms.allows(Method::SignEvent, Some(0), None));
    assert!(p.perms.allows(Method::Nip44Encrypt, None, Some(&peer)));
    assert!(!p.perms.allows(Method::Nip44Decrypt, None, Some(&peer)));
    assert!(p.rates.is_none() && p.window.is_none() && p.uses.is_none());
    // basic, with one of its kinds refused by name
    let p = to_policy(&state(&[("basic", true), ("sign_event:1", false)])).unwrap();
    assert!(p.perms.allows(Method::SignEvent, Some(7), None));
    assert!(p.perms.allows(Method::SignEvent, Some(27235), None));
    assert!(!p.perms.allows(Method::SignEvent, Some(1), None));
    assert!(!p.perms.allows(Method::SignEvent, Some(4), None));
    // a value other than "1" refuses; connect refused: nothing at all
    assert!(!to_policy(&state(&[("sign_event:1", false)]))
        .unwrap()
        .perms
        .allows(Method::SignEvent, Some(1), None));
    assert_eq!(
        to_policy(&state(&[("connect", false), ("sign_event:1", true)])),
        None
    );
    // what nsec.app asks about bare sign_event grants nothing
    assert_eq!(
        to_policy(&state(&[("sign_event", true)])).unwrap().perms,
        Perms::Listed(Vec::new())
    );
}

#[test]
fn values_other_than_one_refuse() {
    let (user, app) = keys();
    let text = payload(
        &user,
        &app,
        1,
        1,
        &[("sign_event:1", "true"), ("sign_event:2", "1")],
    );
    let Payload::App { perms, .. } = parse(&text, &user, &app) else {
        panic!()
    };
    assert_eq!(
        perms,
        vec![
            ("sign_event:1".to_owned(), false),
            ("sign_event:2".to_owned(), true)
        ]
    );
}

#[test]
fn perms_an_app_invented_grant_nothing() {
    // nsec.app makes `sign_event:<kind>` from the app's own template.
    let invented = [
        "sign_event:",
        " sign_event",
        "sign_event:1-65535",
        "sign_event:1,nip04_decrypt",
        "sign_event:0x1",
        "sign_event:70000",
        "sign_event:+1",
        "full",
        "nip44_decrypt:abc",
    ];
    for perm in invented {
        let p = to_policy(&state(&[(perm, true)])).unwrap();
        assert_eq!(p.perms, Perms::Listed(Vec::new()), "{perm:?}");
    }
    // many long entries are read one by one, never cut into others
    let many: Vec<(String, bool)> = (0..200u16)
        .map(|k| (format!("sign_event:{}", 30000 + k), true))
        .collect();
    let st = AppState {
        perms: many,
        ..state(&[])
    };
    let p = to_policy(&st).unwrap();
    assert!(!p.perms.allows(Method::SignEvent, Some(3), None));
    assert!(p.perms.allows(Method::SignEvent, Some(30000), None));
}

#[test]
fn a_deletion_seen_first_is_remembered() {
    let (user, app) = keys();
    let mut state = None;
    assert_eq!(
        merge(&mut state, parse(&deleted(&user, &app, 50), &user, &app)),
        Merged::Deleted
    );
    assert!(state.as_ref().unwrap().deleted);
    let older = payload(&user, &app, 40, 40, &[("sign_event:1", "1")]);
    assert_eq!(
        merge(&mut state, parse(&older, &user, &app)),
        Merged::Unchanged
    );
    assert_eq!(to_policy(state.as_ref().unwrap()), None);
}

//! What only a NECS announcement (kind 13793) has: its tee_root (kind 23793)
//! and the NECS kinds of the builder's and launcher's signatures (23794,
//! 23795), and the docker releases that share kinds 63795/63796.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod support;

use nostr::{Event, EventBuilder, Keys, Kind, Tag};
use support::*;
use verifier::event::KIND_ANNOUNCEMENT;
use verifier::pcr::{pcr4_from_instance_id, pcr8_from_cert_der};
use verifier::verify::{Check, Outcome};

fn failure_of(w: &World, parts: &Parts, which: Check) -> String {
    let report = check(w, &w.event(parts, |_| {}));
    assert_only_fails(&report, which);
    match report.outcome(which) {
        Some(Outcome::Failed(why)) => why.clone(),
        other => panic!("{other:?}"),
    }
}

#[test]
fn the_world_makes_valid_13793_announcements() {
    assert_eq!(ANNOUNCEMENT_KIND, KIND_ANNOUNCEMENT);
    let w = World::new();
    let report = check(&w, &w.valid());
    assert!(report.is_valid(), "{:#?}", report.checks);
    assert!(matches!(
        report.outcome(Check::TeeRoot),
        Some(Outcome::Passed(_))
    ));
}

#[test]
fn a_tee_root_signed_by_another_key() {
    let w = World::new();
    let mut parts = w.parts();
    parts.tee_root_signer = Some(Keys::generate());
    let why = failure_of(&w, &parts, Check::TeeRoot);
    assert!(why.contains("tee_root author"), "{why}");
}

#[test]
fn another_enclaves_tee_root_swapped_in() {
    let w = World::new();
    let other = World::new();
    let theirs = other.valid();
    let event = w.event(&w.parts(), |tags| {
        let root = theirs
            .tags
            .iter()
            .find(|t| t.as_slice()[0] == "tee_root")
            .unwrap();
        let mine = tags.iter_mut().find(|t| t[0] == "tee_root").unwrap();
        *mine = root.as_slice().to_vec();
    });
    let report = check(&w, &event);
    assert!(!report.is_valid());
    assert!(matches!(
        report.outcome(Check::TeeRoot),
        Some(Outcome::Failed(_))
    ));
}

#[test]
fn a_stale_tee_root() {
    let w = World::new();
    let mut parts = w.parts();
    parts.tee_root_edit = |tags| {
        tags.iter_mut().find(|t| t[0] == "expiration").unwrap()[1] = (CHECK_AT - 1).to_string();
    };
    let why = failure_of(&w, &parts, Check::TeeRoot);
    assert!(why.contains("expired"), "{why}");
}

#[test]
fn a_tee_root_in_another_mode() {
    let w = World::new();
    let mut parts = w.parts();
    parts.tee_root_edit = |tags| {
        tags.iter_mut().find(|t| t[0] == "t").unwrap()[1] = "prod".into();
    };
    failure_of(&w, &parts, Check::TeeRoot);
}

#[test]
fn a_tee_root_whose_attestation_names_another_key() {
    let w = World::new();
    let mut parts = w.parts();
    parts.doc.public_key = Some(Keys::generate().public_key().to_bytes().to_vec());
    failure_of(&w, &parts, Check::PublicKey);
}

#[test]
fn a_missing_or_garbled_tee_root() {
    let w = World::new();
    let event = w.event(&w.parts(), |tags| tags.retain(|t| t[0] != "tee_root"));
    let report = check(&w, &event);
    assert!(!report.is_valid());
    assert_eq!(report.first_failure().unwrap().check, Check::TeeRoot);
    assert!(matches!(
        report.outcome(Check::AttestationDecode),
        Some(Outcome::NotRun(_))
    ));
    let event = w.event(&w.parts(), |tags| {
        tags.iter_mut().find(|t| t[0] == "tee_root").unwrap()[1] = w.parts().build.as_json_string();
    });
    let report = check(&w, &event);
    assert_eq!(report.first_failure().unwrap().check, Check::TeeRoot);
}

trait Json {
    fn as_json_string(&self) -> String;
}

impl Json for Event {
    fn as_json_string(&self) -> String {
        nostr::JsonUtil::as_json(self)
    }
}

fn necs_build(w: &World, keys: &Keys) -> Event {
    let pem = pem::encode(&pem::Pem::new("CERTIFICATE", w.cert_der.clone()));
    let tags = [
        vec!["-".to_owned()],
        vec![
            "r".into(),
            "https://github.com/nostrband/noauth-enclaved".into(),
        ],
        vec!["v".into(), "0.1.0".into()],
        vec!["t".into(), "dev".into()],
        vec!["cert".into(), pem],
        vec!["PCR8".into(), pcr8_from_cert_der(&w.cert_der).to_string()],
    ];
    sign(
        EventBuilder::new(Kind::from_u16(23794), "")
            .tags(tags.into_iter().map(|t| Tag::parse(t).unwrap())),
        keys,
    )
}

#[test]
fn reads_the_necs_build_and_instance_signatures() {
    let w = World::new();
    let mut parts = w.parts();
    parts.build = necs_build(&w, &w.builder);
    let tags = [
        vec!["-".to_owned()],
        vec!["t".into(), "dev".into()],
        vec![
            "PCR4".into(),
            pcr4_from_instance_id(INSTANCE_ID).to_string(),
        ],
    ];
    parts.instance = sign(
        EventBuilder::new(Kind::from_u16(23795), "")
            .tags(tags.into_iter().map(|t| Tag::parse(t).unwrap())),
        &w.launcher,
    );
    let report = check(&w, &w.event(&parts, |_| {}));
    assert!(report.is_valid(), "{:#?}", report.checks);
    // A 23794 by someone the certificate does not name is still refused.
    parts.build = necs_build(&w, &Keys::generate());
    failure_of(&w, &parts, Check::BuildCert);
}

#[test]
fn a_docker_release_where_a_signature_belongs_is_named() {
    let w = World::new();
    let mut parts = w.parts();
    // encli's docker release signature: kind 63795 with t, r, v, x "docker".
    let tags = [
        vec!["t".to_owned(), "dev".into()],
        vec!["r".into(), "https://github.com/nostrband/enclaved".into()],
        vec!["v".into(), "1.0.0".into()],
        vec!["x".into(), "a".repeat(64), "docker".into()],
    ];
    parts.build = sign(
        EventBuilder::new(Kind::from_u16(63795), "")
            .tags(tags.into_iter().map(|t| Tag::parse(t).unwrap())),
        &w.builder,
    );
    let why = failure_of(&w, &parts, Check::BuildEvent);
    assert!(why.contains("docker app release"), "{why}");
    // And the docker release (63796, with a u tag) as an instance signature.
    let tags = [
        vec!["t".to_owned(), "dev".into()],
        vec!["u".into(), "docker.io/nostrband/app".into()],
        vec!["x".into(), "b".repeat(64), "docker".into()],
    ];
    let mut parts = w.parts();
    parts.instance = sign(
        EventBuilder::new(Kind::from_u16(63796), "")
            .tags(tags.into_iter().map(|t| Tag::parse(t).unwrap())),
        &w.launcher,
    );
    let why = failure_of(&w, &parts, Check::InstanceSignature);
    assert!(why.contains("docker app release"), "{why}");
}

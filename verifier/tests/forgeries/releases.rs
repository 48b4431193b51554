// The cases of `releases.rs` and `releases_necs.rs`: release signatures
// (kind 63794) in an announcement's `release` tags, judged by the caller's
// trust (`--release-signer`, `--threshold`, `--min-version`).

use nostr::Keys;
use support::*;
use verifier::event::Mode;
use verifier::pcr::pcr_digest;
use verifier::release::ReleaseTrust;
use verifier::verify::{verify_instance, Check, Outcome, Report};

struct Maintainers {
    keys: Vec<Keys>,
}

impl Maintainers {
    fn new(n: usize) -> Self {
        Self {
            keys: (0..n).map(|_| Keys::generate()).collect(),
        }
    }

    fn trust(&self, threshold: usize, min_version: Option<&str>) -> ReleaseTrust {
        let npubs: Vec<String> = self
            .keys
            .iter()
            .map(|k| verifier::event::npub(&k.public_key()))
            .collect();
        ReleaseTrust::new(&npubs, threshold, min_version).unwrap()
    }
}

/// Checked as `--release-signer … --allow-dev-release` does: the world's
/// instance is dev, and most cases sign dev releases.
fn checked(w: &World, parts: &Parts, trust: ReleaseTrust) -> Report {
    let mut options = w.options();
    options.release = Some(trust);
    options.allow_dev_release = true;
    verify_instance(&w.event(parts, |_| {}), &options)
}

/// Checked without `--allow-dev-release`: only prod releases count.
fn checked_strictly(w: &World, parts: &Parts, trust: ReleaseTrust) -> Report {
    let mut options = w.options();
    options.release = Some(trust);
    verify_instance(&w.event(parts, |_| {}), &options)
}

/// A release signature of this world's code for another repository.
fn release_of_repo(w: &World, keys: &Keys, repo: &str) -> nostr::Event {
    let version = verifier::release::parse_version("0.1.0").unwrap();
    sign(
        verifier::release::ReleaseSignature::builder(repo, &version, Mode::Dev, &w.code_pcrs())
            .unwrap(),
        keys,
    )
}

fn failure(report: &Report, check: Check) -> String {
    assert_only_fails(report, check);
    match report.outcome(check) {
        Some(Outcome::Failed(why)) => why.clone(),
        other => panic!("{other:?}"),
    }
}

fn released(w: &World, m: &Maintainers, signers: usize, version: &str, mode: Mode) -> Vec<nostr::Event> {
    m.keys
        .iter()
        .take(signers)
        .map(|k| w.release_event(k, version, mode, w.code_pcrs()))
        .collect()
}

#[test]
fn released_by_k_of_the_trusted_maintainers() {
    let w = World::new();
    let m = Maintainers::new(3);
    let mut parts = w.parts();
    parts.releases = released(&w, &m, 2, "0.1.0", Mode::Dev);
    let report = checked(&w, &parts, m.trust(2, Some("0.1.0")));
    assert!(report.is_valid(), "{:#?}", report.checks);
    let release = report.verified().unwrap().release.clone().unwrap();
    assert_eq!(release.version.to_string(), "0.1.0");
    assert_eq!(release.signers.len(), 2);
    // Without release signers, the release checks do not run.
    assert!(check(&w, &w.event(&parts, |_| {})).outcome(Check::ReleaseSignatures).is_none());
}

#[test]
fn threshold_not_met() {
    let w = World::new();
    let m = Maintainers::new(3);
    let mut parts = w.parts();
    parts.releases = released(&w, &m, 1, "0.1.0", Mode::Dev);
    let why = failure(&checked(&w, &parts, m.trust(2, None)), Check::ReleaseSignatures);
    assert!(why.contains("1 of the 2"), "{why}");
    // The same maintainer twice counts once.
    parts.releases.push(w.release_event(&m.keys[0], "0.1.0", Mode::Dev, w.code_pcrs()));
    let why = failure(&checked(&w, &parts, m.trust(2, None)), Check::ReleaseSignatures);
    assert!(why.contains("1 of the 2"), "{why}");
    // None at all.
    parts.releases.clear();
    let why = failure(&checked(&w, &parts, m.trust(1, None)), Check::ReleaseSignatures);
    assert!(why.contains("no release signature"), "{why}");
}

#[test]
fn signed_by_someone_not_in_the_policy() {
    let w = World::new();
    let m = Maintainers::new(2);
    let strangers = Maintainers::new(2);
    let mut parts = w.parts();
    parts.releases = released(&w, &strangers, 2, "0.1.0", Mode::Dev);
    let why = failure(&checked(&w, &parts, m.trust(1, None)), Check::ReleaseSignatures);
    assert!(why.contains("not a trusted maintainer"), "{why}");
}

#[test]
fn signed_for_other_pcrs() {
    let w = World::new();
    let m = Maintainers::new(2);
    let mut parts = w.parts();
    let mut other = w.code_pcrs();
    other[2] = pcr_digest(b"another application");
    parts.releases = m
        .keys
        .iter()
        .map(|k| w.release_event(k, "0.1.0", Mode::Dev, other))
        .collect();
    let why = failure(&checked(&w, &parts, m.trust(2, None)), Check::ReleaseSignatures);
    assert!(why.contains("signed other measurements"), "{why}");
}

#[test]
fn a_dev_release_for_a_prod_instance() {
    let w = World::new();
    let m = Maintainers::new(2);
    let mut parts = w.parts();
    parts.mode = Mode::Prod;
    parts.build = w.build_event(&w.cert_der, Mode::Prod, &w.builder);
    parts.instance = w.instance_event(
        &verifier::pcr::pcr4_from_instance_id(INSTANCE_ID),
        Mode::Prod,
        &w.launcher,
    );
    parts.releases = released(&w, &m, 2, "0.1.0", Mode::Dev);
    let why = failure(&checked(&w, &parts, m.trust(2, None)), Check::ReleaseSignatures);
    assert!(why.contains("where only prod releases count"), "{why}");
    parts.releases = released(&w, &m, 2, "0.1.0", Mode::Prod);
    assert!(checked(&w, &parts, m.trust(2, None)).is_valid());
}

#[test]
fn version_below_the_minimum_or_not_the_announced_one() {
    let w = World::new();
    let m = Maintainers::new(2);
    let mut parts = w.parts();
    parts.releases = released(&w, &m, 2, "0.1.0", Mode::Dev);
    let why = failure(&checked(&w, &parts, m.trust(2, Some("0.2.0"))), Check::ReleaseVersion);
    assert!(why.contains("below the lowest accepted, 0.2.0"), "{why}");
    // The world announces v 0.1.0; maintainers who call it 0.3.0 do not
    // make it 0.3.0, nor a release of 0.1.0.
    parts.releases = released(&w, &m, 2, "0.3.0", Mode::Dev);
    let why = failure(&checked(&w, &parts, m.trust(2, Some("0.2.0"))), Check::ReleaseSignatures);
    assert!(why.contains("signed version 0.3.0 of"), "{why}");
    assert!(why.contains("not version 0.1.0 of"), "{why}");
}

#[test]
fn the_announced_version_counts_when_the_same_code_is_signed_as_two() {
    let w = World::new();
    let m = Maintainers::new(2);
    let mut parts = w.parts();
    parts.releases = released(&w, &m, 2, "0.3.0", Mode::Dev);
    parts.releases.extend(released(&w, &m, 2, "0.1.0", Mode::Dev));
    let report = checked(&w, &parts, m.trust(2, None));
    assert!(report.is_valid(), "{:#?}", report.checks);
    let release = report.verified().unwrap().release.clone().unwrap();
    assert_eq!(release.version.to_string(), "0.1.0");
}

#[test]
fn a_release_of_another_repository() {
    let w = World::new();
    let m = Maintainers::new(2);
    let mut parts = w.parts();
    parts.releases = m
        .keys
        .iter()
        .map(|k| release_of_repo(&w, k, "https://github.com/example/other"))
        .collect();
    let why = failure(&checked(&w, &parts, m.trust(2, None)), Check::ReleaseSignatures);
    assert!(why.contains("of https://github.com/example/other, not version 0.1.0 of https://github.com/nostrband/noauth-enclaved"), "{why}");
}

#[test]
fn a_dev_release_counts_only_when_the_client_allows_it() {
    // The launcher chooses the instance's mode: by default a client counts
    // only prod releases, even for a dev instance.
    let w = World::new();
    let m = Maintainers::new(2);
    let mut parts = w.parts();
    parts.releases = released(&w, &m, 2, "0.1.0", Mode::Dev);
    let why = failure(&checked_strictly(&w, &parts, m.trust(2, None)), Check::ReleaseSignatures);
    assert!(why.contains("where only prod releases count"), "{why}");
    assert!(checked(&w, &parts, m.trust(2, None)).is_valid());
    // Prod releases count for a dev instance either way.
    parts.releases = released(&w, &m, 2, "0.1.0", Mode::Prod);
    assert!(checked_strictly(&w, &parts, m.trust(2, None)).is_valid());
}

#[test]
fn malformed_release_tags_do_not_count_and_are_named() {
    let w = World::new();
    let m = Maintainers::new(2);
    let mut parts = w.parts();
    parts.releases = released(&w, &m, 1, "0.1.0", Mode::Dev);
    // A build signature where a release belongs, and a forged release.
    parts.releases.push(parts.build.clone());
    let forged = tamper(&released(&w, &m, 2, "0.1.0", Mode::Dev)[1], |j| {
        j["tags"][1][1] = "9.9.9".into()
    });
    parts.releases.push(forged);
    let why = failure(&checked(&w, &parts, m.trust(2, None)), Check::ReleaseSignatures);
    assert!(why.contains("1 of the 2"), "{why}");
    assert!(why.contains("release tag 2"), "{why}");
    assert!(why.contains("release tag 3"), "{why}");
}

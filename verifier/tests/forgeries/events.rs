// The cases of `forged_events.rs` and `forged_events_necs.rs`; `support::World`
// makes 63793 or 13793 events by the name of the test target.

use nostr::{JsonUtil, Keys};
use rcgen::{DnType, KeyPair, PKCS_ECDSA_P384_SHA384};
use support::*;
use verifier::event::{npub, Mode};
use verifier::pcr::{pcr4_from_instance_id, pcr8_from_cert_der, Measurements};
use verifier::verify::{verify_instance, verify_instance_json, Check};

/// Points the `p` tag marked `marker` at `pubkey_hex`.
fn set_marked(tags: &mut [Vec<String>], marker: &str, pubkey_hex: String) {
    tags.iter_mut()
        .find(|t| t.get(2).is_some_and(|m| m == marker))
        .unwrap()[1] = pubkey_hex;
}

#[test]
fn kind_other_than_63793() {
    let w = World::new();
    let mut parts = w.parts();
    parts.kind = 1;
    let report = check(&w, &w.event(&parts, |_| {}));
    if ANNOUNCEMENT_KIND == verifier::event::KIND_INSTANCE {
        assert_only_fails(&report, Check::Kind);
    } else {
        // Another kind is not read as a 13793: its content is no attestation.
        assert_eq!(report.first_failure().unwrap().check, Check::Kind);
        assert!(!report.is_valid());
    }
    // A 63793's tags and content under kind 13793 (no tee_root), and the
    // other way round, are refused too.
    let other = if ANNOUNCEMENT_KIND == verifier::event::KIND_INSTANCE {
        verifier::event::KIND_ANNOUNCEMENT
    } else {
        verifier::event::KIND_INSTANCE
    };
    parts.kind = other;
    let report = check(&w, &w.event(&parts, |_| {}));
    assert!(!report.is_valid(), "{:?}", report.first_failure());
}

#[test]
fn event_signature_altered_after_signing() {
    let w = World::new();
    let event = w.valid();
    // A tag changed: the id no longer matches.
    let altered = tamper(&event, |j| {
        j["tags"][0][1] = "https://example.com/evil".into()
    });
    let report = check(&w, &altered);
    assert_only_fails(&report, Check::EventSignature);
    assert!(reason(&report, Check::EventSignature).contains("id"));
    // The signature of another event over the same id.
    let other = w.event(&w.parts(), |t| t.push(vec!["alt".into(), "other".into()]));
    let resigned = tamper(&event, |j| j["sig"] = other.sig.to_string().into());
    let report = check(&w, &resigned);
    assert_only_fails(&report, Check::EventSignature);
    assert!(reason(&report, Check::EventSignature).contains("signature"));
}

#[test]
fn event_json_that_does_not_parse_or_is_too_large() {
    let w = World::new();
    for json in ["{", "[]", &" ".repeat(64 * 1024 + 1)] {
        let report = verify_instance_json(json, &w.options());
        assert!(!report.is_valid());
        assert_eq!(report.first_failure().unwrap().check, Check::Kind);
    }
    let report = verify_instance_json(&w.valid().as_json(), &w.options());
    assert!(report.is_valid());
}

#[test]
fn build_event_forged_missing_or_wrong_kind() {
    let w = World::new();
    let mut parts = w.parts();
    parts.build = tamper(&parts.build, |j| j["tags"][1][1] = "prod".into());
    assert_only_fails(&check(&w, &w.event(&parts, |_| {})), Check::BuildEvent);

    let parts = w.parts();
    let event = w.event(&parts, |tags| tags.retain(|t| t[0] != "build"));
    assert_only_fails(&check(&w, &event), Check::BuildEvent);

    let mut parts = w.parts();
    parts.build = parts.instance.clone(); // a valid event of kind 63796
    let event = w.event(&parts, |tags| {
        set_marked(tags, "builder", w.launcher.public_key().to_hex())
    });
    assert_only_fails(&check(&w, &event), Check::BuildEvent);
}

#[test]
fn build_pcr8_signed_for_another_image() {
    let w = World::new();
    let other_cert = builder_cert(&w.builder);
    assert_ne!(
        pcr8_from_cert_der(&other_cert),
        pcr8_from_cert_der(&w.cert_der)
    );
    let mut parts = w.parts();
    parts.build = w.build_event(&other_cert, Mode::Dev, &w.builder);
    assert_only_fails(&check(&w, &w.event(&parts, |_| {})), Check::BuildPcr8);
}

/// Makes the attested PCR8 that of `cert` and signs a build event for it.
fn world_with_cert(w: &World, cert: &[u8]) -> Parts {
    let mut parts = w.parts();
    parts.doc.pcrs.insert(8, pcr8_from_cert_der(cert));
    parts.build = w.build_event(cert, Mode::Dev, &w.builder);
    parts
}

#[test]
fn build_cert_naming_someone_else_or_not_nostr() {
    let w = World::new();
    let someone = npub(&Keys::generate().public_key());
    let me = npub(&w.builder.public_key());
    let cases: Vec<(Vec<(DnType, &str)>, &str)> = vec![
        (
            vec![
                (DnType::OrganizationName, "Nostr"),
                (DnType::OrganizationalUnitName, &someone),
            ],
            "OU",
        ),
        (
            vec![
                (DnType::OrganizationName, "Evil"),
                (DnType::OrganizationalUnitName, &me),
            ],
            "O",
        ),
        (vec![(DnType::OrganizationalUnitName, &me)], "O"),
        (
            vec![
                (DnType::OrganizationName, "Nostr"),
                (DnType::CommonName, "Nostr"),
            ],
            "npub",
        ),
        (
            vec![
                (DnType::OrganizationName, "Nostr"),
                (DnType::OrganizationalUnitName, &me),
                (DnType::CommonName, &someone),
            ],
            "OU or CN",
        ),
    ];
    for (subject, expect) in cases {
        let cert = signing_cert(&subject, None);
        let report = check(&w, &w.event(&world_with_cert(&w, &cert), |_| {}));
        assert_only_fails(&report, Check::BuildCert);
        let r = reason(&report, Check::BuildCert);
        assert!(r.contains(expect), "{r}");
    }
    // CN instead of OU is accepted, as older tools wrote it.
    let cert = signing_cert(
        &[
            (DnType::OrganizationName, "Nostr"),
            (DnType::CommonName, &me),
        ],
        None,
    );
    assert!(check(&w, &w.event(&world_with_cert(&w, &cert), |_| {})).is_valid());
}

#[test]
fn build_cert_not_self_signed() {
    let w = World::new();
    let me = npub(&w.builder.public_key());
    let other_key = KeyPair::generate_for(&PKCS_ECDSA_P384_SHA384).unwrap();
    let cert = signing_cert(
        &[
            (DnType::OrganizationName, "Nostr"),
            (DnType::OrganizationalUnitName, &me),
        ],
        Some(&other_key),
    );
    let report = check(&w, &w.event(&world_with_cert(&w, &cert), |_| {}));
    assert_only_fails(&report, Check::BuildCert);
    assert!(reason(&report, Check::BuildCert).contains("self-signature"));
}

#[test]
fn build_cert_that_does_not_hash_to_the_pcr8_tag() {
    // The builder signs the attested PCR8 but attaches another certificate.
    let w = World::new();
    let other_cert = builder_cert(&w.builder);
    let mut parts = w.parts();
    let good = parts
        .build
        .tags
        .iter()
        .find(|t| t.as_slice()[0] == "PCR8")
        .unwrap()
        .as_slice()[1]
        .clone();
    parts.build = w.build_event(&other_cert, Mode::Dev, &w.builder);
    let tags: Vec<Vec<String>> = parts
        .build
        .tags
        .iter()
        .map(|t| {
            let mut t = t.as_slice().to_vec();
            if t[0] == "PCR8" {
                t[1] = good.clone();
            }
            t
        })
        .collect();
    parts.build = sign(
        nostr::EventBuilder::new(parts.build.kind, "")
            .tags(tags.into_iter().map(|t| nostr::Tag::parse(t).unwrap())),
        &w.builder,
    );
    let report = check(&w, &w.event(&parts, |_| {}));
    assert_only_fails(&report, Check::BuildCert);
    assert!(reason(&report, Check::BuildCert).contains("hash of cert"));
}

#[test]
fn builder_tag_naming_another_key() {
    let w = World::new();
    let event = w.event(&w.parts(), |tags| {
        set_marked(tags, "builder", Keys::generate().public_key().to_hex())
    });
    assert_only_fails(&check(&w, &event), Check::BuilderTag);
    let event = w.event(&w.parts(), |tags| {
        tags.retain(|t| t.get(2).is_none_or(|m| m != "builder"))
    });
    assert_only_fails(&check(&w, &event), Check::BuilderTag);
}

#[test]
fn instance_signature_forged_or_missing() {
    let w = World::new();
    let mut parts = w.parts();
    parts.instance = tamper(&parts.instance, |j| j["created_at"] = 1.into());
    assert_only_fails(
        &check(&w, &w.event(&parts, |_| {})),
        Check::InstanceSignature,
    );
    let event = w.event(&w.parts(), |tags| tags.retain(|t| t[0] != "instance"));
    assert_only_fails(&check(&w, &event), Check::InstanceSignature);
}

#[test]
fn instance_pcr4_of_another_ec2_instance() {
    let w = World::new();
    let mut parts = w.parts();
    parts.instance = w.instance_event(
        &pcr4_from_instance_id("i-0aaaaaaaaaaaaaaaa"),
        Mode::Dev,
        &w.launcher,
    );
    assert_only_fails(&check(&w, &w.event(&parts, |_| {})), Check::InstancePcr4);
}

#[test]
fn launcher_tag_naming_another_key_or_repeated() {
    let w = World::new();
    let event = w.event(&w.parts(), |tags| {
        set_marked(tags, "launcher", w.builder.public_key().to_hex())
    });
    assert_only_fails(&check(&w, &event), Check::LauncherTag);
    let event = w.event(&w.parts(), |tags| {
        let t = tags
            .iter()
            .find(|t| t.get(2).is_some_and(|m| m == "launcher"))
            .unwrap()
            .clone();
        tags.push(t);
    });
    assert_only_fails(&check(&w, &event), Check::LauncherTag);
}

#[test]
fn mode_prod_claims_need_prod_signatures_and_debug_needs_zero_pcr0() {
    let w = World::new();
    let mut parts = w.parts();
    parts.mode = Mode::Prod; // build and instance signatures say dev
    assert_only_fails(&check(&w, &w.event(&parts, |_| {})), Check::Mode);
    parts.build = w.build_event(&w.cert_der, Mode::Prod, &w.builder);
    assert_only_fails(&check(&w, &w.event(&parts, |_| {})), Check::Mode);
    parts.instance = w.instance_event(&pcr4_from_instance_id(INSTANCE_ID), Mode::Prod, &w.launcher);
    assert!(check(&w, &w.event(&parts, |_| {})).is_valid());

    let mut parts = w.parts();
    parts.mode = Mode::Debug; // but PCR0 is set
    assert_only_fails(&check(&w, &w.event(&parts, |_| {})), Check::Mode);
}

#[test]
fn expected_pcrs_of_another_release() {
    let w = World::new();
    let event = w.valid();
    let doc = w.doc();
    let mut expected = Measurements::default();
    for i in [0u8, 1, 2, 8] {
        expected.pcrs.insert(i, doc.pcr(i));
    }
    let mut options = w.options();
    options.expected = Some(expected.clone());
    assert!(verify_instance(&event, &options).is_valid());
    for i in [0u8, 1, 2, 8] {
        let mut other = expected.clone();
        other
            .pcrs
            .insert(i, verifier::pcr::pcr_digest(b"other release"));
        options.expected = Some(other);
        let report = verify_instance(&event, &options);
        assert_only_fails(&report, Check::ExpectedPcrs);
        assert!(reason(&report, Check::ExpectedPcrs).contains(&format!("PCR{i}")));
    }
    // A pcrs.json without PCR0 cannot vouch for an image.
    expected.pcrs.remove(&0);
    options.expected = Some(expected);
    assert_only_fails(&verify_instance(&event, &options), Check::ExpectedPcrs);
}

#[test]
fn check_signatures_as_parent_and_enclave_use_it() {
    use verifier::attestation::Attestation;
    use verifier::verify::check_signatures;
    let w = World::new();
    let attested = Attestation::parse(&w.chain.attest(w.doc()))
        .unwrap()
        .verify(&w.root(), CHECK_AT)
        .unwrap();
    let parts = w.parts();
    assert!(check_signatures(&attested, parts.build.clone(), parts.instance.clone()).is_ok());

    let other_build = w.build_event(&builder_cert(&w.builder), Mode::Dev, &w.builder);
    let other_instance = w.instance_event(
        &pcr4_from_instance_id("i-0aaaaaaaaaaaaaaaa"),
        Mode::Dev,
        &w.launcher,
    );
    let someone = npub(&Keys::generate().public_key());
    let foreign_cert = signing_cert(
        &[
            (DnType::OrganizationName, "Nostr"),
            (DnType::OrganizationalUnitName, &someone),
        ],
        None,
    );
    let forged = tamper(&parts.instance, |j| j["created_at"] = 1.into());
    for (build, instance, why) in [
        (other_build, parts.instance.clone(), "PCR8"),
        (parts.build.clone(), other_instance, "PCR4"),
        (
            w.build_event(&foreign_cert, Mode::Dev, &w.builder),
            parts.instance.clone(),
            "PCR8",
        ),
        (parts.build.clone(), forged, "id"),
        (parts.instance.clone(), parts.instance.clone(), "kind"),
    ] {
        let e = check_signatures(&attested, build, instance)
            .unwrap_err()
            .to_string();
        assert!(e.contains(why), "{why}: {e}");
    }
    // A certificate naming someone else, attested as PCR8.
    let mut doc = w.doc();
    doc.pcrs.insert(8, pcr8_from_cert_der(&foreign_cert));
    let attested = Attestation::parse(&w.chain.attest(doc))
        .unwrap()
        .verify(&w.root(), CHECK_AT)
        .unwrap();
    let build = w.build_event(&foreign_cert, Mode::Dev, &w.builder);
    let e = check_signatures(&attested, build, parts.instance)
        .unwrap_err()
        .to_string();
    assert!(e.contains("OU or CN"), "{e}");
}

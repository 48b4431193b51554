// The cases of `forged_attestation.rs` and `forged_attestation_necs.rs`; `support::World`
// makes 63793 or 13793 events by the name of the test target.

use support::*;
use verifier::attestation::dev::{DevIssuer, Validity};
use verifier::attestation::{TrustedRoot, MAX_CABUNDLE};
use verifier::event::Mode;
use verifier::pcr::{pcr_digest, Pcr};
use verifier::verify::{verify_instance, Check, CheckTime, Outcome};

#[test]
fn the_self_made_world_is_valid() {
    let w = World::new();
    let report = check(&w, &w.valid());
    assert!(report.is_valid(), "{:#?}", report.checks);
    assert!(report
        .checks
        .iter()
        .all(|c| matches!(c.outcome, Outcome::Passed(_))));
    // The AWS root does not vouch for the dev chain.
    let mut options = w.options();
    options.root = TrustedRoot::aws_nitro_g1();
    let report = verify_instance(&w.valid(), &options);
    assert_only_fails(&report, Check::CertificateChain);
    assert!(reason(&report, Check::CertificateChain).contains("trusted root"));
}

#[test]
fn accepts_what_real_nsm_output_contains() {
    let w = World::new();
    let mut parts = w.parts();
    parts.high_s = true;
    parts.doc.user_data = Some(Vec::new());
    parts.doc.nonce = Some(Vec::new());
    let report = check(&w, &w.event(&parts, |_| {}));
    assert!(report.is_valid(), "{:#?}", report.checks);
}

/// Re-encodes a CBOR map (and its nested maps) with indefinite lengths.
fn indefinite(definite: &[u8]) -> Vec<u8> {
    use ciborium::value::Value;
    fn write(v: &Value, out: &mut Vec<u8>) {
        match v {
            Value::Map(entries) => {
                out.push(0xbf);
                for (k, v) in entries {
                    write(k, out);
                    write(v, out);
                }
                out.push(0xff);
            }
            v => ciborium::into_writer(v, &mut *out).unwrap(),
        }
    }
    let value: Value = ciborium::from_reader(definite).unwrap();
    let mut out = Vec::new();
    write(&value, &mut out);
    out
}

#[test]
fn accepts_indefinite_length_maps() {
    let w = World::new();
    let mut parts = w.parts();
    let payload = indefinite(&parts.doc.to_cbor());
    assert_eq!(payload[0], 0xbf);
    parts.content = Some(base64(&w.chain.leaf.sign_payload(&payload, true)));
    let report = check(&w, &w.event(&parts, |_| {}));
    assert!(report.is_valid(), "{:#?}", report.checks);
}

#[test]
fn attestation_decode_garbage_oversized_and_too_many_certificates() {
    let w = World::new();
    for content in [
        "not base64!".to_owned(),
        base64(b"\x84\x01\x02"),
        base64(&vec![0u8; 16 * 1024 + 1]),
    ] {
        let mut parts = w.parts();
        parts.content = Some(content);
        let report = check(&w, &w.event(&parts, |_| {}));
        assert_only_fails(&report, Check::AttestationDecode);
        assert!(matches!(
            report.outcome(Check::CertificateChain),
            Some(Outcome::NotRun(_))
        ));
    }
    let mut parts = w.parts();
    parts.doc.cabundle = vec![w.chain.root.der().to_vec(); MAX_CABUNDLE + 1];
    let report = check(&w, &w.event(&parts, |_| {}));
    assert_only_fails(&report, Check::AttestationDecode);
    assert!(reason(&report, Check::AttestationDecode).contains("cabundle"));
}

#[test]
fn attestation_signature_by_another_key() {
    let w = World::new();
    let other = World::new();
    let mut parts = w.parts();
    // Signed by another enclave's leaf, but claiming this world's leaf.
    let forged = other.chain.leaf.sign(&parts.doc);
    parts.content = Some(base64(&forged));
    let report = check(&w, &w.event(&parts, |_| {}));
    assert_only_fails(&report, Check::AttestationSignature);
}

#[test]
fn certificate_chain_expired_leaf() {
    let w = World::new();
    let mut parts = w.parts();
    parts.expiration = CHECK_AT + 10 * 3600;
    let event = w.event(&parts, |_| {});
    let mut options = w.options();
    options.time = CheckTime::At(T0 as u64 + 3 * 3600 + 1);
    let report = verify_instance(&event, &options);
    assert_only_fails(&report, Check::CertificateChain);
    assert!(reason(&report, Check::CertificateChain).contains("not valid at"));
    // Before the leaf exists.
    options.time = CheckTime::At(T0 as u64 - 1);
    assert_only_fails(&verify_instance(&event, &options), Check::CertificateChain);
}

#[test]
fn certificate_chain_forged_root_with_the_trusted_roots_subject_and_serial() {
    let w = World::new();
    let forged_root = DevIssuer::forge_root_like(w.chain.root.der()).unwrap();
    let subject = |der: &[u8]| verifier::attestation::CertificateInfo::from_der(der).unwrap();
    assert_eq!(
        subject(forged_root.der()).subject,
        subject(w.chain.root.der()).subject
    );
    assert_eq!(
        subject(forged_root.der()).serial,
        subject(w.chain.root.der()).serial
    );
    let validity = Validity::from(T0 - 86_400, 86_400 * 30);
    let intermediate = forged_root.new_intermediate("forged", validity).unwrap();
    let leaf = intermediate
        .new_leaf("forged leaf", Validity::from(T0, 3600))
        .unwrap();

    let mut parts = w.parts();
    parts.doc.certificate = leaf.der().to_vec();
    // The forged root itself in the bundle: not the trusted DER.
    parts.doc.cabundle = vec![forged_root.der().to_vec(), intermediate.der().to_vec()];
    parts.content = Some(base64(&leaf.sign(&parts.doc)));
    let report = check(&w, &w.event(&parts, |_| {}));
    assert_only_fails(&report, Check::CertificateChain);
    assert!(reason(&report, Check::CertificateChain).contains("does not start at the trusted root"));

    // The genuine root's DER in the bundle, the forged chain below it.
    parts.doc.cabundle = vec![w.chain.root.der().to_vec(), intermediate.der().to_vec()];
    parts.content = Some(base64(&leaf.sign(&parts.doc)));
    let report = check(&w, &w.event(&parts, |_| {}));
    assert_only_fails(&report, Check::CertificateChain);
}

#[test]
fn certificate_chain_forged_aws_root() {
    // Same attack against the embedded AWS root.
    let aws = TrustedRoot::aws_nitro_g1();
    let forged_root = DevIssuer::forge_root_like(aws.der()).unwrap();
    let validity = Validity::from(T0 - 86_400, 86_400 * 30);
    let intermediate = forged_root.new_intermediate("forged", validity).unwrap();
    let leaf = intermediate
        .new_leaf("forged leaf", Validity::from(T0, 3600))
        .unwrap();
    let w = World::new();
    let mut options = w.options();
    options.root = aws.clone();
    for bundle_root in [forged_root.der().to_vec(), aws.der().to_vec()] {
        let mut parts = w.parts();
        parts.doc.certificate = leaf.der().to_vec();
        parts.doc.cabundle = vec![bundle_root, intermediate.der().to_vec()];
        parts.content = Some(base64(&leaf.sign(&parts.doc)));
        let report = verify_instance(&w.event(&parts, |_| {}), &options);
        assert_only_fails(&report, Check::CertificateChain);
    }
}

#[test]
fn certificate_chain_intermediate_missing_swapped_or_reordered() {
    let w = World::new();
    // Missing.
    let mut parts = w.parts();
    parts.doc.cabundle = vec![w.chain.root.der().to_vec()];
    let report = check(&w, &w.event(&parts, |_| {}));
    assert_only_fails(&report, Check::CertificateChain);

    // Swapped for another chain's intermediate with the same name.
    let other = World::new();
    let mut parts = w.parts();
    parts.doc.cabundle = vec![
        w.chain.root.der().to_vec(),
        other.chain.intermediate.der().to_vec(),
    ];
    let report = check(&w, &w.event(&parts, |_| {}));
    assert_only_fails(&report, Check::CertificateChain);

    // Two intermediates given out of order: every certificate is genuine,
    // but the bundle is not the path the format prescribes.
    let validity = Validity::from(T0 - 86_400, 86_400 * 30);
    let second = w
        .chain
        .intermediate
        .new_intermediate("second", validity)
        .unwrap();
    let leaf = second.new_leaf("leaf", Validity::from(T0, 3600)).unwrap();
    let root = w.chain.root.der().to_vec();
    let first = w.chain.intermediate.der().to_vec();
    let mut parts = w.parts();
    parts.doc.certificate = leaf.der().to_vec();
    parts.doc.cabundle = vec![root.clone(), first.clone(), second.der().to_vec()];
    parts.content = Some(base64(&leaf.sign(&parts.doc)));
    assert!(check(&w, &w.event(&parts, |_| {})).is_valid());
    parts.doc.cabundle = vec![root, second.der().to_vec(), first];
    parts.content = Some(base64(&leaf.sign(&parts.doc)));
    let report = check(&w, &w.event(&parts, |_| {}));
    assert_only_fails(&report, Check::CertificateChain);
}

#[test]
fn certificate_chain_leaf_signed_by_the_root_skipping_the_bundle() {
    // A leaf issued directly by the root, while the bundle lists an unused
    // intermediate: webpki alone would accept the shorter path.
    let w = World::new();
    let leaf = w
        .chain
        .root
        .new_leaf("direct", Validity::from(T0, 3600))
        .unwrap();
    let mut parts = w.parts();
    parts.doc.certificate = leaf.der().to_vec();
    parts.content = Some(base64(&leaf.sign(&parts.doc)));
    let report = check(&w, &w.event(&parts, |_| {}));
    assert_only_fails(&report, Check::CertificateChain);
}

#[test]
fn digest_other_than_sha384() {
    let w = World::new();
    let mut parts = w.parts();
    parts.doc.digest = "SHA256".into();
    let report = check(&w, &w.event(&parts, |_| {}));
    assert_only_fails(&report, Check::Digest);
}

#[test]
fn public_key_of_another_service_or_absent() {
    let w = World::new();
    let mut parts = w.parts();
    parts.doc.public_key = Some(nostr::Keys::generate().public_key().to_bytes().to_vec());
    let report = check(&w, &w.event(&parts, |_| {}));
    assert_only_fails(&report, Check::PublicKey);

    parts.doc.public_key = None;
    let report = check(&w, &w.event(&parts, |_| {}));
    assert_only_fails(&report, Check::PublicKey);
}

#[test]
fn debug_mode_unless_allowed() {
    let w = World::new();
    let mut parts = w.parts();
    for i in [0u8, 1, 2] {
        parts.doc.pcrs.insert(i, Pcr::ZERO);
    }
    parts.mode = Mode::Debug;
    let event = w.event(&parts, |_| {});
    assert_only_fails(&check(&w, &event), Check::DebugMode);
    let mut options = w.options();
    options.allow_debug = true;
    let report = verify_instance(&event, &options);
    assert!(report.is_valid(), "{:#?}", report.checks);
}

#[test]
fn pcr_tags_that_differ_from_the_attestation_or_are_missing() {
    let w = World::new();
    let parts = w.parts();
    let other = pcr_digest(b"another image").to_string();
    let event = w.event(&parts, |tags| {
        let x = tags
            .iter_mut()
            .find(|t| t[0] == "x" && t[2] == "PCR1")
            .unwrap();
        x[1] = other.clone();
    });
    assert_only_fails(&check(&w, &event), Check::PcrTags);

    let event = w.event(&parts, |tags| {
        tags.retain(|t| !(t[0] == "x" && t[2] == "PCR2"))
    });
    assert_only_fails(&check(&w, &event), Check::PcrTags);

    let event = w.event(&parts, |tags| {
        tags.push(vec!["x".into(), Pcr::ZERO.to_string(), "PCR99".into()])
    });
    assert_only_fails(&check(&w, &event), Check::PcrTags);

    // An x tag for a PCR the announcement usually omits must still match.
    let event = w.event(&parts, |tags| {
        tags.push(vec!["x".into(), other.clone(), "PCR3".into()])
    });
    assert_only_fails(&check(&w, &event), Check::PcrTags);
}

#[test]
fn expiration_past_missing_or_garbled() {
    let w = World::new();
    let mut parts = w.parts();
    parts.expiration = CHECK_AT;
    assert_only_fails(&check(&w, &w.event(&parts, |_| {})), Check::Expiration);

    let parts = w.parts();
    let event = w.event(&parts, |tags| tags.retain(|t| t[0] != "expiration"));
    assert_only_fails(&check(&w, &event), Check::Expiration);

    let event = w.event(&parts, |tags| {
        tags.iter_mut().find(|t| t[0] == "expiration").unwrap()[1] = "soon".into()
    });
    assert_only_fails(&check(&w, &event), Check::Expiration);
}

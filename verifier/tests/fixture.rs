//! The real instance event published by a production enclave on 2025-04-01
//! (copied from `shared/fixtures/`), with a genuine AWS attestation.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use verifier::attestation::{Attestation, TrustedRoot};
use verifier::pcr::{pcr4_from_instance_id, pcr8_from_cert, Pcr};
use verifier::verify::{verify_instance_json, Check, CheckTime, Options, Outcome};

mod support;

use support::fixture::{fixture_build_cert, fixture_document, FIXTURE};
/// The attestation's own timestamp, 1743516970144 ms.
const ATTESTATION_TIME: u64 = 1_743_516_970;

fn options(time: CheckTime) -> Options {
    Options::new(TrustedRoot::aws_nitro_g1(), time)
}

fn failed(report: &verifier::verify::Report) -> Check {
    report.first_failure().expect("a failure").check
}

#[test]
fn valid_at_the_attestation_time() {
    let report = verify_instance_json(FIXTURE, &options(CheckTime::Attestation));
    assert!(report.is_valid(), "{:#?}", report.checks);
    assert_eq!(report.time, Some(ATTESTATION_TIME));
    let verified = report.verified().unwrap();
    assert_eq!(verified.admin_relay, "wss://relay.nsec.app");
    assert_eq!(
        report.summary.builder.as_deref(),
        Some("npub1xdtducdnjerex88gkg2qk2atsdlqsyxqaag4h05jmcpyspqt30wscmntxy")
    );

    let report = verify_instance_json(FIXTURE, &options(CheckTime::At(1_743_516_971)));
    assert!(report.is_valid(), "{:#?}", report.checks);
}

#[test]
fn expired_now() {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let report = verify_instance_json(FIXTURE, &options(CheckTime::At(now)));
    assert!(!report.is_valid());
    assert_eq!(failed(&report), Check::CertificateChain);
    assert!(matches!(
        report.outcome(Check::Expiration),
        Some(Outcome::Failed(_))
    ));
}

#[test]
fn mirror_rewritten_repo_tag_breaks_the_event_id() {
    let tampered = FIXTURE.replace(
        "https://github.com/nostrband/noauth-enclaved",
        "https://d.zyszy.best/nostrband/noauth-enclaved",
    );
    assert_ne!(tampered, FIXTURE);
    let report = verify_instance_json(&tampered, &options(CheckTime::Attestation));
    assert!(!report.is_valid());
    assert_eq!(failed(&report), Check::EventSignature);
    let Some(Outcome::Failed(reason)) = report.outcome(Check::EventSignature) else {
        panic!("event signature must fail")
    };
    assert!(reason.contains("id"), "{reason}");
}

#[test]
fn debug_and_expected_pcrs_options() {
    // The fixture is not a debug enclave: allowing debug changes nothing.
    let mut opts = options(CheckTime::Attestation);
    opts.allow_debug = true;
    assert!(verify_instance_json(FIXTURE, &opts).is_valid());

    let doc = attestation();
    let mut expected = verifier::pcr::Measurements::default();
    for i in [0u8, 1, 2, 8] {
        expected.pcrs.insert(i, doc.doc().pcr(i));
    }
    let mut opts = options(CheckTime::Attestation);
    opts.expected = Some(expected.clone());
    assert!(verify_instance_json(FIXTURE, &opts).is_valid());

    // The published release pcrs.json of the original project is another build.
    expected.pcrs.insert(0, "2adc99990f8c26accf04e319fd7024381f1d4b460d4b4c2309c96a3260969994011484eb8038e04993ed95e7c9c75918".parse().unwrap());
    opts.expected = Some(expected);
    let report = verify_instance_json(FIXTURE, &opts);
    assert_eq!(failed(&report), Check::ExpectedPcrs);
}

fn attestation() -> Attestation {
    Attestation::parse(&fixture_document()).unwrap()
}

#[test]
fn pcr4_is_the_digest_of_the_raw_instance_id() {
    let doc = attestation();
    assert_eq!(
        pcr4_from_instance_id("i-0ffff615a409a72d7"),
        doc.doc().pcr(4)
    );
    assert!(doc.doc().module_id.starts_with("i-0ffff615a409a72d7-enc"));
}

#[test]
fn pcr8_is_the_digest_of_the_build_certificate() {
    let der = fixture_build_cert();
    let pcr8 = pcr8_from_cert(&der).unwrap();
    assert_eq!(pcr8, attestation().doc().pcr(8));
    let pem = pem::encode(&pem::Pem::new("CERTIFICATE", der));
    assert_eq!(pcr8_from_cert(pem.as_bytes()).unwrap(), pcr8);
    assert_eq!(
        pcr8,
        "7e3f4c20f65f0a62de884a41ef73fd693c136173fec4ad19336d2ce3b1d63246da3383cbb83cd10dad77d5d1aafcdce1"
            .parse::<Pcr>()
            .unwrap()
    );
}

#[test]
fn the_real_document_decodes_as_aws_writes_it() {
    let a = attestation();
    let doc = a.doc();
    assert_eq!(doc.digest, "SHA384");
    assert_eq!(doc.timestamp_ms, 1_743_516_970_144);
    assert_eq!(doc.cabundle.len(), 4);
    assert_eq!(doc.cabundle[0], TrustedRoot::aws_nitro_g1().der());
    assert_eq!(doc.public_key.as_ref().map(Vec::len), Some(32));
    assert_eq!(doc.user_data, None);
    assert_eq!(doc.nonce, None);
    assert!(a.verify_signature().is_ok());
    let verified = a
        .verify(&TrustedRoot::aws_nitro_g1(), ATTESTATION_TIME)
        .unwrap();
    assert_eq!(verified.leaf_not_after(), 1_743_524_168);
    assert!(!verified.is_debug());
}

/// Tag names (with the `x` and `p` labels) of an event, in order.
fn tag_shape(tags: &serde_json::Value) -> Vec<String> {
    tags.as_array()
        .unwrap()
        .iter()
        .map(|t| {
            let t = t.as_array().unwrap();
            match t[0].as_str().unwrap() {
                "x" | "p" => format!("{} {}", t[0].as_str().unwrap(), t[2].as_str().unwrap()),
                name => name.to_owned(),
            }
        })
        .collect()
}

#[test]
fn our_builders_write_the_tags_of_the_production_events() {
    use nostr::JsonUtil;
    use support::fixture::tag_value;
    let theirs: serde_json::Value = serde_json::from_str(FIXTURE).unwrap();
    let w = support::World::new();
    let ours: serde_json::Value = serde_json::from_str(&w.valid().as_json()).unwrap();
    assert_eq!(tag_shape(&ours["tags"]), tag_shape(&theirs["tags"]));
    for (name, event) in [
        ("build", &w.parts().build),
        ("instance", &w.parts().instance),
    ] {
        let theirs: serde_json::Value = serde_json::from_str(&tag_value(&theirs, name)).unwrap();
        let ours: serde_json::Value = serde_json::from_str(&event.as_json()).unwrap();
        assert_eq!(
            tag_shape(&ours["tags"]),
            tag_shape(&theirs["tags"]),
            "{name}"
        );
        assert_eq!(ours["kind"], theirs["kind"]);
        assert_eq!(ours["content"], "");
    }
}

/// encli's own `build/build.json` (nostrband/encli at 3547f86): a real
/// kind 23794 build signature with a PEM certificate, and the `pcrs.json`
/// of the image it signed.
#[test]
fn reads_encli_real_23794_build_signature() {
    use nostr::JsonUtil;
    use verifier::event::build_signature::BuildSignature;
    use verifier::pcr::Measurements;
    let json = include_str!("data/encli-build-2025-06-12.json");
    let event = nostr::Event::from_json(json).unwrap();
    event.verify().unwrap();
    let build = BuildSignature::from_event(event).unwrap();
    assert_eq!(build.mode(), verifier::event::Mode::Dev);
    build.check_cert().unwrap();
    let pcrs = Measurements::from_json(include_bytes!("data/encli-pcrs-2025-06-12.json")).unwrap();
    let pcr8 = *pcrs.get(8).unwrap();
    build.check_pcr8(&pcr8).unwrap();
    assert_eq!(build.pcr8(), &pcr8);
    // Another image's PCR8 is refused.
    let pcr0 = *pcrs.get(0).unwrap();
    assert!(build.check_pcr8(&pcr0).is_err());
}

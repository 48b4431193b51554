//! Attestation documents, instance and signature events, and the
//! metadata protocol between enclave and parent.

use std::sync::OnceLock;

use nostr::{Event, JsonUtil};
use parent::metadata::{MetadataConfig, MetadataServer};
use parent::signature_files::SignatureFiles;
use verifier::attestation::{Attestation, AttestationDoc, CertificateInfo, TrustedRoot};
use verifier::event::build_signature::BuildSignature;
use verifier::event::instance_signature::InstanceSignature;
use verifier::protocol::{Reply, Request, StartResult};
use verifier::signing_cert::SigningCert;
use verifier::verify::{verify_instance_json, CheckTime, Options};

use crate::support::{fixture_attestation, parts, text};

/// A raw attestation document (COSE_Sign1 around the CBOR payload), and
/// the same as base64 text: parsed, then every check that does not need a
/// valid signature is run, against the AWS root at the document's time.
pub fn attestation_document(data: &[u8]) {
    let aws = TrustedRoot::aws_nitro_g1();
    if let Ok(att) = Attestation::parse(data) {
        let time = att.doc().timestamp_secs();
        let _ = att.verify_signature();
        let _ = att.check_digest();
        let _ = att.verify_chain(&aws, time);
        // What parses once must parse the same again from its payload.
        let again = AttestationDoc::from_cbor(&att.doc().to_cbor());
        assert!(again.is_ok(), "a parsed document's payload does not parse");
        let _ = att.verify(&aws, time);
    }
    if let Some(t) = text(data) {
        if let Ok(att) = Attestation::from_base64(t) {
            let time = att.doc().timestamp_secs();
            let _ = att.verify(&aws, time);
        }
    }
}

/// The CBOR payload alone; what parses must survive a round trip.
pub fn attestation_payload(data: &[u8]) {
    if let Ok(doc) = AttestationDoc::from_cbor(data) {
        let encoded = doc.to_cbor();
        match AttestationDoc::from_cbor(&encoded) {
            Ok(again) => assert_eq!(again.to_cbor(), encoded, "payload round trip"),
            Err(e) => panic!("a parsed payload does not parse again: {e}"),
        }
    }
}

/// The certificate path: the real document with its leaf and bundle
/// replaced by the input's parts (length-prefixed: leaf, then the bundle
/// from the root down), checked against the AWS root at the document's
/// time. Each part is also read as a certificate and as a dev root.
pub fn certificate_bundle(data: &[u8]) {
    let pieces = parts(data, 12);
    for p in &pieces {
        let _ = CertificateInfo::from_der(p);
        let _ = TrustedRoot::from_der_or_pem(p);
        let _ = SigningCert::from_der(p);
    }
    let Some((leaf, bundle)) = pieces.split_first() else {
        return;
    };
    let real = fixture_attestation();
    let mut doc = real.doc().clone();
    doc.certificate = leaf.to_vec();
    doc.cabundle = bundle.iter().map(|c| c.to_vec()).collect();
    let bytes = unsigned_document(&doc);
    if let Ok(att) = Attestation::parse(&bytes) {
        let time = att.doc().timestamp_secs();
        let ok = att.verify_chain(&TrustedRoot::aws_nitro_g1(), time).is_ok();
        // Only the real path can chain to the AWS root.
        if ok {
            assert_eq!(
                (&doc.certificate, &doc.cabundle),
                (&real.doc().certificate, &real.doc().cabundle),
                "a certificate path other than the real one chains to the AWS root"
            );
        }
    }
}

/// A COSE_Sign1 document around `doc` with the NSM's protected header and
/// a zero signature: the path check does not look at the signature, and
/// signing every input would make the target a hundred times slower.
fn unsigned_document(doc: &AttestationDoc) -> Vec<u8> {
    use ciborium::Value;
    let protected = encode(&Value::Map(vec![(
        Value::Integer(1.into()),
        Value::Integer((-35).into()),
    )]));
    encode(&Value::Array(vec![
        Value::Bytes(protected),
        Value::Map(Vec::new()),
        Value::Bytes(doc.to_cbor()),
        Value::Bytes(vec![0; 96]),
    ]))
}

fn encode(value: &ciborium::Value) -> Vec<u8> {
    let mut out = Vec::new();
    if let Err(e) = ciborium::into_writer(value, &mut out) {
        panic!("CBOR encoding to memory failed: {e}");
    }
    out
}

/// An instance event as JSON, verified as `verifier check` does: against
/// the AWS root at the document's time, debug refused and allowed. A
/// forgery must never verify.
pub fn instance_event(data: &[u8]) {
    let Some(json) = text(data) else {
        return;
    };
    let mut options = Options::new(TrustedRoot::aws_nitro_g1(), CheckTime::Attestation);
    only_the_fixture_verifies(json, &verify_instance_json(json, &options));
    options.allow_debug = true;
    let _ = verify_instance_json(json, &options);
}

/// The only event valid under the AWS root that anyone here can have is
/// the real fixture.
pub(crate) fn only_the_fixture_verifies(json: &str, report: &verifier::verify::Report) {
    if report.is_valid() {
        let event = Event::from_json(json).ok();
        assert_eq!(
            event.map(|e| e.id),
            Some(crate::support::fixture_event().id),
            "an instance event other than the fixture verified"
        );
    }
}

/// Builder (kind 63795) and launcher (kind 63796) signature events, with
/// their PCR and certificate checks against the fixture's measurements.
pub fn signature_events(data: &[u8]) {
    let Some(json) = text(data) else {
        return;
    };
    let Ok(event) = Event::from_json(json) else {
        return;
    };
    let doc = fixture_attestation().doc();
    if let Ok(build) = BuildSignature::from_event(event.clone()) {
        let _ = build.check_pcr8(&doc.pcr(8));
        let _ = build.check_cert();
    }
    if let Ok(instance) = InstanceSignature::from_event(event) {
        let _ = instance.check_pcr4(&doc.pcr(4));
    }
}

/// What the parent's metadata server reads: a request from the enclave.
pub fn metadata_request(data: &[u8]) {
    let Some(t) = text(data) else {
        return;
    };
    let _ = Request::from_json(t);
    let reply = server().handle(t, 1_743_500_000, "fuzz");
    // A reply is always well-formed JSON the enclave can read.
    assert!(
        Reply::from_json(&reply.to_json()).is_ok(),
        "the metadata server's reply does not parse"
    );
}

fn server() -> &'static MetadataServer {
    static SERVER: OnceLock<MetadataServer> = OnceLock::new();
    SERVER.get_or_init(|| {
        let dir = std::env::temp_dir().join("enclaved-fuzz-metadata-absent");
        MetadataServer::new(MetadataConfig {
            files: SignatureFiles {
                build: dir.join("build.json"),
                instance: dir.join("instance.json"),
                releases: None,
            },
            root: TrustedRoot::aws_nitro_g1(),
            announce_relays: vec!["wss://relay.example".into()],
            prod: true,
            max_connections: 4,
            state: None,
        })
    })
}

/// What the enclave reads back: the parent's reply and its start result.
pub fn metadata_reply(data: &[u8]) {
    let Some(t) = text(data) else {
        return;
    };
    if let Ok(reply) = Reply::from_json(t) {
        if let Ok(result) = StartResult::from_json(&reply.result) {
            // A result the enclave accepted survives a round trip.
            assert!(StartResult::from_json(&result.to_json()).is_ok());
        }
    }
    let _ = StartResult::from_json(t);
}

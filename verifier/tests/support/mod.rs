//! A self-made world for forgery tests: a dev CA chain (P-384 root →
//! intermediate → leaf, COSE signed like the NSM), a builder's signing
//! certificate, and the builder, launcher and service keys. `World::valid`
//! is an instance event that passes every check; each test changes one thing.

#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::expect_used)]

pub mod fixture;

use std::collections::BTreeMap;

use base64::Engine;
use nostr::{Event, EventBuilder, JsonUtil, Keys, Kind, Tag, Timestamp};
use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair, PKCS_ECDSA_P384_SHA384};
use verifier::attestation::dev::{builder_certificate, nsm_document, DevChain, Validity};
use verifier::attestation::{AttestationDoc, TrustedRoot};
use verifier::event::build_signature::BuildSignature;
use verifier::event::instance::InstanceEvent;
use verifier::event::instance_signature::InstanceSignature;
use verifier::event::{npub, Mode, KIND_INSTANCE};
use verifier::pcr::{pcr4_from_instance_id, pcr8_from_cert_der, pcr_digest, Pcr};
use verifier::signing_cert::SigningCert;
use verifier::verify::{verify_instance, Check, CheckTime, Options, Outcome, Report};

/// The time the world is made at; checks run one minute later.
pub const T0: i64 = 1_790_000_000;
pub const CHECK_AT: u64 = T0 as u64 + 60;
pub const INSTANCE_ID: &str = "i-0123456789abcdef0";

pub struct World {
    pub chain: DevChain,
    pub service: Keys,
    pub builder: Keys,
    pub launcher: Keys,
    pub cert_der: Vec<u8>,
}

/// What goes into an instance event, before tags are written.
pub struct Parts {
    pub doc: AttestationDoc,
    pub high_s: bool,
    pub kind: u16,
    pub mode: Mode,
    pub expiration: u64,
    pub build: Event,
    pub instance: Event,
    /// Replaces the base64 of the signed document.
    pub content: Option<String>,
}

impl World {
    pub fn new() -> Self {
        let builder = Keys::generate();
        let cert_der = builder_cert(&builder);
        Self {
            chain: DevChain::generate(T0).unwrap(),
            service: Keys::generate(),
            builder,
            launcher: Keys::generate(),
            cert_der,
        }
    }

    pub fn root(&self) -> TrustedRoot {
        TrustedRoot::from_der_or_pem(self.chain.root.der()).unwrap()
    }

    pub fn options(&self) -> Options {
        Options::new(self.root(), CheckTime::At(CHECK_AT))
    }

    /// A document as the NSM makes it for this world, not yet signed.
    pub fn doc(&self) -> AttestationDoc {
        let pcrs = BTreeMap::from([
            (0, pcr_digest(b"image")),
            (1, pcr_digest(b"kernel")),
            (2, pcr_digest(b"application")),
            (4, pcr4_from_instance_id(INSTANCE_ID)),
            (8, pcr8_from_cert_der(&self.cert_der)),
        ]);
        let mut doc = nsm_document(
            &format!("{INSTANCE_ID}-enc0123456789abcdef"),
            T0 as u64 * 1000 + 1,
            &pcrs,
            &self.service.public_key().to_bytes(),
        );
        doc.certificate = self.chain.leaf.der().to_vec();
        doc.cabundle = self.chain.cabundle();
        doc
    }

    pub fn build_event(&self, cert_der: &[u8], mode: Mode, keys: &Keys) -> Event {
        let cert = SigningCert::from_der(cert_der).unwrap();
        sign(BuildSignature::builder(&cert, mode).unwrap(), keys)
    }

    pub fn instance_event(&self, pcr4: &Pcr, mode: Mode, keys: &Keys) -> Event {
        sign(InstanceSignature::builder(pcr4, mode).unwrap(), keys)
    }

    pub fn parts(&self) -> Parts {
        Parts {
            doc: self.doc(),
            high_s: false,
            kind: KIND_INSTANCE,
            mode: Mode::Dev,
            expiration: CHECK_AT + 3 * 3600,
            build: self.build_event(&self.cert_der, Mode::Dev, &self.builder),
            instance: self.instance_event(
                &pcr4_from_instance_id(INSTANCE_ID),
                Mode::Dev,
                &self.launcher,
            ),
            content: None,
        }
    }

    /// The instance event of `parts`, with its tags passed through `edit`
    /// before the service key signs it.
    pub fn event(&self, parts: &Parts, edit: impl FnOnce(&mut Vec<Vec<String>>)) -> Event {
        let document = self
            .chain
            .leaf
            .sign_payload(&parts.doc.to_cbor(), parts.high_s);
        let template = InstanceEvent {
            repo: "https://github.com/nostrband/noauth-enclaved",
            name: "enclaved",
            version: "0.1.0",
            module_id: &parts.doc.module_id,
            pcrs: &parts.doc.pcrs,
            mode: parts.mode,
            admin_relay: "wss://relay.example",
            expiration: parts.expiration,
            alt: "enclaved instance",
            build: &parts.build,
            instance: &parts.instance,
            attestation: &document,
            created_at: T0 as u64,
        };
        let unsigned = template.builder().unwrap().build(self.service.public_key());
        let mut tags: Vec<Vec<String>> = unsigned
            .tags
            .iter()
            .map(|t| t.as_slice().to_vec())
            .collect();
        edit(&mut tags);
        let content = parts.content.clone().unwrap_or(unsigned.content);
        let builder = EventBuilder::new(Kind::from_u16(parts.kind), content)
            .tags(tags.into_iter().map(|t| Tag::parse(t).unwrap()))
            .custom_created_at(Timestamp::from_secs(T0 as u64))
            .allow_self_tagging();
        sign(builder, &self.service)
    }

    pub fn valid(&self) -> Event {
        self.event(&self.parts(), |_| {})
    }
}

pub fn sign(builder: EventBuilder, keys: &Keys) -> Event {
    builder
        .custom_created_at(Timestamp::from_secs(T0 as u64))
        .sign_with_keys(keys)
        .unwrap()
}

/// A new well-formed image signing certificate for `builder`.
pub fn builder_cert(builder: &Keys) -> Vec<u8> {
    builder_certificate(
        &npub(&builder.public_key()),
        Validity::from(T0 - 86_400, 86_400 * 365),
    )
    .unwrap()
}

/// A P-384 certificate with `subject`; self-signed unless `issuer_key` is given
/// (then signed by that key under the same name, so issuer == subject but the
/// self-signature does not verify).
pub fn signing_cert(subject: &[(DnType, &str)], issuer_key: Option<&KeyPair>) -> Vec<u8> {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    for (ty, value) in subject {
        dn.push(ty.clone(), *value);
    }
    params.distinguished_name = dn;
    params.not_before = time::OffsetDateTime::from_unix_timestamp(T0 - 86_400).unwrap();
    params.not_after = time::OffsetDateTime::from_unix_timestamp(T0 + 86_400 * 365).unwrap();
    let key = KeyPair::generate_for(&PKCS_ECDSA_P384_SHA384).unwrap();
    match issuer_key {
        None => params.self_signed(&key).unwrap().der().to_vec(),
        Some(issuer_key) => {
            let issuer = rcgen::Issuer::from_params(&params, issuer_key);
            params.signed_by(&key, &issuer).unwrap().der().to_vec()
        }
    }
}

pub fn base64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Round-trips an event through JSON with `edit` applied, keeping id and sig.
pub fn tamper(event: &Event, edit: impl FnOnce(&mut serde_json::Value)) -> Event {
    let mut json: serde_json::Value = serde_json::from_str(&event.as_json()).unwrap();
    edit(&mut json);
    Event::from_json(json.to_string()).unwrap()
}

pub fn check(world: &World, event: &Event) -> Report {
    verify_instance(event, &world.options())
}

/// Exactly `check` failed; every other check passed or could not run
/// because of it.
#[track_caller]
pub fn assert_only_fails(report: &Report, check: Check) {
    assert!(
        !report.is_valid(),
        "expected {check:?} to fail: {:#?}",
        report.checks
    );
    let failed: Vec<Check> = report
        .checks
        .iter()
        .filter(|c| matches!(c.outcome, Outcome::Failed(_)))
        .map(|c| c.check)
        .collect();
    assert_eq!(failed, vec![check], "{:#?}", report.checks);
    assert_eq!(report.first_failure().map(|c| c.check), Some(check));
}

/// The failure reason of `check`.
pub fn reason(report: &Report, check: Check) -> String {
    match report.outcome(check) {
        Some(Outcome::Failed(r)) => r.clone(),
        other => panic!("{check:?} did not fail: {other:?}"),
    }
}

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
use verifier::event::tee_root::TeeRoot;
use verifier::event::{npub, Mode, KIND_ANNOUNCEMENT, KIND_INSTANCE};
use verifier::pcr::{pcr4_from_instance_id, pcr8_from_cert_der, pcr_digest, Pcr};
use verifier::release::ReleaseSignature;
use verifier::signing_cert::SigningCert;
use verifier::verify::{verify_instance, Check, CheckTime, Options, Outcome, Report};

/// The time the world is made at; checks run one minute later.
pub const T0: i64 = 1_790_000_000;
pub const CHECK_AT: u64 = T0 as u64 + 60;
pub const INSTANCE_ID: &str = "i-0123456789abcdef0";

/// The kind the world announces in: test targets whose name ends in
/// `_necs` (which include the same cases) make NECS announcements (13793),
/// the others instance events (63793).
pub const ANNOUNCEMENT_KIND: u16 = if ends_with_necs(env!("CARGO_CRATE_NAME").as_bytes()) {
    KIND_ANNOUNCEMENT
} else {
    KIND_INSTANCE
};

const fn ends_with_necs(name: &[u8]) -> bool {
    let n = name.len();
    n >= 5
        && name[n - 5] == b'_'
        && name[n - 4] == b'n'
        && name[n - 3] == b'e'
        && name[n - 2] == b'c'
        && name[n - 1] == b's'
}

/// When the tee_root of a 13793 expires (independent of the event's own
/// expiration, so that each check can fail alone).
pub const TEE_ROOT_EXPIRATION: u64 = CHECK_AT + 3 * 3600;

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
    /// Release signatures, in `release` tags.
    pub releases: Vec<Event>,
    /// 13793 only: passes the tee_root's tags through this before the
    /// service key (or `tee_root_signer`) signs it.
    pub tee_root_edit: fn(&mut Vec<Vec<String>>),
    /// 13793 only: who signs the tee_root (default: the service key).
    pub tee_root_signer: Option<Keys>,
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
            kind: ANNOUNCEMENT_KIND,
            mode: Mode::Dev,
            expiration: CHECK_AT + 3 * 3600,
            build: self.build_event(&self.cert_der, Mode::Dev, &self.builder),
            instance: self.instance_event(
                &pcr4_from_instance_id(INSTANCE_ID),
                Mode::Dev,
                &self.launcher,
            ),
            content: None,
            releases: Vec::new(),
            tee_root_edit: |_| {},
            tee_root_signer: None,
        }
    }

    /// A maintainer's release signature of `pcrs` (PCR0/1/2).
    pub fn release_event(&self, keys: &Keys, version: &str, mode: Mode, pcrs: [Pcr; 3]) -> Event {
        let version = verifier::release::parse_version(version).unwrap();
        sign(
            ReleaseSignature::builder(
                "https://github.com/nostrband/noauth-enclaved",
                &version,
                mode,
                &pcrs,
            )
            .unwrap(),
            keys,
        )
    }

    /// PCR0/1/2 of this world's image.
    pub fn code_pcrs(&self) -> [Pcr; 3] {
        let doc = self.doc();
        [doc.pcr(0), doc.pcr(1), doc.pcr(2)]
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
            releases: &parts.releases,
            attestation: &document,
            created_at: T0 as u64,
        };
        let unsigned = if ANNOUNCEMENT_KIND == KIND_ANNOUNCEMENT {
            let root = TeeRoot::builder(&document, parts.mode, TEE_ROOT_EXPIRATION, T0 as u64)
                .unwrap()
                .build(self.service.public_key());
            let mut root_tags: Vec<Vec<String>> =
                root.tags.iter().map(|t| t.as_slice().to_vec()).collect();
            (parts.tee_root_edit)(&mut root_tags);
            let content = parts.content.clone().unwrap_or(root.content);
            let tee_root = sign(
                EventBuilder::new(root.kind, content)
                    .tags(root_tags.into_iter().map(|t| Tag::parse(t).unwrap())),
                parts.tee_root_signer.as_ref().unwrap_or(&self.service),
            );
            template
                .announcement_builder(&tee_root)
                .unwrap()
                .build(self.service.public_key())
        } else {
            let mut unsigned = template.builder().unwrap().build(self.service.public_key());
            if let Some(content) = &parts.content {
                unsigned.content = content.clone();
            }
            unsigned
        };
        let mut tags: Vec<Vec<String>> = unsigned
            .tags
            .iter()
            .map(|t| t.as_slice().to_vec())
            .collect();
        edit(&mut tags);
        let content = unsigned.content;
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

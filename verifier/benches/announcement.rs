//! A NECS 13793 announcement beside a 63793 instance event of the same
//! enclave, and `discover` over 1,000 events of 1,000 enclaves that share
//! a root and three intermediates (AWS's shape: root, regional, zonal and
//! host CAs) and one builder. Run: `cargo bench -p verifier --bench
//! announcement`. Figures: BENCHMARKS.md.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use nostr::{Event, Keys, Timestamp};
use verifier::attestation::dev::{builder_certificate, nsm_document, DevIssuer, DevLeaf, Validity};
use verifier::attestation::TrustedRoot;
use verifier::discover::{Accept, Discovery};
use verifier::event::build_signature::BuildSignature;
use verifier::event::instance::InstanceEvent;
use verifier::event::instance_signature::InstanceSignature;
use verifier::event::tee_root::TeeRoot;
use verifier::event::{npub, Mode};
use verifier::pcr::{pcr4_from_instance_id, pcr8_from_cert_der, pcr_digest};
use verifier::signing_cert::SigningCert;
use verifier::verify::{verify_instance, CheckTime, Options};

const T0: u64 = 1_790_000_000;
const INSTANCE_ID: &str = "i-0123456789abcdef0";

/// Root → three intermediates, shared by every enclave.
struct Cas {
    root: DevIssuer,
    intermediates: Vec<DevIssuer>,
}

impl Cas {
    fn new() -> Self {
        let v = Validity::from(T0 as i64 - 86_400, 10 * 365 * 86_400);
        let root = DevIssuer::new_root("bench root", v).unwrap();
        let i1 = root.new_intermediate("bench regional", v).unwrap();
        let i2 = i1.new_intermediate("bench zonal", v).unwrap();
        let i3 = i2.new_intermediate("bench host", v).unwrap();
        Self {
            root,
            intermediates: vec![i1, i2, i3],
        }
    }

    fn leaf(&self) -> DevLeaf {
        let v = Validity::from(T0 as i64 - 60, 3 * 3600);
        self.intermediates
            .last()
            .unwrap()
            .new_leaf("bench enclave", v)
            .unwrap()
    }

    fn bundle(&self) -> Vec<Vec<u8>> {
        std::iter::once(&self.root)
            .chain(&self.intermediates)
            .map(|c| c.der().to_vec())
            .collect()
    }
}

/// One builder, one launcher: their events, shared by every enclave.
struct Signers {
    cert_der: Vec<u8>,
    build: Event,
    instance: Event,
}

impl Signers {
    fn new() -> Self {
        let builder = Keys::generate();
        let v = Validity::from(T0 as i64 - 86_400, 86_400 * 365);
        let cert_der = builder_certificate(&npub(&builder.public_key()), v).unwrap();
        let at = Timestamp::from_secs(T0);
        let build = BuildSignature::builder(&SigningCert::from_der(&cert_der).unwrap(), Mode::Dev)
            .unwrap()
            .custom_created_at(at)
            .sign_with_keys(&builder)
            .unwrap();
        let instance = InstanceSignature::builder(&pcr4_from_instance_id(INSTANCE_ID), Mode::Dev)
            .unwrap()
            .custom_created_at(at)
            .sign_with_keys(&Keys::generate())
            .unwrap();
        Self {
            cert_der,
            build,
            instance,
        }
    }
}

/// An enclave's 63793 and 13793 events, with its own service key and leaf.
fn enclave(cas: &Cas, signers: &Signers) -> (Event, Event) {
    let service = Keys::generate();
    let pcrs = BTreeMap::from([
        (0, pcr_digest(b"image")),
        (1, pcr_digest(b"kernel")),
        (2, pcr_digest(b"application")),
        (4, pcr4_from_instance_id(INSTANCE_ID)),
        (8, pcr8_from_cert_der(&signers.cert_der)),
    ]);
    let leaf = cas.leaf();
    let mut doc = nsm_document(
        &format!("{INSTANCE_ID}-enc0123456789abcdef"),
        T0 * 1000,
        &pcrs,
        &service.public_key().to_bytes(),
    );
    doc.certificate = leaf.der().to_vec();
    doc.cabundle = cas.bundle();
    let document = leaf.sign(&doc);
    let template = InstanceEvent {
        repo: "https://github.com/nostrband/noauth-enclaved",
        name: "enclaved",
        version: "0.1.0",
        module_id: &doc.module_id,
        pcrs: &doc.pcrs,
        mode: Mode::Dev,
        admin_relay: "wss://relay.example",
        expiration: T0 + 3 * 3600,
        alt: "enclaved instance",
        build: &signers.build,
        instance: &signers.instance,
        releases: &[],
        attestation: &document,
        created_at: T0,
    };
    let event = template
        .builder()
        .unwrap()
        .sign_with_keys(&service)
        .unwrap();
    let tee_root = TeeRoot::builder(&document, Mode::Dev, T0 + 3 * 3600, T0)
        .unwrap()
        .sign_with_keys(&service)
        .unwrap();
    let announcement = template
        .announcement_builder(&tee_root)
        .unwrap()
        .sign_with_keys(&service)
        .unwrap();
    (event, announcement)
}

fn benches(c: &mut Criterion) {
    let cas = Cas::new();
    let signers = Signers::new();
    let root = TrustedRoot::from_der_or_pem(cas.root.der()).unwrap();
    let options = Options::new(root, CheckTime::At(T0 + 60));
    let (event, announcement) = enclave(&cas, &signers);
    assert!(verify_instance(&event, &options).is_valid());
    assert!(verify_instance(&announcement, &options).is_valid());

    c.bench_function("kind/63793 instance event (whole check)", |b| {
        b.iter(|| verify_instance(black_box(&event), &options))
    });
    c.bench_function("kind/13793 announcement (whole check)", |b| {
        b.iter(|| verify_instance(black_box(&announcement), &options))
    });

    // One event again and again with a warm run cache: what each further
    // event of a discover run costs.
    let mut cached = options.clone();
    cached.cache = Some(std::sync::Arc::new(verifier::cache::VerifyCache::new()));
    assert!(verify_instance(&event, &cached).is_valid());
    c.bench_function("kind/63793 with a warm run cache", |b| {
        b.iter(|| verify_instance(black_box(&event), &cached))
    });
    c.bench_function("kind/13793 with a warm run cache", |b| {
        b.iter(|| verify_instance(black_box(&announcement), &cached))
    });

    // `cargo test --all-targets` runs each bench once, unoptimized: a few
    // enclaves are enough to check that it works there.
    let enclaves = if std::env::args().any(|a| a == "--bench") {
        500
    } else {
        5
    };
    let mut events = Vec::new();
    for _ in 0..enclaves {
        let (e, a) = enclave(&cas, &signers);
        events.push(e);
        events.push(a);
    }
    let accept = Accept::default();
    let found = Discovery::from_events(&events, &options, &accept);
    assert_eq!(found.instances.len(), enclaves);
    assert!(found.refused.is_empty());

    let mut group = c.benchmark_group("discover");
    group.sample_size(10);
    let n = events.len();
    group.bench_function(
        format!("{n} events, {enclaves} enclaves (run cache)"),
        |b| b.iter(|| Discovery::from_events(black_box(&events), &options, &accept)),
    );
    group.bench_function(format!("{n} events, each checked alone (no cache)"), |b| {
        b.iter(|| {
            events
                .iter()
                .filter(|e| verify_instance(black_box(e), &options).is_valid())
                .count()
        })
    });
    group.finish();
}

criterion_group! {
    name = announcement;
    config = Criterion::default().sample_size(50);
    targets = benches
}
criterion_main!(announcement);

//! Cost of verifying the real instance event of 2025-04-01 and of its parts.
//! Run: `cargo bench -p verifier --bench verify`. Figures: BENCHMARKS.md.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use nostr::{Event, JsonUtil};
use verifier::attestation::{Attestation, TrustedRoot};
use verifier::event::build_signature::BuildSignature;
use verifier::event::instance::embedded_event;
use verifier::verify::{verify_instance, verify_instance_json, CheckTime, Options};

const FIXTURE: &str = include_str!("../tests/data/instance-2025-04-01.json");
const AT: u64 = 1_743_516_970;

fn benches(c: &mut Criterion) {
    let options = Options::new(TrustedRoot::aws_nitro_g1(), CheckTime::At(AT));
    let event = Event::from_json(FIXTURE).unwrap();
    assert!(verify_instance(&event, &options).is_valid());
    let attestation = Attestation::from_base64(&event.content).unwrap();
    let root = TrustedRoot::aws_nitro_g1();
    let build_json = embedded_event(&event, "build").unwrap();
    let build = BuildSignature::from_event(build_json.clone()).unwrap();

    c.bench_function("instance/verify_json (whole check, from JSON)", |b| {
        b.iter(|| verify_instance_json(black_box(FIXTURE), &options))
    });
    c.bench_function("instance/verify (whole check, parsed event)", |b| {
        b.iter(|| verify_instance(black_box(&event), &options))
    });
    c.bench_function("part/event_json_parse", |b| {
        b.iter(|| Event::from_json(black_box(FIXTURE)).unwrap())
    });
    c.bench_function("part/schnorr (id + BIP-340 signature, one event)", |b| {
        b.iter(|| black_box(&event).verify().unwrap())
    });
    c.bench_function("part/attestation_decode (base64 + COSE + CBOR)", |b| {
        b.iter(|| Attestation::from_base64(black_box(&event.content)).unwrap())
    });
    c.bench_function("part/cose_es384_signature", |b| {
        b.iter(|| black_box(&attestation).verify_signature().unwrap())
    });
    c.bench_function("part/certificate_chain (5 certificates)", |b| {
        b.iter(|| black_box(&attestation).verify_chain(&root, AT).unwrap())
    });
    c.bench_function(
        "part/build_signature (parse + schnorr + cert self-signature)",
        |b| {
            b.iter(|| {
                let build = BuildSignature::from_event(black_box(build_json.clone())).unwrap();
                build.check_cert().unwrap();
            })
        },
    );
    c.bench_function("part/build_cert_check (P-384 self-signature)", |b| {
        b.iter(|| black_box(&build).check_cert().unwrap())
    });
}

criterion_group! {
    name = verify;
    config = Criterion::default().sample_size(50);
    targets = benches
}
criterion_main!(verify);

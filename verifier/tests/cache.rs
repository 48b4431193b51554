//! The run cache of `discover`: a bundle path or a builder certificate
//! that verified once is not verified again, and nothing that would fail a
//! full check passes because of it.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::collections::BTreeMap;

use verifier::attestation::dev::{builder_certificate, nsm_document, DevChain, Validity};
use verifier::attestation::{Attestation, TrustedRoot};
use verifier::cache::VerifyCache;
use verifier::signing_cert::SigningCert;

const NOW: i64 = 1_800_000_000;

fn document(chain: &DevChain, key: u8) -> Attestation {
    let doc = nsm_document("i-0-enc0", NOW as u64 * 1000, &BTreeMap::new(), &[key; 32]);
    Attestation::parse(&chain.attest(doc)).unwrap()
}

fn root(chain: &DevChain) -> TrustedRoot {
    TrustedRoot::from_der_or_pem(chain.root.der()).unwrap()
}

#[test]
fn a_cached_bundle_still_checks_each_leaf() {
    let mut chain = DevChain::generate(NOW - 60).unwrap();
    let root = root(&chain);
    let cache = VerifyCache::new();
    let t = NOW as u64;
    let first = document(&chain, 1);
    first.verify_chain_cached(&root, t, Some(&cache)).unwrap();
    assert_eq!(cache.len(), 1, "the bundle path is remembered");

    // Another enclave's leaf under the same intermediate: the cached path.
    chain.renew_leaf(NOW - 30, 3 * 3600).unwrap();
    let second = document(&chain, 2);
    second.verify_chain_cached(&root, t, Some(&cache)).unwrap();
    assert_eq!(cache.len(), 1);

    // A leaf signed by another intermediate, passed off with the cached
    // bundle: refused, with and without the cache.
    let other = DevChain::generate(NOW - 60).unwrap();
    let mut forged = document(&other, 3).doc().clone();
    forged.cabundle = chain.cabundle();
    let forged = Attestation::parse(&other.leaf.sign(&forged)).unwrap();
    assert!(forged.verify_chain(&root, t).is_err());
    assert!(forged.verify_chain_cached(&root, t, Some(&cache)).is_err());

    // A leaf that is not valid at the time: refused though the path is cached.
    chain.renew_leaf(NOW + 3600, 3 * 3600).unwrap();
    let early = document(&chain, 4);
    let err = early
        .verify_chain_cached(&root, t, Some(&cache))
        .unwrap_err()
        .to_string();
    assert!(err.contains("not valid at"), "{err}");

    // The same bundle at another time, or under another root, is not cached.
    chain.renew_leaf(NOW - 30, 3 * 3600).unwrap();
    let later = document(&chain, 5);
    later
        .verify_chain_cached(&root, t + 1, Some(&cache))
        .unwrap();
    assert_eq!(cache.len(), 2);
    let stranger = TrustedRoot::from_der_or_pem(other.root.der()).unwrap();
    assert!(later
        .verify_chain_cached(&stranger, t, Some(&cache))
        .is_err());
}

#[test]
fn a_failed_path_is_not_remembered() {
    let chain = DevChain::generate(NOW - 60).unwrap();
    let other = DevChain::generate(NOW - 60).unwrap();
    let cache = VerifyCache::new();
    // A bundle whose intermediate was not issued by its root.
    let mut doc = document(&chain, 1).doc().clone();
    doc.cabundle = vec![chain.root.der().to_vec(), other.intermediate.der().to_vec()];
    let doc = Attestation::parse(&chain.leaf.sign(&doc)).unwrap();
    let root = root(&chain);
    for _ in 0..2 {
        assert!(doc
            .verify_chain_cached(&root, NOW as u64, Some(&cache))
            .is_err());
    }
    assert!(cache.is_empty());
}

#[test]
fn a_builder_certificate_is_checked_once_and_only_as_itself() {
    let npub = "npub1xdtducdnjerex88gkg2qk2atsdlqsyxqaag4h05jmcpyspqt30wscmntxy";
    let der = builder_certificate(npub, Validity::from(NOW - 60, 86_400)).unwrap();
    let cert = SigningCert::from_der(&der).unwrap();
    let cache = VerifyCache::new();
    cert.check_builder_cached(npub, Some(&cache)).unwrap();
    assert_eq!(cache.len(), 1);
    cert.check_builder_cached(npub, Some(&cache)).unwrap();
    // The cached self-signature does not excuse the name.
    let someone_else = "npub1sg6plzptd64u62a878hep2kev88swjh3tw00gjsfl8f237lmu63q0uf63m";
    assert!(cert
        .check_builder_cached(someone_else, Some(&cache))
        .is_err());
    // The same certificate with a broken signature is other bytes: checked
    // in full, and refused.
    let mut broken = der.clone();
    let last = broken.len() - 1;
    broken[last] ^= 1;
    let broken = SigningCert::from_der(&broken).unwrap();
    assert!(broken.check_builder_cached(npub, Some(&cache)).is_err());
    assert_eq!(cache.len(), 1);
}

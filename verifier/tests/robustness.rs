//! Corrupted input never panics and never verifies: every single-byte
//! change and truncation of the real attestation document, and byte changes
//! of the real event JSON, are rejected.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod support;

use support::fixture::{fixture_document as document, FIXTURE};
use verifier::attestation::{Attestation, TrustedRoot};
use verifier::verify::{verify_instance_json, CheckTime, Options};

const AT: u64 = 1_743_516_970;

/// A small deterministic generator (xorshift64*), so failures reproduce.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn verifies(bytes: &[u8]) -> bool {
    Attestation::parse(bytes)
        .and_then(|a| a.verify(&TrustedRoot::aws_nitro_g1(), AT))
        .is_ok()
}

#[test]
fn every_changed_byte_of_the_document_is_rejected() {
    let original = document();
    assert!(verifies(&original));
    let mut rng = Rng(0x5eed_1234_5678_9abc);
    // Every position once, with a random non-zero change.
    for i in 0..original.len() {
        let mut doc = original.clone();
        doc[i] ^= (rng.below(255) + 1) as u8;
        assert!(!verifies(&doc), "a change at byte {i} still verifies");
    }
}

#[test]
fn truncations_and_extensions_are_rejected() {
    let original = document();
    for len in 0..original.len() {
        assert!(!verifies(&original[..len]), "truncated to {len}");
    }
    let mut longer = original.clone();
    longer.push(0);
    assert!(!verifies(&longer));
}

#[test]
fn random_byte_changes_of_the_event_json_are_rejected() {
    let options = Options::new(TrustedRoot::aws_nitro_g1(), CheckTime::Attestation);
    assert!(verify_instance_json(FIXTURE, &options).is_valid());
    let original = FIXTURE.as_bytes();
    let mut rng = Rng(0xfeed_beef_cafe_f00d);
    for _ in 0..300 {
        let mut json = original.to_vec();
        let i = rng.below(json.len());
        let alphabet = b"0123456789abcdef\"{}[],:AZ";
        json[i] = alphabet[rng.below(alphabet.len())];
        if json == original {
            continue;
        }
        // Whitespace between tokens is not signed; a change there may keep
        // the event intact.
        if original[i].is_ascii_whitespace() && json[i].is_ascii_whitespace() {
            continue;
        }
        let text = String::from_utf8_lossy(&json);
        let report = verify_instance_json(&text, &options);
        assert!(!report.is_valid(), "a change at byte {i} still verifies");
    }
}

//! Release signatures (kind 63794) in instance events (63793): every
//! refusal of a release that the caller's trust does not accept.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod support;

include!("forgeries/releases.rs");

#[test]
fn a_release_of_zero_pcrs_or_oversized_is_refused() {
    use nostr::{EventBuilder, Kind, Tag};
    use verifier::release::{ReleaseSignature, KIND_RELEASE_SIGNATURE};
    let keys = Keys::generate();
    let zero = "0".repeat(96);
    let event = |extra: Option<Tag>, pcr0: &str| {
        let mut tags = vec![
            Tag::parse(["r", "https://github.com/nostrband/noauth-enclaved"]).unwrap(),
            Tag::parse(["v", "0.1.0"]).unwrap(),
            Tag::parse(["t", "prod"]).unwrap(),
            Tag::parse(["x", pcr0, "PCR0"]).unwrap(),
            Tag::parse(["x", &"11".repeat(48), "PCR1"]).unwrap(),
            Tag::parse(["x", &"22".repeat(48), "PCR2"]).unwrap(),
        ];
        tags.extend(extra);
        sign(
            EventBuilder::new(Kind::from_u16(KIND_RELEASE_SIGNATURE), "").tags(tags),
            &keys,
        )
    };
    // What every debug enclave measures is no release.
    let err = ReleaseSignature::from_event(event(None, &zero))
        .unwrap_err()
        .to_string();
    assert!(err.contains("all zeros"), "{err}");
    let ok = event(None, &"33".repeat(48));
    ReleaseSignature::from_event(ok).unwrap();
    // An event padded past the cap, which 16 of would swell an announcement.
    let padded = event(
        Some(Tag::parse(["alt", &"x".repeat(4000)]).unwrap()),
        &"33".repeat(48),
    );
    let err = ReleaseSignature::from_event(padded)
        .unwrap_err()
        .to_string();
    assert!(err.contains("too large"), "{err}");
}

//! The forgeries of `forged_attestation.rs`, each on a NECS announcement
//! (kind 13793, the attestation in its 23793 tee_root): every class refused
//! for 63793 is refused for 13793 too.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod support;

include!("forgeries/attestation.rs");

//! Instance events whose attestation is forged or does not match the event:
//! for each check, a world where exactly that check fails.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod support;

include!("forgeries/attestation.rs");

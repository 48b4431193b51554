//! The forgeries of `forged_events.rs`, each on a NECS announcement (kind
//! 13793, its attestation in a 23793 tee_root): every class refused for
//! 63793 is refused for 13793 too.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod support;

include!("forgeries/events.rs");

//! Release signatures (kind 63794) in instance events (63793): every
//! refusal of a release that the caller's trust does not accept.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod support;

include!("forgeries/releases.rs");

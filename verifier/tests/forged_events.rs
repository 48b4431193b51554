//! Instance events whose Nostr side is forged: the event itself, the build
//! signature (63795), the instance signature (63796), their p tags and
//! modes. For each check, a world where exactly that check fails.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod support;

include!("forgeries/events.rs");

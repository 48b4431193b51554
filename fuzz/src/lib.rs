//! The fuzz targets of enclaved: one function for every kind of input the
//! system takes from outside, each feeding arbitrary bytes to the real
//! parser or handler and checking what must hold whatever the bytes are.
//!
//! The same functions run in two places:
//! - `fuzz/libfuzzer`, cargo-fuzz's crate (nightly, coverage-guided), run by
//!   `scripts/fuzz.sh`: one binary per target;
//! - `tests/corpus.rs`, on stable: every file of the committed corpora
//!   (`fuzz/corpus/<target>/`) and of the found crashes
//!   (`fuzz/regressions/<target>/`) is replayed through its target.
//!
//! A target panics only when something is wrong: a panic in the code under
//! test, or a broken invariant (an `assert!` here).

#![allow(clippy::indexing_slicing)]

pub mod custody;
pub mod formats;
pub mod grants;
pub mod releases;
pub mod rpc;
pub mod signer;
pub mod state;
pub mod support;

/// A fuzz target: any bytes in, a panic only on a bug.
pub type Target = fn(&[u8]);

/// Every target, by the name of its cargo-fuzz binary and corpus folder.
pub const TARGETS: &[(&str, Target)] = &[
    ("attestation_document", formats::attestation_document),
    ("attestation_payload", formats::attestation_payload),
    ("certificate_bundle", formats::certificate_bundle),
    ("instance_event", formats::instance_event),
    ("signature_events", formats::signature_events),
    ("metadata_request", formats::metadata_request),
    ("metadata_reply", formats::metadata_reply),
    ("rpc_message", rpc::rpc_message),
    ("admin_params", rpc::admin_params),
    ("nip44_decrypt", rpc::nip44_decrypt),
    ("nip04_decrypt", rpc::nip04_decrypt),
    ("bunker_uri", rpc::bunker_uri),
    ("nostrconnect_uri", rpc::nostrconnect_uri),
    ("sign_event_template", rpc::sign_event_template),
    ("relay_list", rpc::relay_list),
    ("perms", grants::perms),
    ("policy", grants::policy),
    ("nsec_app_payload", grants::nsec_app_payload),
    ("signer_sequence", signer::signer_sequence),
    ("key_status", rpc::key_status),
    ("key_material", rpc::key_material),
    ("release_signature", releases::release_signature),
    ("release_policy", releases::release_policy),
    ("announcement_event", releases::announcement_event),
    ("state_chunk", state::state_chunk),
    ("custody_request", custody::custody_request),
];

/// The target called `name`.
pub fn target(name: &str) -> Option<Target> {
    TARGETS.iter().find(|(n, _)| *n == name).map(|(_, t)| *t)
}

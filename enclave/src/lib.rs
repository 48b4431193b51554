//! # enclave
//!
//! The trusted side of enclaved, running inside an AWS Nitro Enclave (or, in
//! development, on a laptop with the dev attester). It has no network: it
//! reaches the parent over vsock (TCP in development) and relays through the
//! parent's SOCKS5 proxy, with TLS ending here.
//!
//! Start-up ([`startup`]): make the service key, take an attestation that
//! binds it ([`attester`]), ask the parent for the builder's and launcher's
//! signature events ([`metadata`]) and check them against that attestation
//! with the `verifier` library, with the maintainers' release signatures
//! (a prod instance must be released under [`RELEASE_POLICY_JSON`]). A
//! parent that lies can only make it stop.
//! Then it announces itself ([`announce`]): a kind 63793 event with a fresh
//! attestation, self-checked with the verifier before it is published, every
//! hour.

#![forbid(unsafe_code)]

pub mod announce;
pub mod attester;
pub mod continuity;
pub mod custody;
pub mod link;
pub mod metadata;
pub mod relay;
pub mod serve;
pub mod signer;
pub mod startup;

/// Software name in the instance event's `name` tag.
pub const SOFTWARE_NAME: &str = "enclaved";
/// Software version in the instance event's `v` tag.
pub const SOFTWARE_VERSION: &str = env!("CARGO_PKG_VERSION");

static DEV_VERSION: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// The version this enclave says it is and checks its release as: the
/// built-in [`SOFTWARE_VERSION`], or with the dev attester the one given
/// by `--dev-version` (which the dev attester measures into PCR0, as a
/// build of that version would change the image).
pub fn software_version() -> &'static str {
    DEV_VERSION.get().map_or(SOFTWARE_VERSION, String::as_str)
}

/// Runs this process as a build of `version` (dev attester only; once).
pub fn set_dev_version(version: &str) -> bool {
    DEV_VERSION.set(version.to_owned()).is_ok()
}
/// Source repository in the instance event's `r` tag.
pub const SOURCE_REPOSITORY: &str = env!("CARGO_PKG_REPOSITORY");

/// The project's release policy (`release-policy.json` at the top of the
/// repository), compiled into the binary so that it is covered by the
/// image's measurements: who the maintainers are, how many must sign a
/// release, and the lowest version accepted as a successor.
pub const RELEASE_POLICY_JSON: &str = include_str!("../../release-policy.json");

/// The built-in release policy, parsed.
pub fn built_in_release_policy() -> Result<verifier::release::ReleasePolicy, verifier::Error> {
    verifier::release::ReleasePolicy::from_json(RELEASE_POLICY_JSON.as_bytes())
}

/// Unix time in seconds.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

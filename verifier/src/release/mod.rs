//! Releases: maintainers sign what an image measures to (kind 63794), and
//! a release policy says whose signatures count, how many are needed and
//! which versions are accepted. The enclave checks its own release at
//! start-up; clients check an instance's. The policy's `min_version` is
//! for key continuity (not built yet), which is to hand state only to code
//! released under the policy it was sealed with.
//!
//! - [`signature`]: the kind 63794 event;
//! - [`policy`]: `release-policy.json`, [`ReleaseTrust`] and the rule that
//!   makes a [`Release`] of a set of signatures;
//! - [`own`]: the enclave's check of its own release at start-up.

pub mod own;
pub mod policy;
pub mod signature;

pub use self::own::{check_own_release, OwnRelease};
pub use self::policy::{Release, ReleasePolicy, ReleaseTrust, MAX_MAINTAINERS};
pub use self::signature::{parse_version, ReleaseSignature, KIND_RELEASE_SIGNATURE};

/// Most release signatures an announcement or the parent's answer carries.
pub const MAX_RELEASE_SIGNATURES: usize = 16;

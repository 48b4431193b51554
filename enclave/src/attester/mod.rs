//! Where attestations come from. [`nsm::NsmAttester`] asks the Nitro Secure
//! Module (`/dev/nsm`); [`dev::DevAttester`] signs documents of the same
//! format with a local certificate chain, for development and tests. The
//! choice is always explicit (`--attester nsm|dev`): nothing falls back to
//! dev silently, and a dev document only verifies against the dev root,
//! which no verifier trusts unless told to.

pub mod dev;
pub mod nsm;

use std::fmt;

use verifier::attestation::TrustedRoot;

/// Why an attestation could not be made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttestError(pub String);

impl fmt::Display for AttestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for AttestError {}

/// A source of attestation documents.
pub trait Attester: Send + Sync + fmt::Debug {
    /// A signed attestation document (untagged COSE_Sign1) whose
    /// `public_key` is `public_key`. May block (an ioctl, key generation):
    /// call it from a blocking task.
    fn attest(&self, public_key: &[u8]) -> Result<Vec<u8>, AttestError>;

    /// The root the documents chain to: AWS for the NSM, the dev root
    /// otherwise. The enclave's self-check trusts exactly this root.
    fn root(&self) -> TrustedRoot;
}

/// Which attester to use (the `--attester` flag).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AttesterKind {
    /// The Nitro Secure Module at /dev/nsm (production).
    Nsm,
    /// A local P-384 chain; documents verify only against its root.
    Dev,
}

//! AWS Nitro Enclaves attestation documents: decoding ([`Attestation::parse`]),
//! and verification ([`Attestation::verify`]) of the ES384 signature, the
//! certificate path to a trusted root at a given time, and the digest.
//!
//! Spec: <https://github.com/aws/aws-nitro-enclaves-nsm-api/blob/main/docs/attestation_process.md>.
//!
//! The steps are public so that a report can name which one failed; a
//! [`VerifiedAttestation`] can only come out of [`Attestation::verify`].

mod chain;
mod cose;
#[cfg(feature = "dev-ca")]
pub mod dev;
mod doc;

use base64::Engine;
use x509_parser::oid_registry::{OID_KEY_TYPE_EC_PUBLIC_KEY, OID_NIST_EC_P384};

pub use self::chain::{CertificateInfo, TrustedRoot, AWS_NITRO_ROOT_G1_SHA256};
use self::cose::CoseSign1;
pub use self::cose::MAX_DOCUMENT_LEN;
pub use self::doc::{AttestationDoc, MAX_CABUNDLE};
use crate::error::{malformed, Error};

/// The only digest an enclaved attestation may use.
pub const DIGEST_SHA384: &str = "SHA384";

/// Longest base64 text accepted for a document of [`MAX_DOCUMENT_LEN`] bytes.
pub const MAX_DOCUMENT_BASE64_LEN: usize = MAX_DOCUMENT_LEN.div_ceil(3) * 4;

/// A decoded attestation document. Nothing in it is trusted yet.
#[derive(Clone)]
pub struct Attestation {
    cose: CoseSign1,
    doc: AttestationDoc,
}

impl Attestation {
    /// Decodes a raw document (untagged COSE_Sign1 with the payload map).
    /// Input over [`MAX_DOCUMENT_LEN`] is rejected before parsing.
    pub fn parse(bytes: &[u8]) -> Result<Self, Error> {
        let cose = CoseSign1::parse(bytes)?;
        let doc = AttestationDoc::from_cbor(&cose.payload)?;
        Ok(Self { cose, doc })
    }

    /// Decodes a document given as standard base64 (as in a kind 63793
    /// event's content). Over-long text is rejected before decoding.
    pub fn from_base64(text: &str) -> Result<Self, Error> {
        let text = text.trim();
        if text.len() > MAX_DOCUMENT_BASE64_LEN {
            return Err(Error::TooLarge {
                what: "attestation document (base64)",
                size: text.len(),
                max: MAX_DOCUMENT_BASE64_LEN,
            });
        }
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(text)
            .map_err(|e| malformed("attestation base64", e))?;
        Self::parse(&bytes)
    }

    /// The decoded (unverified) payload.
    pub fn doc(&self) -> &AttestationDoc {
        &self.doc
    }

    /// Checks the COSE ES384 signature with the leaf certificate's key.
    pub fn verify_signature(&self) -> Result<(), Error> {
        self.cose.verify(&leaf_key(&self.doc.certificate)?)
    }

    /// Checks the certificate path from the leaf through `cabundle` to
    /// `root` at `time` (unix seconds). Returns the leaf's notAfter.
    pub fn verify_chain(&self, root: &TrustedRoot, time: u64) -> Result<i64, Error> {
        chain::verify_chain(&self.doc.certificate, &self.doc.cabundle, root, time, None)
    }

    /// The same, reusing the bundle paths that verified earlier in this
    /// run (see [`crate::cache`]).
    pub fn verify_chain_cached(
        &self,
        root: &TrustedRoot,
        time: u64,
        cache: Option<&crate::cache::VerifyCache>,
    ) -> Result<i64, Error> {
        chain::verify_chain(&self.doc.certificate, &self.doc.cabundle, root, time, cache)
    }

    /// Checks that the PCRs are SHA-384 digests.
    pub fn check_digest(&self) -> Result<(), Error> {
        if self.doc.digest == DIGEST_SHA384 {
            Ok(())
        } else {
            Err(Error::Unsupported {
                what: "attestation digest",
                found: format!("{:?} (expected \"SHA384\")", self.doc.digest),
            })
        }
    }

    /// Runs every check: signature, certificate path at `time`, digest.
    pub fn verify(self, root: &TrustedRoot, time: u64) -> Result<VerifiedAttestation, Error> {
        self.verify_signature()?;
        let leaf_not_after = self.verify_chain(root, time)?;
        self.check_digest()?;
        Ok(self.into_verified(leaf_not_after, time))
    }

    /// Only for callers in this crate that ran every check of [`Self::verify`].
    pub(crate) fn into_verified(self, leaf_not_after: i64, time: u64) -> VerifiedAttestation {
        VerifiedAttestation {
            doc: self.doc,
            leaf_not_after,
            verified_at: time,
        }
    }
}

impl std::fmt::Debug for Attestation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Attestation")
            .field("doc", &self.doc)
            .finish()
    }
}

/// An attestation whose signature, certificate path and digest were checked.
#[derive(Debug, Clone)]
pub struct VerifiedAttestation {
    doc: AttestationDoc,
    leaf_not_after: i64,
    verified_at: u64,
}

impl VerifiedAttestation {
    /// The verified payload.
    pub fn doc(&self) -> &AttestationDoc {
        &self.doc
    }

    /// When the leaf certificate expires (unix seconds); nothing may claim
    /// this attestation for longer.
    pub fn leaf_not_after(&self) -> i64 {
        self.leaf_not_after
    }

    /// The time (unix seconds) at which the path was checked.
    pub fn verified_at(&self) -> u64 {
        self.verified_at
    }

    /// Whether PCR0 is all zeros, i.e. the enclave runs in debug mode, where
    /// the parent can read its memory.
    pub fn is_debug(&self) -> bool {
        self.doc.pcr(0).is_zero()
    }
}

/// The SEC1 point of the leaf certificate's P-384 key.
fn leaf_key(der: &[u8]) -> Result<Vec<u8>, Error> {
    let (_, cert) =
        x509_parser::parse_x509_certificate(der).map_err(|e| malformed("leaf certificate", e))?;
    let spki = cert.public_key();
    let curve = spki
        .algorithm
        .parameters
        .as_ref()
        .and_then(|p| p.as_oid().ok());
    if spki.algorithm.algorithm != OID_KEY_TYPE_EC_PUBLIC_KEY || curve != Some(OID_NIST_EC_P384) {
        return Err(Error::Unsupported {
            what: "leaf certificate key",
            found: "not an EC P-384 key".into(),
        });
    }
    Ok(spki.subject_public_key.data.to_vec())
}

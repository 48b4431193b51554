//! The certificate path of an attestation document: leaf `certificate`, then
//! `cabundle` from its last entry (the leaf's issuer) back to `cabundle[0]`,
//! which must be, byte for byte, the root the caller trusts.
//!
//! The JavaScript verifier this replaces pinned the AWS root by serial number
//! and built paths from whatever certificates the document carried. Here:
//!
//! - the trusted root is compared by its full DER, never by name or serial;
//! - the path must use every bundle certificate, in the bundle's order;
//! - every certificate, the root included, must be valid at the time the
//!   caller gives (the leaf of a real document lives about three hours);
//! - signatures and CA constraints are checked by rustls-webpki.
//!
//! Spec: <https://docs.aws.amazon.com/enclaves/latest/user/verify-root.html>.

use rustls_pki_types::{CertificateDer, SignatureVerificationAlgorithm, UnixTime};
use sha2::{Digest, Sha256};
use webpki::{EndEntityCert, KeyPurposeIdIter};
use x509_parser::certificate::X509Certificate;

use crate::cache::{self, VerifyCache};
use crate::error::{malformed, CertificateError, Error};
use crate::pcr::cert_der_from_der_or_pem;

/// DER of AWS Nitro Enclaves Root-G1; `build.rs` refuses to build unless its
/// SHA-256 is [`AWS_NITRO_ROOT_G1_SHA256`].
const AWS_NITRO_ROOT_G1: &[u8] = include_bytes!("aws-root-g1.der");
/// SHA-256 of the DER of AWS Nitro Enclaves Root-G1, as AWS publishes it.
pub const AWS_NITRO_ROOT_G1_SHA256: &str =
    "641a0321a3e244efe456463195d606317ed7cdcc3c1756e09893f3c68f79bb5b";

/// The only signature algorithm in a Nitro attestation path.
static SIG_ALGS: &[&dyn SignatureVerificationAlgorithm] = &[webpki::aws_lc_rs::ECDSA_P384_SHA384];

/// The root certificate a path must end at.
#[derive(Clone, PartialEq, Eq)]
pub struct TrustedRoot {
    der: Vec<u8>,
}

impl TrustedRoot {
    /// AWS Nitro Enclaves Root-G1, embedded in this library.
    pub fn aws_nitro_g1() -> Self {
        Self {
            der: AWS_NITRO_ROOT_G1.to_vec(),
        }
    }

    /// Another root (a dev CA), given as DER or PEM. It must parse as a
    /// certificate that can serve as a trust anchor.
    pub fn from_der_or_pem(input: &[u8]) -> Result<Self, Error> {
        let der = cert_der_from_der_or_pem(input)?;
        let cert = CertificateDer::from(der.as_slice());
        webpki::anchor_from_trusted_cert(&cert).map_err(|e| malformed("root certificate", e))?;
        Ok(Self { der })
    }

    /// The root's DER.
    pub fn der(&self) -> &[u8] {
        &self.der
    }

    /// SHA-256 of the root's DER, lowercase hex.
    pub fn sha256_hex(&self) -> String {
        hex::encode(Sha256::digest(&self.der))
    }

    /// Whether this is the embedded AWS root.
    pub fn is_aws(&self) -> bool {
        self.der == AWS_NITRO_ROOT_G1
    }
}

impl std::fmt::Debug for TrustedRoot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TrustedRoot(sha256={})", self.sha256_hex())
    }
}

/// Checks the path `leaf ← cabundle[n-1] ← … ← cabundle[0] = root` at `time`
/// (unix seconds). Returns the leaf's notAfter (unix seconds).
///
/// With a `cache`, a bundle whose full path (with some leaf) verified
/// earlier in the run, against the same root at the same time, is not
/// checked again: the leaf is checked against its last certificate as
/// the anchor (its signature, validity and usage), and every certificate's
/// validity as always. Bundles with name constraints, which would bind
/// the leaf from above that anchor, are always checked in full.
pub(crate) fn verify_chain(
    leaf: &[u8],
    cabundle: &[Vec<u8>],
    root: &TrustedRoot,
    time: u64,
    cache: Option<&VerifyCache>,
) -> Result<i64, Error> {
    let Some((bundle_root, intermediates)) = cabundle.split_first() else {
        return Err(malformed("cabundle", "empty"));
    };
    if bundle_root.as_slice() != root.der() {
        return Err(CertificateError::UntrustedRoot {
            trusted_sha256: root.sha256_hex(),
            found_sha256: hex::encode(Sha256::digest(bundle_root)),
        }
        .into());
    }

    // Validity of every certificate, with the subject named in the error;
    // whether a bundle certificate has name constraints, read in the same pass.
    let mut leaf_not_after = 0;
    let mut constrained = false;
    for (i, der) in std::iter::once(leaf)
        .chain(cabundle.iter().map(Vec::as_slice))
        .enumerate()
    {
        let (not_after, has_constraints) = check_validity(der, time)?;
        if i == 0 {
            leaf_not_after = not_after;
        } else {
            constrained |= has_constraints;
        }
    }

    let bundle_key = cache
        .filter(|_| !constrained)
        .map(|c| (c, bundle_key(cabundle, root, time)));
    if let Some((cache, key)) = &bundle_key {
        if cache.knows(key) {
            let last = cabundle.last().unwrap_or(bundle_root);
            verify_path(leaf, last, &[], time)?;
            return Ok(leaf_not_after);
        }
    }
    verify_path(leaf, root.der(), intermediates, time)?;
    if let Some((cache, key)) = bundle_key {
        cache.remember(key);
    }
    Ok(leaf_not_after)
}

/// The cache key of a bundle's path to `root` at `time`.
fn bundle_key(cabundle: &[Vec<u8>], root: &TrustedRoot, time: u64) -> [u8; 32] {
    let time = time.to_be_bytes();
    let mut inputs: Vec<&[u8]> = vec![root.der(), &time];
    inputs.extend(cabundle.iter().map(Vec::as_slice));
    cache::key("attestation bundle path v1", &inputs)
}

/// rustls-webpki's check of `leaf ← intermediates[n-1] ← … ← anchor`, which
/// must use every intermediate, in order.
fn verify_path(
    leaf: &[u8],
    anchor_der: &[u8],
    intermediates: &[Vec<u8>],
    time: u64,
) -> Result<(), Error> {
    let anchor_der = CertificateDer::from(anchor_der);
    let anchor = webpki::anchor_from_trusted_cert(&anchor_der)
        .map_err(|e| malformed("root certificate", e))?;
    let leaf_der = CertificateDer::from(leaf);
    let end_entity = EndEntityCert::try_from(&leaf_der)
        .map_err(|e| CertificateError::Path(format!("leaf certificate: {e}")))?;
    let intermediates: Vec<CertificateDer<'_>> = intermediates
        .iter()
        .map(|c| CertificateDer::from(c.as_slice()))
        .collect();
    let time = UnixTime::since_unix_epoch(std::time::Duration::from_secs(time));

    // The path webpki finds must be the bundle itself: issuer of the leaf is
    // the last bundle entry, and so on up to the root.
    let in_bundle_order = |path: &webpki::VerifiedPath<'_>| -> Result<(), webpki::Error> {
        let used: Vec<CertificateDer<'_>> =
            path.intermediate_certificates().map(|c| c.der()).collect();
        let expected = intermediates.iter().rev();
        if used.len() == intermediates.len()
            && used
                .iter()
                .zip(expected)
                .all(|(u, e)| u.as_ref() == e.as_ref())
        {
            Ok(())
        } else {
            Err(webpki::Error::UnknownIssuer)
        }
    };
    end_entity
        .verify_for_usage(
            SIG_ALGS,
            &[anchor],
            &intermediates,
            time,
            AnyExtendedKeyUsage,
            None,
            Some(&in_bundle_order),
        )
        .map_err(|e| {
            CertificateError::Path(match e {
                webpki::Error::UnknownIssuer => {
                    "no path from the leaf through every bundle certificate, in order, \
                     to the trusted root"
                        .to_owned()
                }
                e => e.to_string(),
            })
        })?;
    Ok(())
}

/// Checks that `der` is valid at `time`; returns its notAfter, and whether
/// it has a name constraints extension (or cannot be read to tell).
fn check_validity(der: &[u8], time: u64) -> Result<(i64, bool), Error> {
    let (_, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| malformed("certificate in attestation path", e))?;
    let not_before = cert.validity().not_before.timestamp();
    let not_after = cert.validity().not_after.timestamp();
    let t = i64::try_from(time).unwrap_or(i64::MAX);
    if t < not_before || t > not_after {
        return Err(CertificateError::NotValidAt {
            subject: subject_of(&cert),
            time,
            not_before,
            not_after,
        }
        .into());
    }
    Ok((not_after, !matches!(cert.name_constraints(), Ok(None))))
}

/// What a person wants to see of a certificate.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CertificateInfo {
    /// Subject, RFC 4514 style.
    pub subject: String,
    /// Issuer, RFC 4514 style.
    pub issuer: String,
    /// Serial number, hex.
    pub serial: String,
    /// Start of validity, unix seconds.
    pub not_before: i64,
    /// End of validity, unix seconds.
    pub not_after: i64,
    /// SHA-256 of the DER, hex.
    pub sha256: String,
}

impl CertificateInfo {
    /// Reads the fields of a DER certificate.
    pub fn from_der(der: &[u8]) -> Result<Self, Error> {
        let (_, cert) =
            x509_parser::parse_x509_certificate(der).map_err(|e| malformed("certificate", e))?;
        Ok(Self {
            subject: subject_of(&cert),
            issuer: cert.issuer().to_string(),
            serial: hex::encode(cert.raw_serial()),
            not_before: cert.validity().not_before.timestamp(),
            not_after: cert.validity().not_after.timestamp(),
            sha256: hex::encode(Sha256::digest(der)),
        })
    }
}

/// The subject of a certificate, RFC 4514 style.
pub(crate) fn subject_of(cert: &X509Certificate<'_>) -> String {
    cert.subject().to_string()
}

/// Nitro attestation certificates carry no extended key usage; accept any,
/// but still surface a malformed EKU extension.
struct AnyExtendedKeyUsage;

impl webpki::ExtendedKeyUsageValidator for AnyExtendedKeyUsage {
    fn validate(&self, iter: KeyPurposeIdIter<'_, '_>) -> Result<(), webpki::Error> {
        for purpose in iter {
            purpose?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_root_is_aws_root_g1() {
        let root = TrustedRoot::aws_nitro_g1();
        assert_eq!(root.sha256_hex(), AWS_NITRO_ROOT_G1_SHA256);
        assert!(root.is_aws());
        let (_, cert) = x509_parser::parse_x509_certificate(root.der()).unwrap();
        assert_eq!(
            subject_of(&cert),
            "C=US, O=Amazon, OU=AWS, CN=aws.nitro-enclaves"
        );
    }

    #[test]
    fn root_round_trips_through_pem() {
        let pem = pem::encode(&pem::Pem::new("CERTIFICATE", AWS_NITRO_ROOT_G1.to_vec()));
        let root = TrustedRoot::from_der_or_pem(pem.as_bytes()).unwrap();
        assert!(root.is_aws());
        assert!(TrustedRoot::from_der_or_pem(b"junk").is_err());
    }
}

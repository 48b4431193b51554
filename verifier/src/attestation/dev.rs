//! A local P-384 certificate authority that signs attestation documents in
//! exactly the NSM format, so the whole system runs without AWS. Its root is
//! never trusted implicitly: a verifier must be handed [`DevIssuer::der`] of
//! the root (`verifier check --root dev-root.der`).
//!
//! Also used by tests to build the forged chains the verifier must refuse.

use std::fmt;

use p384::ecdsa::{Signature, SigningKey};
use p384::pkcs8::DecodePrivateKey;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, PKCS_ECDSA_P384_SHA384,
};
use rustls_pki_types::CertificateDer;
use zeroize::Zeroizing;

use super::cose::{encode_sign1, es384_protected_header, sig_structure};
use super::{AttestationDoc, DIGEST_SHA384};
use crate::pcr::Pcr;

/// Why the dev CA could not make a certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DevCaError(String);

impl fmt::Display for DevCaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "dev CA: {}", self.0)
    }
}

impl std::error::Error for DevCaError {}

fn err(e: impl fmt::Display) -> DevCaError {
    DevCaError(e.to_string())
}

/// A validity period in unix seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Validity {
    /// First second of validity.
    pub not_before: i64,
    /// Last second of validity.
    pub not_after: i64,
}

impl Validity {
    /// From `start` for `secs` seconds.
    pub fn from(start: i64, secs: i64) -> Self {
        Self {
            not_before: start,
            not_after: start.saturating_add(secs),
        }
    }
}

/// A CA certificate with its key: a root or an intermediate.
pub struct DevIssuer {
    issuer: Issuer<'static, KeyPair>,
    der: Vec<u8>,
}

impl fmt::Debug for DevIssuer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DevIssuer").finish_non_exhaustive()
    }
}

impl DevIssuer {
    /// A new self-signed root named `common_name`.
    pub fn new_root(common_name: &str, validity: Validity) -> Result<Self, DevCaError> {
        self_signed(ca_params(common_name, validity, None)?)
    }

    /// A CA certificate and its key kept from an earlier run (the key as
    /// PKCS#8 PEM, as [`Self::key_pem`] gives it), to sign with again.
    pub fn from_der_and_key_pem(der: &[u8], key_pem: &str) -> Result<Self, DevCaError> {
        let key = KeyPair::from_pem(key_pem).map_err(err)?;
        Self::certified(der.to_vec(), key)
    }

    /// The certificate's key as PKCS#8 PEM, to keep a dev CA across runs
    /// (`dev-stack`; never for anything real).
    pub fn key_pem(&self) -> Zeroizing<String> {
        Zeroizing::new(self.issuer.key().serialize_pem())
    }

    fn certified(der: Vec<u8>, key: KeyPair) -> Result<Self, DevCaError> {
        let issuer =
            Issuer::from_ca_cert_der(&CertificateDer::from(der.as_slice()), key).map_err(err)?;
        Ok(Self { issuer, der })
    }

    /// A new self-signed root named `common_name` with serial number
    /// `serial` (big-endian, unsigned): what a validator that recognises
    /// AWS's root by its serial alone cannot tell from AWS's.
    pub fn new_root_with_serial(
        common_name: &str,
        validity: Validity,
        serial: &[u8],
    ) -> Result<Self, DevCaError> {
        let mut params = ca_params(common_name, validity, None)?;
        params.serial_number = Some(serial.to_vec().into());
        self_signed(params)
    }

    /// A root with the subject, serial number and validity of `root_der`
    /// but a new key: what an attacker who copies the AWS root's name makes.
    pub fn forge_root_like(root_der: &[u8]) -> Result<Self, DevCaError> {
        self_signed(copy_of_root(root_der)?)
    }

    /// A CA certificate signed by this one.
    pub fn new_intermediate(
        &self,
        common_name: &str,
        validity: Validity,
    ) -> Result<DevIssuer, DevCaError> {
        let params = ca_params(common_name, validity, Some(4))?;
        let key = KeyPair::generate_for(&PKCS_ECDSA_P384_SHA384).map_err(err)?;
        let cert = params.signed_by(&key, &self.issuer).map_err(err)?;
        Self::certified(cert.der().to_vec(), key)
    }

    /// An end-entity certificate signed by this one, with its signing key,
    /// shaped like the NSM's per-enclave leaf (CA:false, digitalSignature).
    pub fn new_leaf(&self, common_name: &str, validity: Validity) -> Result<DevLeaf, DevCaError> {
        let mut params = base_params(common_name, validity)?;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::ContentCommitment,
        ];
        let key = KeyPair::generate_for(&PKCS_ECDSA_P384_SHA384).map_err(err)?;
        let cert = params.signed_by(&key, &self.issuer).map_err(err)?;
        let signing_key = SigningKey::from_pkcs8_der(&key.serialize_der()).map_err(err)?;
        Ok(DevLeaf {
            der: cert.der().to_vec(),
            key: signing_key,
        })
    }

    /// The certificate's DER.
    pub fn der(&self) -> &[u8] {
        &self.der
    }
}

/// A new key and a self-signed certificate of `params`.
fn self_signed(params: CertificateParams) -> Result<DevIssuer, DevCaError> {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P384_SHA384).map_err(err)?;
    let cert = params.self_signed(&key).map_err(err)?;
    DevIssuer::certified(cert.der().to_vec(), key)
}

/// A leaf certificate and the key that signs attestation documents.
pub struct DevLeaf {
    der: Vec<u8>,
    key: SigningKey,
}

impl fmt::Debug for DevLeaf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DevLeaf").finish_non_exhaustive()
    }
}

impl DevLeaf {
    /// The certificate's DER.
    pub fn der(&self) -> &[u8] {
        &self.der
    }

    /// Signs `doc` as an untagged COSE_Sign1 with ES384, exactly as the NSM
    /// does. `doc.certificate` should be [`Self::der`].
    pub fn sign(&self, doc: &AttestationDoc) -> Vec<u8> {
        self.sign_payload(&doc.to_cbor(), false)
    }

    /// Signs an arbitrary payload with a low-S signature, or with `high_s`
    /// a high-S one (`s` replaced by `n - s`: equally valid ECDSA, which
    /// real NSMs emit).
    pub fn sign_payload(&self, payload: &[u8], high_s: bool) -> Vec<u8> {
        let protected = es384_protected_header();
        let signature: Signature =
            p384::ecdsa::signature::Signer::sign(&self.key, &sig_structure(&protected, payload));
        let signature = if high_s {
            flip_s(&signature)
        } else {
            signature.normalize_s().unwrap_or(signature)
        };
        encode_sign1(&protected, payload, &signature.to_bytes())
    }
}

/// `(r, s)` → `(r, n - s)` when `s` is low, making a high-S signature.
fn flip_s(signature: &Signature) -> Signature {
    let (r, s) = signature.split_scalars();
    if signature.normalize_s().is_some() {
        return *signature; // already high
    }
    Signature::from_scalars(r, -*s).unwrap_or(*signature)
}

/// A root → intermediate → leaf chain, as a dev attester uses.
#[derive(Debug)]
pub struct DevChain {
    /// The self-signed root to hand to verifiers.
    pub root: DevIssuer,
    /// The intermediate that signs leaves.
    pub intermediate: DevIssuer,
    /// The leaf that signs documents.
    pub leaf: DevLeaf,
}

impl DevChain {
    /// A fresh chain whose leaf is valid from `now` for three hours, like an
    /// NSM leaf, and whose CAs are valid from a day before `now` for years.
    pub fn generate(now: i64) -> Result<Self, DevCaError> {
        Self::generate_with_root_serial(now, None)
    }

    /// The same, with the root's serial number `root_serial` if given
    /// (see [`DevIssuer::new_root_with_serial`]).
    pub fn generate_with_root_serial(
        now: i64,
        root_serial: Option<&[u8]>,
    ) -> Result<Self, DevCaError> {
        let ca_validity = Validity::from(now - 86_400, 10 * 365 * 86_400);
        let root = match root_serial {
            None => DevIssuer::new_root("enclaved dev root", ca_validity)?,
            Some(serial) => {
                DevIssuer::new_root_with_serial("enclaved dev root", ca_validity, serial)?
            }
        };
        let intermediate = root.new_intermediate("enclaved dev intermediate", ca_validity)?;
        let leaf = intermediate.new_leaf("enclaved dev enclave", Validity::from(now, 3 * 3600))?;
        Ok(Self {
            root,
            intermediate,
            leaf,
        })
    }

    /// A chain of a root and intermediate kept from an earlier run, with a
    /// fresh leaf valid from `now` for three hours.
    pub fn with_cas(
        root: DevIssuer,
        intermediate: DevIssuer,
        now: i64,
    ) -> Result<Self, DevCaError> {
        let leaf = intermediate.new_leaf("enclaved dev enclave", Validity::from(now, 3 * 3600))?;
        Ok(Self {
            root,
            intermediate,
            leaf,
        })
    }

    /// Replaces the leaf with a fresh one valid from `now` for `lifetime_secs`,
    /// as the NSM rotates its signing certificate.
    pub fn renew_leaf(&mut self, now: i64, lifetime_secs: i64) -> Result<(), DevCaError> {
        self.leaf = self
            .intermediate
            .new_leaf("enclaved dev enclave", Validity::from(now, lifetime_secs))?;
        Ok(())
    }

    /// `cabundle` for documents signed by this chain's leaf: root first.
    pub fn cabundle(&self) -> Vec<Vec<u8>> {
        vec![self.root.der().to_vec(), self.intermediate.der().to_vec()]
    }

    /// Fills in `certificate` and `cabundle` and signs the document.
    pub fn attest(&self, mut doc: AttestationDoc) -> Vec<u8> {
        doc.certificate = self.leaf.der().to_vec();
        doc.cabundle = self.cabundle();
        self.leaf.sign(&doc)
    }
}

/// Parameters with the subject, serial and validity of `root_der`.
/// A document shaped like the NSM's: 16 PCRs (those not given are zero),
/// digest SHA384, the given `public_key`, null user_data and nonce.
/// `certificate` and `cabundle` are filled in by [`DevChain::attest`].
pub fn nsm_document(
    module_id: &str,
    timestamp_ms: u64,
    pcrs: &std::collections::BTreeMap<u8, Pcr>,
    public_key: &[u8],
) -> AttestationDoc {
    let mut all: std::collections::BTreeMap<u8, Pcr> = (0..16).map(|i| (i, Pcr::ZERO)).collect();
    all.extend(pcrs.iter().map(|(i, p)| (*i, *p)));
    AttestationDoc {
        module_id: module_id.to_owned(),
        digest: DIGEST_SHA384.to_owned(),
        timestamp_ms,
        pcrs: all,
        certificate: Vec::new(),
        cabundle: Vec::new(),
        public_key: Some(public_key.to_vec()),
        user_data: None,
        nonce: None,
    }
}

/// A throw-away image signing certificate for `builder_npub`
/// (`CN=Nostr, O=Nostr, OU=<npub>`, self-signed P-384), as the build
/// scripts make; the key is discarded, since nothing dev is ever signed.
pub fn builder_certificate(builder_npub: &str, validity: Validity) -> Result<Vec<u8>, DevCaError> {
    crate::signing_cert::generate(builder_npub, validity.not_before, validity.not_after)
        .map(|made| made.cert_der)
        .map_err(err)
}

fn copy_of_root(root_der: &[u8]) -> Result<CertificateParams, DevCaError> {
    let (_, root) = x509_parser::parse_x509_certificate(root_der).map_err(err)?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    for attr in root.subject().iter_attributes() {
        let oid = attr.attr_type();
        let value = attr.as_str().map_err(err)?;
        let ty = match oid.to_id_string().as_str() {
            "2.5.4.3" => DnType::CommonName,
            "2.5.4.6" => DnType::CountryName,
            "2.5.4.7" => DnType::LocalityName,
            "2.5.4.8" => DnType::StateOrProvinceName,
            "2.5.4.10" => DnType::OrganizationName,
            "2.5.4.11" => DnType::OrganizationalUnitName,
            other => return Err(err(format!("cannot copy subject attribute {other}"))),
        };
        dn.push(ty, value);
    }
    params.distinguished_name = dn;
    params.serial_number = Some(root.raw_serial().to_vec().into());
    params.not_before =
        time::OffsetDateTime::from_unix_timestamp(root.validity().not_before.timestamp())
            .map_err(err)?;
    params.not_after =
        time::OffsetDateTime::from_unix_timestamp(root.validity().not_after.timestamp())
            .map_err(err)?;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    Ok(params)
}

fn base_params(common_name: &str, validity: Validity) -> Result<CertificateParams, DevCaError> {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CountryName, "US");
    dn.push(DnType::OrganizationName, "enclaved dev");
    dn.push(DnType::CommonName, common_name);
    params.distinguished_name = dn;
    params.not_before =
        time::OffsetDateTime::from_unix_timestamp(validity.not_before).map_err(err)?;
    params.not_after =
        time::OffsetDateTime::from_unix_timestamp(validity.not_after).map_err(err)?;
    Ok(params)
}

fn ca_params(
    common_name: &str,
    validity: Validity,
    path_len: Option<u8>,
) -> Result<CertificateParams, DevCaError> {
    let mut params = base_params(common_name, validity)?;
    params.is_ca = IsCa::Ca(match path_len {
        Some(n) => BasicConstraints::Constrained(n),
        None => BasicConstraints::Unconstrained,
    });
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    Ok(params)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signature_of(document: &[u8]) -> Signature {
        let ciborium::value::Value::Array(items) =
            super::super::cose::decode_one(document, "t").unwrap()
        else {
            panic!("not an array")
        };
        let ciborium::value::Value::Bytes(sig) = &items[3] else {
            panic!("no signature")
        };
        Signature::from_slice(sig).unwrap()
    }

    #[test]
    fn signs_low_and_high_s_documents_that_verify() {
        let chain = DevChain::generate(1_790_000_000).unwrap();
        let payload = b"payload";
        let low = chain.leaf.sign_payload(payload, false);
        let high = chain.leaf.sign_payload(payload, true);
        // normalize_s() is Some only for a high-S signature.
        assert!(signature_of(&low).normalize_s().is_none());
        assert!(signature_of(&high).normalize_s().is_some());
        let point = {
            let (_, cert) = x509_parser::parse_x509_certificate(chain.leaf.der()).unwrap();
            cert.public_key().subject_public_key.data.to_vec()
        };
        for doc in [low, high] {
            let cose = super::super::cose::CoseSign1::parse(&doc).unwrap();
            assert!(cose.verify(&point).is_ok());
        }
    }
}

//! The enclave image signing certificate that ties an image to its builder.
//!
//! `nitro-cli build-enclave --signing-certificate` measures this certificate
//! into PCR8 (see [`crate::pcr::pcr8_from_cert_der`]). enclaved makes it a
//! one-time self-signed P-384 certificate whose subject has `O=Nostr` and
//! `OU=<builder npub>` (older tools put the npub in `CN`, also accepted), so a
//! PCR8 names one Nostr key. Spec: `ARCHITECTURE.md`, "Formats".

use aws_lc_rs::signature::{
    UnparsedPublicKey, ECDSA_P384_SHA256_ASN1, ECDSA_P384_SHA384_ASN1, ECDSA_P384_SHA512_ASN1,
};
use x509_parser::certificate::X509Certificate;
use x509_parser::oid_registry::{
    Oid, OID_KEY_TYPE_EC_PUBLIC_KEY, OID_NIST_EC_P384, OID_SIG_ECDSA_WITH_SHA256,
    OID_SIG_ECDSA_WITH_SHA384, OID_SIG_ECDSA_WITH_SHA512, OID_X509_COMMON_NAME,
    OID_X509_ORGANIZATIONAL_UNIT, OID_X509_ORGANIZATION_NAME,
};

use crate::error::{malformed, mismatch, Error};
use crate::pcr::{pcr8_from_cert_der, Pcr};

/// The organisation every enclaved signing certificate names.
pub const ORGANIZATION: &str = "Nostr";
/// Largest signing certificate accepted (DER bytes).
pub const MAX_CERT_LEN: usize = 4096;

/// A parsed image signing certificate.
#[derive(Debug, Clone)]
pub struct SigningCert {
    der: Vec<u8>,
}

impl SigningCert {
    /// Parses DER; rejects anything over [`MAX_CERT_LEN`] or with trailing bytes.
    pub fn from_der(der: &[u8]) -> Result<Self, Error> {
        if der.len() > MAX_CERT_LEN {
            return Err(Error::TooLarge {
                what: "signing certificate",
                size: der.len(),
                max: MAX_CERT_LEN,
            });
        }
        match x509_parser::parse_x509_certificate(der) {
            Ok(([], _)) => Ok(Self { der: der.to_vec() }),
            Ok(_) => Err(malformed("signing certificate", "trailing bytes")),
            Err(e) => Err(malformed("signing certificate", e)),
        }
    }

    /// The DER bytes.
    pub fn der(&self) -> &[u8] {
        &self.der
    }

    /// The PCR8 of an image signed with this certificate.
    pub fn pcr8(&self) -> Pcr {
        pcr8_from_cert_der(&self.der)
    }

    /// Checks that the certificate is self-signed with a P-384 key, has
    /// exactly one `O` equal to `Nostr`, and that the npubs among its `OU`
    /// and `CN` values are all `builder_npub`, with at least one present.
    pub fn check_builder(&self, builder_npub: &str) -> Result<(), Error> {
        self.check_builder_cached(builder_npub, None)
    }

    /// The same, reusing a self-signature of these exact bytes that
    /// verified earlier in this run (see [`crate::cache`]).
    pub fn check_builder_cached(
        &self,
        builder_npub: &str,
        cache: Option<&crate::cache::VerifyCache>,
    ) -> Result<(), Error> {
        let cert = self.parsed()?;
        let key = cache.map(|c| {
            (
                c,
                crate::cache::key("self-signed P-384 certificate v1", &[self.der()]),
            )
        });
        match &key {
            Some((cache, key)) if cache.knows(key) => {}
            _ => {
                check_self_signed(&cert)?;
                if let Some((cache, key)) = key {
                    cache.remember(key);
                }
            }
        }
        let subject = cert.subject();
        let orgs = values(subject.iter_by_oid(&OID_X509_ORGANIZATION_NAME))?;
        if orgs != [ORGANIZATION] {
            return Err(mismatch(
                "signing certificate organisation (O)",
                ORGANIZATION,
                format!("{orgs:?}"),
            ));
        }
        let mut names = values(subject.iter_by_oid(&OID_X509_ORGANIZATIONAL_UNIT))?;
        names.extend(values(subject.iter_by_oid(&OID_X509_COMMON_NAME))?);
        let npubs: Vec<&String> = names.iter().filter(|n| n.starts_with("npub1")).collect();
        if npubs.is_empty() {
            return Err(mismatch(
                "signing certificate builder (OU or CN)",
                builder_npub,
                "no npub in the subject",
            ));
        }
        if let Some(other) = npubs.iter().find(|n| n.as_str() != builder_npub) {
            return Err(mismatch(
                "signing certificate builder (OU or CN)",
                builder_npub,
                other,
            ));
        }
        Ok(())
    }

    fn parsed(&self) -> Result<X509Certificate<'_>, Error> {
        x509_parser::parse_x509_certificate(&self.der)
            .map(|(_, c)| c)
            .map_err(|e| malformed("signing certificate", e))
    }
}

fn values<'a>(
    attrs: impl Iterator<Item = &'a x509_parser::x509::AttributeTypeAndValue<'a>>,
) -> Result<Vec<String>, Error> {
    attrs
        .map(|a| {
            a.as_str()
                .map(str::to_owned)
                .map_err(|_| malformed("signing certificate subject", "attribute is not a string"))
        })
        .collect()
}

/// Issuer equals subject, and the signature verifies with the certificate's
/// own P-384 key (ECDSA with SHA-256, -384 or -512).
fn check_self_signed(cert: &X509Certificate<'_>) -> Result<(), Error> {
    if cert.issuer().as_raw() != cert.subject().as_raw() {
        return Err(mismatch(
            "signing certificate issuer (self-signed)",
            cert.subject(),
            cert.issuer(),
        ));
    }
    let spki = cert.public_key();
    let curve = spki
        .algorithm
        .parameters
        .as_ref()
        .and_then(|p| p.as_oid().ok());
    if spki.algorithm.algorithm != OID_KEY_TYPE_EC_PUBLIC_KEY || curve != Some(OID_NIST_EC_P384) {
        return Err(Error::Unsupported {
            what: "signing certificate key",
            found: "not an EC P-384 key".into(),
        });
    }
    let alg: &Oid<'_> = &cert.signature_algorithm.algorithm;
    let verification = if *alg == OID_SIG_ECDSA_WITH_SHA384 {
        &ECDSA_P384_SHA384_ASN1
    } else if *alg == OID_SIG_ECDSA_WITH_SHA256 {
        &ECDSA_P384_SHA256_ASN1
    } else if *alg == OID_SIG_ECDSA_WITH_SHA512 {
        &ECDSA_P384_SHA512_ASN1
    } else {
        return Err(Error::Unsupported {
            what: "signing certificate signature algorithm",
            found: alg.to_id_string(),
        });
    };
    UnparsedPublicKey::new(verification, &spki.subject_public_key.data)
        .verify(cert.tbs_certificate.as_ref(), &cert.signature_value.data)
        .map_err(|_| Error::BadSignature("signing certificate (self-signature)"))
}

/// A new image signing key and its certificate, as `nitro-cli build-enclave`
/// takes them. The key is wiped on drop and never printed.
#[cfg(feature = "make-cert")]
pub struct NewSigningCert {
    /// The certificate (DER).
    pub cert_der: Vec<u8>,
    /// The private key, PKCS#8 PEM.
    pub key_pem: zeroize::Zeroizing<String>,
}

#[cfg(feature = "make-cert")]
impl std::fmt::Debug for NewSigningCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewSigningCert")
            .field("cert_der", &self.cert_der.len())
            .finish_non_exhaustive()
    }
}

/// Makes a one-time P-384 key and a self-signed certificate for
/// `builder_npub` (`CN=Nostr, O=Nostr, OU=<npub>`), valid from `not_before`
/// to `not_after` (unix seconds), and checks the result names the builder.
#[cfg(feature = "make-cert")]
pub fn generate(
    builder_npub: &str,
    not_before: i64,
    not_after: i64,
) -> Result<NewSigningCert, Error> {
    use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair, PKCS_ECDSA_P384_SHA384};
    let fail = |e: &dyn std::fmt::Display| malformed("signing certificate", e.to_string());
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, ORGANIZATION);
    dn.push(DnType::OrganizationName, ORGANIZATION);
    dn.push(DnType::OrganizationalUnitName, builder_npub);
    params.distinguished_name = dn;
    params.not_before =
        time::OffsetDateTime::from_unix_timestamp(not_before).map_err(|e| fail(&e))?;
    params.not_after =
        time::OffsetDateTime::from_unix_timestamp(not_after).map_err(|e| fail(&e))?;
    let key = KeyPair::generate_for(&PKCS_ECDSA_P384_SHA384).map_err(|e| fail(&e))?;
    let cert_der = params
        .self_signed(&key)
        .map_err(|e| fail(&e))?
        .der()
        .to_vec();
    SigningCert::from_der(&cert_der)?.check_builder(builder_npub)?;
    Ok(NewSigningCert {
        cert_der,
        key_pem: zeroize::Zeroizing::new(key.serialize_pem()),
    })
}

#[cfg(all(test, feature = "make-cert"))]
mod tests {
    use super::*;

    #[test]
    fn generated_certificates_name_their_builder_only() {
        let npub = "npub1t3cr4p2dzpq7lfngyk5lsxm6jkhx45ls42p37604kzxs79dxp3xq8vu2fc";
        let other = "npub1npahgd5fhdruatxnzewxl45gqjpspwcy8te02zy6p503wudy5wkq986kl0";
        let made = generate(npub, 1_700_000_000, 1_800_000_000).unwrap();
        let cert = SigningCert::from_der(&made.cert_der).unwrap();
        cert.check_builder(npub).unwrap();
        assert!(cert.check_builder(other).is_err());
        assert_eq!(cert.pcr8(), pcr8_from_cert_der(&made.cert_der));
        assert!(made.key_pem.starts_with("-----BEGIN PRIVATE KEY-----"));
        assert!(!format!("{made:?}").contains("PRIVATE"));
    }
}

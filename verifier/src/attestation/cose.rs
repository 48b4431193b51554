//! COSE_Sign1 (RFC 9052 §4.2) as the Nitro Secure Module emits it: an
//! *untagged* array `[protected, unprotected, payload, signature]` where
//! `protected` is the encoded map `{1: -35}` (alg ES384) and `signature` is
//! the 96-byte `r || s` of ECDSA P-384 over the encoded
//! `Sig_structure = ["Signature1", protected, h'', payload]`.
//!
//! Spec: <https://www.rfc-editor.org/rfc/rfc9052#section-4.4> and
//! <https://github.com/aws/aws-nitro-enclaves-nsm-api/blob/main/docs/attestation_process.md>.

use std::io::Cursor;

use aws_lc_rs::signature::{UnparsedPublicKey, ECDSA_P384_SHA384_FIXED};
use ciborium::value::{Integer, Value};

use crate::error::{malformed, Error};

/// Largest attestation document accepted, checked before any parsing.
pub const MAX_DOCUMENT_LEN: usize = 16 * 1024;
/// COSE algorithm identifier of ES384.
const ALG_ES384: i64 = -35;
/// COSE header label of the algorithm.
const HEADER_ALG: i64 = 1;
/// Length of an ES384 signature (`r || s`).
const SIGNATURE_LEN: usize = 96;

/// A decoded COSE_Sign1 whose signature has not been checked yet.
#[derive(Clone)]
pub(crate) struct CoseSign1 {
    /// The protected header exactly as encoded: the signature covers these bytes.
    protected: Vec<u8>,
    /// The payload exactly as encoded.
    pub(crate) payload: Vec<u8>,
    signature: [u8; SIGNATURE_LEN],
}

impl CoseSign1 {
    /// Decodes an untagged COSE_Sign1 whose protected header names ES384.
    /// Rejects input over [`MAX_DOCUMENT_LEN`], a CBOR tag, trailing bytes and
    /// a signature that is not 96 bytes.
    pub(crate) fn parse(bytes: &[u8]) -> Result<Self, Error> {
        if bytes.len() > MAX_DOCUMENT_LEN {
            return Err(Error::TooLarge {
                what: "attestation document",
                size: bytes.len(),
                max: MAX_DOCUMENT_LEN,
            });
        }
        let value = decode_one(bytes, "COSE_Sign1")?;
        let Value::Array(items) = value else {
            return Err(malformed(
                "COSE_Sign1",
                "expected an untagged array of 4 items",
            ));
        };
        let Ok([protected, unprotected, payload, signature]) = <[Value; 4]>::try_from(items) else {
            return Err(malformed("COSE_Sign1", "expected exactly 4 items"));
        };
        let (Value::Bytes(protected), Value::Map(_), Value::Bytes(payload), Value::Bytes(sig)) =
            (protected, unprotected, payload, signature)
        else {
            return Err(malformed(
                "COSE_Sign1",
                "expected [bstr protected, map unprotected, bstr payload, bstr signature]",
            ));
        };
        check_protected_header(&protected)?;
        let signature = <[u8; SIGNATURE_LEN]>::try_from(sig.as_slice()).map_err(|_| {
            malformed(
                "COSE signature",
                format!("{} bytes, expected {SIGNATURE_LEN}", sig.len()),
            )
        })?;
        Ok(Self {
            protected,
            payload,
            signature,
        })
    }

    /// Checks the ES384 signature with `public_point`, the SEC1 point of the
    /// leaf certificate's P-384 key. `r` and `s` must be in `[1, n-1]`;
    /// high-S signatures are accepted: ECDSA does not forbid them and the
    /// NSM produces them.
    pub(crate) fn verify(&self, public_point: &[u8]) -> Result<(), Error> {
        UnparsedPublicKey::new(&ECDSA_P384_SHA384_FIXED, public_point)
            .verify(
                &sig_structure(&self.protected, &self.payload),
                &self.signature,
            )
            .map_err(|_| Error::BadSignature("attestation document (COSE_Sign1)"))
    }
}

/// The bytes ES384 signs: `["Signature1", protected, h'', payload]` in CBOR.
pub(crate) fn sig_structure(protected: &[u8], payload: &[u8]) -> Vec<u8> {
    let value = Value::Array(vec![
        Value::Text("Signature1".into()),
        Value::Bytes(protected.to_vec()),
        Value::Bytes(Vec::new()),
        Value::Bytes(payload.to_vec()),
    ]);
    encode(&value)
}

/// The protected header the NSM writes: `{1: -35}`.
#[cfg_attr(not(any(test, feature = "dev-ca")), allow(dead_code))]
pub(crate) fn es384_protected_header() -> Vec<u8> {
    encode(&Value::Map(vec![(
        Value::Integer(HEADER_ALG.into()),
        Value::Integer(ALG_ES384.into()),
    )]))
}

/// Encodes an untagged COSE_Sign1 from its parts (used by the dev CA).
#[cfg_attr(not(feature = "dev-ca"), allow(dead_code))]
pub(crate) fn encode_sign1(protected: &[u8], payload: &[u8], signature: &[u8]) -> Vec<u8> {
    encode(&Value::Array(vec![
        Value::Bytes(protected.to_vec()),
        Value::Map(Vec::new()),
        Value::Bytes(payload.to_vec()),
        Value::Bytes(signature.to_vec()),
    ]))
}

fn check_protected_header(protected: &[u8]) -> Result<(), Error> {
    let Value::Map(entries) = decode_one(protected, "COSE protected header")? else {
        return Err(malformed("COSE protected header", "not a map"));
    };
    let alg_label = Value::Integer(Integer::from(HEADER_ALG));
    let mut algs = entries.iter().filter(|(k, _)| *k == alg_label);
    match (algs.next(), algs.next()) {
        (Some((_, Value::Integer(alg))), None) if i128::from(*alg) == i128::from(ALG_ES384) => {
            Ok(())
        }
        (Some((_, alg)), None) => Err(Error::Unsupported {
            what: "COSE algorithm",
            found: format!("{alg:?} (expected -35, ES384)"),
        }),
        (None, _) => Err(Error::Missing("COSE algorithm (protected header label 1)")),
        (Some(_), Some(_)) => Err(malformed("COSE protected header", "algorithm given twice")),
    }
}

/// Decodes exactly one CBOR item from `bytes`, rejecting trailing bytes.
pub(crate) fn decode_one(bytes: &[u8], what: &'static str) -> Result<Value, Error> {
    let mut cursor = Cursor::new(bytes);
    let value: Value = ciborium::from_reader(&mut cursor).map_err(|e| malformed(what, e))?;
    let used = usize::try_from(cursor.position()).unwrap_or(usize::MAX);
    if used != bytes.len() {
        return Err(malformed(
            what,
            format!(
                "{} bytes after the CBOR item",
                bytes.len().saturating_sub(used)
            ),
        ));
    }
    Ok(value)
}

/// Encodes a CBOR value. Writing to a `Vec` cannot fail for values built here.
pub(crate) fn encode(value: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    // ok: ciborium only fails on writer errors, and Vec<u8> never fails.
    let _ = ciborium::into_writer(value, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protected_header_is_the_nsm_one() {
        assert_eq!(es384_protected_header(), vec![0xa1, 0x01, 0x38, 0x22]);
    }

    #[test]
    fn rejects_tagged_trailing_and_oversized() {
        let good = encode_sign1(&es384_protected_header(), b"{}", &[1u8; 96]);
        assert!(CoseSign1::parse(&good).is_ok());

        let mut tagged = vec![0xd2];
        tagged.extend_from_slice(&good);
        assert!(CoseSign1::parse(&tagged).is_err());

        let mut trailing = good.clone();
        trailing.push(0);
        assert!(CoseSign1::parse(&trailing).is_err());

        let big = vec![0u8; MAX_DOCUMENT_LEN + 1];
        assert!(matches!(
            CoseSign1::parse(&big),
            Err(Error::TooLarge { .. })
        ));
    }

    #[test]
    fn rejects_wrong_algorithm_and_signature_length() {
        let es256 = encode(&Value::Map(vec![(
            Value::Integer(1.into()),
            Value::Integer((-7).into()),
        )]));
        assert!(CoseSign1::parse(&encode_sign1(&es256, b"", &[1u8; 96])).is_err());
        let header = es384_protected_header();
        assert!(CoseSign1::parse(&encode_sign1(&header, b"", &[1u8; 64])).is_err());
        assert!(CoseSign1::parse(&encode_sign1(&header, b"", &[1u8; 97])).is_err());
    }

    #[test]
    fn hostile_length_prefixes_do_not_allocate_or_panic() {
        // bstr claiming 2^63 bytes; array claiming 2^63 items; deep nesting.
        for bytes in [
            vec![0x5b, 0x80, 0, 0, 0, 0, 0, 0, 0],
            vec![0x9b, 0x80, 0, 0, 0, 0, 0, 0, 0],
            vec![0x81; 10_000],
        ] {
            assert!(CoseSign1::parse(&bytes).is_err());
        }
    }
}

//! The attestation document payload: a CBOR map signed inside the COSE_Sign1.
//!
//! Spec: <https://github.com/aws/aws-nitro-enclaves-nsm-api/blob/main/docs/attestation_process.md>
//! §3.2. Fields and their bounds:
//!
//! | key         | type                         | bound here              |
//! |-------------|------------------------------|-------------------------|
//! | module_id   | text                         | 1..=255 bytes           |
//! | digest      | text ("SHA384")              | checked by the verifier |
//! | timestamp   | uint, ms since the epoch     |                         |
//! | pcrs        | map uint 0..=31 → bytes      | 48 bytes each           |
//! | certificate | bytes (DER)                  | 1..=1024 bytes          |
//! | cabundle    | [bytes] root first           | 1..=10 certificates     |
//! | public_key  | bytes / null                 | 1..=1024 bytes          |
//! | user_data   | bytes / null                 | 0..=512 bytes           |
//! | nonce       | bytes / null                 | 0..=512 bytes           |
//!
//! Real documents use definite or indefinite-length maps and CBOR null for
//! absent optional fields; both are accepted. Unknown keys are ignored
//! (the map is signed by AWS); a key given twice is rejected.

use std::collections::BTreeMap;

use ciborium::value::Value;

use super::cose::{decode_one, encode};
use crate::error::{malformed, Error};
use crate::pcr::{Pcr, MAX_PCR_INDEX};

/// Most certificates accepted in `cabundle`.
pub const MAX_CABUNDLE: usize = 10;
const MAX_CERT_LEN: usize = 1024;
const MAX_MODULE_ID_LEN: usize = 255;
const MAX_PUBLIC_KEY_LEN: usize = 1024;
const MAX_USER_DATA_LEN: usize = 512;
const MAX_NONCE_LEN: usize = 512;

/// The decoded payload of an attestation document. Nothing in it is trusted
/// until [`super::Attestation::verify`] succeeds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttestationDoc {
    /// Enclave module id, e.g. `i-0ffff615a409a72d7-enc0195f17eaba9b385`.
    pub module_id: String,
    /// Digest of the PCRs; the only accepted value is `SHA384`.
    pub digest: String,
    /// When the NSM made the document, in milliseconds since the epoch.
    pub timestamp_ms: u64,
    /// PCR values by index.
    pub pcrs: BTreeMap<u8, Pcr>,
    /// DER of the leaf certificate whose key signs the document.
    pub certificate: Vec<u8>,
    /// DER certificates from the root (`cabundle[0]`) to the leaf's issuer.
    pub cabundle: Vec<Vec<u8>>,
    /// The public key the enclave asked to bind (for enclaved: the 32-byte
    /// x-only service pubkey).
    pub public_key: Option<Vec<u8>>,
    /// Application data the enclave asked to bind.
    pub user_data: Option<Vec<u8>>,
    /// Nonce the enclave asked to bind.
    pub nonce: Option<Vec<u8>>,
}

impl AttestationDoc {
    /// Decodes the payload map. Bounds are checked before anything is kept.
    pub fn from_cbor(payload: &[u8]) -> Result<Self, Error> {
        let Value::Map(entries) = decode_one(payload, "attestation payload")? else {
            return Err(malformed("attestation payload", "not a map"));
        };
        let mut fields: BTreeMap<String, Value> = BTreeMap::new();
        for (key, value) in entries {
            let Value::Text(key) = key else {
                return Err(malformed("attestation payload", "a key is not text"));
            };
            if fields.contains_key(&key) {
                return Err(malformed(
                    "attestation payload",
                    format!("key {key:?} given twice"),
                ));
            }
            fields.insert(key, value);
        }
        let mut take = |name: &'static str| fields.remove(name);

        let module_id = text(take("module_id"), "module_id")?;
        if module_id.is_empty() || module_id.len() > MAX_MODULE_ID_LEN {
            return Err(malformed("module_id", "must be 1 to 255 bytes"));
        }
        let digest = text(take("digest"), "digest")?;
        let timestamp_ms = match take("timestamp") {
            Some(Value::Integer(i)) => u64::try_from(i)
                .map_err(|_| malformed("timestamp", "not an unsigned 64-bit integer"))?,
            Some(_) => return Err(malformed("timestamp", "not an integer")),
            None => return Err(Error::Missing("timestamp")),
        };
        let pcrs = pcrs(take("pcrs"))?;
        let certificate = bytes(take("certificate"), "certificate", 1, MAX_CERT_LEN)?;
        let cabundle = cabundle(take("cabundle"))?;
        let public_key = optional_bytes(take("public_key"), "public_key", 1, MAX_PUBLIC_KEY_LEN)?;
        let user_data = optional_bytes(take("user_data"), "user_data", 0, MAX_USER_DATA_LEN)?;
        let nonce = optional_bytes(take("nonce"), "nonce", 0, MAX_NONCE_LEN)?;
        Ok(Self {
            module_id,
            digest,
            timestamp_ms,
            pcrs,
            certificate,
            cabundle,
            public_key,
            user_data,
            nonce,
        })
    }

    /// Encodes the payload the way the NSM does (definite-length map, absent
    /// optional fields as CBOR null).
    pub fn to_cbor(&self) -> Vec<u8> {
        let opt = |v: &Option<Vec<u8>>| v.clone().map_or(Value::Null, Value::Bytes);
        let entry = |k: &str, v: Value| (Value::Text(k.into()), v);
        let pcrs = self
            .pcrs
            .iter()
            .map(|(i, p)| (Value::Integer((*i).into()), Value::Bytes(p.0.to_vec())))
            .collect();
        encode(&Value::Map(vec![
            entry("module_id", Value::Text(self.module_id.clone())),
            entry("digest", Value::Text(self.digest.clone())),
            entry("timestamp", Value::Integer(self.timestamp_ms.into())),
            entry("pcrs", Value::Map(pcrs)),
            entry("certificate", Value::Bytes(self.certificate.clone())),
            entry(
                "cabundle",
                Value::Array(self.cabundle.iter().cloned().map(Value::Bytes).collect()),
            ),
            entry("public_key", opt(&self.public_key)),
            entry("user_data", opt(&self.user_data)),
            entry("nonce", opt(&self.nonce)),
        ]))
    }

    /// The value of PCR `index`, or all zeros if the document omits it.
    pub fn pcr(&self, index: u8) -> Pcr {
        self.pcrs.get(&index).copied().unwrap_or(Pcr::ZERO)
    }

    /// The document's timestamp in whole seconds.
    pub fn timestamp_secs(&self) -> u64 {
        self.timestamp_ms / 1000
    }
}

fn text(value: Option<Value>, what: &'static str) -> Result<String, Error> {
    match value {
        Some(Value::Text(s)) => Ok(s),
        Some(_) => Err(malformed(what, "not a text string")),
        None => Err(Error::Missing(what)),
    }
}

fn bytes(
    value: Option<Value>,
    what: &'static str,
    min: usize,
    max: usize,
) -> Result<Vec<u8>, Error> {
    match optional_bytes(value, what, min, max)? {
        Some(b) => Ok(b),
        None => Err(Error::Missing(what)),
    }
}

fn optional_bytes(
    value: Option<Value>,
    what: &'static str,
    min: usize,
    max: usize,
) -> Result<Option<Vec<u8>>, Error> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bytes(b)) if (min..=max).contains(&b.len()) => Ok(Some(b)),
        Some(Value::Bytes(b)) => Err(malformed(
            what,
            format!("{} bytes, expected {min} to {max}", b.len()),
        )),
        Some(_) => Err(malformed(what, "not a byte string")),
    }
}

fn pcrs(value: Option<Value>) -> Result<BTreeMap<u8, Pcr>, Error> {
    let entries = match value {
        Some(Value::Map(entries)) => entries,
        Some(_) => return Err(malformed("pcrs", "not a map")),
        None => return Err(Error::Missing("pcrs")),
    };
    if entries.is_empty() || entries.len() > usize::from(MAX_PCR_INDEX) + 1 {
        return Err(malformed(
            "pcrs",
            format!("{} entries, expected 1 to 32", entries.len()),
        ));
    }
    let mut out = BTreeMap::new();
    for (key, value) in entries {
        let index = match key {
            Value::Integer(i) => u8::try_from(i).ok().filter(|i| *i <= MAX_PCR_INDEX),
            _ => None,
        }
        .ok_or_else(|| malformed("pcrs", "index is not an integer from 0 to 31"))?;
        let Value::Bytes(b) = value else {
            return Err(malformed("pcrs", "value is not a byte string"));
        };
        if out.insert(index, Pcr::from_slice(&b)?).is_some() {
            return Err(malformed("pcrs", format!("PCR{index} given twice")));
        }
    }
    Ok(out)
}

fn cabundle(value: Option<Value>) -> Result<Vec<Vec<u8>>, Error> {
    let items = match value {
        Some(Value::Array(items)) => items,
        Some(_) => return Err(malformed("cabundle", "not an array")),
        None => return Err(Error::Missing("cabundle")),
    };
    if items.len() > MAX_CABUNDLE {
        return Err(Error::TooLarge {
            what: "cabundle",
            size: items.len(),
            max: MAX_CABUNDLE,
        });
    }
    if items.is_empty() {
        return Err(malformed("cabundle", "empty"));
    }
    items
        .into_iter()
        .map(|item| bytes(Some(item), "cabundle certificate", 1, MAX_CERT_LEN))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> AttestationDoc {
        AttestationDoc {
            module_id: "i-0-enc0".into(),
            digest: "SHA384".into(),
            timestamp_ms: 1_743_516_970_144,
            pcrs: (0..16).map(|i| (i, Pcr::ZERO)).collect(),
            certificate: vec![1; 10],
            cabundle: vec![vec![2; 10]],
            public_key: Some(vec![3; 32]),
            user_data: Some(Vec::new()),
            nonce: None,
        }
    }

    #[test]
    fn round_trips() {
        let doc = sample();
        assert_eq!(AttestationDoc::from_cbor(&doc.to_cbor()).unwrap(), doc);
    }

    /// Re-encodes `doc` with indefinite-length maps, as some NSM versions do.
    fn indefinite(doc: &AttestationDoc) -> Vec<u8> {
        let Value::Map(entries) = decode_one(&doc.to_cbor(), "t").unwrap() else {
            unreachable!()
        };
        let mut out = vec![0xbf];
        for (k, v) in entries {
            out.extend(encode(&k));
            match v {
                Value::Map(inner) => {
                    out.push(0xbf);
                    for (k, v) in inner {
                        out.extend(encode(&k));
                        out.extend(encode(&v));
                    }
                    out.push(0xff);
                }
                v => out.extend(encode(&v)),
            }
        }
        out.push(0xff);
        out
    }

    #[test]
    fn accepts_indefinite_length_maps() {
        let doc = sample();
        assert_eq!(AttestationDoc::from_cbor(&indefinite(&doc)).unwrap(), doc);
    }

    #[test]
    fn rejects_out_of_bounds_fields() {
        let mut doc = sample();
        doc.cabundle = vec![vec![2; 10]; MAX_CABUNDLE + 1];
        assert!(matches!(
            AttestationDoc::from_cbor(&doc.to_cbor()),
            Err(Error::TooLarge {
                what: "cabundle",
                ..
            })
        ));

        let mut doc = sample();
        doc.cabundle.clear();
        assert!(AttestationDoc::from_cbor(&doc.to_cbor()).is_err());

        let mut doc = sample();
        doc.user_data = Some(vec![0; MAX_USER_DATA_LEN + 1]);
        assert!(AttestationDoc::from_cbor(&doc.to_cbor()).is_err());

        let mut doc = sample();
        doc.public_key = Some(Vec::new());
        assert!(AttestationDoc::from_cbor(&doc.to_cbor()).is_err());

        let mut doc = sample();
        doc.module_id.clear();
        assert!(AttestationDoc::from_cbor(&doc.to_cbor()).is_err());
    }

    #[test]
    fn rejects_duplicate_keys_and_bad_pcrs() {
        let dup = encode(&Value::Map(vec![
            (Value::Text("digest".into()), Value::Text("SHA384".into())),
            (Value::Text("digest".into()), Value::Text("SHA384".into())),
        ]));
        assert!(AttestationDoc::from_cbor(&dup).is_err());
        let short_pcr = encode(&Value::Map(vec![(
            Value::Integer(0.into()),
            Value::Bytes(vec![0; 32]),
        )]));
        assert!(pcrs(decode_one(&short_pcr, "t").ok()).is_err());
        let big_index = encode(&Value::Map(vec![(
            Value::Integer(32.into()),
            Value::Bytes(vec![0; 48]),
        )]));
        assert!(pcrs(decode_one(&big_index, "t").ok()).is_err());
    }
}

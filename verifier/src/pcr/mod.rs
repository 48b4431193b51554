//! Platform Configuration Registers of a Nitro Enclave and the formulas that
//! tie them to an image signer (PCR8) and an EC2 instance (PCR4).
//!
//! Spec: <https://docs.aws.amazon.com/enclaves/latest/user/set-up-attestation.html>.
//! A PCR starts as 48 zero bytes and is *extended* with a measurement:
//! `PCR = SHA384(PCR || measurement)`. PCR4 and PCR8 are each extended once:
//!
//! - PCR4 = `pcr_digest(UTF-8 instance id)`: the raw id string is the
//!   measurement (`nitro-cli pcr --input` hashes it first, which is wrong);
//! - PCR8 = `pcr_digest(SHA384(DER of the image signing certificate))`.

mod measurements;

use std::fmt;
use std::str::FromStr;

use sha2::{Digest, Sha384};

pub use self::measurements::{Measurements, CODE_PCRS, MAX_PCRS_JSON};
use crate::error::{malformed, Error};

/// Length of a SHA-384 PCR value in bytes.
pub const PCR_LEN: usize = 48;

/// One 48-byte PCR value. Displays as lowercase hex, parses from hex.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Pcr(pub [u8; PCR_LEN]);

impl Pcr {
    /// The all-zero value: a PCR that was never extended, or PCR0..2 of an
    /// enclave started in debug mode.
    pub const ZERO: Self = Self([0; PCR_LEN]);

    /// Whether every byte is zero.
    pub fn is_zero(&self) -> bool {
        self.0.iter().all(|b| *b == 0)
    }

    /// Builds a PCR from a slice, which must be exactly 48 bytes.
    pub fn from_slice(bytes: &[u8]) -> Result<Self, Error> {
        <[u8; PCR_LEN]>::try_from(bytes)
            .map(Self)
            .map_err(|_| malformed("PCR", format!("{} bytes, expected {PCR_LEN}", bytes.len())))
    }

    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8; PCR_LEN] {
        &self.0
    }
}

impl fmt::Display for Pcr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for Pcr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Pcr({self})")
    }
}

impl FromStr for Pcr {
    type Err = Error;

    /// Parses 96 hex digits (either case).
    fn from_str(s: &str) -> Result<Self, Error> {
        if s.len() != PCR_LEN * 2 {
            return Err(malformed(
                "PCR",
                format!("{} hex digits, expected {}", s.len(), PCR_LEN * 2),
            ));
        }
        let bytes = hex::decode(s).map_err(|e| malformed("PCR", e))?;
        Self::from_slice(&bytes)
    }
}

/// Highest PCR index an attestation document may carry.
pub const MAX_PCR_INDEX: u8 = 31;

/// Parses a PCR label such as `PCR0` or `PCR15` (as in `x` tags and
/// `pcrs.json`): `PCR` and a canonical decimal index from 0 to 31.
pub fn parse_pcr_label(label: &str) -> Option<u8> {
    let digits = label.strip_prefix("PCR")?;
    let canonical = !digits.is_empty()
        && digits.len() <= 2
        && digits.bytes().all(|b| b.is_ascii_digit())
        && !(digits.len() > 1 && digits.starts_with('0'));
    if !canonical {
        return None;
    }
    digits.parse().ok().filter(|i| *i <= MAX_PCR_INDEX)
}

/// Extends an all-zero PCR with `measurement`: `SHA384(48 zero bytes || measurement)`.
pub fn pcr_digest(measurement: &[u8]) -> Pcr {
    let mut hasher = Sha384::new();
    hasher.update([0u8; PCR_LEN]);
    hasher.update(measurement);
    Pcr(hasher.finalize().into())
}

/// Whether `id` is shaped like an EC2 instance id: `i-` and 8 or 17
/// lowercase hex digits.
pub fn is_instance_id(id: &str) -> bool {
    id.strip_prefix("i-").is_some_and(|hex| {
        matches!(hex.len(), 8 | 17) && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    })
}

/// PCR4 of an enclave whose parent is the EC2 instance `instance_id`
/// (for example `i-0ffff615a409a72d7`).
pub fn pcr4_from_instance_id(instance_id: &str) -> Pcr {
    pcr_digest(instance_id.as_bytes())
}

/// PCR8 of an image signed with the certificate `cert_der` (DER bytes).
pub fn pcr8_from_cert_der(cert_der: &[u8]) -> Pcr {
    pcr_digest(&Sha384::digest(cert_der))
}

/// PCR8 of an image signed with `cert`, given as DER or PEM. The input must
/// parse as an X.509 certificate; PEM must hold exactly one `CERTIFICATE`.
pub fn pcr8_from_cert(cert: &[u8]) -> Result<Pcr, Error> {
    let der = cert_der_from_der_or_pem(cert)?;
    Ok(pcr8_from_cert_der(&der))
}

/// Returns the DER of a certificate given as DER or PEM, checking that it
/// parses as X.509 with nothing after it.
pub fn cert_der_from_der_or_pem(input: &[u8]) -> Result<Vec<u8>, Error> {
    let der = if looks_like_pem(input) {
        let blocks = pem::parse_many(input).map_err(|e| malformed("PEM certificate", e))?;
        let mut certs = blocks.into_iter().filter(|b| b.tag() == "CERTIFICATE");
        let (Some(first), None) = (certs.next(), certs.next()) else {
            return Err(malformed(
                "PEM certificate",
                "expected exactly one CERTIFICATE block",
            ));
        };
        first.into_contents()
    } else {
        input.to_vec()
    };
    match x509_parser::parse_x509_certificate(&der) {
        Ok(([], _)) => Ok(der),
        Ok((rest, _)) => Err(malformed(
            "certificate",
            format!("{} bytes after the certificate", rest.len()),
        )),
        Err(e) => Err(malformed("certificate", e)),
    }
}

fn looks_like_pem(input: &[u8]) -> bool {
    let start = input
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(input.len());
    input
        .get(start..)
        .is_some_and(|s| s.starts_with(b"-----BEGIN"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pcr_digest_of_nothing_is_sha384_of_zeros() {
        let expected: [u8; 48] = Sha384::digest([0u8; 48]).into();
        assert_eq!(pcr_digest(&[]).0, expected);
    }

    #[test]
    fn pcr_hex_round_trip_and_length_checks() {
        let p = pcr_digest(b"x");
        assert_eq!(p.to_string().parse::<Pcr>().ok(), Some(p));
        assert!("00".parse::<Pcr>().is_err());
        assert!("zz".repeat(48).parse::<Pcr>().is_err());
        assert!(Pcr::from_slice(&[0; 47]).is_err());
    }

    #[test]
    fn pcr_labels_are_canonical() {
        assert_eq!(parse_pcr_label("PCR0"), Some(0));
        assert_eq!(parse_pcr_label("PCR31"), Some(31));
        for bad in [
            "PCR", "PCR32", "PCR+1", "PCR01", "PCR-0", "pcr1", "PCR1 ", "PCR100", "x",
        ] {
            assert_eq!(parse_pcr_label(bad), None, "{bad}");
        }
    }

    #[test]
    fn rejects_things_that_are_not_certificates() {
        assert!(pcr8_from_cert(b"not a certificate").is_err());
        assert!(
            pcr8_from_cert(b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
                .is_err()
        );
    }
}

//! The one error type of the library, grouped by what went wrong the way
//! rustls groups its errors by who is at fault: bytes that do not decode,
//! input over a size cap, a certificate path that does not hold, a signature
//! that does not verify, and values that must agree but do not.

use std::fmt;

/// Everything a check in this crate can reject.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// The input does not decode as its format says (CBOR, COSE, JSON,
    /// base64, hex, DER). `what` names the field or structure.
    Malformed {
        /// The field or structure that failed to decode.
        what: &'static str,
        /// Why, in plain words.
        detail: String,
    },
    /// The input is larger than the cap for it; nothing was parsed.
    TooLarge {
        /// What was too large.
        what: &'static str,
        /// Its size (bytes or items).
        size: usize,
        /// The cap.
        max: usize,
    },
    /// A required field or tag is absent.
    Missing(&'static str),
    /// A value the format fixes has another value (digest, kind, algorithm).
    Unsupported {
        /// What was checked.
        what: &'static str,
        /// What the input holds.
        found: String,
    },
    /// The certificate path does not lead to the trusted root at the time.
    Certificate(CertificateError),
    /// A signature does not verify. `what` names the signed object.
    BadSignature(&'static str),
    /// A Nostr event's id is not the hash of its content. `what` names the event.
    BadEventId(&'static str),
    /// Something is past its expiry at the time of the check.
    Expired {
        /// What expired.
        what: &'static str,
        /// When it expired (unix seconds).
        expired_at: u64,
        /// The time of the check (unix seconds).
        time: u64,
    },
    /// The image is not a release that the caller's release policy accepts:
    /// too few trusted maintainers signed its measurements, or its version
    /// is below the floor. The detail says which and why.
    NotReleased(String),
    /// Two values that must be equal are not.
    Mismatch {
        /// What was compared.
        what: &'static str,
        /// The value it must have.
        expected: String,
        /// The value it has.
        found: String,
    },
}

/// Why a certificate path was refused.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CertificateError {
    /// `cabundle[0]` is not, byte for byte, the trusted root.
    UntrustedRoot {
        /// SHA-256 of the trusted root's DER.
        trusted_sha256: String,
        /// SHA-256 of what the document carries instead.
        found_sha256: String,
    },
    /// A certificate is outside its validity period at the time of the check.
    NotValidAt {
        /// Subject of the certificate.
        subject: String,
        /// The time of the check (unix seconds).
        time: u64,
        /// Start of validity (unix seconds).
        not_before: i64,
        /// End of validity (unix seconds).
        not_after: i64,
    },
    /// The path from the leaf to the root does not verify, or does not use
    /// the bundle's certificates in the bundle's order.
    Path(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Malformed { what, detail } => write!(f, "malformed {what}: {detail}"),
            Self::TooLarge { what, size, max } => {
                write!(f, "{what} is too large: {size} (at most {max})")
            }
            Self::Missing(what) => write!(f, "missing {what}"),
            Self::Unsupported { what, found } => write!(f, "unsupported {what}: {found}"),
            Self::Certificate(e) => write!(f, "{e}"),
            Self::BadSignature(what) => write!(f, "the signature of the {what} does not verify"),
            Self::BadEventId(what) => write!(
                f,
                "the id of the {what} is not the hash of its content (it was altered after signing)"
            ),
            Self::Expired {
                what,
                expired_at,
                time,
            } => write!(
                f,
                "the {what} expired at {expired_at}; the check is at {time}"
            ),
            Self::NotReleased(detail) => write!(f, "not a trusted release: {detail}"),
            Self::Mismatch {
                what,
                expected,
                found,
            } => write!(f, "{what} mismatch: expected {expected}, found {found}"),
        }
    }
}

impl fmt::Display for CertificateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UntrustedRoot {
                trusted_sha256,
                found_sha256,
            } => write!(
                f,
                "the certificate bundle does not start at the trusted root \
                 (trusted root SHA-256 {trusted_sha256}, bundle root SHA-256 {found_sha256})"
            ),
            Self::NotValidAt {
                subject,
                time,
                not_before,
                not_after,
            } => write!(
                f,
                "certificate \"{subject}\" is not valid at {time} \
                 (valid from {not_before} to {not_after})"
            ),
            Self::Path(detail) => write!(f, "certificate path does not verify: {detail}"),
        }
    }
}

impl std::error::Error for Error {}
impl std::error::Error for CertificateError {}

impl From<CertificateError> for Error {
    fn from(e: CertificateError) -> Self {
        Self::Certificate(e)
    }
}

/// Shorthand for building [`Error::Malformed`].
pub(crate) fn malformed(what: &'static str, detail: impl fmt::Display) -> Error {
    Error::Malformed {
        what,
        detail: detail.to_string(),
    }
}

/// Shorthand for building [`Error::Mismatch`] from two displayable values.
pub(crate) fn mismatch(
    what: &'static str,
    expected: impl fmt::Display,
    found: impl fmt::Display,
) -> Error {
    Error::Mismatch {
        what,
        expected: expected.to_string(),
        found: found.to_string(),
    }
}

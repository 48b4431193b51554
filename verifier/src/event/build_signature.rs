//! Kind 63795, the build signature: the builder's Nostr key vouches for an
//! enclave image by signing its PCR8 and the certificate PCR8 measures.
//!
//! Tags, in order: `["-"]`, `["t", prod|dev]`, `["cert", base64 DER]`,
//! `["PCR8", hex]`; content empty. The NECS form, kind 23794, adds `r` and
//! `v` and carries the certificate as PEM; it is read the same way.

use base64::Engine;
use nostr::{Event, EventBuilder, Kind, Tag};

use super::{
    check_kinds_and_signature, docker_release_error, is_docker_release, mode_of, npub, single_tag,
    tag, Mode, KIND_BUILD_SIGNATURE, KIND_NECS_BUILD_SIGNATURE,
};
use crate::error::{malformed, mismatch, Error};
use crate::pcr::Pcr;
use crate::signing_cert::{SigningCert, MAX_CERT_LEN};

const WHAT: &str = "build signature event";

/// A build signature event whose id and signature verify and whose tags
/// have the right shape. Its claims are checked with the `check_*` methods.
#[derive(Debug, Clone)]
pub struct BuildSignature {
    event: Event,
    mode: Mode,
    cert: SigningCert,
    pcr8: Pcr,
}

impl BuildSignature {
    /// The unsigned event for an image signed with `cert`, in `mode`
    /// (`Prod` or `Dev`). PCR8 is computed from the certificate.
    pub fn builder(cert: &SigningCert, mode: Mode) -> Result<EventBuilder, Error> {
        if mode == Mode::Debug {
            return Err(malformed("build signature mode", "must be prod or dev"));
        }
        let cert_b64 = base64::engine::general_purpose::STANDARD.encode(cert.der());
        Ok(
            EventBuilder::new(Kind::from_u16(KIND_BUILD_SIGNATURE), "").tags([
                tag_of([tag::PROTECTED])?,
                tag_of([tag::MODE, mode.as_str()])?,
                tag_of([tag::CERT, cert_b64.as_str()])?,
                tag_of([tag::PCR8, cert.pcr8().to_string().as_str()])?,
            ]),
        )
    }

    /// Checks kind (63795 or NECS 23794), id, signature and tag shape.
    pub fn from_event(event: Event) -> Result<Self, Error> {
        check_kinds_and_signature(
            &event,
            &[KIND_BUILD_SIGNATURE, KIND_NECS_BUILD_SIGNATURE],
            WHAT,
        )?;
        if is_docker_release(&event) {
            return Err(docker_release_error("build signature"));
        }
        let mode = mode_of(&event)?;
        if mode == Mode::Debug {
            return Err(malformed("build signature mode", "must be prod or dev"));
        }
        let der = cert_der(single_tag(&event, tag::CERT)?)?;
        let cert = SigningCert::from_der(&der)?;
        let pcr8 = single_tag(&event, tag::PCR8)?.parse()?;
        Ok(Self {
            event,
            mode,
            cert,
            pcr8,
        })
    }

    /// The event's `PCR8` tag must equal the attested PCR8.
    pub fn check_pcr8(&self, attested: &Pcr) -> Result<(), Error> {
        if self.pcr8 == *attested {
            Ok(())
        } else {
            Err(mismatch(
                "build signature PCR8 (attested PCR8 vs PCR8 tag)",
                attested,
                self.pcr8,
            ))
        }
    }

    /// The certificate must hash to the `PCR8` tag, be self-signed and name
    /// the event's author as builder.
    pub fn check_cert(&self) -> Result<(), Error> {
        self.check_cert_cached(None)
    }

    /// The same, reusing a self-signature that verified earlier in this
    /// run (see [`crate::cache`]).
    pub fn check_cert_cached(
        &self,
        cache: Option<&crate::cache::VerifyCache>,
    ) -> Result<(), Error> {
        let measured = self.cert.pcr8();
        if measured != self.pcr8 {
            return Err(mismatch(
                "PCR8 of the cert tag (PCR8 tag vs hash of cert)",
                self.pcr8,
                measured,
            ));
        }
        self.cert
            .check_builder_cached(&npub(&self.event.pubkey), cache)
    }

    /// The signed event.
    pub fn event(&self) -> &Event {
        &self.event
    }

    /// The `t` tag.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// The image signing certificate.
    pub fn cert(&self) -> &SigningCert {
        &self.cert
    }

    /// The `PCR8` tag.
    pub fn pcr8(&self) -> &Pcr {
        &self.pcr8
    }
}

/// The `cert` tag's DER: standard base64 (63795), or PEM (NECS 23794).
fn cert_der(value: &str) -> Result<Vec<u8>, Error> {
    // PEM adds a header, a footer and a line break every 64 characters.
    let max = MAX_CERT_LEN.div_ceil(3) * 4 * 65 / 64 + 128;
    if value.len() > max {
        return Err(Error::TooLarge {
            what: "cert tag",
            size: value.len(),
            max,
        });
    }
    if value.trim_start().starts_with("-----BEGIN") {
        let pem = pem::parse(value).map_err(|e| malformed("cert tag", e))?;
        if pem.tag() != "CERTIFICATE" {
            return Err(malformed(
                "cert tag",
                format!("PEM of a {:?}, not a CERTIFICATE", pem.tag()),
            ));
        }
        return Ok(pem.into_contents());
    }
    base64::engine::general_purpose::STANDARD
        .decode(value)
        .map_err(|e| malformed("cert tag", e))
}

/// A tag from its strings (name first).
pub(crate) fn tag_of<const N: usize>(parts: [&str; N]) -> Result<Tag, Error> {
    Tag::parse(parts).map_err(|e| malformed("tag", e))
}

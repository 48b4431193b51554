//! The builder's and launcher's signature events checked against an
//! attestation the caller has already verified: what the parent checks
//! before it answers `start`, and what the enclave checks in the parent's
//! answer before it announces itself. [`super::verify_instance`] runs the
//! same checks, one by one, on the events embedded in an instance event.

use nostr::Event;

use crate::attestation::VerifiedAttestation;
use crate::error::Error;
use crate::event::build_signature::BuildSignature;
use crate::event::instance_signature::InstanceSignature;
use crate::event::Mode;

/// The two signature events, each verified against the attestation.
#[derive(Debug, Clone)]
pub struct Signatures {
    /// The builder's kind 63795 event.
    pub build: BuildSignature,
    /// The launcher's kind 63796 event.
    pub instance: InstanceSignature,
}

/// Checks that `build` is a valid build signature whose PCR8 is the attested
/// one and whose certificate hashes to it and names its author, and that
/// `instance` is a valid instance signature whose PCR4 is the attested one.
pub fn check_signatures(
    attestation: &VerifiedAttestation,
    build: Event,
    instance: Event,
) -> Result<Signatures, Error> {
    let doc = attestation.doc();
    let build = BuildSignature::from_event(build)?;
    build.check_pcr8(&doc.pcr(8))?;
    build.check_cert()?;
    let instance = InstanceSignature::from_event(instance)?;
    instance.check_pcr4(&doc.pcr(4))?;
    Ok(Signatures { build, instance })
}

impl Signatures {
    /// The mode (`t` tag) of an instance event announcing `attestation` with
    /// these signatures: `debug` when PCR0 is all zeros; otherwise `prod`
    /// when the launcher asks for it (both signatures must then be `prod`),
    /// else `dev`. The same rule [`super::verify_instance`] checks.
    pub fn instance_mode(
        &self,
        attestation: &VerifiedAttestation,
        prod: bool,
    ) -> Result<Mode, Error> {
        let debug = attestation.is_debug();
        let mode = match (debug, prod) {
            (true, _) => Mode::Debug,
            (false, true) => Mode::Prod,
            (false, false) => Mode::Dev,
        };
        super::check_mode(mode, debug, self.build.mode(), Some(self.instance.mode()))?;
        Ok(mode)
    }
}

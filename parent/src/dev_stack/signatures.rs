//! Throw-away builder and launcher signature events for a local stack:
//! a builder certificate (`O=Nostr`, `OU=<builder npub>`) and the kind 63795
//! and 63796 events, signed by keys generated here and never written down.

use nostr::{Event, Keys, Timestamp};
use verifier::attestation::dev::{builder_certificate, Validity};
use verifier::event::build_signature::BuildSignature;
use verifier::event::instance_signature::InstanceSignature;
use verifier::event::{npub, Mode};
use verifier::pcr::pcr4_from_instance_id;
use verifier::signing_cert::SigningCert;

/// An instance id shaped like EC2's, for the dev stack's PCR4.
pub const DEV_INSTANCE_ID: &str = "i-0de0000000000dev0";

/// The instance id of instance `number` of a dev cluster: each runs on
/// an EC2 instance of its own (its own PCR4).
pub fn member_instance_id(number: usize) -> String {
    format!("i-0de0000000000d{:03x}", number % 0x1000)
}

/// The dev builder's and launcher's events.
#[derive(Debug, Clone)]
pub struct DevSignatures {
    /// The builder's image signing certificate (DER).
    pub cert_der: Vec<u8>,
    /// The instance id the launcher signed.
    pub instance_id: String,
    /// Kind 63795 by the builder.
    pub build: Event,
    /// Kind 63796 by the launcher.
    pub instance: Event,
}

impl DevSignatures {
    /// Fresh keys, certificate and dev events at `now` (unix seconds).
    pub fn generate(instance_id: &str, now: u64) -> anyhow::Result<Self> {
        Self::generate_in(instance_id, now, Mode::Dev)
    }

    /// The same, with both events signed for `mode` (prod or dev).
    pub fn generate_in(instance_id: &str, now: u64, mode: Mode) -> anyhow::Result<Self> {
        let builder = Keys::generate();
        let cert_der = Self::certificate(&builder, now)?;
        Self::sign(
            &builder,
            &Keys::generate(),
            cert_der,
            instance_id,
            now,
            mode,
        )
    }

    /// A builder certificate for `builder`, valid from a day before `now`
    /// for ten years.
    pub fn certificate(builder: &Keys, now: u64) -> anyhow::Result<Vec<u8>> {
        let now = i64::try_from(now)?;
        Ok(builder_certificate(
            &npub(&builder.public_key()),
            Validity::from(now - 86_400, 10 * 365 * 86_400),
        )?)
    }

    /// Events signed at `now` for `mode` by `builder` (whose certificate is
    /// `cert_der`) and `launcher`, which may be kept from an earlier run.
    pub fn sign(
        builder: &Keys,
        launcher: &Keys,
        cert_der: Vec<u8>,
        instance_id: &str,
        now: u64,
        mode: Mode,
    ) -> anyhow::Result<Self> {
        let created_at = Timestamp::from_secs(now);
        let build = BuildSignature::builder(&SigningCert::from_der(&cert_der)?, mode)?
            .custom_created_at(created_at)
            .sign_with_keys(builder)?;
        let instance = InstanceSignature::builder(&pcr4_from_instance_id(instance_id), mode)?
            .custom_created_at(created_at)
            .sign_with_keys(launcher)?;
        Ok(Self {
            cert_der,
            instance_id: instance_id.to_owned(),
            build,
            instance,
        })
    }
}

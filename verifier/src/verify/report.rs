//! The outcome of verifying an instance event: every named check with
//! pass / fail / not run and a reason in plain words.

use std::collections::BTreeMap;

use nostr::Event;
use serde::Serialize;

use crate::attestation::VerifiedAttestation;
use crate::event::build_signature::BuildSignature;
use crate::event::instance_signature::InstanceSignature;
use crate::event::Mode;
use crate::pcr::Pcr;
use crate::release::Release;

/// The checks an instance event must pass, in the order they run.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Check {
    /// The event is kind 63793, or the NECS announcement, kind 13793.
    Kind,
    /// The event id is the hash of its content and the BIP-340 signature verifies.
    EventSignature,
    /// 13793 only: the `tee_root` tag holds a valid kind 23793 event by the
    /// service key, unexpired, in the announcement's mode.
    TeeRoot,
    /// The content decodes as a bounded attestation document.
    AttestationDecode,
    /// The document's ES384 signature verifies with its leaf certificate.
    AttestationSignature,
    /// The leaf chains through the bundle to the trusted root at the check time.
    CertificateChain,
    /// The document's PCR digest is SHA384.
    Digest,
    /// The attested public_key is the event's pubkey.
    PublicKey,
    /// PCR0 is not all zeros (debug mode), unless allowed.
    DebugMode,
    /// Every `x` tag equals the attested PCR it names; PCR0/1/2/4/8 are all there.
    PcrTags,
    /// The `expiration` tag is present and later than the check time.
    Expiration,
    /// The `build` tag holds a valid kind 63795 event.
    BuildEvent,
    /// The build signature's PCR8 is the attested PCR8.
    BuildPcr8,
    /// The build signature's certificate hashes to PCR8, is self-signed and names the builder.
    BuildCert,
    /// The `p … builder` tag names the build signature's author.
    BuilderTag,
    /// The `instance` tag holds a valid kind 63796 event.
    InstanceSignature,
    /// The instance signature's PCR4 is the attested PCR4.
    InstancePcr4,
    /// The `p … launcher` tag names the instance signature's author.
    LauncherTag,
    /// The `t` tags agree: debug iff PCR0 is zero; prod only with prod signatures.
    Mode,
    /// PCR0/1/2/8 (and any other PCR given) equal the expected measurements.
    ExpectedPcrs,
    /// Enough trusted maintainers signed the attested PCR0/1/2 (kind 63794
    /// in `release` tags), with `t=prod` for a prod instance.
    ReleaseSignatures,
    /// The release's version is at or above the floor and is the one the
    /// event's `v` tag names.
    ReleaseVersion,
}

impl Check {
    /// Stable snake_case name (as in `--json`).
    pub fn name(&self) -> &'static str {
        match self {
            Self::Kind => "kind",
            Self::EventSignature => "event_signature",
            Self::TeeRoot => "tee_root",
            Self::AttestationDecode => "attestation_decode",
            Self::AttestationSignature => "attestation_signature",
            Self::CertificateChain => "certificate_chain",
            Self::Digest => "digest",
            Self::PublicKey => "public_key",
            Self::DebugMode => "debug_mode",
            Self::PcrTags => "pcr_tags",
            Self::Expiration => "expiration",
            Self::BuildEvent => "build_event",
            Self::BuildPcr8 => "build_pcr8",
            Self::BuildCert => "build_cert",
            Self::BuilderTag => "builder_tag",
            Self::InstanceSignature => "instance_signature",
            Self::InstancePcr4 => "instance_pcr4",
            Self::LauncherTag => "launcher_tag",
            Self::Mode => "mode",
            Self::ExpectedPcrs => "expected_pcrs",
            Self::ReleaseSignatures => "release_signatures",
            Self::ReleaseVersion => "release_version",
        }
    }

    /// What the check establishes, in plain words.
    pub fn description(&self) -> &'static str {
        match self {
            Self::Kind => "the event is an instance event (kind 63793 or 13793)",
            Self::EventSignature => "the event id and signature are valid",
            Self::TeeRoot => "the tee_root event (kind 23793) is the service key's and current",
            Self::AttestationDecode => "the content is a well-formed attestation document",
            Self::AttestationSignature => "the attestation is signed by its leaf certificate",
            Self::CertificateChain => "the attestation's certificates chain to the trusted root",
            Self::Digest => "the attestation uses SHA384 PCRs",
            Self::PublicKey => "the attestation binds the event's pubkey",
            Self::DebugMode => "the enclave is not in debug mode",
            Self::PcrTags => "the x tags are the attested PCRs",
            Self::Expiration => "the event has not expired",
            Self::BuildEvent => "the build tag holds a valid build signature (kind 63795 or 23794)",
            Self::BuildPcr8 => "the builder signed the attested PCR8",
            Self::BuildCert => "the signing certificate hashes to PCR8 and names the builder",
            Self::BuilderTag => "the builder p tag names the build signature's author",
            Self::InstanceSignature => {
                "the instance tag holds a valid instance signature (kind 63796 or 23795)"
            }
            Self::InstancePcr4 => "the launcher signed the attested PCR4 (EC2 instance)",
            Self::LauncherTag => "the launcher p tag names the instance signature's author",
            Self::Mode => "the prod/dev/debug mode tags are consistent",
            Self::ExpectedPcrs => "the PCRs equal the expected measurements",
            Self::ReleaseSignatures => "enough trusted maintainers released this code",
            Self::ReleaseVersion => "the release's version is accepted and announced",
        }
    }
}

/// How one check ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "status", content = "detail", rename_all = "snake_case")]
pub enum Outcome {
    /// The check holds; the detail says what was seen.
    Passed(String),
    /// The check does not hold; the reason says why.
    Failed(String),
    /// The check could not run because an earlier one failed.
    NotRun(String),
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Passed(d) => write!(f, "passed: {d}"),
            Self::Failed(d) => write!(f, "failed: {d}"),
            Self::NotRun(d) => write!(f, "not run: {d}"),
        }
    }
}

/// One named check and its outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CheckResult {
    /// Which check.
    pub check: Check,
    /// How it ended.
    #[serde(flatten)]
    pub outcome: Outcome,
}

/// What an instance event claims, as far as it could be read.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Summary {
    /// The service key (event author), npub.
    pub service: Option<String>,
    /// The builder, npub.
    pub builder: Option<String>,
    /// The launcher, npub.
    pub launcher: Option<String>,
    /// The enclave module id.
    pub module_id: Option<String>,
    /// Attested PCRs 0, 1, 2, 4 and 8, hex.
    pub pcrs: BTreeMap<String, String>,
    /// Relay of the admin API.
    pub admin_relay: Option<String>,
    /// Expiration, unix seconds.
    pub expiration: Option<u64>,
    /// Mode tag.
    pub mode: Option<String>,
    /// Attestation timestamp, unix milliseconds.
    pub attestation_timestamp_ms: Option<u64>,
    /// Leaf certificate notAfter, unix seconds.
    pub leaf_not_after: Option<i64>,
    /// The release's version, when release signers were given and it holds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub release_version: Option<String>,
    /// Whether the enclave says it keeps its keys across restarts, and how
    /// (key continuity: its state, custodians and any reset). Said by the
    /// enclave's own code, so as trustworthy as the checks above.
    pub keys_kept: Option<KeysKept>,
}

/// An enclave's key continuity, as it announces it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeysKept {
    /// The state's name.
    pub state: String,
    /// The custodians' launchers, npub.
    pub custodians: Vec<String>,
    /// When its operator abandoned an earlier state under this name and
    /// started over (unix seconds).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reset_at: Option<u64>,
}

/// The result of [`super::verify_instance`].
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Every check, in order.
    pub checks: Vec<CheckResult>,
    /// The time the certificates and expiration were checked at (unix seconds).
    pub time: Option<u64>,
    /// What the event claims.
    pub summary: Summary,
    #[serde(skip)]
    pub(crate) verified: Option<VerifiedInstance>,
}

impl Report {
    /// Whether every check passed.
    pub fn is_valid(&self) -> bool {
        self.verified.is_some()
    }

    /// The first check that failed or could not run.
    pub fn first_failure(&self) -> Option<&CheckResult> {
        self.checks
            .iter()
            .find(|c| !matches!(c.outcome, Outcome::Passed(_)))
    }

    /// The outcome of one check, if it was part of the run.
    pub fn outcome(&self, check: Check) -> Option<&Outcome> {
        self.checks
            .iter()
            .find(|c| c.check == check)
            .map(|c| &c.outcome)
    }

    /// The verified instance, when every check passed.
    pub fn verified(&self) -> Option<&VerifiedInstance> {
        self.verified.as_ref()
    }
}

/// An instance event that passed every check, with its verified parts.
#[derive(Debug, Clone)]
pub struct VerifiedInstance {
    /// The instance event.
    pub event: Event,
    /// Its attestation.
    pub attestation: VerifiedAttestation,
    /// The builder's signature.
    pub build: BuildSignature,
    /// The launcher's signature.
    pub instance: InstanceSignature,
    /// Relay of the admin API.
    pub admin_relay: String,
    /// Expiration, unix seconds.
    pub expiration: u64,
    /// Mode.
    pub mode: Mode,
    /// Attested PCRs.
    pub pcrs: BTreeMap<u8, Pcr>,
    /// The release, when the caller gave release signers.
    pub release: Option<Release>,
}

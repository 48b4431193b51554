//! Verification of a kind 63793 instance event: the rules a client applies
//! before it trusts an enclave with a key. [`verify_instance`] runs every
//! check in [`Check`] and returns a [`Report`]; the event is valid only when
//! all of them pass.

mod report;
mod signatures;

use std::collections::BTreeMap;

use nostr::Event;

pub use self::report::{Check, CheckResult, Outcome, Report, Summary, VerifiedInstance};
pub use self::signatures::{check_signatures, Signatures};
use crate::attestation::{Attestation, TrustedRoot};
use crate::error::{mismatch, Error};
use crate::event::build_signature::BuildSignature;
use crate::event::instance::{embedded_event, expiration, marked_pubkey, pcr_tags, ANNOUNCED_PCRS};
use crate::event::instance_signature::InstanceSignature;
use crate::event::{
    check_signature, mode_of, npub, parse_event_json, single_tag, tag, Mode, KIND_INSTANCE,
};
use crate::pcr::{Measurements, Pcr};

/// When certificates and expiration are checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckTime {
    /// At this unix time (seconds); pass the current time for a live check.
    At(u64),
    /// At the attestation's own timestamp: for archived events, whose
    /// certificates have since expired.
    Attestation,
}

/// What to trust and how strictly to check.
#[derive(Debug, Clone)]
pub struct Options {
    /// The root the attestation path must end at.
    pub root: TrustedRoot,
    /// The time of the check.
    pub time: CheckTime,
    /// Accept an enclave in debug mode (PCR0 all zeros), whose memory the
    /// parent can read. Only for development.
    pub allow_debug: bool,
    /// Expected measurements (`pcrs.json`); PCR0/1/2 must be given.
    pub expected: Option<Measurements>,
}

impl Options {
    /// Trust `root`, check at `time`, refuse debug mode, no expected PCRs.
    pub fn new(root: TrustedRoot, time: CheckTime) -> Self {
        Self {
            root,
            time,
            allow_debug: false,
            expected: None,
        }
    }
}

/// Parses event JSON (capped) and verifies it. A parse failure is reported
/// as a failed `kind` check, so callers always get a report.
pub fn verify_instance_json(json: &str, options: &Options) -> Report {
    match parse_event_json(json, "instance event") {
        Ok(event) => verify_instance(&event, options),
        Err(e) => {
            let mut r = Recorder::default();
            r.record(Check::Kind, Err::<String, _>(e));
            r.finish(None, Summary::default(), None)
        }
    }
}

/// Runs every check on an instance event.
pub fn verify_instance(event: &Event, options: &Options) -> Report {
    let mut r = Recorder::default();
    let mut summary = Summary {
        service: Some(npub(&event.pubkey)),
        ..Summary::default()
    };

    r.record(
        Check::Kind,
        check_kind(event).map(|()| "kind 63793".to_owned()),
    );
    r.record(
        Check::EventSignature,
        check_signature(event, "instance event")
            .map(|()| format!("id {} signed by {}", event.id, npub(&event.pubkey))),
    );

    let attestation = r.record(
        Check::AttestationDecode,
        Attestation::from_base64(&event.content),
    );
    let time = match (options.time, &attestation) {
        (CheckTime::At(t), _) => Some(t),
        (CheckTime::Attestation, Some(a)) => Some(a.doc().timestamp_secs()),
        (CheckTime::Attestation, None) => None,
    };
    let doc = attestation.as_ref().map(Attestation::doc);
    if let Some(doc) = doc {
        summary.module_id = Some(doc.module_id.clone());
        summary.attestation_timestamp_ms = Some(doc.timestamp_ms);
        for i in ANNOUNCED_PCRS {
            summary
                .pcrs
                .insert(format!("PCR{i}"), doc.pcr(i).to_string());
        }
    }
    let no_doc = "the attestation could not be decoded";

    r.run(
        Check::AttestationSignature,
        attestation.as_ref().ok_or(no_doc),
        |a| {
            a.verify_signature()
                .map(|()| "ES384 by the leaf certificate".to_owned())
        },
    );
    let chain = match (&attestation, time) {
        (Some(a), Some(t)) => r.record(
            Check::CertificateChain,
            a.verify_chain(&options.root, t)
                .map(|not_after| (not_after, t)),
        ),
        _ => r.not_run(Check::CertificateChain, no_doc),
    };
    if let Some((not_after, _)) = chain {
        summary.leaf_not_after = Some(not_after);
    }
    r.run(Check::Digest, attestation.as_ref().ok_or(no_doc), |a| {
        a.check_digest().map(|()| "SHA384".to_owned())
    });
    r.run(Check::PublicKey, doc.ok_or(no_doc), |d| {
        let expected = event.pubkey.to_bytes();
        match &d.public_key {
            Some(k) if k.as_slice() == expected.as_slice() => Ok(format!("{}", event.pubkey)),
            Some(k) => Err(mismatch(
                "attested public_key",
                event.pubkey,
                hex::encode(k),
            )),
            None => Err(Error::Missing("attestation public_key")),
        }
    });
    r.run(Check::DebugMode, doc.ok_or(no_doc), |d| {
        match (d.pcr(0).is_zero(), options.allow_debug) {
            (false, _) => Ok("PCR0 is set: production enclave".to_owned()),
            (true, true) => Ok("debug mode (PCR0 all zeros), allowed by the caller".to_owned()),
            (true, false) => Err(Error::Unsupported {
                what: "enclave mode",
                found: "debug (PCR0 is all zeros): the parent can read the enclave's memory".into(),
            }),
        }
    });
    r.run(Check::PcrTags, doc.ok_or(no_doc), |d| {
        check_pcr_tags(event, &d.pcrs)
    });
    let expires = r.record(
        Check::Expiration,
        expiration(event).and_then(|exp| match time {
            Some(t) if t < exp => Ok(exp),
            Some(t) => Err(Error::Expired {
                what: "instance event",
                expired_at: exp,
                time: t,
            }),
            None => Err(Error::Missing(
                "time of the check (attestation not decoded)",
            )),
        }),
    );
    summary.expiration = expiration(event).ok();

    // Build signature (PCR8, builder).
    let build = r.record(
        Check::BuildEvent,
        embedded_event(event, tag::BUILD).and_then(BuildSignature::from_event),
    );
    if let Some(b) = &build {
        summary.builder = Some(npub(&b.event().pubkey));
    }
    let no_build = "the build signature is not valid";
    r.run(
        Check::BuildPcr8,
        both(doc, build.as_ref(), no_doc, no_build),
        |(d, b)| {
            b.check_pcr8(&d.pcr(8))
                .map(|()| format!("PCR8 {}", d.pcr(8)))
        },
    );
    r.run(Check::BuildCert, build.as_ref().ok_or(no_build), |b| {
        b.check_cert()
            .map(|()| format!("self-signed, O=Nostr, names {}", npub(&b.event().pubkey)))
    });
    r.run(Check::BuilderTag, build.as_ref().ok_or(no_build), |b| {
        check_marked(event, tag::BUILDER, b.event())
    });

    // Instance signature (PCR4, launcher).
    let launch = r.record(
        Check::InstanceSignature,
        embedded_event(event, tag::INSTANCE).and_then(InstanceSignature::from_event),
    );
    if let Some(l) = &launch {
        summary.launcher = Some(npub(&l.event().pubkey));
    }
    let no_launch = "the instance signature is not valid";
    r.run(
        Check::InstancePcr4,
        both(doc, launch.as_ref(), no_doc, no_launch),
        |(d, l)| {
            l.check_pcr4(&d.pcr(4))
                .map(|()| format!("PCR4 {}", d.pcr(4)))
        },
    );
    r.run(Check::LauncherTag, launch.as_ref().ok_or(no_launch), |l| {
        check_marked(event, tag::LAUNCHER, l.event())
    });

    let mode = mode_of(event);
    summary.mode = mode.as_ref().ok().map(Mode::to_string);
    summary.admin_relay = single_tag(event, tag::RELAY).ok().map(str::to_owned);
    let mode = r.run(
        Check::Mode,
        both(doc, build.as_ref(), no_doc, no_build),
        |(d, b)| {
            let mode = mode_of(event)?;
            let launch_mode = launch.as_ref().map(InstanceSignature::mode);
            check_mode(mode, d.pcr(0).is_zero(), b.mode(), launch_mode).map(|()| mode)
        },
    );
    if let Some(expected) = &options.expected {
        r.run(Check::ExpectedPcrs, doc.ok_or(no_doc), |d| {
            check_expected(expected, &d.pcrs)
        });
    }

    let admin_relay = single_tag(event, tag::RELAY).map(str::to_owned);
    let verified = match (
        r.all_passed(),
        attestation,
        chain,
        build,
        launch,
        expires,
        mode,
        admin_relay,
    ) {
        (
            true,
            Some(a),
            Some((not_after, t)),
            Some(build),
            Some(instance),
            Some(exp),
            Some(mode),
            Ok(admin_relay),
        ) => {
            let pcrs = a.doc().pcrs.clone();
            Some(VerifiedInstance {
                event: event.clone(),
                attestation: a.into_verified(not_after, t),
                build,
                instance,
                admin_relay,
                expiration: exp,
                mode,
                pcrs,
            })
        }
        _ => None,
    };
    r.finish(time, summary, verified)
}

fn check_kind(event: &Event) -> Result<(), Error> {
    let kind = event.kind.as_u16();
    if kind == KIND_INSTANCE {
        Ok(())
    } else {
        Err(mismatch("event kind", KIND_INSTANCE, kind))
    }
}

/// Every `x` tag equals the attested PCR; every announced PCR has a tag.
fn check_pcr_tags(event: &Event, attested: &BTreeMap<u8, Pcr>) -> Result<String, Error> {
    let tags = pcr_tags(event)?;
    for (index, value) in &tags {
        let actual = attested.get(index).copied().unwrap_or(Pcr::ZERO);
        if actual != *value {
            return Err(mismatch(pcr_what(*index), actual, value));
        }
    }
    if let Some(missing) = ANNOUNCED_PCRS.iter().find(|i| !tags.contains_key(i)) {
        return Err(Error::Missing(pcr_what(*missing)));
    }
    Ok(format!("{} x tags match", tags.len()))
}

fn pcr_what(index: u8) -> &'static str {
    match index {
        0 => "x tag PCR0",
        1 => "x tag PCR1",
        2 => "x tag PCR2",
        4 => "x tag PCR4",
        8 => "x tag PCR8",
        _ => "x tag",
    }
}

fn check_marked(event: &Event, marker: &'static str, signed: &Event) -> Result<String, Error> {
    let named = marked_pubkey(event, marker)?;
    if named == signed.pubkey {
        Ok(npub(&named))
    } else {
        Err(mismatch(
            if marker == tag::BUILDER {
                "builder p tag"
            } else {
                "launcher p tag"
            },
            npub(&signed.pubkey),
            npub(&named),
        ))
    }
}

/// `debug` exactly when PCR0 is zero; `prod` only with prod signatures.
pub(crate) fn check_mode(
    mode: Mode,
    pcr0_zero: bool,
    build: Mode,
    launch: Option<Mode>,
) -> Result<(), Error> {
    match (mode, pcr0_zero) {
        (Mode::Debug, false) => {
            return Err(mismatch("mode tag", "prod or dev (PCR0 is set)", mode))
        }
        (Mode::Prod | Mode::Dev, true) => {
            return Err(mismatch("mode tag", "debug (PCR0 is all zeros)", mode))
        }
        _ => {}
    }
    if mode == Mode::Prod {
        if build != Mode::Prod {
            return Err(mismatch(
                "build signature mode for a prod instance",
                Mode::Prod,
                build,
            ));
        }
        if let Some(launch) = launch.filter(|m| *m != Mode::Prod) {
            return Err(mismatch(
                "instance signature mode for a prod instance",
                Mode::Prod,
                launch,
            ));
        }
    }
    Ok(())
}

fn check_expected(expected: &Measurements, attested: &BTreeMap<u8, Pcr>) -> Result<String, Error> {
    for required in [0u8, 1, 2] {
        if expected.get(required).is_none() {
            return Err(Error::Missing(match required {
                0 => "PCR0 in the expected measurements",
                1 => "PCR1 in the expected measurements",
                _ => "PCR2 in the expected measurements",
            }));
        }
    }
    for (index, value) in &expected.pcrs {
        let actual = attested.get(index).copied().unwrap_or(Pcr::ZERO);
        if actual != *value {
            return Err(Error::Mismatch {
                what: "expected measurement",
                expected: format!("PCR{index} {value}"),
                found: format!("PCR{index} {actual}"),
            });
        }
    }
    let names: Vec<String> = expected.pcrs.keys().map(|i| format!("PCR{i}")).collect();
    Ok(format!("{} match", names.join(", ")))
}

fn both<A, B>(
    a: Option<A>,
    b: Option<B>,
    why_a: &'static str,
    why_b: &'static str,
) -> Result<(A, B), &'static str> {
    match (a, b) {
        (Some(a), Some(b)) => Ok((a, b)),
        (None, _) => Err(why_a),
        (_, None) => Err(why_b),
    }
}

/// Collects outcomes in order.
#[derive(Default)]
struct Recorder {
    checks: Vec<CheckResult>,
}

impl Recorder {
    /// Records a result; returns the value if the check passed.
    fn record<T: Describe>(&mut self, check: Check, result: Result<T, Error>) -> Option<T> {
        let (outcome, value) = match result {
            Ok(v) => (Outcome::Passed(v.describe()), Some(v)),
            Err(e) => (Outcome::Failed(e.to_string()), None),
        };
        self.checks.push(CheckResult { check, outcome });
        value
    }

    /// Runs `f` on a prerequisite, or records that the check could not run.
    fn run<P, T: Describe>(
        &mut self,
        check: Check,
        prerequisite: Result<P, &'static str>,
        f: impl FnOnce(P) -> Result<T, Error>,
    ) -> Option<T> {
        match prerequisite {
            Ok(p) => self.record(check, f(p)),
            Err(why) => self.not_run(check, why),
        }
    }

    fn not_run<T>(&mut self, check: Check, why: &str) -> Option<T> {
        self.checks.push(CheckResult {
            check,
            outcome: Outcome::NotRun(why.to_owned()),
        });
        None
    }

    fn all_passed(&self) -> bool {
        self.checks
            .iter()
            .all(|c| matches!(c.outcome, Outcome::Passed(_)))
    }

    fn finish(
        self,
        time: Option<u64>,
        summary: Summary,
        verified: Option<VerifiedInstance>,
    ) -> Report {
        Report {
            checks: self.checks,
            time,
            summary,
            verified,
        }
    }
}

/// How a passing value reads in a report.
trait Describe {
    fn describe(&self) -> String;
}

impl Describe for String {
    fn describe(&self) -> String {
        self.clone()
    }
}

impl Describe for Attestation {
    fn describe(&self) -> String {
        format!(
            "module {}, timestamp {} ms",
            self.doc().module_id,
            self.doc().timestamp_ms
        )
    }
}

impl Describe for (i64, u64) {
    fn describe(&self) -> String {
        format!(
            "valid at {}; leaf certificate expires at {}",
            self.1, self.0
        )
    }
}

impl Describe for u64 {
    fn describe(&self) -> String {
        format!("expires at {self}")
    }
}

impl Describe for BuildSignature {
    fn describe(&self) -> String {
        describe_event(self.event(), self.mode())
    }
}

impl Describe for InstanceSignature {
    fn describe(&self) -> String {
        describe_event(self.event(), self.mode())
    }
}

impl Describe for Mode {
    fn describe(&self) -> String {
        format!("mode {self}")
    }
}

fn describe_event(event: &Event, mode: Mode) -> String {
    format!("{} by {} ({mode})", event.id, npub(&event.pubkey))
}

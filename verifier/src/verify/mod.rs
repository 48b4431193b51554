//! Verification of an instance event (kind 63793, or the NECS announcement,
//! kind 13793): the rules a client applies before it trusts an enclave with
//! a key. [`verify_instance`] runs every check in [`Check`] and returns a
//! [`Report`]; the event is valid only when all of them pass. Both kinds go
//! through the same checks; a 13793 adds `tee_root`, the 23793 event that
//! carries its attestation.

mod recorder;
mod release;
mod report;
mod rules;
mod signatures;

use nostr::Event;

use self::recorder::Recorder;
pub use self::release::release_signatures;
pub use self::report::{Check, CheckResult, KeysKept, Outcome, Report, Summary, VerifiedInstance};
pub(crate) use self::rules::check_mode;
use self::rules::{both, check_expected, check_kind, check_marked, check_pcr_tags};
pub use self::signatures::{check_signatures, Signatures};
use crate::attestation::{Attestation, TrustedRoot};
use crate::error::{mismatch, Error};
use crate::event::build_signature::BuildSignature;
use crate::event::instance::{embedded_event, expiration, ANNOUNCED_PCRS};
use crate::event::instance_signature::InstanceSignature;
use crate::event::tee_root::TeeRoot;
use crate::event::{
    check_signature, mode_of, npub, parse_event_json, single_tag, tag, Mode, KIND_ANNOUNCEMENT,
};
use crate::pcr::Measurements;
use crate::release::ReleaseTrust;

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
    /// Trusted release signers: the image must be released by enough of
    /// them (`release_signatures`), at or above the floor (`release_version`).
    pub release: Option<ReleaseTrust>,
    /// Let dev releases (`t=dev`) of a dev instance count for `release`;
    /// otherwise only prod releases do, whatever mode the instance is in.
    pub allow_dev_release: bool,
    /// Checks that passed earlier in this run, for many checks at once
    /// (`discover`): certificate paths and builder certificates.
    pub cache: Option<std::sync::Arc<crate::cache::VerifyCache>>,
}

impl Options {
    /// Trust `root`, check at `time`, refuse debug mode, no expected PCRs.
    pub fn new(root: TrustedRoot, time: CheckTime) -> Self {
        Self {
            root,
            time,
            allow_debug: false,
            expected: None,
            release: None,
            allow_dev_release: false,
            cache: None,
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

    r.record(Check::Kind, check_kind(event));
    r.record(
        Check::EventSignature,
        check_signature(event, "instance event")
            .map(|()| format!("id {} signed by {}", event.id, npub(&event.pubkey))),
    );

    // A 13793 carries its attestation in a tee_root event; a 63793 in its content.
    let tee_root = (event.kind.as_u16() == KIND_ANNOUNCEMENT)
        .then(|| embedded_event(event, tag::TEE_ROOT).and_then(TeeRoot::from_event));
    let attestation_result = match &tee_root {
        None => Some(Attestation::from_base64(&event.content)),
        Some(Ok(t)) => Some(Attestation::from_base64(t.attestation_base64())),
        Some(Err(_)) => None,
    };
    let time = match (options.time, &attestation_result) {
        (CheckTime::At(t), _) => Some(t),
        (CheckTime::Attestation, Some(Ok(a))) => Some(a.doc().timestamp_secs()),
        (CheckTime::Attestation, _) => None,
    };
    if let Some(tee_root) = tee_root {
        r.record(
            Check::TeeRoot,
            tee_root.and_then(|t| check_tee_root(event, &t, time)),
        );
    }
    let attestation = match attestation_result {
        Some(result) => r.record(Check::AttestationDecode, result),
        None => r.not_run(Check::AttestationDecode, "the tee_root event is not valid"),
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
            a.verify_chain_cached(&options.root, t, options.cache.as_deref())
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
            (false, _) => Ok(
                "PCR0 is set: not a debug-mode enclave (its memory is closed to the host)"
                    .to_owned(),
            ),
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
        b.check_cert_cached(options.cache.as_deref())
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
    summary.keys_kept = crate::event::continuity::Continuity::of(event).map(|c| KeysKept {
        state: c.state,
        custodians: c.custodians.iter().map(npub).collect(),
        reset_at: c.reset_at,
    });
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
    let release = match &options.release {
        None => None,
        Some(trust) => {
            // A dev release counts only when the caller says so: the
            // launcher, not the client, chooses the instance's mode.
            let release = r.run(
                Check::ReleaseSignatures,
                both(doc, mode, no_doc, "the mode tags are not consistent"),
                |(d, m)| {
                    let needs = if options.allow_dev_release {
                        m
                    } else {
                        Mode::Prod
                    };
                    release::check_signatures(event, trust, &d.pcrs, needs)
                },
            );
            r.run(
                Check::ReleaseVersion,
                release.as_ref().ok_or("the release signatures do not hold"),
                |rel| release::check_version(trust, rel),
            );
            if let Some(rel) = &release {
                summary.release_version = Some(rel.version.to_string());
            }
            release
        }
    };

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
                release,
            })
        }
        _ => None,
    };
    r.finish(time, summary, verified)
}

/// The tee_root is by the announcement's author, unexpired at `time`, and
/// in the announcement's mode.
fn check_tee_root(event: &Event, tee_root: &TeeRoot, time: Option<u64>) -> Result<String, Error> {
    let time = time.ok_or(Error::Missing(
        "time of the check (attestation not decoded)",
    ))?;
    tee_root.check(&event.pubkey, time)?;
    let mode = mode_of(event)?;
    if tee_root.mode() != mode {
        return Err(mismatch(
            "tee_root mode (announcement's t vs tee_root's t)",
            mode,
            tee_root.mode(),
        ));
    }
    Ok(format!(
        "kind 23793 {} by the service key, expires at {}",
        tee_root.event().id,
        tee_root.expiration()
    ))
}

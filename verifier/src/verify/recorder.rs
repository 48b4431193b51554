//! Collects the outcome of each check, in order, into a [`Report`].

use nostr::Event;

use super::report::{Check, CheckResult, Outcome, Report, Summary, VerifiedInstance};
use crate::attestation::Attestation;
use crate::error::Error;
use crate::event::build_signature::BuildSignature;
use crate::event::instance_signature::InstanceSignature;
use crate::event::{npub, Mode};
use crate::release::Release;

/// Collects outcomes in order.
#[derive(Default)]
pub(super) struct Recorder {
    checks: Vec<CheckResult>,
}

impl Recorder {
    /// Records a result; returns the value if the check passed.
    pub(super) fn record<T: Describe>(
        &mut self,
        check: Check,
        result: Result<T, Error>,
    ) -> Option<T> {
        let (outcome, value) = match result {
            Ok(v) => (Outcome::Passed(v.describe()), Some(v)),
            Err(e) => (Outcome::Failed(e.to_string()), None),
        };
        self.checks.push(CheckResult { check, outcome });
        value
    }

    /// Runs `f` on a prerequisite, or records that the check could not run.
    pub(super) fn run<P, T: Describe>(
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

    pub(super) fn not_run<T>(&mut self, check: Check, why: &str) -> Option<T> {
        self.checks.push(CheckResult {
            check,
            outcome: Outcome::NotRun(why.to_owned()),
        });
        None
    }

    pub(super) fn all_passed(&self) -> bool {
        self.checks
            .iter()
            .all(|c| matches!(c.outcome, Outcome::Passed(_)))
    }

    pub(super) fn finish(
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
pub(super) trait Describe {
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
        match self {
            Mode::Debug => "mode debug (a debug-mode enclave, PCR0 all zeros)".to_owned(),
            mode => format!(
                "mode {mode} (what the builder's and launcher's signatures are for; \
                 not the same as debug_mode)"
            ),
        }
    }
}

fn describe_event(event: &Event, mode: Mode) -> String {
    format!("{} by {} ({mode})", event.id, npub(&event.pubkey))
}

impl Describe for Release {
    fn describe(&self) -> String {
        let who: Vec<String> = self.signers.iter().map(npub).collect();
        format!(
            "version {} of {}, signed by {} of the {} needed: {}",
            self.version,
            self.repo,
            self.signers.len(),
            self.threshold,
            who.join(", ")
        )
    }
}

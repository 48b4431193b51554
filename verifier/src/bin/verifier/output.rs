//! How results are printed: plain words for people, JSON for scripts.

use std::collections::BTreeMap;

use serde::Serialize;
use verifier::attestation::{Attestation, CertificateInfo, TrustedRoot};
use verifier::verify::{Check, Outcome, Report};

/// `text` safe to print on a terminal: control characters (which could
/// move the cursor, rewrite earlier lines or fake a `VALID`) and Unicode
/// direction overrides are escaped as `\u{..}`. Every string that comes
/// from an event, an attestation or a relay goes through this before it
/// is printed for people (JSON output is escaped by serde).
pub(crate) fn printable(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        let bidi = matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{200e}' | '\u{200f}');
        if c.is_control() || bidi {
            out.push_str(&format!("\\u{{{:x}}}", u32::from(c)));
        } else {
            out.push(c);
        }
    }
    out
}

/// A unix time with its UTC date, e.g. `1743516970 (2025-04-01T14:16:10Z)`.
pub(crate) fn when(secs: i64) -> String {
    let date = time::OffsetDateTime::from_unix_timestamp(secs)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| "out of range".into());
    format!("{secs} ({date})")
}

pub(crate) fn root_name(root: &TrustedRoot) -> String {
    if root.is_aws() {
        "AWS Nitro Enclaves Root-G1".to_owned()
    } else {
        format!("the root given with --root (SHA-256 {})", root.sha256_hex())
    }
}

/// The report of `verifier check`, for people.
pub(crate) fn print_report(report: &Report, root: &TrustedRoot, time_source: &str) {
    match report.time {
        Some(t) => println!(
            "Checked at {} ({time_source}) against {}",
            when(i64::try_from(t).unwrap_or(i64::MAX)),
            root_name(root)
        ),
        None => println!("Checked against {}", root_name(root)),
    }
    println!();
    let width = report
        .checks
        .iter()
        .map(|c| c.check.name().len())
        .max()
        .unwrap_or(0);
    for c in &report.checks {
        let (mark, detail) = match &c.outcome {
            Outcome::Passed(d) => ("ok  ", d.clone()),
            Outcome::Failed(r) => ("FAIL", r.clone()),
            Outcome::NotRun(r) => ("--  ", format!("not run: {r}")),
        };
        println!(
            "  {mark}  {:width$}  {}: {}",
            c.check.name(),
            c.check.description(),
            printable(&detail)
        );
    }
    println!();
    let s = &report.summary;
    let rows: [(&str, Option<String>); 9] = [
        ("service", s.service.clone()),
        ("builder", s.builder.clone()),
        ("launcher", s.launcher.clone()),
        ("module", s.module_id.clone()),
        ("mode", s.mode.clone()),
        ("release", s.release_version.clone()),
        ("admin relay", s.admin_relay.clone()),
        (
            "expires",
            s.expiration
                .map(|e| when(i64::try_from(e).unwrap_or(i64::MAX))),
        ),
        (
            "attested at",
            s.attestation_timestamp_ms
                .map(|ms| when(i64::try_from(ms / 1000).unwrap_or(i64::MAX))),
        ),
    ];
    for (name, value) in rows {
        if let Some(v) = value {
            println!("  {name:12} {}", printable(&v));
        }
    }
    for (name, value) in &s.pcrs {
        println!("  {name:12} {}", printable(value));
    }
    let kept = match &s.keys_kept {
        None => "not kept: a restart of this enclave loses every key it holds".to_owned(),
        Some(k) => format!(
            "kept across restarts under state {:?} by {} custodians (a quorum is {}){}",
            k.state,
            k.custodians.len(),
            verifier::custodian::quorum_of(k.custodians.len()),
            k.reset_at
                .map(|t| format!(
                    "; its operator abandoned an earlier state and started over at {}",
                    when(i64::try_from(t).unwrap_or(i64::MAX))
                ))
                .unwrap_or_default()
        ),
    };
    println!("  {:12} {}", "keys", printable(&kept));
    if let Some(k) = &s.keys_kept {
        for c in &k.custodians {
            println!("  {:12} {}", "custodian", printable(c));
        }
    }
    println!();
    let pinned = report
        .checks
        .iter()
        .any(|c| matches!(c.check, Check::ExpectedPcrs | Check::ReleaseSignatures));
    match report.first_failure() {
        None if !pinned => println!(
            "VALID: every check passed. The code was not pinned: a genuine enclave runs the \
             image with the PCRs above, whatever it is; pass --pcrs or --release-signer with \
             --threshold to say which code you trust."
        ),
        None => println!("VALID: every check passed."),
        Some(f) => {
            let reason = match &f.outcome {
                Outcome::Failed(r) | Outcome::NotRun(r) | Outcome::Passed(r) => r,
            };
            println!(
                "INVALID: {} ({}).\n  {}",
                f.check.description(),
                f.check.name(),
                printable(reason)
            );
            if let Some(hint) = hint(f.check, reason, root) {
                println!("  hint: {hint}");
            }
        }
    }
}

/// What the user can do about a failure, where there is something.
fn hint(check: Check, reason: &str, root: &TrustedRoot) -> Option<&'static str> {
    match check {
        Check::CertificateChain if reason.contains("not valid at") => Some(
            "attestations are valid for hours; an archived event can be checked at its own \
             time with --at attestation",
        ),
        Check::CertificateChain if reason.contains("trusted root") && root.is_aws() => Some(
            "this document is not signed by AWS; a local dev stack's events need --root <dev root>",
        ),
        Check::DebugMode => Some("only for development: --allow-debug accepts a debug enclave"),
        Check::Expiration => Some("look for a newer instance event from the same service key"),
        // The first PCR that differs is named, in order: PCR8 means PCR0/1/2 matched.
        Check::ExpectedPcrs if reason.contains("PCR8 ") => Some(
            "the image is the one in --pcrs (PCR0/1/2 match), but it was signed with another \
             builder certificate (PCR8): another builder, or a dev stack that made a new one",
        ),
        Check::ExpectedPcrs => {
            Some("the enclave runs another image than the one in --pcrs; rebuild it to compare")
        }
        Check::ReleaseSignatures if reason.contains("not a trusted maintainer") => Some(
            "some release signatures are by others than your --release-signer npubs; check whom you trust",
        ),
        Check::ReleaseSignatures => Some(
            "the announcement carries the maintainers' release signatures (kind 63794) of its \
             PCR0/1/2; an unreleased or unknown build has too few of yours (a dev release counts \
             for a dev instance only with --allow-dev-release)",
        ),
        Check::ReleaseVersion if reason.contains("below") => {
            Some("the enclave runs an older release than --min-version accepts")
        }
        _ => None,
    }
}

#[derive(Serialize)]
pub(crate) struct JsonReport<'a> {
    pub(crate) valid: bool,
    pub(crate) root_sha256: String,
    #[serde(flatten)]
    pub(crate) report: &'a Report,
}

/// Everything `verifier attestation` shows.
#[derive(Serialize)]
pub(crate) struct DocumentView {
    pub(crate) valid: bool,
    pub(crate) encoding: &'static str,
    pub(crate) checked_at: u64,
    pub(crate) root_sha256: String,
    pub(crate) checks: Vec<(&'static str, String)>,
    pub(crate) error: Option<String>,
    pub(crate) module_id: String,
    pub(crate) digest: String,
    pub(crate) timestamp_ms: u64,
    pub(crate) pcrs: BTreeMap<String, String>,
    pub(crate) public_key: Option<String>,
    pub(crate) user_data: Option<String>,
    pub(crate) nonce: Option<String>,
    pub(crate) certificate: Option<CertificateInfo>,
    pub(crate) cabundle: Vec<Option<CertificateInfo>>,
}

impl DocumentView {
    pub(crate) fn new(
        a: &Attestation,
        encoding: &'static str,
        checked_at: u64,
        root: &TrustedRoot,
    ) -> Self {
        let d = a.doc();
        Self {
            valid: false,
            encoding,
            checked_at,
            root_sha256: root.sha256_hex(),
            checks: Vec::new(),
            error: None,
            module_id: d.module_id.clone(),
            digest: d.digest.clone(),
            timestamp_ms: d.timestamp_ms,
            pcrs: d
                .pcrs
                .iter()
                .filter(|(_, p)| !p.is_zero())
                .map(|(i, p)| (format!("PCR{i}"), p.to_string()))
                .collect(),
            public_key: d.public_key.as_ref().map(hex::encode),
            user_data: d.user_data.as_ref().map(hex::encode),
            nonce: d.nonce.as_ref().map(hex::encode),
            certificate: CertificateInfo::from_der(&d.certificate).ok(),
            cabundle: d
                .cabundle
                .iter()
                .map(|c| CertificateInfo::from_der(c).ok())
                .collect(),
        }
    }

    pub(crate) fn print(&self, root: &TrustedRoot) {
        let opt = |v: &Option<String>| match v {
            None => "none (null)".to_owned(),
            Some(s) if s.is_empty() => "empty".to_owned(),
            Some(s) => s.clone(),
        };
        println!("Attestation document ({})", self.encoding);
        println!("  module_id    {}", printable(&self.module_id));
        println!("  digest       {}", printable(&self.digest));
        println!(
            "  time         {}",
            when(i64::try_from(self.timestamp_ms / 1000).unwrap_or(i64::MAX))
        );
        if self.pcrs.is_empty() {
            println!("  PCRs         all zero");
        }
        for (name, value) in &self.pcrs {
            println!("  {name:12} {value}");
        }
        println!("  public_key   {}", opt(&self.public_key));
        println!("  user_data    {}", opt(&self.user_data));
        println!("  nonce        {}", opt(&self.nonce));
        println!("Certificates (leaf first, then cabundle from the leaf's issuer to the root)");
        let mut certs: Vec<(String, &Option<CertificateInfo>)> =
            vec![("leaf".to_owned(), &self.certificate)];
        for (i, c) in self.cabundle.iter().enumerate().rev() {
            certs.push((format!("cabundle[{i}]"), c));
        }
        for (name, cert) in certs {
            match cert {
                Some(c) => println!(
                    "  {name:12} {}\n  {:12} valid {} to {}",
                    printable(&c.subject),
                    "",
                    when(c.not_before),
                    when(c.not_after)
                ),
                None => println!("  {name:12} (does not parse as a certificate)"),
            }
        }
        println!(
            "Checked at {} against {}",
            when(i64::try_from(self.checked_at).unwrap_or(i64::MAX)),
            root_name(root)
        );
        for (name, result) in &self.checks {
            println!("  {name:12} {}", printable(result));
        }
        match &self.error {
            None => println!("VALID: signature, certificate path and digest verify."),
            Some(e) => println!("INVALID: {}", printable(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::printable;

    #[test]
    fn escapes_what_could_rewrite_a_terminal() {
        assert_eq!(printable("i-0abc"), "i-0abc");
        assert_eq!(
            printable("x\r\x1b[2KVALID\n"),
            "x\\u{d}\\u{1b}[2KVALID\\u{a}"
        );
        assert_eq!(printable("a\u{202e}b"), "a\\u{202e}b");
        assert_eq!(printable("wss://relay.ex/é"), "wss://relay.ex/é");
    }
}

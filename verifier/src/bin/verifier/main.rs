//! `verifier`: checks enclaved instance events and Nitro attestation
//! documents. All rules live in the `verifier` library; this binary reads
//! files, calls it, and prints. See `verifier --help`.

#![forbid(unsafe_code)]

mod channel;
mod cli;
mod discover;
mod grants;
mod input;
mod key;
mod output;
mod pins;

use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use clap::Parser;
use verifier::attestation::{Attestation, TrustedRoot};
use verifier::pcr::{is_instance_id, pcr4_from_instance_id, pcr8_from_cert, Measurements};
use verifier::verify::{verify_instance_json, CheckTime, Options};

use crate::cli::{At, AttestationArgs, CheckArgs, Cli, Command, PcrCommand, TrustArgs};
use crate::input::{decode_document, read_input, read_text};
use crate::output::{print_report, DocumentView, JsonReport};

/// Exit status of a valid result.
pub(crate) const VALID: u8 = 0;
/// Exit status of an invalid result.
pub(crate) const INVALID: u8 = 1;
/// Exit status when the arguments or files cannot be used.
const UNUSABLE: u8 = 2;

/// An argument or file that cannot be used, with what to do about it.
#[derive(Debug)]
pub(crate) struct Unusable {
    pub(crate) message: String,
    pub(crate) hint: Option<&'static str>,
}

impl From<String> for Unusable {
    fn from(message: String) -> Self {
        Self {
            message,
            hint: None,
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Check(args) => check(args),
        Command::Attestation(args) => attestation(args),
        Command::Discover(args) => discover::discover(args),
        Command::Pcr(cmd) => pcr(cmd),
        Command::Key(action) => key::key(*action),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("error: {}", output::printable(&e.message));
            if let Some(hint) = e.hint {
                eprintln!("hint: {hint}");
            }
            ExitCode::from(UNUSABLE)
        }
    }
}

pub(crate) fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn trusted_root(args: &TrustArgs) -> Result<TrustedRoot, Unusable> {
    trusted_root_file(args.root.as_deref())
}

fn trusted_root_file(root: Option<&std::path::Path>) -> Result<TrustedRoot, Unusable> {
    match root {
        None => Ok(TrustedRoot::aws_nitro_g1()),
        Some(path) => TrustedRoot::from_der_or_pem(&read_input(path)?).map_err(|e| Unusable {
            message: format!("--root {}: {e}", path.display()),
            hint: Some(
                "--root takes a certificate in DER or PEM, such as a dev stack's dev-root.der",
            ),
        }),
    }
}

/// `--pcrs FILE`: the expected measurements.
pub(crate) fn expected_pcrs(
    path: Option<&std::path::Path>,
) -> Result<Option<Measurements>, Unusable> {
    let Some(path) = path else { return Ok(None) };
    Measurements::from_json(&read_input(path)?)
        .map(Some)
        .map_err(|e| Unusable {
            message: format!("--pcrs {}: {e}", path.display()),
            hint: Some("--pcrs takes the pcrs.json that nitro-cli build-enclave writes"),
        })
}

fn check_time(at: At) -> (CheckTime, &'static str) {
    match at {
        At::Now => (CheckTime::At(now()), "now"),
        At::Unix(t) => (CheckTime::At(t), "the time given with --at"),
        At::Attestation => (CheckTime::Attestation, "the attestation's own time"),
    }
}

fn check(args: CheckArgs) -> Result<u8, Unusable> {
    let root = trusted_root(&args.trust)?;
    let json = read_text(&args.file)?;
    let (time, time_source) = check_time(args.trust.at);
    let mut options = Options::new(root.clone(), time);
    options.allow_debug = args.allow_debug;
    let pins = pins::given(args.pcrs.as_deref(), &args.release)?;
    options.expected = pins.expected;
    options.release = pins.release;
    options.allow_dev_release = pins.allow_dev_release;
    let report = verify_instance_json(json.trim(), &options);
    if args.json {
        let out = JsonReport {
            valid: report.is_valid(),
            root_sha256: root.sha256_hex(),
            report: &report,
        };
        println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
    } else {
        print_report(&report, &root, time_source);
    }
    Ok(if report.is_valid() { VALID } else { INVALID })
}

fn attestation(args: AttestationArgs) -> Result<u8, Unusable> {
    let root = trusted_root(&args.trust)?;
    let input = read_input(&args.file)?;
    let (encoding, bytes) = match decode_document(&input) {
        Ok(d) => d,
        Err(e) => return invalid(args.json, e),
    };
    let doc = match Attestation::parse(&bytes) {
        Ok(d) => d,
        Err(e) => {
            return invalid(
                args.json,
                format!(
                    "the {} input is not an attestation document: {e}",
                    encoding.name()
                ),
            )
        }
    };
    let time = match args.trust.at {
        At::Now => now(),
        At::Unix(t) => t,
        At::Attestation => doc.doc().timestamp_secs(),
    };
    let mut view = DocumentView::new(&doc, encoding.name(), time, &root);
    let steps: [(&'static str, Result<String, verifier::Error>); 3] = [
        (
            "signature",
            doc.verify_signature()
                .map(|()| "ES384 by the leaf".to_owned()),
        ),
        (
            "chain",
            doc.verify_chain(&root, time)
                .map(|_| "leaf to trusted root, in bundle order".to_owned()),
        ),
        ("digest", doc.check_digest().map(|()| "SHA384".to_owned())),
    ];
    for (name, result) in steps {
        let line = match result {
            Ok(detail) => format!("ok: {detail}"),
            Err(e) => {
                view.error.get_or_insert_with(|| format!("{name}: {e}"));
                format!("FAIL: {e}")
            }
        };
        view.checks.push((name, line));
    }
    view.valid = view.error.is_none();
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&view).unwrap_or_default()
        );
    } else {
        view.print(&root);
    }
    Ok(if view.valid { VALID } else { INVALID })
}

/// A document that cannot be decoded is invalid (exit 1), not unusable.
fn invalid(json: bool, error: String) -> Result<u8, Unusable> {
    if json {
        let out = serde_json::json!({ "valid": false, "error": error });
        println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
    } else {
        println!("INVALID: {}", output::printable(&error));
    }
    Ok(INVALID)
}

fn pcr(cmd: PcrCommand) -> Result<u8, Unusable> {
    match cmd {
        PcrCommand::InstanceId { id } => {
            if !is_instance_id(&id) {
                return Err(Unusable {
                    message: format!("{id:?} is not an EC2 instance id"),
                    hint: Some("an instance id is i- followed by 8 or 17 lowercase hex digits, e.g. i-0ffff615a409a72d7"),
                });
            }
            println!("{}", pcr4_from_instance_id(&id));
        }
        PcrCommand::Cert { file } => {
            let pcr8 = pcr8_from_cert(&read_input(&file)?)
                .map_err(|e| Unusable::from(format!("{}: {e}", file.display())))?;
            println!("{pcr8}");
        }
    }
    Ok(VALID)
}

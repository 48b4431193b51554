//! The `verifier` binary as scripts use it: exit 0 valid, 1 invalid,
//! 2 unusable arguments or unreadable file.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod support;

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use base64::Engine;
use nostr::{JsonUtil, ToBech32};
use support::fixture::{fixture_build_cert, fixture_document, FIXTURE};
use support::World;

const FIXTURE_PCR4: &str = "6386cee86c94b2a713c98e1d883134e8f2c019a17a712eb950fde15e9d6667575569c4e5c5e66eb9c920369961025fd2";
const FIXTURE_PCR8: &str = "7e3f4c20f65f0a62de884a41ef73fd693c136173fec4ad19336d2ce3b1d63246da3383cbb83cd10dad77d5d1aafcdce1";

fn verifier(args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_verifier"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut pipe = child.stdin.take().unwrap();
    pipe.write_all(stdin.unwrap_or_default()).unwrap();
    drop(pipe);
    child.wait_with_output().unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A file in this test binary's scratch directory.
fn scratch(name: &str, contents: &[u8]) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("cli-tests");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{}-{name}", std::process::id()));
    std::fs::write(&path, contents).unwrap();
    path
}

fn fixture_file(contents: &str, name: &str) -> String {
    scratch(name, contents.as_bytes()).display().to_string()
}

/// The line naming the first failing check.
fn invalid_line(o: &Output) -> String {
    stdout(o)
        .lines()
        .find(|l| l.starts_with("INVALID"))
        .unwrap_or_default()
        .to_owned()
}

#[test]
fn fixture_is_valid_at_its_attestation_time_and_expired_now() {
    let file = fixture_file(FIXTURE, "fixture.json");
    let o = verifier(&["check", &file, "--at", "attestation"], None);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    assert!(stdout(&o).contains("VALID: every check passed."));

    let o = verifier(&["check", &file, "--at", "1743516971"], None);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));

    let o = verifier(&["check", &file], None);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        invalid_line(&o).contains("(certificate_chain)"),
        "{}",
        stdout(&o)
    );
    assert!(
        stdout(&o).contains("--at attestation"),
        "a hint names the way out"
    );
}

#[test]
fn reads_standard_input_and_prints_json() {
    let o = verifier(
        &["check", "-", "--at", "attestation", "--json"],
        Some(FIXTURE.as_bytes()),
    );
    assert_eq!(o.status.code(), Some(0));
    let json: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(json["valid"], true);
    assert_eq!(json["checks"].as_array().unwrap().len(), 18);
    assert_eq!(json["checks"][4]["check"], "certificate_chain");
    assert_eq!(json["checks"][4]["status"], "passed");
    assert_eq!(json["summary"]["pcrs"]["PCR8"], FIXTURE_PCR8);
}

#[test]
fn tampered_copies_of_the_fixture_name_the_failing_check() {
    let cases = [
        // The mirror's rewrite of the r tag, as printed in the seed text.
        (
            "https://github.com/nostrband",
            "https://d.zyszy.best/nostrband",
            "event_signature",
        ),
        // A PCR tag changed.
        ("\"517a9ec6", "\"617a9ec6", "event_signature"),
        // The attestation changed.
        (
            "\"content\": \"hEShATgi",
            "\"content\": \"hEShATgj",
            "event_signature",
        ),
        // A signature byte changed.
        ("\"sig\": \"391a", "\"sig\": \"391b", "event_signature"),
        // The kind changed.
        ("\"kind\": 63793", "\"kind\": 63794", "kind"),
    ];
    for (from, to, check) in cases {
        let tampered = FIXTURE.replacen(from, to, 1);
        assert_ne!(tampered, FIXTURE, "{from}");
        let o = verifier(
            &["check", "-", "--at", "attestation"],
            Some(tampered.as_bytes()),
        );
        assert_eq!(o.status.code(), Some(1), "{from}");
        assert!(
            invalid_line(&o).contains(&format!("({check})")),
            "{from}: {}",
            stdout(&o)
        );
    }
    let o = verifier(&["check", "-"], Some(b"{ not json"));
    assert_eq!(o.status.code(), Some(1));
}

#[test]
fn dev_root_and_expected_pcrs() {
    let w = World::new();
    let event = fixture_file(&w.valid().as_json(), "dev-event.json");
    let at = support::CHECK_AT.to_string();
    let o = verifier(&["check", &event, "--at", &at], None);
    assert_eq!(
        o.status.code(),
        Some(1),
        "the AWS root does not trust the dev CA"
    );
    assert!(invalid_line(&o).contains("(certificate_chain)"));

    let root_der = scratch("dev-root.der", w.chain.root.der());
    let root_pem = scratch(
        "dev-root.pem",
        pem::encode(&pem::Pem::new("CERTIFICATE", w.chain.root.der().to_vec())).as_bytes(),
    );
    for root in [&root_der, &root_pem] {
        let o = verifier(
            &[
                "check",
                &event,
                "--at",
                &at,
                "--root",
                root.to_str().unwrap(),
            ],
            None,
        );
        assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    }

    let doc = w.doc();
    let mut m = verifier::pcr::Measurements::default();
    for i in [0u8, 1, 2, 8] {
        m.pcrs.insert(i, doc.pcr(i));
    }
    let good = scratch("pcrs-good.json", m.to_json().as_bytes());
    m.pcrs.insert(2, verifier::pcr::pcr_digest(b"other"));
    let bad = scratch("pcrs-bad.json", m.to_json().as_bytes());
    let root = root_der.to_str().unwrap();
    let with_pcrs = |pcrs: &PathBuf| {
        let args = [
            "check",
            &event,
            "--at",
            &at,
            "--root",
            root,
            "--pcrs",
            pcrs.to_str().unwrap(),
        ];
        verifier(&args, None)
    };
    let o = with_pcrs(&good);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    let o = with_pcrs(&bad);
    assert_eq!(o.status.code(), Some(1));
    assert!(invalid_line(&o).contains("(expected_pcrs)"));
}

#[test]
fn unusable_arguments_exit_2() {
    let file = fixture_file(FIXTURE, "fixture2.json");
    let junk = scratch("junk", b"junk");
    let junk = junk.to_str().unwrap();
    for args in [
        vec!["check", "/nonexistent/event.json"],
        vec!["check", &file, "--at", "yesterday"],
        vec!["check", &file, "--root", junk],
        vec!["check", &file, "--root", "/nonexistent/root.der"],
        vec!["check", &file, "--pcrs", junk],
        vec!["attestation", "/nonexistent/doc"],
        vec!["pcr", "instance-id", "i-0ffff615a409a72d7\n"],
        vec!["pcr", "cert", junk],
        vec!["check"],
        vec!["frobnicate"],
    ] {
        let o = verifier(&args, None);
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        assert!(!o.stderr.is_empty(), "{args:?} says why");
    }
    let o = verifier(&["--help"], None);
    assert_eq!(o.status.code(), Some(0));
    assert!(stdout(&o).contains("Exit status"));
}

#[test]
fn attestation_in_each_encoding() {
    let raw = fixture_document();
    let b64 = base64::engine::general_purpose::STANDARD.encode(&raw);
    let hex = hex::encode(&raw);
    for (input, encoding) in [
        (raw.clone(), "raw CBOR"),
        (b64.into_bytes(), "base64"),
        (hex.into_bytes(), "hex"),
    ] {
        let o = verifier(&["attestation", "-", "--at", "attestation"], Some(&input));
        assert_eq!(o.status.code(), Some(0), "{encoding}: {}", stdout(&o));
        let out = stdout(&o);
        assert!(out.contains(encoding));
        assert!(out.contains("i-0ffff615a409a72d7-enc0195f17eaba9b385"));
        assert!(out.contains(FIXTURE_PCR4));
        assert!(out.contains("CN=aws.nitro-enclaves"));
        assert!(!out.contains("PCR3 "), "all-zero PCRs are not listed");
    }
    let o = verifier(&["attestation", "-"], Some(&raw));
    assert_eq!(o.status.code(), Some(1), "expired now");
    let o = verifier(&["attestation", "-", "--json"], Some(b"zz not a document"));
    assert_eq!(o.status.code(), Some(1));
    let json: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(json["valid"], false);
}

#[test]
fn pcr_subcommands_match_the_fixture() {
    let o = verifier(&["pcr", "instance-id", "i-0ffff615a409a72d7"], None);
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(stdout(&o).trim(), FIXTURE_PCR4);

    let der = fixture_build_cert();
    let pem = pem::encode(&pem::Pem::new("CERTIFICATE", der.clone()));
    for (name, contents) in [("crt.der", der), ("crt.pem", pem.into_bytes())] {
        let path = scratch(name, &contents);
        let o = verifier(&["pcr", "cert", path.to_str().unwrap()], None);
        assert_eq!(o.status.code(), Some(0), "{name}");
        assert_eq!(stdout(&o).trim(), FIXTURE_PCR8);
    }
}

#[test]
fn attacker_strings_cannot_rewrite_the_terminal() {
    let w = World::new();
    let mut parts = w.parts();
    parts.doc.module_id = "i-0abc\u{1b}]0;pwned\u{7}\r".to_owned();
    let event = w.event(&parts, |tags| {
        for tag in tags.iter_mut() {
            if tag.first().map(String::as_str) == Some("relay") {
                tag[1] = "wss://relay.example/\u{1b}[2K\rVALID: every check passed.\u{202e}".into();
            }
        }
    });
    let event = fixture_file(&event.as_json(), "control-chars.json");
    let root = scratch("dev-root-escape.der", w.chain.root.der());
    let at = support::CHECK_AT.to_string();
    let o = verifier(
        &[
            "check",
            &event,
            "--at",
            &at,
            "--root",
            root.to_str().unwrap(),
        ],
        None,
    );
    let out = stdout(&o);
    for raw in ['\u{1b}', '\r', '\u{7}', '\u{202e}'] {
        assert!(!out.contains(raw), "{raw:?} printed raw:\n{out}");
    }
    assert!(out.contains("\\u{1b}[2K"), "{out}");
}

#[test]
fn key_refuses_unpinned_code_and_nostrconnect_uris() {
    let w = World::new();
    let event = fixture_file(&w.valid().as_json(), "key-event.json");
    let key = scratch(
        "key.hex",
        b"0000000000000000000000000000000000000000000000000000000000000003",
    );
    let key = key.to_str().unwrap();
    let o = verifier(
        &["key", "import", "--instance", &event, "--key-file", key],
        None,
    );
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("without pinned code")
            && err.contains("--release-signer")
            && err.contains("--pcrs"),
        "{err}"
    );
    // A pcrs.json without PCR0/1/2 does not pin the code.
    let doc = w.doc();
    let mut m = verifier::pcr::Measurements::default();
    m.pcrs.insert(8, doc.pcr(8));
    let only8 = scratch("pcrs-only8.json", m.to_json().as_bytes());
    let o = verifier(
        &[
            "key",
            "status",
            "--instance",
            &event,
            "--key-file",
            key,
            "--pcrs",
            only8.to_str().unwrap(),
        ],
        None,
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("PCR0"));
    let o = verifier(
        &[
            "key",
            "connect",
            "--instance",
            &event,
            "--key-file",
            key,
            "--app",
            "nostrconnect://abc?relay=wss://r",
            "--full-access",
        ],
        None,
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("verifier key nostrconnect"));
}

#[test]
fn release_flags_that_cannot_be_used_exit_2() {
    let w = World::new();
    let event = fixture_file(&w.valid().as_json(), "release-event.json");
    let a = nostr::Keys::generate().public_key().to_bech32().unwrap();
    let b = nostr::Keys::generate().public_key().to_bech32().unwrap();
    let cases: [(&[&str], &str); 6] = [
        (&["--release-signer", &a], "needs --threshold"),
        (&["--threshold", "1"], "--release-signer"),
        (
            &[
                "--release-signer",
                &a,
                "--release-signer",
                &b,
                "--threshold",
                "3",
            ],
            "between 1 and the number of release signers (2)",
        ),
        (
            &[
                "--release-signer",
                &a,
                "--release-signer",
                &a,
                "--threshold",
                "1",
            ],
            "named twice",
        ),
        (
            &["--release-signer", "npub1nonsense", "--threshold", "1"],
            "not an npub",
        ),
        (
            &[
                "--release-signer",
                &a,
                "--threshold",
                "1",
                "--min-version",
                "one",
            ],
            "version",
        ),
    ];
    for (flags, expect) in cases {
        let mut args = vec!["check", event.as_str()];
        args.extend_from_slice(flags);
        let o = verifier(&args, None);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{flags:?}: {err}");
        assert!(err.contains(expect), "{flags:?}: {expect:?} not in {err}");
    }
    // A release signer and --any-code contradict each other.
    let o = verifier(
        &[
            "key",
            "status",
            "--instance",
            &event,
            "--key-file",
            "-",
            "--any-code",
            "--release-signer",
            &a,
            "--threshold",
            "1",
        ],
        None,
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("cannot be used with"));
}

#[test]
fn grant_arguments_say_what_is_wrong() {
    let cases: [(&[&str], &str); 5] = [
        (&["--uses", "-3"], "-3 uses would allow nothing"),
        (&["--uses", "0"], "0 uses would allow nothing"),
        (
            &["--perms", "sign_event:0-70000"],
            "kind 70000 is past the largest kind, 65535",
        ),
        (
            &["--perms", "sign_event:1", "--created-at-window", "soon"],
            "or `none` for no limit",
        ),
        (&["--perms", "sign_event:x"], "not a kind or a kind range"),
    ];
    for (flags, expect) in cases {
        let mut args = vec![
            "key",
            "bunker-url",
            "--instance",
            "absent.json",
            "--key-file",
            "absent.key",
        ];
        args.extend_from_slice(flags);
        let o = verifier(&args, None);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{flags:?}: {err}");
        assert!(err.contains(expect), "{flags:?}: {expect:?} not in {err}");
    }
}

//! Releases end to end, as separate processes: a prod dev stack starts
//! only when enough of its (throw-away) maintainers signed its image, its
//! 63793 and 13793 announcements carry those signatures, and clients that
//! pin "k of these maintainers" instead of raw PCRs check, discover and
//! import into it.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::path::Path;
use std::time::Duration;

use parent::dev_stack::{ReleaseSetup, Stack, StackPaths};

mod common;
use common::{relay, stack_config, test_dir, verifier, Writers};

fn s(p: &Path) -> String {
    p.display().to_string()
}

/// `--release-signer N…` for every dev maintainer, and `--threshold k`.
fn release_args(stack: &Stack, threshold: usize) -> Vec<String> {
    let mut args = Vec::new();
    for npub in stack.maintainers.npubs() {
        args.push("--release-signer".to_owned());
        args.push(npub);
    }
    args.push("--threshold".into());
    args.push(threshold.to_string());
    args
}

fn run(args: &[String]) -> (Option<i32>, String, String) {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = verifier(&args);
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn check(file: &Path, paths: &StackPaths, release: &[String]) -> (Option<i32>, String, String) {
    let mut args = vec![
        "check".to_owned(),
        s(file),
        "--root".into(),
        s(&paths.dev_root),
    ];
    args.extend_from_slice(release);
    run(&args)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_prod_stack_refuses_to_start_without_k_maintainer_signatures() {
    let (_relay, url, addr) = relay(Writers::default()).await;
    let mut config = stack_config(test_dir("prod-unreleased"), url, addr, 3600);
    config.prod = true;
    // One of the two signatures needed.
    config.release = ReleaseSetup {
        signers: 1,
        ..ReleaseSetup::default()
    };
    let mut stack = Stack::start(&config).await.unwrap();
    let err = stack
        .wait_for_event(Duration::from_secs(60))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("exited"), "{err}");
    let log = std::fs::read_to_string(stack.enclave.log()).unwrap();
    assert!(
        log.contains("must run a release signed by the maintainers")
            && log.contains("1 of the 2 trusted maintainer signatures"),
        "{log}"
    );
    assert!(!stack.paths.event.exists() && !stack.paths.announcement.exists());
    let _ = stack.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_prod_stack_starts_with_k_signatures_and_clients_pin_the_release() {
    let (_relay, url, addr) = relay(Writers::default()).await;
    let dir = test_dir("prod-released");
    let mut config = stack_config(dir.clone(), url.clone(), addr, 3600);
    config.prod = true;
    let mut stack = Stack::start(&config).await.unwrap();
    let event = stack.wait_for_event(Duration::from_secs(60)).await.unwrap();
    let p = stack.paths.clone();
    let two = release_args(&stack, 2);

    // Both announcements verify with "2 of these maintainers", naming the
    // release checks.
    for file in [&p.event, &p.announcement] {
        let (code, stdout, _) = check(file, &p, &two);
        assert_eq!(code, Some(0), "{}: {stdout}", file.display());
        for line in [
            "release_signatures",
            "release_version",
            "mode         prod",
            // The two kinds of "prod" are told apart.
            "not a debug-mode enclave",
            "not the same as debug_mode",
        ] {
            assert!(stdout.contains(line), "{line:?} not in {stdout}");
        }
        assert!(
            stdout.contains(&format!("release      {}", env!("CARGO_PKG_VERSION"))),
            "{stdout}"
        );
        // Two signed; three are not there.
        let (code, stdout, _) = check(file, &p, &release_args(&stack, 3));
        assert_eq!(code, Some(1), "{stdout}");
        assert!(
            stdout.contains("(release_signatures)")
                && stdout.contains("2 of the 3 trusted maintainer signatures needed"),
            "{stdout}"
        );
        // A floor above this version.
        let mut higher = two.clone();
        higher.extend(["--min-version".into(), "99.0.0".into()]);
        let (code, stdout, _) = check(file, &p, &higher);
        assert_eq!(code, Some(1), "{stdout}");
        assert!(
            stdout.contains("(release_version)") && stdout.contains("below"),
            "{stdout}"
        );
    }
    // Maintainers the client does not trust.
    let strangers: Vec<String> = (0..3)
        .flat_map(|_| {
            [
                "--release-signer".to_owned(),
                verifier::event::npub(&nostr::Keys::generate().public_key()),
            ]
        })
        .chain(["--threshold".into(), "2".into()])
        .collect();
    let (code, stdout, _) = check(&p.event, &p, &strangers);
    assert_eq!(code, Some(1), "{stdout}");
    assert!(stdout.contains("is not a trusted maintainer"), "{stdout}");

    // discover reads both kinds and reports the release.
    let mut args = vec![
        "discover".to_owned(),
        "--relay".into(),
        url.clone(),
        "--root".into(),
        s(&p.dev_root),
        "--json".into(),
    ];
    args.extend_from_slice(&two);
    let (code, stdout, stderr) = run(&args);
    assert_eq!(code, Some(0), "{stderr}");
    let json: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(json["fetched"], 2, "{json}");
    assert_eq!(json["invalid"].as_array().unwrap().len(), 0, "{json}");
    let instances = json["instances"].as_array().unwrap();
    assert_eq!(instances.len(), 1, "{json}");
    assert_eq!(
        instances[0]["service"],
        verifier::event::npub(&event.pubkey)
    );
    assert!(instances[0]["release"]
        .as_str()
        .unwrap()
        .starts_with(env!("CARGO_PKG_VERSION")));

    // `verifier key` imports on the strength of the release alone, from
    // either announcement, fetched by service key or given as a file.
    let key = nostr::Keys::generate();
    let key_file = dir.join("user.key");
    std::fs::write(&key_file, key.secret_key().to_secret_hex()).unwrap();
    let service = verifier::event::npub(&event.pubkey);
    for instance in [
        vec!["--instance".to_owned(), s(&p.announcement)],
        vec![
            "--service".to_owned(),
            service,
            "--relay".into(),
            url.clone(),
        ],
    ] {
        let mut args = vec!["key".to_owned(), "import".into()];
        args.extend(instance);
        args.extend(["--root".into(), s(&p.dev_root)]);
        args.extend([
            "--key-file".into(),
            s(&key_file),
            "--timeout".into(),
            "20".into(),
        ]);
        args.extend_from_slice(&two);
        let (code, stdout, stderr) = run(&args);
        assert_eq!(code, Some(0), "{stdout}{stderr}");
    }
    // Without any pin, this verifier (whose built-in policy names no
    // maintainers yet) sends nothing.
    let status = |extra: Vec<String>| {
        let mut args = vec![
            "key".to_owned(),
            "status".into(),
            "--instance".into(),
            s(&p.event),
            "--root".into(),
            s(&p.dev_root),
            "--key-file".into(),
            s(&key_file),
        ];
        args.extend(extra);
        run(&args)
    };
    let (code, _, stderr) = status(vec![]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("without pinned code"), "{stderr}");
    // Three of three is more than signed: refused before anything is sent.
    let (code, stdout, stderr) = status(release_args(&stack, 3));
    assert_eq!(code, Some(1), "{stdout}{stderr}");
    assert!(stderr.contains("release_signatures"), "{stdout}{stderr}");
    // A key file others can read is used, with a warning, as ssh does.
    use std::os::unix::fs::PermissionsExt;
    for (mode, warned) in [(0o644, true), (0o600, false)] {
        std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(mode)).unwrap();
        let (code, stdout, stderr) = status(release_args(&stack, 2));
        assert_eq!(code, Some(0), "{stdout}{stderr}");
        assert_eq!(
            stderr.contains("can be read by others than you"),
            warned,
            "mode {mode:o}: {stderr}"
        );
    }
    stack.stop().await.unwrap();
}

//! The build and launch scripts: they pass shellcheck, and without
//! nitro-cli they stop with a clear message before touching anything.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()
        .unwrap()
}

const SCRIPTS: [&str; 7] = [
    "build-docker.sh",
    "build-enclave-signed.sh",
    "launch-parent.sh",
    "launch-enclave-signed.sh",
    "scripts/build-enclave-binary.sh",
    "scripts/check-reproducible.sh",
    ".ci/run",
];

#[test]
fn scripts_pass_shellcheck() {
    let out = Command::new("shellcheck")
        .args(SCRIPTS)
        .current_dir(repo())
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run shellcheck ({e}): apt-get install shellcheck (.ci/run does)")
        });
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn without_nitro_cli_nothing_is_touched() {
    // A PATH with the basic tools but no nitro-cli.
    let path = "/usr/bin:/bin";
    for (script, args) in [
        (
            "build-enclave-signed.sh",
            [
                "npub1t3cr4p2dzpq7lfngyk5lsxm6jkhx45ls42p37604kzxs79dxp3xq8vu2fc",
                "--bunker",
                "bunker://x",
            ],
        ),
        (
            "launch-enclave-signed.sh",
            [
                "npub1t3cr4p2dzpq7lfngyk5lsxm6jkhx45ls42p37604kzxs79dxp3xq8vu2fc",
                "--bunker",
                "bunker://x",
            ],
        ),
    ] {
        let before = std::fs::read_dir(repo()).unwrap().count();
        let out = Command::new(repo().join(script))
            .args(args)
            .env("PATH", path)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{script}: {stderr}");
        assert!(
            stderr.contains("nitro-cli is not installed") && stderr.contains("Nothing was changed"),
            "{script}: {stderr}"
        );
        assert_eq!(
            std::fs::read_dir(repo()).unwrap().count(),
            before,
            "{script} created files"
        );
    }
}

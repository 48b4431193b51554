//! What the stack tests share: the binaries, a scratch directory, a
//! LocalRelay that records who writes to it.

#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing
)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};

use nostr::Event;
use nostr_relay_builder::builder::{PolicyResult, WritePolicy};
use nostr_relay_builder::RelayBuilder;
use parent::dev_stack::relay::DevRelay;
use parent::dev_stack::{StackConfig, StackPaths};

/// Addresses that wrote to the relay.
#[derive(Debug, Default, Clone)]
pub(crate) struct Writers(pub(crate) Arc<Mutex<Vec<SocketAddr>>>);

impl WritePolicy for Writers {
    fn admit_event<'a>(
        &'a self,
        _event: &'a Event,
        addr: &'a SocketAddr,
    ) -> nostr::util::BoxedFuture<'a, PolicyResult> {
        self.0.lock().unwrap().push(*addr);
        Box::pin(async { PolicyResult::Accept })
    }
}

pub(crate) fn bin_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_BIN_EXE_parent"))
        .parent()
        .unwrap()
        .to_owned();
    for name in ["enclave", "verifier"] {
        assert!(
            dir.join(name).is_file(),
            "{name} is not built in {}: run `cargo test --workspace --all-targets`",
            dir.display()
        );
    }
    dir
}

pub(crate) fn test_dir(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("stack-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

pub(crate) async fn relay(writers: Writers) -> (DevRelay, String, SocketAddr) {
    relay_with(parent::dev_stack::relay_builder().write_policy(writers)).await
}

/// A LocalRelay from `builder`: the relay, its URL and its address.
pub(crate) async fn relay_with(builder: RelayBuilder) -> (DevRelay, String, SocketAddr) {
    let relay = DevRelay::local(builder).await.unwrap();
    let (url, addr) = (relay.url(), relay.addr());
    (relay, url, addr)
}

pub(crate) fn verifier(args: &[&str]) -> std::process::Output {
    Command::new(bin_dir().join("verifier"))
        .args(args)
        .output()
        .unwrap()
}

/// A stack in `dir` on the relay at `url`/`addr`, quiet, announcing every `interval` s.
pub(crate) fn stack_config(
    dir: PathBuf,
    url: String,
    addr: SocketAddr,
    interval: u64,
) -> StackConfig {
    StackConfig {
        dir,
        bin_dir: bin_dir(),
        relay_url: url,
        relay_addr: addr,
        announce_interval: interval,
        echo_logs: false,
        enclave_args: Vec::new(),
        parent_args: Vec::new(),
        prod: false,
        release: parent::dev_stack::ReleaseSetup::default(),
        member: None,
    }
}

/// `verifier key …` against a running stack, with its dev root and dev
/// `pcrs.json` and the key in `file`.
pub(crate) struct Key {
    pub(crate) instance: String,
    pub(crate) root: String,
    pub(crate) pcrs: String,
    pub(crate) file: String,
}

impl Key {
    pub(crate) fn new(paths: &StackPaths, file: &Path) -> Self {
        let s = |p: &Path| p.display().to_string();
        Self {
            instance: s(&paths.event),
            root: s(&paths.dev_root),
            pcrs: s(&paths.pcrs),
            file: s(file),
        }
    }

    /// `verifier key <action> …`: exit code, stdout, stderr.
    pub(crate) fn run(&self, action: &str, extra: &[&str]) -> (Option<i32>, String, String) {
        let mut args = vec![
            "key",
            action,
            "--instance",
            &self.instance,
            "--root",
            &self.root,
            "--pcrs",
            &self.pcrs,
            "--key-file",
            &self.file,
            "--timeout",
            "20",
        ];
        args.extend_from_slice(extra);
        let out = verifier(&args);
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).trim().to_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    pub(crate) fn ok(&self, action: &str) -> String {
        self.ok_with(action, &[])
    }

    pub(crate) fn ok_with(&self, action: &str, extra: &[&str]) -> String {
        let (code, stdout, stderr) = self.run(action, extra);
        assert_eq!(code, Some(0), "verifier key {action}: {stderr}");
        stdout
    }
}

/// The Node clients in `interop/` (installed by `npm ci --prefix interop`).
pub(crate) fn interop_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../interop");
    assert!(
        dir.join("node_modules/nostr-tools").is_dir()
            && dir.join("node_modules/@nostr-dev-kit/ndk").is_dir()
            && dir.join("node_modules/nostr-enclaves").is_dir(),
        "the interop clients are not installed: run `npm ci --prefix interop` (as .ci/run does)"
    );
    dir
}

/// Runs a Node script in `interop/`; its output on failure.
pub(crate) fn node(script: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new("node")
        .arg(script)
        .args(args)
        .current_dir(interop_dir())
        .output()
        .unwrap_or_else(|e| panic!("cannot run node ({e}): install Node.js 20 or newer"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.success() {
        Ok(text)
    } else {
        Err(format!(
            "{script} exited with {:?}:\n{text}",
            out.status.code()
        ))
    }
}

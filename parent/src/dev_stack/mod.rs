//! The whole system on one machine, as separate processes like production:
//! `parent run` on TCP and `enclave run --attester dev`, with signature
//! events from throw-away builder and launcher keys, and release signatures
//! from throw-away maintainers under a dev release policy. The relay is the
//! caller's (the `dev-stack` binary embeds nostr-relay-builder's LocalRelay;
//! tests bring their own). Used by `dev-stack` and by the stack tests.

pub mod faults;
pub mod identity;
pub mod process;
pub mod relay;
pub mod release;
pub mod signatures;

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use nostr::{Event, JsonUtil};
use nostr_relay_builder::builder::RateLimit;
use nostr_relay_builder::RelayBuilder;

use self::identity::Identity;
use self::process::Process;
use self::release::{write_releases, DevMaintainers};
use self::signatures::DevSignatures;
use verifier::event::Mode;
use verifier::pcr::Measurements;

/// The embedded relay of the dev stack and its tests, on 127.0.0.1.
///
/// nostr-relay-builder limits each connection to 60 events a minute by
/// default, and the enclave sends every reply of every key over its one
/// connection to a relay, so the default would make the relay, not the
/// signer, the bottleneck (500 pings from one app: 61 answered). Real relays
/// rate-limit too; the enclave reads every `OK` and retries refusals.
pub fn relay_builder() -> RelayBuilder {
    RelayBuilder::default()
        .addr(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST))
        .rate_limit(RateLimit {
            max_reqs: 10_000,
            notes_per_minute: 1_000_000,
        })
}

/// What to run and where.
#[derive(Debug, Clone)]
pub struct StackConfig {
    /// Where the signature files, dev root, event and logs go.
    pub dir: PathBuf,
    /// Where the `parent` and `enclave` binaries are.
    pub bin_dir: PathBuf,
    /// The relay: announce relay and admin relay.
    pub relay_url: String,
    /// The relay's address, the one destination the proxy may reach.
    pub relay_addr: SocketAddr,
    /// Seconds between announcements.
    pub announce_interval: u64,
    /// Copy the children's logs to our stderr.
    pub echo_logs: bool,
    /// More arguments for `enclave run` (its limits, say).
    pub enclave_args: Vec<String>,
    /// More arguments for `parent run` (such as another `--allow-egress`).
    pub parent_args: Vec<String>,
    /// Run a production instance: prod build and instance signatures and
    /// `parent run --prod`. The enclave then needs a release.
    pub prod: bool,
    /// The throw-away maintainers and what they sign.
    pub release: ReleaseSetup,
}

/// The dev release policy and the signatures the stack makes under it.
#[derive(Debug, Clone)]
pub struct ReleaseSetup {
    /// How many maintainers the policy names.
    pub maintainers: usize,
    /// How many of them must sign.
    pub threshold: usize,
    /// How many of them sign the dev enclave's measurements.
    pub signers: usize,
    /// The `t` of their signatures; default: the stack's mode.
    pub mode: Option<Mode>,
    /// The version they sign; default: this code's.
    pub version: Option<String>,
    /// The policy's lowest accepted version.
    pub min_version: String,
}

impl Default for ReleaseSetup {
    /// Two of three maintainers must sign; two do, this code's version.
    fn default() -> Self {
        Self {
            maintainers: 3,
            threshold: 2,
            signers: 2,
            mode: None,
            version: None,
            min_version: "0.1.0".to_owned(),
        }
    }
}

/// The files of a running stack.
#[derive(Debug, Clone)]
pub struct StackPaths {
    /// The builder's signing certificate (DER).
    pub signing_cert: PathBuf,
    /// The kind 63795 event.
    pub build: PathBuf,
    /// The kind 63796 event.
    pub instance: PathBuf,
    /// The dev attester's root (DER), for `verifier check --root`.
    pub dev_root: PathBuf,
    /// The dev enclave's measurements, for `verifier check --pcrs`.
    pub pcrs: PathBuf,
    /// The latest published instance event.
    pub event: PathBuf,
    /// The latest published NECS announcement (kind 13793).
    pub announcement: PathBuf,
    /// The dev release policy the enclave runs under.
    pub release_policy: PathBuf,
    /// Where the maintainers' release signatures go (`<version>/<npub>.json`).
    pub releases: PathBuf,
}

impl StackPaths {
    fn in_dir(dir: &Path) -> Self {
        Self {
            signing_cert: dir.join("signing-cert.der"),
            build: dir.join("build.json"),
            instance: dir.join("instance.json"),
            dev_root: dir.join("dev-root.der"),
            pcrs: dir.join("pcrs.json"),
            event: dir.join("instance-event.json"),
            announcement: dir.join("announcement.json"),
            release_policy: dir.join("release-policy.json"),
            releases: dir.join("release"),
        }
    }
}

/// A running parent and enclave.
#[derive(Debug)]
pub struct Stack {
    /// The files.
    pub paths: StackPaths,
    /// The signature events served by the parent.
    pub signatures: DevSignatures,
    /// The throw-away maintainers of the dev release policy.
    pub maintainers: DevMaintainers,
    /// The parent's metadata server.
    pub metadata: SocketAddr,
    /// The parent's SOCKS5 proxy.
    pub socks: SocketAddr,
    /// `parent run`.
    pub parent: Process,
    /// `enclave run --attester dev`.
    pub enclave: Process,
    /// How the parent was started, to start it again.
    parent_start: ParentStart,
}

/// What starting the parent takes.
#[derive(Debug)]
struct ParentStart {
    bin: PathBuf,
    args: Vec<String>,
    dir: PathBuf,
    echo: bool,
    restarts: usize,
}

/// How long the enclave may take to write its dev root.
const START_TIMEOUT: Duration = Duration::from_secs(60);

impl Stack {
    /// Writes the signature files and starts the enclave, then the parent
    /// (which needs the enclave's dev root to check its attestation).
    pub async fn start(config: &StackConfig) -> Result<Self> {
        std::fs::create_dir_all(&config.dir)
            .with_context(|| format!("cannot create {}", config.dir.display()))?;
        let paths = StackPaths::in_dir(&config.dir);
        for stale in [
            &paths.dev_root,
            &paths.event,
            &paths.announcement,
            &paths.pcrs,
        ] {
            let _ = std::fs::remove_file(stale);
        }
        let _ = std::fs::remove_dir_all(&paths.releases);
        let mode = if config.prod { Mode::Prod } else { Mode::Dev };
        let now = crate::unix_now();
        // The same builder, launcher, maintainers and dev CA as the last
        // run in this folder: what a user saved from it stays valid.
        let setup = &config.release;
        let identity = Identity::load_or_create(&config.dir, setup.maintainers, now)?;
        let signatures = DevSignatures::sign(
            &identity.builder,
            &identity.launcher,
            identity.cert_der.clone(),
            signatures::DEV_INSTANCE_ID,
            now,
            mode,
        )?;
        let maintainers = DevMaintainers::with_keys(
            identity.maintainers.clone(),
            setup.threshold,
            &setup.min_version,
        )?;
        std::fs::write(&paths.release_policy, maintainers.policy.to_json())?;
        std::fs::write(&paths.signing_cert, &signatures.cert_der)?;
        std::fs::write(&paths.build, signatures.build.as_json())?;
        std::fs::write(&paths.instance, signatures.instance.as_json())?;
        let metadata = free_port()?;
        let mut socks = free_port()?;
        while socks == metadata {
            socks = free_port()?;
        }
        let parent_bin = binary(&config.bin_dir, "parent")?;
        let enclave_bin = binary(&config.bin_dir, "enclave")?;
        let path = |p: &Path| p.display().to_string();
        let enclave_args = vec![
            "run".into(),
            "--attester".into(),
            "dev".into(),
            "--metadata".into(),
            format!("tcp:{metadata}"),
            "--socks".into(),
            format!("tcp:{socks}"),
            "--admin-relay".into(),
            config.relay_url.clone(),
            // nsec.app permission events are read on the local relay, not
            // on the public ones a production enclave reads.
            "--perm-relay".into(),
            config.relay_url.clone(),
            "--announce-interval".into(),
            config.announce_interval.to_string(),
            "--retry-initial".into(),
            "1".into(),
            "--retry-max".into(),
            "10".into(),
            "--event-file".into(),
            path(&paths.event),
            "--announcement-file".into(),
            path(&paths.announcement),
            "--dev-release-policy".into(),
            path(&paths.release_policy),
            "--dev-instance-id".into(),
            signatures.instance_id.clone(),
            "--dev-signing-cert".into(),
            path(&paths.signing_cert),
            "--dev-root-out".into(),
            path(&paths.dev_root),
            "--dev-ca-dir".into(),
            path(&identity::ca_dir(&config.dir)),
            "--dev-pcrs-out".into(),
            path(&paths.pcrs),
        ];
        let enclave_args = [enclave_args, config.enclave_args.clone()].concat();
        let mut enclave = Process::spawn(
            "enclave",
            &enclave_bin,
            &enclave_args,
            &config.dir.join("enclave.log"),
            config.echo_logs,
        )?;
        wait_for_file(&paths.dev_root, &mut enclave, START_TIMEOUT).await?;
        // The maintainers sign what the dev enclave measures to.
        wait_for_file(&paths.pcrs, &mut enclave, START_TIMEOUT).await?;
        let measurements = Measurements::from_json(&std::fs::read(&paths.pcrs)?)?;
        let version = setup
            .version
            .clone()
            .unwrap_or_else(|| env!("CARGO_PKG_VERSION").to_owned());
        let releases = maintainers.sign(
            setup.signers,
            &measurements,
            &version,
            setup.mode.unwrap_or(mode),
            now,
        )?;
        let release_dir = write_releases(&paths.releases, &version, &releases)?;
        let mut parent_args = vec![
            "run".into(),
            "--build".into(),
            path(&paths.build),
            "--instance".into(),
            path(&paths.instance),
            "--root".into(),
            path(&paths.dev_root),
            "--announce-relay".into(),
            config.relay_url.clone(),
            "--metadata".into(),
            format!("tcp:{metadata}"),
            "--socks".into(),
            format!("tcp:{socks}"),
            "--allow-egress".into(),
            config.relay_addr.to_string(),
            "--release-dir".into(),
            path(&release_dir),
        ];
        if config.prod {
            parent_args.push("--prod".into());
        }
        let parent_args = [parent_args, config.parent_args.clone()].concat();
        let parent = Process::spawn(
            "parent",
            &parent_bin,
            &parent_args,
            &config.dir.join("parent.log"),
            config.echo_logs,
        )?;
        Ok(Self {
            paths,
            signatures,
            maintainers,
            metadata,
            socks,
            parent,
            enclave,
            parent_start: ParentStart {
                bin: parent_bin,
                args: parent_args,
                dir: config.dir.clone(),
                echo: config.echo_logs,
                restarts: 0,
            },
        })
    }

    /// Stops the parent (SIGTERM) and starts it again with the same
    /// arguments and ports, as an operator restarting its service does;
    /// the enclave keeps running. The new parent logs to
    /// `parent-restart-N.log`.
    pub async fn restart_parent(&mut self) -> Result<()> {
        self.parent.stop(Duration::from_secs(10)).await?;
        let start = &mut self.parent_start;
        start.restarts += 1;
        let log = start
            .dir
            .join(format!("parent-restart-{}.log", start.restarts));
        // The old listeners are closed once it exited; binding can still
        // race the kernel briefly, so try a few times.
        let mut last = None;
        for _ in 0..20 {
            match Process::spawn("parent", &start.bin, &start.args, &log, start.echo) {
                Ok(mut p) => {
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    match p.exited()? {
                        None => {
                            self.parent = p;
                            return Ok(());
                        }
                        Some(status) => last = Some(anyhow::anyhow!("parent exited: {status}")),
                    }
                }
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| anyhow::anyhow!("the parent did not start again")))
    }

    /// Waits for the enclave to publish its instance event.
    pub async fn wait_for_event(&mut self, timeout: Duration) -> Result<Event> {
        wait_for_file(&self.paths.event, &mut self.enclave, timeout).await?;
        let json = std::fs::read_to_string(&self.paths.event)?;
        Ok(Event::from_json(json)?)
    }

    /// Stops both with SIGTERM; fails if either exits unsuccessfully.
    pub async fn stop(mut self) -> Result<()> {
        let grace = Duration::from_secs(10);
        let enclave = self.enclave.stop(grace).await?;
        let parent = self.parent.stop(grace).await?;
        if !enclave.success() || !parent.success() {
            bail!("unclean stop: enclave {enclave}, parent {parent}");
        }
        Ok(())
    }
}

/// `dir/name`, which must exist.
pub fn binary(dir: &Path, name: &str) -> Result<PathBuf> {
    let path = dir.join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    if !path.is_file() {
        bail!(
            "{} not found: build the workspace first (cargo build --release --workspace)",
            path.display()
        );
    }
    Ok(path)
}

/// A port on 127.0.0.1 that was free a moment ago, for a server started
/// later by another process.
///
/// It is taken below the kernel's ephemeral range where there is room, so
/// that between now and the server's bind no other `bind(0)` and no outgoing
/// connection is handed the same port (a client retrying a connection to a
/// port nobody listens on yet can otherwise connect to itself).
pub fn free_port() -> Result<SocketAddr> {
    use std::hash::{BuildHasher, Hasher};
    if let Some((low, high)) = below_ephemeral() {
        for _ in 0..64 {
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write_u8(0);
            let port = low + (h.finish() % u64::from(high - low)) as u16;
            if let Ok(l) = TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, port)) {
                return Ok(l.local_addr()?);
            }
        }
    }
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?)
}

/// Ports `[low, high)` under the ephemeral range (Linux), if at least 1,000.
fn below_ephemeral() -> Option<(u16, u16)> {
    let range = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").ok()?;
    let first: u16 = range.split_whitespace().next()?.parse().ok()?;
    let low = first.saturating_sub(12_000).max(10_000);
    (first >= low + 1_000).then_some((low, first))
}

async fn wait_for_file(path: &Path, process: &mut Process, timeout: Duration) -> Result<()> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if path.is_file() {
            return Ok(());
        }
        if let Some(status) = process.exited()? {
            bail!(
                "the process exited ({status}) before writing {}; see {}",
                path.display(),
                process.log().display()
            );
        }
        if tokio::time::Instant::now() >= deadline {
            bail!("{} did not appear within {timeout:?}", path.display());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

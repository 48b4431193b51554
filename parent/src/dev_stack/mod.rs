//! The whole system on one machine, as separate processes like production:
//! `parent run` on TCP and `enclave run --attester dev`, with signature
//! events from throw-away builder and launcher keys, and release signatures
//! from throw-away maintainers under a dev release policy. The relay is the
//! caller's (the `dev-stack` binary embeds nostr-relay-builder's LocalRelay;
//! tests bring their own). Used by `dev-stack` and by the stack tests.

pub mod cluster;
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
    /// This stack as one instance of a cluster (`dev-stack --instances`):
    /// the builder, maintainers and dev CA are the cluster's, the launcher
    /// its own. `None`: a stack of its own.
    pub member: Option<Member>,
}

/// One instance of a cluster of stacks.
#[derive(Debug, Clone)]
pub struct Member {
    /// The cluster's folder, which keeps the shared identity.
    pub cluster_dir: PathBuf,
    /// This instance's number, from 1.
    pub number: usize,
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
    /// How the enclave was started, to start it again.
    enclave_start: EnclaveStart,
    /// How many maintainers sign a release, and for which mode.
    release: (usize, Mode),
}

/// Sets `--name value` in `args`, replacing a value given before.
fn set_arg(args: &mut Vec<String>, name: &str, value: &str) {
    match args.iter().position(|a| a == name) {
        Some(i) => {
            if let Some(v) = args.get_mut(i + 1) {
                *v = value.to_owned();
            }
        }
        None => args.extend([name.to_owned(), value.to_owned()]),
    }
}

/// What starting the enclave takes.
#[derive(Debug)]
struct EnclaveStart {
    bin: PathBuf,
    args: Vec<String>,
    dir: PathBuf,
    echo: bool,
    restarts: usize,
}

impl EnclaveStart {
    /// Starts it, logging to `log`, and writes its PID to `DIR/enclave.pid`.
    fn spawn(&self, log: &Path) -> Result<Process> {
        let process = Process::spawn("enclave", &self.bin, &self.args, log, self.echo)?;
        let pid_file = self.dir.join("enclave.pid");
        if let Some(pid) = process.id() {
            std::fs::write(&pid_file, format!("{pid}\n"))
                .with_context(|| format!("cannot write {}", pid_file.display()))?;
        }
        Ok(process)
    }
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
        let (identity, instance_id, ca_dir) = match &config.member {
            None => (
                Identity::load_or_create(&config.dir, setup.maintainers, now)?,
                signatures::DEV_INSTANCE_ID.to_owned(),
                identity::ca_dir(&config.dir),
            ),
            Some(m) => (
                Identity::load_or_create(&m.cluster_dir, setup.maintainers, now)?
                    .as_member(&m.cluster_dir, m.number)?,
                signatures::member_instance_id(m.number),
                identity::ca_dir(&m.cluster_dir),
            ),
        };
        let signatures = DevSignatures::sign(
            &identity.builder,
            &identity.launcher,
            identity.cert_der.clone(),
            &instance_id,
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
            path(&ca_dir),
            "--dev-pcrs-out".into(),
            path(&paths.pcrs),
        ];
        let mut enclave_args = [enclave_args, config.enclave_args.clone()].concat();
        if let Some(version) = &setup.version {
            // The dev enclave runs as a build of the version signed.
            enclave_args.extend(["--dev-version".into(), version.clone()]);
        }
        let enclave_start = EnclaveStart {
            bin: enclave_bin,
            args: enclave_args,
            dir: config.dir.clone(),
            echo: config.echo_logs,
            restarts: 0,
        };
        let mut enclave = enclave_start.spawn(&config.dir.join("enclave.log"))?;
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
            enclave_start,
            release: (setup.signers, setup.mode.unwrap_or(mode)),
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
        self.respawn_parent().await
    }

    /// Starts the parent again after it stopped (see [`Self::restart_parent`]).
    async fn respawn_parent(&mut self) -> Result<()> {
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

    /// Starts the enclave again after it exited, as a launcher's supervisor
    /// does: the same arguments and ports, except that it never seals a new
    /// state (`--init-state` is for the first start only; a restart takes
    /// the state over). Its instance event and announcement are deleted
    /// until it writes new ones; it logs to `enclave-restart-N.log`.
    pub fn restart_enclave(&mut self) -> Result<()> {
        if self.enclave.exited()?.is_none() {
            bail!("the enclave is still running");
        }
        let _ = std::fs::remove_file(&self.paths.event);
        let _ = std::fs::remove_file(&self.paths.announcement);
        let start = &mut self.enclave_start;
        start.args.retain(|a| a != "--init-state");
        start.restarts += 1;
        let log = start
            .dir
            .join(format!("enclave-restart-{}.log", start.restarts));
        self.enclave = start.spawn(&log)?;
        Ok(())
    }

    /// Starts the enclave again after it exited, as a build of `version`
    /// that the stack's maintainers release as they did the first (an
    /// upgrade, or with a lower version a downgrade), and restarts the
    /// parent to serve that release. Like [`Self::restart_enclave`], it
    /// never seals a new state.
    pub async fn upgrade_enclave(&mut self, version: &str) -> Result<()> {
        if self.enclave.exited()?.is_none() {
            bail!("the enclave is still running");
        }
        verifier::release::parse_version(version)?;
        for stale in [
            &self.paths.event,
            &self.paths.announcement,
            &self.paths.pcrs,
        ] {
            let _ = std::fs::remove_file(stale);
        }
        // The new enclave waits for the parent, which comes back serving
        // the release of what the enclave measures to.
        self.parent.stop(Duration::from_secs(10)).await?;
        let start = &mut self.enclave_start;
        start.args.retain(|a| a != "--init-state");
        set_arg(&mut start.args, "--dev-version", version);
        start.restarts += 1;
        let log = start
            .dir
            .join(format!("enclave-restart-{}.log", start.restarts));
        self.enclave = start.spawn(&log)?;
        wait_for_file(&self.paths.pcrs, &mut self.enclave, START_TIMEOUT).await?;
        let measurements = Measurements::from_json(&std::fs::read(&self.paths.pcrs)?)?;
        let (signers, mode) = self.release;
        let releases =
            self.maintainers
                .sign(signers, &measurements, version, mode, crate::unix_now())?;
        let dir = write_releases(&self.paths.releases, version, &releases)?;
        set_arg(
            &mut self.parent_start.args,
            "--release-dir",
            &dir.display().to_string(),
        );
        self.respawn_parent().await
    }

    /// How many times the enclave was started again.
    pub fn enclave_restarts(&self) -> usize {
        self.enclave_start.restarts
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
///
/// No port is handed out twice by one process, so that stacks started at
/// the same time (tests) never pick the same one before either binds it.
pub fn free_port() -> Result<SocketAddr> {
    use std::hash::{BuildHasher, Hasher};
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut given = GIVEN
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let range = below_ephemeral();
    for _ in 0..64 {
        let addr = match range {
            Some((low, high)) => {
                let mut h = std::collections::hash_map::RandomState::new().build_hasher();
                h.write_u8(0);
                let port = low + (h.finish() % u64::from(high - low)) as u16;
                match TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, port)) {
                    Ok(l) => l.local_addr()?,
                    Err(_) => continue,
                }
            }
            None => TcpListener::bind("127.0.0.1:0")?.local_addr()?,
        };
        if !given.contains(&addr.port()) {
            given.push(addr.port());
            return Ok(addr);
        }
    }
    bail!("no free port on 127.0.0.1 after 64 tries")
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

//! The whole system on one machine, as separate processes like production:
//! `parent run` on TCP and `enclave run --attester dev`, with signature
//! events from throw-away builder and launcher keys, and release signatures
//! from throw-away maintainers under a dev release policy. The relay is the
//! caller's (the `dev-stack` binary embeds nostr-relay-builder's LocalRelay;
//! tests bring their own). Used by `dev-stack` and by the stack tests.

pub mod cluster;
pub mod faults;
pub mod identity;
pub mod ports;
pub mod process;
pub mod relay;
pub mod release;
mod restart;
pub mod signatures;

pub use self::ports::free_port;
use self::restart::{EnclaveStart, ParentStart};

use std::net::SocketAddr;
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

/// How long the enclave may take to write its dev root.
pub(super) const START_TIMEOUT: Duration = Duration::from_secs(60);

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

pub(super) async fn wait_for_file(
    path: &Path,
    process: &mut Process,
    timeout: Duration,
) -> Result<()> {
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

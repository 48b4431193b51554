//! `enclave`: the trusted side of enclaved. See `enclave --help`.

#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use enclave::announce::{self, AnnounceConfig};
use enclave::attester::dev::{DevAttester, DevMeasurements};
use enclave::attester::nsm::NsmAttester;
use enclave::attester::{Attester, AttesterKind};
use enclave::custody::{AdmissionLimits, Limits, LogLimits};
use enclave::link::ParentAddr;
use enclave::relay::inbox::{Inbox, InboxLimits};
use enclave::relay::{self, tls::TlsConfig, PoolLimits, ProxiedTransport};
use enclave::serve;
use enclave::signer::custody::CustodyConfig;
use enclave::signer::SignerConfig;
use enclave::startup;
use nostr::{Keys, PublicKey, ToBech32};
use tracing::{error, info};
use verifier::attestation::TrustedRoot;
use verifier::custodian::ledger::LedgerLimits;
use verifier::event::npub;
use verifier::grant::nsecapp::DEFAULT_PERM_RELAYS;
use verifier::pcr::cert_der_from_der_or_pem;
use verifier::protocol::{METADATA_PORT, SOCKS_PORT};
use verifier::release::ReleasePolicy;
use verifier::rpc::message::MAX_REQUEST_EVENT;
use verifier::rpc::relays::parse_relay_url;

/// The trusted side of enclaved, run inside an AWS Nitro Enclave.
///
/// At start-up it makes a service key, takes an attestation binding it,
/// asks the parent for the builder's and launcher's signature events and
/// checks them against that attestation; it exits non-zero if anything does
/// not match. Then it publishes its kind 63793 instance event (fresh
/// attestation, self-checked) on a schedule. It has no network of its own:
/// it talks to the parent over vsock (or TCP in development) and reaches
/// relays only through the parent's SOCKS5 proxy, with TLS ending inside.
#[derive(Debug, Parser)]
#[command(name = "enclave", version, max_term_width = 100)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Start, check the parent's answer, and announce until stopped.
    Run(RunArgs),
}

#[derive(Debug, clap::Args)]
struct RunArgs {
    /// Where attestations come from: `nsm` (/dev/nsm, production) or `dev`
    /// (a local chain that only `verifier check --root <dev root>` trusts).
    /// Required: nothing falls back to dev.
    #[arg(long, value_enum)]
    attester: AttesterKind,
    /// The parent's metadata server: vsock:CID:PORT or tcp:IP:PORT.
    #[arg(long, value_name = "ADDR", default_value_t = ParentAddr::vsock(METADATA_PORT))]
    metadata: ParentAddr,
    /// The parent's SOCKS5 proxy, the only way to relays: vsock:CID:PORT or tcp:IP:PORT.
    #[arg(long, value_name = "ADDR", default_value_t = ParentAddr::vsock(SOCKS_PORT))]
    socks: ParentAddr,
    /// Seconds to wait for the parent's metadata server to come up.
    #[arg(long, value_name = "SECS", default_value_t = 60)]
    parent_wait: u64,
    /// The relay where the admin API listens (the instance event's `relay` tag).
    #[arg(long, value_name = "URL", default_value = "wss://relay.nsec.app")]
    admin_relay: String,
    /// A relay where every imported key's nsec.app permission events (kind
    /// 30078, t nsec.app/perm) are read, besides the key's own relays.
    /// Repeat for several. Default: the five the original reads.
    #[arg(
        long = "perm-relay",
        value_name = "URL",
        conflicts_with = "no_perm_relays"
    )]
    perm_relays: Vec<String>,
    /// Read permission events on the keys' own relays only.
    #[arg(long)]
    no_perm_relays: bool,
    /// Seconds between announcements (each with a fresh attestation).
    #[arg(long, value_name = "SECS", default_value_t = 3600, value_parser = clap::value_parser!(u64).range(1..=3 * 3600))]
    announce_interval: u64,
    /// Seconds before the first retry of a failed publication; doubles each time.
    #[arg(long, value_name = "SECS", default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..))]
    retry_initial: u64,
    /// Longest wait between retries, in seconds.
    #[arg(long, value_name = "SECS", default_value_t = 300, value_parser = clap::value_parser!(u64).range(1..))]
    retry_max: u64,
    /// Write each published instance event (JSON) here.
    #[arg(long, value_name = "FILE")]
    event_file: Option<PathBuf>,
    /// Write each published kind 13793 announcement (NECS) here as JSON.
    #[arg(long, value_name = "FILE")]
    announcement_file: Option<PathBuf>,
    #[command(flatten)]
    limits: LimitArgs,
    #[command(flatten)]
    custody: CustodyArgs,
    /// Dev attester: the EC2 instance id it measures into PCR4.
    #[arg(
        long,
        value_name = "ID",
        required_if_eq("attester", "dev"),
        help_heading = "Dev attester"
    )]
    dev_instance_id: Option<String>,
    /// Dev attester: the builder's image signing certificate (DER or PEM) it
    /// measures into PCR8.
    #[arg(
        long,
        value_name = "FILE",
        required_if_eq("attester", "dev"),
        help_heading = "Dev attester"
    )]
    dev_signing_cert: Option<PathBuf>,
    /// Dev attester: write the dev root certificate (DER) here, for
    /// `verifier check --root` and `parent run --root`.
    #[arg(
        long,
        value_name = "FILE",
        required_if_eq("attester", "dev"),
        help_heading = "Dev attester"
    )]
    dev_root_out: Option<PathBuf>,
    /// Dev attester: write the measured PCR0/1/2/8 here as a pcrs.json, for
    /// `verifier check --pcrs`.
    #[arg(long, value_name = "FILE", help_heading = "Dev attester")]
    dev_pcrs_out: Option<PathBuf>,
    /// Dev attester: use this release policy (a release-policy.json, such
    /// as the throw-away one dev-stack writes) instead of the one built
    /// into the binary. Refused with --attester nsm: a production image
    /// trusts only its built-in policy, which its measurements cover.
    #[arg(long, value_name = "FILE", help_heading = "Dev attester")]
    dev_release_policy: Option<PathBuf>,
    /// Dev attester: give the dev root this serial number (hex), e.g. AWS's
    /// root's `00f93175681b90afe11d46ccb4e4e7f856`, for testing validators
    /// that recognise AWS's root by its serial alone (nostr-enclaves does).
    /// The root is still a fresh key: this verifier refuses it without --root.
    #[arg(long, value_name = "HEX", help_heading = "Dev attester")]
    dev_root_serial: Option<String>,
    /// Dev attester: keep the dev CA (root and intermediate, with their
    /// keys) in this folder, made there on first use, so that the root and
    /// the events it signed stay valid across restarts (`dev-stack` does).
    #[arg(long, value_name = "DIR", help_heading = "Dev attester")]
    dev_ca_dir: Option<PathBuf>,
}

/// This enclave as a custodian of other enclaves' state keys.
#[derive(Debug, clap::Args)]
#[command(next_help_heading = "Custody")]
struct CustodyArgs {
    /// Keep, in RAM, the state keys of enclaves run by this launcher (npub
    /// or hex), for them to restore their keys after a restart: this
    /// enclave becomes one of their custodians. It answers only enclaves
    /// whose instance event verifies and whose code the state's sealed
    /// release policy releases. Repeat for several launchers.
    #[arg(long = "custody-for", value_name = "NPUB")]
    custody_for: Vec<String>,
    /// Most states kept, over all launchers.
    #[arg(long, value_name = "N", default_value_t = LedgerLimits::default().max_states)]
    max_custody: usize,
    /// Most states kept per launcher.
    #[arg(long, value_name = "N", default_value_t = LedgerLimits::default().per_launcher)]
    custody_per_launcher: usize,
    /// NIP-13 proof of work (bits) asked of a custody request from an
    /// enclave not verified in the last 10 minutes, so that checking its
    /// attestation costs the asker more than this enclave.
    #[arg(long, value_name = "BITS", default_value_t = 20, value_parser = clap::value_parser!(u8).range(0..=28))]
    custody_pow: u8,
}

impl CustodyArgs {
    fn config(&self, root: TrustedRoot) -> Result<Option<CustodyConfig>> {
        if self.custody_for.is_empty() {
            return Ok(None);
        }
        let serves = self
            .custody_for
            .iter()
            .map(|n| {
                PublicKey::parse(n.trim())
                    .with_context(|| format!("--custody-for {n:?} is not an npub or hex key"))
            })
            .collect::<Result<Vec<_>>>()?;
        for launcher in &serves {
            info!(launcher = %npub(launcher), "custodian of this launcher's enclaves");
        }
        Ok(Some(CustodyConfig {
            serves,
            limits: LedgerLimits {
                max_states: self.max_custody,
                per_launcher: self.custody_per_launcher,
            },
            root,
            pow_bits: self.custody_pow,
        }))
    }
}

/// Limits on what users and strangers can make the signer hold.
#[derive(Debug, clap::Args)]
#[command(next_help_heading = "Limits")]
struct LimitArgs {
    /// Most imported user keys held (test keys have their own limit).
    #[arg(long, value_name = "N", default_value_t = Limits::default().max_keys)]
    max_keys: usize,
    /// Most throw-away test keys held at once.
    #[arg(long, value_name = "N", default_value_t = Limits::default().max_test_keys)]
    max_test_keys: usize,
    /// Most relays one key may listen on.
    #[arg(long, value_name = "N", default_value_t = Limits::default().max_relays_per_key, value_parser = at_least_one)]
    max_relays_per_key: usize,
    /// Most distinct relays over all keys (one connection each).
    #[arg(long, value_name = "N", default_value_t = Limits::default().max_relays, value_parser = at_least_one)]
    max_relays: usize,
    /// Most apps allowed per key.
    #[arg(long, value_name = "N", default_value_t = Limits::default().max_apps_per_key)]
    max_apps_per_key: usize,
    /// `generate_test_key` calls allowed per requester per hour.
    #[arg(long, value_name = "N", default_value_t = Limits::default().test_keys_per_hour)]
    test_keys_per_hour: usize,
    /// Seconds a test key lives before it is deleted.
    #[arg(long, value_name = "SECS", default_value_t = Limits::default().test_key_ttl, value_parser = clap::value_parser!(u64).range(1..))]
    test_key_ttl: u64,
    /// Largest request event (content and tags, in bytes) looked at; larger
    /// ones are dropped before decryption. The default admits the largest
    /// NIP-44 payload (65,535 bytes of plaintext).
    #[arg(long, value_name = "BYTES", default_value_t = SignerConfig::default().max_request_bytes, value_parser = request_bytes)]
    max_request_bytes: usize,
    /// Times one key's relays may change (re-imports that move it) per hour.
    #[arg(long, value_name = "N", default_value_t = Limits::default().relay_changes_per_hour, value_parser = at_least_one)]
    relay_changes_per_hour: usize,
    /// New keys per hour, all requesters together, without proof of work.
    #[arg(long, value_name = "N", default_value_t = AdmissionLimits::default().free_keys_per_hour)]
    free_keys_per_hour: usize,
    /// New test keys per hour without proof of work.
    #[arg(long, value_name = "N", default_value_t = AdmissionLimits::default().free_test_keys_per_hour)]
    free_test_keys_per_hour: usize,
    /// New distinct relays per hour without proof of work.
    #[arg(long, value_name = "N", default_value_t = AdmissionLimits::default().free_relays_per_hour)]
    free_relays_per_hour: usize,
    /// KiB of new grants and bunker secrets per hour, all keys together,
    /// without proof of work (a scoped app with the default rates counts
    /// about 1.5 KiB, a pending bunker secret about 3.5 KiB).
    #[arg(long, value_name = "KIB", default_value_t = AdmissionLimits::default().free_grant_kib_per_hour)]
    free_grant_kib_per_hour: usize,
    /// MiB of memory all apps' grants and pending bunker secrets may count.
    /// nsec.app's permission events may fill at most half of it, and each
    /// owned key a fair share of that half; owners' grants always have the
    /// other half.
    #[arg(long, value_name = "MIB", default_value_t = (Limits::default().max_grant_bytes >> 20) as u64, value_parser = clap::value_parser!(u64).range(1..=512))]
    max_grant_mib: u64,
    /// The decision log: entries kept per key (the app that logs most loses
    /// its oldest allowed entry first; each app's first refusals stay).
    #[arg(long, value_name = "N", default_value_t = LogLimits::default().per_key)]
    log_per_key: usize,
    /// The decision log: entries kept over all keys, beyond each key's
    /// floor (the key with the most loses one first).
    #[arg(long, value_name = "N", default_value_t = LogLimits::default().total)]
    log_total: usize,
    /// The decision log: entries of each key that other keys never push
    /// out (at most `--log-per-key`); at most `--log-total` plus this many
    /// per owned key are held.
    #[arg(long, value_name = "N", default_value_t = LogLimits::default().floor)]
    log_floor: usize,
    /// NIP-13 proof of work (bits) asked of the first request past a free
    /// allowance; it grows with how full the resource is, up to 28. 0 turns
    /// admission control off (only the hard limits apply).
    #[arg(long, value_name = "BITS", default_value_t = AdmissionLimits::default().pow_bits, value_parser = clap::value_parser!(u8).range(0..=28))]
    pow_bits: u8,
    /// NIP-13 proof of work (bits) asked of the last slot of a resource,
    /// and of a newcomer who takes the slot of a key that serves no one
    /// when the enclave is full (at least `--pow-bits`).
    #[arg(long, value_name = "BITS", default_value_t = AdmissionLimits::default().max_bits, value_parser = clap::value_parser!(u8).range(1..=28))]
    pow_max_bits: u8,
    /// Days an owned key with no app and no pending bunker secret is kept
    /// after its owner's last admin request.
    #[arg(long, value_name = "DAYS", default_value_t = Limits::default().idle_ttl / 86_400, value_parser = clap::value_parser!(u64).range(1..=3650))]
    idle_days: u64,
}

fn at_least_one(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(e.to_string()),
    }
}

fn request_bytes(s: &str) -> Result<usize, String> {
    let n: usize = s
        .parse()
        .map_err(|e: std::num::ParseIntError| e.to_string())?;
    if (1024..=MAX_REQUEST_EVENT).contains(&n) {
        Ok(n)
    } else {
        Err(format!("must be from 1024 to {MAX_REQUEST_EVENT}"))
    }
}

impl LimitArgs {
    fn config(&self) -> SignerConfig {
        SignerConfig {
            limits: Limits {
                max_keys: self.max_keys,
                max_test_keys: self.max_test_keys,
                max_relays_per_key: self.max_relays_per_key,
                max_relays: self.max_relays,
                max_apps_per_key: self.max_apps_per_key,
                test_keys_per_hour: self.test_keys_per_hour,
                test_key_ttl: self.test_key_ttl,
                relay_changes_per_hour: self.relay_changes_per_hour,
                admission: AdmissionLimits {
                    free_keys_per_hour: self.free_keys_per_hour,
                    free_test_keys_per_hour: self.free_test_keys_per_hour,
                    free_relays_per_hour: self.free_relays_per_hour,
                    free_grant_kib_per_hour: self.free_grant_kib_per_hour,
                    pow_bits: self.pow_bits,
                    max_bits: self.pow_max_bits.max(self.pow_bits),
                },
                max_grant_bytes: usize::try_from(self.max_grant_mib << 20).unwrap_or(usize::MAX),
                idle_ttl: self.idle_days.saturating_mul(86_400),
                log: LogLimits {
                    per_key: self.log_per_key,
                    total: self.log_total,
                    floor: self.log_floor,
                },
                ..Limits::default()
            },
            max_request_bytes: self.max_request_bytes,
            ..SignerConfig::default()
        }
    }
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            error!("cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = match cli.command {
        Command::Run(args) => runtime.block_on(run(args)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error!("{e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: RunArgs) -> Result<()> {
    let stop = catch_stop_signals()?;
    tokio::pin!(stop);
    let admin_relay = parse_relay_url(&args.admin_relay)
        .map_err(anyhow::Error::msg)
        .context("--admin-relay")?;
    let perm_relays: Vec<String> = if args.no_perm_relays {
        Vec::new()
    } else if args.perm_relays.is_empty() {
        DEFAULT_PERM_RELAYS
            .iter()
            .map(|r| (*r).to_owned())
            .collect()
    } else {
        args.perm_relays.clone()
    };
    let perm_relays = perm_relays
        .iter()
        .map(|r| parse_relay_url(r))
        .collect::<Result<Vec<_>, _>>()
        .map_err(anyhow::Error::msg)
        .context("--perm-relay")?;
    let attester = make_attester(&args)?;
    info!("attester: {attester:?}");
    let policy = release_policy(&args)?;
    let keys = Keys::generate();
    info!(
        "service key {}",
        keys.public_key().to_bech32().unwrap_or_default()
    );
    let admitted = tokio::select! {
        r = startup::start(
        &attester,
        &keys,
        args.metadata,
        Duration::from_secs(args.parent_wait),
        &policy,
        ) => r.context("refusing to start")?,
        () = &mut stop => {
            info!("stopped during start-up");
            return Ok(());
        }
    };
    info!(
        builder = %npub(&admitted.signatures.build.event().pubkey),
        launcher = %npub(&admitted.signatures.instance.event().pubkey),
        mode = %admitted.mode,
        "the parent's signature events match our attestation"
    );
    let tls = TlsConfig::webpki_roots().map_err(anyhow::Error::msg)?;
    let mut config = args.limits.config();
    config.perm_relays = perm_relays;
    config.custody = args.custody.config(attester.root())?;
    let inbox = Inbox::new(InboxLimits::default());
    let client = relay::client(
        keys.clone(),
        ProxiedTransport::new(args.socks, tls),
        &inbox,
        PoolLimits {
            max_request_bytes: config.max_request_bytes,
            max_relays: config.limits.max_relays + config.perm_relays.len(),
        },
    );

    let announce_config = AnnounceConfig {
        admin_relay: admin_relay.clone(),
        interval: Duration::from_secs(args.announce_interval),
        retry_initial: Duration::from_secs(args.retry_initial),
        retry_max: Duration::from_secs(args.retry_max.max(args.retry_initial)),
        event_file: args.event_file,
        announcement_file: args.announcement_file,
    };
    info!(
        relays = announce::targets(&admitted, &announce_config).len(),
        "announcing every {}s through the parent's proxy at {}", args.announce_interval, args.socks
    );
    let service = serve::Service::new(
        client.clone(),
        inbox,
        keys.clone(),
        admin_relay,
        announce::targets(&admitted, &announce_config),
        config,
    );
    let signer = Arc::clone(&service.signer);
    let (ready, is_ready) = tokio::sync::oneshot::channel();
    let server = tokio::spawn(serve::run(service, ready));
    // Announce only once the admin API can hear the first request.
    tokio::select! {
        _ = is_ready => {}
        () = &mut stop => {
            info!("stopping");
            server.abort();
            client.shutdown().await;
            return Ok(());
        }
    }
    tokio::select! {
        () = announce::run(Arc::clone(&attester), keys, admitted, announce_config, client.clone()) => {}
        () = &mut stop => info!("stopping"),
    }
    server.abort();
    let _ = server.await;
    client.shutdown().await;
    // The last reference: held user keys are wiped here.
    drop(signer);
    Ok(())
}

/// The release policy: the built-in one, or with the dev attester the one
/// in --dev-release-policy.
fn release_policy(args: &RunArgs) -> Result<ReleasePolicy> {
    let policy = match (&args.dev_release_policy, args.attester) {
        (Some(path), AttesterKind::Dev) => {
            let json = std::fs::read(path)
                .with_context(|| format!("--dev-release-policy {}", path.display()))?;
            ReleasePolicy::from_json(&json)
                .with_context(|| format!("--dev-release-policy {}", path.display()))?
        }
        (Some(_), AttesterKind::Nsm) => bail!("--dev-* options need --attester dev"),
        (None, _) => enclave::built_in_release_policy()
            .context("the release policy built into this binary does not parse")?,
    };
    if policy.is_empty() {
        info!("release policy: no maintainers yet, so this code can run only as a dev instance");
    } else {
        info!(
            maintainers = policy.trust.signers().len(),
            threshold = policy.trust.threshold(),
            "release policy"
        );
    }
    Ok(policy)
}

fn make_attester(args: &RunArgs) -> Result<Arc<dyn Attester>> {
    match args.attester {
        AttesterKind::Nsm => {
            if args.dev_instance_id.is_some()
                || args.dev_signing_cert.is_some()
                || args.dev_root_out.is_some()
                || args.dev_pcrs_out.is_some()
                || args.dev_release_policy.is_some()
                || args.dev_root_serial.is_some()
                || args.dev_ca_dir.is_some()
            {
                bail!("--dev-* options need --attester dev");
            }
            Ok(Arc::new(NsmAttester::open()?))
        }
        AttesterKind::Dev => {
            let (Some(instance_id), Some(cert), Some(root_out)) = (
                &args.dev_instance_id,
                &args.dev_signing_cert,
                &args.dev_root_out,
            ) else {
                bail!(
                    "--attester dev needs --dev-instance-id, --dev-signing-cert and --dev-root-out"
                );
            };
            let cert = std::fs::read(cert)
                .with_context(|| format!("--dev-signing-cert {}", cert.display()))?;
            let cert = cert_der_from_der_or_pem(&cert).context("--dev-signing-cert")?;
            let exe = std::env::current_exe().context("cannot find the running binary")?;
            let measurements = DevMeasurements::of_binary(&exe, instance_id.clone(), cert)?;
            let serial = match &args.dev_root_serial {
                None => None,
                Some(hex) => Some(
                    hex::decode(hex.trim())
                        .ok()
                        .filter(|b| !b.is_empty() && b.len() <= 20)
                        .context("--dev-root-serial takes 1 to 20 bytes in hex")?,
                ),
            };
            let attester = match &args.dev_ca_dir {
                Some(dir) => DevAttester::with_ca_dir(
                    &measurements,
                    enclave::unix_now(),
                    dir,
                    serial.as_deref(),
                )?,
                None => DevAttester::with_root_serial(
                    &measurements,
                    enclave::unix_now(),
                    serial.as_deref(),
                )?,
            };
            std::fs::write(root_out, attester.root_der())
                .with_context(|| format!("--dev-root-out {}", root_out.display()))?;
            info!("dev root written to {}", root_out.display());
            if let Some(path) = &args.dev_pcrs_out {
                std::fs::write(path, measurements.measurements().to_json())
                    .with_context(|| format!("--dev-pcrs-out {}", path.display()))?;
                info!("dev measurements written to {}", path.display());
            }
            Ok(Arc::new(attester))
        }
    }
}

/// SIGINT and SIGTERM, caught from the moment this returns, so a stop
/// during start-up is clean too.
#[cfg(unix)]
fn catch_stop_signals() -> Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    Ok(async move {
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {}
        }
    })
}

#[cfg(not(unix))]
fn catch_stop_signals() -> Result<impl std::future::Future<Output = ()>> {
    Ok(async {
        let _ = tokio::signal::ctrl_c().await;
    })
}

//! `enclave`: the trusted side of enclaved. See `enclave --help`.

#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

mod args;

use anyhow::{bail, Context, Result};
use args::{ContinuityArgs, CustodyArgs, LimitArgs};
use clap::{Parser, Subcommand};
use enclave::announce::{self, AnnounceConfig};
use enclave::attester::dev::{DevAttester, DevMeasurements};
use enclave::attester::nsm::NsmAttester;
use enclave::attester::{Attester, AttesterKind};
use enclave::link::ParentAddr;
use enclave::relay::inbox::{Inbox, InboxLimits};
use enclave::relay::{self, tls::TlsConfig, PoolLimits, ProxiedTransport};
use enclave::serve;
use enclave::startup;
use nostr::{Keys, ToBech32};
use tracing::{error, info};
use verifier::event::npub;
use verifier::grant::nsecapp::DEFAULT_PERM_RELAYS;
use verifier::pcr::cert_der_from_der_or_pem;
use verifier::protocol::{METADATA_PORT, SOCKS_PORT};
use verifier::release::ReleasePolicy;
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
    #[command(flatten)]
    continuity: ContinuityArgs,
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
    /// Dev attester: run as a build of this version (semver) instead of the
    /// built-in one: it is announced (`v`), checked against the release
    /// signatures, and measured into PCR0, as a build of that version
    /// would be. Lets one binary stand for two releases in upgrade tests.
    #[arg(long, value_name = "SEMVER", help_heading = "Dev attester")]
    dev_version: Option<String>,
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
    config.custody = args
        .custody
        .config(attester.root(), admitted.signatures.instance.event().pubkey)?;
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
        // Said once the state is ours: whether it was started over is
        // known only then.
        continuity: announce::Announced::default(),
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
    let continuity = args.continuity.config(
        admitted.signatures.instance.event().pubkey,
        &announce::targets(&admitted, &announce_config),
        args.metadata,
    )?;
    if continuity.is_some() {
        signer.set_restoring(true);
    }
    let (ready, is_ready) = tokio::sync::oneshot::channel();
    let server = tokio::spawn(serve::run(service.clone(), ready));
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
    let mut keep_lease: std::pin::Pin<Box<dyn std::future::Future<Output = String> + Send>> =
        Box::pin(std::future::pending());
    let custody_client = continuity
        .as_ref()
        .map(|_| Arc::clone(signer.custody_client()));
    // Announced from the start, restoring or not: custodians that restore
    // themselves find each other only by their instance events, and
    // clients asking meanwhile are told the enclave is restoring.
    // A task of its own: it keeps running while the state is installed
    // and subscriptions are synced (a round left suspended mid-publish
    // would hold the relay pool's lock they wait for), and it is aborted
    // before the relay client shuts down.
    let mut announcing = tokio::spawn(announce::run(
        Arc::clone(&attester),
        keys.clone(),
        admitted.clone(),
        announce_config.clone(),
        client.clone(),
        custody_client,
    ));
    if let Some(config) = &continuity {
        let own = announce::instance_event(
            &attester,
            &keys,
            &admitted,
            &announce_config.admin_relay,
            None,
            enclave::unix_now(),
        )
        .await
        .map_err(anyhow::Error::msg)
        .context("cannot make the instance event custodians check")?;
        signer
            .custody_client()
            .set_instance(nostr::JsonUtil::as_json(&own.instance));
        let root = attester.root();
        let fetcher = relay::fetch_client(Some(ProxiedTransport::new(
            args.socks,
            TlsConfig::webpki_roots().map_err(anyhow::Error::msg)?,
        )));
        let running = tokio::select! {
            r = enclave::continuity::startup::start(&service, &fetcher, config, &root, &policy) => {
                r.map_err(anyhow::Error::msg).context("cannot take the state over")?
            }
            _ = &mut announcing => bail!("announcing stopped while restoring"),
            () = &mut stop => {
                info!("stopped while restoring");
                announcing.abort();
                let _ = announcing.await;
                server.abort();
                client.shutdown().await;
                return Ok(());
            }
        };
        service.set_persist(running.persist);
        signer.set_restoring(false);
        announce_config
            .continuity
            .update(Some(verifier::event::continuity::Continuity {
                state: config.identity.name().to_owned(),
                custodians: running.set.clone(),
                reset_at: signer.store().reset_at(),
            }));
        serve::sync(&service).await;
        keep_lease = running.keep;
    }
    let lost = tokio::select! {
        _ = &mut announcing => None,
        why = &mut keep_lease => Some(why),
        () = &mut stop => { info!("stopping"); None }
    };
    announcing.abort();
    let _ = announcing.await;
    drop(keep_lease);
    server.abort();
    let _ = server.await;
    client.shutdown().await;
    // The last reference: held user keys are wiped here.
    drop(service);
    drop(signer);
    match lost {
        // Another enclave may take the state over now: this one stops, so
        // that two never serve it (its supervisor starts it again, and it
        // takes the state back if it can).
        Some(why) => bail!("the state's lease is lost ({why}); stopping"),
        None => Ok(()),
    }
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
                || args.dev_version.is_some()
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
            if let Some(v) = &args.dev_version {
                verifier::release::parse_version(v).context("--dev-version")?;
                if !enclave::set_dev_version(v) {
                    bail!("--dev-version is set already");
                }
                info!(version = %v, "running as a dev build of another version");
            }
            let measurements = DevMeasurements::of_build(
                &exe,
                args.dev_version.as_deref(),
                instance_id.clone(),
                cert,
            )?;
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

//! `dev-stack`: the whole of enclaved on one machine. See `dev-stack --help`.

#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Parser;
use parent::dev_stack::cluster::Cluster;
use parent::dev_stack::identity;
use parent::dev_stack::relay::DevRelay;
use parent::dev_stack::{Stack, StackConfig};
use tracing::info;

/// Runs enclaved locally: an embedded relay on 127.0.0.1, `parent run` on
/// TCP, and `enclave run --attester dev` as separate processes, with dev
/// build and instance signature events from throw-away keys, and release
/// signatures (kind 63794) by throw-away maintainers (2 of 3 sign) under a
/// dev release policy. Prints where
/// the instance event, the dev root and the relay are, then runs until
/// Ctrl-C. Needs the `parent` and `enclave` binaries next to this one
/// (`cargo build --release --workspace`).
#[derive(Debug, Parser)]
#[command(name = "dev-stack", version, max_term_width = 100)]
struct Cli {
    /// Where the signature events, dev root, instance event and logs go.
    #[arg(long, value_name = "DIR", default_value = "build/dev")]
    dir: PathBuf,
    /// Port of the embedded relay on 127.0.0.1 (0: the port of the last
    /// run in DIR if it is free, else any free port).
    #[arg(long, value_name = "PORT", default_value_t = 0)]
    relay_port: u16,
    /// Start over: forget the builder, launcher and maintainer keys, the
    /// dev CA and the relay port kept in DIR/identity from earlier runs
    /// (kept so that a saved pcrs.json, instance event or dev root stays
    /// valid across restarts).
    #[arg(long)]
    fresh: bool,
    /// Seconds between announcements.
    #[arg(long, value_name = "SECS", default_value_t = 3600)]
    announce_interval: u64,
    /// Where the `parent` and `enclave` binaries are (default: next to this one).
    #[arg(long, value_name = "DIR")]
    bin_dir: Option<PathBuf>,
    /// Do not copy the parent's and enclave's logs to stderr (they are
    /// always in DIR/parent.log and DIR/enclave.log).
    #[arg(long)]
    quiet: bool,
    /// Run a prod instance (prod build, instance and release signatures):
    /// the enclave then starts only as a release that enough of the dev
    /// maintainers signed, as a production one must.
    #[arg(long)]
    prod: bool,
    /// Run N instances instead of one (at least 3): N signers, each with
    /// its own launcher, parent and enclave in DIR/1 … DIR/N, keeping its
    /// keys with N custodians (DIR/custodian-1 … N, launchers of their own)
    /// under key continuity. An enclave that dies is started again; a
    /// signer then takes its keys back. DIR/N/enclave.pid and
    /// DIR/N/instance-event.json are kept current for scripts. Stopping the
    /// stack loses the states: the next run seals new ones.
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=9))]
    instances: u16,
}

fn main() -> ExitCode {
    parent::runtime::init_logging();
    parent::runtime::run_to_exit(run(Cli::parse()))
}

async fn run(cli: Cli) -> Result<()> {
    let mut shutdown = parent::runtime::Shutdown::install()?;
    let bin_dir = match cli.bin_dir.clone() {
        Some(d) => d,
        None => std::env::current_exe()?
            .parent()
            .context("cannot find this binary's directory")?
            .to_owned(),
    };
    if cli.fresh {
        let kept = identity::dir_of(&cli.dir);
        if kept.exists() {
            std::fs::remove_dir_all(&kept)
                .with_context(|| format!("cannot delete {}", kept.display()))?;
            info!("--fresh: deleted {}", kept.display());
        }
    }
    let relay = start_relay(&cli)
        .await
        .context("cannot start the embedded relay")?;
    let relay_url = relay.url();
    let relay_addr = relay.addr();
    info!("embedded relay at {relay_url}");
    let config = StackConfig {
        dir: cli.dir.clone(),
        bin_dir,
        relay_url: relay_url.clone(),
        relay_addr,
        announce_interval: cli.announce_interval,
        echo_logs: !cli.quiet,
        enclave_args: Vec::new(),
        parent_args: Vec::new(),
        prod: cli.prod,
        release: parent::dev_stack::ReleaseSetup::default(),
        member: None,
    };
    if cli.instances > 1 {
        let outcome = run_cluster(&cli, &config, &mut shutdown).await;
        relay.stop();
        return outcome;
    }
    let mut stack = Stack::start(&config).await?;
    let event = tokio::select! {
        r = stack.wait_for_event(Duration::from_secs(120)) => r,
        r = shutdown.wait() => { r?; Err(anyhow::anyhow!("interrupted before the first announcement")) }
    };
    let event = match event {
        Ok(e) => e,
        Err(e) => {
            let _ = stack.stop().await;
            relay.stop();
            return Err(e);
        }
    };
    print_running(&cli, &stack, &event, &relay_url);
    let outcome = tokio::select! {
        r = shutdown.wait() => r.map(|()| info!("stopping")),
        r = watch(&mut stack) => r,
    };
    let stopped = stack.stop().await;
    relay.stop();
    outcome?;
    stopped
}

/// The embedded relay: on --relay-port, else on the last run's port if it
/// is free, else on any; the port is kept for the next run.
async fn start_relay(cli: &Cli) -> Result<DevRelay> {
    let port_file = identity::relay_port_file(&cli.dir);
    let kept: Option<u16> = std::fs::read_to_string(&port_file)
        .ok()
        .and_then(|t| t.trim().parse().ok());
    let at = |port: u16| SocketAddr::from((std::net::Ipv4Addr::LOCALHOST, port));
    let relay = match (cli.relay_port, kept) {
        (0, Some(port)) => {
            match DevRelay::start(parent::dev_stack::relay_builder(), at(port)).await {
                Ok(relay) => relay,
                Err(e) => {
                    info!("the last run's relay port {port} is not free ({e}); taking another");
                    DevRelay::start(parent::dev_stack::relay_builder(), at(0)).await?
                }
            }
        }
        (port, _) => DevRelay::start(parent::dev_stack::relay_builder(), at(port)).await?,
    };
    if let Some(dir) = port_file.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("{}", dir.display()))?;
    }
    std::fs::write(&port_file, relay.addr().port().to_string())
        .with_context(|| format!("{}", port_file.display()))?;
    Ok(relay)
}

/// Says where everything is and how to use it.
fn print_running(cli: &Cli, stack: &Stack, event: &nostr::Event, relay_url: &str) {
    let dir = cli.dir.display();
    let p = &stack.paths;
    let (event_file, root, pcrs) = (p.event.display(), p.dev_root.display(), p.pcrs.display());
    let signers: String = stack
        .maintainers
        .npubs()
        .iter()
        .map(|n| format!(" --release-signer {n}"))
        .collect();
    let threshold = stack.maintainers.policy.trust.threshold();
    // A dev stack's maintainers sign dev releases, which count for a dev
    // instance only when the client says so.
    let signers = if cli.prod {
        signers
    } else {
        format!("{signers} --allow-dev-release")
    };
    println!(
        "\nenclaved dev stack is running ({} instance, service key {}).\n\
         \x20 relay           {relay_url}  (announce and admin relay)\n\
         \x20 instance event  {event_file}  (kind 63793, also on the relay, every {}s)\n\
         \x20 announcement    {}  (kind 13793, NECS)\n\
         \x20 dev root        {root}\n\
         \x20 measurements    {pcrs}\n\
         \x20 release policy  {}  (signatures in {})\n\
         \x20 logs            {dir}/parent.log, {dir}/enclave.log\n\
         Verify it, pinning the measurements or the release by {threshold} of the dev maintainers:\n\
         \x20 target/release/verifier check {event_file} --root {root} --pcrs {pcrs}\n\
         \x20 target/release/verifier check {event_file} --root {root}{signers} --threshold {threshold}\n\
         Hand it a key (nsec or hex in KEYFILE) and get a bunker URL for a NIP-46 app:\n\
         \x20 target/release/verifier key import --instance {event_file} --root {root} --pcrs {pcrs} --key-file KEYFILE\n\
         \x20 target/release/verifier key bunker-url --instance {event_file} --root {root} --pcrs {pcrs} --key-file KEYFILE\n\
         \x20 (add --perms sign_event:1,… --ttl 8h to limit what the app may do; see the README)\n\
         Stop with Ctrl-C.",
        if cli.prod { "prod" } else { "dev" },
        verifier::event::npub(&event.pubkey),
        cli.announce_interval,
        p.announcement.display(),
        p.release_policy.display(),
        p.releases.display(),
    );
}

/// Returns an error as soon as the parent or the enclave exits by itself.
async fn watch(stack: &mut Stack) -> Result<()> {
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        if let Some(status) = stack.enclave.exited()? {
            bail!(
                "the enclave exited ({status}); see {}",
                stack.enclave.log().display()
            );
        }
        if let Some(status) = stack.parent.exited()? {
            bail!(
                "the parent exited ({status}); see {}",
                stack.parent.log().display()
            );
        }
    }
}

/// `--instances N`: N stacks on the one relay, each enclave restarted when
/// it dies, until Ctrl-C.
async fn run_cluster(
    cli: &Cli,
    config: &StackConfig,
    shutdown: &mut parent::runtime::Shutdown,
) -> Result<()> {
    let mut cluster = Cluster::start(config, usize::from(cli.instances)).await?;
    let events = tokio::select! {
        r = cluster.wait_for_events(Duration::from_secs(120)) => r,
        r = shutdown.wait() => { r?; Err(anyhow::anyhow!("interrupted before the first announcements")) }
    };
    let events = match events {
        Ok(e) => e,
        Err(e) => {
            let _ = cluster.stop().await;
            return Err(e);
        }
    };
    let dir = cli.dir.display();
    println!(
        "\nenclaved dev cluster is running on the relay {}: {} signers, each keeping its keys with the {} custodians.",
        config.relay_url, cli.instances, cli.instances
    );
    for (i, (event, launcher)) in events.iter().zip(&cluster.launchers).enumerate() {
        let n = i + 1;
        println!(
            "\x20 signer {n}     {dir}/{n}/  launcher {}  service key {}",
            verifier::event::npub(launcher),
            verifier::event::npub(&event.pubkey)
        );
    }
    for (i, launcher) in cluster.custodian_launchers.iter().enumerate() {
        let n = i + 1;
        println!(
            "\x20 custodian {n}  {dir}/custodian-{n}/  launcher {}",
            verifier::event::npub(launcher)
        );
    }
    println!(
        "Each folder holds enclave.pid, instance-event.json (current), dev-root.der, pcrs.json and the logs.\n\
         Use a signer as a single stack's (see dev-stack without --instances), for example:\n\
         \x20 target/release/verifier key import --instance {dir}/1/instance-event.json --root {dir}/1/dev-root.der --pcrs {dir}/1/pcrs.json --key-file KEYFILE\n\
         Kill a signer (kill -9 $(cat {dir}/1/enclave.pid)): it is started again and takes its keys back\n\
         once its lease ran out (about 40 s). A custodian killed comes back empty.\n\
         Stop with Ctrl-C."
    );
    let outcome = loop {
        tokio::select! {
            r = shutdown.wait() => break r.map(|()| info!("stopping")),
            () = tokio::time::sleep(Duration::from_millis(500)) => {
                if let Err(e) = cluster.supervise() {
                    break Err(e);
                }
            }
        }
    };
    let stopped = cluster.stop().await;
    outcome?;
    stopped
}

//! `parent`: the untrusted host process of enclaved. See `parent --help`.

#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};

use nostr::{FromBech32, PublicKey, RelayUrl};
use parent::egress::{Allowed, EgressPolicy};
use parent::metadata::{MetadataConfig, MetadataServer};
use parent::outbox::{self, OutboxConfig};
use parent::sign::{self, RemoteSigner};
use parent::signature_files::SignatureFiles;
use parent::socks::{SocksConfig, SocksProxy};
use parent::state_store::{StateStore, StoreLimits};
use parent::transport::{ListenAddr, Listener};
use tracing::info;
use verifier::attestation::TrustedRoot;
use verifier::event::{npub, Mode};
use verifier::pcr::{cert_der_from_der_or_pem, Measurements};
use verifier::protocol::MAX_ANNOUNCE_RELAYS;
use verifier::rpc::relays::parse_relay_url;
use verifier::signing_cert::SigningCert;

/// Relays that index relay lists (NIP-65), searched for the outboxes.
const DISCOVERY_RELAYS: [&str; 3] = [
    "wss://purplepag.es",
    "wss://relay.nos.social",
    "wss://relay.damus.io",
];
/// Announce relays when no outbox is found.
const FALLBACK_RELAYS: [&str; 3] = [
    "wss://relay.damus.io",
    "wss://nos.lol",
    "wss://relay.primal.net",
];

/// How long a stopping parent waits for proxied connections to end.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);

/// The untrusted host side of enclaved: serves the enclave the builder's and
/// launcher's signature events (after checking them against the enclave's
/// attestation) and the relays to announce on, and proxies the enclave's
/// connections to relays (SOCKS5, public addresses only).
#[derive(Debug, Parser)]
#[command(name = "parent", version, max_term_width = 100)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the SOCKS5 proxy and the metadata server until Ctrl-C or SIGTERM.
    Run(RunArgs),
    /// Make the builder's one-time image signing key and self-signed
    /// certificate (P-384, `O=Nostr`, `OU=<builder npub>`) for `nitro-cli
    /// build-enclave --signing-certificate … --private-key …`, and print the
    /// PCR8 they give. Delete the key after the build.
    SigningCert(SigningCertArgs),
    /// Have the builder sign the build signature event (kind 63795) for an
    /// image signing certificate, through NIP-46, and write it as JSON.
    SignBuild(SignBuildArgs),
    /// Have the launcher sign the instance signature event (kind 63796) for
    /// this EC2 instance, through NIP-46, and write it as JSON. An existing
    /// file that is valid for this instance (and --launcher) is kept.
    SignInstance(SignInstanceArgs),
    /// As a maintainer, sign a release (kind 63794) through NIP-46: that an
    /// image with the PCR0, PCR1 and PCR2 of a build's pcrs.json is VERSION
    /// of the repository, for prod or dev. Written to
    /// OUT/<version>/<maintainer npub>.json; each maintainer signs the same
    /// release on their own, and `parent run --release-dir` serves them.
    SignRelease(SignReleaseArgs),
    /// Print this EC2 instance's id, from the instance metadata service (IMDSv2).
    InstanceId(ImdsArgs),
}

#[derive(Debug, clap::Args)]
struct SignReleaseArgs {
    /// nitro-cli's pcrs.json of the release build (PCR0, PCR1 and PCR2).
    #[arg(long, value_name = "FILE")]
    pcrs: PathBuf,
    /// The release's version (semver), which must be the version the code
    /// says it is: an enclave refuses a release of another version.
    #[arg(long = "release-version", value_name = "SEMVER")]
    version: String,
    /// `prod` or `dev`. A prod instance needs prod release signatures.
    #[arg(long)]
    mode: Mode,
    /// The source repository (`r` tag).
    #[arg(long, value_name = "URL", default_value = env!("CARGO_PKG_REPOSITORY"))]
    repo: String,
    #[command(flatten)]
    signer: SignerArgs,
    /// The directory the signature goes under, in <version>/<npub>.json.
    #[arg(long, value_name = "DIR", default_value = "release")]
    out: PathBuf,
    /// Seconds to wait for the remote signer.
    #[arg(long, value_name = "SECS", default_value_t = 120)]
    timeout: u64,
}

/// The remote signer: a bunker URL, or relays for a nostrconnect:// URI.
#[derive(Debug, clap::Args)]
#[group(required = true, multiple = false)]
struct SignerArgs {
    /// The signer's bunker URL (bunker://…).
    #[arg(long, value_name = "URL")]
    bunker: Option<String>,
    /// Instead, print a nostrconnect:// URI on this relay for your signer
    /// app to approve. Repeat for several.
    #[arg(long = "nostrconnect-relay", value_name = "URL")]
    nostrconnect_relays: Vec<String>,
}

impl SignerArgs {
    fn signer(&self) -> Result<RemoteSigner> {
        match &self.bunker {
            Some(url) => Ok(RemoteSigner::Bunker(url.clone())),
            None => Ok(RemoteSigner::NostrConnect(
                self.nostrconnect_relays
                    .iter()
                    .map(|u| {
                        parse_relay_url(u).map_err(|e| anyhow::anyhow!("--nostrconnect-relay: {e}"))
                    })
                    .collect::<Result<_>>()?,
            )),
        }
    }
}

#[derive(Debug, clap::Args)]
struct SignBuildArgs {
    /// The image signing certificate (PEM or DER) the image was built with.
    #[arg(long, value_name = "FILE")]
    cert: PathBuf,
    /// nitro-cli's pcrs.json of that build: its PCR8 must match the certificate.
    #[arg(long, value_name = "FILE")]
    pcrs: Option<PathBuf>,
    /// `prod` or `dev`.
    #[arg(long)]
    mode: Mode,
    #[command(flatten)]
    signer: SignerArgs,
    /// Where to write the event.
    #[arg(long, value_name = "FILE", default_value = "build/build.json")]
    out: PathBuf,
    /// Seconds to wait for the remote signer.
    #[arg(long, value_name = "SECS", default_value_t = 120)]
    timeout: u64,
}

#[derive(Debug, clap::Args)]
struct SignInstanceArgs {
    /// The EC2 instance id; default: asked from the instance metadata service.
    #[arg(long, value_name = "ID")]
    instance_id: Option<String>,
    #[command(flatten)]
    imds: ImdsArgs,
    /// `prod` or `dev`.
    #[arg(long)]
    mode: Mode,
    /// The launcher's npub: the remote signer must be this key.
    #[arg(long, value_name = "NPUB")]
    launcher: Option<String>,
    #[command(flatten)]
    signer: SignerArgs,
    /// Where to write the event.
    #[arg(long, value_name = "FILE", default_value = "instance/instance.json")]
    out: PathBuf,
    /// Seconds to wait for the remote signer.
    #[arg(long, value_name = "SECS", default_value_t = 120)]
    timeout: u64,
}

#[derive(Debug, clap::Args)]
struct ImdsArgs {
    /// Where the instance metadata service answers.
    #[arg(long, value_name = "HOST:PORT", default_value = parent::imds::IMDS_ADDR)]
    imds: String,
}

#[derive(Debug, clap::Args)]
struct SigningCertArgs {
    /// The builder's npub, named in the certificate.
    #[arg(long, value_name = "NPUB")]
    builder: String,
    /// Where to write the certificate (PEM); must not exist.
    #[arg(long, value_name = "FILE")]
    cert_out: PathBuf,
    /// Where to write the private key (PKCS#8 PEM, mode 0600); must not exist.
    #[arg(long, value_name = "FILE")]
    key_out: PathBuf,
    /// Days the certificate is valid.
    #[arg(long, value_name = "DAYS", default_value_t = parent::signing::DEFAULT_DAYS)]
    days: u32,
}

#[derive(Debug, clap::Args)]
struct RunArgs {
    /// The builder's kind 63795 build signature event.
    #[arg(long, value_name = "FILE", default_value = "instance/build.json")]
    build: PathBuf,
    /// The launcher's kind 63796 instance signature event.
    #[arg(long, value_name = "FILE", default_value = "instance/instance.json")]
    instance: PathBuf,
    /// A directory of maintainers' release signatures (kind 63794, every
    /// *.json in it, as `parent sign-release` writes them under
    /// release/<version>/). Those of the enclave's measurements are handed
    /// to it; a prod enclave refuses to start without enough of them.
    #[arg(long, value_name = "DIR")]
    release_dir: Option<PathBuf>,
    /// Keep the enclave's sealed state here (made if absent, mode 0700):
    /// ciphertext only, which the parent cannot read. Each chunk is written
    /// whole or not at all; the newest few snapshots of each state are kept.
    /// Without it, the enclave's state requests are refused.
    #[arg(long, value_name = "DIR")]
    state_dir: Option<PathBuf>,
    /// Trust this root (DER or PEM) for the enclave's attestation instead of
    /// AWS Nitro Enclaves Root-G1: the dev root of a local stack.
    #[arg(long, value_name = "FILE")]
    root: Option<PathBuf>,
    /// A relay the enclave announces its instance event on (ws:// or wss://).
    /// Repeat for several. Without it, the builder's and launcher's write
    /// relays (their kind 10002 relay lists, or kind 3) are looked up on the
    /// discovery relays.
    #[arg(long = "announce-relay", value_name = "URL")]
    announce_relays: Vec<String>,
    /// A relay to look up relay lists on. Repeat for several.
    #[arg(long = "discovery-relay", value_name = "URL", default_values_t = DISCOVERY_RELAYS.map(String::from))]
    discovery_relays: Vec<String>,
    /// Where to announce when no write relays are found. Repeat for several.
    #[arg(long = "fallback-relay", value_name = "URL", default_values_t = FALLBACK_RELAYS.map(String::from))]
    fallback_relays: Vec<String>,
    /// Seconds to wait for the discovery relays.
    #[arg(long, value_name = "SECS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=120))]
    discovery_timeout: u64,
    /// Tell the enclave this is a production instance.
    #[arg(long)]
    prod: bool,
    /// Where the metadata server listens: vsock:PORT (production) or
    /// tcp:HOST:PORT (development).
    #[arg(long, value_name = "ADDR", default_value = "vsock:2080")]
    metadata: ListenAddr,
    /// Most metadata connections served at once.
    #[arg(long, value_name = "N", default_value_t = 16)]
    max_connections: usize,
    /// Where the SOCKS5 proxy listens: vsock:PORT (production) or
    /// tcp:HOST:PORT (development).
    #[arg(long, value_name = "ADDR", default_value = "vsock:1080")]
    socks: ListenAddr,
    /// Let the proxy reach a destination it refuses otherwise: an address
    /// (IP, any port) or IP:PORT, e.g. a relay on 127.0.0.1 in development;
    /// or `*:PORT`, a port other than 443 and 80 on public addresses.
    /// Without it the proxy connects only to public addresses on ports 443
    /// and 80, and refuses loopback, private, link-local (the instance
    /// metadata service), multicast, reserved and unspecified addresses,
    /// IPv6 addresses embedding one (mapped, NAT64, 6to4) and tunnels
    /// (Teredo). Repeat for several.
    #[arg(long = "allow-egress", value_name = "IP[:PORT]|*:PORT")]
    allow_egress: Vec<Allowed>,
    /// Most proxied connections at once. Above the enclave's relay limit
    /// (256 for keys, 33 pinned) with room for reconnects, so relays a
    /// stranger named can never take the admin or announce relays' place.
    #[arg(long, value_name = "N", default_value_t = 512)]
    max_socks_connections: usize,
}

fn main() -> ExitCode {
    parent::runtime::init_logging();
    let cli = Cli::parse();
    match cli.command {
        Command::Run(args) => parent::runtime::run_to_exit(run(args)),
        Command::SigningCert(args) => parent::runtime::run_to_exit(signing_cert(args)),
        Command::SignBuild(args) => parent::runtime::run_to_exit(sign_build(args)),
        Command::SignInstance(args) => parent::runtime::run_to_exit(sign_instance(args)),
        Command::SignRelease(args) => parent::runtime::run_to_exit(sign_release(args)),
        Command::InstanceId(args) => parent::runtime::run_to_exit(async move {
            println!("{}", parent::imds::instance_id(&args.imds).await?);
            Ok(())
        }),
    }
}

async fn signing_cert(args: SigningCertArgs) -> Result<()> {
    let made = parent::signing::write_signing_cert(
        &args.builder,
        args.days,
        parent::unix_now(),
        &args.cert_out,
        &args.key_out,
    )?;
    let pcr8 = verifier::pcr::pcr8_from_cert_der(&made.cert_der);
    info!(
        "wrote {} and {}",
        args.cert_out.display(),
        args.key_out.display()
    );
    println!("{pcr8}");
    Ok(())
}

async fn sign_build(args: SignBuildArgs) -> Result<()> {
    let bytes =
        std::fs::read(&args.cert).with_context(|| format!("--cert {}", args.cert.display()))?;
    let cert = SigningCert::from_der(&cert_der_from_der_or_pem(&bytes)?)?;
    let expected = match &args.pcrs {
        Some(path) => {
            let bytes =
                std::fs::read(path).with_context(|| format!("--pcrs {}", path.display()))?;
            let pcrs = Measurements::from_json(&bytes)
                .with_context(|| format!("--pcrs {}", path.display()))?;
            Some(
                *pcrs
                    .get(8)
                    .context("pcrs.json has no PCR8: was the image signed?")?,
            )
        }
        None => None,
    };
    let signer = sign::connect(&args.signer.signer()?, Duration::from_secs(args.timeout)).await?;
    let event = sign::sign_build(&signer, &cert, args.mode, expected.as_ref()).await;
    signer.shutdown().await;
    let event = event?;
    sign::write_event(&args.out, &event)?;
    info!("build signature written to {}", args.out.display());
    Ok(())
}

async fn sign_release(args: SignReleaseArgs) -> Result<()> {
    let version = verifier::release::parse_version(&args.version).context("--release-version")?;
    let bytes =
        std::fs::read(&args.pcrs).with_context(|| format!("--pcrs {}", args.pcrs.display()))?;
    let measurements = Measurements::from_json(&bytes)
        .with_context(|| format!("--pcrs {}", args.pcrs.display()))?;
    let pcr = |i: u8| {
        measurements
            .get(i)
            .copied()
            .with_context(|| format!("--pcrs {} has no PCR{i}", args.pcrs.display()))
    };
    let pcrs = [pcr(0)?, pcr(1)?, pcr(2)?];
    let signer = sign::connect(&args.signer.signer()?, Duration::from_secs(args.timeout)).await?;
    let event = sign::sign_release(&signer, &args.repo, &version, args.mode, &pcrs).await;
    signer.shutdown().await;
    let event = event?;
    let out = args
        .out
        .join(version.to_string())
        .join(format!("{}.json", npub(&event.pubkey)));
    sign::write_event(&out, &event)?;
    info!("release signature written to {}", out.display());
    println!("{}", out.display());
    Ok(())
}

async fn sign_instance(args: SignInstanceArgs) -> Result<()> {
    let launcher = args
        .launcher
        .as_deref()
        .map(|l| {
            PublicKey::from_bech32(l)
                .or_else(|_| PublicKey::from_hex(l))
                .with_context(|| format!("--launcher {l:?}"))
        })
        .transpose()?;
    let instance_id = match args.instance_id {
        Some(id) if parent::imds::is_instance_id(&id) => id,
        Some(id) => bail!("--instance-id {id:?} is not an EC2 instance id"),
        None => parent::imds::instance_id(&args.imds.imds).await?,
    };
    if sign::reusable_instance(&args.out, &instance_id, args.mode, launcher.as_ref()).is_some() {
        info!(
            "{} is already signed for {instance_id}; keeping it",
            args.out.display()
        );
        return Ok(());
    }
    let signer = sign::connect(&args.signer.signer()?, Duration::from_secs(args.timeout)).await?;
    let event = sign::sign_instance(&signer, &instance_id, args.mode, launcher.as_ref()).await;
    signer.shutdown().await;
    let event = event?;
    sign::write_event(&args.out, &event)?;
    info!(
        "instance signature for {instance_id} written to {}",
        args.out.display()
    );
    Ok(())
}

async fn run(args: RunArgs) -> Result<()> {
    let mut shutdown = parent::runtime::Shutdown::install()?;
    let relays = |flag: &str, urls: &[String]| -> Result<Vec<RelayUrl>> {
        urls.iter()
            .map(|u| parse_relay_url(u).map_err(|e| anyhow::anyhow!("{flag}: {e}")))
            .collect()
    };
    let announce = relays("--announce-relay", &args.announce_relays)?;
    let outbox = OutboxConfig {
        discovery: relays("--discovery-relay", &args.discovery_relays)?,
        fallback: relays("--fallback-relay", &args.fallback_relays)?,
        timeout: Duration::from_secs(args.discovery_timeout),
    };
    let files = SignatureFiles {
        build: args.build,
        instance: args.instance,
        releases: args.release_dir,
    };
    // Fail now, not when the enclave asks, if a file is missing or invalid.
    let loaded = files.load().map_err(anyhow::Error::msg)?;
    for release in &loaded.releases {
        info!(
            maintainer = %npub(&release.event().pubkey),
            version = %release.version(),
            mode = %release.mode(),
            "release signature"
        );
    }
    let announce = if announce.is_empty() {
        let authors = [loaded.build.pubkey, loaded.instance.pubkey];
        outbox::announce_relays(&outbox, &authors).await
    } else {
        announce
    };
    if announce.len() > MAX_ANNOUNCE_RELAYS {
        bail!("at most {MAX_ANNOUNCE_RELAYS} announce relays");
    }
    info!(
        "the enclave will announce on {}",
        announce
            .iter()
            .map(RelayUrl::as_str)
            .collect::<Vec<_>>()
            .join(", ")
    );
    let root = match &args.root {
        None => TrustedRoot::aws_nitro_g1(),
        Some(path) => {
            let bytes =
                std::fs::read(path).with_context(|| format!("--root {}", path.display()))?;
            TrustedRoot::from_der_or_pem(&bytes)
                .with_context(|| format!("--root {}", path.display()))?
        }
    };
    if !root.is_aws() {
        info!("trusting the dev root {} instead of AWS", root.sha256_hex());
    }
    let socks_listener = Listener::bind(&args.socks)
        .await
        .with_context(|| format!("cannot listen on {}", args.socks))?;
    info!("SOCKS5 proxy listening on {}", socks_listener.local_addr()?);
    for allowed in &args.allow_egress {
        info!("egress allowed to {allowed}");
    }
    let proxy = SocksProxy::new(SocksConfig {
        policy: EgressPolicy::new(args.allow_egress),
        max_connections: args.max_socks_connections,
    });
    let listener = Listener::bind(&args.metadata)
        .await
        .with_context(|| format!("cannot listen on {}", args.metadata))?;
    info!("metadata server listening on {}", listener.local_addr()?);
    let state = match &args.state_dir {
        None => None,
        Some(dir) => {
            let store = StateStore::open(dir, StoreLimits::default())
                .with_context(|| format!("--state-dir {}", dir.display()))?;
            info!("keeping the enclave's sealed state in {}", dir.display());
            Some(Arc::new(store))
        }
    };
    let server = MetadataServer::new(MetadataConfig {
        files,
        root,
        announce_relays: announce
            .iter()
            .map(|u| u.as_str_without_trailing_slash().to_owned())
            .collect(),
        prod: args.prod,
        max_connections: args.max_connections,
        state,
    });
    let connections = proxy.connections().clone();
    tokio::select! {
        r = server.run(listener) => r.context("metadata server stopped")?,
        r = proxy.run(socks_listener) => r.context("SOCKS5 proxy stopped")?,
        r = shutdown.wait() => { r?; info!("stopping"); }
    }
    // Let the enclave close its relay connections itself, briefly.
    let open = connections.drain(SHUTDOWN_GRACE).await;
    if open > 0 {
        info!("cutting {open} proxied connection(s) still open");
    }
    Ok(())
}

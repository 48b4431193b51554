//! Command-line interface of `verifier`. Scripts depend on these exact
//! names and exit codes: 0 valid, 1 invalid, 2 unusable arguments or
//! unreadable file.

use std::path::PathBuf;
use std::str::FromStr;

use clap::{Args, Parser, Subcommand};

/// Verify enclaved instances (kind 63793 events) and AWS Nitro Enclave
/// attestation documents, and compute the PCRs that tie an enclave to its
/// builder (PCR8) and its EC2 instance (PCR4).
///
/// Exit status: 0 valid, 1 invalid, 2 unusable arguments or unreadable file.
#[derive(Debug, Parser)]
#[command(name = "verifier", version, max_term_width = 100)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Check an instance event (kind 63793, or a NECS 13793 announcement
    /// with its tee_root) before trusting the enclave it announces: its
    /// signature, its AWS attestation and certificate chain, the builder's
    /// and launcher's signature events, its PCR tags and, with
    /// --release-signer, the maintainers' release signatures.
    ///
    /// Prints every check; on failure, the first failing check in plain words.
    Check(CheckArgs),
    /// Verify a bare attestation document (raw CBOR, base64 or hex; detected)
    /// and print its fields: module_id, time, non-zero PCRs, public_key,
    /// user_data, nonce, and the certificates with their validity.
    Attestation(AttestationArgs),
    /// Find enclaved instances on relays: fetch recent instance events
    /// (kinds 63793 and 13793), verify each, and print the newest valid one per service
    /// key (instance, builder, launcher, PCRs, admin relay, expiry) and every
    /// invalid one with the reason.
    ///
    /// Exit status: 0 if a valid instance was found, 1 if none, 2 if no relay
    /// could be read.
    Discover(DiscoverArgs),
    /// Compute PCR values operators need.
    #[command(subcommand)]
    Pcr(PcrCommand),
    /// Hand your key to an enclave, or manage it there, through its admin
    /// API (kind 24135). The instance is verified first (as `check` does)
    /// and its code must be the release you pin: PCR0, PCR1 and PCR2 from
    /// --pcrs, or released by --threshold of the --release-signer
    /// maintainers (or, without either, what is built into this verifier);
    /// nothing is sent to one that fails. Your key is read from
    /// --key-file (a file, or `-` for standard input), never from the
    /// command line.
    ///
    /// Exit status: 0 done (for `status`: the key is held), 1 refused (by
    /// the verifier or the enclave; for `status`: not held), 2 unusable
    /// arguments, unreadable files or no reply in time.
    #[command(subcommand)]
    Key(Box<KeyAction>),
}

/// What to do with your key.
#[derive(Debug, Subcommand)]
pub(crate) enum KeyAction {
    /// Import your key; apps then reach it with NIP-46 on the signer relays.
    /// If the enclave already holds it, its relays are updated and the
    /// apps you allowed are kept (the reply says how many) unless you pass
    /// --drop-apps.
    Import {
        #[command(flatten)]
        common: KeyCommon,
        /// A relay where apps send NIP-46 requests for your key. Repeat for
        /// several; default: the instance's admin relay.
        #[arg(long = "signer-relay", value_name = "URL")]
        signer_relays: Vec<String>,
        /// If the key is already held: revoke every app and pending bunker
        /// secret on it.
        #[arg(long)]
        drop_apps: bool,
    },
    /// Import your key and allow one app (its client pubkey): with
    /// --perms, only what they name, under the conditions given (by
    /// default 5 per 10 s, 10 per minute and 100 per hour, and created_at
    /// within ±10 minutes); or, with --full-access, everything.
    #[command(group(clap::ArgGroup::new("access").required(true).args(["perms", "full_access"])))]
    Connect {
        #[command(flatten)]
        common: KeyCommon,
        /// The app's client public key (npub or hex). For a nostrconnect://
        /// URI, use `key nostrconnect`.
        #[arg(long, value_name = "NPUB")]
        app: String,
        /// As for `import`.
        #[arg(long = "signer-relay", value_name = "URL")]
        signer_relays: Vec<String>,
        #[command(flatten)]
        grant: GrantArgs,
        /// Allow the app every method and kind (the original's behaviour).
        #[arg(long)]
        full_access: bool,
    },
    /// Answer the nostrconnect:// URI an app shows (as a QR code or text):
    /// the app gets the grant (--perms and conditions; without --perms, what
    /// the URI asks for, if it names anything), your key also listens on
    /// the URI's relays, and the
    /// enclave sends the app the connect response it waits for. What the app
    /// asks for and what it gets are printed before anything is sent.
    #[command(group(clap::ArgGroup::new("access").args(["perms", "full_access"])))]
    Nostrconnect {
        #[command(flatten)]
        common: KeyCommon,
        /// The app's nostrconnect://CLIENT_PUBKEY?relay=…&secret=… URI.
        #[arg(value_name = "URI")]
        uri: String,
        #[command(flatten)]
        grant: GrantArgs,
        /// Allow the app every method and kind, whatever its URI asks for.
        #[arg(long)]
        full_access: bool,
    },
    /// Set what one app may do on your key, replacing its grant (and
    /// allowing it, if it was not).
    Grant {
        #[command(flatten)]
        common: KeyCommon,
        /// The app's client public key (npub or hex).
        #[arg(long, value_name = "NPUB")]
        app: String,
        #[command(flatten)]
        grant: GrantArgs,
    },
    /// List the apps allowed on your key: what each may do, how much it
    /// has used, its last request, and what it says about itself.
    Apps {
        #[command(flatten)]
        common: KeyCommon,
        /// Print JSON instead of words.
        #[arg(long)]
        json: bool,
    },
    /// Show your key's decision log: each request of its apps (never its
    /// contents), allowed or refused and why, a run of the same one counted
    /// as ×N. The enclave keeps about the last 1,000 per key, in RAM, and
    /// always each app's first refusals.
    Log {
        #[command(flatten)]
        common: KeyCommon,
        /// Print JSON instead of words.
        #[arg(long)]
        json: bool,
    },
    /// Delete your key from the enclave.
    Delete {
        #[command(flatten)]
        common: KeyCommon,
    },
    /// End one app's access to your key, keeping the key and other apps.
    Revoke {
        #[command(flatten)]
        common: KeyCommon,
        /// The app's client public key (npub or hex).
        #[arg(long, value_name = "NPUB")]
        app: String,
    },
    /// Say whether the enclave holds your key, with its apps and pending
    /// bunker secrets, and whether and when the enclave would let it go: a
    /// key with no app and no pending secret is deleted after some days
    /// without an admin request from you (any `verifier key` command on it
    /// starts them again), and when the enclave is full a newcomer who pays
    /// for the last slot may take its place. Exits 0 if it is held, 1 if not.
    Status {
        #[command(flatten)]
        common: KeyCommon,
    },
    /// Get a bunker URL for your key with a fresh single-use secret (valid
    /// for a day), for an app that connects with one. The app that spends
    /// it gets what --perms names under the conditions given, or full
    /// access without --perms. It prints the URL alone on standard output
    /// and what it grants on standard error.
    BunkerUrl {
        #[command(flatten)]
        common: KeyCommon,
        #[command(flatten)]
        grant: BunkerGrantArgs,
    },
    /// Get a throw-away key the enclave generates (deleted after a day) as
    /// a bunker URL. Your key is optional here.
    TestKey {
        #[command(flatten)]
        common: KeyCommon,
        /// As for `import`.
        #[arg(long = "signer-relay", value_name = "URL")]
        signer_relays: Vec<String>,
    },
}

impl KeyAction {
    pub(crate) fn common(&self) -> &KeyCommon {
        match self {
            Self::Import { common, .. }
            | Self::Connect { common, .. }
            | Self::Grant { common, .. }
            | Self::Nostrconnect { common, .. }
            | Self::Apps { common, .. }
            | Self::Log { common, .. }
            | Self::Delete { common }
            | Self::Revoke { common, .. }
            | Self::Status { common }
            | Self::BunkerUrl { common, .. }
            | Self::TestKey { common, .. } => common,
        }
    }
}

/// What an app may do: the grant's perms and conditions.
#[derive(Debug, Args)]
pub(crate) struct GrantArgs {
    /// What the app may do, in NIP-46 perms syntax, comma-separated:
    /// sign_event:KIND or sign_event:FROM-TO (kinds are always named; NIP-98,
    /// kind 27235, only by name), nip44_encrypt, nip44_decrypt, nip04_encrypt,
    /// nip04_decrypt (each optionally :PEER_HEX for one peer only), or the
    /// sets `basic` (nsec.app's) and `full`. get_public_key, ping,
    /// switch_relays and logout are always allowed.
    #[arg(long, value_name = "LIST", required = false)]
    pub(crate) perms: Option<String>,
    #[command(flatten)]
    pub(crate) conditions: Conditions,
}

/// A bunker URL's grant: as [`GrantArgs`], full access without --perms.
#[derive(Debug, Args)]
pub(crate) struct BunkerGrantArgs {
    /// What the app that spends this URL may do (see `key grant --help`);
    /// without it, full access.
    #[arg(long, value_name = "LIST")]
    pub(crate) perms: Option<String>,
    #[command(flatten)]
    pub(crate) conditions: Conditions,
}

/// The conditions of a grant.
#[derive(Debug, Args)]
pub(crate) struct Conditions {
    /// How long the grant lasts from when it starts (the app's connect, or
    /// now for `connect` and `grant`): seconds, or 30m, 8h, 7d.
    #[arg(long, value_name = "DURATION")]
    pub(crate) ttl: Option<String>,
    /// Most signing and decryption requests in all (1 or more).
    #[arg(long, value_name = "N", allow_negative_numbers = true, value_parser = parse_uses)]
    pub(crate) uses: Option<u64>,
    /// Rate limits over signing and decryption requests, like
    /// 5/10s,10/min,100/h, or `none`. Default: 5/10s,10/min,100/h, except for
    /// full access (none).
    #[arg(long, value_name = "LIMITS")]
    pub(crate) rate: Option<String>,
    /// How far a signed event's created_at may be from the enclave's clock:
    /// a duration, or `none`. Default: 10m, except for full access (none).
    #[arg(long, value_name = "DURATION|none")]
    pub(crate) created_at_window: Option<String>,
}

/// Which instance, how to trust it, and your key.
#[derive(Debug, Args)]
pub(crate) struct KeyCommon {
    /// The instance event (kind 63793) as a JSON file, or `-`.
    #[arg(long, value_name = "FILE", conflicts_with = "service")]
    pub(crate) instance: Option<PathBuf>,
    /// Or: the instance's service key; its newest valid instance event is
    /// fetched from --relay.
    #[arg(long, value_name = "NPUB", requires = "relays")]
    pub(crate) service: Option<String>,
    /// Where to fetch the instance event from. Repeat for several.
    #[arg(long = "relay", value_name = "URL")]
    pub(crate) relays: Vec<String>,
    /// Your private key (nsec or hex) in this file, or `-` for standard input.
    #[arg(long, value_name = "FILE|-")]
    pub(crate) key_file: Option<PathBuf>,
    /// Trust this root certificate (DER or PEM) instead of AWS's, e.g. a
    /// local stack's dev-root.der.
    #[arg(long, value_name = "FILE")]
    pub(crate) root: Option<PathBuf>,
    /// The pcrs.json of the release you mean to trust: the enclave must run
    /// exactly this code (PCR0, PCR1 and PCR2 must be given). Without it
    /// or --release-signer, this verifier's built-in release policy (once
    /// it names maintainers) or release measurements are used, if it has
    /// them; otherwise nothing is sent.
    #[arg(long, value_name = "FILE")]
    pub(crate) pcrs: Option<PathBuf>,
    #[command(flatten)]
    pub(crate) release: ReleaseArgs,
    /// DANGER: send your key to any genuine Nitro enclave whatever code it
    /// runs. Anyone can build an image that leaks keys, sign it and run it;
    /// only pinned PCRs or a trusted release tell you what the code is.
    #[arg(long, conflicts_with_all = ["pcrs", "signers"])]
    pub(crate) any_code: bool,
    /// Accept only an instance built by this npub. Repeat for several.
    #[arg(long = "builder", value_name = "NPUB")]
    pub(crate) builders: Vec<String>,
    /// Accept only an instance launched by this npub. Repeat for several.
    #[arg(long = "launcher", value_name = "NPUB")]
    pub(crate) launchers: Vec<String>,
    /// Accept an enclave in debug mode (development only).
    #[arg(long)]
    pub(crate) allow_debug: bool,
    /// Seconds the whole command may take: connecting to the relays,
    /// fetching the instance event and the enclave's reply. A relay that
    /// refuses the connection is named at once.
    #[arg(long, value_name = "SECS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=600))]
    pub(crate) timeout: u64,
}

#[derive(Debug, Args)]
pub(crate) struct DiscoverArgs {
    /// A relay to read from (ws:// or wss://). Repeat for several.
    #[arg(long = "relay", value_name = "URL", required = true)]
    pub(crate) relays: Vec<String>,
    /// Trust this root certificate (DER or PEM) instead of the embedded AWS
    /// Nitro Enclaves Root-G1, e.g. the dev root a local stack writes.
    #[arg(long, value_name = "FILE")]
    pub(crate) root: Option<PathBuf>,
    /// nitro-cli `pcrs.json` with the expected PCR0, PCR1, PCR2 (and PCR8);
    /// instances that run anything else are listed as invalid.
    #[arg(long, value_name = "FILE")]
    pub(crate) pcrs: Option<PathBuf>,
    #[command(flatten)]
    pub(crate) release: ReleaseArgs,
    /// Accept only instances built by this npub. Repeat for several.
    #[arg(long = "builder", value_name = "NPUB")]
    pub(crate) builders: Vec<String>,
    /// Accept only instances launched by this npub. Repeat for several.
    #[arg(long = "launcher", value_name = "NPUB")]
    pub(crate) launchers: Vec<String>,
    /// Accept enclaves in debug mode (PCR0 all zeros): development only.
    #[arg(long)]
    pub(crate) allow_debug: bool,
    /// Most events to fetch from each relay.
    #[arg(long, value_name = "N", default_value_t = 500, value_parser = clap::value_parser!(u64).range(1..=5000))]
    pub(crate) limit: u64,
    /// Seconds the fetch may take, connecting and answering together; a
    /// relay that refuses the connection is named at once.
    #[arg(long, value_name = "SECS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=300))]
    pub(crate) timeout: u64,
    /// Print the result as JSON.
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Debug, Args)]
pub(crate) struct CheckArgs {
    /// File holding the event JSON, or `-` for standard input.
    #[arg(value_name = "FILE|-")]
    pub(crate) file: PathBuf,
    #[command(flatten)]
    pub(crate) trust: TrustArgs,
    /// nitro-cli `pcrs.json` with the expected PCR0, PCR1, PCR2 (and PCR8)
    /// of the release you mean to trust; the attestation must match it.
    #[arg(long, value_name = "FILE")]
    pub(crate) pcrs: Option<PathBuf>,
    #[command(flatten)]
    pub(crate) release: ReleaseArgs,
    /// Accept an enclave in debug mode (PCR0 all zeros). Its memory is
    /// readable by whoever runs it: for development only.
    #[arg(long)]
    pub(crate) allow_debug: bool,
    /// Print the report as JSON.
    #[arg(long)]
    pub(crate) json: bool,
}

/// Trust releases: at least K of these maintainers signed (kind 63794)
/// the PCR0, PCR1 and PCR2 that the instance's attestation carries, as one
/// version at or above --min-version. Checked as `release_signatures` and
/// `release_version`; with --pcrs, both must hold.
#[derive(Debug, Args)]
pub(crate) struct ReleaseArgs {
    /// A maintainer whose release signatures count (npub or hex). Repeat
    /// for several; needs --threshold.
    #[arg(long = "release-signer", value_name = "NPUB")]
    pub(crate) signers: Vec<String>,
    /// How many distinct --release-signer maintainers must have signed the
    /// same release (1 to their number).
    #[arg(long, value_name = "K", requires = "signers")]
    pub(crate) threshold: Option<usize>,
    /// The lowest release version accepted (semver, e.g. 1.2.0).
    #[arg(long, value_name = "VERSION", requires = "signers")]
    pub(crate) min_version: Option<String>,
    /// Let the maintainers' dev releases (`t=dev`) count for a dev
    /// instance. Without it only prod releases count, whatever mode the
    /// instance announces (the launcher chooses that, not you).
    #[arg(long, requires = "signers")]
    pub(crate) allow_dev_release: bool,
}

#[derive(Debug, Args)]
pub(crate) struct AttestationArgs {
    /// File holding the document, or `-` for standard input.
    #[arg(value_name = "FILE|-")]
    pub(crate) file: PathBuf,
    #[command(flatten)]
    pub(crate) trust: TrustArgs,
    /// Print the result as JSON.
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Debug, Args)]
pub(crate) struct TrustArgs {
    /// Trust this root certificate (DER or PEM) instead of the embedded AWS
    /// Nitro Enclaves Root-G1, e.g. the dev root a local stack writes.
    #[arg(long, value_name = "FILE")]
    pub(crate) root: Option<PathBuf>,
    /// Time of the check: `now`, a unix time in seconds, or `attestation`
    /// (the document's own timestamp, for archived events whose
    /// certificates have since expired).
    #[arg(long, value_name = "UNIX|now|attestation", default_value = "now")]
    pub(crate) at: At,
}

#[derive(Debug, Subcommand)]
pub(crate) enum PcrCommand {
    /// PCR4 of an enclave on EC2 instance ID (e.g. i-0ffff615a409a72d7): the
    /// digest of the raw id string. (`nitro-cli pcr` hashes it first, which
    /// gives a different, wrong value.)
    InstanceId {
        /// The EC2 instance id.
        #[arg(value_name = "ID")]
        id: String,
    },
    /// PCR8 of an image signed with the certificate in FILE (DER or PEM).
    Cert {
        /// The signing certificate.
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
}

/// `--at`: when to check certificates and expiration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum At {
    Now,
    Unix(u64),
    Attestation,
}

impl FromStr for At {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "now" => Ok(Self::Now),
            "attestation" => Ok(Self::Attestation),
            n => n.parse().map(Self::Unix).map_err(|_| {
                format!("{n:?} is not `now`, `attestation` or a unix time in seconds")
            }),
        }
    }
}

/// `--uses N`: a count of 1 or more, said in words when it is not.
fn parse_uses(text: &str) -> Result<u64, String> {
    match text.trim().parse::<i128>() {
        Ok(n) if n >= 1 => {
            u64::try_from(n).map_err(|_| format!("{n} is more uses than can be counted"))
        }
        Ok(n) => Err(format!(
            "{n} uses would allow nothing; give 1 or more, or leave --uses out for no limit"
        )),
        Err(_) => Err(format!("{text:?} is not a whole number of uses")),
    }
}

//! The `enclave run` options on what the signer may hold (`LimitArgs`) and
//! on custody of other enclaves' state keys (`CustodyArgs`).

use anyhow::{Context, Result};
use enclave::continuity::startup::ContinuityConfig;
use enclave::custody::{AdmissionLimits, Limits, LogLimits};
use enclave::signer::custody::CustodyConfig;
use enclave::signer::SignerConfig;
use nostr::PublicKey;
use tracing::info;
use verifier::attestation::TrustedRoot;
use verifier::custodian::ledger::LedgerLimits;
use verifier::event::npub;
use verifier::rpc::message::MAX_REQUEST_EVENT;

/// This enclave as a custodian of other enclaves' state keys.
#[derive(Debug, clap::Args)]
#[command(next_help_heading = "Custody")]
pub(crate) struct CustodyArgs {
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
    pub(crate) fn config(
        &self,
        root: TrustedRoot,
        own_launcher: PublicKey,
    ) -> Result<Option<CustodyConfig>> {
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
                ..LedgerLimits::default()
            },
            root,
            pow_bits: self.custody_pow,
            own_launcher: Some(own_launcher),
        }))
    }
}

/// Limits on what users and strangers can make the signer hold.
#[derive(Debug, clap::Args)]
#[command(next_help_heading = "Limits")]
pub(crate) struct LimitArgs {
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
    pub(crate) fn config(&self) -> SignerConfig {
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

/// This enclave's own state kept across restarts (key continuity).
#[derive(Debug, clap::Args)]
#[command(next_help_heading = "Key continuity")]
pub(crate) struct ContinuityArgs {
    /// Keep this enclave's keys, grants and logs across restarts under
    /// this name (a-z, 0-9, '-', '_', '.'): sealed snapshots at the parent
    /// (`parent run --state-dir`), their key with the custodians. At start
    /// the enclave takes the state over before it serves; changes are
    /// acknowledged once a quorum of custodians committed them. Without
    /// it, a restart loses every key.
    #[arg(long, value_name = "NAME", requires = "custodians")]
    state_id: Option<String>,
    /// A custodian: the launcher (npub or hex) of another enclave of this
    /// code run with `--custody-for` this enclave's launcher. Repeat; a
    /// quorum is a strict majority of them.
    #[arg(long = "custodian", value_name = "NPUB")]
    custodians: Vec<String>,
    /// Seal a new state under `--state-id` instead of restoring one:
    /// refused where a custodian holds one already. Use it once, for the
    /// first start.
    #[arg(long, requires = "state_id")]
    init_state: bool,
    /// Abandon the state kept under `--state-id` and start over with no
    /// keys: it is taken over from its custodians as a restore would (so
    /// every enclave still serving it stops first), but not read, and is
    /// replaced by an empty one under a new state key, even when its
    /// snapshots are lost. Every key, app and grant in it is gone for good.
    /// The enclave's announcements say when the state was reset from then
    /// on. Use it once, only when the old state cannot be restored, and
    /// take it out of the enclave's supervisor before any restart: started
    /// again with it, the enclave abandons its new state too.
    #[arg(long, requires = "state_id", conflicts_with = "init_state")]
    abandon_state: bool,
    /// A relay where custodians' instance events are looked for. Repeat;
    /// without it, the relays this enclave announces on.
    #[arg(long = "custody-relay", value_name = "URL")]
    custody_relays: Vec<String>,
    /// NIP-13 proof of work (bits) put on custody requests: at least what
    /// the custodians ask (`--custody-pow`).
    #[arg(long, value_name = "BITS", default_value_t = 20, value_parser = clap::value_parser!(u8).range(0..=28))]
    custody_request_pow: u8,
}

impl ContinuityArgs {
    /// The continuity the options ask for, if any: `launcher` is this
    /// enclave's own, `announce` where it looks for custodians by default.
    pub(crate) fn config(
        &self,
        launcher: PublicKey,
        announce: &[nostr::RelayUrl],
        parent: enclave::link::ParentAddr,
    ) -> Result<Option<ContinuityConfig>> {
        let Some(name) = &self.state_id else {
            return Ok(None);
        };
        let identity = verifier::state::StateIdentity::new(launcher, name)
            .with_context(|| format!("--state-id {name:?}"))?;
        let custodians = self
            .custodians
            .iter()
            .map(|n| {
                PublicKey::parse(n.trim())
                    .with_context(|| format!("--custodian {n:?} is not an npub or hex key"))
            })
            .collect::<Result<Vec<_>>>()?;
        let distinct: std::collections::BTreeSet<&PublicKey> = custodians.iter().collect();
        if distinct.len() != custodians.len() {
            anyhow::bail!("--custodian names a launcher twice");
        }
        let relays = if self.custody_relays.is_empty() {
            announce.to_vec()
        } else {
            self.custody_relays
                .iter()
                .map(|r| {
                    verifier::rpc::relays::parse_relay_url(r)
                        .map_err(anyhow::Error::msg)
                        .with_context(|| format!("--custody-relay {r}"))
                })
                .collect::<Result<Vec<_>>>()?
        };
        Ok(Some(ContinuityConfig {
            identity,
            custodians,
            init: self.init_state,
            abandon: self.abandon_state,
            relays,
            parent,
            pow_bits: self.custody_request_pow,
        }))
    }
}

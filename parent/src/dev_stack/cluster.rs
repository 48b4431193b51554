//! A cluster of dev stacks (`dev-stack --instances N`): one relay and, per
//! instance, two stacks of the same builder, release policy and dev CA:
//! - a signer in `DIR/N/` (its own launcher and EC2 instance, so its own
//!   PCR4), which keeps its keys under key continuity;
//! - a custodian in `DIR/custodian-N/`, at a launcher of its own, which
//!   keeps the state keys of every signer of the cluster.
//!
//! Each signer names all N custodians, so a quorum is a strict majority of
//! them. Custodians run apart from signers, as custodian enclaves run for
//! other operators would: a custodian that restarts comes back empty and is
//! never filled again (another live instance of its launcher might still
//! hold the state and vote twice), so a signer's restart must not take a
//! custodian down with it.
//!
//! Each stack's folder holds its `enclave.pid`, `instance-event.json`,
//! `dev-root.der`, `pcrs.json`, logs and (signers) the parent's sealed
//! state. When an enclave dies, [`Cluster::supervise`] starts it again, as
//! a launcher's supervisor would; a signer then takes its state back.
//!
//! Every cluster starts with new states: the custodians of the last run
//! are gone with it, and the state keys with them (that is the design: no
//! one else holds them).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use nostr::{Event, PublicKey};
use tracing::warn;
use verifier::event::npub;

use super::identity;
use super::{Member, Stack, StackConfig};

/// The state name every signer keeps its keys under.
pub const STATE_ID: &str = "dev";

/// Proof of work on custody requests in a dev cluster: enough to run the
/// code path, cheap in a debug build.
pub const DEV_CUSTODY_POW: u8 = 8;

/// Member numbers of custodians start here (their launcher keys and
/// instance ids are kept apart from the signers').
const CUSTODIAN_NUMBERS: usize = 100;

/// The running instances.
#[derive(Debug)]
pub struct Cluster {
    /// Signer N is `stacks[N - 1]`.
    pub stacks: Vec<Stack>,
    /// Signer N's launcher is `launchers[N - 1]`.
    pub launchers: Vec<PublicKey>,
    /// Custodian N is `custodians[N - 1]`.
    pub custodians: Vec<Stack>,
    /// Custodian N's launcher is `custodian_launchers[N - 1]`.
    pub custodian_launchers: Vec<PublicKey>,
}

/// `DIR/N`: signer N's folder.
pub fn member_dir(cluster_dir: &Path, number: usize) -> PathBuf {
    cluster_dir.join(number.to_string())
}

/// `DIR/custodian-N`: custodian N's folder.
pub fn custodian_dir(cluster_dir: &Path, number: usize) -> PathBuf {
    cluster_dir.join(format!("custodian-{number}"))
}

impl Cluster {
    /// Starts `instances` custodians and then `instances` signers as `base`
    /// describes (its `dir` is the cluster's), one after the other: the
    /// first makes the shared dev CA. Each signer seals a new state once a
    /// quorum of the custodians announced.
    pub async fn start(base: &StackConfig, instances: usize) -> Result<Self> {
        // With 2 custodians a quorum is both: one restarting (it comes
        // back empty) would stop every signer for good.
        if instances < 3 {
            bail!("a cluster needs at least 3 instances (3 custodians, so that one may restart)");
        }
        let launcher_of =
            |n: usize| identity::member_launcher(&base.dir, n).map(|k| k.public_key());
        let launchers = (1..=instances)
            .map(launcher_of)
            .collect::<Result<Vec<_>>>()?;
        let custodian_launchers = (1..=instances)
            .map(|n| launcher_of(CUSTODIAN_NUMBERS + n))
            .collect::<Result<Vec<_>>>()?;
        let pow = DEV_CUSTODY_POW.to_string();
        let mut cluster = Self {
            stacks: Vec::with_capacity(instances),
            launchers,
            custodians: Vec::with_capacity(instances),
            custodian_launchers,
        };
        for number in 1..=instances {
            let mut enclave_args = base.enclave_args.clone();
            for launcher in &cluster.launchers {
                enclave_args.extend(["--custody-for".into(), npub(launcher)]);
            }
            enclave_args.extend(["--custody-pow".into(), pow.clone()]);
            let config = StackConfig {
                dir: custodian_dir(&base.dir, number),
                enclave_args,
                member: Some(Member {
                    cluster_dir: base.dir.clone(),
                    number: CUSTODIAN_NUMBERS + number,
                }),
                ..base.clone()
            };
            match Stack::start(&config).await {
                Ok(stack) => cluster.custodians.push(stack),
                Err(e) => {
                    cluster.stop_quietly().await;
                    return Err(e.context(format!("custodian {number}")));
                }
            }
        }
        // Signers find every custodian at start once all have announced.
        for (i, custodian) in cluster.custodians.iter_mut().enumerate() {
            if let Err(e) = custodian.wait_for_event(Duration::from_secs(60)).await {
                cluster.stop_quietly().await;
                return Err(e.context(format!("custodian {}", i + 1)));
            }
        }
        for number in 1..=instances {
            let dir = member_dir(&base.dir, number);
            let state = dir.join("state");
            if state.exists() {
                std::fs::remove_dir_all(&state)
                    .with_context(|| format!("cannot delete {}", state.display()))?;
            }
            let mut enclave_args = base.enclave_args.clone();
            enclave_args.extend(["--state-id".into(), STATE_ID.into(), "--init-state".into()]);
            for launcher in &cluster.custodian_launchers {
                enclave_args.extend(["--custodian".into(), npub(launcher)]);
            }
            enclave_args.extend(["--custody-request-pow".into(), pow.clone()]);
            let mut parent_args = base.parent_args.clone();
            parent_args.extend(["--state-dir".into(), state.display().to_string()]);
            let config = StackConfig {
                dir,
                enclave_args,
                parent_args,
                member: Some(Member {
                    cluster_dir: base.dir.clone(),
                    number,
                }),
                ..base.clone()
            };
            match Stack::start(&config).await {
                Ok(stack) => cluster.stacks.push(stack),
                Err(e) => {
                    cluster.stop_quietly().await;
                    return Err(e.context(format!("signer {number}")));
                }
            }
        }
        Ok(cluster)
    }

    /// Waits for every signer's and custodian's instance event; returns
    /// the signers'.
    pub async fn wait_for_events(&mut self, timeout: Duration) -> Result<Vec<Event>> {
        for (i, stack) in self.custodians.iter_mut().enumerate() {
            stack
                .wait_for_event(timeout)
                .await
                .with_context(|| format!("custodian {}", i + 1))?;
        }
        let mut events = Vec::with_capacity(self.stacks.len());
        for (i, stack) in self.stacks.iter_mut().enumerate() {
            events.push(
                stack
                    .wait_for_event(timeout)
                    .await
                    .with_context(|| format!("signer {}", i + 1))?,
            );
        }
        Ok(events)
    }

    /// Starts again every enclave that exited, and says which (signer N
    /// as `N`, custodian N as `-N`); fails if a parent exited.
    pub fn supervise(&mut self) -> Result<Vec<isize>> {
        let mut restarted = Vec::new();
        let all = self
            .stacks
            .iter_mut()
            .enumerate()
            .map(|(i, s)| (i as isize + 1, "signer", s))
            .chain(
                self.custodians
                    .iter_mut()
                    .enumerate()
                    .map(|(i, s)| (-(i as isize + 1), "custodian", s)),
            );
        for (id, what, stack) in all {
            let number = id.unsigned_abs();
            if let Some(status) = stack.parent.exited()? {
                bail!(
                    "{what} {number}: the parent exited ({status}); see {}",
                    stack.parent.log().display()
                );
            }
            if let Some(status) = stack.enclave.exited()? {
                warn!(
                    "{what} {number}: the enclave exited ({status}; see {}); starting it again",
                    stack.enclave.log().display()
                );
                if id < 0 {
                    warn!("custodian {number} comes back empty: each signer's state has one custodian fewer until the cluster is started again");
                }
                stack.restart_enclave()?;
                restarted.push(id);
            }
        }
        Ok(restarted)
    }

    /// Stops every instance; fails if one did not stop cleanly.
    pub async fn stop(self) -> Result<()> {
        let mut failed = Vec::new();
        for (i, stack) in self.stacks.into_iter().enumerate() {
            if let Err(e) = stack.stop().await {
                failed.push(format!("signer {}: {e}", i + 1));
            }
        }
        for (i, stack) in self.custodians.into_iter().enumerate() {
            if let Err(e) = stack.stop().await {
                failed.push(format!("custodian {}: {e}", i + 1));
            }
        }
        if failed.is_empty() {
            Ok(())
        } else {
            bail!("{}", failed.join("; "))
        }
    }

    async fn stop_quietly(&mut self) {
        for stack in self.stacks.drain(..).chain(self.custodians.drain(..)) {
            let _ = stack.stop().await;
        }
    }
}

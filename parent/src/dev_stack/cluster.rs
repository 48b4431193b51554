//! A cluster of dev stacks (`dev-stack --instances N`): one relay, and per
//! instance a parent and an enclave of its own launcher (its own EC2
//! instance, so its own PCR4), all of one builder, one release policy and
//! one dev CA. Each enclave keeps its keys under key continuity, with the
//! other instances' enclaves as its custodians, and is one of theirs.
//!
//! Instance N lives in `DIR/N/`: its `enclave.pid`, `instance-event.json`,
//! `dev-root.der`, `pcrs.json`, logs and the parent's sealed state. When an
//! enclave dies, [`Cluster::supervise`] starts it again, as a launcher's
//! supervisor would, and it takes its state back from the others.
//!
//! Every cluster starts with new states: the custodians of the last run
//! are gone with it, and the state's key with them (that is the design:
//! no one else holds it).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use nostr::{Event, PublicKey};
use tracing::warn;
use verifier::event::npub;

use super::identity;
use super::{Member, Stack, StackConfig};

/// The state name every instance keeps its keys under.
pub const STATE_ID: &str = "dev";

/// Proof of work on custody requests in a dev cluster: enough to run the
/// code path, cheap in a debug build.
pub const DEV_CUSTODY_POW: u8 = 8;

/// The running instances.
#[derive(Debug)]
pub struct Cluster {
    /// Instance N is `stacks[N - 1]`.
    pub stacks: Vec<Stack>,
    /// Instance N's launcher is `launchers[N - 1]`.
    pub launchers: Vec<PublicKey>,
}

/// `DIR/N`.
pub fn member_dir(cluster_dir: &std::path::Path, number: usize) -> PathBuf {
    cluster_dir.join(number.to_string())
}

impl Cluster {
    /// Starts `instances` stacks as `base` describes (its `dir` is the
    /// cluster's), one after the other: the first makes the shared dev CA.
    /// Each seals a new state once a quorum of the others announced.
    pub async fn start(base: &StackConfig, instances: usize) -> Result<Self> {
        if instances < 2 {
            bail!("a cluster needs at least 2 instances, each a custodian of the others");
        }
        let launchers = (1..=instances)
            .map(|n| identity::member_launcher(&base.dir, n).map(|k| k.public_key()))
            .collect::<Result<Vec<_>>>()?;
        let mut stacks = Vec::with_capacity(instances);
        for number in 1..=instances {
            let dir = member_dir(&base.dir, number);
            let state = dir.join("state");
            if state.exists() {
                std::fs::remove_dir_all(&state)
                    .with_context(|| format!("cannot delete {}", state.display()))?;
            }
            let mut enclave_args = base.enclave_args.clone();
            enclave_args.extend(["--state-id".into(), STATE_ID.into(), "--init-state".into()]);
            for (i, launcher) in launchers.iter().enumerate() {
                if i + 1 != number {
                    let npub = npub(launcher);
                    enclave_args.extend([
                        "--custodian".into(),
                        npub.clone(),
                        "--custody-for".into(),
                        npub,
                    ]);
                }
            }
            let pow = DEV_CUSTODY_POW.to_string();
            enclave_args.extend([
                "--custody-pow".into(),
                pow.clone(),
                "--custody-request-pow".into(),
                pow,
            ]);
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
                Ok(stack) => stacks.push(stack),
                Err(e) => {
                    for stack in stacks {
                        let _ = stack.stop().await;
                    }
                    return Err(e.context(format!("instance {number}")));
                }
            }
        }
        Ok(Self { stacks, launchers })
    }

    /// Waits for every instance's instance event.
    pub async fn wait_for_events(&mut self, timeout: Duration) -> Result<Vec<Event>> {
        let mut events = Vec::with_capacity(self.stacks.len());
        for (i, stack) in self.stacks.iter_mut().enumerate() {
            events.push(
                stack
                    .wait_for_event(timeout)
                    .await
                    .with_context(|| format!("instance {}", i + 1))?,
            );
        }
        Ok(events)
    }

    /// Starts again every enclave that exited, and says which; fails if a
    /// parent exited.
    pub fn supervise(&mut self) -> Result<Vec<usize>> {
        let mut restarted = Vec::new();
        for (i, stack) in self.stacks.iter_mut().enumerate() {
            let number = i + 1;
            if let Some(status) = stack.parent.exited()? {
                bail!(
                    "instance {number}: the parent exited ({status}); see {}",
                    stack.parent.log().display()
                );
            }
            if let Some(status) = stack.enclave.exited()? {
                warn!(
                    "instance {number}: the enclave exited ({status}; see {}); starting it again",
                    stack.enclave.log().display()
                );
                stack.restart_enclave()?;
                restarted.push(number);
            }
        }
        Ok(restarted)
    }

    /// Stops every instance; fails if one did not stop cleanly.
    pub async fn stop(self) -> Result<()> {
        let mut failed = Vec::new();
        for (i, stack) in self.stacks.into_iter().enumerate() {
            if let Err(e) = stack.stop().await {
                failed.push(format!("instance {}: {e}", i + 1));
            }
        }
        if failed.is_empty() {
            Ok(())
        } else {
            bail!("{}", failed.join("; "))
        }
    }
}

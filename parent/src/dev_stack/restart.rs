//! Starting a stack's processes again: the parent as an operator
//! restarting its service does, the enclave as a launcher's supervisor
//! does after it died, or as an upgraded build the stack's maintainers
//! release.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use verifier::pcr::Measurements;

use super::process::Process;
use super::release::write_releases;
use super::{wait_for_file, Stack, START_TIMEOUT};

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
pub(super) struct EnclaveStart {
    pub(super) bin: PathBuf,
    pub(super) args: Vec<String>,
    pub(super) dir: PathBuf,
    pub(super) echo: bool,
    pub(super) restarts: usize,
}

impl EnclaveStart {
    /// Starts it, logging to `log`, and writes its PID to `DIR/enclave.pid`.
    pub(super) fn spawn(&self, log: &Path) -> Result<Process> {
        let process = Process::spawn("enclave", &self.bin, &self.args, log, self.echo)?;
        let pid_file = self.dir.join("enclave.pid");
        if let Some(pid) = process.id() {
            std::fs::write(&pid_file, format!("{pid}\n"))
                .with_context(|| format!("cannot write {}", pid_file.display()))?;
        }
        Ok(process)
    }

    /// Starts it again after it exited: never with `--init-state` (that
    /// is for the first start only; a restart takes the state over),
    /// logging to `enclave-restart-N.log`.
    fn respawn(&mut self) -> Result<Process> {
        self.args.retain(|a| a != "--init-state");
        self.restarts += 1;
        let log = self
            .dir
            .join(format!("enclave-restart-{}.log", self.restarts));
        self.spawn(&log)
    }
}

/// What starting the parent takes.
#[derive(Debug)]
pub(super) struct ParentStart {
    pub(super) bin: PathBuf,
    pub(super) args: Vec<String>,
    pub(super) dir: PathBuf,
    pub(super) echo: bool,
    pub(super) restarts: usize,
}

impl Stack {
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
        self.enclave = self.enclave_start.respawn()?;
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
        set_arg(&mut self.enclave_start.args, "--dev-version", version);
        self.enclave = self.enclave_start.respawn()?;
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
}

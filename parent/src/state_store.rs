//! Where the parent keeps the enclave's sealed state (`parent run
//! --state-dir DIR`). It holds ciphertext only and decides nothing: the
//! enclave restores the snapshot its custodians name, checked by hash, and
//! refuses any other. What the parent must get right is its own disk:
//! every write is whole or absent after a crash, and what one state may
//! take is bounded.
//!
//! ```text
//! DIR/<launcher hex>-<name>/<epoch>-<version>-<count>/<index>.chunk
//! ```
//!
//! Numbers are zero-padded to 20 digits (10 for count and index), so that
//! names sort as the numbers do. A chunk is written to `<index>.tmp`,
//! flushed to disk, renamed, and the folder is flushed; it is written once
//! (other bytes for a chunk kept are refused). A state keeps the snapshot
//! its enclave pinned as committed (a `pinned` file in its folder), its
//! [`StoreLimits::keep`] newest complete snapshots and at most
//! [`StoreLimits::in_flight`] incomplete ones newer than those; older ones
//! are deleted when a chunk arrives.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use verifier::protocol::state::MAX_LISTED;
use verifier::protocol::StoredSnapshot;
use verifier::state::{SealedChunk, StateIdentity, MAX_SEALED_CHUNK};

/// What one store may hold.
#[derive(Debug, Clone, Copy)]
pub struct StoreLimits {
    /// Complete snapshots kept per state.
    pub keep: usize,
    /// Incomplete snapshots, newer than every complete one, kept per state.
    pub in_flight: usize,
    /// States kept (a parent serves one enclave, which keeps one; room is
    /// left for a custodian's copies).
    pub max_states: usize,
}

impl Default for StoreLimits {
    fn default() -> Self {
        Self {
            keep: 4,
            in_flight: 2,
            max_states: 16,
        }
    }
}

/// The state folder of a parent.
#[derive(Debug)]
pub struct StateStore {
    dir: PathBuf,
    limits: StoreLimits,
    /// One request at a time: writes, pruning and reads never interleave.
    lock: Mutex<()>,
}

/// Where a snapshot's chunks are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct SnapshotDir {
    epoch: u64,
    version: u64,
    count: u32,
}

impl SnapshotDir {
    fn name(&self) -> String {
        format!("{:020}-{:020}-{:010}", self.epoch, self.version, self.count)
    }

    fn parse(name: &str) -> Option<Self> {
        let mut parts = name.split('-');
        let dir = Self {
            epoch: digits(parts.next()?, 20)?,
            version: digits(parts.next()?, 20)?,
            count: u32::try_from(digits(parts.next()?, 10)?).ok()?,
        };
        parts.next().is_none().then_some(dir)
    }
}

fn digits(text: &str, width: usize) -> Option<u64> {
    (text.len() == width && text.bytes().all(|b| b.is_ascii_digit()))
        .then(|| text.parse().ok())
        .flatten()
}

/// The mark of the committed snapshot.
const PIN: &str = "pinned";

fn chunk_name(index: u32) -> String {
    format!("{index:010}.chunk")
}

impl StateStore {
    /// The store in `dir`, made if absent (readable by its owner only).
    pub fn open(dir: &Path, limits: StoreLimits) -> std::io::Result<Self> {
        fs::create_dir_all(dir)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(dir, fs::Permissions::from_mode(0o700))?;
        }
        Ok(Self {
            dir: dir.to_owned(),
            limits,
            lock: Mutex::new(()),
        })
    }

    /// Stores `chunk` where its header says, then deletes what the limits
    /// no longer keep.
    pub fn put(&self, chunk: &SealedChunk) -> Result<(), String> {
        let _guard = self.lock.lock().map_err(|_| "the state store failed")?;
        let h = &chunk.header;
        let state = self.dir.join(h.identity.folder());
        if !state.is_dir() && self.states()? >= self.limits.max_states {
            return Err(format!(
                "this parent keeps at most {} states",
                self.limits.max_states
            ));
        }
        let snapshot = SnapshotDir {
            epoch: h.epoch,
            version: h.version,
            count: h.count,
        };
        let dir = state.join(snapshot.name());
        fs::create_dir_all(&dir).map_err(|e| io("cannot make a state folder", &e))?;
        let path = dir.join(chunk_name(h.index));
        match fs::read(&path) {
            Ok(kept) if kept == chunk.bytes => return Ok(()),
            Ok(_) => {
                return Err(format!(
                    "chunk {} of snapshot {}.{} is kept already, with other bytes: a version is written once",
                    h.index, h.epoch, h.version
                ))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io("cannot read a chunk", &e)),
        }
        let tmp = dir.join(format!("{:010}.tmp", h.index));
        let mut file = fs::File::create(&tmp).map_err(|e| io("cannot write a chunk", &e))?;
        file.write_all(&chunk.bytes)
            .and_then(|()| file.sync_all())
            .map_err(|e| io("cannot write a chunk", &e))?;
        drop(file);
        fs::rename(&tmp, &path).map_err(|e| io("cannot write a chunk", &e))?;
        sync_dir(&dir)?;
        sync_dir(&state)?;
        self.prune(&state)
    }

    /// Chunk `index` of snapshot (`epoch`, `version`) of `identity`, if
    /// kept. Which snapshot is current is not the parent's business.
    pub fn get(
        &self,
        identity: &StateIdentity,
        epoch: u64,
        version: u64,
        index: u32,
    ) -> Result<Option<Vec<u8>>, String> {
        let _guard = self.lock.lock().map_err(|_| "the state store failed")?;
        let state = self.dir.join(identity.folder());
        let Some(snapshot) = self
            .snapshots(&state)?
            .into_iter()
            .find(|(s, _)| s.epoch == epoch && s.version == version)
        else {
            return Ok(None);
        };
        let path = state.join(snapshot.0.name()).join(chunk_name(index));
        match fs::metadata(&path) {
            Ok(m) if m.len() > MAX_SEALED_CHUNK as u64 => {
                return Err(format!("{} is larger than a chunk", path.display()))
            }
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io("cannot read a chunk", &e)),
        }
        fs::read(&path)
            .map(Some)
            .map_err(|e| io("cannot read a chunk", &e))
    }

    /// Marks snapshot (`epoch`, `version`) of `identity` as the committed
    /// one, never pruned; the mark leaves the one pinned before.
    pub fn pin(&self, identity: &StateIdentity, epoch: u64, version: u64) -> Result<(), String> {
        let _guard = self.lock.lock().map_err(|_| "the state store failed")?;
        let state = self.dir.join(identity.folder());
        let snapshots = self.snapshots(&state)?;
        let Some((target, present)) = snapshots
            .iter()
            .find(|(s, _)| s.epoch == epoch && s.version == version)
        else {
            return Err(format!(
                "snapshot {epoch}.{version} of {identity} is not kept here"
            ));
        };
        if *present < target.count {
            return Err(format!(
                "snapshot {epoch}.{version} of {identity} is not complete here ({present} of {} chunks)",
                target.count
            ));
        }
        let mark = state.join(target.name()).join(PIN);
        fs::write(&mark, b"").map_err(|e| io("cannot pin a snapshot", &e))?;
        sync_dir(&state.join(target.name()))?;
        for (other, _) in &snapshots {
            if other != target {
                let _ = fs::remove_file(state.join(other.name()).join(PIN));
            }
        }
        Ok(())
    }

    /// The snapshots kept of `identity`, newest first.
    pub fn list(&self, identity: &StateIdentity) -> Result<Vec<StoredSnapshot>, String> {
        let _guard = self.lock.lock().map_err(|_| "the state store failed")?;
        let state = self.dir.join(identity.folder());
        Ok(self
            .snapshots(&state)?
            .into_iter()
            .take(MAX_LISTED)
            .map(|(s, present)| StoredSnapshot {
                epoch: s.epoch,
                version: s.version,
                count: s.count,
                present,
            })
            .collect())
    }

    fn states(&self) -> Result<usize, String> {
        let entries =
            fs::read_dir(&self.dir).map_err(|e| io("cannot read the state folder", &e))?;
        Ok(entries
            .filter_map(Result::ok)
            .filter(|e| e.path().is_dir())
            .count())
    }

    /// The snapshot folders of a state and how many chunks each holds,
    /// newest first; folders of other names are not the store's and are
    /// left alone.
    fn snapshots(&self, state: &Path) -> Result<Vec<(SnapshotDir, u32)>, String> {
        let entries = match fs::read_dir(state) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io("cannot read a state folder", &e)),
        };
        let mut out = Vec::new();
        for entry in entries.filter_map(Result::ok) {
            let Some(dir) = entry.file_name().to_str().and_then(SnapshotDir::parse) else {
                continue;
            };
            let present = fs::read_dir(entry.path())
                .map(|chunks| {
                    chunks
                        .filter_map(Result::ok)
                        .filter(|c| {
                            c.file_name().to_str().is_some_and(|n| {
                                n.strip_suffix(".chunk")
                                    .and_then(|i| digits(i, 10))
                                    .is_some_and(|i| i < u64::from(dir.count))
                            })
                        })
                        .count()
                })
                .unwrap_or(0);
            out.push((dir, u32::try_from(present).unwrap_or(u32::MAX)));
        }
        out.sort_unstable_by_key(|s| std::cmp::Reverse(s.0));
        Ok(out)
    }

    /// Keeps the newest complete snapshots and the incomplete ones newer
    /// than all of them, within the limits; deletes the rest.
    fn prune(&self, state: &Path) -> Result<(), String> {
        let mut complete = 0;
        let mut in_flight = 0;
        for (dir, present) in self.snapshots(state)? {
            if state.join(dir.name()).join(PIN).exists() {
                continue;
            }
            let keep = if present >= dir.count {
                complete += 1;
                complete <= self.limits.keep
            } else {
                in_flight += 1;
                complete == 0 && in_flight <= self.limits.in_flight
            };
            if !keep {
                let path = state.join(dir.name());
                fs::remove_dir_all(&path).map_err(|e| io("cannot delete an old snapshot", &e))?;
            }
        }
        Ok(())
    }
}

fn sync_dir(dir: &Path) -> Result<(), String> {
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io("cannot flush a state folder", &e))
}

fn io(what: &str, e: &std::io::Error) -> String {
    format!("{what}: {e}")
}

#[cfg(test)]
mod tests;

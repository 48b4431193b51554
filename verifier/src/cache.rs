//! Results of expensive checks that depend only on the bytes checked,
//! remembered for one run of many checks, such as `discover` over a
//! thousand events of instances that share AWS's intermediate
//! certificates and a builder's certificate. Only successes are kept,
//! under a SHA-256 key of everything the result depends on; a failure is
//! always checked again. At most [`MAX_ENTRIES`] are kept: past that,
//! checks run in full.

use std::collections::HashSet;
use std::sync::Mutex;

use sha2::{Digest, Sha256};

/// Most results one cache keeps.
pub const MAX_ENTRIES: usize = 1024;

/// Successful checks of one run.
#[derive(Debug, Default)]
pub struct VerifyCache {
    known: Mutex<HashSet<[u8; 32]>>,
}

impl VerifyCache {
    /// An empty cache.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether the check `key` names has passed in this run.
    pub(crate) fn knows(&self, key: &[u8; 32]) -> bool {
        self.known.lock().map(|k| k.contains(key)).unwrap_or(false)
    }

    /// Remembers that the check `key` names passed.
    pub(crate) fn remember(&self, key: [u8; 32]) {
        if let Ok(mut known) = self.known.lock() {
            if known.len() < MAX_ENTRIES {
                known.insert(key);
            }
        }
    }

    /// How many results are kept.
    pub fn len(&self) -> usize {
        self.known.lock().map(|k| k.len()).unwrap_or(0)
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The key of a check: its name, then each input with its length.
pub(crate) fn key(check: &str, inputs: &[&[u8]]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(check.as_bytes());
    for input in inputs {
        h.update((input.len() as u64).to_be_bytes());
        h.update(input);
    }
    h.finalize().into()
}

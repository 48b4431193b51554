//! The decision log as sealed state keeps it: every entry with its number,
//! so that an owner's cursor means the same entry after a restore.

use nostr::PublicKey;
use verifier::grant::{Method, Refusal};
use verifier::state::record::{Key, LogRecord};

use super::{DecisionLog, Entry};

impl DecisionLog {
    /// Every entry, of every key, in the order they were numbered.
    pub fn to_records(&self) -> Vec<LogRecord> {
        let mut out: Vec<LogRecord> = Vec::with_capacity(self.total);
        for (user, log) in &self.keys {
            for app in log.apps.values() {
                for e in app.allowed.iter().chain(app.refused.iter()) {
                    out.push(LogRecord {
                        key: Key(user.to_bytes()),
                        seq: e.seq,
                        time: e.time,
                        count: e.count,
                        app: Key(e.app),
                        method: e.method.as_str().to_owned(),
                        kind: e.kind,
                        refusal: e.refusal.map(|r| r.to_record()),
                    });
                }
            }
        }
        out.sort_unstable_by_key(|r| r.seq);
        out
    }

    /// The number the next entry gets.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Puts back the entries `records` keep, numbered as they were, in a
    /// log with this log's limits; the next entry is numbered at least
    /// `next_seq`. Entries past the limits go as they would have.
    pub fn restore(&mut self, records: &[LogRecord], next_seq: u64) -> Result<(), String> {
        let mut records: Vec<&LogRecord> = records.iter().collect();
        records.sort_unstable_by_key(|r| r.seq);
        for r in records {
            let user = PublicKey::from_slice(&r.key.0).map_err(|e| format!("a log's key: {e}"))?;
            let method = Method::from_name(&r.method)
                .ok_or_else(|| format!("a log entry's method {:?}", r.method))?;
            let refusal = r.refusal.as_ref().map(Refusal::from_record).transpose()?;
            let entry = Entry {
                seq: r.seq,
                time: r.time,
                count: r.count.max(1),
                app: r.app.0,
                method,
                kind: r.kind,
                refusal,
            };
            self.insert(user, entry);
        }
        self.next_seq = self.next_seq.max(next_seq);
        Ok(())
    }

    /// Appends `entry` as it is (its number kept, no repeat merged).
    fn insert(&mut self, user: PublicKey, entry: Entry) {
        if self.limits.per_key == 0 || self.limits.total == 0 {
            return;
        }
        self.next_seq = self.next_seq.max(entry.seq.saturating_add(1));
        let log = self.keys.entry(user).or_default();
        let before = log.len;
        let app = log.apps.entry(entry.app).or_default();
        if entry.refusal.is_some() {
            app.refused.push_back(entry);
        } else {
            app.allowed.push_back(entry);
        }
        self.added(user, before);
    }
}

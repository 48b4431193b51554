//! The owner's changes of a key's apps, remembered so that an older
//! nsec.app event cannot undo them: an owner change for a grant the owner
//! paid for, the time in nsec.app's state of the app for a grant nsec.app
//! gave, and a watermark for what is forgotten.

use nostr::PublicKey;

use super::UserKey;

/// Owner changes remembered per key.
pub(super) const OWNER_CHANGES_KEPT: usize = 128;

impl UserKey {
    /// Its owner imported it anew dropping every app at `now`: nsec.app
    /// events from before then grant nothing (they may name apps the owner
    /// had revoked before the key was last deleted).
    pub(in crate::custody) fn drop_changes_before(&mut self, now: u64) {
        let s = self.sessions_mut();
        s.owner_floor = s.owner_floor.max(now);
    }

    /// Whether the owner's change of `app` is remembered as an owner
    /// change (paid for), not only in nsec.app's state of it.
    pub(in crate::custody) fn has_owner_change(&self, app: &PublicKey) -> bool {
        self.sessions()
            .is_some_and(|s| s.owner_at.contains_key(app))
    }

    /// The owner ended `app`'s grant from `source` at `now`. A paid grant
    /// (an owner's) leaves an owner change, which the grant's memory paid
    /// for; a free one (nsec.app's) leaves the time in nsec.app's state of
    /// the app, or with none, in the key's watermark: never owner memory
    /// that nothing paid for.
    pub(super) fn owner_ended(&mut self, app: PublicKey, source: &str, now: u64) {
        if source != verifier::grant::wire::source::NSEC_APP {
            self.owner_changed(app, now);
            return;
        }
        let s = self.sessions_mut();
        match s.nsec_app.get_mut(&app) {
            Some(record) => record.owner_at = record.owner_at.max(now),
            None => s.owner_floor = s.owner_floor.max(now),
        }
    }

    pub(super) fn owner_changed(&mut self, app: PublicKey, now: u64) {
        let s = self.sessions_mut();
        if !s.owner_at.contains_key(&app) && s.owner_at.len() >= OWNER_CHANGES_KEPT {
            if let Some((oldest, at)) = s
                .owner_at
                .iter()
                .min_by_key(|(_, t)| **t)
                .map(|(a, t)| (*a, *t))
            {
                s.owner_at.remove(&oldest);
                s.owner_floor = s.owner_floor.max(at);
            }
        }
        s.owner_at.insert(app, now);
    }

    /// Whether an nsec.app change at `changed_at` (ms) for `app` is no
    /// newer than the owner's last change of it (in seconds: the owner's
    /// change wins within its second), or, with none remembered, than the
    /// newest owner change forgotten. That watermark only keeps apps
    /// without nsec.app's grant from coming back: it never freezes a grant
    /// nsec.app gave, which nsec.app's own newer word replaces.
    pub(in crate::custody) fn owner_later(&self, app: &PublicKey, changed_at: u64) -> bool {
        let in_ms = |at: u64| at.saturating_mul(1000).saturating_add(999);
        let from_nsec = self
            .app(app)
            .is_some_and(|a| a.source() == verifier::grant::wire::source::NSEC_APP);
        match self.owner_changed_at(app) {
            Some(at) => in_ms(at) >= changed_at,
            None if from_nsec => false,
            None => self
                .sessions()
                .is_some_and(|s| s.owner_floor > 0 && in_ms(s.owner_floor) >= changed_at),
        }
    }

    /// When the owner last changed `app`'s access (unix seconds).
    pub fn owner_changed_at(&self, app: &PublicKey) -> Option<u64> {
        let s = self.sessions()?;
        let paid = s.owner_at.get(app).copied();
        let free = s.nsec_app.get(app).map(|r| r.owner_at).filter(|at| *at > 0);
        paid.max(free)
    }
}

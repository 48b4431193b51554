//! What a key remembers of nsec.app's word on its apps (`NsecRecord`),
//! and how it forgets: behind a watermark, so that an older permission
//! event can never undo a newer change (`super::super::nsec_store` decides
//! what is applied).

use nostr::PublicKey;
use verifier::grant::nsecapp::AppState;

use super::{App, UserKey};

/// What a key remembers of nsec.app's last word on one app: its
/// timestamps (ms) and whether it deleted the app (the permissions live in
/// the app's grant).
#[derive(Debug, Clone, Copy)]
pub(super) struct NsecRecord {
    pub(super) updated: u64,
    pub(super) perms_updated: u64,
    pub(super) deleted: bool,
    /// When the owner last ended the grant nsec.app gave this app (unix
    /// seconds; 0: never): kept here, in memory nsec.app's state already
    /// pays for, not as an owner change, which would cost the owner's
    /// memory for a grant that cost nothing.
    pub(super) owner_at: u64,
}

impl NsecRecord {
    pub(super) fn newest(&self) -> u64 {
        self.updated.max(self.perms_updated)
    }
}

impl UserKey {
    /// What nsec.app said last about `app` (its timestamps, and whether
    /// it deleted the app), as a state to merge into.
    pub(in crate::custody) fn nsec_app(&self, app: &PublicKey) -> Option<AppState> {
        let record = self.sessions()?.nsec_app.get(app)?;
        Some(AppState {
            info: Default::default(),
            updated: record.updated,
            perms_updated: record.perms_updated,
            perms: Vec::new(),
            deleted: record.deleted,
        })
    }

    /// How many apps nsec.app's events are remembered for.
    pub(in crate::custody) fn nsec_app_count(&self) -> usize {
        self.sessions().map_or(0, |s| s.nsec_app.len())
    }

    /// Remembers what nsec.app said about `app` (its timestamps).
    pub(in crate::custody) fn keep_nsec_app(&mut self, app: PublicKey, state: &AppState) {
        let nsec = &mut self.sessions_mut().nsec_app;
        let owner_at = nsec.get(&app).map_or(0, |r| r.owner_at);
        let record = NsecRecord {
            updated: state.updated,
            perms_updated: state.perms_updated,
            deleted: state.deleted,
            owner_at,
        };
        nsec.insert(app, record);
    }

    /// Whether an event at `at` (ms) for an app with no remembered state
    /// may be older than a state forgotten.
    pub(in crate::custody) fn nsec_stale(&self, at: u64) -> bool {
        self.sessions().is_some_and(|s| at <= s.nsec_floor)
    }

    /// An event at `at` (ms) could not be remembered: events no newer, for
    /// apps with no remembered state, are not applied from now on.
    pub(in crate::custody) fn nsec_forgot(&mut self, at: u64) {
        let s = self.sessions_mut();
        s.nsec_floor = s.nsec_floor.max(at);
    }

    /// Frees some of its nsec.app memory: the largest grant nsec.app gave
    /// (the app then has nothing, and the state that says what nsec.app
    /// said stays), or with none, the oldest state (forgotten as above).
    /// The app concerned, and its grant if that went.
    pub(in crate::custody) fn evict_nsec(&mut self) -> Option<(PublicKey, Option<App>)> {
        let s = self.sessions.as_deref_mut()?;
        let largest = s
            .apps
            .iter()
            .filter(|(_, a)| a.source() == verifier::grant::wire::source::NSEC_APP)
            .max_by_key(|(_, a)| a.bytes())
            .map(|(app, _)| *app);
        if let Some(app) = largest {
            let gone = s.apps.remove(&app);
            return Some((app, gone));
        }
        self.forget_oldest_nsec()
    }

    /// Forgets the oldest nsec.app state, of an app without nsec.app's
    /// grant (a deleted one) if there is one: events no newer are then not
    /// applied for apps it remembers nothing of, an owner's revoke kept in
    /// it moves to the key's watermark, and a grant nsec.app gave that app
    /// goes too (it could no longer be undone in order: fail closed). The
    /// app, and its grant if that went.
    pub(in crate::custody) fn forget_oldest_nsec(&mut self) -> Option<(PublicKey, Option<App>)> {
        let s = self.sessions.as_deref_mut()?;
        let granted = |app: &PublicKey| {
            s.apps
                .get(app)
                .is_some_and(|a| a.source() == verifier::grant::wire::source::NSEC_APP)
        };
        let (app, record) = s
            .nsec_app
            .iter()
            .map(|(app, record)| (*app, *record))
            .min_by_key(|(app, record)| (granted(app), record.newest()))?;
        s.nsec_app.remove(&app);
        s.nsec_floor = s.nsec_floor.max(record.newest());
        s.owner_floor = s.owner_floor.max(record.owner_at);
        let from_nsec = s
            .apps
            .get(&app)
            .is_some_and(|a| a.source() == verifier::grant::wire::source::NSEC_APP);
        let gone = if from_nsec { s.apps.remove(&app) } else { None };
        Some((app, gone))
    }
}

//! The store's side of nsec.app's permission events (`verifier::grant::nsecapp`
//! for the format and the merge): what a key's events grant its apps, and
//! the memory they may take.
//!
//! Anyone who holds a key can publish its permission events, as many as
//! they like, without paying anything. So what they make the enclave keep
//! is event memory (`super::grant_memory`): at most half of the grant
//! memory, whatever owners do with the rest, and within it a fair share per
//! owned key. A key that needs room and holds less than `share / owned
//! keys` takes it from the key that holds the most, whose largest
//! nsec.app grant is dropped (that app then has nothing: fail closed),
//! then its oldest states. A key over its fair share whose event does not
//! fit fails closed the same way. Nothing is kept past the bound: a state
//! that cannot be kept is forgotten, and the key then ignores events no
//! newer than it for apps it remembers nothing of, so a replay of an older
//! event can never undo a newer one.

use nostr::PublicKey;
use verifier::grant::nsecapp::{merge, to_policy, Merged, Payload};
use verifier::grant::wire::source;
use verifier::grant::Policy;

use super::apps::App;
use super::apps::Granted;
use super::user_key::TRACKED_BYTES;
use super::KeyStore;

/// What applying one permission event did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    /// The app it names.
    pub app: PublicKey,
    /// What changed.
    pub merged: Merged,
    /// Its permissions did not fit (or were refused): the app has nothing.
    pub refused: bool,
    /// Some key's relays changed (an app that had added relays went).
    pub relays_changed: bool,
    /// nsec.app grants of other keys (key, app) dropped to make room.
    pub dropped: Vec<(PublicKey, PublicKey)>,
}

/// What the app's grant becomes.
enum Plan {
    /// Nothing changes but what is remembered.
    Keep,
    /// Its claims change.
    Claims,
    /// nsec.app's grant replaces what it had.
    Grant(Policy),
    /// It has nothing.
    Forget,
}

/// Most grants or states dropped to make room for one event.
const MAX_DROPPED: usize = 256;

impl KeyStore {
    /// Applies `user`'s nsec.app permission event `payload`. The newest
    /// change wins: a permission change replaces the app's grant unless
    /// the owner changed that grant later through the admin API, and the
    /// reverse. `None` if the key is not held (or is a test key).
    pub fn apply_nsec_app(
        &mut self,
        user: &PublicKey,
        payload: Payload,
        now: u64,
    ) -> Option<Applied> {
        let (app, at) = match &payload {
            Payload::App {
                app,
                updated,
                perms_updated,
                ..
            } => (*app, (*updated).max(*perms_updated)),
            Payload::Deleted { app, updated } => (*app, *updated),
        };
        let mut applied = Applied {
            app,
            merged: Merged::Unchanged,
            refused: false,
            relays_changed: false,
            dropped: Vec::new(),
        };
        let key = self.keys.get(user).filter(|k| k.expires_at().is_none())?;
        let known = key.nsec_app(&app);
        if known.is_none() && key.nsec_stale(at) {
            return Some(applied);
        }
        let mut state = known.clone();
        applied.merged = merge(&mut state, payload);
        let Some(state) = state.filter(|_| applied.merged != Merged::Unchanged) else {
            return Some(applied);
        };
        let changed_at = match applied.merged {
            Merged::Deleted => state.updated,
            _ => state.perms_updated,
        };
        let nsec_grant = key
            .app(&app)
            .filter(|a| a.source() == source::NSEC_APP)
            .map(App::bytes);
        let plan = match applied.merged {
            Merged::Unchanged | Merged::Info if nsec_grant.is_none() => Plan::Keep,
            Merged::Unchanged | Merged::Info => Plan::Claims,
            // The owner's change of this app stands if it is newer.
            Merged::Perms | Merged::Deleted if key.owner_later(&app, changed_at) => Plan::Keep,
            Merged::Perms => to_policy(&state).map_or(Plan::Forget, Plan::Grant),
            Merged::Deleted => Plan::Forget,
        };
        // What event memory it needs: a state for a new app, and the grant
        // (in place of nsec.app's grant it had).
        let record = if known.is_some() { 0 } else { TRACKED_BYTES };
        let added = key.app(&app).map_or(0, |a| a.added_relays().len());
        let grant = match &plan {
            Plan::Grant(policy) => App::bytes_of(policy) + added * super::apps::RELAY_BYTES,
            Plan::Forget => 0,
            Plan::Keep | Plan::Claims => nsec_grant.unwrap_or(0),
        };
        let needed = (record + grant).saturating_sub(nsec_grant.unwrap_or(0));
        if known.is_none() && key.nsec_app_count() >= self.limits.max_apps_per_key {
            // A key remembers at most as many apps as it may have: the
            // oldest state goes.
            let gone = self
                .update(user, |k| k.forget_oldest_nsec())
                .flatten()
                .and_then(|(_, gone)| gone);
            applied.relays_changed |= self.removed(user, gone).relays_changed;
        }
        let room = needed == 0 || self.make_event_room(user, needed, &mut applied);
        let limits = self.limits.clone();
        let claims = state.info.to_json();
        let since = (changed_at / 1000).min(now);
        let gone = self
            .update(user, |k| {
                let mut gone = None;
                match plan {
                    Plan::Keep => {}
                    Plan::Claims => k.set_claims(&app, &claims),
                    Plan::Grant(policy) if room => {
                        let granted = Granted::new(&policy, source::NSEC_APP);
                        if k.grant_with(app, granted, since, &limits).is_ok() {
                            k.set_claims(&app, &claims);
                        } else {
                            gone = k.forget_app(&app);
                            applied.refused = true;
                        }
                    }
                    // Refused, or it does not fit: fail closed, never
                    // leave an older, wider grant in force.
                    Plan::Grant(_) => {
                        gone = k.forget_app(&app);
                        applied.refused = true;
                    }
                    Plan::Forget => gone = k.forget_app(&app),
                }
                if room || known.is_some() {
                    k.keep_nsec_app(app, &state);
                } else {
                    k.nsec_forgot(at);
                }
                gone
            })
            .flatten();
        applied.relays_changed |= self.removed(user, gone).relays_changed;
        Some(applied)
    }

    /// Makes room for `needed` bytes of `user`'s event memory, dropping
    /// nsec.app grants (then states) of the keys that hold the most while
    /// `user` stays within its fair share; whether it fits.
    fn make_event_room(&mut self, user: &PublicKey, needed: usize, applied: &mut Applied) -> bool {
        if self.memory.event_fits(needed) {
            return true;
        }
        let fair = self.memory.event_max() / self.owned().max(1);
        let mine = self.keys.get(user).map_or(0, |k| k.memory().event);
        if mine.saturating_add(needed) > fair {
            return false;
        }
        for _ in 0..MAX_DROPPED {
            if self.memory.event_fits(needed) {
                return true;
            }
            let Some((bytes, victim)) = self.memory.largest_event() else {
                return false;
            };
            if victim == *user || bytes <= fair {
                return false;
            }
            let Some((app, gone)) = self.update(&victim, |k| k.evict_nsec()).flatten() else {
                return false;
            };
            if gone.is_some() {
                applied.dropped.push((victim, app));
            }
            applied.relays_changed |= self.removed(&victim, gone).relays_changed;
        }
        self.memory.event_fits(needed)
    }
}

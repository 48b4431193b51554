//! What an instance event and an announcement say about key continuity,
//! so that owners and clients can see it: the state an enclave keeps its
//! keys under (`["state", name]`), the custodians' launchers that hold its
//! key (`["custodian", hex]`, one each, not `p` tags: custodians are looked
//! up by `#p`, and every enclave naming one would crowd its results), and
//! when its operator abandoned an earlier state and started over
//! (`["state_reset", unix seconds]`). Appended after the format's tags;
//! clients that do not know them ignore them.

use nostr::{PublicKey, Tag};

use super::tags_named;
use crate::custodian::MAX_CUSTODIANS;
use crate::state::identity::check_name;

/// Tag names.
pub mod tag {
    /// The state's name.
    pub const STATE: &str = "state";
    /// A custodian's launcher, hex.
    pub const CUSTODIAN: &str = "custodian";
    /// When the state was started over.
    pub const STATE_RESET: &str = "state_reset";
}

/// An enclave's key continuity, as announced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Continuity {
    /// The state's name (with the launcher, its identity).
    pub state: String,
    /// The custodians' launchers.
    pub custodians: Vec<PublicKey>,
    /// When its operator abandoned the earlier state under this name.
    pub reset_at: Option<u64>,
}

impl Continuity {
    /// The tags that say it.
    pub fn tags(&self) -> Result<Vec<Tag>, nostr::event::tag::Error> {
        let mut tags = vec![Tag::parse([tag::STATE, self.state.as_str()])?];
        for c in self.custodians.iter().take(MAX_CUSTODIANS) {
            tags.push(Tag::parse([tag::CUSTODIAN, c.to_hex().as_str()])?);
        }
        if let Some(at) = self.reset_at {
            tags.push(Tag::parse([tag::STATE_RESET, at.to_string().as_str()])?);
        }
        Ok(tags)
    }

    /// What `event` says, if it names a state: `None` for an enclave that
    /// keeps no state (a restart loses its keys). A custodian or reset tag
    /// that does not read, or more custodians than a state may have, make
    /// it say nothing rather than something wrong.
    pub fn of(event: &nostr::Event) -> Option<Self> {
        let mut states = tags_named(event, tag::STATE);
        let state = states.next()?.get(1)?.clone();
        if states.next().is_some() || check_name(&state).is_err() {
            return None;
        }
        let custodians = tags_named(event, tag::CUSTODIAN)
            .take(MAX_CUSTODIANS + 1)
            .map(|t| t.get(1).and_then(|h| PublicKey::from_hex(h).ok()))
            .collect::<Option<Vec<_>>>()?;
        if custodians.is_empty() || custodians.len() > MAX_CUSTODIANS {
            return None;
        }
        let mut resets = tags_named(event, tag::STATE_RESET);
        let reset_at = match (resets.next(), resets.next()) {
            (None, _) => None,
            (Some(t), None) => Some(t.get(1)?.parse().ok()?),
            (Some(_), Some(_)) => return None,
        };
        Some(Self {
            state,
            custodians,
            reset_at,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nostr::{EventBuilder, Keys, Kind};

    fn event_with(tags: Vec<Tag>) -> nostr::Event {
        EventBuilder::new(Kind::from_u16(63793), "")
            .tags(tags)
            .sign_with_keys(&Keys::generate())
            .unwrap()
    }

    #[test]
    fn what_is_announced_reads_back_and_junk_says_nothing() {
        let c = Continuity {
            state: "main".into(),
            custodians: vec![Keys::generate().public_key(), Keys::generate().public_key()],
            reset_at: Some(1_800_000_000),
        };
        assert_eq!(
            Continuity::of(&event_with(c.tags().unwrap())),
            Some(c.clone())
        );
        let none = Continuity {
            reset_at: None,
            ..c.clone()
        };
        assert_eq!(
            Continuity::of(&event_with(none.tags().unwrap())),
            Some(none)
        );
        // No state tag: no continuity.
        assert_eq!(Continuity::of(&event_with(vec![])), None);
        // A custodian that is not a key, two states, two resets, a bad name,
        // or too many custodians: nothing.
        let mut tags = c.tags().unwrap();
        tags.push(Tag::parse(["custodian", "zz"]).unwrap());
        assert_eq!(Continuity::of(&event_with(tags)), None);
        let mut tags = c.tags().unwrap();
        tags.push(Tag::parse(["state", "other"]).unwrap());
        assert_eq!(Continuity::of(&event_with(tags)), None);
        let mut tags = c.tags().unwrap();
        tags.push(Tag::parse(["state_reset", "1"]).unwrap());
        assert_eq!(Continuity::of(&event_with(tags)), None);
        let bad = Continuity {
            state: "no spaces".into(),
            ..c.clone()
        };
        assert_eq!(Continuity::of(&event_with(bad.tags().unwrap())), None);
        let many = Continuity {
            custodians: (0..=MAX_CUSTODIANS)
                .map(|_| Keys::generate().public_key())
                .collect(),
            ..c
        };
        let mut tags = vec![Tag::parse(["state", "main"]).unwrap()];
        for k in &many.custodians {
            tags.push(Tag::parse(["custodian", k.to_hex().as_str()]).unwrap());
        }
        assert_eq!(Continuity::of(&event_with(tags)), None);
    }
}

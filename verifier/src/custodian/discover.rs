//! Finding custodians: the sealed set names launchers, and each launcher's
//! current custodian is the newest instance event, among those fetched,
//! that verifies under the caller's options (its root, and the state's
//! release policy: a custodian runs released code too) and whose launcher
//! is that one. Found by the `p … launcher` tag every instance event has.

use nostr::PublicKey;

use crate::discover::{Accept, Discovery};
use crate::event::npub;
use crate::verify::Options;

/// A custodian's current enclave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustodianInstance {
    /// The launcher (its place in the sealed set).
    pub launcher: PublicKey,
    /// The enclave's service key, which custody requests go to.
    pub service: PublicKey,
    /// Where its admin API, and so its custody requests, listen.
    pub admin_relay: String,
    /// When its instance event expires (unix seconds).
    pub expiration: u64,
}

/// Each of `launchers`' current custodian among `events`, in the order of
/// `launchers`; a launcher with none found is named in the second list,
/// with why.
pub fn current_custodians<'a>(
    events: impl IntoIterator<Item = &'a nostr::Event>,
    launchers: &[PublicKey],
    options: &Options,
) -> (Vec<CustodianInstance>, Vec<String>) {
    let accept = Accept {
        builders: Vec::new(),
        launchers: launchers.to_vec(),
    };
    let discovery = Discovery::from_events(events, options, &accept);
    let mut found = Vec::new();
    let mut missing = Vec::new();
    for launcher in launchers {
        // Newest first: the first of this launcher is its current enclave.
        let current = discovery
            .instances
            .iter()
            .find(|i| i.instance.event().pubkey == *launcher);
        match current {
            Some(i) => found.push(CustodianInstance {
                launcher: *launcher,
                service: i.event.pubkey,
                admin_relay: i.admin_relay.clone(),
                expiration: i.expiration,
            }),
            None => {
                let refused = discovery
                    .refused
                    .iter()
                    .filter(|r| {
                        r.event.tags.iter().any(|t| {
                            matches!(t.as_slice(), [p, key, role] if p == "p" && role == "launcher" && *key == launcher.to_hex())
                        })
                    })
                    .map(|r| format!("{}: {}", r.check, r.reason))
                    .next();
                missing.push(match refused {
                    Some(why) => {
                        format!("{}: its instance event is refused ({why})", npub(launcher))
                    }
                    None => format!("{}: no instance event found", npub(launcher)),
                });
            }
        }
    }
    (found, missing)
}

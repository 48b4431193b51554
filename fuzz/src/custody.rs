//! Custody requests as a custodian reads them from strangers: lines of
//! request JSON, each parsed and, if it reads, run through a fresh ledger
//! that serves the request's launcher, from two alternating requesters,
//! 50 s apart (past a lease). Whatever the lines say, every answer is a
//! reply that parses back, a claim never hands out an epoch below the one
//! that committed, and nothing is kept beyond the ledger's limits.

use verifier::custodian::ledger::{Ledger, LedgerLimits, Peer};
use verifier::custodian::message::{CustodyRequest, Reply};
use verifier::event::Mode;

use crate::support::{fixed_keys, text};

/// See the module.
pub fn custody_request(data: &[u8]) {
    let Some(text) = text(data) else {
        return;
    };
    let limits = LedgerLimits {
        max_states: 4,
        per_launcher: 2,
        ..LedgerLimits::default()
    };
    let mut ledger: Option<Ledger> = None;
    for (n, line) in text.lines().take(32).enumerate() {
        let Ok(request) = CustodyRequest::from_json(line) else {
            continue;
        };
        assert_eq!(
            CustodyRequest::from_json(&request.to_json()).ok().as_ref(),
            Some(&request),
            "a request does not survive a round trip"
        );
        let Ok(identity) = request.call.state().identity() else {
            continue;
        };
        let launcher = *identity.launcher();
        let ledger = ledger.get_or_insert_with(|| Ledger::new(limits, [launcher]));
        let peer = Peer {
            service: fixed_keys(u8::try_from(n % 2).unwrap_or(0)).public_key(),
            launcher,
            mode: Mode::Dev,
            expires_at: u64::MAX,
        };
        let reply = match ledger.policy_for(&request.call) {
            Ok(_) => ledger.handle(&peer, &request.call, n as u64 * 50_000),
            Err(refusal) => refusal.reply(),
        };
        assert_eq!(
            Reply::from_json(&reply.to_json()).ok().as_ref(),
            Some(&reply),
            "a reply does not survive a round trip"
        );
        if let Reply::Claimed(c) = &reply {
            assert!(c.commit_epoch <= c.epoch, "a claim below its commit epoch");
            assert!(c.state_key().is_ok(), "a claim hands out no key");
        }
        assert!(ledger.len() <= limits.max_states, "past the ledger's limit");
    }
}

//! Admission control on the admin API: NIP-13 proof of work
//! (<https://github.com/nostr-protocol/nips/blob/master/13.md>) on requests
//! that take a shared resource, when the enclave asks for it.
//!
//! Fresh Nostr keys cost nothing, so per-requester limits alone cannot stop
//! one stranger from filling every key slot, test-key slot or relay slot.
//! The enclave gives a free allowance of each per hour to everyone
//! together; past it, a request that allocates (a new key, a new test key,
//! a relay not yet served) must carry proof of work, and the difficulty
//! grows with how full the resource is. The error reply says how much:
//!
//! ```text
//! pow-required: 18 bits of NIP-13 proof of work on this request (new keys: 120 this hour, 61% full); send it again with a nonce tag
//! ```
//!
//! A client that understands it ([`parse_pow_required`]) mines the request
//! event again with `EventBuilder::pow` and resends; `verifier key` does.
//! The work is on the kind 24135 event's id, so it is bound to this one
//! request and cannot be reused.

use nostr::{Event, TagKind};

/// The prefix of an error reply that asks for proof of work.
pub const POW_REQUIRED: &str = "pow-required";
/// The most difficulty an enclave asks for (about 2^28 hashes).
pub const MAX_POW_BITS: u8 = 28;

/// The error reply asking for `bits` of work, saying `why`.
pub fn pow_required_error(bits: u8, why: &str) -> String {
    format!(
        "{POW_REQUIRED}: {bits} bits of NIP-13 proof of work on this request ({why}); send it again with a nonce tag"
    )
}

/// The difficulty an error reply asks for, if it asks for proof of work.
/// Refuses more than [`MAX_POW_BITS`], so a hostile enclave cannot make a
/// client spin forever.
pub fn parse_pow_required(error: &str) -> Option<u8> {
    let rest = error.strip_prefix(POW_REQUIRED)?.strip_prefix(": ")?;
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    let bits: u8 = digits.parse().ok()?;
    (bits <= MAX_POW_BITS).then_some(bits)
}

/// The proof of work an event carries: the leading zero bits of its id,
/// but no more than the target its `nonce` tag commits to (NIP-13), and
/// none without one, so an id that is lucky (one in 256 has 8 zero bits
/// by chance) does not count for more than was aimed at.
pub fn pow_bits(event: &Event) -> u8 {
    let bits = nostr::nips::nip13::get_leading_zero_bits(event.id.as_bytes());
    let committed = event
        .tags
        .iter()
        .find(|t| t.kind() == TagKind::Nonce)
        .and_then(|t| t.as_slice().get(2))
        .and_then(|target| target.parse::<u8>().ok());
    committed.map_or(0, |target| bits.min(target))
}

#[cfg(test)]
mod tests {
    use super::*;
    use nostr::{EventBuilder, Keys, Kind};

    #[test]
    fn error_round_trips_and_is_capped() {
        let e = pow_required_error(18, "new keys: 61% full");
        assert_eq!(parse_pow_required(&e), Some(18));
        assert_eq!(parse_pow_required("pow-required: 40 bits"), None);
        assert_eq!(parse_pow_required("forbidden: no"), None);
        assert_eq!(parse_pow_required("pow-required: x"), None);
    }

    #[test]
    fn counts_mined_work_up_to_the_commitment() {
        let keys = Keys::generate();
        let event = EventBuilder::new(Kind::from(24135), "x")
            .pow(8)
            .sign_with_keys(&keys)
            .unwrap();
        assert!(pow_bits(&event) >= 8);
        // Without a nonce tag committing to a target, no work is counted,
        // however many zero bits the id has by chance.
        for n in 0..300 {
            let plain = EventBuilder::new(Kind::from(24135), format!("{n}"))
                .sign_with_keys(&keys)
                .unwrap();
            assert_eq!(pow_bits(&plain), 0);
        }
    }
}

//! Why the handler drops an event without a reply.

/// Why an event was dropped without a reply (for debug logs and tests).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dropped {
    /// Neither 24133, 24135 nor 24136, nor an nsec.app permission event (30078).
    Kind,
    /// Over the size cap.
    TooLarge,
    /// Older than `max_request_age` or too far ahead.
    Stale,
    /// The signature or id does not verify.
    Signature,
    /// Already handled.
    Duplicate,
    /// Possibly handled already: the dedupe cache overflowed (a flood).
    MaybeReplayed,
    /// Authored by the service key or a held key: the enclave's own
    /// replies are never handled as requests.
    OwnEvent,
    /// Not addressed to the service key or a held key.
    NotOurs,
    /// The content does not decrypt.
    Undecryptable,
    /// The plaintext is not a request with an id.
    NotARequest,
    /// An nsec.app permission payload that does not parse or names
    /// another key than its author.
    BadPermissions,
    /// An nsec.app permission event that would make an app of the service
    /// key or of the user's own key.
    OwnKeyAsApp,
    /// Key continuity's lease is lost: a successor may serve the state.
    LeaseLost,
}

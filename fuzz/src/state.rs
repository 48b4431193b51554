//! Sealed state: a chunk as an untrusted host returns it, and snapshots
//! sealed from arbitrary plaintext.

use verifier::state::{KeyId, SealedChunk, SealedSnapshot, StateIdentity, StateKey};
use zeroize::Zeroizing;

use crate::support::fixed_keys;

/// A fixed state key, so that corpora keep their meaning.
pub fn fixed_state_key() -> StateKey {
    StateKey::from_parts(Zeroizing::new([0x5a; 32]), KeyId([0xa5; 16]))
}

/// A stored chunk: parsed, then opened under the fixed key as what it
/// says it is. A chunk parses only with a whole header, a nonce and a tag,
/// and what opens is what the fixed key sealed under that header. Then
/// the input as a whole state: sealed, stored, read back and opened, it
/// gives the same bytes.
pub fn state_chunk(data: &[u8]) {
    let key = fixed_state_key();
    if let Ok(chunk) = SealedChunk::parse(data.to_vec()) {
        // The fixed fields, a name of at least one byte, a nonce, a tag.
        let shortest = 16 + 32 + 8 + 8 + 32 + 16 + 4 + 4 + 1 + 1 + 12 + 16;
        assert!(data.len() >= shortest, "a chunk shorter than its parts");
        if let Ok(plaintext) = chunk.open(&key, &chunk.header) {
            assert_eq!(
                chunk.header.key_id,
                key.id(),
                "opened under another key's id"
            );
            let again = SealedChunk::seal(&key, chunk.header.clone(), &plaintext)
                .unwrap_or_else(|e| panic!("what opened does not seal again: {e}"));
            assert_eq!(again.open(&key, &chunk.header).ok(), Some(plaintext));
        }
    }
    let Ok(identity) = StateIdentity::new(fixed_keys(0).public_key(), "fuzz") else {
        return;
    };
    let sealed = SealedSnapshot::seal(&key, &identity, 1, 2, [3; 32], data)
        .unwrap_or_else(|e| panic!("a state of {} bytes does not seal: {e}", data.len()));
    let stored: Vec<SealedChunk> = sealed
        .chunks
        .iter()
        .filter_map(|c| SealedChunk::parse(c.bytes.clone()).ok())
        .collect();
    let opened = sealed
        .reference
        .open(&key, &stored)
        .unwrap_or_else(|e| panic!("a sealed state does not open: {e}"));
    assert_eq!(opened.as_slice(), data);
}

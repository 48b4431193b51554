//! The state key: 32 random bytes that only attested enclaves and
//! custodians hold, erased on drop and never printed.

use std::fmt;

use zeroize::Zeroizing;

use crate::error::{malformed, Error};

/// A 256-bit AES-256-GCM-SIV key for one generation of a state, with the
/// random id that commits carry so that nobody pairs a snapshot with the
/// wrong key. `Debug` shows the id only.
#[derive(Clone)]
pub struct StateKey {
    bytes: Zeroizing<[u8; 32]>,
    id: KeyId,
}

/// Names a [`StateKey`] without revealing anything of it: 16 random bytes
/// made with the key.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId(pub [u8; 16]);

impl StateKey {
    /// A fresh random key and id.
    pub fn generate() -> Result<Self, Error> {
        let mut bytes = Zeroizing::new([0u8; 32]);
        let mut id = [0u8; 16];
        aws_lc_rs::rand::fill(bytes.as_mut_slice())
            .and_then(|()| aws_lc_rs::rand::fill(&mut id))
            .map_err(|_| malformed("state key", "the random generator failed"))?;
        Ok(Self {
            bytes,
            id: KeyId(id),
        })
    }

    /// A key received from a custodian: its bytes and id.
    pub fn from_parts(bytes: Zeroizing<[u8; 32]>, id: KeyId) -> Self {
        Self { bytes, id }
    }

    /// The key's id.
    pub fn id(&self) -> KeyId {
        self.id
    }

    /// The key's bytes, for sealing and for handing to a custodian.
    pub fn bytes(&self) -> &[u8; 32] {
        &self.bytes
    }
}

impl fmt::Debug for StateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StateKey").field("id", &self.id).finish()
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({})", hex::encode(self.0))
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_random_and_never_printed() {
        let a = StateKey::generate().unwrap();
        let b = StateKey::generate().unwrap();
        assert_ne!(a.bytes(), b.bytes());
        assert_ne!(a.id(), b.id());
        let shown = format!("{a:?}");
        assert!(shown.contains(&a.id().to_string()));
        assert!(!shown.contains(&hex::encode(a.bytes())));
        assert!(!shown.contains(&format!("{:?}", a.bytes())));
    }
}

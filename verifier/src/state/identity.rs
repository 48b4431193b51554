//! Whose state it is: the launcher that runs it and the name the launcher
//! gives it (`--state-id`), so that one launcher can run several.

use std::fmt;

use nostr::PublicKey;

use crate::error::{malformed, Error};
use crate::event::npub;

/// Longest state name.
pub const MAX_NAME: usize = 64;

/// A launcher's npub and a state name of 1 to [`MAX_NAME`] characters
/// from `a-z`, `0-9`, `-`, `_` and `.`, not starting with a dot (it names
/// a folder on the parent's disk).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StateIdentity {
    launcher: PublicKey,
    name: String,
}

impl StateIdentity {
    /// Checks `name` and pairs it with `launcher`.
    pub fn new(launcher: PublicKey, name: &str) -> Result<Self, Error> {
        check_name(name)?;
        Ok(Self {
            launcher,
            name: name.to_owned(),
        })
    }

    /// The launcher's public key.
    pub fn launcher(&self) -> &PublicKey {
        &self.launcher
    }

    /// The state name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The folder name the parent stores it under:
    /// `<launcher hex>-<name>`, which no two identities share.
    pub fn folder(&self) -> String {
        format!("{}-{}", self.launcher.to_hex(), self.name)
    }
}

impl fmt::Display for StateIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", npub(&self.launcher), self.name)
    }
}

/// Checks a state name (see [`StateIdentity`]).
pub fn check_name(name: &str) -> Result<(), Error> {
    if name.is_empty() || name.len() > MAX_NAME {
        return Err(malformed(
            "state name",
            format!("must have 1 to {MAX_NAME} characters, not {}", name.len()),
        ));
    }
    if name.starts_with('.') {
        return Err(malformed("state name", "must not start with a dot"));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !matches!(c, 'a'..='z' | '0'..='9' | '-' | '_' | '.'))
    {
        return Err(malformed(
            "state name",
            format!("{c:?} is not one of a-z, 0-9, '-', '_' and '.'"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_safe_folder_names() {
        let launcher = nostr::Keys::generate().public_key();
        for good in ["main", "a", "prod-1", "x_y.z", &"a".repeat(MAX_NAME)] {
            let id = StateIdentity::new(launcher, good).unwrap();
            assert_eq!(id.folder(), format!("{}-{good}", launcher.to_hex()));
        }
        for bad in [
            "",
            ".",
            "..",
            ".hidden",
            "a/b",
            "a\\b",
            "A",
            "é",
            "a b",
            "a\0",
            &"a".repeat(MAX_NAME + 1),
        ] {
            assert!(StateIdentity::new(launcher, bad).is_err(), "{bad:?}");
        }
    }
}

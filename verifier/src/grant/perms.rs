//! Permissions in NIP-46's `perms` syntax: `method[:param]`, comma-separated.
//!
//! - `sign_event:<kind>` or `sign_event:<from>-<to>`: kinds are always
//!   named; a bare `sign_event` is refused in a grant. NIP-98 HTTP auth
//!   (kind 27235) is never covered by a range, only by `sign_event:27235`.
//! - `nip04_encrypt`, `nip04_decrypt`, `nip44_encrypt`, `nip44_decrypt`,
//!   each optionally scoped to one peer: `nip44_decrypt:<peer pubkey hex>`.
//! - `get_public_key`, `ping`, `switch_relays`, `logout`, `connect`: the
//!   session's plumbing. They reveal nothing secret and sign nothing, so a
//!   connected app may always call them; naming them is accepted.
//! - `basic`: nsec.app's basic set (expanded when parsed); `full`: every
//!   method and kind; `none`: only the plumbing (what is left when an app
//!   asks for nothing it was granted).
//!
//! What an app asks for in `connect` is read leniently
//! ([`Perms::parse_requested`]: unknown entries are skipped, a bare
//! `sign_event` means any kind) and can only narrow a grant
//! ([`Perms::narrow`]), never widen it.

use std::fmt;

use nostr::PublicKey;

/// Longest perms string read.
pub const MAX_PERMS_TEXT: usize = 4096;
/// Most entries in a grant.
pub const MAX_PERMS: usize = 64;
/// Longest perms text read back from sealed state: [`MAX_PERMS`] entries of
/// the longest kind (`nip44_decrypt:` and a 64-digit peer) and commas.
pub const MAX_STORED_PERMS_TEXT: usize = MAX_PERMS * 80;
/// NIP-98 HTTP auth: only ever granted by name.
pub const KIND_HTTP_AUTH: u16 = 27235;

/// The kinds of nsec.app's `basic` set.
pub const BASIC_KINDS: [u16; 10] = [0, 1, 3, 6, 7, 9734, 10002, 30023, 10000, 27235];

/// A NIP-46 method a grant can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Method {
    /// `connect`.
    Connect,
    /// `get_public_key`.
    GetPublicKey,
    /// `ping`.
    Ping,
    /// `switch_relays`.
    SwitchRelays,
    /// `logout`.
    Logout,
    /// `sign_event`.
    SignEvent,
    /// `nip04_encrypt`.
    Nip04Encrypt,
    /// `nip04_decrypt`.
    Nip04Decrypt,
    /// `nip44_encrypt`.
    Nip44Encrypt,
    /// `nip44_decrypt`.
    Nip44Decrypt,
}

impl Method {
    /// Every method, in wire order.
    pub const ALL: [Self; 10] = [
        Self::Connect,
        Self::GetPublicKey,
        Self::SignEvent,
        Self::Ping,
        Self::Nip04Encrypt,
        Self::Nip04Decrypt,
        Self::Nip44Encrypt,
        Self::Nip44Decrypt,
        Self::SwitchRelays,
        Self::Logout,
    ];

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Connect => "connect",
            Self::GetPublicKey => "get_public_key",
            Self::Ping => "ping",
            Self::SwitchRelays => "switch_relays",
            Self::Logout => "logout",
            Self::SignEvent => "sign_event",
            Self::Nip04Encrypt => "nip04_encrypt",
            Self::Nip04Decrypt => "nip04_decrypt",
            Self::Nip44Encrypt => "nip44_encrypt",
            Self::Nip44Decrypt => "nip44_decrypt",
        }
    }

    /// The method named `name`.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.as_str() == name)
    }

    /// Session plumbing every connected app may call.
    pub fn always_allowed(self) -> bool {
        matches!(
            self,
            Self::Connect | Self::GetPublicKey | Self::Ping | Self::SwitchRelays | Self::Logout
        )
    }

    /// Takes a peer parameter (`nip04_*`, `nip44_*`).
    pub fn has_peer(self) -> bool {
        matches!(
            self,
            Self::Nip04Encrypt | Self::Nip04Decrypt | Self::Nip44Encrypt | Self::Nip44Decrypt
        )
    }

    /// Counted by rate limits and use counts: signing and decryption.
    pub fn is_counted(self) -> bool {
        matches!(
            self,
            Self::SignEvent | Self::Nip04Decrypt | Self::Nip44Decrypt
        )
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One permission.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Perm {
    /// A method without a parameter (plumbing, or any peer for `nip*`).
    Method(Method),
    /// `sign_event` of kinds `from..=to` (one kind when equal).
    Kinds(u16, u16),
    /// A `nip04_*`/`nip44_*` method with one peer only (its x-only key bytes).
    Peer(Method, [u8; 32]),
}

impl Perm {
    /// Whether this permission covers `method` of `kind` with `peer`.
    pub fn covers(&self, method: Method, kind: Option<u16>, peer: Option<&PublicKey>) -> bool {
        match *self {
            // `sign_event` without kinds: only in what an app asks for.
            Self::Method(m) => m == method,
            Self::Kinds(from, to) => {
                method == Method::SignEvent
                    && kind.is_some_and(|k| {
                        (from..=to).contains(&k) && (k != KIND_HTTP_AUTH || from == to)
                    })
            }
            Self::Peer(m, bytes) => m == method && peer.is_some_and(|p| p.to_bytes() == bytes),
        }
    }

    fn parse(entry: &str, lenient: bool) -> Result<Option<Self>, String> {
        let (name, param) = match entry.split_once(':') {
            Some((name, param)) => (name.trim(), Some(param.trim())),
            None => (entry, None),
        };
        let Some(method) = Method::from_name(name) else {
            return if lenient {
                Ok(None)
            } else {
                Err(format!("unknown permission {:?}", short(entry)))
            };
        };
        match (method, param) {
            (Method::SignEvent, None | Some("")) if lenient => Ok(Some(Self::Method(method))),
            (Method::SignEvent, None | Some("")) => Err(
                "sign_event needs its kinds, like sign_event:1 or sign_event:30000-39999".into(),
            ),
            (Method::SignEvent, Some(kinds)) => {
                let bad = |s: &str| match s.trim().parse::<u64>() {
                    Ok(n) if n > u64::from(u16::MAX) => format!(
                        "{:?}: kind {n} is past the largest kind, {}",
                        short(entry),
                        u16::MAX
                    ),
                    _ => format!("{:?}: not a kind or a kind range", short(entry)),
                };
                let kind = |s: &str| s.trim().parse::<u16>().map_err(|_| bad(s));
                let range = match kinds.split_once('-') {
                    Some((a, b)) => kind(a).and_then(|a| Ok((a, kind(b)?))),
                    None => kind(kinds).map(|k| (k, k)),
                };
                match range {
                    Ok((from, to)) if from <= to => Ok(Some(Self::Kinds(from, to))),
                    // An app's request is read for what it can mean.
                    _ if lenient => Ok(None),
                    Ok(_) => Err(format!("{:?}: the range is backwards", short(entry))),
                    Err(e) => Err(e),
                }
            }
            (m, None | Some("")) => Ok(Some(Self::Method(m))),
            (m, Some(peer)) if m.has_peer() => match PublicKey::from_hex(peer) {
                Ok(p) => Ok(Some(Self::Peer(m, p.to_bytes()))),
                Err(_) if lenient => Ok(None),
                Err(_) => Err(format!(
                    "{:?}: the peer is not a hex public key",
                    short(entry)
                )),
            },
            // Other parameters mean nothing to us: a lenient read keeps
            // the method, a grant refuses the entry.
            (m, Some(_)) if lenient => Ok(Some(Self::Method(m))),
            (m, Some(_)) => Err(format!("{m} takes no parameter")),
        }
    }

    /// The part of `self` that `other` also covers.
    fn intersect(&self, other: &Self) -> Option<Self> {
        match (*self, *other) {
            // A bare `sign_event` (only ever read from an app's request)
            // covers every kind: the other side's kinds stay.
            (Self::Method(Method::SignEvent), k @ Self::Kinds(..))
            | (k @ Self::Kinds(..), Self::Method(Method::SignEvent)) => Some(k),
            (Self::Method(a), Self::Method(b)) => (a == b).then_some(*self),
            (Self::Method(a), p @ Self::Peer(b, _)) | (p @ Self::Peer(b, _), Self::Method(a)) => {
                (a == b).then_some(p)
            }
            (Self::Peer(a, p), Self::Peer(b, q)) => (a == b && p == q).then_some(*self),
            (Self::Kinds(a, b), Self::Kinds(c, d)) => {
                let (from, to) = (a.max(c), b.min(d));
                // A range never covers NIP-98, so what is left of two
                // kinds sets covers it only if both name it.
                let named = |x: u16, y: u16| x == y && x == KIND_HTTP_AUTH;
                if from > to
                    || (from == to && from == KIND_HTTP_AUTH && !(named(a, b) && named(c, d)))
                {
                    return None;
                }
                Some(Self::Kinds(from, to))
            }
            _ => None,
        }
    }
}

impl fmt::Display for Perm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Method(m) => write!(f, "{m}"),
            Self::Kinds(a, b) if a == b => write!(f, "sign_event:{a}"),
            Self::Kinds(a, b) => write!(f, "sign_event:{a}-{b}"),
            Self::Peer(m, bytes) => write!(f, "{m}:{}", hex::encode(bytes)),
        }
    }
}

/// What a grant allows.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Perms {
    /// Every method and kind (`full`).
    Full,
    /// Exactly these, sorted and without duplicates.
    Listed(Vec<Perm>),
}

impl Perms {
    /// Parses a grant: unknown methods and a bare `sign_event` are errors.
    pub fn parse(text: &str) -> Result<Self, String> {
        Self::read(text, false)
    }

    /// Reads the perms an app asks for: unknown entries are skipped, a
    /// bare `sign_event` means any kind. Empty means "no narrowing".
    pub fn parse_requested(text: &str) -> Option<Self> {
        let mut end = text.len().min(MAX_PERMS_TEXT);
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        // Only the characters read: what is cut off is not asked for.
        let text = text.get(..end).unwrap_or_default();
        Self::read(text, true).ok()
    }

    /// Reads a grant as this code wrote it ([`Self::to_string`], in sealed
    /// state): as [`Self::parse`], but the text may be as long as
    /// [`MAX_PERMS`] of the longest entries, since narrowing can make a
    /// grant's text longer than what was asked for (a kind range cut into
    /// pieces, every peer spelled out).
    pub fn parse_stored(text: &str) -> Result<Self, String> {
        Self::read_capped(text, false, MAX_STORED_PERMS_TEXT)
    }

    fn read(text: &str, lenient: bool) -> Result<Self, String> {
        Self::read_capped(text, lenient, MAX_PERMS_TEXT)
    }

    fn read_capped(text: &str, lenient: bool, cap: usize) -> Result<Self, String> {
        if text.len() > cap {
            return Err(format!("a perms list is at most {cap} characters"));
        }
        let entries: Vec<&str> = text
            .split(',')
            .map(str::trim)
            .filter(|e| !e.is_empty())
            .collect();
        if entries.is_empty() {
            return Err("no permissions named (use --full-access for everything)".into());
        }
        if entries.contains(&"none") {
            if entries.len() > 1 && !lenient {
                return Err(
                    "`none` grants only the session's plumbing: name nothing else with it".into(),
                );
            }
            return Ok(Self::Listed(Vec::new()));
        }
        if entries.contains(&"full") {
            if entries.len() > 1 && !lenient {
                return Err("`full` already grants everything: name nothing else with it".into());
            }
            return Ok(Self::Full);
        }
        let mut perms = Vec::new();
        for entry in entries {
            if entry == "basic" {
                perms.extend(basic());
            } else if let Some(perm) = Perm::parse(entry, lenient)? {
                perms.push(perm);
            }
        }
        let mut perms = normalize(perms);
        if perms.len() > MAX_PERMS {
            if !lenient {
                return Err(format!("at most {MAX_PERMS} permissions in a grant"));
            }
            // Asking for fewer only ever narrows more.
            perms.truncate(MAX_PERMS);
        }
        Ok(Self::Listed(perms))
    }

    /// A grant of exactly `perms` (normalized; at most [`MAX_PERMS`]
    /// entries kept, which only ever allows less).
    pub fn from_list(perms: Vec<Perm>) -> Self {
        let mut perms = normalize(
            perms
                .into_iter()
                .filter(|p| *p != Perm::Method(Method::SignEvent))
                .collect(),
        );
        perms.truncate(MAX_PERMS);
        Self::Listed(perms)
    }

    /// Whether this grants everything.
    pub fn is_full(&self) -> bool {
        matches!(self, Self::Full)
    }

    /// Whether `method` of `kind` with `peer` is allowed (before conditions).
    pub fn allows(&self, method: Method, kind: Option<u16>, peer: Option<&PublicKey>) -> bool {
        match self {
            Self::Full => true,
            Self::Listed(_) if method.always_allowed() => true,
            Self::Listed(perms) => perms.iter().any(|p| p.covers(method, kind, peer)),
        }
    }

    /// Whether a listed grant names `peer` itself for `method` (not only
    /// "any peer"); full access names no peer.
    pub fn names_peer(&self, method: Method, peer: Option<&PublicKey>) -> bool {
        let Some(peer) = peer else {
            return false;
        };
        match self {
            Self::Full => false,
            Self::Listed(perms) => perms.iter().any(
                |p| matches!(p, Perm::Peer(m, bytes) if *m == method && *bytes == peer.to_bytes()),
            ),
        }
    }

    /// This grant narrowed to what `asked` also covers (`None`: not narrowed).
    pub fn narrow(&self, asked: Option<&Self>) -> Self {
        match (self, asked) {
            (_, None) | (_, Some(Self::Full)) => self.clone(),
            // Full access narrowed: what is asked, a bare `sign_event`
            // spelled out as every kind (NIP-98 named, as full covers it).
            (Self::Full, Some(Self::Listed(asked))) => {
                let kept: Vec<Perm> = asked
                    .iter()
                    .flat_map(|p| match p {
                        Perm::Method(Method::SignEvent) => {
                            vec![
                                Perm::Kinds(0, u16::MAX),
                                Perm::Kinds(KIND_HTTP_AUTH, KIND_HTTP_AUTH),
                            ]
                        }
                        p => vec![*p],
                    })
                    .collect();
                let mut kept = normalize(kept);
                kept.truncate(MAX_PERMS);
                Self::Listed(kept)
            }
            (Self::Listed(mine), Some(Self::Listed(theirs))) => {
                // Both sides are normalized (disjoint kind ranges), so
                // there are at most as many pieces as entries on both.
                let kept: Vec<Perm> = mine
                    .iter()
                    .flat_map(|m| theirs.iter().filter_map(|t| m.intersect(t)))
                    // A bare `sign_event` is only ever an app's request,
                    // never part of a grant.
                    .filter(|p| *p != Perm::Method(Method::SignEvent))
                    .collect();
                let mut kept = normalize(kept);
                // Fewer entries only ever allow less.
                kept.truncate(MAX_PERMS);
                Self::Listed(kept)
            }
        }
    }

    /// In words: `every method and kind`, or what is listed.
    pub fn describe(&self) -> String {
        match self {
            Self::Full => "full access: every method and every kind".into(),
            Self::Listed(perms) => super::words::describe_perms(perms),
        }
    }
}

impl fmt::Display for Perms {
    /// The form [`Perms::parse`] reads back.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Full => f.write_str("full"),
            Self::Listed(perms) if perms.is_empty() => f.write_str("none"),
            Self::Listed(perms) => {
                let parts: Vec<String> = perms.iter().map(Perm::to_string).collect();
                f.write_str(&parts.join(","))
            }
        }
    }
}

/// `perms` sorted, without duplicates, with kind ranges merged into
/// disjoint ones (`sign_event:1,sign_event:2` is `sign_event:1-2`) and
/// entries another covers dropped. A kind 27235 named alone stays apart:
/// merging it into a range would stop it being covered.
fn normalize(perms: Vec<Perm>) -> Vec<Perm> {
    let bare = perms.contains(&Perm::Method(Method::SignEvent));
    let mut ranges: Vec<(u16, u16)> = Vec::new();
    let mut out: Vec<Perm> = Vec::new();
    for p in &perms {
        match *p {
            Perm::Kinds(_, _) if bare => {}
            Perm::Kinds(KIND_HTTP_AUTH, KIND_HTTP_AUTH) => out.push(*p),
            Perm::Kinds(a, b) => ranges.push((a, b)),
            Perm::Peer(m, _) if perms.contains(&Perm::Method(m)) => {}
            _ => out.push(*p),
        }
    }
    ranges.sort_unstable();
    let mut merged: Vec<(u16, u16)> = Vec::new();
    for (a, b) in ranges {
        match merged.last_mut() {
            Some(last) if u32::from(a) <= u32::from(last.1) + 1 => last.1 = last.1.max(b),
            _ => merged.push((a, b)),
        }
    }
    out.extend(merged.into_iter().map(|(a, b)| Perm::Kinds(a, b)));
    out.sort();
    out.dedup();
    out
}

/// nsec.app's basic set.
pub(crate) fn basic() -> Vec<Perm> {
    let mut perms: Vec<Perm> = [
        Method::Connect,
        Method::GetPublicKey,
        Method::Nip04Encrypt,
        Method::Nip04Decrypt,
        Method::Nip44Encrypt,
        Method::Nip44Decrypt,
    ]
    .into_iter()
    .map(Perm::Method)
    .collect();
    perms.extend(BASIC_KINDS.iter().map(|k| Perm::Kinds(*k, *k)));
    perms
}

/// At most 40 characters of `s`, for error messages.
fn short(s: &str) -> String {
    let mut out: String = s.chars().take(40).collect();
    if out.len() < s.len() {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests;

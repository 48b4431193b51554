//! Mining NIP-13 proof of work on a request, on every core.
//!
//! An event's id is the SHA-256 of `[0,pubkey,created_at,kind,tags,content]`
//! serialized as nostr does. The nonce tag goes last among the tags, so
//! each try hashes a fixed prefix (kept as a SHA-256 state), the nonce's
//! digits and a fixed suffix, instead of serializing the whole event
//! again: several times faster per core than `EventBuilder::pow`, and every
//! core works. `created_at` moves with the clock while mining (NIP-13 lets
//! it), so the request is fresh when it is sent however long the work took.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{SystemTime, UNIX_EPOCH};

use nostr::{Kind, PublicKey, Tag, Tags, Timestamp, UnsignedEvent};
use sha2::{Digest, Sha256};

/// Tries between two looks at the clock (and at whether another thread won).
const BATCH: u64 = 1 << 14;

/// `kind`, `tags` and `content` by `pubkey`, with a `nonce` tag that gives
/// its id at least `bits` leading zero bits, mined on `threads` threads
/// (every core if 0).
pub fn mine(
    pubkey: PublicKey,
    kind: Kind,
    tags: Vec<Tag>,
    content: &str,
    bits: u8,
    threads: usize,
) -> UnsignedEvent {
    if Template::new(pubkey, now(), kind, &tags, content, bits).is_none() {
        // Content that holds this miner's own mark of the nonce: the slow
        // way, which serializes the whole event for every try.
        return nostr::EventBuilder::new(kind, content)
            .tags(tags)
            .pow(bits)
            .build(pubkey);
    }
    let threads = if threads == 0 {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    } else {
        threads
    };
    let found = AtomicBool::new(false);
    let (tx, rx) = mpsc::channel();
    std::thread::scope(|scope| {
        for start in 0..threads {
            let (tx, found, tags) = (tx.clone(), &found, tags.clone());
            scope.spawn(move || {
                let mut nonce = start as u64;
                while !found.load(Ordering::Relaxed) {
                    let created_at = now();
                    let Some(template) =
                        Template::new(pubkey, created_at, kind, &tags, content, bits)
                    else {
                        return;
                    };
                    for _ in 0..BATCH {
                        if template.id_bits(nonce) >= bits {
                            found.store(true, Ordering::Relaxed);
                            let _ = tx.send((nonce, created_at));
                            return;
                        }
                        nonce = nonce.wrapping_add(threads as u64);
                    }
                }
            });
        }
    });
    drop(tx);
    // Every thread returned, one with a nonce (a template was made above;
    // with the same content and tags it is made again).
    let (nonce, created_at) = rx.recv().unwrap_or((0, now()));
    let mut tags = tags;
    tags.push(Tag::pow(u128::from(nonce), bits));
    let mut unsigned = UnsignedEvent::new(pubkey, Timestamp::from(created_at), kind, tags, content);
    unsigned.ensure_id();
    unsigned
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The serialized event split around the nonce's digits.
struct Template {
    prefix: Sha256,
    suffix: Vec<u8>,
}

/// Stands for the nonce in the serialized event: digits never appear
/// around it, and it cannot be in a hex key or a number.
const MARK: &str = "\u{1}nonce\u{1}";

impl Template {
    fn new(
        pubkey: PublicKey,
        created_at: u64,
        kind: Kind,
        tags: &[Tag],
        content: &str,
        bits: u8,
    ) -> Option<Self> {
        let mut tags: Vec<Tag> = tags.to_vec();
        tags.push(Tag::parse(["nonce".to_owned(), MARK.to_owned(), bits.to_string()]).ok()?);
        let json = serde_json::json!([
            0,
            pubkey,
            Timestamp::from(created_at),
            kind,
            Tags::from_list(tags),
            content
        ])
        .to_string();
        let mark = serde_json::to_string(MARK).ok()?;
        let mark = mark.get(1..mark.len() - 1)?;
        let (before, after) = json.split_once(mark)?;
        if after.contains(mark) {
            return None;
        }
        let mut prefix = Sha256::new();
        prefix.update(before.as_bytes());
        Some(Self {
            prefix,
            suffix: after.as_bytes().to_vec(),
        })
    }

    /// The leading zero bits of the id with `nonce`.
    fn id_bits(&self, nonce: u64) -> u8 {
        let mut buf = [0u8; 20];
        let mut hash = self.prefix.clone();
        hash.update(decimal(nonce, &mut buf));
        hash.update(&self.suffix);
        let id: [u8; 32] = hash.finalize().into();
        leading_zero_bits(&id)
    }
}

/// `n` in decimal, written at the end of `buf`.
fn decimal(mut n: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut at = buf.len();
    loop {
        at -= 1;
        if let Some(digit) = buf.get_mut(at) {
            *digit = b'0' + (n % 10) as u8;
        }
        n /= 10;
        if n == 0 || at == 0 {
            break;
        }
    }
    buf.get(at..).unwrap_or_default()
}

fn leading_zero_bits(bytes: &[u8]) -> u8 {
    let mut bits = 0u32;
    for byte in bytes {
        if *byte == 0 {
            bits += 8;
        } else {
            bits += byte.leading_zeros();
            break;
        }
    }
    u8::try_from(bits).unwrap_or(u8::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use nostr::{EventId, Keys};

    /// The id of `unsigned` as nostr computes it.
    fn id_of(unsigned: &UnsignedEvent) -> EventId {
        EventId::new(
            &unsigned.pubkey,
            &unsigned.created_at,
            &unsigned.kind,
            &unsigned.tags,
            &unsigned.content,
        )
    }

    #[test]
    fn nonces_are_written_in_decimal() {
        let mut buf = [0u8; 20];
        for n in [0, 7, 10, 12_345, u64::MAX] {
            assert_eq!(decimal(n, &mut buf), n.to_string().as_bytes());
        }
    }

    #[test]
    fn mined_events_carry_the_work_and_sign() {
        let keys = Keys::generate();
        let peer = Keys::generate().public_key();
        let content = "an \"escaped\" content\nwith ünïcode and \\ backslashes";
        for threads in [1, 2] {
            let unsigned = mine(
                keys.public_key(),
                Kind::from(24135),
                vec![Tag::public_key(peer)],
                content,
                10,
                threads,
            );
            let id = unsigned.id.unwrap();
            assert_eq!(id, id_of(&unsigned));
            assert!(nostr::nips::nip13::get_leading_zero_bits(id.as_bytes()) >= 10);
            let event = unsigned.sign_with_keys(&keys).unwrap();
            event.verify().unwrap();
            assert!(crate::rpc::admission::pow_bits(&event) >= 10);
        }
        // Content that holds the miner's mark is mined the slow way.
        let marked = format!("x{MARK}y");
        let unsigned = mine(keys.public_key(), Kind::from(1), Vec::new(), &marked, 8, 0);
        let event = unsigned.sign_with_keys(&keys).unwrap();
        assert!(crate::rpc::admission::pow_bits(&event) >= 8);
    }
}

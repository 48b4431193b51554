//! The stateful target: sequences of events, validly signed by a few fixed
//! keys so that they get past the signature check, fed to
//! `Signer::handle`, with the signer's invariants checked after each.
//!
//! The keys: 0 and 1 are owners (their keys get imported), 2 and 3 apps, 4
//! a stranger, 5 the service key itself. Requests may name keys by token
//! (`$sk0` secret hex, `$pk2` public hex, `$relay`, `$now`) so that valid
//! imports, grants and signatures are within reach of the fuzzer.

use std::collections::HashSet;
use std::sync::OnceLock;

use enclave::custody::{AdmissionLimits, Limits};
use enclave::signer::{Outcome, Signer, SignerConfig};
use nostr::{Event, EventBuilder, EventId, Keys, Kind, PublicKey, RelayUrl, Tag, Timestamp};
use verifier::event::{KIND_ADMIN, KIND_NIP46};
use verifier::rpc::cipher::{Conversation, Scheme};
use verifier::rpc::{open_response, Params, Request};

use crate::support::fixed_keys;

/// The most keys the signer under test may hold.
const MAX_KEYS: usize = 2;
/// The most test keys it may hold.
const MAX_TEST_KEYS: usize = 1;
/// Where every event arrives from.
const RELAY: &str = "ws://127.0.0.1:7777";
/// The clock at the start of every sequence.
const START: u64 = 1_800_000_000;
/// The longest sequence read.
const MAX_OPS: usize = 24;

const NIP46_METHODS: &[&str] = &[
    "connect",
    "get_public_key",
    "sign_event",
    "nip44_encrypt",
    "nip44_decrypt",
    "nip04_encrypt",
    "nip04_decrypt",
    "ping",
    "logout",
    "switch_relays",
];
const ADMIN_METHODS: &[&str] = &[
    "ping",
    "has_key",
    "import_key",
    "connect_key",
    "delete_key",
    "generate_test_key",
    "create_bunker_url",
    "revoke_app",
    "grant",
    "list_apps",
    "get_log",
    "nostrconnect",
];

/// One step of a sequence: a line of tab-separated fields.
///
/// - `req FROM TO SCHEME METHOD PARAM…`: a request from key FROM to key TO
///   (`admin`: to the service key, kind 24135), SCHEME `44` or `04`, METHOD
///   a name (or a number: the n-th known method);
/// - `raw FROM TO KIND CONTENT`: a signed event with a `p` tag;
/// - `replay N`: the N-th event handled so far, again;
/// - `echo N`: the N-th event the signer sent, fed back to it;
/// - `wait SECS`: time passes.
#[derive(Debug)]
enum Op<'a> {
    Request {
        from: usize,
        to: Option<usize>,
        nip04: bool,
        method: &'a str,
        params: Vec<&'a str>,
    },
    Raw {
        from: usize,
        to: usize,
        kind: u16,
        content: &'a str,
    },
    Replay(usize),
    Echo(usize),
    Wait(u64),
}

fn number(field: Option<&str>) -> usize {
    field.and_then(|f| f.trim().parse().ok()).unwrap_or(0)
}

impl<'a> Op<'a> {
    fn parse(line: &'a str) -> Option<Self> {
        let mut f = line.split('\t');
        Some(match f.next()? {
            "req" => {
                let from = number(f.next());
                let to = match f.next()? {
                    "admin" => None,
                    n => Some(number(Some(n))),
                };
                let nip04 = f.next()? == "04";
                let name = f.next()?;
                let methods = if to.is_none() {
                    ADMIN_METHODS
                } else {
                    NIP46_METHODS
                };
                let method = match name.parse::<usize>() {
                    Ok(i) => methods[i % methods.len()],
                    Err(_) => name,
                };
                Op::Request {
                    from,
                    to,
                    nip04,
                    method,
                    params: f.take(8).collect(),
                }
            }
            "raw" => Op::Raw {
                from: number(f.next()),
                to: number(f.next()),
                kind: u16::try_from(number(f.next())).unwrap_or(u16::MAX),
                content: f.next().unwrap_or_default(),
            },
            "replay" => Op::Replay(number(f.next())),
            "echo" => Op::Echo(number(f.next())),
            "wait" => Op::Wait(u64::try_from(number(f.next())).unwrap_or(0).min(1 << 32)),
            _ => return None,
        })
    }
}

struct Party {
    keys: Vec<Keys>,
    relay: RelayUrl,
}

fn party() -> &'static Party {
    static PARTY: OnceLock<Party> = OnceLock::new();
    PARTY.get_or_init(|| Party {
        keys: (0..6).map(fixed_keys).collect(),
        relay: match RelayUrl::parse(RELAY) {
            Ok(r) => r,
            Err(e) => panic!("relay URL: {e}"),
        },
    })
}

fn expand(param: &str, now: u64) -> String {
    let p = party();
    let mut out = param
        .replace("$relay", RELAY)
        .replace("$now", &now.to_string());
    for (i, k) in p.keys.iter().enumerate() {
        out = out
            .replace(&format!("$sk{i}"), &k.secret_key().to_secret_hex())
            .replace(&format!("$pk{i}"), &k.public_key().to_hex());
    }
    out
}

/// Feeds the input's operations to a fresh signer, checking after each.
pub fn signer_sequence(data: &[u8]) {
    let _ = run_sequence(data);
}

/// What a sequence reached (to show that seeds get past the checks).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Reached {
    /// Events handled.
    pub handled: usize,
    /// Replies sent, error replies included.
    pub replies: usize,
    /// Replies that were not errors.
    pub ok_replies: usize,
    /// Keys held at the end.
    pub keys: usize,
}

/// [`signer_sequence`], returning what it reached.
pub fn run_sequence(data: &[u8]) -> Reached {
    let mut reached = Reached::default();
    let Some(text) = crate::support::text(data) else {
        return reached;
    };
    let p = party();
    let service = p.keys[5].clone();
    let config = SignerConfig {
        limits: Limits {
            max_keys: MAX_KEYS,
            max_test_keys: MAX_TEST_KEYS,
            admission: AdmissionLimits::off(),
            ..Default::default()
        },
        ..Default::default()
    };
    let signer = Signer::new(service.clone(), p.relay.clone(), config);
    let mut now = START;
    let mut handled: Vec<Event> = Vec::new();
    let mut replies: Vec<Event> = Vec::new();
    let mut answered: HashSet<EventId> = HashSet::new();
    for op in text.lines().take(MAX_OPS).filter_map(Op::parse) {
        let (event, request) = match op {
            Op::Wait(secs) => {
                now += secs;
                continue;
            }
            Op::Replay(n) => match pick(&handled, n) {
                Some(e) => (e, None),
                None => continue,
            },
            Op::Echo(n) => match pick(&replies, n) {
                Some(e) => (e, None),
                None => continue,
            },
            Op::Request {
                from,
                to,
                nip04,
                method,
                params,
            } => {
                let params: Vec<String> = params.iter().map(|s| expand(s, now)).collect();
                let request = Request::new(method, Params::new(params));
                let from = key(from);
                let (to, kind) = match to {
                    None => (service.public_key(), KIND_ADMIN),
                    Some(n) => (key(n).public_key(), KIND_NIP46),
                };
                let scheme = if nip04 { Scheme::Nip04 } else { Scheme::Nip44 };
                match seal_at(from, &to, kind, &request, scheme, now) {
                    Some(e) => (e, Some(request)),
                    None => continue,
                }
            }
            Op::Raw {
                from,
                to,
                kind,
                content,
            } => {
                let Ok(e) = EventBuilder::new(Kind::from(kind), content)
                    .tag(Tag::public_key(key(to).public_key()))
                    .custom_created_at(Timestamp::from(now))
                    .sign_with_keys(key(from))
                else {
                    continue;
                };
                (e, None)
            }
        };
        let held_before = signer.store().holds(&event.pubkey);
        let outcome = signer.handle(&event, &p.relay, now);
        check(
            &signer,
            &event,
            held_before,
            request.as_ref(),
            &outcome,
            &mut answered,
        );
        reached.handled += 1;
        if let Some(reply) = &outcome.reply {
            reached.replies += 1;
            let sender = party().keys.iter().find(|k| k.public_key() == event.pubkey);
            if sender
                .and_then(|k| open_response(k, &reply.event).ok())
                .is_some_and(|r| !r.is_error())
            {
                reached.ok_replies += 1;
            }
            replies.push(reply.event.clone());
        }
        if let Some(also) = &outcome.also {
            replies.push(also.event.clone());
        }
        handled.push(event);
    }
    reached.keys = signer.store().len();
    reached
}

/// A request event as `seal_request` makes it, created at `now`.
fn seal_at(
    from: &Keys,
    to: &PublicKey,
    kind: u16,
    request: &Request,
    scheme: Scheme,
    now: u64,
) -> Option<Event> {
    let conversation = Conversation::new(scheme, from.secret_key(), to).ok()?;
    let content = conversation.encrypt(&request.to_json()).ok()?;
    EventBuilder::new(Kind::from(kind), content)
        .tag(Tag::public_key(*to))
        .custom_created_at(Timestamp::from(now))
        .sign_with_keys(from)
        .ok()
}

fn pick(events: &[Event], n: usize) -> Option<Event> {
    if events.is_empty() {
        return None;
    }
    events.get(n % events.len()).cloned()
}

fn key(n: usize) -> &'static Keys {
    let keys = &party().keys;
    &keys[n % keys.len()]
}

/// The invariants after handling `event`.
fn check(
    signer: &Signer,
    event: &Event,
    held_before: bool,
    request: Option<&Request>,
    outcome: &Outcome,
    answered: &mut HashSet<EventId>,
) {
    let p = party();
    let service = signer.service_key();
    let store = signer.store();
    let tests = store.test_key_count();
    assert!(
        tests <= MAX_TEST_KEYS,
        "{tests} test keys held, over the limit"
    );
    assert!(
        store.len() - tests <= MAX_KEYS,
        "{} keys held, over the limit",
        store.len() - tests
    );
    // Keys the enclave uses never become a peer: the service key never
    // makes requests, and a held key makes admin requests (its owner's)
    // but never NIP-46 ones, so no reply is ever answered.
    if event.pubkey == service || (event.kind == Kind::from(KIND_NIP46) && held_before) {
        assert!(
            outcome.reply.is_none() && outcome.also.is_none(),
            "answered an event by its own key {}",
            event.pubkey
        );
    }
    let is_nostrconnect =
        request.is_some_and(|r| r.method == "nostrconnect") && event.kind == Kind::from(KIND_ADMIN);
    if let Some(also) = &outcome.also {
        assert!(
            is_nostrconnect,
            "a second event for a {:?} request",
            request.map(|r| &r.method)
        );
        assert!(
            p_tag(&also.event) != service,
            "a connect response to the service key"
        );
    }
    let Some(reply) = &outcome.reply else {
        return;
    };
    // At most one reply per request, ever: a replay is not answered again.
    assert!(
        answered.insert(event.id),
        "event {} answered twice",
        event.id
    );
    assert_eq!(reply.event.kind, event.kind, "a reply of another kind");
    assert_eq!(p_tag(&reply.event), event.pubkey, "a reply to someone else");
    assert!(reply.event.verify().is_ok(), "a reply with a bad signature");
    let expected_author = if event.kind == Kind::from(KIND_ADMIN) {
        Some(service)
    } else {
        event.tags.public_keys().next().copied()
    };
    assert_eq!(
        Some(reply.event.pubkey),
        expected_author,
        "a reply by the wrong key"
    );
    // The requester can read its reply, and it answers its request.
    if let (Some(request), Some(keys)) = (
        request,
        p.keys.iter().find(|k| k.public_key() == event.pubkey),
    ) {
        match open_response(keys, &reply.event) {
            Ok(response) => assert_eq!(response.id, request.id, "a reply to another request"),
            Err(e) => panic!("the requester cannot read its reply: {e}"),
        }
    }
}

fn p_tag(event: &Event) -> PublicKey {
    match event.tags.public_keys().next() {
        Some(k) => *k,
        None => panic!("a reply without a p tag"),
    }
}

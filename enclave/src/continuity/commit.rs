//! Writing the state: sealing a new one (the operator's `--init-state`)
//! and committing each version to a quorum of its custodians, under the
//! same key or, after a deletion, a new one.

use std::time::Instant;

use nostr::PublicKey;
use tracing::info;
use verifier::custodian::discover::CustodianInstance;
use verifier::custodian::message::{Call, Reply, StateName};
use verifier::custodian::quorum_of;
use verifier::release::ReleasePolicy;
use verifier::state::{SealedSnapshot, SnapshotRef, StateIdentity, StateKey};
use zeroize::Zeroizing;

use super::restore::{Custodians, Held, RestoreError, Storage};

/// Seals `held`'s plaintext as its version in its epoch, stores it and
/// commits it to a quorum of its sealed set, then pins it at the parent.
/// With `rekey`, it is sealed under a new state key that replaces the old
/// one at the custodians (after a deletion: older snapshots, which hold
/// the deleted key, can then no longer be opened); `held` takes the new
/// key only once a quorum took it.
pub async fn commit<C: Custodians, S: Storage>(
    identity: &StateIdentity,
    custodians: &C,
    at: &[CustodianInstance],
    storage: &S,
    held: &mut Held,
    rekey: bool,
) -> Result<SnapshotRef, RestoreError> {
    let broken = |e: String| RestoreError::Broken(e);
    let new_key = if rekey {
        Some(StateKey::generate().map_err(|e| broken(e.to_string()))?)
    } else {
        None
    };
    let key = new_key.as_ref().unwrap_or(&held.key);
    let sealed = SealedSnapshot::seal(
        key,
        identity,
        held.epoch,
        held.version,
        held.policy.digest(),
        &held.plaintext,
    )
    .map_err(|e| broken(e.to_string()))?;
    storage.put(&sealed).await.map_err(broken)?;
    let state = StateName::of(identity);
    let hash = hex::encode(sealed.reference.hash);
    let call = if rekey {
        Call::Rekey {
            state,
            epoch: held.epoch,
            version: held.version,
            hash,
            key: verifier::state::record::SecretString(Zeroizing::new(hex::encode(key.bytes()))),
            key_id: key.id().to_string(),
        }
    } else {
        Call::Commit {
            state,
            epoch: held.epoch,
            version: held.version,
            hash,
            key_id: key.id().to_string(),
        }
    };
    // A custodian that missed an earlier rekey holds an older key and
    // refuses a plain commit: it is sent this version with the current key.
    let catch_up = (!rekey).then(|| Call::Rekey {
        state: StateName::of(identity),
        epoch: held.epoch,
        version: held.version,
        hash: hex::encode(sealed.reference.hash),
        key: verifier::state::record::SecretString(Zeroizing::new(hex::encode(key.bytes()))),
        key_id: key.id().to_string(),
    });
    let sent = Instant::now();
    // A rekey waits for every custodian (each call is bounded): one left
    // with the old key would refuse the next commits.
    let acks = quorum_calls(
        custodians,
        at,
        &held.set,
        call,
        Expect {
            epoch: held.epoch,
            wait_all: rekey,
            catch_up: catch_up.as_ref(),
        },
    )
    .await;
    if acks.ok < quorum_of(held.set.len()) {
        return Err(RestoreError::NoQuorum(format!(
            "{} of the {} custodians of the set recorded version {} (a quorum is {}): {}",
            acks.ok,
            held.set.len(),
            held.version,
            quorum_of(held.set.len()),
            acks.why.join("; ")
        )));
    }
    if let Some(key) = new_key {
        info!(%identity, version = held.version, "the state key is replaced");
        held.key = key;
    }
    held.lease_from = sent;
    storage.pin(&sealed.reference).await.map_err(broken)?;
    Ok(sealed.reference)
}

/// Seals a new state (the operator's `--init-state`): a fresh key, the
/// `plaintext` as version 1 of epoch 1, kept by a quorum of `custodians`.
pub async fn seal_new<C: Custodians, S: Storage>(
    identity: &StateIdentity,
    custodians: &C,
    at: &[CustodianInstance],
    set: &[PublicKey],
    storage: &S,
    policy: ReleasePolicy,
    plaintext: Zeroizing<Vec<u8>>,
) -> Result<Held, RestoreError> {
    let broken = |e: String| RestoreError::Broken(e);
    let key = StateKey::generate().map_err(|e| broken(e.to_string()))?;
    let sealed = SealedSnapshot::seal(&key, identity, 1, 1, policy.digest(), &plaintext)
        .map_err(|e| broken(e.to_string()))?;
    storage.put(&sealed).await.map_err(broken)?;
    let call = Call::Seal {
        state: StateName::of(identity),
        key: verifier::state::record::SecretString(Zeroizing::new(hex::encode(key.bytes()))),
        key_id: key.id().to_string(),
        policy: policy.to_json(),
        custodians: set.iter().map(PublicKey::to_hex).collect(),
        version: 1,
        hash: hex::encode(sealed.reference.hash),
    };
    let sent = Instant::now();
    let acks = quorum_calls(
        custodians,
        at,
        set,
        call,
        Expect {
            epoch: 1,
            wait_all: true,
            catch_up: None,
        },
    )
    .await;
    if acks.already_sealed {
        return Err(RestoreError::Broken(format!(
            "a custodian holds this state already, so a new one would start over a live one: restore it, or abandon it explicitly ({})",
            acks.why.join("; ")
        )));
    }
    if set.is_empty() || acks.ok < quorum_of(set.len()) {
        return Err(RestoreError::NoQuorum(format!(
            "{} of the {} custodians of the set sealed the new state (a quorum is {}): {}",
            acks.ok,
            set.len(),
            quorum_of(set.len()),
            acks.why.join("; ")
        )));
    }
    storage.pin(&sealed.reference).await.map_err(broken)?;
    info!(%identity, "a new state is sealed");
    Ok(Held {
        key,
        epoch: 1,
        version: 1,
        policy,
        set: set.to_vec(),
        plaintext,
        lease_from: sent,
    })
}

/// What custodians answered to a seal or commit.
struct Acks {
    /// `Ok`s from distinct custodians of the set.
    ok: usize,
    /// A custodian holds the state already (to a seal).
    already_sealed: bool,
    /// Why the others did not.
    why: Vec<String>,
}

/// Sends `call` to every custodian; counts the `Ok`s of distinct members
/// of `set` only.
/// What a round of calls expects.
struct Expect<'a> {
    /// The epoch every `Ok` must name.
    epoch: u64,
    /// Wait for every custodian, not only a quorum.
    wait_all: bool,
    /// Sent instead to a custodian that refuses the call for its key.
    catch_up: Option<&'a Call>,
}

async fn quorum_calls<C: Custodians>(
    custodians: &C,
    at: &[CustodianInstance],
    set: &[PublicKey],
    call: Call,
    expect: Expect<'_>,
) -> Acks {
    let catch_up = expect.catch_up;
    let mut replies: futures_util::stream::FuturesUnordered<_> = at
        .iter()
        .map(|c| {
            let call = call.clone();
            async move {
                let reply = custodians.call(c, call).await;
                match (&reply, catch_up) {
                    (Ok(Reply::Refused { code, .. }), Some(again)) if code == "wrong-key" => {
                        (c, custodians.call(c, again.clone()).await)
                    }
                    _ => (c, reply),
                }
            }
        })
        .collect();
    let mut members: Vec<PublicKey> = Vec::new();
    let mut acks = Acks {
        ok: 0,
        already_sealed: false,
        why: Vec::new(),
    };
    while let Some((c, reply)) = futures_util::StreamExt::next(&mut replies).await {
        match reply {
            Ok(Reply::Ok { epoch, .. })
                if epoch == expect.epoch
                    && set.contains(&c.launcher)
                    && !members.contains(&c.launcher) =>
            {
                members.push(c.launcher);
                acks.ok += 1;
            }
            Ok(Reply::Ok { .. }) => acks.why.push(format!("{}: not of the set", c.admin_relay)),
            Ok(Reply::Refused { code, reason, .. }) => {
                acks.already_sealed |= code == "already-sealed";
                acks.why.push(format!("{}: {reason}", c.admin_relay));
            }
            Ok(other) => acks
                .why
                .push(format!("{}: unexpected {other:?}", c.admin_relay)),
            Err(e) => acks.why.push(format!("{}: {e}", c.admin_relay)),
        }
        // A commit needs a quorum, not everyone: one that is down (its call
        // waits for its timeout) holds no owner's change up.
        if !expect.wait_all && acks.ok >= quorum_of(set.len()) {
            break;
        }
    }
    acks
}

//! Who is asking: a custody request is answered only for an enclave whose
//! current instance event verifies (attestation to the trusted root, the
//! builder's and launcher's signatures, not debug), whose code the
//! state's sealed release policy releases (k maintainers, at or above the
//! floor; a dev release only for a dev instance), and who signed the
//! request with that event's service key.

use nostr::PublicKey;

use super::ledger::Peer;
use crate::attestation::TrustedRoot;
use crate::event::npub;
use crate::release::ReleasePolicy;
use crate::verify::{verify_instance_json, CheckTime, Options};

/// The requester of a custody request signed by `signer` and carrying
/// `instance`, checked at `now` under `root` and `policy`. The error says
/// which check failed, for the reply.
pub fn verify_peer(
    instance: &str,
    signer: &PublicKey,
    policy: &ReleasePolicy,
    root: &TrustedRoot,
    now: u64,
) -> Result<Peer, String> {
    if policy.is_empty() {
        return Err(
            "the state's release policy names no maintainers: nothing is released under it".into(),
        );
    }
    let options = Options {
        release: Some(policy.trust.clone()),
        allow_dev_release: true,
        ..Options::new(root.clone(), CheckTime::At(now))
    };
    let report = verify_instance_json(instance, &options);
    let Some(verified) = report.verified() else {
        let why = report
            .first_failure()
            .map(|c| format!("{}: {:?}", c.check.name(), c.outcome))
            .unwrap_or_else(|| "it does not verify".into());
        return Err(format!("the requester's instance event is refused: {why}"));
    };
    if verified.event.pubkey != *signer {
        return Err(format!(
            "the request is signed by {}, not by the service key of the instance event it carries",
            npub(signer)
        ));
    }
    Ok(Peer {
        service: verified.event.pubkey,
        launcher: verified.instance.event().pubkey,
        mode: verified.mode,
        expires_at: verified.expiration,
    })
}

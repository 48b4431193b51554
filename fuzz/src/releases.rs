//! Releases and the NECS formats: maintainers' release signatures (kind
//! 63794) judged under a release policy, `release-policy.json` itself,
//! and 13793 announcements with their 23793 `tee_root`.

use nostr::{Event, JsonUtil};
use verifier::attestation::TrustedRoot;
use verifier::event::tee_root::TeeRoot;
use verifier::event::{npub, Mode};
use verifier::release::{check_own_release, ReleasePolicy, ReleaseSignature, ReleaseTrust};
use verifier::verify::{verify_instance_json, CheckTime, Options};

use crate::support::{fixed_keys, fixture_attestation, text};

/// A release signature event: parsed, then judged under a policy that
/// trusts its author alone and one that trusts fixed keys, against the
/// fixture's PCRs, for a dev and a prod instance. A release is made only
/// of signatures by trusted authors of exactly the attested PCR0/1/2, and
/// for prod only of prod ones.
pub fn release_signature(data: &[u8]) {
    let Some(json) = text(data) else {
        return;
    };
    let Ok(event) = Event::from_json(json) else {
        return;
    };
    let author = npub(&event.pubkey);
    let Ok(signature) = ReleaseSignature::from_event(event) else {
        return;
    };
    let attested = &fixture_attestation().doc().pcrs;
    let signs = signature.signs(attested);
    let own = ReleaseTrust::new(std::slice::from_ref(&author), 1, Some("0.0.0"));
    let strangers: Vec<String> = (0..3).map(|n| npub(&fixed_keys(n).public_key())).collect();
    let others = ReleaseTrust::new(&strangers, 1, None);
    for mode in [Mode::Dev, Mode::Prod] {
        let list = std::slice::from_ref(&signature);
        if let Ok(trust) = &own {
            if let Ok(release) = trust.release(list, attested, mode, None) {
                assert!(signs, "a release of other PCRs than the attested ones");
                assert!(
                    mode == Mode::Dev || signature.mode() == Mode::Prod,
                    "a dev signature made a prod release"
                );
                assert_eq!(&release.version, signature.version());
                let _ = trust.check_version(&release);
            }
        }
        if let Ok(trust) = &others {
            if !strangers.contains(&author) {
                assert!(
                    trust.release(list, attested, mode, None).is_err(),
                    "a release by an untrusted author"
                );
            }
        }
    }
    // The enclave's own check, as the parent would hand it over.
    if let Ok(trust) = own {
        let policy = ReleasePolicy {
            repository: signature.repo().to_owned(),
            trust,
        };
        let events = vec![signature.event().clone()];
        let version = signature.version().to_string();
        if let Ok(outcome) = check_own_release(&policy, events, attested, Mode::Prod, &version) {
            assert!(outcome.release.is_ok(), "a prod enclave started unreleased");
            assert!(signs && signature.mode() == Mode::Prod);
        }
    }
}

/// `release-policy.json`: what parses prints and parses to the same.
pub fn release_policy(data: &[u8]) {
    let Ok(policy) = ReleasePolicy::from_json(data) else {
        return;
    };
    let printed = policy.to_json();
    match ReleasePolicy::from_json(printed.as_bytes()) {
        Ok(again) => assert_eq!(again, policy, "policy round trip"),
        Err(e) => panic!("a printed policy does not parse: {e}"),
    }
    if !policy.is_empty() {
        assert!(policy.trust().is_ok());
    }
}

/// A NECS announcement (kind 13793), or any event: verified as `verifier
/// check --release-signer` does, against the AWS root at the document's
/// time, with fixed maintainers; and read as a `tee_root` event. No
/// announcement can verify: the only AWS document we have binds a key
/// whose secret nobody here holds.
pub fn announcement_event(data: &[u8]) {
    let Some(json) = text(data) else {
        return;
    };
    let mut options = Options::new(TrustedRoot::aws_nitro_g1(), CheckTime::Attestation);
    let maintainers: Vec<String> = (0..3).map(|n| npub(&fixed_keys(n).public_key())).collect();
    options.release = ReleaseTrust::new(&maintainers, 2, Some("0.1.0")).ok();
    let report = verify_instance_json(json, &options);
    assert!(
        !report.is_valid(),
        "an announcement verified with maintainers nobody signed as"
    );
    options.release = None;
    options.allow_debug = true;
    crate::formats::only_the_fixture_verifies(json, &verify_instance_json(json, &options));
    if let Ok(event) = Event::from_json(json) {
        if let Ok(root) = TeeRoot::from_event(event.clone()) {
            let _ = root.check(&event.pubkey, root.expiration().saturating_sub(1));
            let _ = verifier::attestation::Attestation::from_base64(root.attestation_base64());
        }
    }
}

//! Released enclaves on a dev chain, for custody tests: one code built
//! once, released by maintainers, run by launchers; their instance events
//! and custody requests, and custodians that answer them.

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use enclave::signer::custody::CustodyConfig;
use enclave::signer::{Signer, SignerConfig};
use nostr::{Event, EventBuilder, JsonUtil, Keys, Kind, RelayUrl, Tag, Timestamp};
use verifier::attestation::dev::{builder_certificate, nsm_document, DevChain, Validity};
use verifier::attestation::TrustedRoot;
use verifier::custodian::ledger::LedgerLimits;
use verifier::custodian::message::{Call, CustodyRequest, Reply, StateName};
use verifier::custodian::KIND_CUSTODY;
use verifier::event::build_signature::BuildSignature;
use verifier::event::instance::InstanceEvent;
use verifier::event::instance_signature::InstanceSignature;
use verifier::event::{npub, Mode};
use verifier::pcr::{pcr4_from_instance_id, pcr8_from_cert_der, pcr_digest};
use verifier::release::{parse_version, ReleasePolicy, ReleaseSignature, ReleaseTrust};
use verifier::rpc::cipher::{Conversation, Scheme};
use verifier::rpc::Response;
use verifier::signing_cert::SigningCert;
use verifier::state::{StateIdentity, StateKey};

pub(crate) const REPO: &str = "https://github.com/nostrband/noauth-enclaved";
const INSTANCE_ID: &str = "i-0123456789abcdef0";

pub(crate) fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// One code, built once, run by launchers on a dev chain, released by
/// maintainers.
pub(crate) struct Code {
    pub(crate) chain: DevChain,
    builder: Keys,
    cert: Vec<u8>,
    pub(crate) maintainers: Vec<Keys>,
}

/// An enclave of that code: its service key, its launcher.
pub(crate) struct Enclave {
    pub(crate) service: Keys,
    pub(crate) launcher: Keys,
}

impl Code {
    pub(crate) fn new() -> Self {
        let builder = Keys::generate();
        let t = now() as i64;
        let cert = builder_certificate(
            &npub(&builder.public_key()),
            Validity::from(t - 3600, 86_400),
        )
        .unwrap();
        Self {
            chain: DevChain::generate(t - 60).unwrap(),
            builder,
            cert,
            maintainers: (0..3).map(|_| Keys::generate()).collect(),
        }
    }

    pub(crate) fn pcrs(&self) -> BTreeMap<u8, verifier::pcr::Pcr> {
        BTreeMap::from([
            (0, pcr_digest(b"image")),
            (1, pcr_digest(b"kernel")),
            (2, pcr_digest(b"application")),
            (4, pcr4_from_instance_id(INSTANCE_ID)),
            (8, pcr8_from_cert_der(&self.cert)),
        ])
    }

    pub(crate) fn policy(&self, threshold: usize) -> ReleasePolicy {
        let npubs: Vec<String> = self
            .maintainers
            .iter()
            .map(|k| npub(&k.public_key()))
            .collect();
        ReleasePolicy {
            repository: REPO.into(),
            trust: ReleaseTrust::new(&npubs, threshold, Some("0.1.0")).unwrap(),
        }
    }

    /// `e`'s instance event, released by the first `signers` maintainers.
    pub(crate) fn instance_event(&self, e: &Enclave, signers: usize) -> Event {
        self.instance_event_on(e, signers, "wss://relay.example")
    }

    /// The same, with its admin API on `admin_relay`.
    pub(crate) fn instance_event_on(
        &self,
        e: &Enclave,
        signers: usize,
        admin_relay: &str,
    ) -> Event {
        let pcrs = self.pcrs();
        let t = now();
        let doc = nsm_document(
            &format!("{INSTANCE_ID}-enc0123456789abcdef"),
            t * 1000,
            &pcrs,
            &e.service.public_key().to_bytes(),
        );
        let document = self.chain.attest(doc);
        let sign = |b: EventBuilder, k: &Keys| {
            b.custom_created_at(Timestamp::from_secs(t))
                .sign_with_keys(k)
                .unwrap()
        };
        let build = sign(
            BuildSignature::builder(&SigningCert::from_der(&self.cert).unwrap(), Mode::Dev)
                .unwrap(),
            &self.builder,
        );
        let instance = sign(
            InstanceSignature::builder(&pcr4_from_instance_id(INSTANCE_ID), Mode::Dev).unwrap(),
            &e.launcher,
        );
        let version = parse_version("0.1.0").unwrap();
        let code = [pcrs[&0], pcrs[&1], pcrs[&2]];
        let releases: Vec<Event> = self
            .maintainers
            .iter()
            .take(signers)
            .map(|k| {
                sign(
                    ReleaseSignature::builder(REPO, &version, Mode::Dev, &code).unwrap(),
                    k,
                )
            })
            .collect();
        let template = InstanceEvent {
            repo: REPO,
            name: "enclaved",
            version: "0.1.0",
            module_id: &format!("{INSTANCE_ID}-enc0123456789abcdef"),
            pcrs: &pcrs,
            mode: Mode::Dev,
            admin_relay,
            expiration: t + 3600,
            alt: "enclaved instance",
            build: &build,
            instance: &instance,
            releases: &releases,
            attestation: &document,
            created_at: t,
        };
        template
            .builder()
            .unwrap()
            .sign_with_keys(&e.service)
            .unwrap()
    }
}

impl Enclave {
    pub(crate) fn of(launcher: &Keys) -> Self {
        Self {
            service: Keys::generate(),
            launcher: launcher.clone(),
        }
    }

    /// A custody request event to `custodian`, with `pow` bits.
    pub(crate) fn request(&self, to: &Signer, instance: &Event, call: Call, pow: u8) -> Event {
        let request = CustodyRequest {
            instance: instance.as_json(),
            call,
        }
        .to_rpc();
        let conversation =
            Conversation::new(Scheme::Nip44, self.service.secret_key(), &to.service_key()).unwrap();
        let content = conversation.encrypt(&request.to_json()).unwrap();
        EventBuilder::new(Kind::from_u16(KIND_CUSTODY), content)
            .tag(Tag::public_key(to.service_key()))
            .pow(pow)
            .sign_with_keys(&self.service)
            .unwrap()
    }

    /// What `custodian` answers to `event`.
    pub(crate) fn ask(&self, custodian: &Signer, event: &Event) -> Reply {
        let relay = RelayUrl::parse("ws://127.0.0.1:1").unwrap();
        let outcome = custodian.try_handle(event, &relay, now()).unwrap();
        let reply = outcome.reply.expect("a reply");
        assert_eq!(reply.event.kind.as_u16(), KIND_CUSTODY);
        assert_eq!(
            reply.relays,
            vec![relay],
            "answered only where it was asked"
        );
        let (_, plaintext) = Conversation::open(
            self.service.secret_key(),
            &reply.event.pubkey,
            &reply.event.content,
        )
        .unwrap();
        let result = Response::parse(&plaintext).unwrap().into_result().unwrap();
        Reply::from_json(&result).unwrap()
    }
}

pub(crate) fn custodian(code: &Code, serves: &[&Keys], pow_bits: u8) -> Signer {
    custodian_with(code, serves, pow_bits, LedgerLimits::default())
}

/// A custodian of `serves`' enclaves with `limits` (a short lease, in tests
/// of what follows one).
pub(crate) fn custodian_with(
    code: &Code,
    serves: &[&Keys],
    pow_bits: u8,
    limits: LedgerLimits,
) -> Signer {
    Signer::new(
        Keys::generate(),
        RelayUrl::parse("ws://127.0.0.1:1").unwrap(),
        custody_config(code, serves, pow_bits, limits),
    )
}

/// The signer settings of a custodian of `serves`' enclaves.
pub(crate) fn custody_config(
    code: &Code,
    serves: &[&Keys],
    pow_bits: u8,
    limits: LedgerLimits,
) -> SignerConfig {
    SignerConfig {
        custody: Some(CustodyConfig {
            serves: serves.iter().map(|k| k.public_key()).collect(),
            limits,
            root: TrustedRoot::from_der_or_pem(code.chain.root.der()).unwrap(),
            pow_bits,
            own_launcher: None,
        }),
        ..SignerConfig::default()
    }
}

pub(crate) fn seal(e: &Enclave, code: &Code, key: &StateKey) -> Call {
    Call::Seal {
        state: StateName::of(&StateIdentity::new(e.launcher.public_key(), "main").unwrap()),
        key: verifier::state::record::SecretString(zeroize::Zeroizing::new(hex::encode(
            key.bytes(),
        ))),
        key_id: key.id().to_string(),
        policy: code.policy(2).to_json(),
        custodians: vec![],
        version: 1,
        hash: hex::encode([1; 32]),
    }
}

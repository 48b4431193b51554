//! `verifier key …`: talk to an enclave's admin API (kind 24135), but only
//! after its instance event verifies. The user's private key is read from
//! a file or standard input, never from the command line, and is sent only
//! to a service key whose attestation checked out.

use std::path::Path;
use std::time::Duration;

use nostr::{Event, FromBech32, JsonUtil, Keys, Kind, PublicKey, RelayUrl, Timestamp};
use nostr_sdk::{Client, Filter, RelayPoolNotification};
use verifier::discover::{Accept, Discovery};
use verifier::event::{npub, KIND_ADMIN, KIND_INSTANCE};
use verifier::rpc::admin::AdminRequest;
use verifier::rpc::cipher::Scheme;
use verifier::rpc::relays::parse_relay_url;
use verifier::rpc::{open_response, seal_request};
use verifier::verify::{verify_instance, CheckTime, Options, VerifiedInstance};
use zeroize::Zeroizing;

use crate::cli::{KeyAction, KeyCommon};
use crate::input::{read_input, read_text};
use crate::{expected_pcrs, now, trusted_root_file, Unusable, INVALID, VALID};

/// Runs `key`.
pub(crate) fn key(action: KeyAction) -> Result<u8, Unusable> {
    let common = action.common();
    let runtime = tokio::runtime::Runtime::new()
        .map_err(|e| Unusable::from(format!("cannot start the runtime: {e}")))?;
    runtime.block_on(run(&action, common))
}

async fn run(action: &KeyAction, common: &KeyCommon) -> Result<u8, Unusable> {
    let stdin = Path::new("-");
    if common.instance.as_deref() == Some(stdin) && common.key_file.as_deref() == Some(stdin) {
        return Err(Unusable::from(
            "--instance and --key-file cannot both read standard input".to_owned(),
        ));
    }
    let timeout = Duration::from_secs(common.timeout);
    let instance = match instance(common, timeout).await? {
        Ok(instance) => instance,
        Err(why) => {
            eprintln!("refusing to talk to this instance: {why}");
            return Ok(INVALID);
        }
    };
    let service = instance.event.pubkey;
    let admin_relay = parse_relay_url(&instance.admin_relay)
        .map_err(|e| Unusable::from(format!("the instance's admin relay: {e}")))?;
    eprintln!(
        "instance {} verified (builder {}, launcher {}, {}); admin relay {admin_relay}",
        npub(&service),
        npub(&instance.build.event().pubkey),
        npub(&instance.instance.event().pubkey),
        instance.mode,
    );
    let user = match &common.key_file {
        Some(path) => read_key(path)?,
        None if matches!(action, KeyAction::TestKey { .. }) => Keys::generate(),
        None => {
            return Err(Unusable {
                message: "this command needs your key".into(),
                hint: Some("pass --key-file FILE, or --key-file - to read it from standard input"),
            })
        }
    };
    let relays = |given: &[String]| -> Result<Vec<RelayUrl>, Unusable> {
        if given.is_empty() {
            return Ok(vec![admin_relay.clone()]);
        }
        given
            .iter()
            .map(|u| parse_relay_url(u).map_err(|e| Unusable::from(format!("--signer-relay: {e}"))))
            .collect()
    };
    let request = match action {
        KeyAction::Import { signer_relays, .. } => AdminRequest::ImportKey {
            keys: user.clone(),
            relays: relays(signer_relays)?,
        },
        KeyAction::Connect {
            app, signer_relays, ..
        } => AdminRequest::ConnectKey {
            keys: user.clone(),
            app: PublicKey::from_bech32(app)
                .or_else(|_| PublicKey::from_hex(app))
                .map_err(|e| Unusable::from(format!("--app {app:?} is not an npub: {e}")))?,
            relays: relays(signer_relays)?,
        },
        KeyAction::Delete { .. } => AdminRequest::DeleteKey,
        KeyAction::Status { .. } => AdminRequest::HasKey,
        KeyAction::TestKey { signer_relays, .. } => AdminRequest::GenerateTestKey {
            relays: relays(signer_relays)?,
        },
        KeyAction::BunkerUrl { .. } => AdminRequest::CreateBunkerUrl,
    };
    match call(&user, &service, &admin_relay, &request, timeout).await? {
        Ok(result) => {
            println!("{}", describe(&request, &result));
            Ok(VALID)
        }
        Err(e) => {
            eprintln!("the enclave refused: {e}");
            Ok(INVALID)
        }
    }
}

fn describe(request: &AdminRequest, result: &str) -> String {
    match request {
        AdminRequest::HasKey if result == "true" => "the enclave holds your key".into(),
        AdminRequest::HasKey => "the enclave does not hold your key".into(),
        AdminRequest::ImportKey { .. } => "key imported".into(),
        AdminRequest::ConnectKey { .. } => "key imported and the app allowed".into(),
        AdminRequest::DeleteKey => "key deleted".into(),
        _ => result.to_owned(),
    }
}

/// The user's key from `path` (`-` for standard input): nsec or hex.
fn read_key(path: &Path) -> Result<Keys, Unusable> {
    let bytes = Zeroizing::new(read_input(path)?);
    let text = std::str::from_utf8(&bytes)
        .map_err(|_| Unusable::from(format!("{} is not text", path.display())))?;
    Keys::parse(text.trim()).map_err(|_| Unusable {
        message: format!("{} does not hold a private key", path.display()),
        hint: Some("the key file holds one nsec1… or 64 hex characters"),
    })
}

/// The instance, verified; the inner error says why it is refused.
async fn instance(
    common: &KeyCommon,
    timeout: Duration,
) -> Result<Result<VerifiedInstance, String>, Unusable> {
    let root = trusted_root_file(common.root.as_deref())?;
    let mut options = Options::new(root, CheckTime::At(now()));
    options.allow_debug = common.allow_debug;
    options.expected = expected_pcrs(common.pcrs.as_deref())?;
    if let Some(path) = &common.instance {
        let event = Event::from_json(read_text(path)?.trim())
            .map_err(|e| Unusable::from(format!("{} is not an event: {e}", path.display())))?;
        let report = verify_instance(&event, &options);
        return Ok(match report.verified() {
            Some(v) => Ok(v.clone()),
            None => Err(report
                .first_failure()
                .map(|f| format!("{}: {}", f.check.name(), f.outcome))
                .unwrap_or_else(|| "it does not verify".into())),
        });
    }
    let (Some(service), false) = (&common.service, common.relays.is_empty()) else {
        return Err(Unusable {
            message: "say which instance".into(),
            hint: Some("pass --instance EVENT.json, or --service NPUB with --relay URL to fetch its instance event"),
        });
    };
    let service = PublicKey::from_bech32(service)
        .or_else(|_| PublicKey::from_hex(service))
        .map_err(|e| Unusable::from(format!("--service {service:?} is not an npub: {e}")))?;
    let client = Client::default();
    for url in &common.relays {
        let url = parse_relay_url(url).map_err(|e| Unusable::from(format!("--relay: {e}")))?;
        let _ = client.add_relay(url).await;
    }
    client.connect().await;
    let filter = Filter::new()
        .kind(Kind::from(KIND_INSTANCE))
        .author(service)
        .limit(20);
    let events = client
        .fetch_events(filter, timeout)
        .await
        .map_err(|e| Unusable::from(format!("cannot fetch the instance event: {e}")))?;
    client.shutdown().await;
    let events: Vec<Event> = events.into_iter().collect();
    let discovery = Discovery::from_events(&events, &options, &Accept::default());
    Ok(
        match discovery
            .instances
            .into_iter()
            .find(|i| i.event.pubkey == service)
        {
            Some(instance) => Ok(instance),
            None if events.is_empty() => {
                Err("no instance event of this service key on these relays".into())
            }
            None => Err(discovery
                .refused
                .first()
                .map(|r| format!("{}: {}", r.check, r.reason))
                .unwrap_or_else(|| "no valid instance event".into())),
        },
    )
}

/// Sends `request` to the admin API and waits for its reply.
async fn call(
    user: &Keys,
    service: &PublicKey,
    relay: &RelayUrl,
    request: &AdminRequest,
    timeout: Duration,
) -> Result<Result<String, String>, Unusable> {
    let wire = request.to_request();
    let event = seal_request(user, service, KIND_ADMIN, &wire, Scheme::Nip44)
        .map_err(|e| Unusable::from(e.to_string()))?;
    let client = Client::default();
    client
        .add_relay(relay.clone())
        .await
        .map_err(|e| Unusable::from(format!("{relay}: {e}")))?;
    client.connect().await;
    client.wait_for_connection(timeout).await;
    let mut notifications = client.notifications();
    let filter = Filter::new()
        .kind(Kind::from(KIND_ADMIN))
        .author(*service)
        .pubkey(user.public_key())
        .since(Timestamp::from(now().saturating_sub(10)));
    client
        .subscribe(filter, None)
        .await
        .map_err(|e| Unusable::from(format!("cannot subscribe on {relay}: {e}")))?;
    client
        .send_event(&event)
        .await
        .map_err(|e| Unusable::from(format!("cannot send the request to {relay}: {e}")))?;
    let reply = tokio::time::timeout(timeout, async {
        while let Ok(notification) = notifications.recv().await {
            if let RelayPoolNotification::Event { event, .. } = notification {
                if event.pubkey != *service {
                    continue;
                }
                if let Ok(response) = open_response(user, &event) {
                    if response.id == wire.id {
                        return Some(response.into_result());
                    }
                }
            }
        }
        None
    })
    .await;
    client.shutdown().await;
    match reply {
        Ok(Some(result)) => Ok(result),
        _ => Err(Unusable {
            message: format!("no reply from the enclave within {}s", timeout.as_secs()),
            hint: Some(
                "the instance may be down or not reading its admin relay; try --timeout or later",
            ),
        }),
    }
}

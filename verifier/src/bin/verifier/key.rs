//! `verifier key …`: talk to an enclave's admin API (kind 24135), but only
//! after its instance event verifies and its code is the release the user
//! pins. The user's private key is read from a file or standard input,
//! never from the command line, and is sent only to a service key whose
//! attestation checked out with PCR0, PCR1 and PCR2 pinned: a valid chain
//! alone proves a genuine Nitro enclave, not what it runs (anyone can
//! build, sign and run an image that leaks keys). `--any-code` is the
//! explicit, loudly warned way out.

use std::path::Path;
use std::time::Duration;

use nostr::{Event, FromBech32, JsonUtil, Keys, Kind, PublicKey, RelayUrl};
use nostr_sdk::{Client, Filter};
use verifier::discover::{Accept, Discovery};
use verifier::event::{npub, ANNOUNCEMENT_KINDS};
use verifier::grant::wire::AppReport;
use verifier::grant::{Perms, Policy};
use verifier::rpc::admin::{AdminRequest, KeptApps};
use verifier::rpc::nostrconnect::NostrConnect;
use verifier::rpc::relays::parse_relay_url;
use verifier::rpc::status::KeyStatus;
use verifier::verify::{verify_instance, CheckTime, Options, VerifiedInstance};
use zeroize::Zeroizing;

use crate::channel::{call, connect, pages, Deadline};
use crate::cli::{KeyAction, KeyCommon};
use crate::discover::parse_npubs;
use crate::grants::{
    describe_nostrconnect, granted, nostrconnect_policy, policy, print_apps, print_log, said,
    with_conditions,
};
use crate::input::{read_input, read_text};
use crate::output::printable;
use crate::pins::CodePins;
use crate::{now, trusted_root_file, Unusable, INVALID, VALID};

/// Runs `key`.
pub(crate) fn key(action: KeyAction) -> Result<u8, Unusable> {
    let common = action.common();
    let runtime = tokio::runtime::Runtime::new()
        .map_err(|e| Unusable::from(format!("cannot start the runtime: {e}")))?;
    // --timeout bounds the whole command; each step also waits only for
    // what is left of it, so the step that ran out is the one named.
    let secs = common.timeout;
    runtime.block_on(async {
        match tokio::time::timeout(Duration::from_secs(secs + 2), run(&action, common)).await {
            Ok(done) => done,
            Err(_) => Err(Unusable {
                message: format!("gave up: --timeout {secs}s has passed"),
                hint: Some("the relays or the enclave are slow or down; try a longer --timeout"),
            }),
        }
    })
}

async fn run(action: &KeyAction, common: &KeyCommon) -> Result<u8, Unusable> {
    let stdin = Path::new("-");
    if common.instance.as_deref() == Some(stdin) && common.key_file.as_deref() == Some(stdin) {
        return Err(Unusable::from(
            "--instance and --key-file cannot both read standard input".to_owned(),
        ));
    }
    if let KeyAction::Connect { app, .. } = action {
        if app.starts_with("nostrconnect://") {
            return Err(Unusable {
                message: "--app takes the app's client npub, not a nostrconnect:// URI".into(),
                hint: Some("answer the URI with `verifier key nostrconnect 'nostrconnect://…'`"),
            });
        }
    }
    // Bad grant arguments fail before anything is fetched or sent.
    match action {
        KeyAction::Connect {
            grant, full_access, ..
        } => drop(policy(
            grant.perms.as_deref(),
            *full_access,
            &grant.conditions,
        )?),
        KeyAction::Grant { grant, .. } => {
            drop(policy(grant.perms.as_deref(), false, &grant.conditions)?)
        }
        KeyAction::BunkerUrl { grant, .. } => {
            drop(policy(grant.perms.as_deref(), false, &grant.conditions)?)
        }
        KeyAction::Nostrconnect {
            uri,
            grant,
            full_access,
            ..
        } => {
            drop(nostrconnect_request(uri, grant, *full_access)?);
        }
        _ => {}
    }
    let timeout = Deadline::after(common.timeout);
    let pins = crate::pins::for_secrets(common.pcrs.as_deref(), &common.release, common.any_code)?;
    let accept = Accept {
        builders: parse_npubs(&common.builders, "--builder")?,
        launchers: parse_npubs(&common.launchers, "--launcher")?,
    };
    let instance = match instance(common, pins, &accept, timeout).await? {
        Ok(instance) => instance,
        Err(why) => {
            eprintln!("refusing to talk to this instance: {}", printable(&why));
            if why.starts_with("certificate_chain")
                && why.contains("trusted root")
                && common.root.is_none()
            {
                eprintln!(
                    "hint: this document is not signed by AWS; a local dev stack's events need \
                     --root <its dev-root.der>"
                );
            }
            return Ok(INVALID);
        }
    };
    let service = instance.event.pubkey;
    let admin_relay = parse_relay_url(&instance.admin_relay)
        .map_err(|e| Unusable::from(format!("the instance's admin relay: {e}")))?;
    let release = instance
        .release
        .as_ref()
        .map(|r| {
            format!(
                ", release {} signed by {} of the {} needed",
                r.version,
                r.signers.len(),
                r.threshold
            )
        })
        .unwrap_or_default();
    eprintln!(
        "instance {} verified (builder {}, launcher {}, {}{release}); admin relay {}",
        npub(&service),
        npub(&instance.build.event().pubkey),
        npub(&instance.instance.event().pubkey),
        instance.mode,
        printable(admin_relay.as_str()),
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
    let app = |app: &str| {
        PublicKey::from_bech32(app)
            .or_else(|_| PublicKey::from_hex(app))
            .map_err(|e| Unusable::from(format!("--app {app:?} is not an npub: {e}")))
    };
    let request = match action {
        KeyAction::Import {
            signer_relays,
            drop_apps,
            ..
        } => AdminRequest::ImportKey {
            keys: user.clone(),
            relays: relays(signer_relays)?,
            apps: if *drop_apps {
                KeptApps::Drop
            } else {
                KeptApps::Keep
            },
        },
        KeyAction::Connect {
            app: given,
            signer_relays,
            grant,
            full_access,
            ..
        } => AdminRequest::ConnectKey {
            keys: user.clone(),
            app: app(given)?,
            relays: relays(signer_relays)?,
            policy: policy(grant.perms.as_deref(), *full_access, &grant.conditions)?,
        },
        KeyAction::Grant {
            app: given, grant, ..
        } => {
            let Some(perms) = grant.perms.as_deref() else {
                return Err(Unusable {
                    message: "grant needs --perms".into(),
                    hint: Some("name what the app may do, like --perms sign_event:1,nip44_encrypt (or --perms full)"),
                });
            };
            AdminRequest::Grant {
                app: app(given)?,
                policy: policy(Some(perms), false, &grant.conditions)?.unwrap_or_else(Policy::full),
            }
        }
        KeyAction::Nostrconnect {
            uri,
            grant,
            full_access,
            ..
        } => {
            let request = nostrconnect_request(uri, grant, *full_access)?;
            if let AdminRequest::NostrConnect { uri, policy } = &request {
                eprintln!("{}", describe_nostrconnect(uri, policy.as_ref(), now()));
            }
            request
        }
        KeyAction::Apps { json, .. } => {
            let apps = pages(&user, &service, &admin_relay, timeout, |cursor| {
                AdminRequest::ListApps { cursor }
            })
            .await?;
            if *json {
                let reports = apps.map(|a| a.iter().map(AppReport::from).collect::<Vec<_>>());
                return Ok(show(reports, true, |_| {}));
            }
            return Ok(show(apps, false, |apps| print_apps(apps, now())));
        }
        KeyAction::Log { json, .. } => {
            let entries = pages(&user, &service, &admin_relay, timeout, |cursor| {
                AdminRequest::GetLog { cursor }
            })
            .await?;
            return Ok(show(entries, *json, print_log));
        }
        KeyAction::Delete { .. } => AdminRequest::DeleteKey,
        KeyAction::Revoke { app: given, .. } => AdminRequest::RevokeApp { app: app(given)? },
        KeyAction::Status { .. } => {
            return status(&user, &service, &admin_relay, timeout).await;
        }
        KeyAction::TestKey { signer_relays, .. } => AdminRequest::GenerateTestKey {
            relays: relays(signer_relays)?,
        },
        KeyAction::BunkerUrl { grant, .. } => AdminRequest::CreateBunkerUrl {
            policy: policy(grant.perms.as_deref(), false, &grant.conditions)?,
        },
    };
    match call(&user, &service, &admin_relay, &request, timeout).await? {
        Ok(result) => {
            println!("{}", describe(&request, &result));
            match &request {
                AdminRequest::ConnectKey { app, policy, .. } => println!(
                    "{}",
                    granted(app, policy.as_ref().unwrap_or(&Policy::full()), now())
                ),
                AdminRequest::Grant { app, policy } => println!("{}", granted(app, policy, now())),
                AdminRequest::NostrConnect { uri, policy } => {
                    println!(
                        "{}",
                        granted(
                            &uri.client,
                            &nostrconnect_policy(uri, policy.as_ref()),
                            now()
                        )
                    )
                }
                AdminRequest::CreateBunkerUrl { policy } => eprintln!(
                    "the app that connects with this URL gets: {}",
                    policy.as_ref().unwrap_or(&Policy::full()).describe(now())
                ),
                _ => {}
            }
            // `status` answers a question: its exit status is the answer.
            if matches!(request, AdminRequest::HasKey) && result != "true" {
                return Ok(INVALID);
            }
            Ok(VALID)
        }
        Err(e) => Ok(refused(&e)),
    }
}

/// `key status`: `key_status`, or `has_key` from an enclave that does not
/// know it yet. Exits 0 if the key is held.
async fn status(
    user: &Keys,
    service: &PublicKey,
    relay: &RelayUrl,
    timeout: Deadline,
) -> Result<u8, Unusable> {
    match call(user, service, relay, &AdminRequest::KeyStatus, timeout).await? {
        Ok(json) => {
            let status = KeyStatus::from_json(&json).map_err(|e| Unusable::from(printable(&e)))?;
            println!("{}", status.describe());
            Ok(if status.held { VALID } else { INVALID })
        }
        Err(e) if e.starts_with("unknown method") => {
            match call(user, service, relay, &AdminRequest::HasKey, timeout).await? {
                Ok(held) => {
                    println!("{}", describe(&AdminRequest::HasKey, &held));
                    Ok(if held == "true" { VALID } else { INVALID })
                }
                Err(e) => Ok(refused(&e)),
            }
        }
        Err(e) => Ok(refused(&e)),
    }
}

/// The `nostrconnect` request for `uri` and the grant arguments.
fn nostrconnect_request(
    uri: &str,
    grant: &crate::cli::GrantArgs,
    full_access: bool,
) -> Result<AdminRequest, Unusable> {
    let parsed = NostrConnect::parse(uri, MAX_URI_RELAYS).map_err(|e| Unusable {
        message: printable(&e),
        hint: Some("copy the whole URI the app shows, in single quotes"),
    })?;
    let asked = parsed.perms.as_deref().and_then(Perms::parse_requested);
    let names_something = matches!(&asked, Some(Perms::Listed(list)) if !list.is_empty());
    if grant.perms.is_none() && !full_access && !names_something {
        return Err(Unusable {
            message: "this URI asks for no particular permissions".into(),
            hint: Some("say what the app may do: --perms LIST, or --full-access for everything"),
        });
    }
    if parsed.to_uri().len() > verifier::rpc::nostrconnect::MAX_URI {
        return Err(Unusable::from(
            "the URI is too long to send to the enclave".to_owned(),
        ));
    }
    // Conditions without --perms: what the app asks for, as the enclave
    // grants it without a policy (a scoped grant), under those conditions.
    let policy = if grant.perms.is_none() && !full_access && said(&grant.conditions) {
        Some(with_conditions(
            parsed.owner_policy(None),
            &grant.conditions,
        )?)
    } else {
        policy(grant.perms.as_deref(), full_access, &grant.conditions)?
    };
    // --full-access: everything, whatever the URI asks for.
    let uri = if full_access {
        NostrConnect {
            perms: None,
            ..parsed
        }
    } else {
        parsed
    };
    Ok(AdminRequest::NostrConnect { uri, policy })
}

/// Most relays a nostrconnect:// URI may name (a key listens on at most 8).
const MAX_URI_RELAYS: usize = 8;

/// Prints a list the enclave returned, as JSON or with `words`.
fn show<T: serde::Serialize>(
    list: Result<Vec<T>, String>,
    json: bool,
    words: impl FnOnce(&[T]),
) -> u8 {
    match list {
        Ok(items) if json => {
            println!(
                "{}",
                serde_json::to_string_pretty(&items).unwrap_or_default()
            );
            VALID
        }
        Ok(items) => {
            words(&items);
            VALID
        }
        Err(e) => refused(&e),
    }
}

fn refused(e: &str) -> u8 {
    eprintln!("the enclave refused: {}", printable(e));
    INVALID
}

fn describe(request: &AdminRequest, result: &str) -> String {
    match request {
        AdminRequest::HasKey if result == "true" => "the enclave holds your key".into(),
        AdminRequest::HasKey => "the enclave does not hold your key".into(),
        AdminRequest::ImportKey { .. } if result == "ok" => "key imported".into(),
        AdminRequest::ImportKey { .. } => format!("key imported ({})", printable(result)),
        AdminRequest::ConnectKey { .. } => "key imported and the app allowed".into(),
        AdminRequest::Grant { .. } => "the app's grant is set".into(),
        AdminRequest::NostrConnect { .. } => {
            "the app is connected: the enclave sent it the connect response".into()
        }
        AdminRequest::DeleteKey => "key deleted".into(),
        AdminRequest::RevokeApp { .. } => "the app's access is revoked".into(),
        _ => printable(result),
    }
}

/// The user's key from `path` (`-` for standard input): nsec or hex.
fn read_key(path: &Path) -> Result<Keys, Unusable> {
    warn_if_readable_by_others(path);
    let bytes = Zeroizing::new(read_input(path)?);
    let text = std::str::from_utf8(&bytes)
        .map_err(|_| Unusable::from(format!("{} is not text", path.display())))?;
    Keys::parse(text.trim()).map_err(|_| Unusable {
        message: format!("{} does not hold a private key", path.display()),
        hint: Some("the key file holds one nsec1… or 64 hex characters"),
    })
}

/// Says so, as ssh does, when a key file can be read by its group or by
/// others (it is still used: the warning is for the next time).
fn warn_if_readable_by_others(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if path == Path::new("-") {
            return;
        }
        if let Ok(meta) = std::fs::metadata(path) {
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                eprintln!(
                    "WARNING: {} holds a private key and can be read by others than you \
                     (mode {mode:03o}); run chmod 600 on it",
                    printable(&path.display().to_string())
                );
            }
        }
    }
    #[cfg(not(unix))]
    let _ = path;
}

/// The instance, verified; the inner error says why it is refused.
async fn instance(
    common: &KeyCommon,
    pins: Option<CodePins>,
    accept: &Accept,
    timeout: Deadline,
) -> Result<Result<VerifiedInstance, String>, Unusable> {
    let root = trusted_root_file(common.root.as_deref())?;
    let mut options = Options::new(root, CheckTime::At(now()));
    options.allow_debug = common.allow_debug;
    if let Some(pins) = pins {
        options.expected = pins.expected;
        options.release = pins.release;
        options.allow_dev_release = pins.allow_dev_release;
    }
    if let Some(path) = &common.instance {
        let event = Event::from_json(read_text(path)?.trim())
            .map_err(|e| Unusable::from(format!("{} is not an event: {e}", path.display())))?;
        let report = verify_instance(&event, &options);
        return Ok(match report.verified() {
            Some(v) => accept
                .check(v)
                .map(|()| v.clone())
                .map_err(|(check, why)| format!("{check}: {why}")),
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
    let relays = common
        .relays
        .iter()
        .map(|url| parse_relay_url(url).map_err(|e| Unusable::from(format!("--relay: {e}"))))
        .collect::<Result<Vec<_>, _>>()?;
    let client = Client::default();
    connect(&client, &relays, timeout).await?;
    let filter = Filter::new()
        .kinds(ANNOUNCEMENT_KINDS.map(Kind::from_u16))
        .author(service)
        .limit(20);
    let events = client
        // Half of what is left: a relay that never ends its answer must
        // leave time for the request to the enclave.
        .fetch_events(filter, timeout.left() / 2)
        .await
        .map_err(|e| Unusable::from(format!("cannot fetch the instance event: {e}")))?;
    client.shutdown().await;
    let events: Vec<Event> = events.into_iter().collect();
    let discovery = Discovery::from_events(&events, &options, accept);
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

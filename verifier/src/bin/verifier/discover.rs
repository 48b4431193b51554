//! `verifier discover`: fetch kind 63793 and 13793 events from relays and sort them
//! out with [`verifier::discover`]. This is the only part of the verifier
//! that uses the network.

use std::time::Duration;

use nostr::{Event, FromBech32, Kind, PublicKey, RelayUrl};
use nostr_sdk::{Client, Filter};
use serde::Serialize;
use verifier::discover::{Accept, Discovery};
use verifier::event::instance::ANNOUNCED_PCRS;
use verifier::event::{npub, ANNOUNCEMENT_KINDS};
use verifier::verify::{CheckTime, Options, VerifiedInstance};

use crate::cli::DiscoverArgs;
use crate::output::{printable, root_name, when};
use crate::{now, trusted_root_file, Unusable, INVALID, VALID};

/// Runs `discover`.
pub(crate) fn discover(args: DiscoverArgs) -> Result<u8, Unusable> {
    let root = trusted_root_file(args.root.as_deref())?;
    let relays = args
        .relays
        .iter()
        .map(|u| RelayUrl::parse(u).map_err(|e| Unusable::from(format!("--relay {u:?}: {e}"))))
        .collect::<Result<Vec<_>, _>>()?;
    let accept = Accept {
        builders: parse_npubs(&args.builders, "--builder")?,
        launchers: parse_npubs(&args.launchers, "--launcher")?,
    };
    let checked_at = now();
    let mut options = Options::new(root.clone(), CheckTime::At(checked_at));
    options.allow_debug = args.allow_debug;
    let pins = crate::pins::given(args.pcrs.as_deref(), &args.release)?;
    options.expected = pins.expected;
    options.release = pins.release;
    options.allow_dev_release = pins.allow_dev_release;
    let runtime = tokio::runtime::Runtime::new()
        .map_err(|e| Unusable::from(format!("cannot start the runtime: {e}")))?;
    let timeout = Duration::from_secs(args.timeout);
    let (events, unreachable) = runtime.block_on(fetch(&relays, &accept, args.limit, timeout))?;
    for (url, why) in &unreachable {
        eprintln!("warning: {url}: {}", printable(&why.to_string()));
    }
    if unreachable.len() == relays.len() {
        return Err(Unusable {
            message: "no relay could be read".into(),
            hint: Some("check the --relay URLs and your network"),
        });
    }
    let discovery = Discovery::from_events(&events, &options, &accept);
    if args.json {
        print_json(&discovery, events.len(), checked_at, &root);
    } else {
        print_text(&discovery, events.len(), relays.len(), checked_at, &root);
    }
    Ok(if discovery.instances.is_empty() {
        INVALID
    } else {
        VALID
    })
}

pub(crate) fn parse_npubs(values: &[String], flag: &str) -> Result<Vec<PublicKey>, Unusable> {
    values
        .iter()
        .map(|v| {
            PublicKey::from_bech32(v)
                .or_else(|_| PublicKey::from_hex(v))
                .map_err(|e| Unusable::from(format!("{flag} {v:?} is not an npub: {e}")))
        })
        .collect()
}

async fn fetch(
    relays: &[RelayUrl],
    accept: &Accept,
    limit: u64,
    timeout: Duration,
) -> Result<(Vec<Event>, Vec<(RelayUrl, String)>), Unusable> {
    let client = Client::default();
    for url in relays {
        client
            .add_relay(url.clone())
            .await
            .map_err(|e| Unusable::from(format!("--relay {url}: {e}")))?;
    }
    // --timeout bounds connecting and fetching together; a relay that
    // refuses the connection is named at once, not waited for.
    let deadline = tokio::time::Instant::now() + timeout;
    // Half the budget at most: a relay that never finishes its handshake
    // must leave time to fetch from the others.
    let connected = client.try_connect(timeout / 2).await;
    let mut unreachable: Vec<(RelayUrl, String)> = connected
        .failed
        .into_iter()
        .map(|(url, e)| (url, format!("could not connect: {e}")))
        .collect();
    unreachable.sort();
    let mut filter = Filter::new()
        .kinds(ANNOUNCEMENT_KINDS.map(Kind::from_u16))
        .limit(usize::try_from(limit).unwrap_or(500));
    // Narrow on the relay side when the builders are known (they are p-tagged).
    if !accept.builders.is_empty() {
        filter = filter.pubkeys(accept.builders.clone());
    }
    if unreachable.len() == relays.len() {
        client.shutdown().await;
        return Ok((Vec::new(), unreachable));
    }
    let events = client
        .fetch_events(
            filter,
            deadline.saturating_duration_since(tokio::time::Instant::now()),
        )
        .await
        .map_err(|e| Unusable::from(format!("cannot fetch events: {e}")))?;
    client.shutdown().await;
    Ok((events.into_iter().collect(), unreachable))
}

#[derive(Serialize)]
struct JsonInstance {
    service: String,
    builder: String,
    launcher: String,
    mode: String,
    module_id: String,
    admin_relay: String,
    expiration: u64,
    event_id: String,
    kind: u16,
    created_at: u64,
    pcrs: std::collections::BTreeMap<String, String>,
    /// The release version, when release signers were given.
    #[serde(skip_serializing_if = "Option::is_none")]
    release: Option<String>,
}

#[derive(Serialize)]
struct JsonRefused {
    event_id: String,
    author: String,
    created_at: u64,
    check: String,
    reason: String,
}

#[derive(Serialize)]
struct JsonDiscovery {
    checked_at: u64,
    root_sha256: String,
    fetched: usize,
    superseded: usize,
    instances: Vec<JsonInstance>,
    invalid: Vec<JsonRefused>,
}

fn json_instance(i: &VerifiedInstance) -> JsonInstance {
    JsonInstance {
        service: npub(&i.event.pubkey),
        builder: npub(&i.build.event().pubkey),
        launcher: npub(&i.instance.event().pubkey),
        mode: i.mode.to_string(),
        module_id: i.attestation.doc().module_id.clone(),
        admin_relay: i.admin_relay.clone(),
        expiration: i.expiration,
        event_id: i.event.id.to_hex(),
        kind: i.event.kind.as_u16(),
        created_at: i.event.created_at.as_secs(),
        pcrs: i
            .pcrs
            .iter()
            .filter(|(n, _)| ANNOUNCED_PCRS.contains(n))
            .map(|(n, p)| (format!("PCR{n}"), p.to_string()))
            .collect(),
        release: i.release.as_ref().map(|r| {
            format!(
                "{} signed by {} of {} needed",
                r.version,
                r.signers.len(),
                r.threshold
            )
        }),
    }
}

fn print_json(
    d: &Discovery,
    fetched: usize,
    checked_at: u64,
    root: &verifier::attestation::TrustedRoot,
) {
    let out = JsonDiscovery {
        checked_at,
        root_sha256: root.sha256_hex(),
        fetched,
        superseded: d.superseded,
        instances: d.instances.iter().map(json_instance).collect(),
        invalid: d
            .refused
            .iter()
            .map(|r| JsonRefused {
                event_id: r.event.id.to_hex(),
                author: npub(&r.event.pubkey),
                created_at: r.event.created_at.as_secs(),
                check: r.check.clone(),
                reason: r.reason.clone(),
            })
            .collect(),
    };
    println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
}

fn print_text(
    d: &Discovery,
    fetched: usize,
    relays: usize,
    checked_at: u64,
    root: &verifier::attestation::TrustedRoot,
) {
    let secs = |t: u64| when(i64::try_from(t).unwrap_or(i64::MAX));
    println!(
        "{fetched} instance event(s) from {relays} relay(s), checked at {} against {}",
        secs(checked_at),
        root_name(root)
    );
    println!(
        "\nValid instances, newest per service key: {}",
        d.instances.len()
    );
    for i in &d.instances {
        let j = json_instance(i);
        println!("\n  instance     {}", j.service);
        println!("  builder      {}", j.builder);
        println!("  launcher     {}", j.launcher);
        println!("  mode         {}", printable(&j.mode));
        println!("  module       {}", printable(&j.module_id));
        println!("  admin relay  {}", printable(&j.admin_relay));
        println!("  expires      {}", secs(j.expiration));
        println!(
            "  event        {} (kind {}, {})",
            j.event_id,
            j.kind,
            secs(j.created_at)
        );
        if let Some(release) = &j.release {
            println!("  release      {release}");
        }
        for (name, value) in &j.pcrs {
            println!("  {name:12} {value}");
        }
    }
    if d.superseded > 0 {
        println!(
            "\n({} older valid event(s) superseded by newer ones)",
            d.superseded
        );
    }
    println!("\nInvalid events: {}", d.refused.len());
    for r in &d.refused {
        println!(
            "  {} by {} ({}): {}: {}",
            r.event.id,
            npub(&r.event.pubkey),
            secs(r.event.created_at.as_secs()),
            printable(&r.check),
            printable(&r.reason)
        );
    }
}

//! `dev-stack --instances 3` as a library: on one relay, three signers of
//! three launchers, each keeping its keys with the three custodians (of
//! three more launchers). Each signer seals its state once a quorum of the
//! custodians announced, writes its PID and instance event where scripts
//! look, and serves an owner's import only once its state is sealed; a
//! signer killed with SIGKILL comes back with its keys.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::time::Duration;

use nostr::{JsonUtil, Keys, ToBech32};
use parent::dev_stack::cluster::{custodian_dir, member_dir, Cluster};

mod common;
use common::{relay, stack_config, test_dir, Key, Writers};

/// Waits until `file` contains `needle`.
async fn wait_for_log(file: &std::path::Path, needle: &str, timeout: Duration) {
    wait_for_logged(file, needle, 1, timeout).await;
}

/// Waits until `file` contains `needle` `times` times.
async fn wait_for_logged(file: &std::path::Path, needle: &str, times: usize, timeout: Duration) {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let text = std::fs::read_to_string(file).unwrap_or_default();
        if text.matches(needle).count() >= times {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{needle:?} not in {} within {timeout:?}:\n{text}",
            file.display()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn three_instances_seal_their_states_with_each_other() {
    let (_relay, url, relay_addr) = relay(Writers::default()).await;
    let dir = test_dir("cluster");
    let config = stack_config(dir.clone(), url, relay_addr, 3600);
    // One instance is no cluster: it would have no custodian.
    assert!(Cluster::start(&config, 1).await.is_err());
    let mut cluster = Cluster::start(&config, 3).await.unwrap();
    let events = cluster
        .wait_for_events(Duration::from_secs(60))
        .await
        .unwrap();
    let services: std::collections::BTreeSet<_> = events.iter().map(|e| e.pubkey).collect();
    assert_eq!(services.len(), 3);
    let launchers: std::collections::BTreeSet<_> = cluster
        .launchers
        .iter()
        .chain(&cluster.custodian_launchers)
        .collect();
    assert_eq!(launchers.len(), 6);
    for (i, stack) in cluster.stacks.iter().enumerate() {
        let n = i + 1;
        let here = member_dir(&dir, n);
        assert_eq!(stack.paths.event, here.join("instance-event.json"));
        let pid = std::fs::read_to_string(here.join("enclave.pid")).unwrap();
        assert_eq!(pid.trim().parse::<u32>().ok(), stack.enclave.id());
        wait_for_log(
            stack.enclave.log(),
            "this enclave holds the state",
            Duration::from_secs(60),
        )
        .await;
    }
    // Each custodian keeps every signer's state.
    for (i, custodian) in cluster.custodians.iter().enumerate() {
        let here = custodian_dir(&dir, i + 1);
        let pid = std::fs::read_to_string(here.join("enclave.pid")).unwrap();
        assert_eq!(pid.trim().parse::<u32>().ok(), custodian.enclave.id());
        let log = std::fs::read_to_string(custodian.enclave.log()).unwrap();
        for launcher in &cluster.launchers {
            assert!(log.contains(&format!(
                "custodian of this launcher's enclaves launcher={}",
                launcher.to_bech32().unwrap()
            )));
        }
        wait_for_logged(
            custodian.enclave.log(),
            "custody: state sealed",
            3,
            Duration::from_secs(30),
        )
        .await;
    }
    // Once its state is its own, each signer announces how its keys are
    // kept: the state and its three custodians, in both events; the
    // verifier says so.
    for stack in &cluster.stacks {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        let kept = loop {
            let json = std::fs::read_to_string(&stack.paths.event).unwrap_or_default();
            let kept = nostr::Event::from_json(&json)
                .ok()
                .and_then(|e| verifier::event::continuity::Continuity::of(&e));
            if let Some(kept) = kept {
                break kept;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no continuity tags in {json}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        assert_eq!(kept.state, parent::dev_stack::cluster::STATE_ID);
        assert_eq!(kept.custodians, cluster.custodian_launchers);
        assert_eq!(kept.reset_at, None);
        let announced = std::fs::read_to_string(&stack.paths.announcement).unwrap();
        let announced = nostr::Event::from_json(&announced).unwrap();
        assert_eq!(
            verifier::event::continuity::Continuity::of(&announced),
            Some(kept)
        );
    }
    let p = &cluster.stacks[0].paths;
    let s = |p: &std::path::Path| p.display().to_string();
    let out = std::process::Command::new(common::bin_dir().join("verifier"))
        .args([
            "check",
            &s(&p.event),
            "--root",
            &s(&p.dev_root),
            "--pcrs",
            &s(&p.pcrs),
        ])
        .output()
        .unwrap();
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(
        printed
            .contains("kept across restarts under state \"dev\" by 3 custodians (a quorum is 2)"),
        "{printed}"
    );
    // An owner imports into instance 1, which has its state.
    let user = Keys::generate();
    let key_file = dir.join("user.nsec");
    std::fs::write(&key_file, user.secret_key().to_bech32().unwrap()).unwrap();
    let key = Key::new(&cluster.stacks[0].paths, &key_file);
    assert_eq!(key.ok("import"), "key imported");
    // Nothing was restarted, and nothing logged the key.
    assert!(cluster.supervise().unwrap().is_empty());
    let nsec = user.secret_key().to_bech32().unwrap();
    let hex = user.secret_key().to_secret_hex();
    for stack in &cluster.stacks {
        let log = std::fs::read_to_string(stack.enclave.log()).unwrap();
        assert!(!log.contains(&nsec) && !log.contains(&hex));
    }
    cluster.stop().await.unwrap();
}

/// A cluster of 3 in `test_dir(name)` on a relay of its own, every
/// signer holding its state: the relay (kept alive), the folder, the
/// cluster.
async fn serving(
    name: &str,
) -> (
    parent::dev_stack::relay::DevRelay,
    std::path::PathBuf,
    Cluster,
) {
    let (relay, url, relay_addr) = relay(Writers::default()).await;
    let dir = test_dir(name);
    let config = stack_config(dir.clone(), url, relay_addr, 3600);
    let mut cluster = Cluster::start(&config, 3).await.unwrap();
    cluster
        .wait_for_events(Duration::from_secs(60))
        .await
        .unwrap();
    for stack in &cluster.stacks {
        wait_for_log(
            stack.enclave.log(),
            "this enclave holds the state",
            Duration::from_secs(60),
        )
        .await;
    }
    (relay, dir, cluster)
}

/// Runs the supervisor until enclave `n` (signer `n`, custodian `-n`) was
/// started again.
async fn supervise_until_restarted(cluster: &mut Cluster, n: isize) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let restarted = cluster.supervise().unwrap();
        assert!(restarted.iter().all(|r| *r == n), "{restarted:?}");
        if restarted.contains(&n) {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The kill-and-restart: an owner imports into signer 1, grants
/// an agent (nostr-tools' BunkerSigner) kind 1 notes, and revokes another
/// app. A custodian is SIGKILLed (it comes back empty), and the signers
/// keep serving on the other two; then signer 1 is SIGKILLed and its
/// supervisor starts it again. While its parent hides the newest
/// snapshots, the new enclave refuses the old one and stops (it neither
/// serves it nor starts fresh); once they are back, the next takes the
/// state back from the two custodians that still hold it, the agent signs on its old
/// connection, the revoked app is still refused, a key deleted before the
/// kill stays deleted, the log is intact, and the key is never in a log.
#[tokio::test(flavor = "multi_thread")]
async fn a_killed_enclave_comes_back_with_its_keys_grants_and_revocations() {
    common::interop_dir();
    let (_relay, dir, mut cluster) = serving("cluster-kill").await;
    let user = Keys::generate();
    let pubkey = user.public_key().to_hex();
    let key_file = dir.join("user.nsec");
    std::fs::write(&key_file, user.secret_key().to_bech32().unwrap()).unwrap();
    let key = Key::new(&cluster.stacks[0].paths, &key_file);
    assert_eq!(key.ok("import"), "key imported");
    let bunker = |perms: &str| {
        let (code, url, stderr) = key.run("bunker-url", &["--perms", perms]);
        assert_eq!(code, Some(0), "{stderr}");
        url
    };
    let (agent_url, other_url) = (bunker("sign_event:1"), bunker("sign_event:1"));
    let agent = Keys::generate();
    let other = Keys::generate();
    let hex = |k: &Keys| k.secret_key().to_secret_hex();
    let run = |mode: &str, url: &str, app: &Keys, needle: &str| {
        let sk = hex(app);
        let mut args = vec![mode, url, sk.as_str(), pubkey.as_str()];
        if !needle.is_empty() {
            args.push(needle);
        }
        common::node("agent.mjs", &args).unwrap_or_else(|e| panic!("{e}"))
    };
    assert!(run("connect", &agent_url, &agent, "").contains("PASS"));
    assert!(run("connect", &other_url, &other, "").contains("PASS"));
    assert_eq!(
        key.ok_with(
            "revoke",
            &["--app", &other.public_key().to_bech32().unwrap()]
        ),
        "the app's access is revoked"
    );
    assert!(run("refused", &other_url, &other, "unauthorized").contains("PASS"));
    // Another owner imports and deletes a key before the kill.
    let gone = Keys::generate();
    let gone_file = dir.join("gone.nsec");
    std::fs::write(&gone_file, gone.secret_key().to_bech32().unwrap()).unwrap();
    let gone_key = Key::new(&cluster.stacks[0].paths, &gone_file);
    assert_eq!(gone_key.ok("import"), "key imported");
    let (code, _, stderr) = gone_key.run("delete", &[]);
    assert_eq!(code, Some(0), "{stderr}");
    let log_before = key.ok_with("log", &[]);
    assert_eq!(log_before.matches("allowed").count(), 4, "{log_before}");

    // SIGKILL, as the out-of-memory killer or a crash would: a custodian
    // first. It comes back empty; the signers' leases hold on the others.
    let kill = |pid_file: std::path::PathBuf| {
        let pid = std::fs::read_to_string(pid_file).unwrap();
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid.trim().parse().unwrap()),
            nix::sys::signal::Signal::SIGKILL,
        )
        .unwrap();
        pid
    };
    kill(custodian_dir(&dir, 1).join("enclave.pid"));
    supervise_until_restarted(&mut cluster, -1).await;
    cluster.custodians[0]
        .wait_for_event(Duration::from_secs(30))
        .await
        .unwrap();
    // Then signer 1; while it is down, its launcher's parent hides every
    // snapshot but the oldest it keeps (as a parent serving an old
    // snapshot, or none, would).
    let pid = kill(member_dir(&dir, 1).join("enclave.pid"));
    let states = member_dir(&dir, 1).join("state");
    let state = std::fs::read_dir(&states)
        .unwrap()
        .flatten()
        .find(|e| e.path().is_dir())
        .unwrap()
        .path();
    let mut snapshots: Vec<_> = std::fs::read_dir(&state)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    snapshots.sort();
    assert!(snapshots.len() >= 2, "{snapshots:?}");
    let hidden = dir.join("hidden");
    std::fs::create_dir_all(&hidden).unwrap();
    for s in snapshots.iter().skip(1) {
        std::fs::rename(s, hidden.join(s.file_name().unwrap())).unwrap();
    }
    supervise_until_restarted(&mut cluster, 1).await;
    let new_pid = std::fs::read_to_string(member_dir(&dir, 1).join("enclave.pid")).unwrap();
    assert_ne!(new_pid, pid);
    // It waits out the dead enclave's lease (30 s and a 10 s margin), then
    // refuses the old snapshot and stops: it never serves it, nor starts
    // fresh.
    let refused = dir.join("1").join("enclave-restart-1.log");
    wait_for_log(
        &refused,
        "which the custodians name as the newest",
        Duration::from_secs(120),
    )
    .await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while cluster.stacks[0].enclave.exited().unwrap().is_none() {
        assert!(tokio::time::Instant::now() < deadline, "it did not stop");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let text = std::fs::read_to_string(&refused).unwrap();
    assert!(!text.contains("this enclave holds the state"), "{text}");
    assert!(!text.contains("a new state is sealed"), "{text}");
    // The snapshots are back; the supervisor starts it again, and it
    // takes the state over at once (the one that stopped never served).
    for s in snapshots.iter().skip(1) {
        std::fs::rename(hidden.join(s.file_name().unwrap()), s).unwrap();
    }
    let restart_log = dir.join("1").join("enclave-restart-2.log");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    while !std::fs::read_to_string(&restart_log)
        .unwrap_or_default()
        .contains("this enclave holds the state")
    {
        // Nobody else stops meanwhile: their leases hold.
        let restarted = cluster.supervise().unwrap();
        assert!(restarted.iter().all(|r| *r == 1), "{restarted:?}");
        assert!(tokio::time::Instant::now() < deadline, "not restored");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    cluster
        .wait_for_events(Duration::from_secs(30))
        .await
        .unwrap();
    assert!(std::fs::read_to_string(&restart_log)
        .unwrap()
        .contains("restored keys keys=1"));

    // The deleted key stays deleted.
    let (code, _, _) = gone_key.run("status", &[]);
    assert_eq!(code, Some(1), "a deleted key came back");
    // The agent signs on its old connection; the revoked app stays out.
    assert!(run("sign", &agent_url, &agent, "").contains("PASS"));
    assert!(run("refused", &other_url, &other, "unauthorized").contains("PASS"));
    // The log is intact: what was there before is there still.
    let log_after = key.ok_with("log", &[]);
    for line in log_before.lines().filter(|l| !l.trim().is_empty()) {
        let entry = line.split("  ").skip(1).collect::<Vec<_>>().join("  ");
        assert!(
            log_after.contains(entry.trim()),
            "{entry:?} not in:\n{log_after}"
        );
    }
    // Two signatures: the one before the kill is counted unless it fell in
    // the last 10 s of uses, which a kill may lose (README).
    let report: Vec<verifier::grant::wire::AppReport> =
        serde_json::from_str(&key.ok_with("apps", &["--json"])).unwrap();
    assert_eq!(report.len(), 1);
    assert!((1..=2).contains(&report[0].used), "{report:?}");
    let apps = key.ok_with("apps", &[]);
    assert!(
        apps.contains(&agent.public_key().to_bech32().unwrap()),
        "{apps}"
    );
    assert!(
        !apps.contains(&other.public_key().to_bech32().unwrap()),
        "{apps}"
    );
    let nsec = user.secret_key().to_bech32().unwrap();
    for entry in std::fs::read_dir(&dir).unwrap().flatten() {
        for file in std::fs::read_dir(entry.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            if file.path().extension().is_some_and(|e| e == "log") {
                let text = std::fs::read_to_string(file.path()).unwrap();
                assert!(
                    !text.contains(&nsec)
                        && !text.contains(&hex(&user))
                        && !text.contains(&hex(&gone))
                );
            }
        }
    }
    cluster.stop().await.unwrap();
}

/// An upgrade: signer 1 runs this code's version, released by the dev
/// maintainers, and holds a key an agent uses. It is stopped, and a build
/// of 1.1.0 that the same maintainers release starts in its place: the
/// custodians hand it the state under the state's sealed release policy,
/// so the key, the agent's grant and its connection move to the new code.
#[tokio::test(flavor = "multi_thread")]
async fn an_upgrade_to_newly_released_code_keeps_the_keys() {
    common::interop_dir();
    let (_relay, dir, mut cluster) = serving("cluster-upgrade").await;
    let user = Keys::generate();
    let pubkey = user.public_key().to_hex();
    let key_file = dir.join("user.nsec");
    std::fs::write(&key_file, user.secret_key().to_bech32().unwrap()).unwrap();
    let key = Key::new(&cluster.stacks[0].paths, &key_file);
    assert_eq!(key.ok("import"), "key imported");
    let (code, agent_url, stderr) = key.run("bunker-url", &["--perms", "sign_event:1"]);
    assert_eq!(code, Some(0), "{stderr}");
    let agent = Keys::generate();
    let sk = agent.secret_key().to_secret_hex();
    let run = |mode: &str| {
        common::node("agent.mjs", &[mode, &agent_url, &sk, &pubkey])
            .unwrap_or_else(|e| panic!("{e}"))
    };
    assert!(run("connect").contains("PASS"));

    let old = cluster.stacks[0]
        .enclave
        .stop(Duration::from_secs(10))
        .await
        .unwrap();
    assert!(old.success(), "{old}");
    cluster.stacks[0].upgrade_enclave("1.1.0").await.unwrap();
    let restart_log = dir.join("1").join("enclave-restart-1.log");
    wait_for_log(
        &restart_log,
        "this enclave holds the state",
        Duration::from_secs(120),
    )
    .await;
    let log = std::fs::read_to_string(&restart_log).unwrap();
    assert!(log.contains("restored keys keys=1"), "{log}");
    assert!(
        log.contains("this code is a release under its release policy version=1.1.0"),
        "{log}"
    );
    let event = cluster.stacks[0]
        .wait_for_event(Duration::from_secs(30))
        .await
        .unwrap();
    assert!(
        event
            .tags
            .iter()
            .any(|t| t.as_slice() == ["v".to_owned(), "1.1.0".to_owned()]),
        "{:?}",
        event.tags
    );
    // The owner's verifier, pinning the new measurements, finds the key.
    let key = Key::new(&cluster.stacks[0].paths, &key_file);
    let (code, _, stderr) = key.run("status", &[]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(run("sign").contains("PASS"));
    // Nobody else restarted.
    assert!(cluster.supervise().unwrap().is_empty());
    cluster.stop().await.unwrap();
}

//! Load, fault and memory figures for BENCHMARKS.md, on in-process dev
//! relays (LocalRelay with TCP_NODELAY) with the real signer, its
//! subscriptions and event loop (no attestation). Every mode prints
//! numbers; none asserts them.
//!
//! ```sh
//! cargo run --release -p enclave --example load -- latency --clients 20 --requests 50
//! cargo run --release -p enclave --example load -- compare
//! cargo run --release -p enclave --example load -- memory --keys 100000 --relays 3
//! cargo run --release -p enclave --example load -- imports --count 10000
//! cargo run --release -p enclave --example load -- flood --rate 1000 --requests 500
//! cargo run --release -p enclave --example load -- soak --minutes 30
//! ```

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod flood;
mod harness;
mod latency;
mod memory;
mod soak;

use clap::{Parser, Subcommand};

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    mode: Mode,
}

#[derive(Subcommand)]
enum Mode {
    /// N keys with one app each, each app on its own connection sending
    /// sign_event requests one after another: throughput and latency.
    Latency {
        #[arg(long, default_value_t = 20)]
        clients: usize,
        #[arg(long, default_value_t = 50)]
        requests: usize,
    },
    /// One key and N apps on our signer, then on rust-nostr's
    /// NostrConnectRemoteSigner, in the same run: APPSxREQUESTS, comma-separated.
    Compare {
        #[arg(long, default_value = "1x200,20x50,100x20")]
        runs: String,
    },
    /// Imports K keys spread over R relays: memory growth per key and the
    /// signer's relay connections.
    Memory {
        #[arg(long, default_value_t = 1000)]
        keys: usize,
        #[arg(long, default_value_t = 3)]
        relays: usize,
        /// More relays for nsec.app permission events (production: 5).
        #[arg(long, default_value_t = 0)]
        perm_relays: usize,
    },
    /// Runs COUNT relays and prints their URLs (the memory mode's child).
    #[command(hide = true)]
    ServeRelays {
        #[arg(long, default_value_t = 3)]
        count: usize,
    },
    /// N admin imports from N owners sent at once: how many are answered.
    Imports {
        #[arg(long, default_value_t = 10_000)]
        count: usize,
    },
    /// A stranger's RATE signed junk events a second at the service key
    /// and a held key, beside an app's sign_event round trips.
    Flood {
        #[arg(long, default_value_t = 1000)]
        rate: usize,
        #[arg(long, default_value_t = 500)]
        requests: usize,
    },
    /// A steady mixed load for MINUTES: answered, errors and memory per minute.
    Soak {
        #[arg(long, default_value_t = 30)]
        minutes: u64,
        #[arg(long, default_value_t = 20)]
        apps: usize,
        /// Milliseconds between one app's requests.
        #[arg(long, default_value_t = 200)]
        period_ms: u64,
        /// Against the real stack (`enclave run` and `parent run` as
        /// processes, from target/release), measuring the enclave's memory.
        #[arg(long)]
        stack: bool,
    },
}

fn parse_runs(text: &str) -> Vec<(usize, usize)> {
    text.split(',')
        .map(|r| {
            let (a, b) = r.trim().split_once('x').expect("runs are APPSxREQUESTS");
            (a.parse().expect("apps"), b.parse().expect("requests"))
        })
        .collect()
}

#[tokio::main]
async fn main() {
    // Warnings (shed or refused traffic) go to stderr; RUST_LOG for more.
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().mode {
        Mode::Latency { clients, requests } => latency::latency(clients, requests).await,
        Mode::Compare { runs } => latency::compare(&parse_runs(&runs)).await,
        Mode::Memory {
            keys,
            relays,
            perm_relays,
        } => memory::memory(keys, relays, perm_relays).await,
        Mode::Imports { count } => memory::imports(count).await,
        Mode::ServeRelays { count } => memory::serve_relays(count).await,
        Mode::Flood { rate, requests } => flood::flood_test(rate, requests).await,
        Mode::Soak {
            minutes,
            apps,
            period_ms,
            stack,
        } => soak::soak(minutes, apps, period_ms, stack).await,
    }
}

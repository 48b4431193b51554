//! What the parent's binaries (`parent`, `dev-stack`) share around their
//! work: logging to stderr, a runtime, an exit status, and the signals
//! that stop them.

use std::future::Future;
use std::process::ExitCode;

use tracing::error;

/// Logs to stderr, filtered by `RUST_LOG` (default `info`).
pub fn init_logging() {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::registry()
        .with(QuietDisconnects)
        .with(filter)
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())),
        )
        .try_init();
}

/// The embedded relay (nostr-relay-builder) logs every client that leaves
/// without a WebSocket closing handshake as an error, and most clients
/// leave that way: shown only when debug logging is on.
struct QuietDisconnects;

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for QuietDisconnects {
    fn event_enabled(
        &self,
        event: &tracing::Event<'_>,
        _ctx: tracing_subscriber::layer::Context<'_, S>,
    ) -> bool {
        if !event.metadata().target().starts_with("nostr_relay_builder") {
            return true;
        }
        let mut message = MessageHas {
            needle: "without closing handshake",
            found: false,
        };
        event.record(&mut message);
        !message.found || tracing::level_filters::LevelFilter::current() >= tracing::Level::DEBUG
    }
}

/// Whether an event's `message` field contains `needle`.
struct MessageHas {
    needle: &'static str,
    found: bool,
}

impl tracing::field::Visit for MessageHas {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" && format!("{value:?}").contains(self.needle) {
            self.found = true;
        }
    }
}

/// Runs `work` on a new runtime; an error is logged and exits 1.
pub fn run_to_exit(work: impl Future<Output = anyhow::Result<()>>) -> ExitCode {
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            error!("cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(work) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error!("{e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Ctrl-C (SIGINT) and SIGTERM, caught from the moment [`Shutdown::install`]
/// returns: install it before announcing that anything listens, or a
/// signal sent right after that announcement kills the process uncleanly.
#[derive(Debug)]
pub struct Shutdown {
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
}

impl Shutdown {
    /// Starts catching the signals (needs a runtime).
    pub fn install() -> anyhow::Result<Self> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            Ok(Self {
                interrupt: signal(SignalKind::interrupt())?,
                terminate: signal(SignalKind::terminate())?,
            })
        }
        #[cfg(not(unix))]
        Ok(Self {})
    }

    /// Resolves when either signal arrives.
    pub async fn wait(&mut self) -> anyhow::Result<()> {
        #[cfg(unix)]
        {
            tokio::select! {
                _ = self.interrupt.recv() => {}
                _ = self.terminate.recv() => {}
            }
            Ok(())
        }
        #[cfg(not(unix))]
        {
            tokio::signal::ctrl_c().await?;
            Ok(())
        }
    }
}

//! `lookout run`: the daemon's runtime, its signals and its logging.

use anyhow::Result;
use clap::ArgMatches;

use super::args::RunArgs;
use crate::config::LogFormat;
use crate::daemon::{Daemon, RunMode};

fn disabled() -> bool {
    std::env::var("LOG_SIDECAR_DISABLED")
        .is_ok_and(|v| matches!(v.trim(), "1" | "true" | "yes" | "on"))
}

pub(crate) fn run(args: RunArgs, given: &ArgMatches) -> Result<()> {
    if disabled() {
        return Ok(());
    }
    // The runtime and the signal handlers come first: from here on SIGTERM
    // and SIGINT end the daemon cleanly and SIGHUP asks for a reload,
    // whatever start-up is doing.
    let runtime = daemon_runtime()?;
    let result = runtime.block_on(async { start(args, given).await });
    // A compile still running on the blocking pool is not waited for.
    runtime.shutdown_timeout(std::time::Duration::from_millis(100));
    result
}

/// `lookout run` on the daemon's runtime.
async fn start(args: RunArgs, given: &ArgMatches) -> Result<()> {
    let signals = Signals::register()?;
    let settings = args.settings.load(given)?;
    init_logging(settings.log_format);
    // A connection per target: thousands of targets need more descriptors
    // than the usual soft limit.
    match crate::fdlimit::raise_nofile_limit() {
        Ok((before, after)) if after > before => {
            tracing::debug!(before, after, "open files limit raised");
        }
        Ok(_) => {}
        Err(e) => tracing::warn!("could not raise the open files limit: {e}"),
    }
    let mode = RunMode {
        dry_run: args.dry_run,
        polls: if args.once { Some(1) } else { args.polls },
        strict: args.strict,
    };
    let (reload_tx, reloads) = tokio::sync::mpsc::unbounded_channel();
    // A bounded run (--once, --polls) does not reload. Otherwise the
    // folders are watched before the plugins folder is listed, so a file
    // copied in while the daemon starts is loaded (by the reload its
    // arrival triggers, once the start-up loads are done).
    let _watching = if mode.polls.is_none() {
        let watcher = crate::watchers::reload::watch(
            &settings.plugins,
            settings.config_path.as_deref(),
            reload_tx.clone(),
        )?;
        forward_sighup(signals.hangup, reload_tx);
        Some(watcher)
    } else {
        forward_sighup_ignored(signals.hangup);
        None
    };
    let daemon = Daemon::prepare(settings, mode)?;
    daemon.run(mode, reloads, signals.shutdown).await
}

/// The daemon's runtime: a worker per core (at most 8); idle workers sleep
/// until a timer or a socket wakes them.
pub(crate) fn daemon_runtime() -> Result<tokio::runtime::Runtime> {
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get().min(8));
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .thread_name("lookout")
        .enable_all()
        .build()?)
}

/// A runtime for the authoring commands.
pub(crate) fn authoring_runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

pub(crate) fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("LOOKOUT_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.with_ansi(false).init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// The daemon's signals, registered before anything else it does: a
/// signal that arrives before its handler runs waits for it.
pub(crate) struct Signals {
    /// Completes on SIGTERM or SIGINT.
    pub(crate) shutdown: std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>,
    /// SIGHUP.
    pub(crate) hangup: tokio::signal::unix::Signal,
}

impl Signals {
    pub(crate) fn register() -> Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        let hangup = signal(SignalKind::hangup())?;
        Ok(Self {
            shutdown: Box::pin(async move {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = int.recv() => {}
                }
                tracing::info!("shutdown signal received");
            }),
            hangup,
        })
    }
}

/// Turns every SIGHUP into a reload request.
fn forward_sighup(
    mut hup: tokio::signal::unix::Signal,
    tx: tokio::sync::mpsc::UnboundedSender<()>,
) {
    tokio::spawn(async move {
        while hup.recv().await.is_some() {
            tracing::info!("SIGHUP received");
            if tx.send(()).is_err() {
                break;
            }
        }
    });
}

/// A bounded run does not reload: SIGHUP is logged and otherwise ignored
/// rather than ending the process.
fn forward_sighup_ignored(mut hup: tokio::signal::unix::Signal) {
    tokio::spawn(async move {
        while hup.recv().await.is_some() {
            tracing::info!("SIGHUP received; a bounded run does not reload");
        }
    });
}

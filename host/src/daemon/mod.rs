//! The daemon: its state (settings, the shared engine, the loaded watchers,
//! the publisher) and the wiring of its tasks. Scheduling lives in
//! [`poller`] (one task per watched Redis) and [`crate::delivery::task`]
//! (the publisher); `start` checks and prepares everything, `run` starts
//! the tasks, loads the watchers concurrently, applies reloads and stops
//! everything on shutdown; `fleet` keeps one poller per target, in step
//! with `discover`; `events` words what the daemon itself reports;
//! `conditions` tells the bus's and the outbox's conditions.
//!
//! ```text
//!  watchers/*.wasm ──compile (blocking pool, concurrent)──┐
//!                                                         ▼ desired watchers (never waits)
//!  poll timer ──► poller task ── probe Redis ── call watchers (each under its deadline)
//!                     │
//!                     ▼ envelopes (bounded queue, always drained)
//!                publisher task ── outbox ── breaker ── spool ──► bus
//! ```

mod conditions;
pub(crate) mod discover;
pub(crate) mod events;
pub(crate) mod fleet;
mod inbox;
pub(crate) mod lateness;
pub(crate) mod poller;
mod run;
mod start;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use crate::config::Settings;
use crate::delivery::envelope::Origin;
use crate::delivery::publisher::Publisher;
pub use crate::delivery::task::rss_kib;
use crate::metrics::Metrics;
use crate::redis::conn::Conn;
use crate::sandbox::Engine;
use crate::watchers::load::Spec;
use crate::watchers::reload::Stamp;

/// How a run ends besides the shutdown future.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct RunMode {
    /// Print envelopes on stdout instead of publishing.
    pub dry_run: bool,
    /// Stop after this many polls (`--once` is 1); `None` runs until shutdown.
    pub polls: Option<u64>,
    /// Refuse to start when a watcher file fails to load (`--strict`);
    /// otherwise such a file is skipped and reported, and the others run.
    pub strict: bool,
}

/// A prepared daemon: settings checked, watcher files listed, connections
/// and publisher built. Nothing is compiled or dialled yet.
pub(crate) struct Daemon {
    settings: Settings,
    origin: Origin,
    engine: Engine,
    publisher: Publisher,
    /// Start-up watcher files, each with its stamp when it was listed.
    files: Vec<(PathBuf, Stamp)>,
    /// Spool replay at start: (envelopes, corrupt records, folder).
    replayed: Option<(usize, u64, String)>,
    /// The heartbeat's own bus connection and key, when it is on.
    heartbeat: Option<(Conn, String)>,
    /// The metrics and the socket bound at `metrics_addr`, when it is set.
    metrics: Option<(Arc<Metrics>, std::net::TcpListener)>,
}

/// The watchers running, by name, shared by every poller.
type Registry = BTreeMap<String, Arc<Spec>>;

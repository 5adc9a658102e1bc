//! Lookout: a Redis watcher host whose watchers are WebAssembly components.
//!
//! # Layout, in pipeline order
//!
//! - [`checks`]: what every settings section checks alike: integer and
//!   seconds keys typed with their default and range, Redis URLs.
//! - [`config`]: `lookout.toml`'s top level, environment and flags merged
//!   with each module's own tables into settings; where each came from.
//! - [`targets`]: what to watch: targets, discover entries, the shard hash.
//! - [`discovery`]: the nodes of a Redis Cluster or a Sentinel set.
//! - [`redis`]: Redis I/O: connections with timeouts and the redial-once
//!   rule, the probes that build a snapshot (the declared ones among them),
//!   backoff, password redaction.
//! - [`sandbox`]: the shared wasmtime engine; instances with a memory cap
//!   and a deadline on every call, of either ABI version; captured stdio;
//!   caps on output.
//! - [`watchers`]: loading components, their settings, what each watcher
//!   sees of a snapshot, the per-target supervisor (restarts, quarantine),
//!   hot reload.
//! - [`delivery`]: envelopes, the outbox, breaker and spool, and the
//!   publisher task that owns them.
//! - [`daemon`]: the tasks wired together: one poller per watched Redis,
//!   concurrent watcher loading, reloads, shutdown.
//! - [`metrics`]: the daemon's own metrics and `/healthz`, served at
//!   `metrics_addr`.
//! - [`authoring`]: `lookout check`, `record`, `test` and `new`.
//! - [`commands`]: `lookout targets`, the targets configured and found;
//!   `lookout config`, the settings resolved and where each came from.
//! - [`tail`]: `lookout tail`, the envelope stream followed and printed.
//! - [`untrusted`]: server- and stream-controlled text made safe to print.

pub mod authoring;
pub mod checks;
pub mod commands;
pub mod config;
pub mod daemon;
pub mod delivery;
pub mod discovery;
pub mod fdlimit;
pub mod metrics;
pub mod redis;
pub mod sandbox;
pub mod tail;
pub mod targets;
pub mod untrusted;
pub mod watchers;

pub use config::Settings;
pub use daemon::{Daemon, RunMode};

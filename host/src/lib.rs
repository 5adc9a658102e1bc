//! Lookout: a Redis watcher host whose watchers are WebAssembly components.
//!
//! # Layout
//!
//! - [`config`]: `lookout.toml`, environment and flags merged into settings.
//! - [`limits`]: sandbox limits and cadence, default and per watcher.
//! - [`stdio`]: a watcher's stdout/stderr, into the host log, rate-limited.
//! - [`redact`]: keeps Redis passwords out of every message.
//! - [`probe`]: Redis connections with timeouts; PING, INFO, incremental SLOWLOG.
//! - [`plugin`]: the wasmtime engine; compiling, checking and sandboxing components.
//! - [`watcher`]: a loaded watcher: component, manifest, settings, live instance.
//! - [`output`]: a watcher's events cut to its caps.
//! - [`reload`]: hot reload on file changes and SIGHUP.
//! - [`watcher_config`]: a watcher's settings from its manifest and TOML files.
//! - [`envelope`]: the JSON wire format.
//! - [`buffer`]: the bounded outbox and its drop policy.
//! - [`breaker`]: the publish circuit breaker.
//! - [`spool`]: the optional on-disk spool of undelivered envelopes.
//! - [`publish`]: batched PUBLISH + XADD pipelines through the breaker, or JSON lines.
//! - [`backoff`]: waits between attempts while Redis is unreachable.
//! - [`supervisor`]: runs the due watchers; restarts, backoff, quarantine.
//! - [`daemon`]: the poll loop tying it together.
//! - [`recording`]: `lookout record` and `lookout test`: snapshots and events as JSON lines.
//! - [`check`]: `lookout check`, a watcher loaded and described as the daemon would.

pub mod backoff;
pub mod breaker;
pub mod buffer;
pub mod check;
pub mod config;
pub mod daemon;
pub mod envelope;
pub mod limits;
pub mod output;
pub mod plugin;
pub mod probe;
pub mod publish;
pub mod recording;
pub mod redact;
pub mod reload;
pub mod scaffold;
pub mod spool;
pub mod stdio;
pub mod supervisor;
pub mod watcher;
pub mod watcher_config;

pub use config::Settings;
pub use daemon::{Daemon, RunMode};

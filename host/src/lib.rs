//! Lookout: a Redis watcher host whose watchers are WebAssembly components.
//!
//! # Layout
//!
//! - [`config`]: `lookout.toml`, environment and flags merged into settings.
//! - [`redact`]: keeps Redis passwords out of every message.
//! - [`probe`]: Redis connections with timeouts; PING, INFO, incremental SLOWLOG.
//! - [`plugin`]: the wasmtime engine; loading, checking and calling watchers.
//! - [`watcher_config`]: a watcher's settings from its manifest and TOML files.
//! - [`envelope`]: the JSON wire format.
//! - [`publish`]: PUBLISH + XADD pipelines, or JSON lines for `--dry-run`.
//! - [`backoff`]: waits between attempts while Redis is unreachable.
//! - [`worker`]: the thread that owns the watchers and runs their calls.
//! - [`daemon`]: the poll loop tying it together.
//! - [`check`]: `lookout check`, a watcher loaded and described as the daemon would.

pub mod backoff;
pub mod check;
pub mod config;
pub mod daemon;
pub mod envelope;
pub mod plugin;
pub mod probe;
pub mod publish;
pub mod redact;
pub mod watcher_config;
pub mod worker;

pub use config::Settings;
pub use daemon::{Daemon, RunMode};

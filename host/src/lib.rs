//! Lookout: a Redis watcher host whose watchers are WebAssembly components.
//!
//! # Layout, in pipeline order
//!
//! Every module is private to the crate; the names the `lookout` binary,
//! the integration tests and the benchmarks use are re-exported below.
//!
//! - `checks`: what every settings section checks alike: integer and
//!   seconds keys typed with their default and range, Redis URLs.
//! - `config`: `lookout.toml`'s top level, environment and flags merged
//!   with each module's own tables into settings (`mod.rs`); where each
//!   came from (`shown`).
//! - `targets`: what to watch: targets (`mod.rs`), discover entries
//!   (`discover`), the shard hash (`shard`).
//! - `discovery`: the nodes of a Redis Cluster (`cluster`) or a Sentinel
//!   set (`sentinel`).
//! - `redis`: Redis I/O: connections with timeouts and the redial-once
//!   rule (`conn`), read and written on the caller's task (`link`), where
//!   and how to dial (`endpoint`, `dial`, `tls`, `allow`),
//!   typed server errors (`error`), the probes that build a snapshot
//!   (`probe`: `snapshot`, `info`, `slowlog`, `asks`, `prober`) and the
//!   declared ones (`declared`), `backoff`, password redaction (`redact`).
//! - `sandbox`: the shared wasmtime engine (`engine`); the bindings of
//!   every ABI version (`bindings`) and the conversions between them
//!   (`convert`); instances (`instance`) with a memory cap (`store`), a
//!   deadline and traps (`trap`), captured stdio (`stdio`), caps on output
//!   (`output`) and their settings (`limits`).
//! - `watchers`: loading components (`load`), their settings
//!   (`settings`), what each watcher sees of a snapshot (`view`), the
//!   per-target supervisor with restarts and quarantine (`supervisor`),
//!   hot reload (`reload`).
//! - `delivery`: envelopes (`envelope`), the outbox (`outbox`), breaker
//!   (`breaker`) and spool (`spool`, `spool/files`), the publisher
//!   (`publisher`: its `bus`, the Redis pipeline in `sink`, refusals in
//!   `diagnose`) and the task that owns them (`task`), heartbeats
//!   (`heartbeat`), their settings (`settings`).
//! - `alerts`: conditions that fire and resolve, the watchers' and the
//!   host's own: the board of alerts (`mod.rs`), the active set and its
//!   rules (`active`), the `[alerts]` table (`settings`), delivery to
//!   Alertmanager (`alertmanager`: the sender, its HTTP `client`, the
//!   `[alertmanager]` table in `settings`).
//! - `daemon`: the tasks wired together: start-up (`start`), the run loop
//!   and shutdown (`run`), the host's own events (`events`) and conditions
//!   (`conditions`), one poller per watched Redis (`poller`, its desired
//!   state in `inbox`, `lateness`), the fleet of pollers (`fleet`),
//!   discovery refreshes (`discover`).
//! - `metrics`: the daemon's own metrics (`mod.rs`) and `/metrics`,
//!   `/healthz` served at `metrics_addr` (`serve`).
//! - `status`: the status page (`page`) and `/api/v1/status` on
//!   `metrics_addr`, the model gathered from the metrics, the alerts'
//!   board and the Alertmanager sender (`mod.rs`), events and poll
//!   lateness per minute over the last hour (`history`).
//! - `authoring`: `lookout check` (`check`), `record` (`record`), `test`
//!   (`replay`) and `new` (`scaffold`).
//! - `tail`: `lookout tail`, the envelope stream followed (`mod.rs`) and
//!   printed (`render`).
//! - `commands`: the command line: every subcommand's flags (`args`), where
//!   each goes (`cli`), `lookout run`'s runtime and signals (`run`), the
//!   authoring commands (`authoring`), `lookout tail`'s options (`tail`),
//!   `lookout targets` (`targets`) and `lookout config` (`config`).
//! - `untrusted`: server- and stream-controlled text made safe to print.
//! - `fdlimit`: the open-files limit raised for thousands of connections.

#![warn(unreachable_pub)]

mod alerts;
mod authoring;
mod checks;
mod commands;
mod config;
mod daemon;
mod delivery;
mod discovery;
mod fdlimit;
mod metrics;
mod redis;
mod sandbox;
mod status;
mod tail;
mod targets;
mod untrusted;
mod watchers;

// What the `lookout` binary, the integration tests and the benchmarks use.
pub use commands::main;
pub use config::shown::explain as explain_settings;
pub use config::{FileConfig, Overrides, Settings};
pub use daemon::poller::Poller;
pub use daemon::rss_kib;
pub use delivery::envelope::{Envelope, Level, Origin};
pub use delivery::outbox::{Caps, Outbox};
pub use delivery::publisher::{Publisher, Sink};
pub use delivery::task::spawn as spawn_publisher;
pub use discovery::{
    Node, Role, cluster as discover_cluster, node_url, sentinel as discover_sentinel,
};
pub use redis::conn::Conn;
pub use redis::probe::{Prober, Probes, SlowEntry, Snapshot, parse_info};
pub use sandbox::engine::{Layout, PACKAGE as WIT_PACKAGE, VERSION as WIT_VERSION};
pub use sandbox::{Engine, Instance, wit};
pub use watchers::load::{Loaded, load};

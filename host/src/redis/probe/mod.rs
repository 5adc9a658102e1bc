//! The per-poll probes (PING, INFO, incremental SLOWLOG, the probes the
//! watchers declare) that build a snapshot of the watched Redis.
//!
//! - `snapshot`: what one poll saw, and which probes it runs.
//! - `prober`: one poll: the pipeline, its first replies, refusals, and the
//!   poll's deadline.
//! - `info`: INFO parsing, and the sections a poll asks for.
//! - `slowlog`: the SLOWLOG cursor, its reads and its parser.
//! - `asks`: what a poll sends for each declared probe and what it read,
//!   with what is held back between polls (refusals, missing keys).

mod asks;
mod info;
mod prober;
mod slowlog;
mod snapshot;

pub use asks::MAX_CLIENTS_LISTED;
pub use info::parse_info;
pub use prober::{ProbeError, Prober};
pub use slowlog::{SLOWLOG_REREADS, parse_slowlog};
pub use snapshot::{Gap, InfoField, Notice, Probes, SlowEntry, Snapshot};

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

pub(crate) use asks::MAX_CLIENTS_LISTED;
pub use info::parse_info;
pub(crate) use prober::ProbeError;
pub use prober::Prober;
pub(crate) use slowlog::SLOWLOG_REREADS;
pub(crate) use snapshot::{Gap, InfoField, Notice};
pub use snapshot::{Probes, SlowEntry, Snapshot};

//! Helpers for native unit tests: builders for snapshots, SLOWLOG entries
//! and settings, and a flat view of an event's fields.
//!
//! ```
//! use lookout_watcher::testing::SnapshotBuilder;
//! use lookout_watcher::SlowlogEntry;
//!
//! let snap = SnapshotBuilder::new()
//!     .info("clients", "connected_clients", "3")
//!     .slowlog(vec![SlowlogEntry::new(7, 1532, &["get", "k"])])
//!     .build();
//! assert_eq!(snap.info_u64("connected_clients"), Ok(3));
//! ```

use crate::{
    Event, InfoField, LatencySpike, Probe, ProbeReading, Reading, Setting, SlowlogEntry, Snapshot,
    StreamGroup, Value,
};

/// Builds a [`Snapshot`] field by field.
#[derive(Debug, Clone)]
pub struct SnapshotBuilder {
    snapshot: Snapshot,
}

impl Default for SnapshotBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl SnapshotBuilder {
    /// A snapshot of `127.0.0.1:6379` taken at 0 ms, with no INFO fields
    /// and no SLOWLOG (`None`).
    pub fn new() -> Self {
        SnapshotBuilder {
            snapshot: Snapshot {
                instance: "127.0.0.1:6379".to_string(),
                taken_at_ms: 0,
                info: Vec::new(),
                slowlog: None,
                probes: Vec::new(),
            },
        }
    }

    /// Sets the watched instance, `host:port`.
    #[must_use]
    pub fn instance(mut self, instance: &str) -> Self {
        self.snapshot.instance = instance.to_string();
        self
    }

    /// Sets when the snapshot was taken, Unix milliseconds.
    #[must_use]
    pub fn taken_at_ms(mut self, ms: i64) -> Self {
        self.snapshot.taken_at_ms = ms;
        self
    }

    /// Appends an INFO field.
    #[must_use]
    pub fn info(mut self, section: &str, name: &str, value: &str) -> Self {
        self.snapshot.info.push(InfoField {
            section: section.to_string(),
            name: name.to_string(),
            value: value.to_string(),
        });
        self
    }

    /// Sets the SLOWLOG entries (making the slowlog `Some`).
    #[must_use]
    pub fn slowlog(mut self, entries: Vec<SlowlogEntry>) -> Self {
        self.snapshot.slowlog = Some(entries);
        self
    }

    /// Appends a probe reading (`key`: the stream key of an XINFO probe,
    /// else empty).
    #[must_use]
    pub fn probe(mut self, probe: Probe, key: &str, reading: Reading) -> Self {
        self.snapshot.probes.push(ProbeReading {
            probe,
            key: key.to_string(),
            reading,
        });
        self
    }

    /// Appends a `LATENCY LATEST` reading.
    #[must_use]
    pub fn latency(self, spikes: Vec<LatencySpike>) -> Self {
        self.probe(Probe::LatencyLatest, "", Reading::Latency(spikes))
    }

    /// Appends an `XINFO GROUPS` reading of stream `key` (the probe names
    /// the setting `streams`).
    #[must_use]
    pub fn stream_groups(self, key: &str, groups: Vec<StreamGroup>) -> Self {
        self.probe(
            Probe::XinfoGroups("streams".to_string()),
            key,
            Reading::StreamGroups(groups),
        )
    }

    /// Appends a reading of `probe` that is unavailable for `reason`.
    #[must_use]
    pub fn unavailable(self, probe: Probe, key: &str, reason: &str) -> Self {
        self.probe(probe, key, Reading::Unavailable(reason.to_string()))
    }

    /// The snapshot.
    pub fn build(self) -> Snapshot {
        self.snapshot
    }
}

impl SlowlogEntry {
    /// An entry with the given id, duration and args, started at 0, from an
    /// unknown, unnamed client.
    pub fn new(id: u64, duration_us: u64, args: &[&str]) -> Self {
        SlowlogEntry {
            id,
            started_at: 0,
            duration_us,
            args: args.iter().map(|a| a.to_string()).collect(),
            client_addr: String::new(),
            client_name: String::new(),
        }
    }

    /// Sets the client address and name.
    #[must_use]
    pub fn client(mut self, addr: &str, name: &str) -> Self {
        self.client_addr = addr.to_string();
        self.client_name = name.to_string();
        self
    }

    /// Sets when the command started, Unix seconds.
    #[must_use]
    pub fn started_at(mut self, secs: i64) -> Self {
        self.started_at = secs;
        self
    }
}

impl LatencySpike {
    /// A spike of `event` at `latest_at` (Unix seconds) of `latest_ms`,
    /// with `max_ms` the worst so far.
    pub fn new(event: &str, latest_at: i64, latest_ms: u64, max_ms: u64) -> Self {
        LatencySpike {
            event: event.to_string(),
            latest_at,
            latest_ms,
            max_ms,
        }
    }
}

impl StreamGroup {
    /// A group with `pending` unacknowledged entries and `lag` (`None`: a
    /// server before Redis 7), one consumer, nothing delivered yet.
    pub fn new(name: &str, pending: u64, lag: Option<u64>) -> Self {
        StreamGroup {
            name: name.to_string(),
            consumers: 1,
            pending,
            last_delivered_id: "0-0".to_string(),
            entries_read: lag.map(|_| 0),
            lag,
        }
    }
}

/// A setting named `name` holding `value`.
pub fn setting(name: &str, value: impl Into<Value>) -> Setting {
    Setting {
        name: name.to_string(),
        value: value.into(),
    }
}

/// An event's fields as `(name, value)` pairs, in order, to compare whole:
///
/// ```
/// use lookout_watcher::testing::fields;
/// use lookout_watcher::{Event, Level, Value};
///
/// let e = Event::new(Level::Info, "m").field("delta", 11i64).field("state", "entered");
/// assert_eq!(
///     fields(&e),
///     [("delta", &Value::Integer(11)), ("state", &Value::Text("entered".into()))]
/// );
/// ```
pub fn fields(event: &Event) -> Vec<(&str, &Value)> {
    event
        .fields
        .iter()
        .map(|f| (f.name.as_str(), &f.value))
        .collect()
}

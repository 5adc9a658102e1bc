//! Helpers for native unit tests: builders for snapshots, SLOWLOG entries,
//! every probe reading and settings, and a flat view of an event's fields.
//!
//! ```
//! use lookout_watcher::testing::SnapshotBuilder;
//! use lookout_watcher::{Client, SlowlogEntry, StreamGroup, StreamInfo};
//!
//! let snap = SnapshotBuilder::new()
//!     .info("clients", "connected_clients", "3")
//!     .slowlog(vec![SlowlogEntry::new(7, 1532, &["get", "k"])])
//!     .clients(vec![
//!         Client::new(12, "10.0.0.5:51234").name("worker").cmd("subscribe").flags("P"),
//!         Client::new(13, "10.0.0.6:40000").field("omem", 3_212_032),
//!     ])
//!     .stream_groups("jobs", vec![StreamGroup::new("workers", 3, Some(7))])
//!     .stream_info("jobs", StreamInfo::new(120).groups(1))
//!     .info_section("errorstats", &[("errorstat_ERR", "count=2")])
//!     .cluster_info(&[("cluster_state", "ok")])
//!     .build();
//! assert_eq!(snap.info_u64("connected_clients"), Ok(3));
//! assert_eq!(snap.clients().unwrap()[0].name, "worker");
//! assert_eq!(snap.clients().unwrap()[1].field_u64("omem"), Ok(3_212_032));
//! assert_eq!(snap.streams().next().unwrap().1.unwrap().length, 120);
//! assert_eq!(snap.info_section("errorstats").unwrap()[0].value, "count=2");
//! assert_eq!(snap.cluster_field("cluster_state"), Some("ok"));
//! ```

use crate::{
    Client, Event, InfoField, LatencySpike, Probe, ProbeReading, Reading, Setting, SlowlogEntry,
    Snapshot, StreamGroup, StreamInfo, Value,
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

    /// Appends an `XINFO STREAM` reading of stream `key` (the probe names
    /// the setting `streams`).
    #[must_use]
    pub fn stream_info(self, key: &str, stream: StreamInfo) -> Self {
        self.probe(
            Probe::XinfoStream("streams".to_string()),
            key,
            Reading::StreamInfo(stream),
        )
    }

    /// Appends a `CLIENT LIST` reading: one [`Client`] per connection.
    #[must_use]
    pub fn clients(self, clients: Vec<Client>) -> Self {
        self.probe(Probe::ClientList, "", Reading::Clients(clients))
    }

    /// Appends an `INFO section` reading (`commandstats`, `errorstats`,
    /// `latencystats`) of `(name, value)` fields.
    #[must_use]
    pub fn info_section(self, section: &str, fields: &[(&str, &str)]) -> Self {
        let fields = fields
            .iter()
            .map(|(name, value)| InfoField {
                section: section.to_string(),
                name: name.to_string(),
                value: value.to_string(),
            })
            .collect();
        self.probe(
            Probe::InfoSection(section.to_string()),
            "",
            Reading::Info(fields),
        )
    }

    /// Appends a `CLUSTER INFO` reading of `(name, value)` fields.
    #[must_use]
    pub fn cluster_info(self, fields: &[(&str, &str)]) -> Self {
        let pairs = fields
            .iter()
            .map(|(name, value)| (name.to_string(), value.to_string()))
            .collect();
        self.probe(Probe::ClusterInfo, "", Reading::Cluster(pairs))
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

impl StreamGroup {
    /// Sets how many consumers the group has.
    #[must_use]
    pub fn consumers(mut self, n: u64) -> Self {
        self.consumers = n;
        self
    }

    /// Sets the id of the last entry delivered to the group.
    #[must_use]
    pub fn last_delivered_id(mut self, id: &str) -> Self {
        self.last_delivered_id = id.to_string();
        self
    }
}

impl StreamInfo {
    /// A stream of `length` entries with ids `1-0` to `LENGTH-0` (none when
    /// 0), all of them ever added, and no consumer group.
    pub fn new(length: u64) -> Self {
        let (first, last) = match length {
            0 => (None, None),
            n => (Some("1-0".to_string()), Some(format!("{n}-0"))),
        };
        StreamInfo {
            length,
            groups: 0,
            last_generated_id: last.clone().unwrap_or_else(|| "0-0".to_string()),
            first_entry_id: first,
            last_entry_id: last,
            entries_added: Some(length),
        }
    }

    /// Sets how many consumer groups the stream has.
    #[must_use]
    pub fn groups(mut self, n: u64) -> Self {
        self.groups = n;
        self
    }

    /// Sets the ids of the oldest and the newest entry (the newest is also
    /// the last generated one).
    #[must_use]
    pub fn entries(mut self, first: &str, last: &str) -> Self {
        self.first_entry_id = Some(first.to_string());
        self.last_entry_id = Some(last.to_string());
        self.last_generated_id = last.to_string();
        self
    }

    /// Sets the id of the last entry ever added (entries since deleted
    /// included).
    #[must_use]
    pub fn last_generated_id(mut self, id: &str) -> Self {
        self.last_generated_id = id.to_string();
        self
    }

    /// Sets how many entries were ever added (`None`: a server before
    /// Redis 7).
    #[must_use]
    pub fn entries_added(mut self, n: Option<u64>) -> Self {
        self.entries_added = n;
        self
    }
}

impl Client {
    /// A normal client (`flags=N`), connected and idle for 0 s, with no
    /// name and no command yet (`cmd=NULL`), whose `fields` hold what
    /// `CLIENT LIST` prints for it, numbers at 0: `id`, `addr`, `name`,
    /// `age`, `idle`, `flags`, `db`, `sub`, `psub`, `ssub`, `multi` (-1),
    /// `qbuf`, `omem`, `tot-mem`, `cmd`.
    pub fn new(id: u64, addr: &str) -> Self {
        let client = Client {
            id,
            addr: addr.to_string(),
            name: String::new(),
            age_s: 0,
            idle_s: 0,
            flags: "N".to_string(),
            cmd: "NULL".to_string(),
            fields: Vec::new(),
        };
        [
            ("id", id.to_string()),
            ("addr", addr.to_string()),
            ("name", String::new()),
            ("age", "0".to_string()),
            ("idle", "0".to_string()),
            ("flags", "N".to_string()),
            ("db", "0".to_string()),
            ("sub", "0".to_string()),
            ("psub", "0".to_string()),
            ("ssub", "0".to_string()),
            ("multi", "-1".to_string()),
            ("qbuf", "0".to_string()),
            ("omem", "0".to_string()),
            ("tot-mem", "0".to_string()),
            ("cmd", "NULL".to_string()),
        ]
        .into_iter()
        .fold(client, |c, (name, value)| c.field(name, value))
    }

    /// Sets field `name` of the line (replacing it, or appending it after
    /// the others) to `value`, a number or a text: `.field("omem", 3_212_032)`.
    /// The fields the record names set its members too: `id`, `addr`,
    /// `name`, `age` (`age_s`), `idle` (`idle_s`), `flags`, `cmd` (a number
    /// that does not parse leaves the member as it was).
    #[must_use]
    pub fn field(mut self, name: &str, value: impl ToString) -> Self {
        let value = value.to_string();
        match name {
            "id" => self.id = value.parse().unwrap_or(self.id),
            "addr" => self.addr.clone_from(&value),
            "name" => self.name.clone_from(&value),
            "age" => self.age_s = value.parse().unwrap_or(self.age_s),
            "idle" => self.idle_s = value.parse().unwrap_or(self.idle_s),
            "flags" => self.flags.clone_from(&value),
            "cmd" => self.cmd.clone_from(&value),
            _ => {}
        }
        match self.fields.iter_mut().find(|(n, _)| n == name) {
            Some((_, v)) => *v = value,
            None => self.fields.push((name.to_string(), value)),
        }
        self
    }

    /// Sets the name (CLIENT SETNAME), member and field.
    #[must_use]
    pub fn name(self, name: &str) -> Self {
        self.field("name", name)
    }

    /// Sets the flags (`N` normal, `S` replica, `M` master, `P` pub/sub,
    /// `O` monitor...), member and field.
    #[must_use]
    pub fn flags(self, flags: &str) -> Self {
        self.field("flags", flags)
    }

    /// Sets the last command run (`get`, `client|list`), member and field.
    #[must_use]
    pub fn cmd(self, cmd: &str) -> Self {
        self.field("cmd", cmd)
    }

    /// Sets the seconds since the connection was opened, member and field.
    #[must_use]
    pub fn age_s(self, s: u64) -> Self {
        self.field("age", s)
    }

    /// Sets the seconds since its last command, member and field.
    #[must_use]
    pub fn idle_s(self, s: u64) -> Self {
        self.field("idle", s)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_fields_set_the_members_too() {
        let c = Client::new(12, "10.0.0.5:51234")
            .name("worker")
            .cmd("subscribe")
            .flags("P")
            .age_s(30)
            .idle_s(2)
            .field("sub", 1)
            .field("omem", 3_212_032)
            .field("user", "app");
        assert_eq!(
            (c.id, c.addr.as_str(), c.name.as_str(), c.age_s, c.idle_s),
            (12, "10.0.0.5:51234", "worker", 30, 2)
        );
        assert_eq!((c.flags.as_str(), c.cmd.as_str()), ("P", "subscribe"));
        let line: Vec<String> = c.fields.iter().map(|(n, v)| format!("{n}={v}")).collect();
        assert_eq!(
            line.join(" "),
            "id=12 addr=10.0.0.5:51234 name=worker age=30 idle=2 flags=P db=0 sub=1 psub=0 \
             ssub=0 multi=-1 qbuf=0 omem=3212032 tot-mem=0 cmd=subscribe user=app"
        );
        let moved = c.field("id", 13).field("age", "soon");
        assert_eq!((moved.id, moved.age_s), (13, 30));
        assert_eq!(moved.get("age"), Some("soon"));
    }

    #[test]
    fn stream_info_and_groups() {
        let empty = StreamInfo::new(0);
        assert_eq!((empty.first_entry_id, empty.last_entry_id), (None, None));
        assert_eq!(empty.last_generated_id, "0-0");
        let s = StreamInfo::new(3)
            .groups(2)
            .entries("5-0", "9-0")
            .entries_added(None);
        assert_eq!(s.first_entry_id.as_deref(), Some("5-0"));
        assert_eq!(s.last_generated_id, "9-0");
        assert_eq!((s.groups, s.entries_added), (2, None));
        let g = StreamGroup::new("workers", 1, None)
            .consumers(4)
            .last_delivered_id("9-0");
        assert_eq!((g.consumers, g.last_delivered_id.as_str()), (4, "9-0"));
    }

    #[test]
    fn every_reading_has_its_builder() {
        let snap = SnapshotBuilder::new()
            .clients(vec![Client::new(1, "a:1")])
            .stream_info("jobs", StreamInfo::new(1))
            .info_section("commandstats", &[("cmdstat_get", "calls=2")])
            .cluster_info(&[("cluster_state", "ok")])
            .build();
        let probes: Vec<&Probe> = snap.probes.iter().map(|r| &r.probe).collect();
        assert_eq!(
            probes,
            [
                &Probe::ClientList,
                &Probe::XinfoStream("streams".into()),
                &Probe::InfoSection("commandstats".into()),
                &Probe::ClusterInfo,
            ]
        );
        assert_eq!(snap.probes[1].key, "jobs");
        assert_eq!(
            snap.info_section("commandstats").unwrap()[0].section,
            "commandstats"
        );
    }
}

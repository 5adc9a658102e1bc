//! Conversions between the current ABI's types and those of the older
//! versions of `lookout:watcher` the host loads, so their watchers run
//! unchanged: a 0.3.0 watcher's events start or end no condition and its
//! `configure` narrows nothing; a 0.2.0 watcher also describes itself
//! without probes, and its snapshots carry no probe readings. What goes to
//! an old watcher converts from a reference (the host keeps the current
//! value); what comes back converts by value.

use super::bindings::v0_2_0::lookout::watcher::types as old;
use super::bindings::v0_3_0::lookout::watcher::types as v3;
use super::bindings::wit;

/// The conversions of the types every version shares unchanged, between
/// the current ABI and the older one `$old`.
macro_rules! shared {
    ($old:ident) => {
        impl From<$old::Value> for wit::Value {
            fn from(v: $old::Value) -> Self {
                match v {
                    $old::Value::Text(t) => Self::Text(t),
                    $old::Value::Integer(n) => Self::Integer(n),
                    $old::Value::Float(x) => Self::Float(x),
                    $old::Value::Boolean(b) => Self::Boolean(b),
                }
            }
        }

        impl From<&wit::Value> for $old::Value {
            fn from(v: &wit::Value) -> Self {
                match v {
                    wit::Value::Text(t) => Self::Text(t.clone()),
                    wit::Value::Integer(n) => Self::Integer(*n),
                    wit::Value::Float(x) => Self::Float(*x),
                    wit::Value::Boolean(b) => Self::Boolean(*b),
                }
            }
        }

        impl From<$old::ValueKind> for wit::ValueKind {
            fn from(kind: $old::ValueKind) -> Self {
                match kind {
                    $old::ValueKind::Text => Self::Text,
                    $old::ValueKind::Integer => Self::Integer,
                    $old::ValueKind::Float => Self::Float,
                    $old::ValueKind::Boolean => Self::Boolean,
                }
            }
        }

        impl From<$old::ConfigKey> for wit::ConfigKey {
            fn from(k: $old::ConfigKey) -> Self {
                Self {
                    name: k.name,
                    kind: k.kind.into(),
                    default: k.default.into(),
                    description: k.description,
                }
            }
        }

        impl From<$old::Cadence> for wit::Cadence {
            fn from(c: $old::Cadence) -> Self {
                match c {
                    $old::Cadence::EveryPoll => Self::EveryPoll,
                    $old::Cadence::EveryPolls(n) => Self::EveryPolls(n),
                    $old::Cadence::IntervalMs(ms) => Self::IntervalMs(ms),
                }
            }
        }

        /// The manifest as the current one (its needs as their own
        /// conversion says).
        impl From<$old::Manifest> for wit::Manifest {
            fn from(m: $old::Manifest) -> Self {
                Self {
                    name: m.name,
                    version: m.version,
                    description: m.description,
                    config: m.config.into_iter().map(Into::into).collect(),
                    needs: m.needs.into(),
                    cadence: m.cadence.into(),
                }
            }
        }

        /// A setting for the older `configure`.
        impl From<&wit::Setting> for $old::Setting {
            fn from(s: &wit::Setting) -> Self {
                Self {
                    name: s.name.clone(),
                    value: (&s.value).into(),
                }
            }
        }

        impl From<&wit::InfoField> for $old::InfoField {
            fn from(f: &wit::InfoField) -> Self {
                Self {
                    section: f.section.clone(),
                    name: f.name.clone(),
                    value: f.value.clone(),
                }
            }
        }

        impl From<&wit::SlowlogEntry> for $old::SlowlogEntry {
            fn from(e: &wit::SlowlogEntry) -> Self {
                Self {
                    id: e.id,
                    started_at: e.started_at,
                    duration_us: e.duration_us,
                    args: e.args.clone(),
                    client_addr: e.client_addr.clone(),
                    client_name: e.client_name.clone(),
                }
            }
        }

        impl From<$old::Level> for wit::Level {
            fn from(level: $old::Level) -> Self {
                match level {
                    $old::Level::Debug => Self::Debug,
                    $old::Level::Info => Self::Info,
                    $old::Level::Warn => Self::Warn,
                    $old::Level::Error => Self::Error,
                }
            }
        }

        impl From<$old::Field> for wit::Field {
            fn from(f: $old::Field) -> Self {
                Self {
                    name: f.name,
                    value: f.value.into(),
                }
            }
        }

        /// An event an older watcher returned: it starts or ends no
        /// condition.
        impl From<$old::Event> for wit::Event {
            fn from(e: $old::Event) -> Self {
                Self {
                    level: e.level.into(),
                    msg: e.msg,
                    fields: e.fields.into_iter().map(Into::into).collect(),
                    condition: None,
                }
            }
        }
    };
}

shared!(old);
shared!(v3);

/// 0.2.0 declares no probes.
impl From<old::Needs> for wit::Needs {
    fn from(n: old::Needs) -> Self {
        Self {
            info_fields: n.info_fields,
            info_sections: n.info_sections,
            slowlog: n.slowlog,
            probes: Vec::new(),
        }
    }
}

/// A snapshot for a 0.2.0 `observe`: the same, without probe readings.
impl From<&wit::Snapshot> for old::Snapshot {
    fn from(s: &wit::Snapshot) -> Self {
        Self {
            instance: s.instance.clone(),
            taken_at_ms: s.taken_at_ms,
            info: s.info.iter().map(Into::into).collect(),
            slowlog: s
                .slowlog
                .as_ref()
                .map(|entries| entries.iter().map(Into::into).collect()),
        }
    }
}

impl From<v3::Probe> for wit::Probe {
    fn from(p: v3::Probe) -> Self {
        match p {
            v3::Probe::LatencyLatest => Self::LatencyLatest,
            v3::Probe::InfoSection(s) => Self::InfoSection(s),
            v3::Probe::XinfoGroups(s) => Self::XinfoGroups(s),
            v3::Probe::XinfoStream(s) => Self::XinfoStream(s),
            v3::Probe::ClientList => Self::ClientList,
            v3::Probe::ClusterInfo => Self::ClusterInfo,
        }
    }
}

impl From<&wit::Probe> for v3::Probe {
    fn from(p: &wit::Probe) -> Self {
        match p {
            wit::Probe::LatencyLatest => Self::LatencyLatest,
            wit::Probe::InfoSection(s) => Self::InfoSection(s.clone()),
            wit::Probe::XinfoGroups(s) => Self::XinfoGroups(s.clone()),
            wit::Probe::XinfoStream(s) => Self::XinfoStream(s.clone()),
            wit::Probe::ClientList => Self::ClientList,
            wit::Probe::ClusterInfo => Self::ClusterInfo,
        }
    }
}

impl From<v3::Needs> for wit::Needs {
    fn from(n: v3::Needs) -> Self {
        Self {
            info_fields: n.info_fields,
            info_sections: n.info_sections,
            slowlog: n.slowlog,
            probes: n.probes.into_iter().map(Into::into).collect(),
        }
    }
}

impl From<&wit::LatencySpike> for v3::LatencySpike {
    fn from(s: &wit::LatencySpike) -> Self {
        Self {
            event: s.event.clone(),
            latest_at: s.latest_at,
            latest_ms: s.latest_ms,
            max_ms: s.max_ms,
        }
    }
}

impl From<&wit::StreamGroup> for v3::StreamGroup {
    fn from(g: &wit::StreamGroup) -> Self {
        Self {
            name: g.name.clone(),
            consumers: g.consumers,
            pending: g.pending,
            last_delivered_id: g.last_delivered_id.clone(),
            entries_read: g.entries_read,
            lag: g.lag,
        }
    }
}

impl From<&wit::StreamInfo> for v3::StreamInfo {
    fn from(s: &wit::StreamInfo) -> Self {
        Self {
            length: s.length,
            groups: s.groups,
            last_generated_id: s.last_generated_id.clone(),
            first_entry_id: s.first_entry_id.clone(),
            last_entry_id: s.last_entry_id.clone(),
            entries_added: s.entries_added,
        }
    }
}

impl From<&wit::Client> for v3::Client {
    fn from(c: &wit::Client) -> Self {
        Self {
            id: c.id,
            addr: c.addr.clone(),
            name: c.name.clone(),
            age_s: c.age_s,
            idle_s: c.idle_s,
            flags: c.flags.clone(),
            cmd: c.cmd.clone(),
            fields: c.fields.clone(),
        }
    }
}

impl From<&wit::Reading> for v3::Reading {
    fn from(r: &wit::Reading) -> Self {
        match r {
            wit::Reading::Unavailable(reason) => Self::Unavailable(reason.clone()),
            wit::Reading::Latency(spikes) => Self::Latency(spikes.iter().map(Into::into).collect()),
            wit::Reading::Info(fields) => Self::Info(fields.iter().map(Into::into).collect()),
            wit::Reading::StreamGroups(groups) => {
                Self::StreamGroups(groups.iter().map(Into::into).collect())
            }
            wit::Reading::StreamInfo(info) => Self::StreamInfo(info.into()),
            wit::Reading::Clients(clients) => {
                Self::Clients(clients.iter().map(Into::into).collect())
            }
            wit::Reading::Cluster(pairs) => Self::Cluster(pairs.clone()),
        }
    }
}

/// A snapshot for a 0.3.0 `observe`: the same, probe readings included.
impl From<&wit::Snapshot> for v3::Snapshot {
    fn from(s: &wit::Snapshot) -> Self {
        Self {
            instance: s.instance.clone(),
            taken_at_ms: s.taken_at_ms,
            info: s.info.iter().map(Into::into).collect(),
            slowlog: s
                .slowlog
                .as_ref()
                .map(|entries| entries.iter().map(Into::into).collect()),
            probes: s
                .probes
                .iter()
                .map(|p| v3::ProbeReading {
                    probe: (&p.probe).into(),
                    key: p.key.clone(),
                    reading: (&p.reading).into(),
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{old, v3, wit};

    /// A 0.3.0 watcher keeps its probes, gets every reading, and its
    /// events start or end no condition.
    #[test]
    fn a_0_3_0_watcher_gets_its_readings_and_fires_nothing() {
        let needs: wit::Needs = v3::Needs {
            info_fields: Vec::new(),
            info_sections: Vec::new(),
            slowlog: false,
            probes: vec![
                v3::Probe::XinfoGroups("streams".into()),
                v3::Probe::ClientList,
            ],
        }
        .into();
        assert!(matches!(&needs.probes[0], wit::Probe::XinfoGroups(s) if s == "streams"));
        assert!(matches!(needs.probes[1], wit::Probe::ClientList));
        let snapshot = wit::Snapshot {
            instance: "h:1".into(),
            taken_at_ms: 1,
            info: Vec::new(),
            slowlog: None,
            probes: vec![wit::ProbeReading {
                probe: wit::Probe::XinfoGroups("streams".into()),
                key: "jobs".into(),
                reading: wit::Reading::StreamGroups(vec![wit::StreamGroup {
                    name: "workers".into(),
                    consumers: 1,
                    pending: 2,
                    last_delivered_id: "1-0".into(),
                    entries_read: Some(3),
                    lag: Some(4),
                }]),
            }],
        };
        let seen = v3::Snapshot::from(&snapshot);
        assert_eq!(seen.probes[0].key, "jobs");
        match &seen.probes[0].reading {
            v3::Reading::StreamGroups(groups) => assert_eq!(groups[0].lag, Some(4)),
            other => panic!("{other:?}"),
        }
        let event: wit::Event = v3::Event {
            level: v3::Level::Warn,
            msg: "m".into(),
            fields: vec![v3::Field {
                name: "lag".into(),
                value: v3::Value::Integer(4),
            }],
        }
        .into();
        assert!(event.condition.is_none());
        assert!(matches!(event.level, wit::Level::Warn));
    }

    /// A 0.2.0 watcher's manifest reads as one that declares no probes, and
    /// the snapshot it is handed is the current one without the readings.
    #[test]
    fn a_0_2_0_watcher_sees_no_probes() {
        let manifest: wit::Manifest = old::Manifest {
            name: "old".into(),
            version: "1".into(),
            description: String::new(),
            config: vec![old::ConfigKey {
                name: "every".into(),
                kind: old::ValueKind::Integer,
                default: old::Value::Integer(3),
                description: String::new(),
            }],
            needs: old::Needs {
                info_fields: vec!["used_memory".into()],
                info_sections: Vec::new(),
                slowlog: true,
            },
            cadence: old::Cadence::EveryPolls(2),
        }
        .into();
        assert!(manifest.needs.probes.is_empty());
        assert_eq!(manifest.needs.info_fields, ["used_memory"]);
        assert!(matches!(manifest.config[0].default, wit::Value::Integer(3)));
        assert!(matches!(manifest.cadence, wit::Cadence::EveryPolls(2)));

        let snapshot = wit::Snapshot {
            instance: "127.0.0.1:7000".into(),
            taken_at_ms: 5,
            info: vec![wit::InfoField {
                section: "memory".into(),
                name: "used_memory".into(),
                value: "10".into(),
            }],
            slowlog: None,
            probes: Vec::new(),
        };
        let seen = old::Snapshot::from(&snapshot);
        assert_eq!(
            (seen.instance.as_str(), seen.taken_at_ms),
            ("127.0.0.1:7000", 5)
        );
        assert_eq!(seen.info[0].value, "10");
        assert!(seen.slowlog.is_none());
    }
}

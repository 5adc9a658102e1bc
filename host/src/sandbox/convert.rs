//! Conversions between the current ABI's types and those of
//! `lookout:watcher@0.2.0`, so a watcher built for 0.2.0 runs unchanged: it
//! describes itself without probes, and its snapshots carry no probe
//! readings. What goes to an old watcher converts from a reference (the
//! host keeps the current value); what comes back converts by value.

use super::bindings::v0_2_0::lookout::watcher::types as old;
use super::bindings::wit;

impl From<old::Value> for wit::Value {
    fn from(v: old::Value) -> Self {
        match v {
            old::Value::Text(t) => Self::Text(t),
            old::Value::Integer(n) => Self::Integer(n),
            old::Value::Float(x) => Self::Float(x),
            old::Value::Boolean(b) => Self::Boolean(b),
        }
    }
}

impl From<&wit::Value> for old::Value {
    fn from(v: &wit::Value) -> Self {
        match v {
            wit::Value::Text(t) => Self::Text(t.clone()),
            wit::Value::Integer(n) => Self::Integer(*n),
            wit::Value::Float(x) => Self::Float(*x),
            wit::Value::Boolean(b) => Self::Boolean(*b),
        }
    }
}

impl From<old::ValueKind> for wit::ValueKind {
    fn from(kind: old::ValueKind) -> Self {
        match kind {
            old::ValueKind::Text => Self::Text,
            old::ValueKind::Integer => Self::Integer,
            old::ValueKind::Float => Self::Float,
            old::ValueKind::Boolean => Self::Boolean,
        }
    }
}

impl From<old::ConfigKey> for wit::ConfigKey {
    fn from(k: old::ConfigKey) -> Self {
        Self {
            name: k.name,
            kind: k.kind.into(),
            default: k.default.into(),
            description: k.description,
        }
    }
}

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

impl From<old::Cadence> for wit::Cadence {
    fn from(c: old::Cadence) -> Self {
        match c {
            old::Cadence::EveryPoll => Self::EveryPoll,
            old::Cadence::EveryPolls(n) => Self::EveryPolls(n),
            old::Cadence::IntervalMs(ms) => Self::IntervalMs(ms),
        }
    }
}

/// A 0.2.0 manifest as the current one: no declared probes.
impl From<old::Manifest> for wit::Manifest {
    fn from(m: old::Manifest) -> Self {
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

/// A setting for a 0.2.0 `configure`.
impl From<&wit::Setting> for old::Setting {
    fn from(s: &wit::Setting) -> Self {
        Self {
            name: s.name.clone(),
            value: (&s.value).into(),
        }
    }
}

impl From<&wit::InfoField> for old::InfoField {
    fn from(f: &wit::InfoField) -> Self {
        Self {
            section: f.section.clone(),
            name: f.name.clone(),
            value: f.value.clone(),
        }
    }
}

impl From<&wit::SlowlogEntry> for old::SlowlogEntry {
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

impl From<old::Level> for wit::Level {
    fn from(level: old::Level) -> Self {
        match level {
            old::Level::Debug => Self::Debug,
            old::Level::Info => Self::Info,
            old::Level::Warn => Self::Warn,
            old::Level::Error => Self::Error,
        }
    }
}

impl From<old::Field> for wit::Field {
    fn from(f: old::Field) -> Self {
        Self {
            name: f.name,
            value: f.value.into(),
        }
    }
}

/// An event a 0.2.0 watcher returned.
impl From<old::Event> for wit::Event {
    fn from(e: old::Event) -> Self {
        Self {
            level: e.level.into(),
            msg: e.msg,
            fields: e.fields.into_iter().map(Into::into).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{old, wit};

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

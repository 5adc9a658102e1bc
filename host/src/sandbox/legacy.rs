//! Conversions between the current ABI's types and those of
//! `lookout:watcher@0.2.0`, so a watcher built for 0.2.0 runs unchanged: it
//! describes itself without probes, and its snapshots carry no probe
//! readings.

use super::engine::bindings::lookout::watcher::types as wit;
use super::engine::legacy::lookout::watcher::types as old;

fn value(v: old::Value) -> wit::Value {
    match v {
        old::Value::Text(t) => wit::Value::Text(t),
        old::Value::Integer(n) => wit::Value::Integer(n),
        old::Value::Float(x) => wit::Value::Float(x),
        old::Value::Boolean(b) => wit::Value::Boolean(b),
    }
}

fn old_value(v: &wit::Value) -> old::Value {
    match v {
        wit::Value::Text(t) => old::Value::Text(t.clone()),
        wit::Value::Integer(n) => old::Value::Integer(*n),
        wit::Value::Float(x) => old::Value::Float(*x),
        wit::Value::Boolean(b) => old::Value::Boolean(*b),
    }
}

/// A 0.2.0 manifest as the current one: no declared probes.
pub(super) fn manifest(m: old::Manifest) -> wit::Manifest {
    wit::Manifest {
        name: m.name,
        version: m.version,
        description: m.description,
        config: m
            .config
            .into_iter()
            .map(|k| wit::ConfigKey {
                name: k.name,
                kind: match k.kind {
                    old::ValueKind::Text => wit::ValueKind::Text,
                    old::ValueKind::Integer => wit::ValueKind::Integer,
                    old::ValueKind::Float => wit::ValueKind::Float,
                    old::ValueKind::Boolean => wit::ValueKind::Boolean,
                },
                default: value(k.default),
                description: k.description,
            })
            .collect(),
        needs: wit::Needs {
            info_fields: m.needs.info_fields,
            info_sections: m.needs.info_sections,
            slowlog: m.needs.slowlog,
            probes: Vec::new(),
        },
        cadence: match m.cadence {
            old::Cadence::EveryPoll => wit::Cadence::EveryPoll,
            old::Cadence::EveryPolls(n) => wit::Cadence::EveryPolls(n),
            old::Cadence::IntervalMs(ms) => wit::Cadence::IntervalMs(ms),
        },
    }
}

/// A setting for a 0.2.0 `configure`.
pub(super) fn setting(s: &wit::Setting) -> old::Setting {
    old::Setting {
        name: s.name.clone(),
        value: old_value(&s.value),
    }
}

/// A snapshot for a 0.2.0 `observe`: the same, without probe readings.
pub(super) fn snapshot(s: &wit::Snapshot) -> old::Snapshot {
    old::Snapshot {
        instance: s.instance.clone(),
        taken_at_ms: s.taken_at_ms,
        info: s
            .info
            .iter()
            .map(|f| old::InfoField {
                section: f.section.clone(),
                name: f.name.clone(),
                value: f.value.clone(),
            })
            .collect(),
        slowlog: s.slowlog.as_ref().map(|entries| {
            entries
                .iter()
                .map(|e| old::SlowlogEntry {
                    id: e.id,
                    started_at: e.started_at,
                    duration_us: e.duration_us,
                    args: e.args.clone(),
                    client_addr: e.client_addr.clone(),
                    client_name: e.client_name.clone(),
                })
                .collect()
        }),
    }
}

/// An event a 0.2.0 watcher returned.
pub(super) fn event(e: old::Event) -> wit::Event {
    wit::Event {
        level: match e.level {
            old::Level::Debug => wit::Level::Debug,
            old::Level::Info => wit::Level::Info,
            old::Level::Warn => wit::Level::Warn,
            old::Level::Error => wit::Level::Error,
        },
        msg: e.msg,
        fields: e
            .fields
            .into_iter()
            .map(|f| wit::Field {
                name: f.name,
                value: value(f.value),
            })
            .collect(),
    }
}

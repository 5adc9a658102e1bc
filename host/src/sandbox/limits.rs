//! Sandbox limits of watchers: defaults in `[limits]` of `lookout.toml`,
//! overridable per watcher in `[limits.watchers.NAME]`; either can also
//! override the cadence watchers declare.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Result, bail};
use serde::Deserialize;
use serde_json::{Value, json};

/// `[limits]` as written, and (the same keys) `[limits.watchers.NAME]`.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsFile {
    /// Milliseconds one call may run before it is interrupted.
    pub call_deadline_ms: Option<i64>,
    /// Linear memory cap, MiB.
    pub memory_mib: Option<i64>,
    /// MiB all instances of a watcher may grow beyond their initial
    /// memory, together.
    pub fleet_memory_mib: Option<i64>,
    /// Table elements one instance may hold in all its tables.
    pub max_table_elements: Option<i64>,
    /// WASI resources (streams, pollables...) one instance may hold.
    pub max_resources: Option<i64>,
    /// Events kept from one `observe` call.
    pub max_events: Option<i64>,
    /// Bytes kept of an event message.
    pub max_msg_bytes: Option<i64>,
    /// Fields kept per event.
    pub max_fields: Option<i64>,
    /// Bytes kept of a text field value.
    pub max_field_bytes: Option<i64>,
    /// Bytes of one envelope's JSON.
    pub max_envelope_bytes: Option<i64>,
    /// Bytes of JSON of all the envelopes of one call.
    pub max_call_bytes: Option<i64>,
    /// Largest `.wasm` file accepted, MiB.
    pub max_wasm_mib: Option<i64>,
    /// Consecutive failures before a watcher is quarantined.
    pub quarantine_after: Option<i64>,
    /// Run every N polls, overriding what watchers declare.
    pub every_polls: Option<i64>,
    /// Run at most every this many seconds, overriding what watchers declare.
    pub interval_s: Option<f64>,
    /// CLIENT LIST is skipped while a server has more clients connected
    /// (top level only: the probe runs once per target).
    pub max_clients_listed: Option<i64>,
    /// MiB of snapshots read and waiting for their watchers, across every
    /// target (top level only).
    pub snapshots_mib: Option<i64>,
    /// Per-watcher overrides, by watcher file name (top level only).
    #[serde(default)]
    pub watchers: BTreeMap<String, LimitsFile>,
}

/// How often a watcher runs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Cadence {
    /// Every poll.
    EveryPoll,
    /// Every N-th poll.
    EveryPolls(u32),
    /// On the first poll at least this long after its previous run.
    Interval(Duration),
}

/// Resolved limits of one watcher.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WatcherLimits {
    /// Wall-clock budget of one call.
    pub call_deadline: Duration,
    /// Linear memory cap, bytes.
    pub memory_bytes: usize,
    /// Bytes all instances of the watcher may grow beyond their initial
    /// memory, together: what keeps a watcher on thousands of targets from
    /// taking the host's memory one cap at a time.
    pub fleet_memory_bytes: usize,
    /// Whether `[limits.watchers.NAME]` set `fleet_memory_bytes`, so that
    /// a refusal names the key the operator would change.
    pub fleet_memory_own: bool,
    /// Table elements one instance may hold in all its tables.
    pub max_table_elements: usize,
    /// WASI resources one instance may hold at once.
    pub max_resources: usize,
    /// Events kept per call.
    pub max_events: usize,
    /// Bytes kept per message.
    pub max_msg_bytes: usize,
    /// Fields kept per event.
    pub max_fields: usize,
    /// Bytes kept per text field value.
    pub max_field_bytes: usize,
    /// Bytes of one envelope's JSON, counted after encoding.
    pub max_envelope_bytes: usize,
    /// Bytes of JSON of one call's envelopes together.
    pub max_call_bytes: usize,
    /// Largest `.wasm` accepted, bytes.
    pub max_wasm_bytes: u64,
    /// Consecutive failures before quarantine.
    pub quarantine_after: u32,
    /// Cadence set by the operator, overriding the watcher's own.
    pub cadence: Option<Cadence>,
}

impl Default for WatcherLimits {
    fn default() -> Self {
        Self {
            call_deadline: Duration::from_millis(50),
            memory_bytes: 16 << 20,
            fleet_memory_bytes: 1 << 30,
            fleet_memory_own: false,
            // The Rust watchers hold under 200 elements, the Python one
            // (CPython through componentize-py) about 5,800.
            max_table_elements: 10_000,
            // Watchers hold a few: four to write stdout and stderr, two
            // (a deadline and its pollable) to wait on a clock; each costs
            // the host a hundred bytes or so.
            max_resources: 100,
            max_events: 100,
            max_msg_bytes: 4096,
            max_fields: 32,
            max_field_bytes: 1024,
            max_envelope_bytes: crate::delivery::envelope::MAX_ENVELOPE_BYTES,
            max_call_bytes: 1 << 20,
            // Fits components of interpreted languages (a Python one
            // is about 18 MiB) while refusing files far beyond any watcher.
            max_wasm_bytes: 32 << 20,
            quarantine_after: 5,
            cadence: None,
        }
    }
}

/// Defaults plus per-watcher overrides.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Limits of a watcher without overrides.
    pub defaults: WatcherLimits,
    /// Overrides by watcher file name.
    pub watchers: BTreeMap<String, WatcherLimits>,
    /// CLIENT LIST is skipped while a server has more clients connected
    /// (`limits.max_clients_listed`).
    pub max_clients_listed: u64,
    /// Bytes of snapshots read and waiting for their watchers, across
    /// every target (`limits.snapshots_mib`).
    pub snapshots_bytes: usize,
}

/// Default of `limits.snapshots_mib`.
pub(crate) const SNAPSHOTS_MIB: usize = 256;

/// Accepted range of `limits.snapshots_mib`.
pub(crate) const SNAPSHOTS_MIB_RANGE: (i64, i64) = (1, 65_536);

pub(crate) use crate::redis::probe::MAX_CLIENTS_LISTED;

/// Accepted range of `limits.max_clients_listed`.
pub(crate) const CLIENTS_LISTED_RANGE: (i64, i64) = (1, 1_000_000);

impl Default for Limits {
    fn default() -> Self {
        Self {
            defaults: WatcherLimits::default(),
            watchers: BTreeMap::new(),
            max_clients_listed: MAX_CLIENTS_LISTED,
            snapshots_bytes: SNAPSHOTS_MIB << 20,
        }
    }
}

impl Limits {
    /// Limits of the watcher named `name`.
    pub fn of(&self, name: &str) -> WatcherLimits {
        self.watchers.get(name).copied().unwrap_or(self.defaults)
    }

    /// Resolves and validates the file's limits; `origin` names the file.
    ///
    /// # Errors
    /// A value outside its range ([`RANGES`], [`MAX_INTERVAL_S`]); the
    /// message names the key and the accepted range.
    pub fn resolve(file: &LimitsFile, origin: &str) -> Result<Self> {
        let defaults = apply(WatcherLimits::default(), file, origin, "limits")?;
        let max_clients_listed = match file.max_clients_listed {
            None => MAX_CLIENTS_LISTED,
            Some(v) if (CLIENTS_LISTED_RANGE.0..=CLIENTS_LISTED_RANGE.1).contains(&v) => {
                u64::try_from(v)?
            }
            Some(v) => bail!(
                "{origin}: `limits.max_clients_listed` = {v} is out of range: expected an \
                 integer from {} to {} (clients)",
                CLIENTS_LISTED_RANGE.0,
                CLIENTS_LISTED_RANGE.1
            ),
        };
        let snapshots_bytes = match file.snapshots_mib {
            None => SNAPSHOTS_MIB << 20,
            Some(v) if (SNAPSHOTS_MIB_RANGE.0..=SNAPSHOTS_MIB_RANGE.1).contains(&v) => {
                usize::try_from(v)? << 20
            }
            Some(v) => bail!(
                "{origin}: `limits.snapshots_mib` = {v} is out of range: expected an integer \
                 from {} to {} (MiB)",
                SNAPSHOTS_MIB_RANGE.0,
                SNAPSHOTS_MIB_RANGE.1
            ),
        };
        let mut watchers = BTreeMap::new();
        for (name, o) in &file.watchers {
            if !o.watchers.is_empty() {
                bail!("{origin}: `limits.watchers.{name}` cannot hold a `watchers` table");
            }
            if o.snapshots_mib.is_some() {
                bail!(
                    "{origin}: `limits.watchers.{name}.snapshots_mib`: the snapshot budget is \
                     shared by every target and watcher; set `snapshots_mib` in [limits]"
                );
            }
            if o.max_clients_listed.is_some() {
                bail!(
                    "{origin}: `limits.watchers.{name}.max_clients_listed`: CLIENT LIST runs once \
                     per target for every watcher; set `max_clients_listed` in [limits]"
                );
            }
            let limits = apply(defaults, o, origin, &format!("limits.watchers.{name}"))?;
            watchers.insert(name.clone(), limits);
        }
        Ok(Self {
            defaults,
            watchers,
            max_clients_listed,
            snapshots_bytes,
        })
    }
}

impl Limits {
    /// `[limits]` as resolved, in the file's keys and units, as `lookout
    /// config` shows it; `watchers` holds every key of each
    /// `[limits.watchers.NAME]`, inherited ones included.
    #[must_use]
    pub fn shown(&self) -> Value {
        let mut table = shown(&self.defaults);
        if let Value::Object(t) = &mut table {
            t.insert("max_clients_listed".into(), self.max_clients_listed.into());
            t.insert("snapshots_mib".into(), (self.snapshots_bytes >> 20).into());
            let watchers = self.watchers.iter();
            let watchers = watchers.map(|(name, l)| (name.clone(), shown(l)));
            t.insert("watchers".into(), Value::Object(watchers.collect()));
        }
        table
    }
}

/// The keys of one watcher's limits.
fn shown(l: &WatcherLimits) -> Value {
    let (every_polls, interval_s) = match l.cadence {
        None | Some(Cadence::EveryPoll) => (None, None),
        Some(Cadence::EveryPolls(n)) => (Some(n), None),
        Some(Cadence::Interval(d)) => (None, Some(d.as_secs_f64())),
    };
    json!({
        "call_deadline_ms": u64::try_from(l.call_deadline.as_millis()).unwrap_or(u64::MAX),
        "memory_mib": l.memory_bytes >> 20,
        "fleet_memory_mib": l.fleet_memory_bytes >> 20,
        "max_table_elements": l.max_table_elements,
        "max_resources": l.max_resources,
        "max_events": l.max_events,
        "max_msg_bytes": l.max_msg_bytes,
        "max_fields": l.max_fields,
        "max_field_bytes": l.max_field_bytes,
        "max_envelope_bytes": l.max_envelope_bytes,
        "max_call_bytes": l.max_call_bytes,
        "max_wasm_mib": l.max_wasm_bytes >> 20,
        "quarantine_after": l.quarantine_after,
        "every_polls": every_polls,
        "interval_s": interval_s,
    })
}

/// Accepted range of every numeric key, inclusive, with its unit; the
/// docs/untrusted.md documents the same table.
pub(crate) const RANGES: [(&str, i64, i64, &str); 14] = [
    ("call_deadline_ms", 1, 600_000, "milliseconds"),
    ("memory_mib", 1, 4096, "MiB"),
    ("fleet_memory_mib", 1, 1 << 20, "MiB"),
    ("max_table_elements", 1, 1 << 20, "elements"),
    ("max_resources", 1, 1_000_000, "resources"),
    ("max_events", 0, 100_000, "events"),
    ("max_msg_bytes", 0, 1 << 20, "bytes"),
    ("max_fields", 0, 1024, "fields"),
    ("max_field_bytes", 0, 1 << 20, "bytes"),
    ("max_envelope_bytes", 4096, 16 << 20, "bytes"),
    ("max_call_bytes", 4096, 256 << 20, "bytes"),
    ("max_wasm_mib", 1, 1024, "MiB"),
    ("quarantine_after", 1, 1000, "failures"),
    ("every_polls", 1, 1_000_000, "polls"),
];

/// Shortest `interval_s`, seconds: one millisecond.
pub(crate) const MIN_INTERVAL_S: f64 = 0.001;
/// Longest `interval_s`, seconds: one week.
pub(crate) const MAX_INTERVAL_S: f64 = 604_800.0;

fn apply(mut l: WatcherLimits, o: &LimitsFile, origin: &str, table: &str) -> Result<WatcherLimits> {
    let check = |key: &str, value: Option<i64>| -> Result<Option<u64>> {
        let Some(v) = value else { return Ok(None) };
        let Some(&(_, min, max, unit)) = RANGES.iter().find(|r| r.0 == key) else {
            return Ok(u64::try_from(v).ok());
        };
        if v < min || v > max {
            bail!(
                "{origin}: `{table}.{key}` = {v} is out of range: expected an integer from \
                 {min} to {max} ({unit})"
            );
        }
        Ok(u64::try_from(v).ok())
    };
    let size = |v: u64| usize::try_from(v).unwrap_or(usize::MAX);
    if let Some(v) = check("call_deadline_ms", o.call_deadline_ms)? {
        l.call_deadline = Duration::from_millis(v);
    }
    if let Some(v) = check("memory_mib", o.memory_mib)? {
        l.memory_bytes = size(v << 20);
    }
    if let Some(v) = check("fleet_memory_mib", o.fleet_memory_mib)? {
        l.fleet_memory_bytes = size(v << 20);
        l.fleet_memory_own = table != "limits";
    }
    if let Some(v) = check("max_table_elements", o.max_table_elements)? {
        l.max_table_elements = size(v);
    }
    if let Some(v) = check("max_resources", o.max_resources)? {
        l.max_resources = size(v);
    }
    if let Some(v) = check("max_events", o.max_events)? {
        l.max_events = size(v);
    }
    if let Some(v) = check("max_msg_bytes", o.max_msg_bytes)? {
        l.max_msg_bytes = size(v);
    }
    if let Some(v) = check("max_fields", o.max_fields)? {
        l.max_fields = size(v);
    }
    if let Some(v) = check("max_field_bytes", o.max_field_bytes)? {
        l.max_field_bytes = size(v);
    }
    if let Some(v) = check("max_envelope_bytes", o.max_envelope_bytes)? {
        l.max_envelope_bytes = size(v);
    }
    if let Some(v) = check("max_call_bytes", o.max_call_bytes)? {
        l.max_call_bytes = size(v);
    }
    if let Some(v) = check("max_wasm_mib", o.max_wasm_mib)? {
        l.max_wasm_bytes = v << 20;
    }
    if let Some(v) = check("quarantine_after", o.quarantine_after)? {
        l.quarantine_after = u32::try_from(v)?;
    }
    let every = check("every_polls", o.every_polls)?;
    match (every, o.interval_s) {
        (Some(_), Some(_)) => {
            bail!("{origin}: `{table}` sets both every_polls and interval_s; pick one")
        }
        (Some(n), None) => l.cadence = Some(Cadence::EveryPolls(u32::try_from(n)?)),
        (None, Some(s)) => {
            if !(s.is_finite() && (MIN_INTERVAL_S..=MAX_INTERVAL_S).contains(&s)) {
                bail!(
                    "{origin}: `{table}.interval_s` = {s} is out of range: expected seconds \
                     from {MIN_INTERVAL_S} to {MAX_INTERVAL_S} (one week)"
                );
            }
            l.cadence = Some(Cadence::Interval(Duration::from_secs_f64(s)));
        }
        (None, None) => {}
    }
    Ok(l)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_inherit_defaults() {
        let file: LimitsFile =
            toml::from_str("memory_mib = 32\n[watchers.flood]\nmax_events = 5\nevery_polls = 3\n")
                .unwrap();
        let limits = Limits::resolve(&file, "lookout.toml").unwrap();
        assert_eq!(limits.of("other").memory_bytes, 32 << 20);
        let flood = limits.of("flood");
        assert_eq!(flood.memory_bytes, 32 << 20);
        assert_eq!(flood.max_events, 5);
        assert_eq!(flood.cadence, Some(Cadence::EveryPolls(3)));
    }

    #[test]
    fn fleet_budgets_know_the_table_that_set_them() {
        let file: LimitsFile = toml::from_str(
            "fleet_memory_mib = 128\n[watchers.hog]\nfleet_memory_mib = 64\n\
             [watchers.other]\nmemory_mib = 8\n",
        )
        .unwrap();
        let limits = Limits::resolve(&file, "lookout.toml").unwrap();
        let budget = |name: &str| {
            let l = limits.of(name);
            (l.fleet_memory_bytes, l.fleet_memory_own)
        };
        assert_eq!(budget("plain"), (128 << 20, false));
        assert_eq!(budget("other"), (128 << 20, false));
        assert_eq!(budget("hog"), (64 << 20, true));
        let defaults = WatcherLimits::default();
        assert_eq!(defaults.fleet_memory_bytes, 1 << 30);
        assert_eq!(
            (defaults.max_table_elements, defaults.max_resources),
            (10_000, 100)
        );
        let file: LimitsFile = toml::from_str("[watchers.w]\nmax_resources = 0\n").unwrap();
        let err = Limits::resolve(&file, "lookout.toml")
            .unwrap_err()
            .to_string();
        assert!(err.contains("limits.watchers.w.max_resources"), "{err}");
    }

    #[test]
    fn bad_values_name_the_key() {
        let file: LimitsFile = toml::from_str("[watchers.x]\ncall_deadline_ms = 0\n").unwrap();
        let err = Limits::resolve(&file, "lookout.toml")
            .unwrap_err()
            .to_string();
        assert!(err.contains("limits.watchers.x.call_deadline_ms"), "{err}");
        let err = toml::from_str::<LimitsFile>("[watchers.x]\nevery = 3\n").unwrap_err();
        assert!(err.to_string().contains("every"), "{err}");
    }

    #[test]
    fn out_of_range_values_are_refused_not_wrapped() {
        for (text, key) in [
            ("interval_s = 1e300", "limits.interval_s"),
            ("interval_s = nan", "limits.interval_s"),
            ("interval_s = -inf", "limits.interval_s"),
            ("memory_mib = 17592186044416", "limits.memory_mib"),
            ("memory_mib = -1", "limits.memory_mib"),
            (
                "call_deadline_ms = 9223372036854775807",
                "limits.call_deadline_ms",
            ),
            ("max_events = -5", "limits.max_events"),
            ("every_polls = 4294967296", "limits.every_polls"),
            ("max_envelope_bytes = 100", "limits.max_envelope_bytes"),
            (
                "[watchers.w]\nmax_call_bytes = 1073741824",
                "limits.watchers.w.max_call_bytes",
            ),
            (
                "[watchers.w]\nmax_wasm_mib = 1048576",
                "limits.watchers.w.max_wasm_mib",
            ),
        ] {
            let file: LimitsFile = toml::from_str(text).unwrap();
            let err = Limits::resolve(&file, "lookout.toml")
                .unwrap_err()
                .to_string();
            assert!(
                err.contains(key) && err.contains("out of range"),
                "{text}: {err}"
            );
        }
        let file: LimitsFile = toml::from_str("memory_mib = 4096\ninterval_s = 604800").unwrap();
        let limits = Limits::resolve(&file, "lookout.toml").unwrap();
        assert_eq!(limits.defaults.memory_bytes, 4096 << 20);
    }
}

//! Sandbox limits of watchers: defaults in `[limits]` of `lookout.toml`,
//! overridable per watcher in `[limits.watchers.NAME]`; either can also
//! override the cadence watchers declare.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Result, bail};
use serde::Deserialize;

/// `[limits]` as written, and (the same keys) `[limits.watchers.NAME]`.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsFile {
    /// Milliseconds one call may run before it is interrupted.
    pub call_deadline_ms: Option<u64>,
    /// Linear memory cap, MiB.
    pub memory_mib: Option<u64>,
    /// Events kept from one `observe` call.
    pub max_events: Option<u32>,
    /// Bytes kept of an event message.
    pub max_msg_bytes: Option<u32>,
    /// Fields kept per event.
    pub max_fields: Option<u32>,
    /// Bytes kept of a text field value.
    pub max_field_bytes: Option<u32>,
    /// Largest `.wasm` file accepted, MiB.
    pub max_wasm_mib: Option<u64>,
    /// Consecutive failures before a watcher is quarantined.
    pub quarantine_after: Option<u32>,
    /// Run every N polls, overriding what watchers declare.
    pub every_polls: Option<u32>,
    /// Run at most every this many seconds, overriding what watchers declare.
    pub interval_s: Option<f64>,
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
    /// Events kept per call.
    pub max_events: usize,
    /// Bytes kept per message.
    pub max_msg_bytes: usize,
    /// Fields kept per event.
    pub max_fields: usize,
    /// Bytes kept per text field value.
    pub max_field_bytes: usize,
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
            max_events: 100,
            max_msg_bytes: 4096,
            max_fields: 32,
            max_field_bytes: 1024,
            max_wasm_bytes: 16 << 20,
            quarantine_after: 5,
            cadence: None,
        }
    }
}

/// Defaults plus per-watcher overrides.
#[derive(Debug, Clone, Default)]
pub struct Limits {
    /// Limits of a watcher without overrides.
    pub defaults: WatcherLimits,
    /// Overrides by watcher file name.
    pub watchers: BTreeMap<String, WatcherLimits>,
}

impl Limits {
    /// Limits of the watcher named `name`.
    pub fn of(&self, name: &str) -> WatcherLimits {
        self.watchers.get(name).copied().unwrap_or(self.defaults)
    }

    /// Resolves and validates the file's limits; `origin` names the file.
    ///
    /// # Errors
    /// A zero where at least one is needed, or a bad interval; the message
    /// names the key.
    pub fn resolve(file: &LimitsFile, origin: &str) -> Result<Self> {
        let defaults = apply(WatcherLimits::default(), file, origin, "limits")?;
        let mut watchers = BTreeMap::new();
        for (name, o) in &file.watchers {
            if !o.watchers.is_empty() {
                bail!("{origin}: `limits.watchers.{name}` cannot hold a `watchers` table");
            }
            let limits = apply(defaults, o, origin, &format!("limits.watchers.{name}"))?;
            watchers.insert(name.clone(), limits);
        }
        Ok(Self { defaults, watchers })
    }
}

fn apply(mut l: WatcherLimits, o: &LimitsFile, origin: &str, table: &str) -> Result<WatcherLimits> {
    let positive = |key: &str, v: u64| -> Result<u64> {
        if v == 0 {
            bail!("{origin}: `{table}.{key}` must be at least 1");
        }
        Ok(v)
    };
    let size = |v: u32| usize::try_from(v).unwrap_or(usize::MAX);
    if let Some(v) = o.call_deadline_ms {
        l.call_deadline = Duration::from_millis(positive("call_deadline_ms", v)?);
    }
    if let Some(v) = o.memory_mib {
        l.memory_bytes = usize::try_from(positive("memory_mib", v)? << 20).unwrap_or(usize::MAX);
    }
    if let Some(v) = o.max_events {
        l.max_events = size(v);
    }
    if let Some(v) = o.max_msg_bytes {
        l.max_msg_bytes = size(v);
    }
    if let Some(v) = o.max_fields {
        l.max_fields = size(v);
    }
    if let Some(v) = o.max_field_bytes {
        l.max_field_bytes = size(v);
    }
    if let Some(v) = o.max_wasm_mib {
        l.max_wasm_bytes = positive("max_wasm_mib", v)? << 20;
    }
    if let Some(v) = o.quarantine_after {
        l.quarantine_after = u32::try_from(positive("quarantine_after", u64::from(v))?)?;
    }
    match (o.every_polls, o.interval_s) {
        (Some(_), Some(_)) => {
            bail!("{origin}: `{table}` sets both every_polls and interval_s; pick one")
        }
        (Some(n), None) => {
            l.cadence = Some(Cadence::EveryPolls(u32::try_from(positive(
                "every_polls",
                u64::from(n),
            )?)?));
        }
        (None, Some(s)) => {
            if !(s.is_finite() && s > 0.0) {
                bail!("{origin}: `{table}.interval_s` must be a positive number of seconds");
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
    fn bad_values_name_the_key() {
        let file: LimitsFile = toml::from_str("[watchers.x]\ncall_deadline_ms = 0\n").unwrap();
        let err = Limits::resolve(&file, "lookout.toml")
            .unwrap_err()
            .to_string();
        assert!(err.contains("limits.watchers.x.call_deadline_ms"), "{err}");
        let err = toml::from_str::<LimitsFile>("[watchers.x]\nevery = 3\n").unwrap_err();
        assert!(err.to_string().contains("every"), "{err}");
    }
}

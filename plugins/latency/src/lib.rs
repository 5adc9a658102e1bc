//! The `latency` watcher: new spikes in `LATENCY LATEST`.
//!
//! Redis's latency monitor keeps, per latency event (`command`, `fork`,
//! `aof-fsync-always`...), the time and duration of its latest spike and the
//! worst one. A spike is new when an event's latest time or duration changed
//! since the previous poll, or the event was not listed then; a new spike at
//! or above the threshold (`threshold_ms`, or the event's own in
//! `event_thresholds`) is reported, at most once per event per poll. The
//! first reading only records what is there: old spikes are not news.
//!
//! When the host cannot read the monitor (`latency-monitor-threshold` is 0
//! and nothing was recorded, or LATENCY is refused) the watcher says so once,
//! and once more when readings come back. A threshold of 0 means the server
//! had recorded nothing, so whatever is listed when readings come back is
//! new; after a refusal the first reading back is a fresh baseline.
//!
//! Not seeing the monitor is a condition, `latency-unavailable` (key
//! `latency-latest`): fired with the first event, resolved with the second.
//! A spike (state `changed`) is a one-off and carries none.

use std::collections::BTreeMap;

use lookout_watcher::format::duration;
use lookout_watcher::{
    Cadence, Conditions, ConfigKey, Event, Level, Manifest, Needs, Probe, Setting, Settings,
    Snapshot, Watch, invalid,
};

lookout_watcher::export!(Latency);

/// The watcher's name, the envelopes' `target`.
pub const NAME: &str = "latency";
/// Default of `threshold_ms`.
pub const DEFAULT_THRESHOLD_MS: i64 = 100;
/// Default of `event_thresholds`: no overrides.
pub const DEFAULT_EVENT_THRESHOLDS: &str = "";
/// How the host's reason starts when the server's latency monitor is off.
pub const MONITOR_OFF: &str = "latency-monitor-threshold is 0";

/// Validated settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Spikes of at least this many milliseconds are reported.
    pub threshold_ms: u64,
    /// Per event overrides of `threshold_ms`, event names in lower case.
    pub event_thresholds: Vec<(String, u64)>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            threshold_ms: DEFAULT_THRESHOLD_MS as u64,
            event_thresholds: Vec::new(),
        }
    }
}

impl Config {
    /// Reads and checks the settings handed to `configure`; the error names
    /// the offending key and, for `event_thresholds`, the entry.
    pub fn from_settings(settings: &[Setting]) -> Result<Self, String> {
        let s = Settings::new(settings);
        let threshold_ms = s.integer("threshold_ms", DEFAULT_THRESHOLD_MS)?;
        let threshold_ms = u64::try_from(threshold_ms)
            .map_err(|_| invalid("threshold_ms", ">= 0", threshold_ms))?;
        let event_thresholds =
            parse_event_thresholds(s.text("event_thresholds", DEFAULT_EVENT_THRESHOLDS)?)?;
        Ok(Config {
            threshold_ms,
            event_thresholds,
        })
    }

    /// The threshold for latency event `event`.
    pub fn threshold_for(&self, event: &str) -> u64 {
        self.event_thresholds
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(event))
            .map_or(self.threshold_ms, |(_, ms)| *ms)
    }
}

/// `fork=20, command=250`: entries separated by commas, each an event name
/// (letters, digits, `-`, `_`) and a number of milliseconds >= 0. Names are
/// kept in lower case; each may appear once.
pub fn parse_event_thresholds(text: &str) -> Result<Vec<(String, u64)>, String> {
    const KEY: &str = "event_thresholds";
    let mut out: Vec<(String, u64)> = Vec::new();
    for entry in text.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let bad = || {
            invalid(
                KEY,
                "a comma-separated list of EVENT=MS entries (MS >= 0)",
                format_args!("{entry:?}"),
            )
        };
        let (name, ms) = entry.split_once('=').ok_or_else(bad)?;
        let name = name.trim();
        let valid_name = !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !valid_name {
            return Err(bad());
        }
        let ms: u64 = ms.trim().parse().map_err(|_| bad())?;
        let name = name.to_ascii_lowercase();
        if out.iter().any(|(n, _)| *n == name) {
            return Err(invalid(
                KEY,
                "a list naming each event once",
                format_args!("{name:?} twice, in {entry:?}"),
            ));
        }
        out.push((name, ms));
    }
    Ok(out)
}

/// An event's latest spike as last seen: `(latest_at, latest_ms)`.
type Latest = (i64, u64);

/// The watcher's logic and state.
#[derive(Debug, Clone)]
pub struct Latency {
    config: Config,
    /// Latest spike per event at the previous reading; `None` until a
    /// baseline is set.
    baseline: Option<BTreeMap<String, Latest>>,
    /// Since when (Unix ms) readings are unavailable, once reported.
    unavailable_since: Option<i64>,
    /// The `latency-unavailable` condition.
    unavailable: Conditions<&'static str>,
}

/// The key of the `latency-unavailable` condition.
const UNAVAILABLE_KEY: &str = "latency-latest";

impl Latency {
    /// A watcher with no baseline yet.
    pub fn new(config: Config) -> Self {
        Latency {
            config,
            baseline: None,
            unavailable_since: None,
            unavailable: Conditions::new("latency-unavailable"),
        }
    }

    /// Whether a baseline is set (a reading was seen).
    pub fn has_baseline(&self) -> bool {
        self.baseline.is_some()
    }

    /// Whether the monitor was reported unreadable and has not come back.
    pub fn is_unavailable(&self) -> bool {
        self.unavailable_since.is_some()
    }
}

impl Watch for Latency {
    fn manifest() -> Manifest {
        Manifest::new(
            NAME,
            env!("CARGO_PKG_VERSION"),
            "reports new LATENCY LATEST spikes at or above a threshold",
        )
        .with_config(vec![
            ConfigKey::new(
                "threshold_ms",
                DEFAULT_THRESHOLD_MS,
                "report a new spike lasting at least this many milliseconds; at least 0",
            ),
            ConfigKey::new(
                "event_thresholds",
                DEFAULT_EVENT_THRESHOLDS,
                "per event thresholds overriding threshold_ms, as \"fork=20, command=250\"",
            ),
        ])
        .with_needs(Needs::info(&[]).with_probe(Probe::LatencyLatest))
        .with_cadence(Cadence::EveryPoll)
    }

    fn from_settings(settings: &[Setting]) -> Result<Self, String> {
        Config::from_settings(settings).map(Latency::new)
    }

    /// At most one event per latency event type, plus one when readings
    /// go away or come back.
    fn observe(&mut self, snapshot: &Snapshot) -> Vec<Event> {
        let now = snapshot.taken_at_ms;
        let spikes = match snapshot.latency() {
            Err(reason) => {
                if reason.starts_with(MONITOR_OFF) {
                    // Nothing recorded: any spike listed later is new.
                    self.baseline = Some(BTreeMap::new());
                }
                if self.unavailable_since.is_some() {
                    return Vec::new();
                }
                self.unavailable_since = Some(now);
                let e = Event::new(Level::Info, format!("cannot see latency spikes: {reason}"))
                    .field("reason", reason)
                    .field("state", "entered");
                return self
                    .unavailable
                    .observe(UNAVAILABLE_KEY, true, |_| e)
                    .into_iter()
                    .collect();
            }
            Ok(spikes) => spikes,
        };

        let mut events = Vec::new();
        if let Some(since) = self.unavailable_since.take() {
            let lasted = now.saturating_sub(since).max(0);
            let e = Event::new(
                Level::Info,
                format!("latency readings are back after {}", duration(lasted)),
            )
            .field("state", "left")
            .field("duration_ms", lasted);
            events.extend(self.unavailable.observe(UNAVAILABLE_KEY, false, |_| e));
        }

        let mut current: BTreeMap<String, Latest> = BTreeMap::new();
        for spike in spikes {
            if current.contains_key(&spike.event) {
                continue;
            }
            let latest = (spike.latest_at, spike.latest_ms);
            current.insert(spike.event.clone(), latest);
            let Some(baseline) = &self.baseline else {
                continue;
            };
            if baseline.get(&spike.event) == Some(&latest) {
                continue;
            }
            let threshold = self.config.threshold_for(&spike.event);
            if spike.latest_ms < threshold {
                continue;
            }
            let msg = format!(
                "latency spike: {} took {} ms (worst {} ms)",
                spike.event, spike.latest_ms, spike.max_ms
            );
            events.push(
                Event::new(Level::Warn, msg)
                    .field("event", &spike.event)
                    .field("latest_ms", spike.latest_ms)
                    .field("max_ms", spike.max_ms)
                    .field("latest_at", spike.latest_at)
                    .field("threshold_ms", threshold)
                    .field("state", "changed"),
            );
        }
        self.baseline = Some(current);
        events
    }
}

#[cfg(test)]
mod tests;

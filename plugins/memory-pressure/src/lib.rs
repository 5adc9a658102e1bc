//! The `memory-pressure` watcher: RSS memory close to `maxmemory`.
//!
//! The instance is under pressure when `maxmemory > 0` and
//! `used_memory_rss > ratio * maxmemory`. The watcher reports transitions,
//! not every poll: one warn on entering, one info on leaving, and while the
//! pressure lasts a warn reminder every `remind_every` polls (0: none). A
//! `maxmemory` of 0 means no limit, so never pressure; dropping the limit
//! while under pressure clears it. Polls whose fields are missing or
//! unparseable are ignored (no event, state kept).
//!
//! The warn on entering fires the condition `memory-pressure` (key
//! `used_memory_rss`) and the info on leaving resolves it; reminders carry
//! no condition.

use lookout_watcher::format::{bytes, percent, percent_short};
use lookout_watcher::{
    Cadence, Conditions, ConfigKey, Event, Level, Manifest, Needs, Setting, Settings, Snapshot,
    Watch, invalid,
};

lookout_watcher::export!(MemoryPressure);

/// The watcher's name, the envelopes' `target`.
pub const NAME: &str = "memory-pressure";
/// The condition's kind: under pressure.
pub const CONDITION: &str = "memory-pressure";
/// The condition's key: the field judged.
pub const KEY: &str = "used_memory_rss";
/// Default of `ratio`.
pub const DEFAULT_RATIO: f64 = 0.9;
/// Largest accepted `ratio`. RSS may exceed `maxmemory` (fragmentation,
/// allocator overhead), so ratios above 1 are meaningful; past 10 the
/// watcher would never fire in practice and the value is likely a typo for
/// a percentage.
pub const MAX_RATIO: f64 = 10.0;
/// Default of `remind_every`, polls.
pub const DEFAULT_REMIND_EVERY: i64 = 12;

/// Validated settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Config {
    /// Share of `maxmemory` RSS must exceed: in (0, [`MAX_RATIO`]].
    pub ratio: f64,
    /// Polls between reminders while under pressure; 0 for none.
    pub remind_every: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            ratio: DEFAULT_RATIO,
            remind_every: DEFAULT_REMIND_EVERY as u64,
        }
    }
}

impl Config {
    /// Reads and checks the settings handed to `configure`; the error names
    /// the offending key.
    pub fn from_settings(settings: &[Setting]) -> Result<Self, String> {
        let s = Settings::new(settings);
        let ratio = s.float("ratio", DEFAULT_RATIO)?;
        // Written to also refuse NaN.
        if !(ratio > 0.0 && ratio <= MAX_RATIO) {
            return Err(invalid("ratio", "> 0 and <= 10", ratio));
        }
        let remind_every = s.integer("remind_every", DEFAULT_REMIND_EVERY)?;
        let remind_every = u64::try_from(remind_every)
            .map_err(|_| invalid("remind_every", ">= 0", remind_every))?;
        Ok(Config {
            ratio,
            remind_every,
        })
    }
}

/// The watcher's logic and state.
#[derive(Debug, Clone)]
pub struct MemoryPressure {
    config: Config,
    /// Consecutive polls under pressure so far; 0 when not under pressure.
    polls_in_pressure: u64,
    /// The `memory-pressure` condition, keyed by the field judged.
    pressure: Conditions<&'static str>,
}

impl MemoryPressure {
    /// A watcher that has seen no pressure.
    pub fn new(config: Config) -> Self {
        MemoryPressure {
            config,
            polls_in_pressure: 0,
            pressure: Conditions::new(CONDITION),
        }
    }

    /// Whether the last usable poll was under pressure.
    pub fn in_pressure(&self) -> bool {
        self.polls_in_pressure > 0
    }

    /// "used_memory_rss 12.3MiB is 95.1% of maxmemory 13.0MiB (threshold 90%)"
    fn detail(&self, rss: u64, max: u64, usage: f64) -> String {
        format!(
            "used_memory_rss {} is {} of maxmemory {} (threshold {})",
            bytes(rss),
            percent(usage),
            bytes(max),
            percent_short(self.config.ratio)
        )
    }

    fn event(
        &self,
        level: Level,
        msg: String,
        state: &str,
        rss: u64,
        max: u64,
        usage: f64,
    ) -> Event {
        Event::new(level, msg)
            .field("used_memory_rss", rss)
            .field("maxmemory", max)
            .field("usage_ratio", usage)
            .field("threshold", self.config.ratio)
            .field("state", state)
            .field("polls_in_pressure", self.polls_in_pressure)
    }
}

impl Watch for MemoryPressure {
    fn manifest() -> Manifest {
        Manifest {
            name: NAME.to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            description: "reports used_memory_rss rising above a share of maxmemory, and clearing"
                .to_string(),
            config: vec![
                ConfigKey::new(
                    "ratio",
                    DEFAULT_RATIO,
                    "pressure when used_memory_rss exceeds ratio * maxmemory; > 0 and <= 10",
                ),
                ConfigKey::new(
                    "remind_every",
                    DEFAULT_REMIND_EVERY,
                    "while pressure lasts, remind every this many polls; 0 never, at least 0",
                ),
            ],
            needs: Needs::info(&["used_memory_rss", "maxmemory"]),
            cadence: Cadence::EveryPoll,
        }
    }

    fn from_settings(settings: &[Setting]) -> Result<Self, String> {
        Config::from_settings(settings).map(MemoryPressure::new)
    }

    /// Looks at one poll; at most one event.
    fn observe(&mut self, snapshot: &Snapshot) -> Vec<Event> {
        let (Ok(rss), Ok(max)) = (
            snapshot.info_u64("used_memory_rss"),
            snapshot.info_u64("maxmemory"),
        ) else {
            return Vec::new();
        };
        let usage = if max > 0 {
            rss as f64 / max as f64
        } else {
            0.0
        };
        let pressure = max > 0 && usage > self.config.ratio;
        let event = match (self.in_pressure(), pressure) {
            (false, false) => None,
            (false, true) => {
                self.polls_in_pressure = 1;
                let msg = format!("memory pressure: {}", self.detail(rss, max, usage));
                let event = self.event(Level::Warn, msg, "entered", rss, max, usage);
                self.pressure.observe(KEY, true, |_| event)
            }
            (true, true) => {
                self.polls_in_pressure = self.polls_in_pressure.saturating_add(1);
                let every = self.config.remind_every;
                (every > 0 && (self.polls_in_pressure - 1).is_multiple_of(every)).then(|| {
                    let msg = format!(
                        "memory pressure continues ({}): {}",
                        polls(self.polls_in_pressure),
                        self.detail(rss, max, usage)
                    );
                    self.event(Level::Warn, msg, "ongoing", rss, max, usage)
                })
            }
            (true, false) => {
                let detail = if max == 0 {
                    format!(
                        "maxmemory is now 0 (no limit), used_memory_rss {}",
                        bytes(rss)
                    )
                } else {
                    self.detail(rss, max, usage)
                };
                let msg = format!(
                    "memory pressure cleared after {}: {detail}",
                    polls(self.polls_in_pressure)
                );
                let event = self.event(Level::Info, msg, "cleared", rss, max, usage);
                self.polls_in_pressure = 0;
                self.pressure.observe(KEY, false, |_| event)
            }
        };
        event.into_iter().collect()
    }
}

/// "1 poll", "13 polls".
fn polls(n: u64) -> String {
    if n == 1 {
        "1 poll".to_string()
    } else {
        format!("{n} polls")
    }
}

#[cfg(test)]
mod tests {
    use lookout_watcher::testing::{SnapshotBuilder, fields, setting};
    use lookout_watcher::{Guest, Value};

    use super::*;

    const MIB: u64 = 1024 * 1024;

    fn snap(rss: u64, max: u64) -> Snapshot {
        SnapshotBuilder::new()
            .info("memory", "used_memory_rss", &rss.to_string())
            .info("memory", "maxmemory", &max.to_string())
            .build()
    }

    fn watcher(ratio: f64, remind_every: u64) -> MemoryPressure {
        MemoryPressure::new(Config {
            ratio,
            remind_every,
        })
    }

    fn state(e: &Event) -> &str {
        e.get("state").and_then(Value::as_str).unwrap()
    }

    /// `(kind, key, state)` of the event's condition.
    fn condition(e: &Event) -> Option<(&str, &str, lookout_watcher::ConditionState)> {
        e.condition
            .as_ref()
            .map(|c| (c.kind.as_str(), c.key.as_str(), c.state))
    }

    #[test]
    fn entering_fires_the_condition_and_clearing_resolves_it() {
        use lookout_watcher::ConditionState::{Firing, Resolved};
        let mut w = watcher(0.9, 1);
        let on = w.observe(&snap(95, 100));
        assert_eq!(
            condition(&on[0]),
            Some(("memory-pressure", "used_memory_rss", Firing))
        );
        // A reminder is about the same episode: no condition of its own.
        let reminder = w.observe(&snap(96, 100));
        assert_eq!(state(&reminder[0]), "ongoing");
        assert_eq!(condition(&reminder[0]), None);
        let off = w.observe(&snap(50, 100));
        assert_eq!(
            condition(&off[0]),
            Some(("memory-pressure", "used_memory_rss", Resolved))
        );
    }

    #[test]
    fn manifest_declares_needs_and_config() {
        let m = MemoryPressure::manifest();
        assert_eq!(m.name, "memory-pressure");
        assert_eq!(m.version, "0.1.0");
        assert_eq!(m.cadence, Cadence::EveryPoll);
        assert_eq!(m.needs.info_fields, ["used_memory_rss", "maxmemory"]);
        assert!(m.needs.info_sections.is_empty());
        assert!(!m.needs.slowlog);
        let keys: Vec<_> = m.config.iter().map(|k| k.name.as_str()).collect();
        assert_eq!(keys, ["ratio", "remind_every"]);
        assert_eq!(m.config[0].default, Value::Float(0.9));
        assert_eq!(m.config[1].default, Value::Integer(12));
    }

    #[test]
    fn entering_pressure_warns_once() {
        let mut w = watcher(0.9, 12);
        assert!(w.observe(&snap(5 * MIB, 13 * MIB)).is_empty());
        let rss = 12_897_484; // 12.3MiB
        let events = w.observe(&snap(rss, 13 * MIB));
        assert_eq!(events.len(), 1);
        let e = &events[0];
        assert_eq!(e.level, Level::Warn);
        assert_eq!(
            e.msg,
            "memory pressure: used_memory_rss 12.3MiB is 94.6% of maxmemory 13.0MiB (threshold 90%)"
        );
        assert_eq!(
            fields(e),
            [
                ("used_memory_rss", &Value::Integer(rss as i64)),
                ("maxmemory", &Value::Integer(13 * MIB as i64)),
                ("usage_ratio", &Value::Float(rss as f64 / (13 * MIB) as f64)),
                ("threshold", &Value::Float(0.9)),
                ("state", &Value::Text("entered".into())),
                ("polls_in_pressure", &Value::Integer(1)),
            ]
        );
        // Still under pressure: quiet until the reminder is due.
        assert!(w.observe(&snap(rss, 13 * MIB)).is_empty());
        assert!(w.in_pressure());
    }

    #[test]
    fn exactly_at_the_threshold_is_not_pressure() {
        let mut w = watcher(0.9, 1);
        assert!(w.observe(&snap(900, 1000)).is_empty());
        assert!(w.observe(&snap(9 * MIB, 10 * MIB)).is_empty());
        assert!(!w.in_pressure());
        assert_eq!(w.observe(&snap(901, 1000)).len(), 1);
        let mut w = watcher(1.0, 1);
        assert!(w.observe(&snap(MIB, MIB)).is_empty());
        assert_eq!(w.observe(&snap(MIB + 1, MIB)).len(), 1);
    }

    #[test]
    fn reminders_follow_remind_every() {
        let mut w = watcher(0.5, 3);
        let mut states = Vec::new();
        for _ in 0..10 {
            let events = w.observe(&snap(90, 100));
            assert!(events.len() <= 1);
            states.push(events.first().map(|e| state(e).to_string()));
        }
        let fired: Vec<(usize, &str)> = states
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.as_deref().map(|s| (i + 1, s)))
            .collect();
        // Entered at poll 1, reminded 3, 6 and 9 polls later.
        assert_eq!(
            fired,
            [
                (1, "entered"),
                (4, "ongoing"),
                (7, "ongoing"),
                (10, "ongoing")
            ]
        );
    }

    #[test]
    fn reminder_event_shape() {
        let mut w = watcher(0.5, 2);
        w.observe(&snap(90, 100));
        assert!(w.observe(&snap(90, 100)).is_empty());
        let events = w.observe(&snap(95, 100));
        let e = &events[0];
        assert_eq!(e.level, Level::Warn);
        assert_eq!(
            e.msg,
            "memory pressure continues (3 polls): used_memory_rss 95B is 95.0% of maxmemory 100B (threshold 50%)"
        );
        assert_eq!(state(e), "ongoing");
        assert_eq!(e.get("polls_in_pressure"), Some(&Value::Integer(3)));
    }

    #[test]
    fn remind_every_one_reminds_every_poll() {
        let mut w = watcher(0.5, 1);
        assert_eq!(state(&w.observe(&snap(90, 100))[0]), "entered");
        for _ in 0..3 {
            assert_eq!(state(&w.observe(&snap(90, 100))[0]), "ongoing");
        }
    }

    #[test]
    fn remind_every_zero_never_reminds() {
        let mut w = watcher(0.5, 0);
        assert_eq!(w.observe(&snap(90, 100)).len(), 1);
        for _ in 0..50 {
            assert!(w.observe(&snap(90, 100)).is_empty());
        }
        assert!(w.in_pressure());
    }

    #[test]
    fn leaving_pressure_clears_once() {
        let mut w = watcher(0.9, 100);
        w.observe(&snap(95, 100));
        w.observe(&snap(96, 100));
        let events = w.observe(&snap(50, 100));
        assert_eq!(events.len(), 1);
        let e = &events[0];
        assert_eq!(e.level, Level::Info);
        assert_eq!(
            e.msg,
            "memory pressure cleared after 2 polls: used_memory_rss 50B is 50.0% of maxmemory 100B (threshold 90%)"
        );
        assert_eq!(state(e), "cleared");
        assert_eq!(e.get("polls_in_pressure"), Some(&Value::Integer(2)));
        assert_eq!(e.get("usage_ratio"), Some(&Value::Float(0.5)));
        assert!(!w.in_pressure());
        assert!(w.observe(&snap(50, 100)).is_empty());
        // And it can enter again, counting from 1.
        let again = w.observe(&snap(99, 100));
        assert_eq!(state(&again[0]), "entered");
        assert_eq!(again[0].get("polls_in_pressure"), Some(&Value::Integer(1)));
    }

    #[test]
    fn zero_maxmemory_is_never_pressure() {
        let mut w = watcher(0.9, 1);
        assert!(w.observe(&snap(u64::MAX / 2, 0)).is_empty());
        assert!(!w.in_pressure());
    }

    #[test]
    fn dropping_maxmemory_to_zero_clears() {
        let mut w = watcher(0.9, 100);
        w.observe(&snap(95 * MIB, 100 * MIB));
        let events = w.observe(&snap(95 * MIB, 0));
        assert_eq!(events.len(), 1);
        let e = &events[0];
        assert_eq!(e.level, Level::Info);
        assert_eq!(state(e), "cleared");
        assert_eq!(
            e.msg,
            "memory pressure cleared after 1 poll: maxmemory is now 0 (no limit), used_memory_rss 95.0MiB"
        );
        assert_eq!(e.get("usage_ratio"), Some(&Value::Float(0.0)));
        assert_eq!(e.get("maxmemory"), Some(&Value::Integer(0)));
    }

    #[test]
    fn missing_or_bad_fields_change_nothing() {
        let mut w = watcher(0.9, 1);
        w.observe(&snap(95, 100));
        let partial = SnapshotBuilder::new()
            .info("memory", "used_memory_rss", "10")
            .build();
        assert!(w.observe(&partial).is_empty());
        let bad = SnapshotBuilder::new()
            .info("memory", "used_memory_rss", "10")
            .info("memory", "maxmemory", "lots")
            .build();
        assert!(w.observe(&bad).is_empty());
        assert!(w.in_pressure());
        // The ignored polls did not count toward reminders.
        let next = w.observe(&snap(95, 100));
        assert_eq!(next[0].get("polls_in_pressure"), Some(&Value::Integer(2)));
    }

    #[test]
    fn ratio_above_one_compares_rss_beyond_the_limit() {
        let mut w = watcher(1.5, 0);
        assert!(w.observe(&snap(140, 100)).is_empty());
        let events = w.observe(&snap(151, 100));
        assert!(
            events[0].msg.ends_with("(threshold 150%)"),
            "{}",
            events[0].msg
        );
    }

    #[test]
    fn configure_defaults_and_rejections() {
        assert_eq!(Config::from_settings(&[]).unwrap(), Config::default());
        let ok = Config::from_settings(&[setting("ratio", 10.0), setting("remind_every", 0i64)])
            .unwrap();
        assert_eq!((ok.ratio, ok.remind_every), (10.0, 0));
        // An integer ratio is widened.
        assert_eq!(
            Config::from_settings(&[setting("ratio", 2i64)])
                .unwrap()
                .ratio,
            2.0
        );
        for (bad, got) in [
            (0.0, "0"),
            (-0.5, "-0.5"),
            (10.5, "10.5"),
            (f64::NAN, "NaN"),
        ] {
            assert_eq!(
                Config::from_settings(&[setting("ratio", bad)]).unwrap_err(),
                format!("key `ratio` must be > 0 and <= 10, got {got}")
            );
        }
        assert_eq!(
            Config::from_settings(&[setting("remind_every", -1i64)]).unwrap_err(),
            "key `remind_every` must be >= 0, got -1"
        );
    }

    #[test]
    fn exported_glue_keeps_state_between_calls() {
        assert_eq!(MemoryPressure::describe().name, "memory-pressure");
        assert_eq!(
            MemoryPressure::configure(vec![setting("ratio", 0.0)]).unwrap_err(),
            "key `ratio` must be > 0 and <= 10, got 0"
        );
        MemoryPressure::configure(vec![setting("ratio", 0.5), setting("remind_every", 0i64)])
            .unwrap();
        let snap = |rss: &str| {
            SnapshotBuilder::new()
                .info("memory", "used_memory_rss", rss)
                .info("memory", "maxmemory", "100")
                .build()
        };
        assert_eq!(<MemoryPressure as Guest>::observe(snap("90")).len(), 1);
        assert!(<MemoryPressure as Guest>::observe(snap("90")).is_empty());
        assert_eq!(<MemoryPressure as Guest>::observe(snap("10")).len(), 1);
    }
}

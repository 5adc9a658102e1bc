//! The `stream-lag` watcher: consumer groups of Redis Streams falling
//! behind.
//!
//! For each stream key listed in the `streams` setting the host runs
//! `XINFO GROUPS`; the watcher follows every consumer group (or only those
//! listed in `groups`). A group's lag is the `lag` Redis 7 reports: entries
//! in the stream not yet delivered to the group. When Redis cannot tell
//! (before Redis 7, or after XDEL / XSETID) the group's pending count (the
//! entries delivered but not acknowledged) stands in for it, and every event
//! says which was used in its `measure` field.
//!
//! Two conditions per (stream, group), each reported once when entered
//! (warn) and once when left (info, with how long it lasted):
//!
//! - **over max_lag**: lag above `max_lag`; left when it is back at or below.
//! - **growing**: lag higher than at the previous poll on `growing_polls`
//!   consecutive polls (0: never). Left on a poll where lag did not grow and
//!   is back at or below either the lag the growth started from or
//!   `max_lag`: a backlog that stops growing but stays above both is still
//!   reported as growing, so a consumer that keeps falling behind with the
//!   odd quiet poll does not warn over and over. The first poll of a group,
//!   and a poll where the measure switched between `lag` and `pending`, only
//!   set the baseline.
//!
//! A stream that cannot be read (no such key, a key of another type, XINFO
//! refused) is reported once with the reason, and once when it is readable
//! again; its groups are forgotten meanwhile. A group that disappears is
//! forgotten silently, unless one of its conditions was entered: then one
//! info event says it is gone.

use std::collections::BTreeMap;

use lookout_watcher::{
    Cadence, ConfigKey, Event, Level, Manifest, Needs, Probe, Setting, Settings, Snapshot,
    StreamGroup, Watch, invalid, stream_keys,
};

lookout_watcher::export!(StreamLag);

/// The watcher's name, the envelopes' `target`.
pub const NAME: &str = "stream-lag";
/// The setting listing the watched stream keys; the host reads it too.
pub const STREAMS_KEY: &str = "streams";
/// Default of `streams`: nothing watched.
pub const DEFAULT_STREAMS: &str = "";
/// Default of `groups`: every group.
pub const DEFAULT_GROUPS: &str = "";
/// Default of `max_lag`, entries.
pub const DEFAULT_MAX_LAG: i64 = 1000;
/// Default of `growing_polls`.
pub const DEFAULT_GROWING_POLLS: i64 = 5;
/// Most stream keys the host reads for one setting.
pub const MAX_STREAMS: usize = 64;

/// Validated settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Watched stream keys, in order; empty: nothing watched.
    pub streams: Vec<String>,
    /// Watched group names; empty: every group.
    pub groups: Vec<String>,
    /// A group's lag above this is reported.
    pub max_lag: u64,
    /// Consecutive polls of growing lag that are reported; 0: never.
    pub growing_polls: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            streams: Vec::new(),
            groups: Vec::new(),
            max_lag: DEFAULT_MAX_LAG as u64,
            growing_polls: DEFAULT_GROWING_POLLS as u64,
        }
    }
}

impl Config {
    /// Reads and checks the settings handed to `configure`; the error names
    /// the offending key.
    pub fn from_settings(settings: &[Setting]) -> Result<Self, String> {
        let s = Settings::new(settings);
        let streams = stream_keys(s.text(STREAMS_KEY, DEFAULT_STREAMS)?);
        if streams.len() > MAX_STREAMS {
            return Err(invalid(
                STREAMS_KEY,
                "at most 64 stream keys",
                format_args!("{} keys", streams.len()),
            ));
        }
        let groups = stream_keys(s.text("groups", DEFAULT_GROUPS)?);
        let max_lag = s.integer("max_lag", DEFAULT_MAX_LAG)?;
        let max_lag = u64::try_from(max_lag).map_err(|_| invalid("max_lag", ">= 0", max_lag))?;
        let growing_polls = s.integer("growing_polls", DEFAULT_GROWING_POLLS)?;
        let growing_polls = u64::try_from(growing_polls)
            .map_err(|_| invalid("growing_polls", ">= 0", growing_polls))?;
        Ok(Config {
            streams,
            groups,
            max_lag,
            growing_polls,
        })
    }

    /// Whether group `name` is watched.
    pub fn watches_group(&self, name: &str) -> bool {
        self.groups.is_empty() || self.groups.iter().any(|g| g == name)
    }
}

/// What a group's lag figure is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Measure {
    /// Redis 7's `lag`: entries not yet delivered to the group.
    Lag,
    /// The pending count, when Redis does not report `lag`.
    Pending,
}

impl Measure {
    /// `lag` or `pending`, the `measure` field.
    pub fn as_str(self) -> &'static str {
        match self {
            Measure::Lag => "lag",
            Measure::Pending => "pending",
        }
    }
}

/// A group's lag and which figure it is.
fn lag_of(group: &StreamGroup) -> (u64, Measure) {
    match group.lag {
        Some(lag) => (lag, Measure::Lag),
        None => (group.pending, Measure::Pending),
    }
}

/// An entered "growing" condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Growing {
    /// When the growth started (the poll before the first rise), Unix ms.
    since_ms: i64,
    /// Lag when the growth started.
    start_lag: u64,
    /// Highest lag seen since.
    peak: u64,
}

/// What the watcher remembers of one group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct GroupState {
    /// Lag at the previous poll.
    lag: u64,
    /// Which figure `lag` is.
    measure: Measure,
    /// When the previous poll was taken, Unix ms.
    seen_ms: i64,
    /// Consecutive polls on which lag grew.
    streak: u64,
    /// Lag before the first rise of the current streak.
    streak_start_lag: u64,
    /// When the poll before the first rise of the streak was taken.
    streak_start_ms: i64,
    /// Since when lag is above `max_lag`, if it is.
    over_since_ms: Option<i64>,
    /// The entered "growing" condition, if any.
    growing: Option<Growing>,
}

/// What the watcher remembers of one stream key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct StreamState {
    /// Since when (Unix ms) the stream cannot be read, and why, once
    /// reported.
    unavailable: Option<(i64, String)>,
    /// Watched groups seen at the last readable poll.
    groups: BTreeMap<String, GroupState>,
}

/// The watcher's logic and state.
#[derive(Debug, Clone)]
pub struct StreamLag {
    config: Config,
    streams: BTreeMap<String, StreamState>,
}

impl StreamLag {
    /// A watcher that has seen nothing yet.
    pub fn new(config: Config) -> Self {
        StreamLag {
            config,
            streams: BTreeMap::new(),
        }
    }

    /// The validated settings.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Whether `stream` was reported unreadable and has not come back.
    pub fn is_unavailable(&self, stream: &str) -> bool {
        self.streams
            .get(stream)
            .is_some_and(|s| s.unavailable.is_some())
    }

    /// Whether the lag of `group` on `stream` is reported above `max_lag`.
    pub fn is_over(&self, stream: &str, group: &str) -> bool {
        self.group(stream, group)
            .is_some_and(|g| g.over_since_ms.is_some())
    }

    /// Whether the lag of `group` on `stream` is reported growing.
    pub fn is_growing(&self, stream: &str, group: &str) -> bool {
        self.group(stream, group)
            .is_some_and(|g| g.growing.is_some())
    }

    fn group(&self, stream: &str, group: &str) -> Option<&GroupState> {
        self.streams.get(stream)?.groups.get(group)
    }

    /// The fields every group event starts with.
    fn group_event(
        &self,
        level: Level,
        msg: String,
        stream: &str,
        group: &StreamGroup,
        state: &str,
        condition: &str,
    ) -> Event {
        let (lag, measure) = lag_of(group);
        Event::new(level, msg)
            .field("stream", stream)
            .field("group", &group.name)
            .field("lag", lag)
            .field("measure", measure.as_str())
            .field("max_lag", self.config.max_lag)
            .field("pending", group.pending)
            .field("consumers", group.consumers)
            .field("state", state)
            .field("condition", condition)
    }

    /// One readable stream: its watched groups.
    fn observe_groups(
        &mut self,
        stream: &str,
        groups: &[StreamGroup],
        now: i64,
        events: &mut Vec<Event>,
    ) {
        let mut previous = self
            .streams
            .get_mut(stream)
            .map(|s| std::mem::take(&mut s.groups))
            .unwrap_or_default();
        let mut current = BTreeMap::new();
        for group in groups {
            if !self.config.watches_group(&group.name) || current.contains_key(&group.name) {
                continue;
            }
            let before = previous.remove(&group.name);
            let state = self.observe_group(stream, group, before, now, events);
            current.insert(group.name.clone(), state);
        }
        for (name, gone) in previous {
            let open: Vec<&str> = [
                gone.over_since_ms.map(|_| "lag above max_lag"),
                gone.growing.map(|_| "lag growing"),
            ]
            .into_iter()
            .flatten()
            .collect();
            if open.is_empty() {
                continue;
            }
            let msg = format!(
                "consumer group {name} on stream {stream} is gone (it was reported for {})",
                open.join(" and ")
            );
            events.push(
                Event::new(Level::Info, msg)
                    .field("stream", stream)
                    .field("group", &name)
                    .field("lag", gone.lag)
                    .field("measure", gone.measure.as_str())
                    .field("max_lag", self.config.max_lag)
                    .field("state", "left")
                    .field("condition", "gone"),
            );
        }
        self.streams.entry(stream.to_string()).or_default().groups = current;
    }

    /// One group at one poll: its new state, events pushed.
    fn observe_group(
        &self,
        stream: &str,
        group: &StreamGroup,
        before: Option<GroupState>,
        now: i64,
        events: &mut Vec<Event>,
    ) -> GroupState {
        let (lag, measure) = lag_of(group);
        let what = measure.as_str();
        let max_lag = self.config.max_lag;
        let name = &group.name;
        let mut state = before.unwrap_or(GroupState {
            lag,
            measure,
            seen_ms: now,
            streak: 0,
            streak_start_lag: lag,
            streak_start_ms: now,
            over_since_ms: None,
            growing: None,
        });
        let fallback = match measure {
            Measure::Lag => "",
            Measure::Pending => " (lag unknown, counting pending entries)",
        };

        // Over max_lag.
        match (state.over_since_ms, lag > max_lag) {
            (None, true) => {
                state.over_since_ms = Some(now);
                let msg = format!(
                    "consumer group {name} on stream {stream}: {what} {lag} above max_lag {max_lag}{fallback}"
                );
                events.push(self.group_event(
                    Level::Warn,
                    msg,
                    stream,
                    group,
                    "entered",
                    "over_max_lag",
                ));
            }
            (Some(since), false) => {
                state.over_since_ms = None;
                let lasted = elapsed_ms(since, now);
                let msg = format!(
                    "consumer group {name} on stream {stream}: {what} back to {lag}, at or below max_lag {max_lag}, after {}",
                    duration(lasted)
                );
                events.push(
                    self.group_event(Level::Info, msg, stream, group, "left", "over_max_lag")
                        .field("duration_ms", lasted),
                );
            }
            _ => {}
        }

        // Growing.
        let comparable = before.is_some() && state.measure == measure;
        let grew = comparable && lag > state.lag;
        if grew {
            if state.streak == 0 {
                state.streak_start_lag = state.lag;
                state.streak_start_ms = state.seen_ms;
            }
            state.streak = state.streak.saturating_add(1);
        } else {
            state.streak = 0;
        }
        match state.growing.as_mut() {
            None => {
                let polls = self.config.growing_polls;
                if polls > 0 && state.streak >= polls {
                    let start = state.streak_start_lag;
                    state.growing = Some(Growing {
                        since_ms: state.streak_start_ms,
                        start_lag: start,
                        peak: lag,
                    });
                    let msg = format!(
                        "consumer group {name} on stream {stream}: {what} growing for {} polls, {start} -> {lag}{fallback}",
                        state.streak
                    );
                    events.push(
                        self.group_event(Level::Warn, msg, stream, group, "entered", "growing")
                            .field("growing_polls", state.streak)
                            .field("start_lag", start),
                    );
                }
            }
            Some(growing) => {
                growing.peak = growing.peak.max(lag);
                if !grew && (lag <= growing.start_lag || lag <= max_lag) {
                    let g = *growing;
                    state.growing = None;
                    let lasted = elapsed_ms(g.since_ms, now);
                    let msg = format!(
                        "consumer group {name} on stream {stream}: {what} stopped growing, now {lag} (started at {}, peak {}), after {}",
                        g.start_lag,
                        g.peak,
                        duration(lasted)
                    );
                    events.push(
                        self.group_event(Level::Info, msg, stream, group, "left", "growing")
                            .field("start_lag", g.start_lag)
                            .field("peak_lag", g.peak)
                            .field("duration_ms", lasted),
                    );
                }
            }
        }

        state.lag = lag;
        state.measure = measure;
        state.seen_ms = now;
        state
    }
}

impl Watch for StreamLag {
    fn manifest() -> Manifest {
        Manifest::new(
            NAME,
            env!("CARGO_PKG_VERSION"),
            "reports Redis Streams consumer groups whose lag is above a limit or keeps growing",
        )
        .with_config(vec![
            ConfigKey::new(
                STREAMS_KEY,
                DEFAULT_STREAMS,
                "stream keys to watch, separated by commas or spaces, at most 64; empty watches nothing",
            ),
            ConfigKey::new(
                "groups",
                DEFAULT_GROUPS,
                "consumer groups to watch, separated by commas or spaces; empty watches every group",
            ),
            ConfigKey::new(
                "max_lag",
                DEFAULT_MAX_LAG,
                "warn when a group's lag (pending entries before Redis 7) goes above this; at least 0",
            ),
            ConfigKey::new(
                "growing_polls",
                DEFAULT_GROWING_POLLS,
                "warn when a group's lag grows on this many consecutive polls; 0 never, at least 0",
            ),
        ])
        .with_needs(Needs::info(&[]).with_probe(Probe::XinfoGroups(STREAMS_KEY.to_string())))
        .with_cadence(Cadence::EveryPoll)
    }

    fn from_settings(settings: &[Setting]) -> Result<Self, String> {
        Config::from_settings(settings).map(StreamLag::new)
    }

    fn observe(&mut self, snapshot: &Snapshot) -> Vec<Event> {
        let now = snapshot.taken_at_ms;
        let mut events = Vec::new();
        let mut seen: Vec<&str> = Vec::new();
        for (stream, reading) in snapshot.stream_groups() {
            if seen.contains(&stream) {
                continue;
            }
            seen.push(stream);
            match reading {
                Err(reason) => {
                    let state = self.streams.entry(stream.to_string()).or_default();
                    state.groups.clear();
                    if state.unavailable.is_none() {
                        state.unavailable = Some((now, reason.to_string()));
                        events.push(
                            Event::new(
                                Level::Warn,
                                format!("stream {stream} cannot be read: {reason}"),
                            )
                            .field("stream", stream)
                            .field("reason", reason)
                            .field("state", "entered")
                            .field("condition", "unavailable"),
                        );
                    }
                }
                Ok(groups) => {
                    if let Some((since, _)) = self
                        .streams
                        .get_mut(stream)
                        .and_then(|s| s.unavailable.take())
                    {
                        let lasted = elapsed_ms(since, now);
                        events.push(
                            Event::new(
                                Level::Info,
                                format!(
                                    "stream {stream} readable again after {}",
                                    duration(lasted)
                                ),
                            )
                            .field("stream", stream)
                            .field("state", "left")
                            .field("condition", "unavailable")
                            .field("duration_ms", lasted),
                        );
                    }
                    self.observe_groups(stream, groups, now, &mut events);
                }
            }
        }
        events
    }
}

/// Milliseconds from `since` to `now`, 0 if the clock went back.
fn elapsed_ms(since: i64, now: i64) -> i64 {
    now.saturating_sub(since).max(0)
}

/// A duration for messages: "0 s", "42 s", "3 min 5 s", "2 h 7 min".
pub fn duration(ms: i64) -> String {
    let s = ms.max(0) / 1000;
    if s < 60 {
        format!("{s} s")
    } else if s < 3600 {
        format!("{} min {} s", s / 60, s % 60)
    } else {
        format!("{} h {} min", s / 3600, s % 3600 / 60)
    }
}

#[cfg(test)]
mod tests {
    use lookout_watcher::testing::{SnapshotBuilder, fields, setting};
    use lookout_watcher::{Guest, Value};

    use super::*;

    /// A group with this lag (`None`: before Redis 7) and `pending`.
    fn group(name: &str, pending: u64, lag: Option<u64>) -> StreamGroup {
        StreamGroup::new(name, pending, lag)
    }

    /// One stream `jobs` holding these groups, at `at` seconds.
    fn snap(at: i64, groups: Vec<StreamGroup>) -> Snapshot {
        SnapshotBuilder::new()
            .taken_at_ms(at * 1000)
            .stream_groups("jobs", groups)
            .build()
    }

    /// Stream `jobs` with one group `workers` at lag `lag`.
    fn lag(at: i64, lag: u64) -> Snapshot {
        snap(at, vec![group("workers", 2, Some(lag))])
    }

    fn gone(at: i64, reason: &str) -> Snapshot {
        SnapshotBuilder::new()
            .taken_at_ms(at * 1000)
            .unavailable(Probe::XinfoGroups("streams".into()), "jobs", reason)
            .build()
    }

    fn watcher(max_lag: u64, growing_polls: u64) -> StreamLag {
        StreamLag::new(Config {
            streams: vec!["jobs".into()],
            groups: Vec::new(),
            max_lag,
            growing_polls,
        })
    }

    fn text<'a>(e: &'a Event, name: &str) -> &'a str {
        e.get(name).and_then(Value::as_str).unwrap()
    }

    fn int(e: &Event, name: &str) -> i64 {
        e.get(name).and_then(Value::as_i64).unwrap()
    }

    /// `(condition, state)` of each event.
    fn kinds(events: &[Event]) -> Vec<(&str, &str)> {
        events
            .iter()
            .map(|e| (text(e, "condition"), text(e, "state")))
            .collect()
    }

    #[test]
    fn manifest_declares_needs_and_config() {
        let m = StreamLag::manifest();
        assert_eq!(m.name, "stream-lag");
        assert_eq!(m.version, "0.1.0");
        assert_eq!(m.cadence, Cadence::EveryPoll);
        assert!(m.needs.info_fields.is_empty());
        assert!(m.needs.info_sections.is_empty());
        assert!(!m.needs.slowlog);
        assert_eq!(m.needs.probes, [Probe::XinfoGroups("streams".into())]);
        let keys: Vec<_> = m.config.iter().map(|k| k.name.as_str()).collect();
        assert_eq!(keys, ["streams", "groups", "max_lag", "growing_polls"]);
        assert_eq!(m.config[0].default, Value::Text(String::new()));
        assert_eq!(m.config[1].default, Value::Text(String::new()));
        assert_eq!(m.config[2].default, Value::Integer(1000));
        assert_eq!(m.config[3].default, Value::Integer(5));
    }

    #[test]
    fn configure_defaults_lists_and_rejections() {
        assert_eq!(Config::from_settings(&[]).unwrap(), Config::default());
        let c = Config::from_settings(&[
            setting("streams", " jobs, mail  logs:stream"),
            setting("groups", "workers,archivers"),
            setting("max_lag", 0i64),
            setting("growing_polls", 0i64),
        ])
        .unwrap();
        assert_eq!(c.streams, ["jobs", "mail", "logs:stream"]);
        assert_eq!(c.groups, ["workers", "archivers"]);
        assert_eq!((c.max_lag, c.growing_polls), (0, 0));
        assert!(c.watches_group("workers"));
        assert!(!c.watches_group("other"));
        assert!(Config::default().watches_group("anything"));

        assert_eq!(
            Config::from_settings(&[setting("max_lag", -1i64)]).unwrap_err(),
            "key `max_lag` must be >= 0, got -1"
        );
        assert_eq!(
            Config::from_settings(&[setting("growing_polls", -5i64)]).unwrap_err(),
            "key `growing_polls` must be >= 0, got -5"
        );
        assert_eq!(
            Config::from_settings(&[setting("streams", 3i64)]).unwrap_err(),
            "key `streams` must be a text, got an integer 3"
        );
        assert_eq!(
            Config::from_settings(&[setting("groups", true)]).unwrap_err(),
            "key `groups` must be a text, got a boolean true"
        );
        assert_eq!(
            Config::from_settings(&[setting("max_lag", "lots")]).unwrap_err(),
            "key `max_lag` must be an integer, got a text \"lots\""
        );
        let many: Vec<String> = (0..65).map(|i| format!("s{i}")).collect();
        assert_eq!(
            Config::from_settings(&[setting("streams", many.join(","))]).unwrap_err(),
            "key `streams` must be at most 64 stream keys, got 65 keys"
        );
        assert_eq!(
            Config::from_settings(&[setting("streams", many[..64].join(" "))])
                .unwrap()
                .streams
                .len(),
            64
        );
    }

    #[test]
    fn nothing_watched_means_no_events() {
        let mut w = StreamLag::new(Config::default());
        assert!(w.observe(&SnapshotBuilder::new().build()).is_empty());
    }

    #[test]
    fn over_max_lag_enters_once_and_leaves_with_duration() {
        let mut w = watcher(1000, 0);
        assert!(w.observe(&lag(0, 1000)).is_empty());
        let events = w.observe(&lag(10, 1500));
        assert_eq!(events.len(), 1);
        let e = &events[0];
        assert_eq!(e.level, Level::Warn);
        assert_eq!(
            e.msg,
            "consumer group workers on stream jobs: lag 1500 above max_lag 1000"
        );
        assert_eq!(
            fields(e),
            [
                ("stream", &Value::Text("jobs".into())),
                ("group", &Value::Text("workers".into())),
                ("lag", &Value::Integer(1500)),
                ("measure", &Value::Text("lag".into())),
                ("max_lag", &Value::Integer(1000)),
                ("pending", &Value::Integer(2)),
                ("consumers", &Value::Integer(1)),
                ("state", &Value::Text("entered".into())),
                ("condition", &Value::Text("over_max_lag".into())),
            ]
        );
        assert!(w.is_over("jobs", "workers"));
        // Still above: quiet.
        assert!(w.observe(&lag(20, 5000)).is_empty());
        assert!(w.observe(&lag(30, 1001)).is_empty());
        // Back at max_lag: left.
        let events = w.observe(&lag(145, 1000));
        assert_eq!(events.len(), 1);
        let e = &events[0];
        assert_eq!(e.level, Level::Info);
        assert_eq!(
            e.msg,
            "consumer group workers on stream jobs: lag back to 1000, at or below max_lag 1000, after 2 min 15 s"
        );
        assert_eq!(kinds(&events), [("over_max_lag", "left")]);
        assert_eq!(int(e, "duration_ms"), 135_000);
        assert_eq!(int(e, "lag"), 1000);
        assert!(!w.is_over("jobs", "workers"));
        assert!(w.observe(&lag(150, 10)).is_empty());
        // And again.
        assert_eq!(
            kinds(&w.observe(&lag(160, 2000))),
            [("over_max_lag", "entered")]
        );
    }

    #[test]
    fn over_max_lag_on_the_first_poll_is_reported() {
        let mut w = watcher(10, 0);
        assert_eq!(
            kinds(&w.observe(&lag(0, 11))),
            [("over_max_lag", "entered")]
        );
    }

    #[test]
    fn max_lag_zero_reports_any_lag() {
        let mut w = watcher(0, 0);
        assert!(w.observe(&lag(0, 0)).is_empty());
        assert_eq!(kinds(&w.observe(&lag(1, 1))), [("over_max_lag", "entered")]);
        assert_eq!(kinds(&w.observe(&lag(2, 0))), [("over_max_lag", "left")]);
    }

    #[test]
    fn pending_stands_in_when_lag_is_unknown() {
        let mut w = watcher(100, 0);
        let events = w.observe(&snap(0, vec![group("workers", 150, None)]));
        assert_eq!(events.len(), 1);
        let e = &events[0];
        assert_eq!(
            e.msg,
            "consumer group workers on stream jobs: pending 150 above max_lag 100 (lag unknown, counting pending entries)"
        );
        assert_eq!(text(e, "measure"), "pending");
        assert_eq!(int(e, "lag"), 150);
        assert_eq!(int(e, "pending"), 150);
        // Redis 7 tells the lag again: 20 is below, so the condition is left.
        let events = w.observe(&snap(5, vec![group("workers", 150, Some(20))]));
        assert_eq!(kinds(&events), [("over_max_lag", "left")]);
        assert_eq!(text(&events[0], "measure"), "lag");
        assert!(events[0].msg.starts_with(
            "consumer group workers on stream jobs: lag back to 20, at or below max_lag 100"
        ));
    }

    #[test]
    fn a_known_lag_wins_over_pending() {
        let mut w = watcher(100, 0);
        // Many pending but nothing undelivered: not behind.
        assert!(
            w.observe(&snap(0, vec![group("workers", 5000, Some(0))]))
                .is_empty()
        );
    }

    #[test]
    fn growing_lag_warns_after_growing_polls() {
        let mut w = watcher(1_000_000, 3);
        assert!(w.observe(&lag(0, 10)).is_empty()); // baseline
        assert!(w.observe(&lag(10, 20)).is_empty()); // 1
        assert!(w.observe(&lag(20, 30)).is_empty()); // 2
        let events = w.observe(&lag(30, 45)); // 3
        assert_eq!(events.len(), 1);
        let e = &events[0];
        assert_eq!(e.level, Level::Warn);
        assert_eq!(
            e.msg,
            "consumer group workers on stream jobs: lag growing for 3 polls, 10 -> 45"
        );
        assert_eq!(kinds(&events), [("growing", "entered")]);
        assert_eq!(int(e, "growing_polls"), 3);
        assert_eq!(int(e, "start_lag"), 10);
        assert!(w.is_growing("jobs", "workers"));
        // Keeps growing: quiet.
        assert!(w.observe(&lag(40, 60)).is_empty());
        assert!(w.observe(&lag(50, 70)).is_empty());
        // Stops growing; under max_lag, so it is left.
        let events = w.observe(&lag(60, 70));
        assert_eq!(events.len(), 1);
        let e = &events[0];
        assert_eq!(e.level, Level::Info);
        assert_eq!(
            e.msg,
            "consumer group workers on stream jobs: lag stopped growing, now 70 (started at 10, peak 70), after 1 min 0 s"
        );
        assert_eq!(kinds(&events), [("growing", "left")]);
        assert_eq!(int(e, "start_lag"), 10);
        assert_eq!(int(e, "peak_lag"), 70);
        assert_eq!(int(e, "duration_ms"), 60_000);
        assert!(!w.is_growing("jobs", "workers"));
    }

    #[test]
    fn a_flat_poll_restarts_the_count() {
        let mut w = watcher(1_000_000, 3);
        w.observe(&lag(0, 10));
        w.observe(&lag(1, 20));
        w.observe(&lag(2, 30));
        assert!(w.observe(&lag(3, 30)).is_empty());
        assert!(w.observe(&lag(4, 25)).is_empty());
        assert!(w.observe(&lag(5, 26)).is_empty());
        assert!(w.observe(&lag(6, 27)).is_empty());
        let events = w.observe(&lag(7, 28));
        assert_eq!(kinds(&events), [("growing", "entered")]);
        assert!(events[0].msg.ends_with("growing for 3 polls, 25 -> 28"));
    }

    #[test]
    fn growth_above_max_lag_stays_entered_until_drained() {
        let mut w = watcher(100, 2);
        w.observe(&lag(0, 50));
        assert!(w.observe(&lag(1, 80)).is_empty());
        assert_eq!(
            kinds(&w.observe(&lag(2, 200))),
            [("over_max_lag", "entered"), ("growing", "entered")]
        );
        // Flat, then dipping, but above both max_lag and the start: still growing.
        assert!(w.observe(&lag(3, 200)).is_empty());
        assert!(w.observe(&lag(4, 150)).is_empty());
        assert!(w.is_growing("jobs", "workers"));
        // Growing again does not warn again.
        assert!(w.observe(&lag(5, 300)).is_empty());
        assert!(w.observe(&lag(6, 400)).is_empty());
        assert!(w.observe(&lag(7, 500)).is_empty());
        // Back to max_lag: both conditions left.
        let events = w.observe(&lag(10, 100));
        assert_eq!(
            kinds(&events),
            [("over_max_lag", "left"), ("growing", "left")]
        );
        assert_eq!(
            events[1].msg,
            "consumer group workers on stream jobs: lag stopped growing, now 100 (started at 50, peak 500), after 10 s"
        );
    }

    #[test]
    fn growth_is_left_when_back_to_its_start_even_above_max_lag() {
        let mut w = watcher(10, 2);
        assert_eq!(
            kinds(&w.observe(&lag(0, 500))),
            [("over_max_lag", "entered")]
        );
        w.observe(&lag(1, 600));
        assert_eq!(kinds(&w.observe(&lag(2, 700))), [("growing", "entered")]);
        assert!(w.observe(&lag(3, 501)).is_empty());
        assert_eq!(kinds(&w.observe(&lag(4, 500))), [("growing", "left")]);
        assert!(w.is_over("jobs", "workers"));
    }

    #[test]
    fn growing_polls_zero_never_warns_growth() {
        let mut w = watcher(u64::MAX, 0);
        for i in 0..50 {
            assert!(w.observe(&lag(i, i as u64 * 10)).is_empty());
        }
    }

    #[test]
    fn growing_polls_one_warns_on_the_first_rise() {
        let mut w = watcher(1000, 1);
        assert!(w.observe(&lag(0, 5)).is_empty());
        assert_eq!(kinds(&w.observe(&lag(1, 6))), [("growing", "entered")]);
        assert_eq!(kinds(&w.observe(&lag(2, 6))), [("growing", "left")]);
    }

    #[test]
    fn switching_measure_resets_the_growth_count() {
        let mut w = watcher(1_000_000, 2);
        w.observe(&snap(0, vec![group("workers", 5, None)]));
        w.observe(&snap(1, vec![group("workers", 6, None)]));
        // Now the lag is known: a new baseline, not a rise.
        assert!(
            w.observe(&snap(2, vec![group("workers", 6, Some(100))]))
                .is_empty()
        );
        assert!(
            w.observe(&snap(3, vec![group("workers", 6, Some(101))]))
                .is_empty()
        );
        let events = w.observe(&snap(4, vec![group("workers", 6, Some(102))]));
        assert_eq!(kinds(&events), [("growing", "entered")]);
        assert!(
            events[0]
                .msg
                .ends_with("lag growing for 2 polls, 100 -> 102")
        );
    }

    #[test]
    fn pending_growth_is_named_pending() {
        let mut w = watcher(1_000_000, 2);
        w.observe(&snap(0, vec![group("workers", 5, None)]));
        w.observe(&snap(1, vec![group("workers", 6, None)]));
        let events = w.observe(&snap(2, vec![group("workers", 9, None)]));
        assert_eq!(
            events[0].msg,
            "consumer group workers on stream jobs: pending growing for 2 polls, 5 -> 9 (lag unknown, counting pending entries)"
        );
        assert_eq!(text(&events[0], "measure"), "pending");
    }

    #[test]
    fn groups_are_followed_apart_and_filtered() {
        let mut w = StreamLag::new(Config {
            streams: vec!["jobs".into(), "mail".into()],
            groups: vec!["workers".into(), "senders".into()],
            max_lag: 10,
            growing_polls: 0,
        });
        let s = SnapshotBuilder::new()
            .stream_groups(
                "jobs",
                vec![
                    group("workers", 0, Some(50)),
                    group("ignored", 0, Some(5000)),
                ],
            )
            .stream_groups(
                "mail",
                vec![group("senders", 0, Some(3)), group("workers", 0, Some(11))],
            )
            .build();
        let events = w.observe(&s);
        let who: Vec<_> = events
            .iter()
            .map(|e| (text(e, "stream"), text(e, "group")))
            .collect();
        assert_eq!(who, [("jobs", "workers"), ("mail", "workers")]);
        assert!(w.is_over("jobs", "workers"));
        assert!(!w.is_over("jobs", "ignored"));
        assert!(!w.is_over("mail", "senders"));
        assert!(w.observe(&s).is_empty());
    }

    #[test]
    fn a_group_listed_twice_in_a_reading_counts_once() {
        let mut w = watcher(10, 0);
        let events = w.observe(&snap(
            0,
            vec![group("workers", 0, Some(50)), group("workers", 0, Some(1))],
        ));
        assert_eq!(kinds(&events), [("over_max_lag", "entered")]);
    }

    #[test]
    fn unavailable_stream_reported_once_and_when_back() {
        let mut w = watcher(10, 0);
        let events = w.observe(&gone(0, "ERR no such key"));
        assert_eq!(events.len(), 1);
        let e = &events[0];
        assert_eq!(e.level, Level::Warn);
        assert_eq!(e.msg, "stream jobs cannot be read: ERR no such key");
        assert_eq!(
            fields(e),
            [
                ("stream", &Value::Text("jobs".into())),
                ("reason", &Value::Text("ERR no such key".into())),
                ("state", &Value::Text("entered".into())),
                ("condition", &Value::Text("unavailable".into())),
            ]
        );
        assert!(w.is_unavailable("jobs"));
        // Still unreadable, even for another reason: quiet.
        assert!(w.observe(&gone(5, "ERR no such key")).is_empty());
        assert!(
            w.observe(&gone(
                6,
                "WRONGTYPE Operation against a key holding the wrong kind of value"
            ))
            .is_empty()
        );
        let events = w.observe(&lag(42, 1));
        assert_eq!(events.len(), 1);
        let e = &events[0];
        assert_eq!(e.level, Level::Info);
        assert_eq!(e.msg, "stream jobs readable again after 42 s");
        assert_eq!(kinds(&events), [("unavailable", "left")]);
        assert_eq!(int(e, "duration_ms"), 42_000);
        assert!(!w.is_unavailable("jobs"));
        // Gone again: reported again.
        assert_eq!(
            kinds(&w.observe(&gone(50, "NOPERM"))),
            [("unavailable", "entered")]
        );
    }

    #[test]
    fn readable_again_and_over_in_the_same_poll() {
        let mut w = watcher(10, 0);
        w.observe(&gone(0, "ERR no such key"));
        assert_eq!(
            kinds(&w.observe(&lag(1, 50))),
            [("unavailable", "left"), ("over_max_lag", "entered")]
        );
    }

    #[test]
    fn unavailable_stream_forgets_its_groups() {
        let mut w = watcher(10, 2);
        w.observe(&lag(0, 50));
        assert!(w.is_over("jobs", "workers"));
        w.observe(&gone(1, "ERR no such key"));
        assert!(!w.is_over("jobs", "workers"));
        // Recreated with the same lag: a fresh group, entered again, and its
        // first poll is a new growth baseline.
        assert_eq!(
            kinds(&w.observe(&lag(2, 60))),
            [("unavailable", "left"), ("over_max_lag", "entered")]
        );
    }

    #[test]
    fn a_quiet_group_that_disappears_is_forgotten_silently() {
        let mut w = watcher(10, 0);
        w.observe(&lag(0, 1));
        assert!(w.observe(&snap(1, Vec::new())).is_empty());
        assert!(w.group("jobs", "workers").is_none());
    }

    #[test]
    fn a_reported_group_that_disappears_says_so_once() {
        let mut w = watcher(10, 1);
        w.observe(&lag(0, 1));
        assert_eq!(
            kinds(&w.observe(&lag(1, 50))),
            [("over_max_lag", "entered"), ("growing", "entered")]
        );
        let events = w.observe(&snap(2, vec![group("others", 0, Some(0))]));
        assert_eq!(events.len(), 1);
        let e = &events[0];
        assert_eq!(e.level, Level::Info);
        assert_eq!(
            e.msg,
            "consumer group workers on stream jobs is gone (it was reported for lag above max_lag and lag growing)"
        );
        assert_eq!(kinds(&events), [("gone", "left")]);
        assert_eq!(text(e, "group"), "workers");
        assert!(
            w.observe(&snap(3, vec![group("others", 0, Some(0))]))
                .is_empty()
        );
        // Back with the same lag: entered afresh.
        assert_eq!(
            kinds(&w.observe(&lag(4, 50))),
            [("over_max_lag", "entered")]
        );
    }

    #[test]
    fn a_stream_listed_twice_counts_once() {
        let mut w = watcher(10, 0);
        let s = SnapshotBuilder::new()
            .stream_groups("jobs", vec![group("workers", 0, Some(50))])
            .stream_groups("jobs", vec![group("workers", 0, Some(0))])
            .build();
        assert_eq!(kinds(&w.observe(&s)), [("over_max_lag", "entered")]);
        assert!(w.is_over("jobs", "workers"));
    }

    #[test]
    fn clock_going_back_gives_zero_durations() {
        let mut w = watcher(10, 0);
        w.observe(&lag(100, 50));
        let events = w.observe(&lag(50, 0));
        assert_eq!(int(&events[0], "duration_ms"), 0);
        assert!(events[0].msg.ends_with("after 0 s"));
    }

    #[test]
    fn huge_values_do_not_overflow() {
        let mut w = watcher(u64::MAX - 1, 1);
        w.observe(&lag(i64::MIN / 1000, u64::MAX - 1));
        let events = w.observe(&lag(i64::MAX / 1000, u64::MAX));
        assert_eq!(
            kinds(&events),
            [("over_max_lag", "entered"), ("growing", "entered")]
        );
        assert_eq!(int(&events[0], "lag"), i64::MAX);
    }

    #[test]
    fn durations_read_plainly() {
        assert_eq!(duration(0), "0 s");
        assert_eq!(duration(-5), "0 s");
        assert_eq!(duration(42_999), "42 s");
        assert_eq!(duration(60_000), "1 min 0 s");
        assert_eq!(duration(185_000), "3 min 5 s");
        assert_eq!(duration(7_620_000), "2 h 7 min");
    }

    #[test]
    fn exported_glue_keeps_state_between_calls() {
        assert_eq!(StreamLag::describe().name, "stream-lag");
        assert_eq!(
            StreamLag::configure(vec![setting("max_lag", -3i64)]).unwrap_err(),
            "key `max_lag` must be >= 0, got -3"
        );
        StreamLag::configure(vec![
            setting("streams", "jobs"),
            setting("max_lag", 10i64),
            setting("growing_polls", 0i64),
        ])
        .unwrap();
        assert_eq!(<StreamLag as Guest>::observe(lag(0, 50)).len(), 1);
        assert!(<StreamLag as Guest>::observe(lag(1, 50)).is_empty());
        assert_eq!(<StreamLag as Guest>::observe(lag(2, 5)).len(), 1);
    }
}

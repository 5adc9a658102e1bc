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
//! info event says it is gone. The same goes for the groups of a stream
//! that cannot be read any more.
//!
//! Each condition entered fires a condition on its event and leaving it
//! resolves it: `over-max-lag` and `lag-growing`, keyed by `stream/group`,
//! and `stream-unavailable`, keyed by the stream. A group gone resolves
//! what it held (two events with the same message when it held both).

use std::collections::BTreeMap;

use lookout_watcher::format::duration;
use lookout_watcher::{
    Cadence, Conditions, ConfigKey, Event, Level, Manifest, Needs, Probe, Setting, Settings,
    Snapshot, StreamGroup, Watch, invalid, stream_keys,
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
    /// `over-max-lag`, keyed by (stream, group).
    over: Conditions<(String, String)>,
    /// `lag-growing`, keyed by (stream, group).
    growing: Conditions<(String, String)>,
    /// `stream-unavailable`, keyed by stream.
    unavailable: Conditions<String>,
}

/// A (stream, group) key as a condition's key: `stream/group`.
fn group_key(key: &(String, String)) -> String {
    format!("{}/{}", key.0, key.1)
}

impl StreamLag {
    /// A watcher that has seen nothing yet.
    pub fn new(config: Config) -> Self {
        StreamLag {
            config,
            streams: BTreeMap::new(),
            over: Conditions::with_key_text("over-max-lag", group_key),
            growing: Conditions::with_key_text("lag-growing", group_key),
            unavailable: Conditions::new("stream-unavailable"),
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
        self.forget_groups(stream, previous, "is gone", events);
        self.streams.entry(stream.to_string()).or_default().groups = current;
    }

    /// Groups no longer watched: one info event for each that had a
    /// condition entered, resolving it (`why`: "is gone").
    fn forget_groups(
        &mut self,
        stream: &str,
        groups: BTreeMap<String, GroupState>,
        why: &str,
        events: &mut Vec<Event>,
    ) {
        for (name, gone) in groups {
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
                "consumer group {name} on stream {stream} {why} (it was reported for {})",
                open.join(" and ")
            );
            let e = Event::new(Level::Info, msg)
                .field("stream", stream)
                .field("group", &name)
                .field("lag", gone.lag)
                .field("measure", gone.measure.as_str())
                .field("max_lag", self.config.max_lag)
                .field("state", "left")
                .field("condition", "gone");
            let key = (stream.to_string(), name);
            let over = self.over.resolve(&key, || e.clone());
            let growing = self.growing.resolve(&key, || e.clone());
            if over.is_none() && growing.is_none() {
                events.push(e);
            }
            events.extend(over.into_iter().chain(growing));
        }
    }

    /// One group at one poll: its new state, events pushed.
    fn observe_group(
        &mut self,
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
        let key = (stream.to_string(), name.clone());
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
                let e =
                    self.group_event(Level::Warn, msg, stream, group, "entered", "over_max_lag");
                events.extend(self.over.observe(key.clone(), true, |_| e));
            }
            (Some(since), false) => {
                state.over_since_ms = None;
                let lasted = elapsed_ms(since, now);
                let msg = format!(
                    "consumer group {name} on stream {stream}: {what} back to {lag}, at or below max_lag {max_lag}, after {}",
                    duration(lasted)
                );
                let e = self
                    .group_event(Level::Info, msg, stream, group, "left", "over_max_lag")
                    .field("duration_ms", lasted);
                events.extend(self.over.observe(key.clone(), false, |_| e));
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
                    let e = self
                        .group_event(Level::Warn, msg, stream, group, "entered", "growing")
                        .field("growing_polls", state.streak)
                        .field("start_lag", start);
                    events.extend(self.growing.observe(key, true, |_| e));
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
                    let e = self
                        .group_event(Level::Info, msg, stream, group, "left", "growing")
                        .field("start_lag", g.start_lag)
                        .field("peak_lag", g.peak)
                        .field("duration_ms", lasted);
                    events.extend(self.growing.observe(key, false, |_| e));
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
                    let groups = std::mem::take(&mut state.groups);
                    if state.unavailable.is_none() {
                        state.unavailable = Some((now, reason.to_string()));
                        let e = Event::new(
                            Level::Warn,
                            format!("stream {stream} cannot be read: {reason}"),
                        )
                        .field("stream", stream)
                        .field("reason", reason)
                        .field("state", "entered")
                        .field("condition", "unavailable");
                        events.extend(self.unavailable.observe(stream.to_string(), true, |_| e));
                    }
                    self.forget_groups(
                        stream,
                        groups,
                        "is no longer watched, its stream cannot be read",
                        &mut events,
                    );
                }
                Ok(groups) => {
                    if let Some((since, _)) = self
                        .streams
                        .get_mut(stream)
                        .and_then(|s| s.unavailable.take())
                    {
                        let lasted = elapsed_ms(since, now);
                        let e = Event::new(
                            Level::Info,
                            format!("stream {stream} readable again after {}", duration(lasted)),
                        )
                        .field("stream", stream)
                        .field("state", "left")
                        .field("condition", "unavailable")
                        .field("duration_ms", lasted);
                        events.extend(self.unavailable.observe(stream.to_string(), false, |_| e));
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

#[cfg(test)]
mod tests;

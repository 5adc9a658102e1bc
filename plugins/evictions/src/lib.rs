//! The `evictions` watcher: keys evicted under `maxmemory` and connections
//! rejected at `maxclients`, reported when they start and when they stop.
//!
//! Each counter (`evicted_keys`, `rejected_connections`) is followed with a
//! [`Counter`], so a restart (new `run_id`) or `CONFIG RESETSTAT` (the
//! counter going back) only moves the baseline, never reports. A counter
//! that grows by more than its minimum (`min_evicted`, `min_rejected`)
//! between two polls enters the "increasing" state: one warn. While it
//! keeps growing there is no new event, except a reminder every
//! `remind_every` polls (0: none) with the total since it started. Once it
//! stayed flat for `quiet_polls` polls in a row it leaves the state: one
//! info with the total and how long it lasted. The first poll only sets the
//! baseline; missing or unparseable fields leave everything as it was.
//!
//! The warn on entering fires a condition and the info on leaving resolves
//! it: `evicting` (key `evicted_keys`) and `rejecting-connections` (key
//! `rejected_connections`); reminders carry none.

use lookout_watcher::format::bytes;
use lookout_watcher::{
    Cadence, Change, Conditions, ConfigKey, Counter, Event, Level, Manifest, Needs, Setting,
    Settings, Snapshot, Watch, invalid,
};

lookout_watcher::export!(Evictions);

/// The watcher's name, the envelopes' `target`.
pub const NAME: &str = "evictions";
/// Default of `min_evicted`.
pub const DEFAULT_MIN_EVICTED: i64 = 0;
/// Default of `min_rejected`.
pub const DEFAULT_MIN_REJECTED: i64 = 0;
/// Default of `remind_every`, polls (0: never).
pub const DEFAULT_REMIND_EVERY: i64 = 0;
/// Default of `quiet_polls`.
pub const DEFAULT_QUIET_POLLS: i64 = 3;
/// The eviction counter.
pub const EVICTED: &str = "evicted_keys";
/// The rejected-connection counter.
pub const REJECTED: &str = "rejected_connections";
/// The INFO fields read.
pub const FIELDS: [&str; 6] = [
    EVICTED,
    REJECTED,
    "run_id",
    "maxmemory",
    "used_memory",
    "maxmemory_policy",
];

/// Validated settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    /// `evicted_keys` must grow by more than this between two polls to
    /// start an eviction episode.
    pub min_evicted: u64,
    /// `rejected_connections` must grow by more than this between two polls
    /// to start a rejection episode.
    pub min_rejected: u64,
    /// Polls between reminders while a counter keeps growing; 0 for none.
    pub remind_every: u64,
    /// Flat polls in a row that end an episode; at least 1.
    pub quiet_polls: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            min_evicted: DEFAULT_MIN_EVICTED as u64,
            min_rejected: DEFAULT_MIN_REJECTED as u64,
            remind_every: DEFAULT_REMIND_EVERY as u64,
            quiet_polls: DEFAULT_QUIET_POLLS as u64,
        }
    }
}

impl Config {
    /// Reads and checks the settings handed to `configure`; the error names
    /// the offending key.
    pub fn from_settings(settings: &[Setting]) -> Result<Self, String> {
        let s = Settings::new(settings);
        let at_least = |key: &str, default: i64, min: u64| -> Result<u64, String> {
            let n = s.integer(key, default)?;
            u64::try_from(n)
                .ok()
                .filter(|n| *n >= min)
                .ok_or_else(|| invalid(key, &format!(">= {min}"), n))
        };
        Ok(Config {
            min_evicted: at_least("min_evicted", DEFAULT_MIN_EVICTED, 0)?,
            min_rejected: at_least("min_rejected", DEFAULT_MIN_REJECTED, 0)?,
            remind_every: at_least("remind_every", DEFAULT_REMIND_EVERY, 0)?,
            quiet_polls: at_least("quiet_polls", DEFAULT_QUIET_POLLS, 1)?,
        })
    }
}

/// An episode of a counter increasing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Episode {
    /// Start of the poll interval in which it began, Unix ms.
    started_at_ms: i64,
    /// End of the last interval in which the counter grew, Unix ms.
    last_growth_ms: i64,
    /// Increase since it began.
    total: u64,
    /// Polls with a delta since it began, the first included.
    polls: u64,
    /// Flat polls in a row since the last growth.
    flat: u64,
}

/// One counter followed across polls.
#[derive(Debug, Clone)]
struct Tracker {
    counter: Counter,
    episode: Option<Episode>,
    /// Fired on entering, resolved on leaving; keyed by the counter.
    condition: Conditions<&'static str>,
}

impl Tracker {
    fn new(kind: Kind) -> Self {
        Tracker {
            counter: Counter::default(),
            episode: None,
            condition: Conditions::new(kind.condition()),
        }
    }
}

/// What the INFO context fields said at this poll.
struct Context<'a> {
    maxmemory: Option<u64>,
    used_memory: Option<u64>,
    policy: Option<&'a str>,
}

/// The watcher's logic and state.
#[derive(Debug, Clone)]
pub struct Evictions {
    config: Config,
    evicted: Tracker,
    rejected: Tracker,
}

impl Evictions {
    /// A watcher with no baselines yet.
    pub fn new(config: Config) -> Self {
        Evictions {
            config,
            evicted: Tracker::new(Kind::Evicted),
            rejected: Tracker::new(Kind::Rejected),
        }
    }

    /// Whether keys are being evicted (an episode is open).
    pub fn evicting(&self) -> bool {
        self.evicted.episode.is_some()
    }

    /// Whether connections are being rejected (an episode is open).
    pub fn rejecting(&self) -> bool {
        self.rejected.episode.is_some()
    }
}

/// Which counter, with its words for messages.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Evicted,
    Rejected,
}

impl Kind {
    fn field(self) -> &'static str {
        match self {
            Kind::Evicted => EVICTED,
            Kind::Rejected => REJECTED,
        }
    }

    /// The condition's kind.
    fn condition(self) -> &'static str {
        match self {
            Kind::Evicted => "evicting",
            Kind::Rejected => "rejecting-connections",
        }
    }

    /// "12 keys", "1 connection".
    fn count(self, n: u64) -> String {
        let (one, many) = match self {
            Kind::Evicted => ("key", "keys"),
            Kind::Rejected => ("connection", "connections"),
        };
        format!("{n} {}", if n == 1 { one } else { many })
    }

    fn started(self) -> &'static str {
        match self {
            Kind::Evicted => "evicting",
            Kind::Rejected => "rejecting connections",
        }
    }

    fn stopped(self) -> &'static str {
        match self {
            Kind::Evicted => "evictions stopped",
            Kind::Rejected => "connection rejections stopped",
        }
    }

    fn ongoing(self) -> &'static str {
        match self {
            Kind::Evicted => "still evicting",
            Kind::Rejected => "still rejecting connections",
        }
    }

    fn done(self) -> &'static str {
        match self {
            Kind::Evicted => "evicted",
            Kind::Rejected => "rejected",
        }
    }
}

/// A duration in ms as seconds: `10 s`, `2.5 s`.
fn secs(ms: u64) -> String {
    if ms.is_multiple_of(1000) {
        format!("{} s", ms / 1000)
    } else {
        format!("{:.1} s", ms as f64 / 1000.0)
    }
}

/// "(12.0/s)", or nothing when no time passed.
fn rate(per_second: Option<f64>) -> String {
    per_second
        .map(|r| format!(" ({r:.1}/s)"))
        .unwrap_or_default()
}

/// The context a message ends with: ", maxmemory-policy allkeys-lru" and
/// memory use for evictions, nothing for rejections.
fn suffix(kind: Kind, ctx: &Context<'_>) -> String {
    let Kind::Evicted = kind else {
        return String::new();
    };
    let mut s = String::new();
    if let Some(policy) = ctx.policy {
        s.push_str(&format!(", maxmemory-policy {policy}"));
    }
    if let (Some(used), Some(max)) = (ctx.used_memory, ctx.maxmemory)
        && max > 0
    {
        s.push_str(&format!(
            ", used_memory {} of maxmemory {}",
            bytes(used),
            bytes(max)
        ));
    }
    s
}

#[allow(clippy::too_many_arguments)]
fn event(
    level: Level,
    msg: String,
    kind: Kind,
    delta: u64,
    per_second: Option<f64>,
    total: u64,
    ctx: &Context<'_>,
    state: &str,
) -> Event {
    let mut e = Event::new(level, msg)
        .field("counter", kind.field())
        .field("delta", delta);
    if let Some(r) = per_second {
        e = e.field("per_second", r);
    }
    e = e.field("total", total);
    if let Some(max) = ctx.maxmemory {
        e = e.field("maxmemory", max);
    }
    if let Some(used) = ctx.used_memory {
        e = e.field("used_memory", used);
    }
    if let Some(policy) = ctx.policy {
        e = e.field("policy", policy);
    }
    e.field("state", state)
}

impl Tracker {
    /// Takes this poll's sample; at most one event.
    fn observe(
        &mut self,
        kind: Kind,
        min: u64,
        config: &Config,
        snapshot: &Snapshot,
        ctx: &Context<'_>,
    ) -> Option<Event> {
        let change = self.counter.observe(snapshot, kind.field()).ok()?;
        let Change::Delta { delta, elapsed_ms } = change else {
            // First sample, restart or reset: a new baseline only.
            return None;
        };
        let per_second = change.per_second();
        let now = snapshot.taken_at_ms;
        match &mut self.episode {
            None if delta > min => {
                self.episode = Some(Episode {
                    started_at_ms: now.saturating_sub(i64::try_from(elapsed_ms).unwrap_or(0)),
                    last_growth_ms: now,
                    total: delta,
                    polls: 1,
                    flat: 0,
                });
                let msg = format!(
                    "{}: {} in {}{}{}",
                    kind.started(),
                    kind.count(delta),
                    secs(elapsed_ms),
                    rate(per_second),
                    suffix(kind, ctx)
                );
                let e = event(
                    Level::Warn,
                    msg,
                    kind,
                    delta,
                    per_second,
                    delta,
                    ctx,
                    "entered",
                );
                self.condition.observe(kind.field(), true, |_| e)
            }
            None => None,
            Some(ep) => {
                ep.polls = ep.polls.saturating_add(1);
                if delta > 0 {
                    ep.total = ep.total.saturating_add(delta);
                    ep.last_growth_ms = now;
                    ep.flat = 0;
                    let every = config.remind_every;
                    if every == 0 || !(ep.polls - 1).is_multiple_of(every) {
                        return None;
                    }
                    let lasted = u64::try_from(now.saturating_sub(ep.started_at_ms)).unwrap_or(0);
                    let msg = format!(
                        "{}: {} in {} since it started, {} in the last {}{}{}",
                        kind.ongoing(),
                        kind.count(ep.total),
                        secs(lasted),
                        delta,
                        secs(elapsed_ms),
                        rate(per_second),
                        suffix(kind, ctx)
                    );
                    let total = ep.total;
                    return Some(event(
                        Level::Warn,
                        msg,
                        kind,
                        delta,
                        per_second,
                        total,
                        ctx,
                        "ongoing",
                    ));
                }
                ep.flat = ep.flat.saturating_add(1);
                if ep.flat < config.quiet_polls {
                    return None;
                }
                let ep = *ep;
                self.episode = None;
                let lasted =
                    u64::try_from(ep.last_growth_ms.saturating_sub(ep.started_at_ms)).unwrap_or(0);
                let msg = format!(
                    "{}: {} {} over {}, none in the last {}",
                    kind.stopped(),
                    kind.count(ep.total),
                    kind.done(),
                    secs(lasted),
                    polls(ep.flat)
                );
                let mut e = event(Level::Info, msg, kind, 0, per_second, ep.total, ctx, "left");
                e = e.field("duration_ms", lasted);
                self.condition.observe(kind.field(), false, |_| e)
            }
        }
    }
}

/// "1 poll", "3 polls".
fn polls(n: u64) -> String {
    if n == 1 {
        "1 poll".to_string()
    } else {
        format!("{n} polls")
    }
}

impl Watch for Evictions {
    fn manifest() -> Manifest {
        Manifest::new(
            NAME,
            env!("CARGO_PKG_VERSION"),
            "reports keys being evicted and connections being rejected, when it starts and when it stops",
        )
        .with_config(vec![
            ConfigKey::new(
                "min_evicted",
                DEFAULT_MIN_EVICTED,
                "report evictions when evicted_keys grows by more than this between two polls; at least 0",
            ),
            ConfigKey::new(
                "min_rejected",
                DEFAULT_MIN_REJECTED,
                "report rejections when rejected_connections grows by more than this between two polls; at least 0",
            ),
            ConfigKey::new(
                "remind_every",
                DEFAULT_REMIND_EVERY,
                "while a counter keeps growing, remind every this many polls; 0 never, at least 0",
            ),
            ConfigKey::new(
                "quiet_polls",
                DEFAULT_QUIET_POLLS,
                "report the end once the counter stayed flat for this many polls; at least 1",
            ),
        ])
        .with_needs(Needs::info(&FIELDS))
        .with_cadence(Cadence::EveryPoll)
    }

    fn from_settings(settings: &[Setting]) -> Result<Self, String> {
        Config::from_settings(settings).map(Evictions::new)
    }

    /// Looks at one poll; at most one event per counter, evictions first.
    fn observe(&mut self, snapshot: &Snapshot) -> Vec<Event> {
        let ctx = Context {
            maxmemory: snapshot.info_u64("maxmemory").ok(),
            used_memory: snapshot.info_u64("used_memory").ok(),
            policy: snapshot
                .info_str("maxmemory_policy")
                .ok()
                .filter(|p| !p.is_empty()),
        };
        let config = self.config;
        let evicted =
            self.evicted
                .observe(Kind::Evicted, config.min_evicted, &config, snapshot, &ctx);
        let rejected =
            self.rejected
                .observe(Kind::Rejected, config.min_rejected, &config, snapshot, &ctx);
        evicted.into_iter().chain(rejected).collect()
    }
}

#[cfg(test)]
mod tests;

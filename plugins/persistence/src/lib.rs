//! The `persistence` watcher: RDB and AOF health from INFO persistence.
//!
//! It reports four conditions, each once when it starts and once when it
//! ends:
//!
//! - **background save failed** (`rdb_last_bgsave_status` not `ok`): error;
//!   info when a later save succeeds;
//! - **AOF write failed** (`aof_last_write_status` not `ok`) and **AOF
//!   rewrite failed** (`aof_last_bgrewrite_status` not `ok`), each on its
//!   own: error; info when the status is `ok` again;
//! - **background save running too long** (`rdb_bgsave_in_progress` is 1
//!   and `rdb_current_bgsave_time_sec` above `max_bgsave_s`): warn; info when
//!   that save finished, with its length;
//! - **last save too old** (`max_save_age_s` > 0, the snapshot time minus
//!   `rdb_last_save_time` above `max_save_age_s` while
//!   `rdb_changes_since_last_save` > 0, so changes would be lost): warn;
//!   info once a save happened (or nothing is unsaved any more).
//!
//! Every condition is judged on every poll, the first included. A restart
//! (a new `run_id`) ends a running save; the other conditions follow the new
//! server's fields. Missing or unparseable fields (older Redis) leave the
//! conditions that need them as they were, without events.
//!
//! Each event that starts one of them fires a condition and the one ending
//! it resolves it, keyed by the INFO field judged: `bgsave-failed`
//! (`rdb_last_bgsave_status`), `aof-write-failed` (`aof_last_write_status`),
//! `aof-rewrite-failed` (`aof_last_bgrewrite_status`), `bgsave-too-long`
//! (`rdb_current_bgsave_time_sec`) and `save-too-old`
//! (`rdb_last_save_time`).

use lookout_watcher::format::count;
use lookout_watcher::{
    Cadence, Conditions, ConfigKey, Event, Level, Manifest, Needs, Restarts, Setting, Settings,
    Snapshot, Watch, invalid,
};

lookout_watcher::export!(Persistence);

/// The watcher's name, the envelopes' `target`.
pub const NAME: &str = "persistence";
/// Default of `max_bgsave_s`, seconds.
pub const DEFAULT_MAX_BGSAVE_S: i64 = 600;
/// Default of `max_save_age_s`, seconds (one day).
pub const DEFAULT_MAX_SAVE_AGE_S: i64 = 86_400;
/// The key of the `bgsave-too-long` condition.
const SLOW_KEY: &str = "rdb_current_bgsave_time_sec";
/// The key of the `save-too-old` condition.
const OLD_KEY: &str = "rdb_last_save_time";
/// The INFO section read whole.
pub const SECTION: &str = "persistence";

/// Validated settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    /// A background save running longer than this, seconds, is reported;
    /// at least 1.
    pub max_bgsave_s: u64,
    /// Unsaved changes older than this, seconds, are reported; 0 for no
    /// check.
    pub max_save_age_s: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_bgsave_s: DEFAULT_MAX_BGSAVE_S as u64,
            max_save_age_s: DEFAULT_MAX_SAVE_AGE_S as u64,
        }
    }
}

impl Config {
    /// Reads and checks the settings handed to `configure`; the error names
    /// the offending key.
    pub fn from_settings(settings: &[Setting]) -> Result<Self, String> {
        let s = Settings::new(settings);
        let max_bgsave_s = s.integer("max_bgsave_s", DEFAULT_MAX_BGSAVE_S)?;
        let max_bgsave_s = u64::try_from(max_bgsave_s)
            .ok()
            .filter(|&n| n >= 1)
            .ok_or_else(|| invalid("max_bgsave_s", ">= 1", max_bgsave_s))?;
        let max_save_age_s = s.integer("max_save_age_s", DEFAULT_MAX_SAVE_AGE_S)?;
        let max_save_age_s = u64::try_from(max_save_age_s)
            .map_err(|_| invalid("max_save_age_s", ">= 0", max_save_age_s))?;
        Ok(Config {
            max_bgsave_s,
            max_save_age_s,
        })
    }
}

/// A background save seen running too long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct SlowSave {
    /// `rdb_current_bgsave_time_sec` at the last poll that saw it.
    last_seen_s: u64,
}

/// Unsaved changes seen at risk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct OldSave {
    /// `taken_at_ms` of the poll that first saw it.
    since_ms: i64,
    /// `rdb_last_save_time` then.
    last_save_time: i64,
}

/// The watcher's logic and state.
#[derive(Debug, Clone)]
pub struct Persistence {
    config: Config,
    /// Tells a restart (a new `run_id`).
    restarts: Restarts,
    /// Since when (`taken_at_ms`) the last background save has failed.
    bgsave_failed: Option<i64>,
    /// Since when the last AOF write has failed.
    aof_write_failed: Option<i64>,
    /// Since when the last AOF rewrite has failed.
    aof_rewrite_failed: Option<i64>,
    slow_save: Option<SlowSave>,
    old_save: Option<OldSave>,
    /// The conditions fired and resolved with the events above.
    conditions: Kinds,
}

/// One condition tracker per kind, each keyed by the INFO field judged.
#[derive(Debug, Clone)]
struct Kinds {
    bgsave_failed: Conditions<&'static str>,
    aof_write_failed: Conditions<&'static str>,
    aof_rewrite_failed: Conditions<&'static str>,
    slow_save: Conditions<&'static str>,
    old_save: Conditions<&'static str>,
}

impl Kinds {
    fn new() -> Self {
        Kinds {
            bgsave_failed: Conditions::new("bgsave-failed"),
            aof_write_failed: Conditions::new("aof-write-failed"),
            aof_rewrite_failed: Conditions::new("aof-rewrite-failed"),
            slow_save: Conditions::new("bgsave-too-long"),
            old_save: Conditions::new("save-too-old"),
        }
    }
}

/// Whole seconds from `from_ms` to `to_ms`, 0 when the clock went back.
fn seconds_between(from_ms: i64, to_ms: i64) -> u64 {
    u64::try_from(to_ms.saturating_sub(from_ms) / 1000).unwrap_or(0)
}

/// A status field (`ok` / `err`): whether it is not `ok`; `None` when
/// missing.
fn failed(snapshot: &Snapshot, field: &str) -> Option<bool> {
    snapshot.info_str(field).ok().map(|s| s != "ok")
}

impl Persistence {
    /// A watcher that has seen nothing yet.
    pub fn new(config: Config) -> Self {
        Persistence {
            config,
            restarts: Restarts::new(),
            bgsave_failed: None,
            aof_write_failed: None,
            aof_rewrite_failed: None,
            slow_save: None,
            old_save: None,
            conditions: Kinds::new(),
        }
    }

    /// Whether the last background save is known to have failed.
    pub fn bgsave_failed(&self) -> bool {
        self.bgsave_failed.is_some()
    }

    /// Whether the last AOF write is known to have failed.
    pub fn aof_write_failed(&self) -> bool {
        self.aof_write_failed.is_some()
    }

    /// Whether the last AOF rewrite is known to have failed.
    pub fn aof_rewrite_failed(&self) -> bool {
        self.aof_rewrite_failed.is_some()
    }

    /// Whether a background save was reported running too long and has not
    /// finished yet.
    pub fn bgsave_too_long(&self) -> bool {
        self.slow_save.is_some()
    }

    /// Whether unsaved changes were reported at risk and still are.
    pub fn save_too_old(&self) -> bool {
        self.old_save.is_some()
    }

    fn observe_bgsave_status(&mut self, snapshot: &Snapshot, events: &mut Vec<Event>) {
        let field = "rdb_last_bgsave_status";
        let now = snapshot.taken_at_ms;
        let status = snapshot.info_str(field).unwrap_or_default();
        match (self.bgsave_failed, failed(snapshot, field)) {
            (None, Some(true)) => {
                let changes = snapshot.info_u64("rdb_changes_since_last_save").ok();
                let mut msg = format!("last background save failed ({field} {status})");
                if let Some(n) = changes {
                    msg.push_str(&format!(", {} not saved", count(n, "change")));
                }
                let mut e = Event::new(Level::Error, msg).field(field, status);
                if let Some(n) = changes {
                    e = e.field("rdb_changes_since_last_save", n);
                }
                let e = e.field("state", "entered");
                events.extend(self.conditions.bgsave_failed.observe(field, true, |_| e));
                self.bgsave_failed = Some(now);
            }
            (Some(since), Some(false)) => {
                let duration_s = seconds_between(since, now);
                let msg = format!("background save succeeded again after {duration_s} s");
                let e = Event::new(Level::Info, msg)
                    .field(field, status)
                    .field("duration_s", duration_s)
                    .field("state", "left");
                events.extend(self.conditions.bgsave_failed.observe(field, false, |_| e));
                self.bgsave_failed = None;
            }
            _ => {}
        }
    }

    /// `aof_last_write_status` or `aof_last_bgrewrite_status`.
    fn observe_aof_status(
        snapshot: &Snapshot,
        open: &mut Option<i64>,
        condition: &mut Conditions<&'static str>,
        field: &'static str,
        what: &str,
        events: &mut Vec<Event>,
    ) {
        let now = snapshot.taken_at_ms;
        let status = snapshot.info_str(field).unwrap_or_default();
        let failures = snapshot.info_u64("aof_rewrites_consecutive_failures").ok();
        let rewrite = field == "aof_last_bgrewrite_status";
        match (*open, failed(snapshot, field)) {
            (None, Some(true)) => {
                let mut msg = format!("{what} failed ({field} {status})");
                let mut e = Event::new(Level::Error, String::new()).field(field, status);
                if let (true, Some(n)) = (rewrite, failures) {
                    msg.push_str(&format!(", {}", count(n, "consecutive failure")));
                    e = e.field("aof_rewrites_consecutive_failures", n);
                }
                e.msg = msg;
                let e = e.field("state", "entered");
                events.extend(condition.observe(field, true, |_| e));
                *open = Some(now);
            }
            (Some(since), Some(false)) => {
                let duration_s = seconds_between(since, now);
                let msg = format!("{what} ok again after {duration_s} s");
                let e = Event::new(Level::Info, msg)
                    .field(field, status)
                    .field("duration_s", duration_s)
                    .field("state", "left");
                events.extend(condition.observe(field, false, |_| e));
                *open = None;
            }
            _ => {}
        }
    }

    fn observe_slow_save(&mut self, snapshot: &Snapshot, restarted: bool, events: &mut Vec<Event>) {
        let max = self.config.max_bgsave_s;
        let in_progress = snapshot.info_u64("rdb_bgsave_in_progress").ok();
        // -1 when no save runs.
        let running_s = snapshot
            .info_i64("rdb_current_bgsave_time_sec")
            .ok()
            .and_then(|s| u64::try_from(s).ok());
        if let Some(open) = self.slow_save {
            let finished = if restarted {
                Some(true)
            } else {
                match (in_progress, running_s) {
                    (Some(0), _) => Some(true),
                    // Shorter than before: that save ended, another began.
                    (Some(_), Some(s)) => Some(s < open.last_seen_s),
                    _ => None,
                }
            };
            match finished {
                Some(true) => {
                    self.slow_save = None;
                    let e = Self::save_finished(snapshot, open, restarted, in_progress);
                    events.extend(self.conditions.slow_save.observe(SLOW_KEY, false, |_| e));
                }
                Some(false) => {
                    if let Some(s) = running_s {
                        self.slow_save = Some(SlowSave { last_seen_s: s });
                    }
                    return;
                }
                None => return,
            }
        }
        if let (Some(1), Some(s)) = (in_progress, running_s)
            && s > max
        {
            let msg = format!("background save running for {s} s (limit {max} s)");
            let e = Event::new(Level::Warn, msg)
                .field("rdb_current_bgsave_time_sec", s)
                .field("max_bgsave_s", max)
                .field("state", "entered");
            events.extend(self.conditions.slow_save.observe(SLOW_KEY, true, |_| e));
            self.slow_save = Some(SlowSave { last_seen_s: s });
        }
    }

    /// The info event ending a slow save.
    fn save_finished(
        snapshot: &Snapshot,
        open: SlowSave,
        restarted: bool,
        in_progress: Option<u64>,
    ) -> Event {
        if restarted {
            let msg = format!(
                "background save no longer running: the server restarted (it ran at least {} s)",
                open.last_seen_s
            );
            return Event::new(Level::Info, msg)
                .field("duration_s", open.last_seen_s)
                .field("restarted", true)
                .field("state", "left");
        }
        // Its own length once it finished; while the next save runs the
        // last length seen is the best known.
        let length = match in_progress {
            Some(0) => snapshot
                .info_i64("rdb_last_bgsave_time_sec")
                .ok()
                .and_then(|s| u64::try_from(s).ok())
                .filter(|&s| s >= open.last_seen_s),
            _ => None,
        };
        let status = snapshot.info_str("rdb_last_bgsave_status").ok();
        let mut msg = match length {
            Some(s) => format!("background save finished after {s} s"),
            None => format!(
                "background save finished after at least {} s",
                open.last_seen_s
            ),
        };
        if let Some(status) = status {
            msg.push_str(&format!(" (status {status})"));
        }
        let mut e =
            Event::new(Level::Info, msg).field("duration_s", length.unwrap_or(open.last_seen_s));
        if let Some(status) = status {
            e = e.field("rdb_last_bgsave_status", status);
        }
        e.field("restarted", false).field("state", "left")
    }

    fn observe_save_age(&mut self, snapshot: &Snapshot, restarted: bool, events: &mut Vec<Event>) {
        let max = self.config.max_save_age_s;
        let now = snapshot.taken_at_ms;
        let (Ok(last_save), Ok(changes)) = (
            snapshot.info_i64("rdb_last_save_time"),
            snapshot.info_u64("rdb_changes_since_last_save"),
        ) else {
            return;
        };
        let age_s = u64::try_from((now / 1000).saturating_sub(last_save)).unwrap_or(0);
        let at_risk = max > 0 && changes > 0 && age_s > max;
        let event = |level: Level, msg: String| {
            Event::new(level, msg)
                .field("last_save_age_s", age_s)
                .field("rdb_last_save_time", last_save)
                .field("rdb_changes_since_last_save", changes)
                .field("max_save_age_s", max)
        };
        let unsaved = count(changes, "unsaved change");
        match self.old_save {
            None if at_risk => {
                let msg =
                    format!("last successful save {age_s} s ago (limit {max} s) with {unsaved}");
                let e = event(Level::Warn, msg).field("state", "entered");
                events.extend(self.conditions.old_save.observe(OLD_KEY, true, |_| e));
                self.old_save = Some(OldSave {
                    since_ms: now,
                    last_save_time: last_save,
                });
            }
            Some(open) if !at_risk => {
                let duration_s = seconds_between(open.since_ms, now);
                let msg = if restarted {
                    format!(
                        "unsaved changes no longer tracked: the server restarted, last save {age_s} s ago, {unsaved} (reported {duration_s} s ago)"
                    )
                } else if last_save > open.last_save_time {
                    format!(
                        "a save happened: last successful save {age_s} s ago, {unsaved} (at risk for {duration_s} s)"
                    )
                } else {
                    format!(
                        "unsaved changes no longer at risk: last successful save {age_s} s ago, {unsaved} (after {duration_s} s)"
                    )
                };
                let e = event(Level::Info, msg)
                    .field("duration_s", duration_s)
                    .field("state", "left");
                events.extend(self.conditions.old_save.observe(OLD_KEY, false, |_| e));
                self.old_save = None;
            }
            _ => {}
        }
    }
}

impl Watch for Persistence {
    fn manifest() -> Manifest {
        Manifest {
            name: NAME.to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            description: "reports failed background saves and AOF writes or rewrites, background \
                          saves running too long, and unsaved changes older than a limit"
                .to_string(),
            config: vec![
                ConfigKey::new(
                    "max_bgsave_s",
                    DEFAULT_MAX_BGSAVE_S,
                    "report a background save running longer than this many seconds; at least 1",
                ),
                ConfigKey::new(
                    "max_save_age_s",
                    DEFAULT_MAX_SAVE_AGE_S,
                    "report unsaved changes when the last successful save is older than this many seconds; 0 turns the check off, at least 0",
                ),
            ],
            needs: Needs::info(&["run_id"]).with_sections(&[SECTION]),
            cadence: Cadence::EveryPoll,
        }
    }

    fn from_settings(settings: &[Setting]) -> Result<Self, String> {
        Config::from_settings(settings).map(Persistence::new)
    }

    fn observe(&mut self, snapshot: &Snapshot) -> Vec<Event> {
        let restarted = self.restarts.observe(snapshot);
        let mut events = Vec::new();
        self.observe_bgsave_status(snapshot, &mut events);
        Self::observe_aof_status(
            snapshot,
            &mut self.aof_write_failed,
            &mut self.conditions.aof_write_failed,
            "aof_last_write_status",
            "AOF write",
            &mut events,
        );
        Self::observe_aof_status(
            snapshot,
            &mut self.aof_rewrite_failed,
            &mut self.conditions.aof_rewrite_failed,
            "aof_last_bgrewrite_status",
            "AOF rewrite",
            &mut events,
        );
        self.observe_slow_save(snapshot, restarted, &mut events);
        self.observe_save_age(snapshot, restarted, &mut events);
        events
    }
}

#[cfg(test)]
mod tests;

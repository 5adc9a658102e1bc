//! The active set: every condition firing now, per target and watcher, by
//! fingerprint, with when it started, its last message, its level and the
//! labels frozen when it fired. One `Mutex`-guarded set that the pollers,
//! the fleet and the publisher call; a poll whose events carry no
//! condition does not take the lock. It writes the [`Board`].
//!
//! Rules:
//! - firing again only updates the message;
//! - a firing at another level, or the target's labels (its role) changing
//!   under a firing condition, resolves the old one and fires a new one;
//! - a resolution removes it;
//! - a removed target or an unloaded watcher resolves what it held, saying
//!   why; a restarted watcher keeps its conditions, and those it does not
//!   fire again within [`RECHECK_POLLS`] polls resolve;
//! - a target this process stops watching without a reason to resolve
//!   (shutdown, another shard owning it) lapses: off the board with no
//!   resolution, so the process that watches it next fires it again.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use super::{Alert, Board};
use crate::delivery::envelope::{
    Condition, ConditionState, Emitted, HOST_TARGET, Level, fields, fingerprint,
};

/// The host's own condition kinds.
pub(crate) mod kinds {
    /// A target's polls fail to reach it.
    pub(crate) const TARGET_UNREACHABLE: &str = "target-unreachable";
    /// A target refuses lookout's credentials or a probe (WRONGPASS,
    /// NOPERM).
    pub(crate) const CONFIGURATION_REFUSED: &str = "configuration-refused";
    /// A watcher failed too often in a row and is no longer run.
    pub(crate) const WATCHER_QUARANTINED: &str = "watcher-quarantined";
    /// A `[[discover]]` entry does not answer.
    pub(crate) const DISCOVERY_FAILED: &str = "discovery-failed";
    /// The bus does not take envelopes (the breaker is open).
    pub(crate) const BUS_UNREACHABLE: &str = "bus-unreachable";
    /// The outbox is full and drops envelopes.
    pub(crate) const ENVELOPES_DROPPED: &str = "envelopes-dropped";
    /// Polls start late: the p99 of a window's lateness is over half the
    /// poll interval (the process has more targets than it polls on time).
    pub(crate) const POLLS_LATE: &str = "polls-late";
}

/// Most conditions one watcher holds firing on one target: a new one
/// beyond it is not kept (its event goes out without `condition`, saying
/// why in `fields.condition_refused`), so a watcher firing a new key every
/// poll cannot grow the set, the board or Alertmanager without end.
pub(crate) const MAX_HELD_PER_WATCHER: usize = 1000;

/// Polls a restarted watcher has to fire a condition again before it
/// resolves.
pub(crate) const RECHECK_POLLS: u64 = 3;

/// Whom a condition is about: the target's key (the process's host name
/// for its own conditions), its `host:port` and its labels.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Subject<'a> {
    pub target_key: &'a str,
    pub instance: &'a str,
    pub labels: &'a BTreeMap<String, String>,
}

/// One firing condition.
#[derive(Debug, Clone)]
struct Entry {
    watcher: String,
    kind: String,
    key: String,
    level: Level,
    runbook: Option<String>,
    instance: String,
    /// The target's labels when it fired.
    labels: BTreeMap<String, String>,
    message: String,
    started_at: SystemTime,
    /// Set when its watcher restarted: it resolves unless fired again.
    pending: bool,
}

/// The conditions firing now, by target key, then by fingerprint.
type Set = BTreeMap<String, BTreeMap<String, Entry>>;

/// The active set of this process.
#[derive(Debug)]
pub(crate) struct Active {
    set: Mutex<Set>,
    board: Arc<Board>,
    /// The envelopes' `service`, an alert label.
    service: String,
}

impl Active {
    /// An empty set publishing to `board`, its alerts labelled with
    /// `service`.
    pub(crate) fn new(service: &str, board: Arc<Board>) -> Arc<Self> {
        Arc::new(Self {
            set: Mutex::new(BTreeMap::new()),
            board,
            service: service.to_owned(),
        })
    }

    /// The board it writes.
    #[cfg(test)]
    pub(crate) fn board(&self) -> &Arc<Board> {
        &self.board
    }

    /// Takes `events` about `subject` through the set, and gives them back
    /// with the resolution a firing at another level adds before it.
    pub(crate) fn observe(&self, subject: &Subject<'_>, events: Vec<Emitted>) -> Vec<Emitted> {
        if events.iter().all(|e| e.condition.is_none()) {
            return events;
        }
        let mut set = self.lock();
        let mut out = Vec::with_capacity(events.len());
        for mut event in events {
            let Some(c) = &event.condition else {
                out.push(event);
                continue;
            };
            let fp = fingerprint(subject.target_key, &event.target, &c.kind, &c.key);
            let held = set.entry(subject.target_key.to_owned()).or_default();
            if c.state == ConditionState::Firing
                && !held.contains_key(&fp)
                && held.values().filter(|e| e.watcher == event.target).count()
                    >= MAX_HELD_PER_WATCHER
            {
                event.condition = None;
                event.fields.insert(
                    "condition_refused".to_owned(),
                    format!(
                        "{} holds {MAX_HELD_PER_WATCHER} conditions firing on this target already",
                        event.target
                    )
                    .into(),
                );
                out.push(event);
                continue;
            }
            match c.state {
                ConditionState::Firing => {
                    if let Some(entry) = held.get_mut(&fp) {
                        if entry.level == event.level && entry.labels == *subject.labels {
                            entry.message.clone_from(&event.msg);
                            entry.pending = false;
                            entry.runbook.clone_from(&c.runbook);
                            self.board
                                .put(self.alert(subject.target_key, &fp, entry, None));
                            out.push(event);
                            continue;
                        }
                        let why = if entry.level == event.level {
                            "the target's labels changed".to_owned()
                        } else {
                            format!(
                                "its level changed from {} to {}",
                                entry.level.as_str(),
                                event.level.as_str()
                            )
                        };
                        let old = held.remove(&fp).expect("present");
                        out.push(self.resolve(subject.target_key, &fp, &old, &why));
                    }
                    let entry = Entry {
                        watcher: event.target.clone(),
                        kind: c.kind.clone(),
                        key: c.key.clone(),
                        level: event.level,
                        runbook: c.runbook.clone(),
                        instance: subject.instance.to_owned(),
                        labels: subject.labels.clone(),
                        message: event.msg.clone(),
                        started_at: SystemTime::now(),
                        pending: false,
                    };
                    self.board
                        .put(self.alert(subject.target_key, &fp, &entry, None));
                    held.insert(fp, entry);
                }
                ConditionState::Resolved => {
                    if let Some(mut old) = held.remove(&fp) {
                        old.message.clone_from(&event.msg);
                        self.board.put(self.alert(
                            subject.target_key,
                            &fp,
                            &old,
                            Some(SystemTime::now()),
                        ));
                    }
                }
            }
            out.push(event);
        }
        set.retain(|_, held| !held.is_empty());
        out
    }

    /// The target's labels are `subject.labels` now: each condition fired
    /// under others resolves and fires again under these (same message,
    /// started now).
    pub(crate) fn relabelled(&self, subject: &Subject<'_>) -> Vec<Emitted> {
        let mut set = self.lock();
        let Some(held) = set.get_mut(subject.target_key) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for (fp, entry) in held.iter_mut() {
            if entry.labels == *subject.labels {
                continue;
            }
            out.push(self.resolve(subject.target_key, fp, entry, "the target's labels changed"));
            entry.labels = subject.labels.clone();
            entry.started_at = SystemTime::now();
            self.board
                .put(self.alert(subject.target_key, fp, entry, None));
            out.push(entry.firing());
        }
        out
    }

    /// Resolves every condition of the target `target_key` (of `watcher`
    /// only, when given), saying `why`.
    pub(crate) fn resolve_all(
        &self,
        target_key: &str,
        watcher: Option<&str>,
        why: &str,
    ) -> Vec<Emitted> {
        self.resolve_where(target_key, why, |e| watcher.is_none_or(|w| e.watcher == w))
    }

    /// `watcher` restarted on the target `target_key`: its conditions stay,
    /// and [`Self::resolve_pending`] resolves those not fired since.
    pub(crate) fn restarted(&self, target_key: &str, watcher: &str) {
        if let Some(held) = self.lock().get_mut(target_key) {
            for entry in held.values_mut().filter(|e| e.watcher == watcher) {
                entry.pending = true;
            }
        }
    }

    /// Resolves `watcher`'s conditions on `target_key` that it did not fire
    /// again since it restarted.
    pub(crate) fn resolve_pending(&self, target_key: &str, watcher: &str) -> Vec<Emitted> {
        let why = format!(
            "watcher {watcher} restarted and did not report it again within {RECHECK_POLLS} polls"
        );
        self.resolve_where(target_key, &why, |e| e.pending && e.watcher == watcher)
    }

    /// Whether the condition `kind`/`key` of `watcher` on `target_key` is
    /// firing.
    pub(crate) fn is_firing(&self, target_key: &str, watcher: &str, kind: &str, key: &str) -> bool {
        let fp = fingerprint(target_key, watcher, kind, key);
        self.lock()
            .get(target_key)
            .is_some_and(|held| held.contains_key(&fp))
    }

    /// This process stops watching `target_key` without its conditions
    /// ending: they leave the board unresolved, for the next owner.
    pub(crate) fn lapse(&self, target_key: &str) {
        if let Some(held) = self.lock().remove(target_key) {
            for fp in held.keys() {
                self.board.lapse(fp);
            }
        }
    }

    /// Conditions firing, by watcher and level (for `/metrics`).
    pub(crate) fn counts(&self) -> BTreeMap<(String, Level), u64> {
        let mut counts = BTreeMap::new();
        for entry in self.lock().values().flat_map(BTreeMap::values) {
            *counts
                .entry((entry.watcher.clone(), entry.level))
                .or_default() += 1;
        }
        counts
    }

    fn resolve_where(
        &self,
        target_key: &str,
        why: &str,
        which: impl Fn(&Entry) -> bool,
    ) -> Vec<Emitted> {
        let mut set = self.lock();
        let Some(held) = set.get_mut(target_key) else {
            return Vec::new();
        };
        let gone: Vec<String> = held
            .iter()
            .filter(|(_, e)| which(e))
            .map(|(fp, _)| fp.clone())
            .collect();
        let mut out = Vec::with_capacity(gone.len());
        for fp in gone {
            if let Some(entry) = held.remove(&fp) {
                out.push(self.resolve(target_key, &fp, &entry, why));
            }
        }
        if held.is_empty() {
            set.remove(target_key);
        }
        out
    }

    /// The resolution of `entry`, on the board and as an event.
    fn resolve(&self, target_key: &str, fp: &str, entry: &Entry, why: &str) -> Emitted {
        let msg = format!(
            "{} {} resolved: {why} (was: {})",
            entry.kind, entry.key, entry.message
        );
        let mut resolved = entry.clone();
        resolved.message.clone_from(&msg);
        self.board
            .put(self.alert(target_key, fp, &resolved, Some(SystemTime::now())));
        Emitted {
            level: Level::Info,
            target: entry.watcher.clone(),
            msg,
            fields: fields! {"reason" => why},
            call: None,
            condition: Some(Condition {
                kind: entry.kind.clone(),
                key: entry.key.clone(),
                state: ConditionState::Resolved,
                runbook: entry.runbook.clone(),
            }),
        }
    }

    fn alert(
        &self,
        target_key: &str,
        fp: &str,
        entry: &Entry,
        ends_at: Option<SystemTime>,
    ) -> Alert {
        let mut labels: BTreeMap<String, String> = entry
            .labels
            .iter()
            .map(|(k, v)| (label_name(k), v.clone()))
            .collect();
        for (name, value) in [
            ("alertname", format!("{}/{}", entry.watcher, entry.kind)),
            ("condition", entry.key.clone()),
            ("instance", entry.instance.clone()),
            ("target", target_key.to_owned()),
            ("severity", severity(entry.level).to_owned()),
            ("service", self.service.clone()),
        ] {
            labels.insert(name.to_owned(), value);
        }
        Alert {
            fingerprint: fp.to_owned(),
            labels,
            summary: entry.message.clone(),
            description: format!(
                "{} reports {} for {} on {target_key} ({})",
                entry.watcher, entry.kind, entry.key, entry.instance
            ),
            runbook_url: entry.runbook.clone(),
            starts_at: entry.started_at,
            ends_at,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Set> {
        self.set.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Entry {
    /// The event that fires it again.
    fn firing(&self) -> Emitted {
        Emitted {
            level: self.level,
            target: self.watcher.clone(),
            msg: self.message.clone(),
            fields: fields! {},
            call: None,
            condition: Some(Condition {
                kind: self.kind.clone(),
                key: self.key.clone(),
                state: ConditionState::Firing,
                runbook: self.runbook.clone(),
            }),
        }
    }
}

/// Alertmanager's severity of a level.
pub(crate) fn severity(level: Level) -> &'static str {
    match level {
        Level::Error => "critical",
        Level::Warn => "warning",
        Level::Info | Level::Debug => "info",
    }
}

/// `name` as a Prometheus label name, `[a-zA-Z_][a-zA-Z0-9_]*`: every
/// other character becomes `_`, and a leading digit (or nothing) gets a
/// `_` before it.
pub(crate) fn label_name(name: &str) -> String {
    let mut out: String = name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    if out.is_empty() || out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, '_');
    }
    out
}

/// One of the host's own condition events.
pub(crate) fn host_condition(
    level: Level,
    kind: &str,
    key: &str,
    state: ConditionState,
    msg: impl Into<String>,
    fields: serde_json::Map<String, serde_json::Value>,
) -> Emitted {
    let mut event = Emitted::host(level, msg, fields);
    event.condition = Some(Condition {
        kind: kind.to_owned(),
        key: key.to_owned(),
        state,
        runbook: None,
    });
    debug_assert_eq!(event.target, HOST_TARGET);
    event
}

/// A host condition that fires once it held for `for_s`.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Hold {
    since: Option<Instant>,
    fired: bool,
}

impl Hold {
    /// It holds now: whether it fires now (it held `for_s`, and did not fire
    /// yet).
    pub(crate) fn holds(&mut self, for_s: Duration) -> bool {
        let since = *self.since.get_or_insert_with(Instant::now);
        if !self.fired && since.elapsed() >= for_s {
            self.fired = true;
            return true;
        }
        false
    }

    /// It no longer holds: whether it had fired (so it resolves).
    pub(crate) fn clear(&mut self) -> bool {
        let fired = self.fired;
        *self = Self::default();
        fired
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(role: &str) -> BTreeMap<String, String> {
        BTreeMap::from([("role".to_owned(), role.to_owned())])
    }

    fn event(level: Level, kind: &str, key: &str, state: ConditionState, msg: &str) -> Emitted {
        Emitted {
            level,
            target: "stream-lag".to_owned(),
            msg: msg.to_owned(),
            fields: fields! {},
            call: None,
            condition: Some(Condition {
                kind: kind.to_owned(),
                key: key.to_owned(),
                state,
                runbook: None,
            }),
        }
    }

    fn fire(level: Level, msg: &str) -> Emitted {
        event(
            level,
            "over-max-lag",
            "jobs/workers",
            ConditionState::Firing,
            msg,
        )
    }

    fn states(events: &[Emitted]) -> Vec<ConditionState> {
        events
            .iter()
            .filter_map(|e| e.condition.as_ref().map(|c| c.state))
            .collect()
    }

    fn setup() -> (Arc<Active>, BTreeMap<String, String>) {
        (Active::new("redis", Board::new()), labels("master"))
    }

    fn subject(labels: &BTreeMap<String, String>) -> Subject<'_> {
        Subject {
            target_key: "cache",
            instance: "127.0.0.1:7000",
            labels,
        }
    }

    #[test]
    fn firing_again_only_updates_the_message() {
        let (active, labels) = setup();
        let s = subject(&labels);
        active.observe(&s, vec![fire(Level::Warn, "500 behind")]);
        let out = active.observe(&s, vec![fire(Level::Warn, "600 behind")]);
        assert_eq!(states(&out), [ConditionState::Firing]);
        let board = active.board().snapshot();
        assert_eq!(board.len(), 1);
        assert_eq!(board[0].summary, "600 behind");
        assert_eq!(board[0].labels["alertname"], "stream-lag/over-max-lag");
        assert_eq!(board[0].labels["condition"], "jobs/workers");
        assert_eq!(board[0].labels["severity"], "warning");
        assert_eq!(board[0].labels["target"], "cache");
        assert_eq!(board[0].labels["role"], "master");
        assert_eq!(board[0].labels["service"], "redis");
        assert_eq!(
            board[0].fingerprint,
            fingerprint("cache", "stream-lag", "over-max-lag", "jobs/workers")
        );
        assert_eq!(active.counts()[&("stream-lag".to_owned(), Level::Warn)], 1);
    }

    #[test]
    fn a_watcher_firing_new_keys_every_poll_is_held_to_its_cap() {
        let (active, labels) = setup();
        let s = subject(&labels);
        for poll in 0..(MAX_HELD_PER_WATCHER / 100 + 2) {
            let events = (0..100)
                .map(|i| {
                    let key = format!("k{poll}-{i}");
                    event(Level::Warn, "new", &key, ConditionState::Firing, "m")
                })
                .collect();
            active.observe(&s, events);
        }
        assert_eq!(active.board().snapshot().len(), MAX_HELD_PER_WATCHER);
        let out = active.observe(
            &s,
            vec![event(
                Level::Warn,
                "new",
                "one-more",
                ConditionState::Firing,
                "m",
            )],
        );
        assert!(out[0].condition.is_none());
        assert!(out[0].fields["condition_refused"].is_string());
        // One it holds still updates and resolves.
        let out = active.observe(
            &s,
            vec![event(
                Level::Warn,
                "new",
                "k0-0",
                ConditionState::Resolved,
                "ok",
            )],
        );
        assert_eq!(states(&out), [ConditionState::Resolved]);
    }

    #[test]
    fn a_resolution_removes_it_and_posts_its_end() {
        let (active, labels) = setup();
        let s = subject(&labels);
        active.observe(&s, vec![fire(Level::Warn, "500 behind")]);
        let resolved = event(
            Level::Info,
            "over-max-lag",
            "jobs/workers",
            ConditionState::Resolved,
            "drained",
        );
        active.observe(&s, vec![resolved]);
        assert!(active.counts().is_empty());
        let board = active.board().snapshot();
        assert_eq!(board.len(), 1);
        assert!(board[0].ends_at.is_some());
        assert_eq!(board[0].labels["severity"], "warning", "labels as fired");
        active.board().forget_resolved(&board[0].fingerprint);
        assert!(active.board().snapshot().is_empty());
    }

    #[test]
    fn another_level_resolves_the_old_one_and_fires_anew() {
        let (active, labels) = setup();
        let s = subject(&labels);
        active.observe(&s, vec![fire(Level::Warn, "500 behind")]);
        let out = active.observe(&s, vec![fire(Level::Error, "5000 behind")]);
        assert_eq!(
            states(&out),
            [ConditionState::Resolved, ConditionState::Firing]
        );
        assert!(
            out[0].msg.contains("level changed from warn to error"),
            "{}",
            out[0].msg
        );
        let board = active.board().snapshot();
        assert_eq!(board.len(), 2, "{board:?}");
        let ended: Vec<_> = board
            .iter()
            .map(|a| (a.labels["severity"].as_str(), a.ends_at.is_some()))
            .collect();
        assert!(ended.contains(&("warning", true)) && ended.contains(&("critical", false)));
    }

    #[test]
    fn a_relabelled_target_resolves_and_fires_under_the_new_labels() {
        let (active, labels) = setup();
        active.observe(&subject(&labels), vec![fire(Level::Warn, "500 behind")]);
        let replica = self::labels("replica");
        let out = active.relabelled(&subject(&replica));
        assert_eq!(
            states(&out),
            [ConditionState::Resolved, ConditionState::Firing]
        );
        let board = active.board().snapshot();
        let active_roles: Vec<_> = board
            .iter()
            .filter(|a| a.ends_at.is_none())
            .map(|a| a.labels["role"].as_str())
            .collect();
        assert_eq!(active_roles, ["replica"]);
        assert!(active.relabelled(&subject(&replica)).is_empty());
    }

    #[test]
    fn unload_and_removal_resolve_saying_why() {
        let (active, labels) = setup();
        let s = subject(&labels);
        let mut other = fire(Level::Warn, "x");
        other.target = "evictions".to_owned();
        active.observe(&s, vec![fire(Level::Warn, "500 behind"), other]);
        let out = active.resolve_all("cache", Some("stream-lag"), "watcher stream-lag unloaded");
        assert_eq!(states(&out), [ConditionState::Resolved]);
        assert!(
            out[0].msg.contains("watcher stream-lag unloaded"),
            "{}",
            out[0].msg
        );
        assert_eq!(out[0].target, "stream-lag");
        let out = active.resolve_all("cache", None, "target cache removed");
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].target, "evictions");
        assert!(active.counts().is_empty());
    }

    #[test]
    fn a_restarted_watcher_keeps_what_it_fires_again() {
        let (active, labels) = setup();
        let s = subject(&labels);
        let second = event(
            Level::Warn,
            "over-max-lag",
            "jobs/other",
            ConditionState::Firing,
            "y",
        );
        active.observe(&s, vec![fire(Level::Warn, "500 behind"), second]);
        active.restarted("cache", "stream-lag");
        active.observe(&s, vec![fire(Level::Warn, "510 behind")]);
        let out = active.resolve_pending("cache", "stream-lag");
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].condition.as_ref().unwrap().key, "jobs/other");
        assert!(active.is_firing("cache", "stream-lag", "over-max-lag", "jobs/workers"));
    }

    #[test]
    fn a_lapsed_target_leaves_the_board_unresolved() {
        let (active, labels) = setup();
        active.observe(&subject(&labels), vec![fire(Level::Warn, "500 behind")]);
        active.lapse("cache");
        assert!(active.board().snapshot().is_empty());
        assert!(active.counts().is_empty());
    }

    #[test]
    fn label_names_fit_prometheus() {
        assert_eq!(label_name("role"), "role");
        assert_eq!(
            label_name("app.kubernetes.io/name"),
            "app_kubernetes_io_name"
        );
        assert_eq!(label_name("9lives"), "_9lives");
        assert_eq!(label_name(""), "_");
        assert_eq!(severity(Level::Debug), "info");
    }

    #[test]
    fn a_hold_fires_once_after_for_s_and_resolves_only_if_fired() {
        let mut hold = Hold::default();
        assert!(!hold.holds(Duration::from_secs(3600)));
        assert!(!hold.clear());
        assert!(hold.holds(Duration::ZERO));
        assert!(!hold.holds(Duration::ZERO));
        assert!(hold.clear());
    }
}

//! The supervisor of one target's watchers: which are due, their calls
//! (each under its own deadline), and their failures. A failed watcher's
//! instance is dropped and rebuilt before its next run, repeated failures
//! back off, and K in a row quarantine it until its file or settings
//! change. Each target has its own supervisor, so a watcher's state is per
//! target; the compiled components are shared.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::load::Spec;
use crate::delivery::envelope::fields;
use crate::delivery::envelope::{Emitted, Level};
use crate::metrics::{TargetMetrics, WatcherMetrics};
use crate::redis::probe::{Probes, SlowEntry, Snapshot};
use crate::sandbox::limits::Cadence;
use crate::sandbox::output::cap;
use crate::sandbox::{Engine, Instance, Trap};

/// Health of one watcher on one target.
#[derive(Debug, Clone)]
enum Health {
    Healthy,
    /// Failed `consecutive` times in a row; rebuilt at poll `retry_at`.
    Failing {
        consecutive: u32,
        retry_at: u64,
        reason: String,
    },
    /// Rebuilt; recovered once an `observe` succeeds.
    Restarted {
        consecutive: u32,
    },
    /// Not run again until its file or settings change.
    Quarantined,
}

struct Slot {
    spec: Arc<Spec>,
    instance: Option<Instance>,
    health: Health,
    last_run: Option<(u64, Instant)>,
    /// SLOWLOG entries read since this watcher last ran, in reads: each
    /// watcher has its own cursor, whatever its cadence.
    backlog: VecDeque<Arc<Vec<SlowEntry>>>,
    /// Entries in `backlog`.
    backlog_len: usize,
    /// Reads at the head of `backlog` already handed to a call that
    /// failed: on their second try, dropped with a report if it fails too.
    retried: usize,
    /// Its metric handles, with metrics on.
    metrics: Option<WatcherMetrics>,
}

/// Most SLOWLOG entries kept for one watcher between its runs, unless the
/// supervisor is given another bound (the daemon's is `slowlog_count`).
pub(crate) const BACKLOG_MAX: usize = 10_000;

/// How many SLOWLOG entries a watcher's backlog holds at most, and the key
/// that sets it, for messages.
#[derive(Debug, Clone, Copy)]
struct Bound {
    max: usize,
    key: Option<&'static str>,
}

impl Slot {
    /// Keeps `read` for the watcher's next run; drops the oldest entries
    /// beyond `bound` and says which ids went.
    fn keep(&mut self, read: &Arc<Vec<SlowEntry>>, bound: Bound) -> Option<Emitted> {
        self.backlog.push_back(read.clone());
        self.backlog_len += read.len();
        self.trim(bound)
    }

    /// Drops the oldest entries beyond `bound`, as a gap: one warn event
    /// with how many and their ids.
    fn trim(&mut self, bound: Bound) -> Option<Emitted> {
        let (dropped, first, last) = trim(
            &mut self.backlog,
            &mut self.backlog_len,
            &mut self.retried,
            bound.max,
        )?;
        let name = &self.spec.name;
        let max = bound.max;
        let key = bound.key.map(|k| format!(" ({k})")).unwrap_or_default();
        tracing::warn!(watcher = %name, dropped, "slowlog backlog over {max} entries{key}");
        Some(Emitted::host(
            Level::Warn,
            format!(
                "watcher {name} fell behind: {dropped} SLOWLOG entries (ids {first} to {last}) \
                 were dropped from its backlog, which keeps the newest {max}{key} until it runs"
            ),
            fields! {"watcher" => name.clone(), "missed" => dropped, "first_id" => first, "last_id" => last},
        ))
    }

    /// SLOWLOG reads handed to a call that failed: see [`hand_back`]; the
    /// backlog stays within `bound`.
    fn hand_back(&mut self, handed: VecDeque<Arc<Vec<SlowEntry>>>, bound: Bound) -> Vec<Emitted> {
        let twice = hand_back(
            &mut self.backlog,
            &mut self.backlog_len,
            &mut self.retried,
            handed,
        );
        let mut out: Vec<Emitted> = self.trim(bound).into_iter().collect();
        let Some((dropped, first, last)) = twice else {
            return out;
        };
        let name = &self.spec.name;
        tracing::warn!(watcher = %name, dropped, "slowlog entries dropped after two failed calls");
        out.push(Emitted::host(
            Level::Warn,
            if dropped == 1 {
                format!(
                    "watcher {name} failed twice on the same SLOWLOG entry (id {first}); it was \
                     dropped so that the watcher can go on"
                )
            } else {
                format!(
                    "watcher {name} failed twice on the same {dropped} SLOWLOG entries (ids \
                     {first} to {last}); they were dropped so that the watcher can go on"
                )
            },
            fields! {"watcher" => name.clone(), "missed" => dropped, "first_id" => first, "last_id" => last},
        ));
        out
    }
}

/// Drops the oldest entries of `backlog` beyond `max` (the oldest read may
/// be cut); returns how many went and their lowest and highest ids.
fn trim(
    backlog: &mut VecDeque<Arc<Vec<SlowEntry>>>,
    backlog_len: &mut usize,
    retried: &mut usize,
    max: usize,
) -> Option<(usize, u64, u64)> {
    let (mut dropped, mut first, mut last) = (0usize, u64::MAX, 0u64);
    while *backlog_len > max {
        let Some(old) = backlog.pop_front() else {
            break;
        };
        let over = *backlog_len - max;
        let (gone, kept) = old.split_at(over.min(old.len()));
        dropped += gone.len();
        *backlog_len -= gone.len();
        for e in gone {
            first = first.min(e.id);
            last = last.max(e.id);
        }
        if kept.is_empty() {
            *retried = retried.saturating_sub(1);
        } else {
            backlog.push_front(Arc::new(kept.to_vec()));
        }
    }
    (dropped > 0).then_some((dropped, first, last))
}

/// SLOWLOG reads handed to a call that failed go back to the head of the
/// watcher's backlog, ahead of newer reads, for its next run (a fresh
/// instance). The first `retried` of them had already been handed back
/// once: those are dropped instead, and how many entries and their id range
/// are returned.
fn hand_back(
    backlog: &mut VecDeque<Arc<Vec<SlowEntry>>>,
    backlog_len: &mut usize,
    retried: &mut usize,
    mut handed: VecDeque<Arc<Vec<SlowEntry>>>,
) -> Option<(usize, u64, u64)> {
    let twice: Vec<Arc<Vec<SlowEntry>>> = handed.drain(..(*retried).min(handed.len())).collect();
    *retried = handed.len();
    *backlog_len += handed.iter().map(|r| r.len()).sum::<usize>();
    let newer = std::mem::replace(backlog, handed);
    backlog.extend(newer);
    let dropped: usize = twice.iter().map(|r| r.len()).sum();
    let first = twice.iter().filter_map(|r| r.first()).map(|e| e.id).min()?;
    let last = twice.iter().filter_map(|r| r.last()).map(|e| e.id).max()?;
    Some((dropped, first, last))
}

/// A summary of one loaded watcher, for reloads.
#[derive(Debug, Clone)]
pub(crate) struct Listed {
    /// File name.
    pub name: String,
    /// Fingerprint of its file and settings.
    pub fingerprint: u64,
}

/// Runs and supervises one target's watchers.
pub(crate) struct Supervisor {
    engine: Engine,
    slots: Vec<Slot>,
    /// Poll interval, to plan the next poll's probes.
    interval: Duration,
    /// The target's metric handles, with metrics on.
    metrics: Option<Arc<TargetMetrics>>,
    /// SLOWLOG entries each watcher's backlog keeps at most.
    backlog: Bound,
}

impl Supervisor {
    /// An empty supervisor building instances with `engine`; `interval` is
    /// the poll interval, used to plan the next poll's probes.
    pub(crate) fn new(engine: Engine, interval: Duration) -> Self {
        Self {
            engine,
            slots: Vec::new(),
            interval,
            metrics: None,
            backlog: Bound {
                max: BACKLOG_MAX,
                key: None,
            },
        }
    }

    /// Keeps at most `max` SLOWLOG entries for each watcher between its
    /// runs (the target's `slowlog_count`: what one read fetches), older
    /// ones reported as dropped; a call is never handed more.
    #[must_use]
    pub(crate) fn with_backlog(mut self, max: usize) -> Self {
        self.backlog = Bound {
            max: max.max(1),
            key: Some("slowlog_count"),
        };
        self
    }

    /// Counts calls, failures, restarts and events into `metrics`.
    pub(crate) fn set_metrics(&mut self, metrics: Arc<TargetMetrics>) {
        for slot in &mut self.slots {
            slot.metrics = Some(metrics.watcher(&slot.spec.name));
        }
        self.metrics = Some(metrics);
    }

    /// Adds a watcher, or replaces the one with the same name (its state
    /// and any quarantine go with it). Without an `instance`, one is built
    /// before its first run.
    pub(crate) fn install(&mut self, spec: Arc<Spec>, instance: Option<Instance>) {
        let mut slot = Slot {
            spec,
            instance,
            health: Health::Healthy,
            last_run: None,
            backlog: VecDeque::new(),
            backlog_len: 0,
            retried: 0,
            metrics: None,
        };
        match self
            .slots
            .iter_mut()
            .find(|s| s.spec.name == slot.spec.name)
        {
            Some(existing) => {
                // Entries read for the old version are the new one's.
                if slot.spec.probes().slowlog {
                    slot.backlog = std::mem::take(&mut existing.backlog);
                    slot.backlog_len = existing.backlog_len;
                }
                // The same series go on (a new handle would be removed
                // when the old slot drops).
                slot.metrics = existing.metrics.take();
                if let Some(m) = &slot.metrics {
                    m.quarantined(false);
                }
                *existing = slot;
            }
            None => {
                slot.metrics = self.metrics.as_ref().map(|m| m.watcher(&slot.spec.name));
                self.slots.push(slot);
                self.slots.sort_by(|a, b| a.spec.name.cmp(&b.spec.name));
            }
        }
    }

    /// Unloads the watcher named `name`; whether it was there.
    pub(crate) fn remove(&mut self, name: &str) -> bool {
        let before = self.slots.len();
        self.slots.retain(|s| s.spec.name != name);
        self.slots.len() != before
    }

    /// Every INFO field and section the installed watchers read.
    pub(crate) fn info_needs(&self) -> (Vec<String>, Vec<String>) {
        let fields = self
            .slots
            .iter()
            .flat_map(|s| s.spec.manifest.needs.info_fields.iter().cloned())
            .collect();
        let sections = self
            .slots
            .iter()
            .flat_map(|s| s.spec.manifest.needs.info_sections.iter())
            .map(|s| s.to_ascii_lowercase())
            .collect();
        (fields, sections)
    }

    fn due(slot: &Slot, poll: u64, now: Instant) -> bool {
        let runnable = match slot.health {
            Health::Healthy | Health::Restarted { .. } => true,
            Health::Failing { .. } | Health::Quarantined => false,
        };
        runnable
            && match (slot.spec.cadence(), slot.last_run) {
                (_, None) | (Cadence::EveryPoll, _) => true,
                (Cadence::EveryPolls(n), Some((last, _))) => poll >= last + u64::from(n),
                (Cadence::Interval(every), Some((_, at))) => {
                    now.saturating_duration_since(at) >= every
                }
            }
    }

    /// Probes needed by the watchers due at poll number `poll` at `now`.
    pub(crate) fn plan(&self, poll: u64, now: Instant) -> Probes {
        self.slots.iter().filter(|s| Self::due(s, poll, now)).fold(
            Probes::default(),
            |mut acc, s| {
                acc.merge(s.spec.probes());
                acc
            },
        )
    }

    /// Runs the watchers due at `poll` whose needs the snapshot covers, one
    /// after the other, each under its own deadline, and returns their
    /// capped events, the host's notices about failures, restarts and
    /// quarantines, and the probes the next poll will need.
    pub(crate) async fn poll(
        &mut self,
        poll: u64,
        instance: &str,
        snapshot: &Snapshot,
    ) -> (Vec<Emitted>, Probes) {
        let now = Instant::now();
        let mut out = Vec::new();
        let have = &snapshot.probes;
        let read = snapshot
            .slowlog
            .as_ref()
            .filter(|entries| have.slowlog && !entries.is_empty())
            .map(|entries| Arc::new(entries.clone()));
        for slot in &mut self.slots {
            let needs = slot.spec.probes();
            let covered = have.covers(needs);
            if let Some(read) = &read
                && needs.slowlog
            {
                out.extend(slot.keep(read, self.backlog));
            }
            // Not covered: the plan missed it (cadence by time); next poll.
            if !covered || !Self::due(slot, poll, now) {
                continue;
            }
            slot.last_run = Some((poll, now));
            let name = slot.spec.name.clone();
            let handed = std::mem::take(&mut slot.backlog);
            slot.backlog_len = 0;
            let view = slot.spec.view_with(
                instance,
                snapshot,
                have.slowlog
                    .then(|| handed.iter().flat_map(|read| read.iter())),
            );
            let called = Instant::now();
            let result = match slot.instance.as_mut() {
                Some(live) => live.observe(&view).await,
                None => match slot.spec.instantiate(&self.engine).await {
                    Ok(mut live) => {
                        let result = live.observe(&view).await;
                        slot.instance = Some(live);
                        result
                    }
                    Err(trap) => Err(trap),
                },
            };
            match result {
                Ok(events) => {
                    slot.retried = 0;
                    let spec = &slot.spec;
                    let (emitted, cut) = cap(&spec.name, &spec.manifest.name, events, &spec.limits);
                    if let Some(m) = &slot.metrics {
                        m.called(called.elapsed(), Some(&emitted));
                    }
                    out.extend(emitted);
                    if cut.any() {
                        tracing::warn!(watcher = %name, ?cut, "watcher output over its caps");
                        out.push(Emitted::host(
                            Level::Warn,
                            format!(
                                "watcher {name} output over its caps: {} events cut, {} messages \
                                 and {} values truncated, {} fields dropped, {} fields dropped for \
                                 their names, {} invalid conditions dropped",
                                cut.events,
                                cut.msgs,
                                cut.values,
                                cut.fields,
                                cut.names,
                                cut.conditions
                            ),
                            fields! {
                                "watcher" => name.clone(),
                                "events_dropped" => cut.events,
                                "msgs_truncated" => cut.msgs,
                                "fields_dropped" => cut.fields,
                                "values_truncated" => cut.values,
                                "names_dropped" => cut.names,
                                "conditions_dropped" => cut.conditions,
                            },
                        ));
                    }
                    if let Health::Restarted { consecutive } = slot.health {
                        tracing::info!(watcher = %name, "watcher recovered");
                        out.push(Emitted::host(
                            Level::Info,
                            format!("watcher {name} recovered after {consecutive} failure(s)"),
                            fields! {"watcher" => name, "failures" => consecutive},
                        ));
                        slot.health = Health::Healthy;
                    }
                }
                Err(trap) => {
                    if let Some(m) = &slot.metrics {
                        m.called(called.elapsed(), None);
                    }
                    // Never enter an instance again after a failure.
                    slot.instance = None;
                    let consecutive = match slot.health {
                        Health::Restarted { consecutive } => consecutive + 1,
                        _ => 1,
                    };
                    out.extend(Self::failed(slot, poll, consecutive, &trap));
                    if have.slowlog && !handed.is_empty() {
                        out.extend(slot.hand_back(handed, self.backlog));
                    }
                }
            }
        }
        self.restart_due(poll, &mut out).await;
        // A refused growth of any target's instance is reported once, by
        // the first supervisor to poll after it.
        out.extend(self.engine.fleet_notices());
        let next = self.plan(poll + 1, Instant::now() + self.interval);
        (out, next)
    }

    /// Records a failure: backs off or quarantines, and reports it once.
    fn failed(slot: &mut Slot, poll: u64, consecutive: u32, trap: &Trap) -> Option<Emitted> {
        let name = slot.spec.name.clone();
        let reason = trap.to_string();
        let limit = slot.spec.limits.quarantine_after;
        if consecutive >= limit {
            slot.health = Health::Quarantined;
            if let Some(m) = &slot.metrics {
                m.quarantined(true);
            }
            tracing::error!(watcher = %name, %reason, "watcher quarantined after {consecutive} failures");
            return Some(Emitted::host(
                Level::Error,
                format!(
                    "watcher {name} quarantined after {consecutive} consecutive failures: {reason}; \
                     replace its .wasm or change its settings to run it again"
                ),
                fields! {"watcher" => name, "reason" => reason, "failures" => consecutive, "state" => "quarantined"},
            ));
        }
        // Restart before the next poll, then wait 1, 3, 7... polls.
        let wait = (1u64 << (consecutive - 1).min(16)) - 1;
        slot.health = Health::Failing {
            consecutive,
            retry_at: poll + wait,
            reason: reason.clone(),
        };
        tracing::error!(watcher = %name, %reason, consecutive, "watcher failed; instance dropped");
        Some(Emitted::host(
            Level::Error,
            format!("watcher {name} failed: {reason}; its instance was dropped and its state lost"),
            fields! {"watcher" => name, "reason" => reason, "failures" => consecutive, "state" => "failed"},
        ))
    }

    async fn restart_due(&mut self, poll: u64, out: &mut Vec<Emitted>) {
        for slot in &mut self.slots {
            let Health::Failing {
                consecutive,
                retry_at,
                ref reason,
            } = slot.health
            else {
                continue;
            };
            if poll < retry_at {
                continue;
            }
            let reason = reason.clone();
            let name = slot.spec.name.clone();
            let started = Instant::now();
            match slot.spec.instantiate(&self.engine).await {
                Ok(instance) => {
                    let took = started.elapsed();
                    slot.instance = Some(instance);
                    slot.health = Health::Restarted { consecutive };
                    if let Some(m) = &slot.metrics {
                        m.restarted();
                    }
                    tracing::info!(watcher = %name, restart_us = took.as_micros(), "watcher restarted");
                    out.push(Emitted::host(
                        Level::Info,
                        format!("watcher {name} restarted with a fresh instance (state lost) after: {reason}"),
                        fields! {
                            "watcher" => name,
                            "reason" => reason,
                            "restart_us" => u64::try_from(took.as_micros()).unwrap_or(u64::MAX),
                            "state" => "restarted",
                        },
                    ));
                }
                Err(trap) => {
                    let trap = Trap::Other(format!("restart failed: {trap}"));
                    out.extend(Self::failed(slot, poll, consecutive + 1, &trap));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(ids: &[u64]) -> Arc<Vec<SlowEntry>> {
        Arc::new(
            ids.iter()
                .map(|&id| SlowEntry {
                    id,
                    ..SlowEntry::default()
                })
                .collect(),
        )
    }

    fn ids(backlog: &VecDeque<Arc<Vec<SlowEntry>>>) -> Vec<u64> {
        backlog
            .iter()
            .flat_map(|r| r.iter().map(|e| e.id))
            .collect()
    }

    #[test]
    fn entries_of_a_failed_call_are_handed_once_more_then_dropped() {
        let (mut backlog, mut len, mut retried) = (VecDeque::new(), 0, 0);
        // The call with 1..=3 fails: they go back, ahead of a newer read.
        let handed = VecDeque::from([read(&[1, 2]), read(&[3])]);
        assert_eq!(
            hand_back(&mut backlog, &mut len, &mut retried, handed),
            None
        );
        backlog.push_back(read(&[4]));
        len += 1;
        assert_eq!((ids(&backlog), len, retried), (vec![1, 2, 3, 4], 4, 2));
        // The fresh instance fails too: 1..=3 are dropped and said; 4,
        // handed once, gets its second try.
        let handed = std::mem::take(&mut backlog);
        len = 0;
        assert_eq!(
            hand_back(&mut backlog, &mut len, &mut retried, handed),
            Some((3, 1, 3))
        );
        assert_eq!((ids(&backlog), len, retried), (vec![4], 1, 1));
    }

    /// A backlog over its bound loses its oldest entries, cutting a read
    /// when needed, and says how many and which ids.
    #[test]
    fn a_backlog_keeps_the_newest_entries() {
        let mut backlog = VecDeque::from([read(&[1, 2, 3]), read(&[4, 5]), read(&[6])]);
        let (mut len, mut retried) = (6, 2);
        assert_eq!(trim(&mut backlog, &mut len, &mut retried, 6), None);
        assert_eq!(
            trim(&mut backlog, &mut len, &mut retried, 2),
            Some((4, 1, 4))
        );
        assert_eq!((ids(&backlog), len, retried), (vec![5, 6], 2, 1));
    }
}

//! The supervisor: owns every loaded watcher, decides which are due, runs
//! them and handles their failures: a trapped watcher is rebuilt before its
//! next poll, repeated failures back off, and K in a row quarantine it until
//! it changes. Its methods call into wasm, so they must run outside the
//! async runtime's context (synchronous WASI calls block on a runtime of
//! their own).

use std::time::{Duration, Instant};

use serde_json::{Map, Value};

use crate::envelope::{HOST_TARGET, Level};
use crate::fields;
use crate::limits::Cadence;
use crate::output::{Emitted, cap};
use crate::plugin::Runtime;
use crate::probe::{Probes, Snapshot};
use crate::watcher::Watcher;

/// Health of one watcher.
#[derive(Debug, Clone)]
enum Health {
    Healthy,
    /// Trapped `consecutive` times in a row; rebuilt at poll `retry_at`.
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
    watcher: Watcher,
    health: Health,
    last_run: Option<(u64, Instant)>,
}

/// A summary of one loaded watcher, for reloads and status.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// File name.
    pub name: String,
    /// Fingerprint of its file and settings.
    pub fingerprint: u64,
}

/// Runs and supervises the loaded watchers.
pub struct Supervisor {
    runtime: Runtime,
    slots: Vec<Slot>,
    /// Poll interval, to plan the next poll's probes.
    interval: Duration,
}

fn notice(level: Level, msg: String, fields: Map<String, Value>) -> Emitted {
    Emitted {
        level,
        target: HOST_TARGET.to_owned(),
        msg,
        fields,
    }
}

impl Supervisor {
    /// Supervises `watchers`, rebuilding them with `runtime`; `interval`
    /// is the poll interval, used to plan the next poll's probes.
    pub fn new(runtime: Runtime, watchers: Vec<Watcher>, interval: Duration) -> Self {
        let slots = watchers
            .into_iter()
            .map(|watcher| Slot {
                watcher,
                health: Health::Healthy,
                last_run: None,
            })
            .collect();
        Self {
            runtime,
            slots,
            interval,
        }
    }

    /// Unloads the watcher named `name`.
    pub fn remove(&mut self, name: &str) -> Vec<Emitted> {
        let before = self.slots.len();
        self.slots.retain(|s| s.watcher.name != name);
        if self.slots.len() == before {
            return Vec::new();
        }
        tracing::info!(watcher = %name, "watcher unloaded");
        vec![notice(
            Level::Info,
            format!("watcher {name} unloaded (its file was removed)"),
            fields! {"watcher" => name},
        )]
    }

    /// The loaded watchers.
    pub fn list(&self) -> Vec<Loaded> {
        self.slots
            .iter()
            .map(|s| Loaded {
                name: s.watcher.name.clone(),
                fingerprint: s.watcher.fingerprint,
            })
            .collect()
    }

    fn due(slot: &Slot, poll: u64, now: Instant) -> bool {
        let runnable = match slot.health {
            Health::Healthy | Health::Restarted { .. } => slot.watcher.is_live(),
            Health::Failing { .. } | Health::Quarantined => false,
        };
        runnable
            && match (slot.watcher.cadence(), slot.last_run) {
                (_, None) | (Cadence::EveryPoll, _) => true,
                (Cadence::EveryPolls(n), Some((last, _))) => poll >= last + u64::from(n),
                (Cadence::Interval(every), Some((_, at))) => {
                    now.saturating_duration_since(at) >= every
                }
            }
    }

    /// Probes needed by the watchers due at poll number `poll` at `now`.
    pub fn plan(&self, poll: u64, now: Instant) -> Probes {
        self.slots
            .iter()
            .filter(|s| Self::due(s, poll, now))
            .fold(Probes::default(), |acc, s| {
                let p = s.watcher.probes();
                Probes {
                    info: acc.info || p.info,
                    slowlog: acc.slowlog || p.slowlog,
                }
            })
    }

    /// Runs the watchers due at `poll` whose needs the snapshot covers and
    /// returns their capped events, the host's notices about failures,
    /// restarts and quarantines, and the probes the next poll will need.
    pub fn poll(
        &mut self,
        poll: u64,
        instance: &str,
        snapshot: &Snapshot,
    ) -> (Vec<Emitted>, Probes) {
        let now = Instant::now();
        let mut out = Vec::new();
        let have = snapshot.probes;
        for slot in &mut self.slots {
            let needs = slot.watcher.probes();
            let covered = (have.info || !needs.info) && (have.slowlog || !needs.slowlog);
            // Not covered: the plan missed it (cadence by time); next poll.
            if !covered || !Self::due(slot, poll, now) {
                continue;
            }
            slot.last_run = Some((poll, now));
            let name = slot.watcher.name.clone();
            match slot.watcher.observe(instance, snapshot) {
                Ok(events) => {
                    let (emitted, cut) =
                        cap(&slot.watcher.manifest.name, events, &slot.watcher.limits);
                    out.extend(emitted);
                    if cut.any() {
                        tracing::warn!(watcher = %name, ?cut, "watcher output over its caps");
                        out.push(notice(
                            Level::Warn,
                            format!("watcher {name} output over its caps; cut"),
                            fields! {
                                "watcher" => name.clone(),
                                "events_dropped" => cut.events,
                                "msgs_truncated" => cut.msgs,
                                "fields_dropped" => cut.fields,
                                "values_truncated" => cut.values,
                            },
                        ));
                    }
                    if let Health::Restarted { consecutive } = slot.health {
                        tracing::info!(watcher = %name, "watcher recovered");
                        out.push(notice(
                            Level::Info,
                            format!("watcher {name} recovered after {consecutive} failure(s)"),
                            fields! {"watcher" => name, "failures" => consecutive},
                        ));
                        slot.health = Health::Healthy;
                    }
                }
                Err(trap) => {
                    let consecutive = match slot.health {
                        Health::Restarted { consecutive } => consecutive + 1,
                        _ => 1,
                    };
                    out.extend(Self::failed(slot, poll, consecutive, trap.0));
                }
            }
        }
        self.restart_due(poll, &mut out);
        let next = self.plan(poll + 1, Instant::now() + self.interval);
        (out, next)
    }

    /// Records a failure: backs off or quarantines, and reports it once.
    fn failed(slot: &mut Slot, poll: u64, consecutive: u32, reason: String) -> Option<Emitted> {
        let name = slot.watcher.name.clone();
        let limit = slot.watcher.limits.quarantine_after;
        if consecutive >= limit {
            slot.health = Health::Quarantined;
            tracing::error!(watcher = %name, %reason, "watcher quarantined after {consecutive} failures");
            return Some(notice(
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
        Some(notice(
            Level::Error,
            format!("watcher {name} failed: {reason}; its instance was dropped and its state lost"),
            fields! {"watcher" => name, "reason" => reason, "failures" => consecutive, "state" => "failed"},
        ))
    }

    fn restart_due(&mut self, poll: u64, out: &mut Vec<Emitted>) {
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
            let name = slot.watcher.name.clone();
            let started = Instant::now();
            match slot.watcher.restart(&self.runtime) {
                Ok(()) => {
                    let took = started.elapsed();
                    slot.health = Health::Restarted { consecutive };
                    tracing::info!(watcher = %name, restart_us = took.as_micros(), "watcher restarted");
                    out.push(notice(
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
                Err(error) => out.extend(Self::failed(slot, poll, consecutive + 1, error)),
            }
        }
    }

    /// Adds a watcher, or replaces the one with the same name (its state
    /// and any quarantine go with it).
    pub fn install(&mut self, watcher: Watcher) -> Vec<Emitted> {
        let name = watcher.name.clone();
        let version = watcher.manifest.version.clone();
        let file = watcher.file.display().to_string();
        let slot = Slot {
            watcher,
            health: Health::Healthy,
            last_run: None,
        };
        let (verb, msg) = match self.slots.iter_mut().find(|s| s.watcher.name == name) {
            Some(existing) => {
                *existing = slot;
                ("reloaded", format!("watcher {name} {version} reloaded"))
            }
            None => {
                self.slots.push(slot);
                self.slots
                    .sort_by(|a, b| a.watcher.name.cmp(&b.watcher.name));
                ("loaded", format!("watcher {name} {version} loaded"))
            }
        };
        tracing::info!(watcher = %name, %version, %file, "watcher {verb}");
        vec![notice(
            Level::Info,
            msg,
            fields! {"watcher" => name, "version" => version, "file" => file},
        )]
    }
}

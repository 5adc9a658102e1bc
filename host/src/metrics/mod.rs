//! The daemon's own metrics and health, served when `metrics_addr` is set
//! (see [`serve`]). Pollers, supervisors and the publisher task hold
//! handles resolved once (per target, per watcher slot), so a poll only
//! touches atomics and its histograms, never a label map; with metrics off
//! they hold `None` and do nothing.
//!
//! Series: per target (`target`), per target and watcher (`target`,
//! `watcher`, and `level` for events), the publisher's and `build_info`.
//! A target's series go when its poller stops, a watcher's when it is
//! unloaded, so their number stays targets x watchers x 4 levels.

pub(crate) mod serve;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::alerts::active::Active;
use crate::delivery::breaker::State;
use crate::delivery::envelope::{Emitted, Level};
use crate::delivery::task::{Observer, Snapshot};

/// Intervals without a completed poll (or a delivery, with envelopes
/// waiting) after which `/healthz` answers 503.
pub(crate) const STALE_INTERVALS: u32 = 3;

/// A label value from outside (a target's name, a watcher's file name, a
/// discover entry): backslash, double quote and newline are written as
/// `\\`, `\"` and `\n`, as the text format wants and prometheus-client
/// leaves to the caller, so a scraper reads back the original text.
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
struct Text(String);

impl From<&str> for Text {
    fn from(s: &str) -> Self {
        Self(s.to_owned())
    }
}

impl EncodeLabelValue for Text {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> std::fmt::Result {
        use std::fmt::Write;
        let mut rest = self.0.as_str();
        while let Some(at) = rest.find(['\\', '"', '\n']) {
            encoder.write_str(&rest[..at])?;
            encoder.write_str(match rest.as_bytes()[at] {
                b'\\' => "\\\\",
                b'"' => "\\\"",
                _ => "\\n",
            })?;
            rest = &rest[at + 1..];
        }
        encoder.write_str(rest)
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TargetLabels {
    target: Text,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WatcherLabels {
    target: Text,
    watcher: Text,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EventLabels {
    target: Text,
    watcher: Text,
    level: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ConditionLabels {
    watcher: Text,
    level: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DiscoverLabels {
    discover: Text,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: Text,
    abi: Text,
}

type Histograms<S> = Family<S, Histogram, fn() -> Histogram>;

/// Poll and call durations: 1 ms to about 33 s.
fn durations() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 16))
}

/// Lateness: 1 ms to about 8 s.
fn lateness() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 14))
}

const LEVELS: [Level; 4] = [Level::Debug, Level::Info, Level::Warn, Level::Error];

/// Every metric the daemon exports, and what `/healthz` decides on.
pub(crate) struct Metrics {
    registry: Registry,
    target_up: Family<TargetLabels, Gauge>,
    polls: Family<TargetLabels, Counter>,
    probe_errors: Family<TargetLabels, Counter>,
    poll_duration: Histograms<TargetLabels>,
    poll_lateness: Histograms<TargetLabels>,
    /// The p99 of the last `polls-late` window, every target together.
    poll_lateness_p99: Gauge<f64, AtomicU64>,
    watcher_calls: Family<WatcherLabels, Counter>,
    watcher_call_duration: Histograms<WatcherLabels>,
    watcher_failures: Family<WatcherLabels, Counter>,
    watcher_restarts: Family<WatcherLabels, Counter>,
    watcher_quarantined: Family<WatcherLabels, Gauge>,
    watcher_events: Family<EventLabels, Counter>,
    outbox_envelopes: Gauge,
    outbox_bytes: Gauge,
    delivered: Counter,
    dropped: Counter,
    spooled: Counter,
    breaker_state: Gauge,
    discover_refused: Family<DiscoverLabels, Gauge>,
    discover_cut: Family<DiscoverLabels, Gauge>,
    conditions_active: Family<ConditionLabels, Gauge>,
    /// The active set, read at each scrape.
    conditions: std::sync::OnceLock<Arc<Active>>,
    /// Clocks start here: the `*_ms` fields count from it.
    epoch: Instant,
    /// The poll interval: how stale is stale.
    interval: Duration,
    /// Each polled target's generation (a target started again gets a new
    /// one, so the old poller's late drop leaves the new series alone) and
    /// what its poller last reported (the status page reads it).
    targets: Mutex<HashMap<String, (u64, Arc<Seen>)>>,
    generation: AtomicU64,
    /// Delivered and dropped so far, as last read from the publisher.
    seen_delivered: AtomicU64,
    seen_dropped: AtomicU64,
    /// When the outbox was last empty or last delivered something.
    progress_ms: AtomicU64,
    /// When the breaker last left the closed state.
    breaker_since_ms: AtomicU64,
}

impl Metrics {
    /// Registers every metric; `interval` is the poll interval, `version`
    /// and `abi` go into `lookout_build_info`.
    pub(crate) fn new(interval: Duration, version: &str, abi: &str) -> Self {
        let mut registry = Registry::with_prefix("lookout");
        let m = Self {
            target_up: Family::default(),
            polls: Family::default(),
            probe_errors: Family::default(),
            poll_duration: Family::new_with_constructor(durations),
            poll_lateness: Family::new_with_constructor(lateness),
            poll_lateness_p99: Gauge::default(),
            watcher_calls: Family::default(),
            watcher_call_duration: Family::new_with_constructor(durations),
            watcher_failures: Family::default(),
            watcher_restarts: Family::default(),
            watcher_quarantined: Family::default(),
            watcher_events: Family::default(),
            outbox_envelopes: Gauge::default(),
            outbox_bytes: Gauge::default(),
            delivered: Counter::default(),
            dropped: Counter::default(),
            spooled: Counter::default(),
            breaker_state: Gauge::default(),
            discover_refused: Family::default(),
            discover_cut: Family::default(),
            conditions_active: Family::default(),
            conditions: std::sync::OnceLock::new(),
            registry: Registry::default(),
            epoch: Instant::now(),
            interval,
            targets: Mutex::new(HashMap::new()),
            generation: AtomicU64::new(0),
            seen_delivered: AtomicU64::new(0),
            seen_dropped: AtomicU64::new(0),
            progress_ms: AtomicU64::new(0),
            breaker_since_ms: AtomicU64::new(0),
        };
        let r = &mut registry;
        r.register(
            "target_up",
            "1 when the target's last poll succeeded, 0 when it failed",
            m.target_up.clone(),
        );
        r.register(
            "polls",
            "Polls finished, failed ones included",
            m.polls.clone(),
        );
        r.register(
            "probe_errors",
            "Polls that failed: the Redis was unreachable, refused or answered wrong",
            m.probe_errors.clone(),
        );
        r.register(
            "poll_duration_seconds",
            "Time one poll took: probes, watcher calls, queueing",
            m.poll_duration.clone(),
        );
        r.register(
            "poll_lateness_seconds",
            "How late a poll started against its schedule (from the second poll on)",
            m.poll_lateness.clone(),
        );
        r.register(
            "poll_lateness_p99_seconds",
            "p99 of how late polls started over the last polls-late window, every target together",
            m.poll_lateness_p99.clone(),
        );
        r.register(
            "watcher_calls",
            "Watcher observe calls",
            m.watcher_calls.clone(),
        );
        r.register(
            "watcher_call_duration_seconds",
            "Time one watcher call took (instantiation included when it had none)",
            m.watcher_call_duration.clone(),
        );
        r.register(
            "watcher_failures",
            "Watcher calls that trapped, timed out or failed to instantiate",
            m.watcher_failures.clone(),
        );
        r.register(
            "watcher_restarts",
            "Watcher instances rebuilt after a failure",
            m.watcher_restarts.clone(),
        );
        r.register(
            "watcher_quarantined",
            "1 while the watcher is quarantined on the target",
            m.watcher_quarantined.clone(),
        );
        r.register(
            "watcher_events",
            "Events the watcher emitted (after its caps), by level",
            m.watcher_events.clone(),
        );
        r.register(
            "outbox_envelopes",
            "Envelopes waiting in the outbox",
            m.outbox_envelopes.clone(),
        );
        r.register(
            "outbox_bytes",
            "Bytes of the envelopes waiting in the outbox",
            m.outbox_bytes.clone(),
        );
        r.register(
            "envelopes_delivered",
            "Envelopes the bus confirmed",
            m.delivered.clone(),
        );
        r.register(
            "envelopes_dropped",
            "Envelopes dropped by the outbox policy",
            m.dropped.clone(),
        );
        r.register(
            "envelopes_spooled",
            "Envelopes written to the spool at shutdown",
            m.spooled.clone(),
        );
        r.register(
            "breaker_state",
            "Publish circuit breaker: 0 closed, 1 half-open, 2 open",
            m.breaker_state.clone(),
        );
        r.register(
            "discover_nodes_refused",
            "Nodes the discover entry's last answer announced outside its `allow`, never contacted",
            m.discover_refused.clone(),
        );
        r.register(
            "discover_nodes_cut",
            "Nodes the discover entry's last answer listed beyond its `max_nodes`, not watched",
            m.discover_cut.clone(),
        );
        r.register(
            "conditions_active",
            "Conditions firing now (watchers' and the host's own, watcher `lookout`), by level",
            m.conditions_active.clone(),
        );
        let build: Family<BuildLabels, Gauge> = Family::default();
        build
            .get_or_create(&BuildLabels {
                version: version.into(),
                abi: abi.into(),
            })
            .set(1);
        r.register("build_info", "Version and watcher ABI; always 1", build);
        Self { registry, ..m }
    }

    /// What discover entry `discover` (as it describes itself) left out of
    /// its last answer.
    pub(crate) fn discover_nodes(&self, discover: &str, refused: usize, cut: usize) {
        let labels = DiscoverLabels {
            discover: discover.into(),
        };
        let gauge = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
        self.discover_refused
            .get_or_create(&labels)
            .set(gauge(refused));
        self.discover_cut.get_or_create(&labels).set(gauge(cut));
    }

    /// The p99 lateness of the last `polls-late` window.
    pub(crate) fn lateness_p99(&self, p99: Duration) {
        self.poll_lateness_p99.set(p99.as_secs_f64());
    }

    /// Counts the conditions of `active` in `lookout_conditions_active`.
    pub(crate) fn count_conditions(&self, active: Arc<Active>) {
        let _ = self.conditions.set(active);
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// The handles of a target's poller: its series exist from now on
    /// and go when the last handle is dropped.
    pub(crate) fn target(self: &Arc<Self>, key: &str) -> Arc<TargetMetrics> {
        let labels = TargetLabels { target: key.into() };
        let generation = self.generation.fetch_add(1, Ordering::Relaxed);
        // Its first poll is due within one interval.
        let interval_ms = u64::try_from(self.interval.as_millis()).unwrap_or(u64::MAX);
        let seen = Arc::new(Seen {
            clock: AtomicU64::new(self.now_ms().saturating_add(interval_ms)),
            ..Seen::default()
        });
        self.targets
            .lock()
            .expect("not poisoned")
            .insert(key.to_owned(), (generation, seen.clone()));
        Arc::new(TargetMetrics {
            up: self.target_up.get_or_create(&labels).clone(),
            polls: self.polls.get_or_create(&labels).clone(),
            probe_errors: self.probe_errors.get_or_create(&labels).clone(),
            duration: self.poll_duration.get_or_create(&labels).clone(),
            lateness: self.poll_lateness.get_or_create(&labels).clone(),
            metrics: self.clone(),
            labels,
            generation,
            seen,
        })
    }

    /// Whether `generation` is still the live one of `key`.
    fn current(&self, key: &str, generation: u64) -> bool {
        self.targets
            .lock()
            .expect("not poisoned")
            .get(key)
            .is_some_and(|(g, _)| *g == generation)
    }

    /// The registry in the OpenMetrics text format.
    ///
    /// # Errors
    /// Formatting failed (it writes to a `String`, so it does not).
    pub(crate) fn encode(&self) -> Result<String, std::fmt::Error> {
        if let Some(active) = self.conditions.get() {
            self.conditions_active.clear();
            for ((watcher, level), n) in active.counts() {
                let labels = ConditionLabels {
                    watcher: watcher.as_str().into(),
                    level: level.as_str(),
                };
                self.conditions_active
                    .get_or_create(&labels)
                    .set(i64::try_from(n).unwrap_or(i64::MAX));
            }
        }
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }

    /// `Ok` while every target completed a poll within the last
    /// [`STALE_INTERVALS`] intervals and the publisher is not stuck (no
    /// envelope waiting, or one delivered within as long); otherwise why.
    ///
    /// # Errors
    /// The reasons it is unhealthy, joined by `; `.
    pub(crate) fn health(&self) -> Result<(), String> {
        let now = self.now_ms();
        let stale = self.interval * STALE_INTERVALS;
        let stale_ms = u64::try_from(stale.as_millis()).unwrap_or(u64::MAX);
        let mut reasons = Vec::new();
        {
            let targets = self.targets.lock().expect("not poisoned");
            let behind = targets
                .values()
                .filter(|(_, seen)| {
                    now.saturating_sub(seen.clock.load(Ordering::Relaxed)) > stale_ms
                })
                .count();
            if behind > 0 {
                reasons.push(format!(
                    "no poll completed for {STALE_INTERVALS} intervals ({:.1} s) on {behind} of {} targets",
                    stale.as_secs_f64(),
                    targets.len()
                ));
            }
        }
        let pending = self.outbox_envelopes.get();
        let idle_ms = now.saturating_sub(self.progress_ms.load(Ordering::Relaxed));
        if pending > 0 && idle_ms > stale_ms {
            let breaker = match self.breaker_state.get() {
                0 => "closed".to_owned(),
                code => {
                    let state = if code == 1 { "half-open" } else { "open" };
                    let since = now.saturating_sub(self.breaker_since_ms.load(Ordering::Relaxed));
                    format!("{state} for {} s", since / 1000)
                }
            };
            reasons.push(format!(
                "publisher: {pending} envelopes waiting, none delivered for {} s, breaker {breaker}",
                idle_ms / 1000
            ));
        }
        if reasons.is_empty() {
            Ok(())
        } else {
            Err(reasons.join("; "))
        }
    }
}

/// `Seen::up` before the first poll ended.
const STARTING: u8 = 0;
/// `Seen::up` after a poll that completed.
const UP: u8 = 1;
/// `Seen::up` after a poll that failed.
const DOWN: u8 = 2;

/// What a target's poller last reported, for `/healthz` and the status
/// page: atomics a poll stores into, and two small maps taken only when a
/// watcher comes or goes or the target's labels change.
#[derive(Debug, Default)]
struct Seen {
    /// When its last poll completed, in ms from the metrics' epoch (before
    /// the first: when that one is due).
    clock: AtomicU64,
    /// When its last poll ended, in ms since the Unix epoch; 0 before.
    polled_ms: AtomicU64,
    /// [`STARTING`], [`UP`] or [`DOWN`].
    up: AtomicU8,
    /// How late its last poll started.
    lateness_ms: AtomicU64,
    /// Its `host:port` and labels.
    about: Mutex<(String, BTreeMap<String, String>)>,
    /// Its watchers' restart counters and quarantine gauges, by name.
    watchers: Mutex<BTreeMap<String, (Counter, Gauge)>>,
}

/// One polled target as its poller last reported it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TargetSeen {
    pub key: String,
    pub instance: String,
    pub labels: BTreeMap<String, String>,
    /// `None` before its first poll ended; then whether it completed.
    pub up: Option<bool>,
    /// When its last poll ended.
    pub last_poll: Option<SystemTime>,
    pub lateness_ms: u64,
    /// Each watcher's name, restarts and whether it is quarantined.
    pub watchers: Vec<(String, u64, bool)>,
}

/// What the publisher last reported, for the status page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PublisherSeen {
    /// `closed`, `half-open` or `open`.
    pub breaker: &'static str,
    pub outbox: u64,
    pub dropped: u64,
}

impl Metrics {
    /// Every polled target as its poller last reported it, in no order.
    pub(crate) fn targets_seen(&self) -> Vec<TargetSeen> {
        let targets = self.targets.lock().expect("not poisoned");
        targets
            .iter()
            .map(|(key, (_, seen))| {
                let (instance, labels) = seen.about.lock().expect("not poisoned").clone();
                let polled = seen.polled_ms.load(Ordering::Relaxed);
                TargetSeen {
                    key: key.clone(),
                    instance,
                    labels,
                    up: match seen.up.load(Ordering::Relaxed) {
                        STARTING => None,
                        code => Some(code == UP),
                    },
                    last_poll: (polled > 0).then(|| UNIX_EPOCH + Duration::from_millis(polled)),
                    lateness_ms: seen.lateness_ms.load(Ordering::Relaxed),
                    watchers: seen
                        .watchers
                        .lock()
                        .expect("not poisoned")
                        .iter()
                        .map(|(name, (restarts, quarantined))| {
                            (name.clone(), restarts.get(), quarantined.get() != 0)
                        })
                        .collect(),
                }
            })
            .collect()
    }

    /// The publisher's breaker, outbox and drops as last reported.
    pub(crate) fn publisher_seen(&self) -> PublisherSeen {
        PublisherSeen {
            breaker: match self.breaker_state.get() {
                0 => "closed",
                1 => "half-open",
                _ => "open",
            },
            outbox: u64::try_from(self.outbox_envelopes.get()).unwrap_or(0),
            dropped: self.dropped.get(),
        }
    }
}

/// One target's handles, held by its poller (and its supervisor).
pub struct TargetMetrics {
    metrics: Arc<Metrics>,
    labels: TargetLabels,
    generation: u64,
    /// What its poller last reported.
    seen: Arc<Seen>,
    up: Gauge,
    polls: Counter,
    probe_errors: Counter,
    duration: Histogram,
    lateness: Histogram,
}

impl TargetMetrics {
    /// A poll ended after `took`; `ok` when it completed.
    pub fn polled(&self, took: Duration, ok: bool) {
        self.polls.inc();
        self.duration.observe(took.as_secs_f64());
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        self.seen.polled_ms.store(wall, Ordering::Relaxed);
        if ok {
            self.up.set(1);
            self.seen.up.store(UP, Ordering::Relaxed);
            self.seen
                .clock
                .store(self.metrics.now_ms(), Ordering::Relaxed);
        } else {
            self.up.set(0);
            self.seen.up.store(DOWN, Ordering::Relaxed);
            self.probe_errors.inc();
        }
    }

    /// A poll started `late` after it was due.
    pub fn late(&self, late: Duration) {
        self.lateness.observe(late.as_secs_f64());
        let ms = u64::try_from(late.as_millis()).unwrap_or(u64::MAX);
        self.seen.lateness_ms.store(ms, Ordering::Relaxed);
    }

    /// The target is at `instance` (`host:port`) with `labels` (again
    /// when its labels change).
    pub(crate) fn describe(&self, instance: &str, labels: &BTreeMap<String, String>) {
        *self.seen.about.lock().expect("not poisoned") = (instance.to_owned(), labels.clone());
    }

    /// The handles of the watcher `name` on this target.
    pub fn watcher(self: &Arc<Self>, name: &str) -> WatcherMetrics {
        let m = &self.metrics;
        let labels = WatcherLabels {
            target: self.labels.target.clone(),
            watcher: name.into(),
        };
        let events = LEVELS.map(|level| {
            m.watcher_events
                .get_or_create(&EventLabels {
                    target: labels.target.clone(),
                    watcher: labels.watcher.clone(),
                    level: level.as_str(),
                })
                .clone()
        });
        let restarts = m.watcher_restarts.get_or_create(&labels).clone();
        let quarantined = m.watcher_quarantined.get_or_create(&labels).clone();
        self.seen
            .watchers
            .lock()
            .expect("not poisoned")
            .insert(name.to_owned(), (restarts.clone(), quarantined.clone()));
        WatcherMetrics {
            calls: m.watcher_calls.get_or_create(&labels).clone(),
            duration: m.watcher_call_duration.get_or_create(&labels).clone(),
            failures: m.watcher_failures.get_or_create(&labels).clone(),
            restarts,
            quarantined,
            events,
            target: self.clone(),
            labels,
        }
    }
}

impl Drop for TargetMetrics {
    fn drop(&mut self) {
        let m = &self.metrics;
        let mut targets = m.targets.lock().expect("not poisoned");
        if targets
            .get(&self.labels.target.0)
            .is_some_and(|(g, _)| *g == self.generation)
        {
            targets.remove(&self.labels.target.0);
            m.target_up.remove(&self.labels);
            m.polls.remove(&self.labels);
            m.probe_errors.remove(&self.labels);
            m.poll_duration.remove(&self.labels);
            m.poll_lateness.remove(&self.labels);
        }
    }
}

/// One watcher's handles on one target, held by its supervisor slot.
pub struct WatcherMetrics {
    target: Arc<TargetMetrics>,
    labels: WatcherLabels,
    calls: Counter,
    duration: Histogram,
    failures: Counter,
    restarts: Counter,
    quarantined: Gauge,
    /// By [`LEVELS`] order.
    events: [Counter; 4],
}

impl WatcherMetrics {
    /// A call ended after `took`, emitting `events` (`None`: it failed).
    pub fn called(&self, took: Duration, events: Option<&[Emitted]>) {
        self.calls.inc();
        self.duration.observe(took.as_secs_f64());
        match events {
            Some(events) => {
                for e in events {
                    self.events[e.level as usize].inc();
                }
            }
            None => {
                self.failures.inc();
            }
        }
    }

    /// The instance was rebuilt after a failure.
    pub fn restarted(&self) {
        self.restarts.inc();
    }

    /// Quarantined (`true`) or running again.
    pub fn quarantined(&self, yes: bool) {
        self.quarantined.set(i64::from(yes));
    }
}

impl Drop for WatcherMetrics {
    fn drop(&mut self) {
        let t = &self.target;
        t.seen
            .watchers
            .lock()
            .expect("not poisoned")
            .remove(&self.labels.watcher.0);
        let m = &t.metrics;
        if !m.current(&t.labels.target.0, t.generation) {
            return;
        }
        m.watcher_calls.remove(&self.labels);
        m.watcher_call_duration.remove(&self.labels);
        m.watcher_failures.remove(&self.labels);
        m.watcher_restarts.remove(&self.labels);
        m.watcher_quarantined.remove(&self.labels);
        for level in LEVELS {
            m.watcher_events.remove(&EventLabels {
                target: self.labels.target.clone(),
                watcher: self.labels.watcher.clone(),
                level: level.as_str(),
            });
        }
    }
}

/// The publisher task's reports: its outbox size, delivered and dropped
/// totals so far and breaker state after every step, and what it spooled
/// at shutdown.
impl Observer for Metrics {
    fn publisher(&self, s: &Snapshot) {
        let now = self.now_ms();
        self.outbox_envelopes
            .set(i64::try_from(s.pending).unwrap_or(i64::MAX));
        self.outbox_bytes
            .set(i64::try_from(s.pending_bytes).unwrap_or(i64::MAX));
        let before = self.seen_delivered.swap(s.delivered, Ordering::Relaxed);
        self.delivered.inc_by(s.delivered.saturating_sub(before));
        let before_dropped = self.seen_dropped.swap(s.dropped, Ordering::Relaxed);
        self.dropped
            .inc_by(s.dropped.saturating_sub(before_dropped));
        if s.pending == 0 || s.delivered > before {
            self.progress_ms.store(now, Ordering::Relaxed);
        }
        let code = match s.breaker {
            State::Closed { .. } => 0,
            State::HalfOpen => 1,
            State::Open { .. } => 2,
        };
        if self.breaker_state.set(code) == 0 && code != 0 {
            self.breaker_since_ms.store(now, Ordering::Relaxed);
        }
    }

    fn spooled(&self, envelopes: usize) {
        self.spooled
            .inc_by(u64::try_from(envelopes).unwrap_or(u64::MAX));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Metrics whose clock has run for 100 s, polling every second.
    fn aged() -> Arc<Metrics> {
        let mut m = Metrics::new(Duration::from_secs(1), "0.1.0", "lookout:watcher@0.2.0");
        m.epoch = Instant::now() - Duration::from_secs(100);
        Arc::new(m)
    }

    #[test]
    fn health_names_stale_targets_and_a_stuck_publisher() {
        let m = aged();
        let (a, b) = (m.target("a:1"), m.target("b:1"));
        assert_eq!(m.health(), Ok(()), "first polls are not due yet");
        a.seen.clock.store(0, Ordering::Relaxed);
        let reason = m.health().unwrap_err();
        assert_eq!(
            reason,
            "no poll completed for 3 intervals (3.0 s) on 1 of 2 targets"
        );
        a.polled(Duration::from_millis(5), true);
        b.polled(Duration::from_millis(5), false);
        assert_eq!(m.health(), Ok(()), "b failed once, within 3 intervals");

        let closed = Snapshot {
            pending: 0,
            pending_bytes: 0,
            delivered: 10,
            dropped: 0,
            breaker: State::Closed { failures: 0 },
        };
        m.publisher(&closed);
        m.progress_ms.store(0, Ordering::Relaxed);
        m.publisher(&Snapshot {
            pending: 7,
            pending_bytes: 700,
            breaker: State::Open {
                until: Instant::now(),
            },
            ..closed
        });
        let reason = m.health().unwrap_err();
        assert!(
            reason.starts_with(
                "publisher: 7 envelopes waiting, none delivered for 100 s, breaker open for 0 s"
            ),
            "{reason}"
        );
        m.publisher(&Snapshot {
            delivered: 17,
            ..closed
        });
        assert_eq!(m.health(), Ok(()));
        assert_eq!(m.delivered.get(), 17);
    }

    #[test]
    fn series_go_with_their_poller_and_watcher() {
        let m = aged();
        let old = m.target("a:1");
        let w = old.watcher("ticker");
        w.called(Duration::from_millis(1), None);
        let text = m.encode().unwrap();
        assert!(
            text.contains(r#"lookout_watcher_failures_total{target="a:1",watcher="ticker"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"lookout_build_info{version="0.1.0",abi="lookout:watcher@0.2.0"} 1"#),
            "{text}"
        );
        drop(w);
        assert!(!m.encode().unwrap().contains("ticker"));
        // The target started again: the old poller's late drop keeps the
        // new one's series.
        let new = m.target("a:1");
        drop(old);
        assert!(
            m.encode()
                .unwrap()
                .contains(r#"lookout_polls_total{target="a:1"}"#)
        );
        drop(new);
        assert!(!m.encode().unwrap().contains("a:1"));
        assert_eq!(m.health(), Ok(()));
    }

    /// The label pairs of one sample line, read strictly by the text
    /// format's rules: `None` for anything a Prometheus parser refuses.
    fn labels(line: &str) -> Option<Vec<(String, String)>> {
        let (_, rest) = line.split_once('{')?;
        let mut chars = rest.chars();
        let mut pairs = Vec::new();
        loop {
            let name: String = chars.by_ref().take_while(|c| *c != '=').collect();
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return None;
            }
            if chars.next()? != '"' {
                return None;
            }
            let mut value = String::new();
            loop {
                match chars.next()? {
                    '"' => break,
                    '\\' => value.push(match chars.next()? {
                        '\\' => '\\',
                        '"' => '"',
                        'n' => '\n',
                        _ => return None,
                    }),
                    '\n' => return None,
                    c => value.push(c),
                }
            }
            pairs.push((name, value));
            match chars.next()? {
                ',' => {}
                '}' => return Some(pairs),
                _ => return None,
            }
        }
    }

    #[test]
    fn label_values_are_escaped_and_read_back() {
        let m = aged();
        let names = ["we\"ird\\name", "two\nlines", "end\\", "\"", "a,b=c}"];
        let targets: Vec<_> = names.iter().map(|n| m.target(n)).collect();
        let watchers: Vec<_> = targets
            .iter()
            .zip(names.iter().rev())
            .map(|(t, w)| t.watcher(w))
            .collect();
        for name in names {
            m.discover_nodes(name, 1, 2);
        }
        let text = m.encode().unwrap();
        let mut seen = std::collections::HashSet::new();
        for line in text.lines().filter(|l| l.contains('{')) {
            let pairs = labels(line).unwrap_or_else(|| panic!("not the text format: {line:?}"));
            for (key, value) in pairs {
                if ["target", "watcher", "discover"].contains(&key.as_str()) {
                    assert!(names.contains(&value.as_str()), "{key}={value:?}");
                    seen.insert((key, value));
                }
            }
        }
        assert_eq!(seen.len(), 3 * names.len(), "{text}");
        drop(watchers);
    }
}

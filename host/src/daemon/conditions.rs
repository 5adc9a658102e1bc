//! The host's conditions about the bus and the outbox, read from the
//! publisher task's state after each of its steps: the bus unreachable
//! (the breaker not closed) and envelopes being dropped (the outbox full),
//! each firing once it held `[alerts] for_s` and resolving when it ends.
//! They are on the board (for Alertmanager) at once; their envelopes are
//! queued once the bus takes envelopes again, so that they never take an
//! outbox slot from the envelopes waiting for the bus.
//!
//! And the process's own: its polls starting late ([`PollsLate`]), judged
//! on each window of the lateness histogram.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

use super::events::About;
use super::lateness::{Lateness, Since, Summary};
use crate::alerts::active::{Active, Hold, host_condition, kinds};
use crate::delivery::breaker::State;
use crate::delivery::envelope::fields;
use crate::delivery::envelope::{ConditionState, Emitted, Level, Origin, Sealed};
use crate::delivery::heartbeat::Beat;
use crate::delivery::task::{Outlet, Reporter, Snapshot};
use crate::metrics::Metrics;
use crate::targets::shard::Shard;

/// The bus's and the outbox's conditions.
pub(super) struct BusConditions {
    active: Arc<Active>,
    origin: Origin,
    for_s: Duration,
    /// The bus's `host:port`, the conditions' key.
    bus: String,
    state: Mutex<Seen>,
}

#[derive(Default)]
struct Seen {
    down: Hold,
    dropping: Hold,
    /// Dropped so far, as last seen.
    dropped: u64,
    /// When the last drop was seen.
    last_drop: Option<Instant>,
    /// Condition events held until the bus takes envelopes.
    held: Vec<Emitted>,
}

impl BusConditions {
    /// The conditions of the bus at `bus` (`host:port`), through `active`.
    pub(super) fn new(active: Arc<Active>, origin: Origin, for_s: Duration, bus: String) -> Self {
        Self {
            active,
            origin,
            for_s,
            bus,
            state: Mutex::new(Seen::default()),
        }
    }
}

impl Reporter for BusConditions {
    fn step(&self, s: &Snapshot) -> Vec<Sealed> {
        let mut seen = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let (bus, for_s) = (self.bus.as_str(), self.for_s);
        let mut events: Vec<Emitted> = Vec::new();
        let event = |level, kind, state, msg: String| {
            host_condition(level, kind, bus, state, msg, fields! {"bus" => bus})
        };
        if matches!(s.breaker, State::Closed { .. }) {
            if seen.down.clear() {
                events.push(event(
                    Level::Info,
                    kinds::BUS_UNREACHABLE,
                    ConditionState::Resolved,
                    format!("bus at {bus} takes envelopes again"),
                ));
            }
        } else if seen.down.holds(for_s) {
            events.push(event(
                Level::Error,
                kinds::BUS_UNREACHABLE,
                ConditionState::Firing,
                format!(
                    "bus at {bus} takes no envelopes for {:.0}s: they wait in the outbox ({} now)",
                    for_s.as_secs_f64(),
                    s.pending
                ),
            ));
        }
        let now = Instant::now();
        if s.dropped > seen.dropped {
            seen.dropped = s.dropped;
            seen.last_drop = Some(now);
        }
        let dropping = seen
            .last_drop
            .is_some_and(|at| now.duration_since(at) < for_s.max(Duration::from_secs(1)));
        if !dropping {
            if seen.dropping.clear() {
                events.push(event(
                    Level::Info,
                    kinds::ENVELOPES_DROPPED,
                    ConditionState::Resolved,
                    format!(
                        "outbox no longer drops envelopes ({} dropped in all)",
                        s.dropped
                    ),
                ));
            }
        } else if seen.dropping.holds(for_s) {
            events.push(event(
                Level::Error,
                kinds::ENVELOPES_DROPPED,
                ConditionState::Firing,
                format!(
                    "outbox full: envelopes are being dropped ({} so far); raise buffer.max_envelopes or buffer.max_mib, or bring the bus back",
                    s.dropped
                ),
            ));
        }
        let about = About::process(&self.origin);
        if !events.is_empty() {
            let events = self.active.observe(&about.subject(), events);
            seen.held.extend(events);
        }
        if seen.held.is_empty() || !matches!(s.breaker, State::Closed { .. }) {
            return Vec::new();
        }
        let events = std::mem::take(&mut seen.held);
        drop(seen);
        about.envelopes(&self.origin, events)
    }
}

/// `polls-late`: the p99 of how late polls started, over a window, is
/// past half the poll interval, so this process has more targets than it
/// polls on time. Every target of a process polls at `poll_interval`, so
/// half of it is the one bound. The window is ten poll intervals, or
/// `[alerts] for_s` when longer, at least one second: it fires when a
/// window's p99 is over (the lateness held over at least `for_s`), and
/// resolves when a window's is back under (a window without polls has
/// nothing late).
pub(super) struct PollsLate {
    active: Arc<Active>,
    origin: Origin,
    /// The condition's key: `lookout`, or `lookout shard I/N` for one
    /// shard of the fleet.
    key: String,
    interval: Duration,
    window: Duration,
    firing: bool,
}

impl PollsLate {
    /// The condition of a process polling `shard` every `interval`, with
    /// `[alerts] for_s` of `for_s`.
    pub(super) fn new(
        active: Arc<Active>,
        origin: Origin,
        shard: Shard,
        interval: Duration,
        for_s: Duration,
    ) -> Self {
        let key = if shard == Shard::ALL {
            "lookout".to_owned()
        } else {
            format!("lookout shard {shard}")
        };
        Self {
            active,
            origin,
            key,
            interval,
            window: Self::window(interval, for_s),
            firing: false,
        }
    }

    /// The window: ten poll intervals (enough polls for a p99 as soon as a
    /// process has ten targets), or `for_s` when longer, at least 1 s.
    pub(super) fn window(interval: Duration, for_s: Duration) -> Duration {
        (interval * 10).max(for_s).max(Duration::from_secs(1))
    }

    /// Judges one window, `targets` polled: the condition's event when it
    /// fires or resolves, taken through the active set.
    fn judge(&mut self, late: &Summary, targets: usize) -> Vec<Emitted> {
        let over = Duration::from_millis(late.p99_ms) > self.interval / 2;
        if over == self.firing {
            return Vec::new();
        }
        self.firing = over;
        let (interval, window) = (self.interval.as_secs_f64(), self.window.as_secs_f64());
        let (p99, polls) = (late.p99_ms, late.polls);
        let (level, state, msg) = if over {
            let noun = if targets == 1 { "target" } else { "targets" };
            let msg = format!(
                "polls late: p99 {p99} ms late over the last {window}s ({polls} polls), over half \
                 the {interval}s poll interval, with {targets} {noun} in this process; poll fewer \
                 targets per process (split the fleet with --shard I/N over several processes), \
                 lengthen poll_interval, or give it more cores"
            );
            (Level::Warn, ConditionState::Firing, msg)
        } else {
            let msg = format!(
                "polls on time again: p99 {p99} ms late over the last {window}s ({polls} polls), \
                 under half the {interval}s poll interval"
            );
            (Level::Info, ConditionState::Resolved, msg)
        };
        let fields = fields! {
            "lateness_p99_ms" => late.p99_ms,
            "lateness_max_ms" => late.max_ms,
            "polls" => late.polls,
            "targets" => targets,
            "interval_s" => interval,
            "window_s" => window,
        };
        let event = host_condition(level, kinds::POLLS_LATE, &self.key, state, msg, fields);
        let about = About::process(&self.origin);
        self.active.observe(&about.subject(), vec![event])
    }

    /// Judges each window of `lateness` until `stop`: the window's p99 to
    /// `metrics`, the condition's events to `outlet`; `beats` says how
    /// many targets are polled.
    pub(super) async fn run(
        mut self,
        lateness: Arc<Lateness>,
        beats: watch::Receiver<Beat>,
        outlet: Outlet,
        metrics: Option<Arc<Metrics>>,
        stop: CancellationToken,
    ) {
        let mut since = Since::default();
        since.take(&lateness);
        let start = tokio::time::Instant::now() + self.window;
        let mut windows = tokio::time::interval_at(start, self.window);
        // A process that was stopped judges one window when it runs
        // again, not one per window missed.
        windows.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                () = stop.cancelled() => return,
                _ = windows.tick() => {}
            }
            let late = since.take(&lateness);
            if let Some(m) = &metrics {
                m.lateness_p99(Duration::from_millis(late.p99_ms));
            }
            let targets = beats.borrow().targets;
            let events = self.judge(&late, targets);
            let about = About::process(&self.origin);
            outlet.send(about.envelopes(&self.origin, events)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alerts::Board;

    fn window(polls: u64, p99_ms: u64) -> Summary {
        Summary {
            polls,
            p50_ms: 1,
            p99_ms,
            max_ms: p99_ms,
        }
    }

    fn polls_late(shard: Shard) -> (PollsLate, Arc<Board>) {
        let board = Board::new();
        let active = Active::new("redis", board.clone());
        let origin = Origin::new("redis", "127.0.0.1:6379");
        let interval = Duration::from_secs(5);
        let late = PollsLate::new(active, origin, shard, interval, interval * 2);
        (late, board)
    }

    #[test]
    fn the_window_is_ten_intervals_or_for_s_at_least_a_second() {
        let s = Duration::from_secs_f64;
        assert_eq!(PollsLate::window(s(5.0), s(10.0)), s(50.0));
        assert_eq!(PollsLate::window(s(5.0), s(120.0)), s(120.0));
        assert_eq!(PollsLate::window(s(0.01), s(0.02)), s(1.0));
    }

    /// Over half the interval fires once (a warning naming the p99, the
    /// interval, the targets and the fix, on the board), an over window
    /// again changes nothing, and a window back under resolves it.
    #[test]
    fn a_window_over_half_the_interval_fires_and_one_under_resolves() {
        let (mut late, board) = polls_late(Shard::ALL);
        assert!(
            late.judge(&window(1000, 2_500), 100).is_empty(),
            "half is not over"
        );
        assert!(late.judge(&window(0, 0), 100).is_empty());
        let fired = late.judge(&window(1000, 2_510), 100);
        assert_eq!(fired.len(), 1);
        let c = fired[0].condition.as_ref().unwrap();
        assert_eq!((c.kind.as_str(), c.key.as_str()), ("polls-late", "lookout"));
        assert_eq!(c.state, ConditionState::Firing);
        assert_eq!(fired[0].level, Level::Warn);
        for part in [
            "p99 2510 ms",
            "5s poll interval",
            "100 targets",
            "--shard",
            "poll_interval",
            "more cores",
        ] {
            assert!(fired[0].msg.contains(part), "{part} in {}", fired[0].msg);
        }
        assert_eq!(fired[0].fields["lateness_p99_ms"], 2_510);
        let alerts = board.snapshot();
        assert_eq!(alerts.len(), 1);
        assert_eq!(alerts[0].labels["alertname"], "lookout/polls-late");
        assert_eq!(alerts[0].labels["severity"], "warning");
        assert!(alerts[0].ends_at.is_none());

        assert!(
            late.judge(&window(1000, 9_000), 100).is_empty(),
            "still firing"
        );
        let resolved = late.judge(&window(1000, 40), 100);
        assert_eq!(resolved.len(), 1);
        let c = resolved[0].condition.as_ref().unwrap();
        assert_eq!(c.state, ConditionState::Resolved);
        assert!(resolved[0].msg.contains("p99 40 ms"), "{}", resolved[0].msg);
        assert!(board.snapshot()[0].ends_at.is_some());
        assert!(late.judge(&window(1000, 40), 100).is_empty());
    }

    #[test]
    fn a_shard_is_its_own_key_and_a_window_without_polls_resolves() {
        let shard = Shard::parse("1/3").unwrap();
        let (mut late, _) = polls_late(shard);
        let fired = late.judge(&window(10, 4_000), 10);
        let c = fired[0].condition.as_ref().unwrap();
        assert_eq!(c.key, "lookout shard 1/3");
        let resolved = late.judge(&Summary::default(), 0);
        assert_eq!(
            resolved[0].condition.as_ref().unwrap().state,
            ConditionState::Resolved
        );
    }
}

//! The host's conditions about the bus and the outbox, read from the
//! publisher task's state after each of its steps: the bus unreachable
//! (the breaker not closed) and envelopes being dropped (the outbox full),
//! each firing once it held `[alerts] for_s` and resolving when it ends.
//! They are on the board (for Alertmanager) at once; their envelopes are
//! queued once the bus takes envelopes again, so that they never take an
//! outbox slot from the envelopes waiting for the bus.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::events::About;
use crate::alerts::active::{Active, Hold, host_condition, kinds};
use crate::delivery::breaker::State;
use crate::delivery::envelope::fields;
use crate::delivery::envelope::{ConditionState, Emitted, Envelope, Level, Origin};
use crate::delivery::task::{Reporter, Snapshot};

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
    fn step(&self, s: &Snapshot) -> Vec<Envelope> {
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

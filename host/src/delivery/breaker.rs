//! The publish circuit breaker: CLOSED until `failures` sends fail in a
//! row, then OPEN (nothing is sent, envelopes wait in the outbox) for the
//! recovery time, then HALF-OPEN: the next send is a probe that closes the
//! breaker on success or opens it again on failure.

use std::time::{Duration, Instant};

/// Breaker settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerSettings {
    /// Consecutive failures that open the breaker.
    pub failures: u32,
    /// How long it stays open before a probe.
    pub recovery: Duration,
}

impl Default for BreakerSettings {
    fn default() -> Self {
        Self {
            failures: 3,
            recovery: Duration::from_secs(2),
        }
    }
}

/// Breaker state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Sending; `failures` in a row so far.
    Closed {
        /// Consecutive failures.
        failures: u32,
    },
    /// Not sending until `until`.
    Open {
        /// When a probe is allowed.
        until: Instant,
    },
    /// The next send is a probe.
    HalfOpen,
}

/// The breaker.
#[derive(Debug, Clone)]
pub(crate) struct Breaker {
    settings: BreakerSettings,
    state: State,
}

impl Breaker {
    /// A closed breaker.
    pub(crate) fn new(settings: BreakerSettings) -> Self {
        Self {
            settings,
            state: State::Closed { failures: 0 },
        }
    }

    /// The current state.
    pub(crate) fn state(&self) -> State {
        self.state
    }

    /// Whether a send may be attempted at `now`; an open breaker whose
    /// recovery time is over turns half-open.
    pub(crate) fn allow(&mut self, now: Instant) -> bool {
        match self.state {
            State::Closed { .. } | State::HalfOpen => true,
            State::Open { until } if now >= until => {
                self.state = State::HalfOpen;
                true
            }
            State::Open { .. } => false,
        }
    }

    /// Records a successful send; returns true when this closed the breaker.
    pub(crate) fn success(&mut self) -> bool {
        let was_closed = matches!(self.state, State::Closed { .. });
        self.state = State::Closed { failures: 0 };
        !was_closed
    }

    /// Records a failed send; returns true when this opened the breaker.
    pub(crate) fn failure(&mut self, now: Instant) -> bool {
        let open = State::Open {
            until: now + self.settings.recovery,
        };
        match self.state {
            State::Closed { failures } if failures + 1 < self.settings.failures => {
                self.state = State::Closed {
                    failures: failures + 1,
                };
                false
            }
            State::Closed { .. } | State::HalfOpen => {
                self.state = open;
                true
            }
            State::Open { .. } => {
                self.state = open;
                false
            }
        }
    }

    /// When the breaker next allows a send, if it is open.
    pub(crate) fn retry_at(&self) -> Option<Instant> {
        match self.state {
            State::Open { until } => Some(until),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_n_failures_and_probes_after_recovery() {
        let t0 = Instant::now();
        let mut b = Breaker::new(BreakerSettings {
            failures: 2,
            recovery: Duration::from_secs(1),
        });
        assert!(b.allow(t0));
        assert!(!b.failure(t0));
        assert!(b.failure(t0), "second failure opens");
        assert!(!b.allow(t0 + Duration::from_millis(500)));
        assert!(b.allow(t0 + Duration::from_secs(1)));
        assert_eq!(b.state(), State::HalfOpen);
        assert!(
            b.failure(t0 + Duration::from_secs(1)),
            "a failed probe re-opens"
        );
        assert!(b.allow(t0 + Duration::from_secs(2)));
        assert!(b.success(), "a good probe closes");
        assert_eq!(b.state(), State::Closed { failures: 0 });
    }
}

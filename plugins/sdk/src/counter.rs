//! A Redis counter followed from poll to poll: its change since the last
//! poll and its rate, reset when the server restarts or the counter goes
//! back (`CONFIG RESETSTAT`); and telling restarts apart by `run_id`.

use crate::{InfoError, Snapshot};

/// One INFO counter (`evicted_keys`, `rejected_connections`,
/// `total_error_replies`) followed across polls.
///
/// ```
/// use lookout_watcher::{Change, Counter};
///
/// let mut evicted = Counter::new();
/// assert_eq!(evicted.update("run-a", 100, 0), Change::First);
/// let change = evicted.update("run-a", 130, 10_000);
/// assert_eq!(change.delta(), Some(30));
/// assert_eq!(change.per_second(), Some(3.0));
/// // A restart (new run_id) or CONFIG RESETSTAT (the value went back):
/// assert_eq!(evicted.update("run-b", 2, 20_000), Change::Reset);
/// assert_eq!(evicted.update("run-b", 5, 21_000).delta(), Some(3));
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Counter {
    last: Option<Sample>,
}

#[derive(Debug, Clone, PartialEq)]
struct Sample {
    run_id: String,
    value: u64,
    at_ms: i64,
}

/// What a new sample says about a [`Counter`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Change {
    /// The first sample: nothing to compare with yet.
    First,
    /// The server restarted (a new `run_id`) or the counter went back
    /// (`CONFIG RESETSTAT`): the new value is the baseline from now on.
    Reset,
    /// The counter moved on from the previous sample.
    Delta {
        /// Increase since the previous sample (0 when unchanged).
        delta: u64,
        /// Milliseconds between the two samples' `taken_at_ms`.
        elapsed_ms: u64,
    },
}

impl Change {
    /// The increase, for [`Change::Delta`].
    pub fn delta(&self) -> Option<u64> {
        match self {
            Change::Delta { delta, .. } => Some(*delta),
            _ => None,
        }
    }

    /// The increase per second, for a [`Change::Delta`] over a positive
    /// time.
    pub fn per_second(&self) -> Option<f64> {
        match *self {
            Change::Delta { delta, elapsed_ms } if elapsed_ms > 0 => {
                Some(delta as f64 * 1000.0 / elapsed_ms as f64)
            }
            _ => None,
        }
    }
}

impl Counter {
    /// A counter with no sample yet.
    pub const fn new() -> Self {
        Counter { last: None }
    }

    /// Takes a sample: `value` on the server whose `run_id` is given, at
    /// `at_ms` (the snapshot's `taken_at_ms`).
    pub fn update(&mut self, run_id: &str, value: u64, at_ms: i64) -> Change {
        let change = match &self.last {
            None => Change::First,
            Some(last) if last.run_id != run_id || value < last.value => Change::Reset,
            Some(last) => Change::Delta {
                delta: value - last.value,
                elapsed_ms: u64::try_from(at_ms.saturating_sub(last.at_ms)).unwrap_or(0),
            },
        };
        self.last = Some(Sample {
            run_id: run_id.to_string(),
            value,
            at_ms,
        });
        change
    }

    /// Takes a sample of INFO field `field` from `snapshot`. Declare the
    /// field and `run_id` in `needs` (without `run_id`, only a counter
    /// going back tells a restart). A missing or malformed field leaves
    /// the counter as it was.
    ///
    /// # Errors
    /// The field is missing or not an unsigned integer.
    pub fn observe(&mut self, snapshot: &Snapshot, field: &str) -> Result<Change, InfoError> {
        let value = snapshot.info_u64(field)?;
        let run_id = snapshot.info("run_id").unwrap_or_default().trim();
        Ok(self.update(run_id, value, snapshot.taken_at_ms))
    }

    /// The value of the last sample, if any.
    pub fn last(&self) -> Option<u64> {
        self.last.as_ref().map(|s| s.value)
    }
}

/// Tells a restart of the watched Redis: a `run_id` other than the one of
/// the previous poll. Declare `run_id` in `needs`.
///
/// ```
/// use lookout_watcher::Restarts;
/// use lookout_watcher::testing::SnapshotBuilder;
///
/// let run = |id: &str| SnapshotBuilder::new().info("server", "run_id", id).build();
/// let mut restarts = Restarts::new();
/// assert!(!restarts.observe(&run("a")), "the first poll is no restart");
/// assert!(!restarts.observe(&run("a")));
/// assert!(restarts.observe(&run("b")));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Restarts {
    run_id: Option<String>,
}

impl Restarts {
    /// Nothing seen yet.
    pub const fn new() -> Self {
        Restarts { run_id: None }
    }

    /// Whether `snapshot`'s `run_id` differs from the previous poll's (an
    /// absent `run_id` reads as empty).
    pub fn observe(&mut self, snapshot: &Snapshot) -> bool {
        let run_id = snapshot.info("run_id").unwrap_or_default().trim();
        match &mut self.run_id {
            Some(last) if last == run_id => false,
            Some(last) => {
                *last = run_id.to_string();
                true
            }
            None => {
                self.run_id = Some(run_id.to_string());
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::SnapshotBuilder;

    fn snap(run_id: &str, evicted: &str, at_ms: i64) -> Snapshot {
        SnapshotBuilder::new()
            .taken_at_ms(at_ms)
            .info("server", "run_id", run_id)
            .info("stats", "evicted_keys", evicted)
            .build()
    }

    #[test]
    fn deltas_rates_and_resets() {
        let mut c = Counter::new();
        assert_eq!(
            c.observe(&snap("a", "10", 1_000), "evicted_keys"),
            Ok(Change::First)
        );
        let d = c.observe(&snap("a", "10", 2_000), "evicted_keys").unwrap();
        assert_eq!(
            d,
            Change::Delta {
                delta: 0,
                elapsed_ms: 1_000
            }
        );
        assert_eq!(d.per_second(), Some(0.0));
        let d = c.observe(&snap("a", "60", 4_000), "evicted_keys").unwrap();
        assert_eq!((d.delta(), d.per_second()), (Some(50), Some(25.0)));
        assert_eq!(
            c.observe(&snap("a", "3", 5_000), "evicted_keys"),
            Ok(Change::Reset)
        );
        assert_eq!(
            c.observe(&snap("b", "9", 6_000), "evicted_keys"),
            Ok(Change::Reset)
        );
        assert_eq!(c.last(), Some(9));
        let same_time = c.observe(&snap("b", "10", 6_000), "evicted_keys").unwrap();
        assert_eq!((same_time.delta(), same_time.per_second()), (Some(1), None));
    }

    #[test]
    fn bad_input_keeps_the_baseline() {
        let mut c = Counter::new();
        c.observe(&snap("a", "10", 0), "evicted_keys").unwrap();
        assert!(c.observe(&snap("a", "x", 1), "evicted_keys").is_err());
        assert!(c.observe(&snap("a", "1", 1), "missing").is_err());
        assert_eq!(
            c.observe(&snap("a", "12", 2), "evicted_keys")
                .unwrap()
                .delta(),
            Some(2)
        );
    }
}

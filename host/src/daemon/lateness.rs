//! How late polls start against their schedule, across every target: a
//! histogram of millisecond buckets that pollers add to without locking.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::status::history::History;

/// Buckets of one millisecond up to this; later polls share the last one.
const BUCKETS: usize = 1_000;

/// A lock-free histogram of poll lateness.
pub struct Lateness {
    buckets: Vec<AtomicU64>,
    max_ms: AtomicU64,
    /// The status page's per-minute ring, told of each poll too.
    minutes: Option<Arc<History>>,
}

impl Default for Lateness {
    fn default() -> Self {
        Self {
            buckets: (0..=BUCKETS).map(|_| AtomicU64::new(0)).collect(),
            max_ms: AtomicU64::new(0),
            minutes: None,
        }
    }
}

/// Percentiles of what was recorded, in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Summary {
    /// Polls recorded.
    pub polls: u64,
    /// Median lateness.
    pub p50_ms: u64,
    /// 99th percentile (at least [`BUCKETS`] when it lies beyond).
    pub p99_ms: u64,
    /// The latest poll.
    pub max_ms: u64,
}

impl Lateness {
    /// A histogram that also records into `minutes`, per minute.
    pub(crate) fn with_minutes(minutes: Option<Arc<History>>) -> Self {
        Self {
            minutes,
            ..Self::default()
        }
    }

    /// Records one poll that started `late` after it was due.
    pub fn record(&self, late: Duration) {
        if let Some(minutes) = &self.minutes {
            minutes.late(late);
        }
        let ms = u64::try_from(late.as_millis()).unwrap_or(u64::MAX);
        let i = usize::try_from(ms).unwrap_or(BUCKETS).min(BUCKETS);
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        self.max_ms.fetch_max(ms, Ordering::Relaxed);
    }

    /// Percentiles so far.
    pub fn summary(&self) -> Summary {
        let counts: Vec<u64> = self
            .buckets
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .collect();
        let polls: u64 = counts.iter().sum();
        let at = |q: u64| {
            // The smallest bucket holding at least q per mille of the polls.
            let want = (polls * q).div_ceil(1000).max(1);
            let mut seen = 0;
            for (ms, c) in (0u64..).zip(&counts) {
                seen += c;
                if seen >= want {
                    return ms;
                }
            }
            0
        };
        Summary {
            polls,
            p50_ms: at(500),
            p99_ms: at(990),
            max_ms: self.max_ms.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_recorded_polls() {
        let l = Lateness::default();
        assert_eq!(l.summary(), Summary::default());
        for ms in 0..100 {
            l.record(Duration::from_millis(ms));
        }
        l.record(Duration::from_secs(5));
        let s = l.summary();
        assert_eq!(s.polls, 101);
        assert_eq!(s.p50_ms, 50);
        assert_eq!(s.p99_ms, 99);
        assert_eq!(s.max_ms, 5000);
    }

    #[test]
    fn late_polls_share_the_last_bucket() {
        let l = Lateness::default();
        l.record(Duration::from_secs(3));
        let s = l.summary();
        assert_eq!((s.p50_ms, s.p99_ms, s.max_ms), (1000, 1000, 3000));
    }
}

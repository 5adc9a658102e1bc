//! How late polls start against their schedule, across every target: a
//! histogram that pollers add to without locking, read whole (the
//! `polling stopped` line) or as what was recorded since the last look
//! ([`Since`], the `polls-late` condition's window).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::status::history::History;

/// Buckets of one millisecond below this many milliseconds.
const FINE_MS: u64 = 1_000;
/// Above [`FINE_MS`], decades of 900 buckets each, a tenth of the
/// decade's start wide (10 ms from 1 s, 100 ms from 10 s, ...): within 1%
/// everywhere, up to 10^8 ms (about 28 hours, over the longest poll
/// interval); later polls share the last bucket.
const DECADES: u32 = 5;
/// Buckets per decade.
const PER_DECADE: usize = 900;
/// The last bucket, for polls later than every decade.
const LAST: usize = FINE_MS as usize + DECADES as usize * PER_DECADE;

/// The bucket of a poll `ms` milliseconds late.
fn bucket(ms: u64) -> usize {
    if ms < FINE_MS {
        return usize::try_from(ms).unwrap_or(LAST);
    }
    let (mut start, mut base) = (FINE_MS, FINE_MS as usize);
    for _ in 0..DECADES {
        let width = start / 100;
        if ms < start * 10 {
            return base + usize::try_from((ms - start) / width).unwrap_or(PER_DECADE - 1);
        }
        start *= 10;
        base += PER_DECADE;
    }
    LAST
}

/// The lateness a bucket starts at, in milliseconds.
fn floor_ms(i: usize) -> u64 {
    let Some(above) = i.checked_sub(FINE_MS as usize) else {
        return i as u64;
    };
    let decade = u32::try_from(above / PER_DECADE).unwrap_or(DECADES);
    let start = FINE_MS * 10u64.pow(decade.min(DECADES));
    if decade >= DECADES {
        return start;
    }
    start + (above % PER_DECADE) as u64 * (start / 100)
}

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
            buckets: (0..=LAST).map(|_| AtomicU64::new(0)).collect(),
            max_ms: AtomicU64::new(0),
            minutes: None,
        }
    }
}

/// Percentiles of what was recorded, in milliseconds: exact below one
/// second, the start of a bucket within 1% above.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Summary {
    /// Polls recorded.
    pub polls: u64,
    /// Median lateness.
    pub p50_ms: u64,
    /// 99th percentile.
    pub p99_ms: u64,
    /// The latest poll (of a [`Since`] window: the start of its bucket).
    pub max_ms: u64,
}

impl Summary {
    /// The summary of bucket counts `counts`.
    fn of(counts: &[u64]) -> Self {
        let polls: u64 = counts.iter().sum();
        let at = |q: u64| {
            // The smallest bucket holding at least q per mille of the polls.
            let want = (polls * q).div_ceil(1000).max(1);
            let mut seen = 0;
            for (i, c) in counts.iter().enumerate() {
                seen += c;
                if seen >= want {
                    return floor_ms(i);
                }
            }
            0
        };
        Self {
            polls,
            p50_ms: at(500),
            p99_ms: at(990),
            max_ms: counts.iter().rposition(|&c| c > 0).map_or(0, floor_ms),
        }
    }
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
        self.buckets[bucket(ms)].fetch_add(1, Ordering::Relaxed);
        self.max_ms.fetch_max(ms, Ordering::Relaxed);
    }

    /// Percentiles so far.
    pub fn summary(&self) -> Summary {
        Summary {
            max_ms: self.max_ms.load(Ordering::Relaxed),
            ..Summary::of(&self.counts())
        }
    }

    fn counts(&self) -> Vec<u64> {
        self.buckets
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .collect()
    }
}

/// What a histogram recorded between two looks: each look takes the
/// difference of the counts since the one before (a bucket only grows, so
/// a poll recorded during a look falls into this window or the next).
#[derive(Debug, Default)]
pub(crate) struct Since {
    /// The counts at the last look.
    last: Vec<u64>,
}

impl Since {
    /// The summary of what `lateness` recorded since the last call (since
    /// it was made, at the first).
    pub(crate) fn take(&mut self, lateness: &Lateness) -> Summary {
        let now = lateness.counts();
        let window: Vec<u64> = now
            .iter()
            .enumerate()
            .map(|(i, n)| n.saturating_sub(self.last.get(i).copied().unwrap_or(0)))
            .collect();
        self.last = now;
        Summary::of(&window)
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
    fn late_polls_keep_their_lateness_within_one_percent() {
        let l = Lateness::default();
        l.record(Duration::from_millis(3_456));
        let s = l.summary();
        assert_eq!((s.p50_ms, s.p99_ms, s.max_ms), (3_450, 3_450, 3_456));
        for ms in [999, 1_000, 1_009, 1_010, 9_999, 10_000, 123_456, 86_400_000] {
            let floor = floor_ms(bucket(ms));
            assert!(floor <= ms && ms - floor <= ms / 100, "{ms} in {floor}");
        }
        assert_eq!(bucket(u64::MAX), LAST);
        assert_eq!(floor_ms(LAST), 100_000_000);
        // Buckets are in order and every one is reached.
        let floors: Vec<u64> = (0..=LAST).map(floor_ms).collect();
        assert!(floors.windows(2).all(|w| w[0] < w[1]));
        assert!((0..=LAST).all(|i| bucket(floors[i]) == i));
    }

    #[test]
    fn a_window_holds_only_what_was_recorded_since_the_last_look() {
        let l = Lateness::default();
        let mut since = Since::default();
        l.record(Duration::from_secs(4));
        assert_eq!(since.take(&l).p99_ms, 4_000);
        assert_eq!(since.take(&l), Summary::default(), "nothing since");
        for _ in 0..200 {
            l.record(Duration::from_millis(2));
        }
        l.record(Duration::from_millis(700));
        let s = since.take(&l);
        assert_eq!((s.polls, s.p50_ms, s.p99_ms, s.max_ms), (201, 2, 2, 700));
        // The whole histogram still has the 4 s poll.
        assert_eq!(l.summary().max_ms, 4_000);
    }
}

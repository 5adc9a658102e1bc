//! The last hour, minute by minute: events queued by level, and the worst
//! poll lateness of each minute. Rings of 60 slots of atomics: recording
//! is a store or an increment, no lock; a slot is reset by the first
//! record of a new minute (a record racing that reset may be lost, which a
//! chart of the last hour does not show).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

#[cfg(any(doc, test))]
use crate::delivery::envelope::Level;
use crate::delivery::envelope::Sealed;

/// Minutes kept.
pub(crate) const MINUTES: usize = 60;

/// One minute's slot.
#[derive(Debug, Default)]
struct Slot {
    /// The minute (since the Unix epoch) its counts are of, plus one: 0 is
    /// a slot never written.
    minute: AtomicU64,
    /// Events by level, in [`Level`] order: debug, info, warn, error.
    events: [AtomicU64; 4],
    /// The worst lateness of a poll started in that minute, in ms.
    worst_ms: AtomicU64,
}

/// Per-minute rings of events and poll lateness.
#[derive(Debug)]
pub(crate) struct History {
    slots: Vec<Slot>,
}

impl Default for History {
    fn default() -> Self {
        Self {
            slots: (0..MINUTES).map(|_| Slot::default()).collect(),
        }
    }
}

/// The last [`MINUTES`] minutes, oldest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Minutes {
    /// Events by level, each `MINUTES` counts, in [`Level`] order.
    pub events: [Vec<u64>; 4],
    /// The worst poll lateness of each minute, in ms.
    pub lateness_ms: Vec<u64>,
}

/// The minute `at` falls in, counted from the Unix epoch.
fn minute_of(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs()
        / 60
}

impl History {
    /// Counts `envelopes`, queued now.
    pub(crate) fn queued(&self, envelopes: &[Sealed]) {
        let slot = self.slot(minute_of(SystemTime::now()));
        for e in envelopes {
            slot.events[e.envelope().level as usize].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A poll started `late` after it was due, now.
    pub(crate) fn late(&self, late: Duration) {
        self.late_at(minute_of(SystemTime::now()), late);
    }

    /// The last hour up to now.
    pub(crate) fn minutes(&self) -> Minutes {
        self.minutes_to(minute_of(SystemTime::now()))
    }

    #[cfg(test)]
    fn count_at(&self, minute: u64, level: Level, n: u64) {
        self.slot(minute).events[level as usize].fetch_add(n, Ordering::Relaxed);
    }

    fn late_at(&self, minute: u64, late: Duration) {
        let ms = u64::try_from(late.as_millis()).unwrap_or(u64::MAX);
        self.slot(minute).worst_ms.fetch_max(ms, Ordering::Relaxed);
    }

    /// The slot of `minute`, emptied first if it held an older minute.
    fn slot(&self, minute: u64) -> &Slot {
        let slot = &self.slots[index(minute)];
        let stamp = minute + 1;
        let held = slot.minute.load(Ordering::Acquire);
        if held != stamp
            && slot
                .minute
                .compare_exchange(held, stamp, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            for count in &slot.events {
                count.store(0, Ordering::Relaxed);
            }
            slot.worst_ms.store(0, Ordering::Relaxed);
        }
        slot
    }

    /// The [`MINUTES`] minutes ending with `now`, oldest first; a slot
    /// holding another minute reads as zero.
    fn minutes_to(&self, now: u64) -> Minutes {
        let mut out = Minutes {
            events: std::array::from_fn(|_| Vec::with_capacity(MINUTES)),
            lateness_ms: Vec::with_capacity(MINUTES),
        };
        let first = now.saturating_sub(MINUTES as u64 - 1);
        for minute in first..=now {
            let slot = &self.slots[index(minute)];
            let current = slot.minute.load(Ordering::Acquire) == minute + 1;
            for (level, counts) in out.events.iter_mut().enumerate() {
                counts.push(if current {
                    slot.events[level].load(Ordering::Relaxed)
                } else {
                    0
                });
            }
            out.lateness_ms.push(if current {
                slot.worst_ms.load(Ordering::Relaxed)
            } else {
                0
            });
        }
        // Before the epoch's first hour (tests only): pad to the length.
        for counts in out.events.iter_mut().chain([&mut out.lateness_ms]) {
            while counts.len() < MINUTES {
                counts.insert(0, 0);
            }
        }
        out
    }
}

fn index(minute: u64) -> usize {
    usize::try_from(minute % MINUTES as u64).expect("under 60")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_land_in_their_minute_oldest_first() {
        let h = History::default();
        h.count_at(1_000, Level::Warn, 3);
        h.count_at(1_059, Level::Error, 2);
        h.count_at(1_059, Level::Info, 1);
        h.late_at(1_059, Duration::from_millis(40));
        h.late_at(1_059, Duration::from_millis(12));
        let m = h.minutes_to(1_059);
        assert_eq!(m.events[Level::Warn as usize][0], 3);
        assert_eq!(m.events[Level::Error as usize][59], 2);
        assert_eq!(m.events[Level::Info as usize][59], 1);
        assert_eq!(m.lateness_ms[59], 40, "the worst of the minute");
        assert!(m.events.iter().all(|c| c.len() == MINUTES));
        assert_eq!(m.lateness_ms.len(), MINUTES);
    }

    #[test]
    fn the_ring_rolls_over_and_forgets_the_old_hour() {
        let h = History::default();
        h.count_at(1_000, Level::Warn, 3);
        h.late_at(1_000, Duration::from_millis(900));
        // An hour later the minute 1_000 is out of the window...
        let m = h.minutes_to(1_060);
        assert_eq!(m.events[Level::Warn as usize].iter().sum::<u64>(), 0);
        assert_eq!(m.lateness_ms.iter().sum::<u64>(), 0);
        // ... and minute 1_060, sharing its slot, starts from zero.
        h.count_at(1_060, Level::Warn, 1);
        h.late_at(1_060, Duration::from_millis(5));
        let m = h.minutes_to(1_060);
        assert_eq!(m.events[Level::Warn as usize][59], 1);
        assert_eq!(m.lateness_ms[59], 5);
        // A minute with nothing recorded reads as zero, not as the old
        // hour's count.
        h.count_at(1_001, Level::Debug, 7);
        let m = h.minutes_to(1_061);
        assert_eq!(m.events[Level::Debug as usize].iter().sum::<u64>(), 0);
        assert_eq!(m.events[Level::Warn as usize][58], 1);
    }

    #[test]
    fn early_minutes_pad_to_an_hour() {
        let h = History::default();
        h.count_at(2, Level::Info, 4);
        let m = h.minutes_to(2);
        assert_eq!(m.events[Level::Info as usize].len(), MINUTES);
        assert_eq!(m.events[Level::Info as usize][59], 4);
    }
}

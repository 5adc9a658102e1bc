//! Waits between attempts to reach an unreachable Redis: doubling from 1 s
//! to a 60 s cap, with uniform jitter so a fleet does not reconnect in step.

use std::time::Duration;

use rand::Rng;

/// Exponential backoff with "equal jitter": each wait is uniform in
/// `[nominal / 2, nominal]`, where the nominal wait doubles per attempt.
#[derive(Debug, Clone)]
pub(crate) struct Backoff {
    first: Duration,
    cap: Duration,
    attempt: u32,
}

impl Default for Backoff {
    fn default() -> Self {
        Self::new(Duration::from_secs(1), Duration::from_secs(60))
    }
}

impl Backoff {
    /// Backoff starting at `first` and never exceeding `cap`.
    pub(crate) fn new(first: Duration, cap: Duration) -> Self {
        Self {
            first,
            cap,
            attempt: 0,
        }
    }

    /// The nominal (un-jittered) wait of the next attempt.
    pub(crate) fn nominal(&self) -> Duration {
        let factor = 1u32 << self.attempt.min(20);
        self.first.saturating_mul(factor).min(self.cap)
    }

    /// The next wait; each call doubles the nominal wait up to the cap.
    pub(crate) fn next_wait(&mut self) -> Duration {
        let nominal = self.nominal();
        self.attempt = self.attempt.saturating_add(1);
        let low = nominal / 2;
        rand::rng().random_range(low..=nominal)
    }

    /// Back to the first wait, after a success.
    pub(crate) fn reset(&mut self) {
        self.attempt = 0;
    }
}

/// A short wait after a single failed probe or publish: uniform in 1-2 s.
pub(crate) fn retry_wait() -> Duration {
    rand::rng().random_range(Duration::from_secs(1)..=Duration::from_secs(2))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_to_the_cap_with_jitter() {
        let mut b = Backoff::default();
        let mut nominal = Vec::new();
        for _ in 0..9 {
            let n = b.nominal();
            let wait = b.next_wait();
            assert!(
                wait >= n / 2 && wait <= n,
                "{wait:?} outside [{:?}, {n:?}]",
                n / 2
            );
            nominal.push(n.as_secs());
        }
        assert_eq!(nominal, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
        b.reset();
        assert_eq!(b.nominal(), Duration::from_secs(1));
    }

    #[test]
    fn retry_is_between_one_and_two_seconds() {
        for _ in 0..100 {
            let w = retry_wait();
            assert!(w >= Duration::from_secs(1) && w <= Duration::from_secs(2));
        }
    }
}

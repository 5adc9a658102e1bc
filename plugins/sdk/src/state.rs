//! A home for a watcher's state between polls.

use std::sync::{Mutex, PoisonError};

/// Holds one watcher instance in a `static`, so state (a high-water mark, a
/// baseline) survives from one `observe` call to the next.
///
/// ```
/// # use lookout_watcher::Slot;
/// static COUNT: Slot<u32> = Slot::new();
/// COUNT.set(1);
/// assert_eq!(COUNT.with(|| 0, |n| { *n += 1; *n }), 2);
/// ```
///
/// A component instance is single-threaded; the mutex only makes the
/// `static` legal and costs nothing contended.
#[derive(Debug, Default)]
pub struct Slot<T> {
    inner: Mutex<Option<T>>,
}

impl<T> Slot<T> {
    /// An empty slot.
    pub const fn new() -> Self {
        Slot {
            inner: Mutex::new(None),
        }
    }

    /// Puts `value` in the slot, dropping what was there.
    pub fn set(&self, value: T) {
        *self.inner.lock().unwrap_or_else(PoisonError::into_inner) = Some(value);
    }

    /// Runs `f` on the value in the slot, first filling an empty slot with
    /// `init()`.
    pub fn with<R>(&self, init: impl FnOnce() -> T, f: impl FnOnce(&mut T) -> R) -> R {
        let mut guard = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        f(guard.get_or_insert_with(init))
    }
}

#[cfg(test)]
mod tests {
    use super::Slot;

    #[test]
    fn keeps_state_between_calls() {
        static SLOT: Slot<Vec<u8>> = Slot::new();
        SLOT.with(Vec::new, |v| v.push(1));
        SLOT.with(|| panic!("already filled"), |v| v.push(2));
        assert_eq!(SLOT.with(Vec::new, |v| v.clone()), [1, 2]);
        SLOT.set(vec![9]);
        assert_eq!(SLOT.with(Vec::new, |v| v.clone()), [9]);
    }
}

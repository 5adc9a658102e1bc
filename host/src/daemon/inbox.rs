//! What the daemon wants of one poller, written without waiting for it:
//! the watchers to run, when to start, the target's labels. The poller
//! catches up between polls.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::Notify;

use crate::sandbox::Instance;
use crate::watchers::load::Spec;

/// What the daemon wants of one poller: the watchers it should run, when
/// to start, its labels. The daemon writes it without waiting (a lock held
/// for a few instructions, then a wake-up), the poller catches up with it
/// between polls; so a poller busy with a slow or lying server never holds
/// up reloads, discovery or shutdown, and no change is ever dropped: a
/// later change to the same watcher replaces one not yet taken.
#[derive(Default)]
pub(crate) struct Inbox {
    desired: Mutex<Desired>,
    /// Woken at every change.
    pub(super) changed: Notify,
}

/// The changes a poller has not taken yet.
#[derive(Default)]
pub(super) struct Desired {
    /// By watcher name, the latest change.
    pub watchers: BTreeMap<String, Change>,
    /// Start polling now (the start-up watchers are ready), if not yet.
    pub start: bool,
    /// New labels for this target's envelopes (a discovered node changed
    /// role).
    pub labels: Option<BTreeMap<String, String>>,
}

/// One watcher's change.
pub(super) enum Change {
    /// Run this watcher (replacing one of the same name), with an instance
    /// already configured when there is one.
    Install(Arc<Spec>, Option<Box<Instance>>),
    /// Stop running it.
    Remove,
}

impl Inbox {
    /// Run `spec` (replacing one of the same name), with `instance` when
    /// one was configured already.
    pub(crate) fn install(&self, spec: Arc<Spec>, instance: Option<Instance>) {
        self.change(|d| {
            let name = spec.name.clone();
            d.watchers
                .insert(name, Change::Install(spec, instance.map(Box::new)));
        });
    }

    /// Stop running the watcher named `name`.
    pub(crate) fn remove(&self, name: &str) {
        self.change(|d| {
            d.watchers.insert(name.to_owned(), Change::Remove);
        });
    }

    /// Start polling now, if not yet.
    pub(crate) fn start(&self) {
        self.change(|d| d.start = true);
    }

    /// Put `labels` on this target's envelopes from now on.
    pub(crate) fn relabel(&self, labels: BTreeMap<String, String>) {
        self.change(|d| d.labels = Some(labels));
    }

    fn change(&self, change: impl FnOnce(&mut Desired)) {
        change(&mut self.desired.lock().unwrap_or_else(PoisonError::into_inner));
        self.changed.notify_one();
    }

    /// The changes not taken yet, taken now.
    pub(super) fn take(&self) -> Desired {
        std::mem::take(&mut *self.desired.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

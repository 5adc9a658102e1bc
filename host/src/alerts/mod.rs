//! Conditions that fire and resolve: the active set the pollers, the
//! supervisor and the daemon feed (watchers' conditions and the host's
//! own), published on a [`Board`] that the Alertmanager sender and the
//! status page read. The set and its rules are in `active`, the `[alerts]`
//! table in `settings`.

pub(crate) mod active;
pub(crate) mod alertmanager;
pub(crate) mod settings;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use tokio::sync::Notify;

/// One condition as it is delivered to Alertmanager.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Alert {
    /// `EnvelopeCondition::fingerprint`: one per target, watcher, kind
    /// and key.
    pub fingerprint: String,
    /// Alertmanager labels, names already fit for Prometheus
    /// (`[a-zA-Z_][a-zA-Z0-9_]*`): alertname, condition, instance, target,
    /// the target's labels, severity, service.
    pub labels: BTreeMap<String, String>,
    /// The last message of the condition.
    pub summary: String,
    /// What fired it: the watcher, the kind and key, the target.
    pub description: String,
    /// Where an operator reads what to do.
    pub runbook_url: Option<String>,
    /// When it fired.
    pub starts_at: SystemTime,
    /// When it resolved; `None` while it is active.
    pub ends_at: Option<SystemTime>,
}

/// The active conditions of this process, and the resolutions not yet
/// delivered, shared between the one writer (the condition set) and its
/// readers. A reader takes a [`Board::snapshot`] whenever
/// [`Board::changed`] wakes it, and at its own cadence.
///
/// One fingerprint may be on it twice: a resolution under the labels it
/// fired with, and the same condition firing anew under other labels (a
/// changed level or role), as Alertmanager tells alerts by their labels.
#[derive(Debug, Default)]
pub(crate) struct Board {
    alerts: Mutex<BTreeMap<Slot, Alert>>,
    changed: Notify,
}

/// Where an alert sits on the board: its fingerprint, then its labels.
type Slot = (String, BTreeMap<String, String>);

impl Board {
    /// An empty board, shared.
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Every alert on the board: active ones and resolutions still to be
    /// delivered, by fingerprint.
    pub(crate) fn snapshot(&self) -> Vec<Alert> {
        self.lock().values().cloned().collect()
    }

    /// Puts `alert` on the board (replacing the one of its fingerprint) and
    /// wakes the readers.
    pub(crate) fn put(&self, alert: Alert) {
        let slot = (alert.fingerprint.clone(), alert.labels.clone());
        self.lock().insert(slot, alert);
        self.changed.notify_waiters();
    }

    /// Takes the resolved alerts of `fingerprint` off the board once every
    /// reader that must deliver them has; an active one stays.
    pub(crate) fn forget_resolved(&self, fingerprint: &str) {
        self.lock()
            .retain(|(fp, _), a| fp != fingerprint || a.ends_at.is_none());
    }

    /// Takes the active alert of `fingerprint` off the board without a
    /// resolution: this process no longer watches what it is about, and
    /// the one that does fires it. Readers stop re-sending it and let it
    /// lapse.
    pub(crate) fn lapse(&self, fingerprint: &str) {
        self.lock()
            .retain(|(fp, _), a| fp != fingerprint || a.ends_at.is_some());
        self.changed.notify_waiters();
    }

    /// Completes at the next change of the board.
    pub(crate) async fn changed(&self) {
        self.changed.notified().await;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<Slot, Alert>> {
        self.alerts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

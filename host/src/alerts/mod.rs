//! Conditions that fire and resolve: the active set the pollers, the
//! supervisor and the daemon feed (watchers' conditions and the host's
//! own), published on a [`Board`] that the Alertmanager sender and the
//! status page read.

#![allow(dead_code)]

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
#[derive(Debug, Default)]
pub(crate) struct Board {
    alerts: Mutex<BTreeMap<String, Alert>>,
    changed: Notify,
}

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
        self.lock().insert(alert.fingerprint.clone(), alert);
        self.changed.notify_waiters();
    }

    /// Takes the resolved alert of `fingerprint` off the board once every
    /// reader that must deliver it has; an active one stays.
    pub(crate) fn forget_resolved(&self, fingerprint: &str) {
        let mut alerts = self.lock();
        if alerts.get(fingerprint).is_some_and(|a| a.ends_at.is_some()) {
            alerts.remove(fingerprint);
        }
    }

    /// Completes at the next change of the board.
    pub(crate) async fn changed(&self) {
        self.changed.notified().await;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Alert>> {
        self.alerts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

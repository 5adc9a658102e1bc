//! The publisher task: the one owner of the outbox, breaker and spool. The
//! pollers hand it envelopes through a bounded queue that it keeps
//! draining even while a send is in flight, so a dead or frozen bus never
//! delays a poll; it publishes as soon as envelopes arrive (unless the
//! breaker is open), retries on the breaker's schedule, and on shutdown
//! drains within the grace period and spools what is left. Envelopes come
//! sealed (their JSON written, once, when their caps were applied), so
//! that work is spread over the pollers rather than piled on this task.

use std::pin::pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::breaker::State;
use super::envelope::Sealed;
use super::publisher::Publisher;
use crate::redis::backoff::retry_wait;

/// Batches (one per poll, usually) the queue holds before senders wait.
/// The task drains it continuously, so it fills only if the task itself
/// is starved.
pub(crate) const QUEUE: usize = 1024;

/// How a publisher task ended.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stopped {
    /// Envelopes pushed in all.
    pub emitted: u64,
    /// Confirmed delivered.
    pub delivered: u64,
    /// Dropped by the outbox policy.
    pub dropped: u64,
    /// Of `emitted`, replayed from the spool of an earlier run.
    pub replayed: u64,
    /// Writes (PUBLISH or XADD) the bus refused with an error reply; each
    /// was retried, none was counted delivered.
    pub refused: u64,
    /// Left undelivered but written to the spool.
    pub spooled: usize,
    /// Left undelivered and not spooled: lost.
    pub lost: usize,
}

/// The publisher's state after a step of its task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Snapshot {
    /// Envelopes waiting in the outbox.
    pub pending: usize,
    /// Bytes of JSON waiting in the outbox.
    pub pending_bytes: usize,
    /// Envelopes delivered so far.
    pub delivered: u64,
    /// Envelopes dropped by the outbox policy so far.
    pub dropped: u64,
    /// The breaker's state.
    pub breaker: State,
}

/// Who is told how the publisher task is doing (the daemon's metrics);
/// the task knows nothing more of it.
pub(crate) trait Observer: Send + Sync {
    /// The publisher's state, after every step of the task.
    fn publisher(&self, snapshot: &Snapshot);
    /// Envelopes written to the spool at shutdown.
    fn spooled(&self, envelopes: usize);
    /// Envelopes queued for publishing (every one, the host's included).
    fn queued(&self, _envelopes: &[Sealed]) {}
}

/// Who turns the publisher's state into envelopes of the host's own (its
/// conditions about the bus and the outbox), which the task queues.
pub(crate) trait Reporter: Send + Sync {
    /// The envelopes to queue after a step that left `snapshot`.
    fn step(&self, snapshot: &Snapshot) -> Vec<Sealed>;
}

/// A handle to the publisher task; cheap to clone, one per poller.
#[derive(Clone)]
pub struct Outlet {
    tx: mpsc::Sender<Vec<Sealed>>,
    /// Told of every envelope queued here.
    observer: Option<Arc<dyn Observer>>,
}

impl Outlet {
    /// Queues `envelopes` behind everything queued before. Returns at once
    /// unless the queue is full, which only a starved task causes.
    pub(crate) async fn send(&self, envelopes: Vec<Sealed>) {
        if envelopes.is_empty() {
            return;
        }
        if let Some(o) = &self.observer {
            o.queued(&envelopes);
        }
        if let Err(e) = self.tx.send(envelopes).await {
            warn!(lost = e.0.len(), "publisher stopped; envelopes not queued");
        }
    }
}

/// Starts the publisher task on the current runtime. It runs until `stop`
/// is cancelled (or every [`Outlet`] is gone), then drains for at most
/// `grace`.
pub fn spawn(
    publisher: Publisher,
    stop: CancellationToken,
    grace: Duration,
) -> (Outlet, JoinHandle<Stopped>) {
    start(publisher, stop, grace, None, None)
}

/// [`spawn`], telling `observer` the outbox, deliveries and breaker after
/// every step, and queueing what `reporter` makes of them.
pub(crate) fn spawn_observed<O: Observer + 'static>(
    publisher: Publisher,
    stop: CancellationToken,
    grace: Duration,
    observer: Option<Arc<O>>,
    reporter: Option<Arc<dyn Reporter>>,
) -> (Outlet, JoinHandle<Stopped>) {
    start(
        publisher,
        stop,
        grace,
        observer.map(|o| o as Arc<dyn Observer>),
        reporter,
    )
}

fn start(
    publisher: Publisher,
    stop: CancellationToken,
    grace: Duration,
    observer: Option<Arc<dyn Observer>>,
    reporter: Option<Arc<dyn Reporter>>,
) -> (Outlet, JoinHandle<Stopped>) {
    let (tx, rx) = mpsc::channel(QUEUE);
    let outlet = Outlet {
        tx,
        observer: observer.clone(),
    };
    let watchers = Watchers { observer, reporter };
    let task = tokio::spawn(run(publisher, rx, stop, grace, watchers));
    (outlet, task)
}

/// Who is told about the task's steps.
struct Watchers {
    observer: Option<Arc<dyn Observer>>,
    reporter: Option<Arc<dyn Reporter>>,
}

/// Tells the observer the publisher's state and queues what the reporter
/// makes of it.
fn observe(watchers: &Watchers, publisher: &mut Publisher) {
    if watchers.observer.is_none() && watchers.reporter.is_none() {
        return;
    }
    let counts = publisher.counts();
    let snapshot = Snapshot {
        pending: publisher.pending(),
        pending_bytes: publisher.pending_bytes(),
        delivered: counts.delivered,
        dropped: counts.dropped,
        breaker: publisher.breaker_state(),
    };
    if let Some(o) = &watchers.observer {
        o.publisher(&snapshot);
    }
    if let Some(r) = &watchers.reporter {
        let envelopes = r.step(&snapshot);
        if let (Some(o), false) = (&watchers.observer, envelopes.is_empty()) {
            o.queued(&envelopes);
        }
        envelopes.into_iter().for_each(|e| publisher.push(e));
    }
}

async fn run(
    mut publisher: Publisher,
    mut rx: mpsc::Receiver<Vec<Sealed>>,
    stop: CancellationToken,
    grace: Duration,
    watchers: Watchers,
) -> Stopped {
    // What the spool replayed goes out before anything new is taken in
    // (new envelopes wait in the queue meanwhile), so a replayed full
    // outbox is not pushed out by the new run's first envelopes.
    let mut next_try: Option<Instant> = None;
    if publisher.pending() > 0 {
        let replayed = tokio::select! {
            biased;
            () = stop.cancelled() => None,
            result = publisher.flush() => Some(result),
        };
        if let Some(Err(e)) = &replayed {
            warn!(
                buffered = publisher.pending(),
                "publish failed, will retry: {e:#}"
            );
        }
        next_try = (publisher.pending() > 0).then(|| retry_at(&publisher));
    }
    let mut staged: Vec<Sealed> = Vec::new();
    'run: loop {
        observe(&watchers, &mut publisher);
        if stop.is_cancelled() {
            break;
        }
        tokio::select! {
            biased;
            () = stop.cancelled() => break,
            batch = rx.recv() => match batch {
                Some(batch) => batch.into_iter().for_each(|e| publisher.push(e)),
                None => break,
            },
            () = sleep_until(next_try), if next_try.is_some() => {}
        }
        // Publish, taking in what arrives meanwhile; again while more came.
        loop {
            let result = {
                let mut flush = pin!(publisher.flush());
                loop {
                    tokio::select! {
                        biased;
                        result = &mut flush => break Some(result),
                        // The drain below sends again what this attempt
                        // did not confirm.
                        () = stop.cancelled() => break None,
                        Some(batch) = rx.recv() => staged.extend(batch),
                    }
                }
            };
            let more = !staged.is_empty();
            staged.drain(..).for_each(|e| publisher.push(e));
            observe(&watchers, &mut publisher);
            match result {
                None => break 'run,
                Some(Ok(_)) if more => continue,
                Some(Ok(_)) => {
                    next_try = (publisher.pending() > 0).then(|| retry_at(&publisher));
                }
                Some(Err(e)) => {
                    warn!(
                        buffered = publisher.pending(),
                        "publish failed, will retry: {e:#}"
                    );
                    next_try = Some(retry_at(&publisher));
                }
            }
            break;
        }
    }
    rx.close();
    while let Ok(batch) = rx.try_recv() {
        batch.into_iter().for_each(|e| publisher.push(e));
    }
    let stopped = drain(&mut publisher, grace).await;
    if let Some(o) = &watchers.observer {
        let counts = publisher.counts();
        o.publisher(&Snapshot {
            pending: publisher.pending(),
            pending_bytes: publisher.pending_bytes(),
            delivered: counts.delivered,
            dropped: counts.dropped,
            breaker: publisher.breaker_state(),
        });
        o.spooled(stopped.spooled);
    }
    stopped
}

/// When to try again: when the breaker allows it, else in 1-2 s.
fn retry_at(publisher: &Publisher) -> Instant {
    publisher
        .retry_at()
        .unwrap_or_else(|| Instant::now() + retry_wait())
}

/// Sleeps until `at`; with no time, forever (a `select!` branch that
/// never fires).
pub(crate) async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

/// Shutdown: drains the outbox within the grace period, spools what is
/// left (with a spool) and logs the counts.
async fn drain(publisher: &mut Publisher, grace: Duration) -> Stopped {
    let left = publisher.drain(grace).await;
    let spooled = if left > 0 {
        publisher.spool_pending()
    } else {
        0
    };
    let lost = left - spooled.min(left);
    let counts = publisher.counts();
    if lost > 0 {
        warn!(lost, "could not publish queued envelopes before exit");
    }
    let refused: u64 = publisher.refused().values().sum();
    // `OOM:3,READONLY:1`: refused writes by error code.
    let refused_by = publisher
        .refused()
        .iter()
        .map(|(code, n)| format!("{code}:{n}"))
        .collect::<Vec<_>>()
        .join(",");
    info!(
        emitted = counts.emitted,
        delivered = counts.delivered,
        dropped = counts.dropped,
        spooled,
        lost,
        replayed = counts.replayed,
        refused,
        refused_by = %refused_by,
        spool_failures = publisher.spool_failures(),
        rss_kib = rss_kib(),
        "lookout stopped"
    );
    Stopped {
        emitted: counts.emitted,
        delivered: counts.delivered,
        dropped: counts.dropped,
        replayed: counts.replayed,
        refused,
        spooled,
        lost,
    }
}

/// Resident set size of this process in KiB (Linux), 0 when unknown.
pub fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
            line.split_whitespace().nth(1)?.parse().ok()
        })
        .unwrap_or(0)
}

//! One target's poller task: on its own schedule, probe the Redis, run the
//! target's watchers (each under its own deadline) and hand the envelopes
//! to the publisher's queue; back off while the Redis is unreachable and
//! report the outage once. Nothing it waits for belongs to another target
//! or to the bus.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use tokio::sync::{Semaphore, mpsc, watch};
use tracing::{error, info, warn};

use super::lateness::Lateness;
use crate::delivery::envelope::{Emitted, Envelope, Level, Origin};
use crate::delivery::task::Outlet;
use crate::fields;
use crate::metrics::TargetMetrics;
use crate::redis::backoff::{Backoff, retry_wait};
use crate::redis::probe::{Notice, ProbeError, Prober, Probes};
use crate::sandbox::{Engine, Instance};
use crate::watchers::load::Spec;
use crate::watchers::supervisor::Supervisor;

/// What the daemon tells a poller between polls.
pub(crate) enum Control {
    /// Run this watcher (replacing one of the same name), with an instance
    /// already configured when there is one (boxed: a control queue's
    /// slots are allocated for every target, their size matters).
    Install(Arc<Spec>, Option<Box<Instance>>),
    /// Stop running the watcher of this name.
    Remove(String),
    /// Start polling now (the start-up watchers are ready), if not yet.
    Start,
    /// New labels for this target's envelopes (a discovered node changed
    /// role).
    Relabel(std::collections::BTreeMap<String, String>),
}

/// When a poller's first poll happens.
#[derive(Debug, Clone, Copy)]
pub(crate) enum FirstPoll {
    /// On [`Control::Start`], or one interval after start at the latest.
    WhenReadyOrAfterInterval,
    /// Only on [`Control::Start`] (bounded runs poll with every watcher).
    WhenReady,
}

/// One watched Redis and everything polling it needs.
pub struct Poller {
    /// `host:port`, the `instance` field of its envelopes.
    instance: Arc<str>,
    prober: Prober,
    supervisor: Supervisor,
    outlet: Outlet,
    origin: Origin,
    interval: Duration,
    polls: u64,
    /// Probes the next poll needs; `None` asks the supervisor afresh.
    next_probes: Option<Probes>,
    /// The refusal last reported, so it is said once.
    refused: Option<String>,
    /// `fields.labels` of every envelope about this target.
    labels: Option<serde_json::Value>,
    /// Delay of the first poll, spreading targets across the interval.
    offset: Duration,
    /// Permits for running watchers, shared by every poller: bounds the
    /// watcher calls in flight across targets.
    calls: Arc<Semaphore>,
    /// How late polls start against their schedule, shared by every poller.
    lateness: Arc<Lateness>,
    /// This target's metric handles, with metrics on.
    metrics: Option<Arc<TargetMetrics>>,
}

/// Wait before asking again a Redis that refused the credentials or a
/// command: an operator has to change something first.
const REFUSED_WAIT: Duration = Duration::from_secs(30);

impl Poller {
    /// A poller for the Redis behind `prober`, running watchers with
    /// `engine`, every `interval`, publishing through `outlet`.
    pub fn new(
        prober: Prober,
        engine: Engine,
        interval: Duration,
        origin: Origin,
        outlet: Outlet,
    ) -> Self {
        Self {
            instance: Arc::from(prober.conn.instance.as_str()),
            prober,
            supervisor: Supervisor::new(engine, interval),
            outlet,
            origin,
            interval,
            polls: 0,
            next_probes: None,
            refused: None,
            labels: None,
            offset: Duration::ZERO,
            calls: Arc::new(Semaphore::new(Semaphore::MAX_PERMITS)),
            lateness: Arc::new(Lateness::default()),
            metrics: None,
        }
    }

    /// Counts polls, their duration and lateness, and its watchers' calls
    /// into `metrics`.
    #[must_use]
    pub fn with_metrics(mut self, metrics: Option<Arc<TargetMetrics>>) -> Self {
        if let Some(m) = &metrics {
            self.supervisor.set_metrics(m.clone());
        }
        self.metrics = metrics;
        self
    }

    /// Runs watchers only while holding one of `calls`' permits, and
    /// records how late each poll starts into `lateness`; both are shared
    /// with the other targets' pollers.
    #[must_use]
    pub fn with_shared(mut self, calls: Arc<Semaphore>, lateness: Arc<Lateness>) -> Self {
        self.calls = calls;
        self.lateness = lateness;
        self
    }

    /// Copies `labels` into `fields.labels` of every envelope about this
    /// target.
    #[must_use]
    pub fn with_labels(mut self, labels: &std::collections::BTreeMap<String, String>) -> Self {
        self.set_labels(labels);
        self
    }

    fn set_labels(&mut self, labels: &std::collections::BTreeMap<String, String>) {
        self.labels = (!labels.is_empty()).then(|| {
            serde_json::Value::Object(
                labels
                    .iter()
                    .map(|(k, v)| (k.clone(), serde_json::Value::from(v.as_str())))
                    .collect(),
            )
        });
    }

    /// Delays the first poll by `offset` (targets spread over the
    /// interval rather than polled at once).
    #[must_use]
    pub fn with_offset(mut self, offset: Duration) -> Self {
        self.offset = offset;
        self
    }

    /// Polls until `stop` turns true or `limit` polls are done.
    ///
    /// # Errors
    /// Only with a limit of one poll (`--once`): that poll failed.
    pub(crate) async fn run(
        mut self,
        mut control: mpsc::Receiver<Control>,
        mut stop: watch::Receiver<bool>,
        first: FirstPoll,
        limit: Option<u64>,
    ) -> Result<()> {
        let once = limit == Some(1);
        let mut backoff = Backoff::default();
        let mut down_since: Option<Instant> = None;
        let mut started = false;
        let mut next_poll = match first {
            FirstPoll::WhenReadyOrAfterInterval => {
                Some(Instant::now() + self.interval + self.offset)
            }
            FirstPoll::WhenReady => None,
        };
        let mut done = 0u64;
        loop {
            tokio::select! {
                biased;
                _ = stop.wait_for(|s| *s) => return Ok(()),
                Some(c) = control.recv() => {
                    match c {
                        Control::Install(spec, instance) => self.install(spec, instance.map(|i| *i)),
                        Control::Remove(name) => {
                            self.supervisor.remove(&name);
                            self.watchers_changed();
                        }
                        Control::Start if !started => {
                            next_poll = Some(Instant::now() + self.offset);
                        }
                        Control::Start => {}
                        Control::Relabel(labels) => self.set_labels(&labels),
                    }
                    continue;
                }
                () = sleep_until(next_poll) => {}
            }
            started = true;
            let began = Instant::now();
            // From the second poll on: the first is due at the target's
            // offset in the first interval, while watchers load and
            // instantiate.
            if let Some(due) = next_poll
                && done > 0
            {
                let late = began.saturating_duration_since(due);
                self.lateness.record(late);
                if let Some(m) = &self.metrics {
                    m.late(late);
                }
            }
            let outcome = tokio::select! {
                biased;
                _ = stop.wait_for(|s| *s) => return Ok(()),
                outcome = self.poll() => outcome,
            };
            done += 1;
            if let Some(m) = &self.metrics {
                m.polled(began.elapsed(), outcome.is_ok());
            }
            let wait = match outcome {
                Ok(()) => {
                    backoff.reset();
                    if let Some(since) = down_since.take() {
                        self.back_online(since.elapsed()).await;
                    }
                    if self.refused.take().is_some() {
                        self.accepted().await;
                    }
                    self.interval.saturating_sub(began.elapsed())
                }
                Err(e) if once => return Err(e.into()),
                Err(e) => self.failed_poll(e, &mut down_since, &mut backoff).await,
            };
            if limit.is_some_and(|limit| done >= limit) {
                return Ok(());
            }
            next_poll = Some(Instant::now() + wait);
        }
    }

    /// Runs `spec` on this target from the next poll on.
    pub fn install(&mut self, spec: Arc<Spec>, instance: Option<Instance>) {
        self.supervisor.install(spec, instance);
        self.watchers_changed();
    }

    fn watchers_changed(&mut self) {
        let (fields, sections) = self.supervisor.info_needs();
        self.prober.read_info(fields, sections);
        self.next_probes = None;
    }

    /// One poll now, outside the schedule (for measurements).
    ///
    /// # Errors
    /// The watched Redis is unreachable or a probe failed.
    pub async fn poll_now(&mut self) -> Result<(), ProbeError> {
        self.poll().await
    }

    /// One poll: probe what the due watchers need, run them, queue their
    /// envelopes.
    async fn poll(&mut self) -> Result<(), ProbeError> {
        self.polls += 1;
        let probes = self
            .next_probes
            .take()
            .unwrap_or_else(|| self.supervisor.plan(self.polls, Instant::now()));
        let snapshot = self.prober.poll(probes).await?;
        let mut notices: Vec<Emitted> = snapshot.notices.iter().map(|n| self.notice(n)).collect();
        let permit = self.calls.clone().acquire_owned().await;
        let (emitted, next) = self
            .supervisor
            .poll(self.polls, &self.instance, &snapshot)
            .await;
        drop(permit);
        self.next_probes = Some(next);
        notices.extend(emitted);
        self.publish(notices).await;
        Ok(())
    }

    /// The host's event (and log line) for a probe's notice.
    fn notice(&self, notice: &Notice) -> Emitted {
        let instance = &self.instance;
        match notice {
            Notice::SlowlogGap { first, last } => {
                let missed = last - first + 1;
                warn!(
                    missed,
                    first_id = first,
                    last_id = last,
                    "slowlog entries missed at {instance}"
                );
                Emitted::host(
                    Level::Warn,
                    format!(
                        "slowlog gap: {missed} entries (ids {first} to {last}) on {instance} were \
                         logged but could not be read; raise slowlog-max-len on the server, or \
                         slowlog_count, or poll more often"
                    ),
                    fields! {"missed" => missed, "first_id" => *first, "last_id" => *last},
                )
            }
            Notice::SlowlogRefused(reason) => {
                error!("{reason}; SLOWLOG switched off, watchers reading it wait");
                Emitted::host(
                    Level::Error,
                    format!(
                        "probe refused: {reason}; SLOWLOG switched off, watchers reading it wait, the others run"
                    ),
                    fields! {"probe" => "slowlog", "error" => reason.clone()},
                )
            }
            Notice::SlowlogAllowed => {
                info!("SLOWLOG allowed again at {instance}");
                Emitted::host(
                    Level::Info,
                    format!("probe allowed: SLOWLOG answered again at {instance}"),
                    fields! {"probe" => "slowlog"},
                )
            }
        }
    }

    async fn accepted(&mut self) {
        let instance = self.instance.clone();
        info!("redis at {instance} accepts lookout again");
        let event = Emitted::host(
            Level::Info,
            format!(
                "instance accepted: redis at {instance} accepts lookout's credentials and probes again"
            ),
            fields! {},
        );
        self.publish(vec![event]).await;
    }

    async fn publish(&mut self, emitted: Vec<Emitted>) {
        let envelopes: Vec<Envelope> = emitted
            .into_iter()
            .map(|e| {
                let mut envelope = self.origin.wrap(&self.instance, e);
                if let Some(labels) = &self.labels {
                    envelope.fields.insert("labels".to_owned(), labels.clone());
                }
                envelope
            })
            .collect();
        self.outlet.send(envelopes).await;
    }

    async fn back_online(&mut self, outage: Duration) {
        let instance = self.instance.clone();
        info!(
            outage_s = outage.as_secs_f64(),
            "redis reachable again at {instance}"
        );
        let event = Emitted::host(
            Level::Info,
            format!(
                "instance back: redis reachable again at {instance} after {:.1}s",
                outage.as_secs_f64()
            ),
            fields! {"outage_ms" => u64::try_from(outage.as_millis()).unwrap_or(u64::MAX)},
        );
        self.publish(vec![event]).await;
    }

    async fn failed_poll(
        &mut self,
        e: ProbeError,
        down_since: &mut Option<Instant>,
        backoff: &mut Backoff,
    ) -> Duration {
        let instance = self.instance.clone();
        match e {
            ProbeError::Unreachable(cause) => {
                if down_since.is_none() {
                    *down_since = Some(Instant::now());
                    error!("redis lost at {instance}: {cause:#}");
                    let event = Emitted::host(
                        Level::Error,
                        format!("instance unreachable: redis at {instance} does not answer"),
                        fields! {"error" => format!("{cause:#}")},
                    );
                    self.publish(vec![event]).await;
                }
                let wait = backoff.next_wait();
                warn!(
                    "redis unreachable at {instance}, retrying in {:.1}s",
                    wait.as_secs_f64()
                );
                wait
            }
            ProbeError::Refused(reason) => {
                if self.refused.as_deref() != Some(reason.as_str()) {
                    error!("{reason} (retrying every {}s)", REFUSED_WAIT.as_secs());
                    let event = Emitted::host(
                        Level::Error,
                        format!("instance refused: {reason}"),
                        fields! {"error" => reason.clone(), "retry_s" => REFUSED_WAIT.as_secs()},
                    );
                    self.publish(vec![event]).await;
                    self.refused = Some(reason);
                }
                REFUSED_WAIT
            }
            other => {
                let wait = retry_wait();
                warn!("{other}; retrying in {:.1}s", wait.as_secs_f64());
                wait
            }
        }
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

//! One target's poller task: on its own schedule, probe the Redis, run the
//! target's watchers (each under its own deadline) and hand the envelopes
//! to the publisher's queue; back off while the Redis is unreachable and
//! report the outage once. Nothing it waits for belongs to another target
//! or to the bus.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use super::events::{self, About};
use super::inbox::{Change, Desired, Inbox};
use super::lateness::Lateness;
use crate::alerts::active::{Active, Hold, RECHECK_POLLS, host_condition, kinds};
use crate::delivery::envelope::fields;
use crate::delivery::envelope::{ConditionState, HOST_TARGET};
use crate::delivery::envelope::{Emitted, Level, Origin};
use crate::delivery::task::{Outlet, sleep_until};
use crate::metrics::TargetMetrics;
use crate::redis::backoff::{Backoff, retry_wait};
use crate::redis::probe::{ProbeError, Prober, Probes};
use crate::sandbox::{Engine, Instance};
use crate::watchers::load::Spec;
use crate::watchers::supervisor::Supervisor;

/// When a poller's first poll happens.
#[derive(Debug, Clone, Copy)]
pub(crate) enum FirstPoll {
    /// On [`Inbox::start`], or one interval after start at the latest.
    WhenReadyOrAfterInterval,
    /// Only on [`Inbox::start`] (bounded runs poll with every watcher).
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
    /// Whom its events are about: this target, with its labels.
    about: About,
    /// Delay of the first poll, spreading targets across the interval.
    offset: Duration,
    /// Permits for running watchers, shared by every poller: bounds the
    /// watcher calls in flight across targets.
    calls: Arc<Semaphore>,
    /// Memory for snapshots read and waiting for their watchers, in KiB,
    /// shared by every poller; and its size.
    snapshots: Arc<Semaphore>,
    snapshots_kib: u32,
    /// KiB the last snapshot took: what the next poll reserves.
    last_kib: u32,
    /// How late polls start against their schedule, shared by every poller.
    lateness: Arc<Lateness>,
    /// This target's metric handles, with metrics on.
    metrics: Option<Arc<TargetMetrics>>,
    /// The active set its conditions go through, and how long a host
    /// condition holds before it fires; `None` outside the daemon.
    conditions: Option<(Arc<Active>, Duration)>,
    /// Polls failing to reach the target, and refusing lookout.
    unreachable: Hold,
    refusing: Hold,
    /// Restarted watchers, with the poll by which they must report their
    /// conditions again.
    rechecks: std::collections::BTreeMap<String, u64>,
    /// Host events waiting for the next publish (a watcher unloaded or
    /// replaced, the target relabelled).
    queued: Vec<Emitted>,
}

/// KiB reserved for a target's first snapshot (a default INFO and a few
/// probes).
const FIRST_SNAPSHOT_KIB: u32 = 16;

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
        let backlog = usize::try_from(prober.slowlog_count()).unwrap_or(usize::MAX);
        Self {
            instance: Arc::from(prober.conn.instance.as_str()),
            about: About::instance(&prober.conn.instance),
            prober,
            supervisor: Supervisor::new(engine, interval).with_backlog(backlog),
            outlet,
            origin,
            interval,
            polls: 0,
            next_probes: None,
            refused: None,
            offset: Duration::ZERO,
            calls: Arc::new(Semaphore::new(Semaphore::MAX_PERMITS)),
            snapshots: Arc::new(Semaphore::new(Semaphore::MAX_PERMITS)),
            snapshots_kib: u32::MAX,
            last_kib: FIRST_SNAPSHOT_KIB,
            lateness: Arc::new(Lateness::default()),
            metrics: None,
            conditions: None,
            unreachable: Hold::default(),
            refusing: Hold::default(),
            rechecks: std::collections::BTreeMap::new(),
            queued: Vec::new(),
        }
    }

    /// Names its target `key` (`Target::key`) in conditions' fingerprints
    /// and alerts, and takes its events through `active`; host conditions
    /// fire after holding `for_s`.
    #[must_use]
    pub(crate) fn with_conditions(
        mut self,
        key: &str,
        active: Arc<Active>,
        for_s: Duration,
    ) -> Self {
        self.about = self.about.clone().keyed(key);
        self.conditions = Some((active, for_s));
        self
    }

    /// Counts polls, their duration and lateness, and its watchers' calls
    /// into `metrics`.
    #[must_use]
    pub fn with_metrics(mut self, metrics: Option<Arc<TargetMetrics>>) -> Self {
        if let Some(m) = &metrics {
            let about = self.about.subject();
            m.describe(about.instance, about.labels);
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

    /// Reserves memory for each snapshot from `budget` (KiB permits, of
    /// `kib` in all, shared with the other targets' pollers) before it is
    /// read, as much as the last one took, and holds it until the
    /// snapshot's watchers ran: snapshots waiting for a watcher call take
    /// at most the budget, plus at most one snapshot's growth each.
    #[must_use]
    pub fn with_snapshot_budget(mut self, budget: Arc<Semaphore>, kib: u32) -> Self {
        self.snapshots = budget;
        self.snapshots_kib = kib.max(1);
        self
    }

    /// Copies `labels` into `fields.labels` of every envelope about this
    /// target.
    #[must_use]
    pub fn with_labels(mut self, labels: &std::collections::BTreeMap<String, String>) -> Self {
        self.about.relabel(labels);
        self
    }

    /// Delays the first poll by `offset` (targets spread over the
    /// interval rather than polled at once).
    #[must_use]
    pub fn with_offset(mut self, offset: Duration) -> Self {
        self.offset = offset;
        self
    }

    /// Polls until `stop` is cancelled or `limit` polls are done, taking
    /// what `inbox` asks for between polls.
    ///
    /// # Errors
    /// Only with a limit of one poll (`--once`): that poll failed.
    pub(crate) async fn run(
        mut self,
        inbox: Arc<Inbox>,
        stop: CancellationToken,
        first: FirstPoll,
        limit: Option<u64>,
    ) -> Result<()> {
        let once = limit == Some(1);
        let mut outage = Outage::default();
        let mut started = false;
        let mut next_poll = match first {
            FirstPoll::WhenReadyOrAfterInterval => {
                Some(Instant::now() + self.interval + self.offset)
            }
            FirstPoll::WhenReady => None,
        };
        let mut done = 0u64;
        loop {
            let desired = inbox.take();
            if desired.start && !started {
                next_poll = Some(Instant::now() + self.offset);
            }
            self.catch_up(desired);
            if !self.queued.is_empty() {
                let queued = std::mem::take(&mut self.queued);
                self.publish(queued).await;
            }
            let wake = next_poll;
            tokio::select! {
                biased;
                () = stop.cancelled() => return Ok(()),
                () = inbox.changed.notified() => continue,
                () = sleep_until(wake) => {}
            }
            started = true;
            let began = Instant::now();
            // From the second poll on: the first is due at the target's
            // offset in the first interval, while watchers load and
            // instantiate.
            if let Some(due) = wake
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
                () = stop.cancelled() => return Ok(()),
                outcome = self.poll() => outcome,
            };
            done += 1;
            if let Some(m) = &self.metrics {
                m.polled(began.elapsed(), outcome.is_ok());
            }
            // Polls keep to their schedule (the first due time plus whole
            // intervals), so a target's polls do not drift later by the
            // time each takes; a poll that ran past the next due time skips
            // to the one after, never polling twice in a row to catch up.
            let scheduled = next_poll.unwrap_or(began);
            let on_time = next_due(scheduled, self.interval, Instant::now());
            let wait = match outcome {
                Ok(()) => {
                    self.cleared(true, true).await;
                    outage.backoff.reset();
                    if let Some(since) = outage.down_since.take() {
                        self.back_online(since.elapsed()).await;
                    }
                    if let Some(since) = outage.slow_since.take() {
                        self.on_time(since.elapsed()).await;
                    }
                    if self.refused.take().is_some() {
                        self.accepted().await;
                    }
                    on_time
                }
                Err(e) if once => return Err(e.into()),
                Err(ProbeError::Overdue(reason)) => {
                    self.cleared(true, false).await;
                    self.overdue(reason, &mut outage.slow_since).await;
                    on_time
                }
                Err(e) => {
                    let reached = !matches!(e, ProbeError::Unreachable(_));
                    self.cleared(reached, false).await;
                    Instant::now() + self.failed_poll(e, &mut outage).await
                }
            };
            if limit.is_some_and(|limit| done >= limit) {
                return Ok(());
            }
            next_poll = Some(wait);
        }
    }

    /// Takes the changes the daemon asked for.
    fn catch_up(&mut self, desired: Desired) {
        let Desired {
            watchers, labels, ..
        } = desired;
        if let Some(labels) = labels {
            self.about.relabel(&labels);
            if let Some(m) = &self.metrics {
                let about = self.about.subject();
                m.describe(about.instance, about.labels);
            }
            if let Some((active, _)) = &self.conditions {
                let relabelled = active.relabelled(&self.about.subject());
                self.queued.extend(relabelled);
            }
        }
        if watchers.is_empty() {
            return;
        }
        for (name, change) in watchers {
            match change {
                Change::Install(spec, instance) => {
                    self.supervisor.install(spec, instance.map(|i| *i));
                    self.replaced(&name);
                }
                Change::Remove => {
                    self.supervisor.remove(&name);
                    self.unloaded(&name);
                }
            }
        }
        self.watchers_changed();
    }

    /// Watcher `name` was installed: a quarantine of it ends, and the
    /// conditions of the version it replaces are kept if it reports them
    /// again within [`RECHECK_POLLS`] polls.
    fn replaced(&mut self, name: &str) {
        let Some((active, _)) = &self.conditions else {
            return;
        };
        let key = self.about.subject().target_key.to_owned();
        if active.is_firing(&key, HOST_TARGET, kinds::WATCHER_QUARANTINED, name) {
            self.queued.push(host_condition(
                Level::Info,
                kinds::WATCHER_QUARANTINED,
                name,
                ConditionState::Resolved,
                format!("watcher {name} runs again: it was replaced or its settings changed"),
                fields! {"watcher" => name},
            ));
        }
        active.restarted(&key, name);
        self.rechecks
            .insert(name.to_owned(), self.polls + RECHECK_POLLS);
    }

    /// Watcher `name` was unloaded: what it held resolves.
    fn unloaded(&mut self, name: &str) {
        let Some((active, _)) = &self.conditions else {
            return;
        };
        let key = self.about.subject().target_key.to_owned();
        let why = format!("watcher {name} was unloaded");
        let mut resolved = active.resolve_all(&key, Some(name), &why);
        if active.is_firing(&key, HOST_TARGET, kinds::WATCHER_QUARANTINED, name) {
            resolved.push(host_condition(
                Level::Info,
                kinds::WATCHER_QUARANTINED,
                name,
                ConditionState::Resolved,
                format!("watcher {name} quarantine ended: {why}"),
                fields! {"watcher" => name},
            ));
        }
        self.rechecks.remove(name);
        self.queued.extend(resolved);
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
        // The poll's deadline is its interval: a server answering slowly
        // or not at all, or keeping a read going, fails this poll and the
        // next one starts on time.
        // Memory for the snapshot, reserved before it is read: no call
        // permit is held while the server answers.
        let want = self.last_kib.clamp(1, self.snapshots_kib);
        let mut reserved = self.snapshots.clone().acquire_many_owned(want).await.ok();
        let snapshot = self.prober.poll_within(probes, self.interval).await?;
        let kib = u32::try_from(snapshot.approx_bytes().div_ceil(1024))
            .unwrap_or(u32::MAX)
            .clamp(1, self.snapshots_kib);
        if let Some(held) = reserved.as_mut() {
            if kib > want {
                // More than reserved: taken if free, never waited for
                // while holding the rest.
                if let Ok(more) = self.snapshots.clone().try_acquire_many_owned(kib - want) {
                    held.merge(more);
                }
            } else if kib < want {
                drop(held.split((want - kib) as usize));
            }
        }
        self.last_kib = kib;
        let mut notices: Vec<Emitted> = snapshot
            .notices
            .iter()
            .map(|n| events::notice(&self.instance, n))
            .collect();
        let permit = self.calls.clone().acquire_owned().await;
        let (emitted, next) = self
            .supervisor
            .poll(self.polls, &self.instance, &snapshot)
            .await;
        drop(permit);
        drop(snapshot);
        drop(reserved);
        self.next_probes = Some(next);
        notices.extend(emitted);
        self.supervised(&mut notices);
        self.publish(notices).await;
        Ok(())
    }

    /// What the supervisor reported this poll, for the active set: a
    /// failed watcher restarts (its conditions wait [`RECHECK_POLLS`]
    /// polls to be reported again), a quarantined one is a condition; and
    /// the conditions of watchers restarted long enough ago that were not
    /// reported again resolve.
    fn supervised(&mut self, events: &mut Vec<Emitted>) {
        let Some((active, _)) = &self.conditions else {
            return;
        };
        let key = self.about.subject().target_key.to_owned();
        for event in events.iter_mut() {
            if event.target != HOST_TARGET || event.condition.is_some() {
                continue;
            }
            let state = event.fields.get("state").and_then(|v| v.as_str());
            let Some(watcher) = event
                .fields
                .get("watcher")
                .and_then(|v| v.as_str())
                .map(str::to_owned)
            else {
                continue;
            };
            match state {
                Some("failed") => {
                    active.restarted(&key, &watcher);
                    self.rechecks.insert(watcher, self.polls + RECHECK_POLLS);
                }
                Some("quarantined") => {
                    self.rechecks.remove(&watcher);
                    event.condition = host_condition(
                        event.level,
                        kinds::WATCHER_QUARANTINED,
                        &watcher,
                        ConditionState::Firing,
                        "",
                        fields! {},
                    )
                    .condition;
                }
                _ => {}
            }
        }
        let polls = self.polls;
        let due: Vec<String> = self
            .rechecks
            .iter()
            .filter(|(_, until)| **until <= polls)
            .map(|(w, _)| w.clone())
            .collect();
        for watcher in due {
            self.rechecks.remove(&watcher);
            events.extend(active.resolve_pending(&key, &watcher));
        }
    }

    /// The poll reached the target (`reached`) or completed (`ok`): the
    /// conditions that no longer hold resolve.
    async fn cleared(&mut self, reached: bool, ok: bool) {
        let instance = self.instance.clone();
        let key = self.about.subject().target_key.to_owned();
        let mut resolved = Vec::new();
        if reached && self.unreachable.clear() {
            resolved.push(host_condition(
                Level::Info,
                kinds::TARGET_UNREACHABLE,
                &key,
                ConditionState::Resolved,
                format!("target {key} is back: redis at {instance} answers"),
                fields! {},
            ));
        }
        if ok && self.refusing.clear() {
            resolved.push(host_condition(
                Level::Info,
                kinds::CONFIGURATION_REFUSED,
                &key,
                ConditionState::Resolved,
                format!("target {key} accepts lookout again: redis at {instance}"),
                fields! {},
            ));
        }
        if !resolved.is_empty() {
            self.publish(resolved).await;
        }
    }

    /// A host condition `kind` holds for this target: fires at the first
    /// failed poll once it held `for_s` (the retries keep their own
    /// schedule). Gives back `wait`.
    async fn holding(
        &mut self,
        kind: &str,
        msg: String,
        error: String,
        wait: Duration,
    ) -> Duration {
        let Some((_, for_s)) = self.conditions.clone() else {
            return wait;
        };
        let hold = if kind == kinds::TARGET_UNREACHABLE {
            &mut self.unreachable
        } else {
            &mut self.refusing
        };
        if hold.holds(for_s) {
            let key = self.about.subject().target_key.to_owned();
            let event = host_condition(
                Level::Error,
                kind,
                &key,
                ConditionState::Firing,
                msg,
                fields! {"error" => error, "for_s" => for_s.as_secs_f64()},
            );
            self.publish(vec![event]).await;
        }
        wait
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
        let emitted = match &self.conditions {
            Some((active, _)) => active.observe(&self.about.subject(), emitted),
            None => emitted,
        };
        let envelopes = self.about.envelopes(&self.origin, emitted);
        self.outlet.send(envelopes).await;
    }

    /// A poll ran past its interval after PING answered: said once (event
    /// and error line) until a poll completes in time again, then a line
    /// per poll; the next poll starts at its usual time.
    async fn overdue(&mut self, reason: String, slow_since: &mut Option<Instant>) {
        let instance = self.instance.clone();
        if slow_since.is_some() {
            warn!("redis at {instance} still too slow: {reason}");
            return;
        }
        *slow_since = Some(Instant::now());
        error!("redis at {instance} too slow: {reason}; polls go on at the interval");
        let event = Emitted::host(
            Level::Error,
            format!("instance slow: redis at {instance}: {reason}; polls go on at the interval"),
            fields! {"error" => reason, "interval_s" => self.interval.as_secs_f64()},
        );
        self.publish(vec![event]).await;
    }

    async fn on_time(&mut self, slow: Duration) {
        let instance = self.instance.clone();
        info!(
            slow_s = slow.as_secs_f64(),
            "redis at {instance} completes its polls in time again"
        );
        let event = Emitted::host(
            Level::Info,
            format!(
                "instance on time: redis at {instance} completes its polls within the interval \
                 again after {:.1}s",
                slow.as_secs_f64()
            ),
            fields! {"slow_ms" => u64::try_from(slow.as_millis()).unwrap_or(u64::MAX)},
        );
        self.publish(vec![event]).await;
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

    async fn failed_poll(&mut self, e: ProbeError, outage: &mut Outage) -> Duration {
        let instance = self.instance.clone();
        match e {
            ProbeError::Unreachable(cause) => {
                if outage.down_since.is_none() {
                    outage.down_since = Some(Instant::now());
                    error!("redis lost at {instance}: {cause:#}");
                    let event = Emitted::host(
                        Level::Error,
                        format!("instance unreachable: redis at {instance} does not answer"),
                        fields! {"error" => format!("{cause:#}")},
                    );
                    self.publish(vec![event]).await;
                }
                let wait = outage.backoff.next_wait();
                let key = self.about.subject().target_key.to_owned();
                let msg = format!("target {key} down: redis at {instance} does not answer");
                let wait = self
                    .holding(kinds::TARGET_UNREACHABLE, msg, format!("{cause:#}"), wait)
                    .await;
                warn!(
                    "redis unreachable at {instance}, retrying in {:.1}s",
                    wait.as_secs_f64()
                );
                wait
            }
            ProbeError::Refused { reason, .. } => {
                if self.refused.as_deref() != Some(reason.as_str()) {
                    error!("{reason} (retrying every {}s)", REFUSED_WAIT.as_secs());
                    let event = Emitted::host(
                        Level::Error,
                        format!("instance refused: {reason}"),
                        fields! {"error" => reason.clone(), "retry_s" => REFUSED_WAIT.as_secs()},
                    );
                    self.publish(vec![event]).await;
                    self.refused = Some(reason.clone());
                }
                let key = self.about.subject().target_key.to_owned();
                let msg = format!("target {key} refuses lookout's configuration: {reason}");
                self.holding(kinds::CONFIGURATION_REFUSED, msg, reason, REFUSED_WAIT)
                    .await
            }
            other => {
                let wait = retry_wait();
                warn!("{other}; retrying in {:.1}s", wait.as_secs_f64());
                wait
            }
        }
    }
}

/// A target's failed polls so far.
#[derive(Default)]
struct Outage {
    /// Unreachable since then (reported once).
    down_since: Option<Instant>,
    /// Polls running past their interval since then (reported once).
    slow_since: Option<Instant>,
    /// The wait before the next try while unreachable.
    backoff: Backoff,
}

/// The due time after `scheduled` for a poll every `interval`, `now`
/// being when the poll ended: the next whole interval after `scheduled`
/// that is still ahead.
fn next_due(scheduled: Instant, interval: Duration, now: Instant) -> Instant {
    let next = scheduled + interval;
    if next > now || interval.is_zero() {
        return next;
    }
    let behind = now.duration_since(scheduled).as_nanos();
    let skip = behind / interval.as_nanos() + 1;
    let skip = u32::try_from(skip).unwrap_or(u32::MAX);
    scheduled + interval.saturating_mul(skip)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn polls_keep_their_schedule_and_skip_what_is_past() {
        let interval = Duration::from_secs(5);
        let t0 = Instant::now();
        // On time: the next interval, whenever the poll ended.
        assert_eq!(
            next_due(t0, interval, t0 + Duration::from_millis(3)),
            t0 + interval
        );
        // A poll that ran 12 s: the next due time still ahead, on the grid.
        assert_eq!(
            next_due(t0, interval, t0 + Duration::from_secs(12)),
            t0 + interval * 3
        );
        // Exactly at the next due time: the one after.
        assert_eq!(next_due(t0, interval, t0 + interval), t0 + interval * 2);
    }
}

//! The targets a process watches, kept in step with the configuration and
//! with discovery: one poller task per target this shard owns, started and
//! stopped while the daemon runs.
//!
//! ```text
//!  [[targets]] ───────────────┐
//!  [[discover]] ─ refresh task ┴─► desired set ─ shard filter ─► pollers
//!                 (one per entry)   (by target key)               start / stop / relabel
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::Registry;
use super::discover::{Found, ROLE_LABEL};
use super::events::{self, About, cut_message, refused_message, unwatchable_message};
use super::inbox::Inbox;
use super::lateness::Lateness;
use super::poller::{FirstPoll, Poller};
use super::start::dial;
use crate::alerts::active::{Active, Hold, host_condition, kinds};
use crate::config::Settings;
use crate::delivery::envelope::fields;
use crate::delivery::envelope::{ConditionState, Emitted, Level, Origin};
use crate::delivery::task::Outlet;
use crate::redis::probe::Prober;
use crate::sandbox::{Engine, Instance};
use crate::targets::{Target, hashmod};
use crate::watchers::load::Spec;

/// A running poller.
struct Running {
    target: Target,
    /// What the poller should run; written without waiting for it.
    inbox: Arc<Inbox>,
    /// Cancelled when the target is removed; a child of the daemon's
    /// shutdown token.
    stop: CancellationToken,
    /// Which `[[discover]]` entry found it; `None` for a configured target.
    found_by: Option<usize>,
    /// Discoveries in a row that did not list it.
    missed: u32,
}

/// What was said about one discover entry's answers.
#[derive(Debug, Clone, Default)]
struct Said {
    refused: BTreeSet<String>,
    skipped: BTreeSet<String>,
    cut: bool,
}

/// Discoveries in a row a node must be missing from before its poller
/// stops: one answer taken mid-failover may leave out the replica being
/// promoted.
pub(crate) const MISSED_TO_REMOVE: u32 = 2;

/// What every poller is built with.
pub(super) struct Kit {
    pub engine: Engine,
    pub origin: Origin,
    pub outlet: Outlet,
    pub first: FirstPoll,
    pub limit: Option<u64>,
    pub calls: Arc<Semaphore>,
    /// The snapshot budget, KiB permits, and its size.
    pub snapshots: (Arc<Semaphore>, u32),
    pub lateness: Arc<Lateness>,
    /// The daemon's metrics, when they are on.
    pub metrics: Option<Arc<crate::metrics::Metrics>>,
    /// Cancelled on shutdown: every poller's token is a child of it.
    pub shutdown: CancellationToken,
    /// The active set every poller's conditions go through.
    pub conditions: Arc<Active>,
    /// `[alerts] for_s`: how long a host condition holds before it fires.
    pub for_s: Duration,
}

/// The pollers, by target key.
pub(super) struct Fleet {
    running: BTreeMap<String, Running>,
    pub polling: JoinSet<(String, Result<()>)>,
    kit: Kit,
    /// Whether the start-up watchers are ready (new pollers start at once).
    started: bool,
    /// Each discover entry's last answer; `None` until it first answers.
    found: Vec<Option<Vec<Target>>>,
    /// Each discover entry's failure last reported.
    failing: Vec<Option<String>>,
    /// Each discover entry's failing, as a condition.
    failing_for: Vec<Hold>,
    /// Per discover entry, what was said about its answers: nodes outside
    /// `allow` and nodes that cannot be watched (each once), and whether
    /// a cut at `max_nodes` was.
    said: Vec<Said>,
    /// Whether the memory-mappings warning was given.
    warned_mappings: bool,
}

/// Memory mappings one watcher instance holds (its linear memory, the
/// reserve it grows into, its call stack and that stack's guard page).
pub(crate) const MAPPINGS_PER_INSTANCE: usize = 4;
/// Mappings of the process besides the instances (binary, libraries,
/// heap, threads), with room to spare.
const MAPPINGS_BASE: usize = 2_000;

impl Fleet {
    pub(super) fn new(kit: Kit, discover_entries: usize) -> Self {
        Self {
            running: BTreeMap::new(),
            polling: JoinSet::new(),
            kit,
            started: false,
            found: vec![None; discover_entries],
            failing: vec![None; discover_entries],
            failing_for: vec![Hold::default(); discover_entries],
            said: vec![Said::default(); discover_entries],
            warned_mappings: false,
        }
    }

    /// Targets polled now.
    pub(super) fn len(&self) -> usize {
        self.running.len()
    }

    /// Whether every discover entry has answered at least once.
    pub(super) fn discovered(&self) -> bool {
        self.found.iter().all(Option::is_some)
    }

    /// Starts a poller for `target`, first polling `offset` into the
    /// interval, with every watcher of `registry` that runs on it.
    fn add(
        &mut self,
        settings: &Settings,
        registry: &Registry,
        target: Target,
        offset: Duration,
        found_by: Option<usize>,
    ) -> Result<()> {
        let key = target.key();
        let conn = dial(settings, &target.endpoint())?;
        let inbox = Arc::new(Inbox::default());
        let kit = &self.kit;
        let stop = kit.shutdown.child_token();
        let poller = Poller::new(
            Prober::new(conn, settings.slowlog_count)
                .with_max_clients_listed(settings.limits.max_clients_listed)
                .with_redial(
                    target.endpoint(),
                    settings.connect_timeout,
                    settings.response_timeout,
                ),
            kit.engine.clone(),
            settings.poll_interval,
            kit.origin.clone(),
            kit.outlet.clone(),
        )
        .with_labels(&target.labels)
        .with_offset(offset)
        .with_shared(kit.calls.clone(), kit.lateness.clone())
        .with_snapshot_budget(kit.snapshots.0.clone(), kit.snapshots.1)
        .with_metrics(kit.metrics.as_ref().map(|m| m.target(&key)))
        .with_conditions(&key, kit.conditions.clone(), kit.for_s);
        let (first, limit) = (kit.first, kit.limit);
        let task_key = key.clone();
        for spec in registry.values().filter(|s| target.runs(&s.name)) {
            inbox.install(spec.clone(), None);
        }
        if self.started {
            inbox.start();
        }
        let (taken, stopped) = (inbox.clone(), stop.clone());
        self.polling.spawn(async move {
            let result = poller.run(taken, stopped, first, limit).await;
            (task_key, result)
        });
        self.running.insert(
            key,
            Running {
                target,
                inbox,
                stop,
                found_by,
                missed: 0,
            },
        );
        Ok(())
    }

    /// Starts the configured targets this shard owns, spread across the
    /// interval; discovered ones follow as discovery answers.
    pub(super) fn start_configured(
        &mut self,
        settings: &Settings,
        registry: &Registry,
    ) -> Result<()> {
        let owned: Vec<&Target> = settings
            .targets
            .iter()
            .filter(|t| settings.shard.owns(&t.key()))
            .collect();
        let count = u32::try_from(owned.len()).unwrap_or(u32::MAX).max(1);
        for (i, target) in (0u32..).zip(owned) {
            let offset = settings.poll_interval * i / count;
            self.add(settings, registry, target.clone(), offset, None)
                .with_context(|| format!("target {}", target.key()))?;
        }
        Ok(())
    }

    /// Runs `spec` on every target that takes it; the first gets the
    /// instance configured while loading, the others build their own.
    /// Never waits for a poller: each takes it between its polls.
    pub(super) fn install(&self, spec: &Arc<Spec>, instance: Option<Instance>) {
        let mut instance = instance;
        for running in self.running.values() {
            if running.target.runs(&spec.name) {
                running.inbox.install(spec.clone(), instance.take());
            }
        }
    }

    /// Stops the watcher named `name` on every target, without waiting for
    /// the pollers.
    pub(super) fn remove(&self, name: &str) {
        for running in self.running.values() {
            running.inbox.remove(name);
        }
    }

    /// Warns once when the targets and watchers running need more memory
    /// mappings than the kernel allows a process (`vm.max_map_count`):
    /// instances beyond it would fail to start.
    pub(super) async fn check_mappings(&mut self, watchers: usize) {
        let Some(limit) = std::fs::read_to_string("/proc/sys/vm/max_map_count")
            .ok()
            .and_then(|t| t.trim().parse::<usize>().ok())
        else {
            return;
        };
        let instances = self.running.len() * watchers;
        let needed = instances * MAPPINGS_PER_INSTANCE + MAPPINGS_BASE;
        if self.warned_mappings || needed <= limit {
            return;
        }
        self.warned_mappings = true;
        let event = events::mappings(self.running.len(), watchers, needed, limit);
        self.publish(vec![event]).await;
    }

    /// Queues events about the process itself, not one target.
    async fn publish(&self, events: Vec<Emitted>) {
        let origin = &self.kit.origin;
        let envelopes = self.envelopes(&About::process(origin), events);
        self.kit.outlet.send(envelopes).await;
    }

    /// The envelopes of `events` about `about`, their conditions taken
    /// through the active set.
    fn envelopes(
        &self,
        about: &About,
        events: Vec<Emitted>,
    ) -> Vec<crate::delivery::envelope::Sealed> {
        let events = self.kit.conditions.observe(&about.subject(), events);
        about.envelopes(&self.kit.origin, events)
    }

    /// The start-up watchers are ready: every poller starts.
    pub(super) fn start(&mut self) {
        self.started = true;
        for running in self.running.values() {
            running.inbox.start();
        }
    }

    /// Stops every poller (a watcher call in flight is abandoned) and
    /// waits for them.
    pub(super) async fn stop_all(&mut self) {
        for (key, running) in &self.running {
            running.stop.cancel();
            // Not resolved: the process that watches it next (after a
            // restart, or the shard that owns it) fires it again.
            self.kit.conditions.lapse(key);
        }
        while self.polling.join_next().await.is_some() {}
        self.running.clear();
    }

    /// A poller ended (its polls are done, or it was stopped).
    pub(super) fn ended(&mut self, key: &str) {
        if self
            .running
            .get(key)
            .is_some_and(|r| r.stop.is_cancelled() || self.kit.limit.is_some())
        {
            self.running.remove(key);
        }
    }

    /// Takes discover entry `entry`'s answer: targets it found that this
    /// shard owns start polling, those it no longer lists stop, and those
    /// whose role changed are relabelled; each is one host event.
    pub(super) async fn discovered_by(
        &mut self,
        settings: &Settings,
        registry: &Registry,
        entry: usize,
        found: Found,
    ) {
        let how = settings.discover[entry].describe();
        let mut screened = self.screened(settings, entry, &found);
        if self.failing_for[entry].clear() {
            screened.push(host_condition(
                Level::Info,
                kinds::DISCOVERY_FAILED,
                &how,
                ConditionState::Resolved,
                format!("discovery answers again: {how}"),
                fields! {"discover" => how.clone()},
            ));
        }
        let mut envelopes = self.envelopes(&About::process(&self.kit.origin), screened);
        let (origin, active) = (self.kit.origin.clone(), self.kit.conditions.clone());
        let mut tell = |target: &Target, events: Vec<Emitted>| {
            let about = About::target(target);
            let events = active.observe(&about.subject(), events);
            envelopes.extend(about.envelopes(&origin, events));
        };
        if let Some(metrics) = &self.kit.metrics {
            metrics.discover_nodes(&how, found.refused.len(), found.cut);
        }
        let found = found.targets;
        // A node also configured (by name or address) is watched as configured.
        let configured: BTreeSet<String> = settings
            .targets
            .iter()
            .flat_map(|t| [t.key(), t.address()])
            .collect();
        // Added, or relabelled.
        for target in &found {
            let key = target.key();
            if configured.contains(&key) || !settings.shard.owns(&key) {
                continue;
            }
            let role = target.labels.get(ROLE_LABEL).cloned().unwrap_or_default();
            if let Some(running) = self.running.get_mut(&key) {
                running.missed = 0;
            }
            match self.running.get_mut(&key) {
                Some(running) if running.target.labels != target.labels => {
                    let was = running
                        .target
                        .labels
                        .get(ROLE_LABEL)
                        .cloned()
                        .unwrap_or_default();
                    running.target = target.clone();
                    running.inbox.relabel(target.labels.clone());
                    tell(
                        target,
                        vec![events::target_relabelled(&key, &role, &was, &how)],
                    );
                }
                Some(_) => {}
                None => {
                    let spread = u32::try_from(hashmod(&key, 1000)).unwrap_or(0);
                    let offset = settings.poll_interval * spread / 1000;
                    match self.add(settings, registry, target.clone(), offset, Some(entry)) {
                        Ok(()) => tell(target, vec![events::target_added(&key, &role, &how)]),
                        Err(e) => {
                            warn!(target = %key, "target {key} found by {how} cannot be watched: {e:#}")
                        }
                    }
                }
            }
        }
        // Removed: found by this entry before, not listed now nor the time
        // before.
        let keys: BTreeSet<String> = found.iter().map(Target::key).collect();
        let mut gone = Vec::new();
        for (key, running) in &mut self.running {
            if running.found_by == Some(entry) && !keys.contains(key) {
                running.missed += 1;
                if running.missed >= MISSED_TO_REMOVE {
                    gone.push(key.clone());
                }
            }
        }
        for key in gone {
            if let Some(running) = self.running.remove(&key) {
                running.stop.cancel();
                let why = format!("target {key} removed: {how} no longer lists it");
                let mut said = vec![events::target_removed(&key, &how)];
                said.extend(self.kit.conditions.resolve_all(&key, None, &why));
                tell(&running.target, said);
            }
        }
        self.found[entry] = Some(found);
        self.check_mappings(registry.len()).await;
        if self.failing[entry].take().is_some() {
            info!("discovery answers again for {how}");
        }
        self.kit.outlet.send(envelopes).await;
    }

    /// The host events about entry `entry`'s answer that were not given
    /// yet: each node outside `allow` and each node that cannot be watched
    /// once, a cut at `max_nodes` once until the answer fits again.
    fn screened(&mut self, settings: &Settings, entry: usize, found: &Found) -> Vec<Emitted> {
        let d = &settings.discover[entry];
        let how = d.describe();
        let said = &mut self.said[entry];
        let mut events = Vec::new();
        let mut warn_event = |msg: String, fields| {
            warn!("{msg}");
            events.push(Emitted::host(Level::Warn, msg, fields));
        };
        for node in &found.refused {
            if said.refused.insert(node.clone()) {
                warn_event(
                    refused_message(entry, &how, node),
                    fields! {"discover" => how.clone(), "node" => node.clone(), "key" => format!("discover[{entry}].allow")},
                );
            }
        }
        for why in &found.skipped {
            if said.skipped.insert(why.clone()) {
                warn_event(
                    unwatchable_message(&how, why),
                    fields! {"discover" => how.clone(), "error" => why.clone()},
                );
            }
        }
        if found.cut == 0 {
            said.cut = false;
        } else if !said.cut {
            said.cut = true;
            warn_event(
                cut_message(entry, &how, found.allowed, d.max_nodes),
                fields! {
                    "discover" => how.clone(),
                    "nodes" => found.allowed,
                    "max_nodes" => d.max_nodes,
                    "key" => format!("discover[{entry}].max_nodes")
                },
            );
        }
        events
    }

    /// Discover entry `entry` did not answer: its targets keep running,
    /// and the failure is reported once until it changes or discovery
    /// answers again.
    pub(super) async fn discovery_failed(
        &mut self,
        settings: &Settings,
        entry: usize,
        error: &anyhow::Error,
    ) {
        let how = settings.discover[entry].describe();
        let text = format!("{error:#}");
        if self.found[entry].is_none() {
            self.found[entry] = Some(Vec::new());
        }
        warn!(
            "discovery failed for {how}: {text}; its targets keep running, retrying in {:.0}s",
            settings.discover[entry].refresh.as_secs_f64()
        );
        let mut said = Vec::new();
        if self.failing_for[entry].holds(self.kit.for_s) {
            said.push(host_condition(
                Level::Error,
                kinds::DISCOVERY_FAILED,
                &how,
                ConditionState::Firing,
                format!("discovery failing: {how}: {text}"),
                fields! {"discover" => how.clone(), "error" => text.clone()},
            ));
        }
        if self.failing[entry].as_deref() != Some(text.as_str()) {
            said.insert(0, events::discovery_failed(&how, &text));
            self.failing[entry] = Some(text);
        }
        self.publish(said).await;
    }
}

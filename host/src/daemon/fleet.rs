//! The targets a process watches, kept in step with the configuration and
//! with discovery: one poller task per target this shard owns, started and
//! stopped while the daemon runs.
//!
//! ```text
//!  [[targets]] ───────────────┐
//!  [[discover]] ─ refresh task ┴─► desired set ─ shard filter ─► pollers
//!                 (one per entry)   (by target key)               start / stop / relabel
//! ```

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::Registry;
use super::lateness::Lateness;
use super::poller::{FirstPoll, Inbox, Poller};
use crate::config::Settings;
use crate::delivery::envelope::{Emitted, Envelope, Level, Origin};
use crate::delivery::task::Outlet;
use crate::discovery::{self, Node};
use crate::fields;
use crate::redis::conn::Conn;
use crate::redis::endpoint::Endpoint;
use crate::redis::probe::Prober;
use crate::redis::redact::instance_of;
use crate::sandbox::{Engine, Instance};
use crate::targets::{Discover, Source, Target, hashmod};
use crate::watchers::load::Spec;

/// The label a discovered node's role goes into.
pub const ROLE_LABEL: &str = "role";

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
    refused: std::collections::BTreeSet<String>,
    skipped: std::collections::BTreeSet<String>,
    cut: bool,
}

/// What one discover entry found this time, after its `allow` and
/// `max_nodes`.
#[derive(Debug, Clone, Default)]
pub struct Found {
    /// The nodes to watch.
    pub targets: Vec<Target>,
    /// Announced nodes outside `allow` (`host:port`), never contacted.
    pub refused: Vec<String>,
    /// Announced nodes inside `allow`.
    pub allowed: usize,
    /// Of those, how many `max_nodes` left out.
    pub cut: usize,
    /// Announced nodes that cannot be watched as announced, with why.
    pub skipped: Vec<String>,
}

/// Discoveries in a row a node must be missing from before its poller
/// stops: one answer taken mid-failover may leave out the replica being
/// promoted.
pub const MISSED_TO_REMOVE: u32 = 2;

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
    /// Per discover entry, what was said about its answers: nodes outside
    /// `allow` and nodes that cannot be watched (each once), and whether
    /// a cut at `max_nodes` was.
    said: Vec<Said>,
    /// Whether the memory-mappings warning was given.
    warned_mappings: bool,
}

/// Memory mappings one watcher instance holds (its linear memory, the
/// reserve it grows into, its call stack and that stack's guard page).
pub const MAPPINGS_PER_INSTANCE: usize = 4;
/// Mappings of the process besides the instances (binary, libraries,
/// heap, threads), with room to spare.
const MAPPINGS_BASE: usize = 2_000;

impl Fleet {
    pub fn new(kit: Kit, discover_entries: usize) -> Self {
        Self {
            running: BTreeMap::new(),
            polling: JoinSet::new(),
            kit,
            started: false,
            found: vec![None; discover_entries],
            failing: vec![None; discover_entries],
            said: vec![Said::default(); discover_entries],
            warned_mappings: false,
        }
    }

    /// Targets polled now.
    pub fn len(&self) -> usize {
        self.running.len()
    }

    /// Whether every discover entry has answered at least once.
    pub fn discovered(&self) -> bool {
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
        let conn = Conn::open(
            &target.endpoint(),
            settings.connect_timeout,
            settings.response_timeout,
        )?;
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
        .with_metrics(kit.metrics.as_ref().map(|m| m.target(&key)));
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
    pub fn start_configured(&mut self, settings: &Settings, registry: &Registry) -> Result<()> {
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
    pub fn install(&self, spec: &Arc<Spec>, instance: Option<Instance>) {
        let mut instance = instance;
        for running in self.running.values() {
            if running.target.runs(&spec.name) {
                running.inbox.install(spec.clone(), instance.take());
            }
        }
    }

    /// Stops the watcher named `name` on every target, without waiting for
    /// the pollers.
    pub fn remove(&self, name: &str) {
        for running in self.running.values() {
            running.inbox.remove(name);
        }
    }

    /// Warns once when the targets and watchers running need more memory
    /// mappings than the kernel allows a process (`vm.max_map_count`):
    /// instances beyond it would fail to start.
    pub async fn check_mappings(&mut self, watchers: usize) {
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
        let advice = needed.next_power_of_two();
        let msg = format!(
            "{} targets with {watchers} watchers need about {needed} memory mappings, over this \
             machine's vm.max_map_count of {limit}: watcher instances beyond it fail to start; \
             raise it with `sysctl -w vm.max_map_count={advice}`, or split the fleet with --shard",
            self.running.len()
        );
        warn!("{msg}");
        let origin = &self.kit.origin;
        let envelope = origin.wrap(
            &origin.instance,
            Emitted::host(
                Level::Warn,
                msg,
                fields! {"needed" => needed, "max_map_count" => limit, "instances" => instances},
            ),
        );
        self.kit.outlet.send(vec![envelope]).await;
    }

    /// The start-up watchers are ready: every poller starts.
    pub fn start(&mut self) {
        self.started = true;
        for running in self.running.values() {
            running.inbox.start();
        }
    }

    /// Stops every poller (a watcher call in flight is abandoned) and
    /// waits for them.
    pub async fn stop_all(&mut self) {
        for running in self.running.values() {
            running.stop.cancel();
        }
        while self.polling.join_next().await.is_some() {}
        self.running.clear();
    }

    /// A poller ended (its polls are done, or it was stopped).
    pub fn ended(&mut self, key: &str) {
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
    pub async fn discovered_by(
        &mut self,
        settings: &Settings,
        registry: &Registry,
        entry: usize,
        found: Found,
    ) {
        let how = settings.discover[entry].describe();
        let mut events = self.screened(settings, entry, &found);
        if let Some(metrics) = &self.kit.metrics {
            metrics.discover_nodes(&how, found.refused.len(), found.cut);
        }
        let found = found.targets;
        // A node also configured (by name or address) is watched as configured.
        let configured: std::collections::BTreeSet<String> = settings
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
                    info!(target = %key, %role, was = %was, "target {key} is now {role} (was {was}), per {how}");
                    events.push(event(
                        &self.kit.origin,
                        target,
                        Level::Warn,
                        format!("target {key} is now {role} (was {was}), per {how}"),
                        fields! {"target" => key.clone(), "role" => role, "was" => was, "discover" => how.clone()},
                    ));
                }
                Some(_) => {}
                None => {
                    let spread = u32::try_from(hashmod(&key, 1000)).unwrap_or(0);
                    let offset = settings.poll_interval * spread / 1000;
                    match self.add(settings, registry, target.clone(), offset, Some(entry)) {
                        Ok(()) => {
                            info!(target = %key, %role, "target added: {key} ({role}), found by {how}");
                            events.push(event(
                        &self.kit.origin,
                                target,
                                Level::Info,
                                format!("target added: {key} ({role}), found by {how}"),
                                fields! {"target" => key.clone(), "role" => role, "discover" => how.clone()},
                            ));
                        }
                        Err(e) => {
                            warn!(target = %key, "target {key} found by {how} cannot be watched: {e:#}")
                        }
                    }
                }
            }
        }
        // Removed: found by this entry before, not listed now nor the time
        // before.
        let keys: std::collections::BTreeSet<String> = found.iter().map(Target::key).collect();
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
                info!(target = %key, "target removed: {key}, no longer listed by {how}");
                events.push(event(
                    &self.kit.origin,
                    &running.target,
                    Level::Warn,
                    format!("target removed: {key}, no longer listed by {how}"),
                    fields! {"target" => key.clone(), "discover" => how.clone()},
                ));
            }
        }
        self.found[entry] = Some(found);
        self.check_mappings(registry.len()).await;
        if self.failing[entry].take().is_some() {
            info!("discovery answers again for {how}");
        }
        if !events.is_empty() {
            self.kit.outlet.send(events).await;
        }
    }

    /// The host events about entry `entry`'s answer that were not given
    /// yet: each node outside `allow` and each node that cannot be watched
    /// once, a cut at `max_nodes` once until the answer fits again.
    fn screened(&mut self, settings: &Settings, entry: usize, found: &Found) -> Vec<Envelope> {
        let d = &settings.discover[entry];
        let how = d.describe();
        let origin = &self.kit.origin;
        let said = &mut self.said[entry];
        let mut events = Vec::new();
        let mut warn_event = |msg: String, fields| {
            warn!("{msg}");
            events.push(origin.wrap(&origin.instance, Emitted::host(Level::Warn, msg, fields)));
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
                    format!("{how} announces a node that cannot be watched: {why}"),
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
    pub async fn discovery_failed(
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
        if self.failing[entry].as_deref() == Some(text.as_str()) {
            return;
        }
        let origin = &self.kit.origin;
        let envelope = origin.wrap(
            &origin.instance,
            Emitted::host(
                Level::Error,
                format!("discovery failed: {how}: {text}; the targets it found keep running"),
                fields! {"discover" => how, "error" => text.clone()},
            ),
        );
        self.failing[entry] = Some(text);
        self.kit.outlet.send(vec![envelope]).await;
    }
}

/// A host event about `target`, as an envelope with its instance and labels.
fn event(
    origin: &Origin,
    target: &Target,
    level: Level,
    msg: String,
    mut fields: serde_json::Map<String, serde_json::Value>,
) -> Envelope {
    let instance = instance_of(&target.url);
    // Labels before wrapping: they count toward max_envelope_bytes.
    if !target.labels.is_empty() {
        fields.insert(
            "labels".to_owned(),
            serde_json::Value::Object(
                target
                    .labels
                    .iter()
                    .map(|(k, v)| (k.clone(), serde_json::Value::from(v.as_str())))
                    .collect(),
            ),
        );
    }
    origin.wrap(&instance, Emitted::host(level, msg, fields))
}

/// What to say of a node outside an entry's `allow`.
fn refused_message(entry: usize, how: &str, node: &str) -> String {
    format!(
        "{how} announces the node {node}, outside `discover[{entry}].allow`: it is not \
         contacted; if it is yours, add its address or network to `allow`"
    )
}

/// What to say when an entry's answer holds more nodes than `max_nodes`.
fn cut_message(entry: usize, how: &str, nodes: usize, max: usize) -> String {
    format!(
        "{how} lists {nodes} nodes, over `discover[{entry}].max_nodes` = {max}: watching the \
         first {max}, masters first, then by address; raise `max_nodes` or split the fleet \
         with --shard"
    )
}

/// The targets one discover entry finds now; `known` are the nodes it
/// found last time, asked when the configured seed does not answer.
///
/// # Errors
/// No seed or sentinel answered; the message names them (redacted).
pub fn discover<'a>(
    entry: &'a Discover,
    known: &'a [Endpoint],
    settings: &'a Settings,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<Found>> + Send + 'a>> {
    Box::pin(discover_now(entry, known, settings))
}

async fn discover_now(entry: &Discover, known: &[Endpoint], settings: &Settings) -> Result<Found> {
    let (connect, response) = (settings.connect_timeout, settings.response_timeout);
    let sentinel = matches!(entry.source, Source::Sentinel { .. });
    let discovered = match &entry.source {
        Source::Cluster => {
            let mut seeds = vec![entry.endpoint()];
            seeds.extend(known.iter().filter(|k| k.url != entry.url).cloned());
            discovery::cluster_at(&seeds, connect, response).await?
        }
        Source::Sentinel { master } => {
            discovery::sentinel_at(&[entry.endpoint()], master, connect, response).await?
        }
    };
    let screened = discovery::screen(discovered.nodes, &entry.allow, entry.max_nodes);
    let mut found = Found {
        refused: screened.refused.iter().map(Node::address).collect(),
        allowed: screened.kept.len() + screened.cut,
        cut: screened.cut,
        skipped: discovered.skipped,
        targets: Vec::new(),
    };
    for node in &screened.kept {
        // A sentinel's credentials stay with the sentinel.
        let url = match discovery::node_url_with(&entry.url, node, !sentinel) {
            Ok(url) => url,
            Err(e) => {
                found
                    .skipped
                    .push(format!("node {}: {e:#}", node.address()));
                continue;
            }
        };
        let mut labels = entry.labels.clone();
        labels.insert(ROLE_LABEL.to_owned(), node.role.as_str().to_owned());
        let mut tls = entry.tls.clone();
        if tls.server_name.is_none() {
            tls.server_name.clone_from(&node.tls_name);
        }
        found.targets.push(Target {
            url,
            name: None,
            labels,
            watchers: entry.watchers.clone(),
            tls,
            auth: if sentinel {
                entry.node_auth.clone()
            } else {
                entry.auth.clone()
            },
            allow: Some(entry.allow.clone()),
        });
    }
    Ok(found)
}

/// One discover entry's answers, sent to the daemon: at once, then every
/// `refresh` until `stop` is cancelled (or only once, with `once`).
pub(super) async fn refresh(
    entry_index: usize,
    settings: Settings,
    once: bool,
    answers: mpsc::Sender<(usize, Result<Found>)>,
    stop: CancellationToken,
) {
    let entry = settings.discover[entry_index].clone();
    let mut known: Vec<Endpoint> = Vec::new();
    loop {
        let answer = tokio::select! {
            () = stop.cancelled() => return,
            answer = discover(&entry, &known, &settings) => answer,
        };
        if let Ok(found) = &answer {
            known = found.targets.iter().map(Target::endpoint).collect();
        }
        let sent = tokio::select! {
            () = stop.cancelled() => return,
            sent = answers.send((entry_index, answer)) => sent,
        };
        if sent.is_err() || once {
            return;
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(entry.refresh) => {}
        }
    }
}

/// A target as `lookout targets` lists it.
#[derive(Debug, Clone)]
pub struct Listed {
    /// The target.
    pub target: Target,
    /// `config`, or the discover entry that found it.
    pub source: String,
    /// Whether this process's shard watches it.
    pub watched: bool,
}

/// Everything the configuration names and discovery finds now.
#[derive(Debug, Clone, Default)]
pub struct Resolved {
    /// The targets, configured ones first, each once.
    pub targets: Vec<Listed>,
    /// Discover entries that did not answer, with why.
    pub errors: Vec<String>,
    /// What discovery left out (nodes outside `allow`, beyond
    /// `max_nodes`, or that cannot be watched), for stderr.
    pub warnings: Vec<String>,
}

/// Resolves the targets once: the configured ones, then each discover
/// entry's (a target both configured and discovered is listed once).
pub async fn resolve(settings: &Settings) -> Resolved {
    let mut resolved = Resolved::default();
    let mut seen = std::collections::BTreeSet::new();
    let mut push = |resolved: &mut Resolved, target: Target, source: String| {
        let (key, address) = (target.key(), target.address());
        if !seen.contains(&key) && !seen.contains(&address) {
            seen.insert(key.clone());
            seen.insert(address);
            resolved.targets.push(Listed {
                watched: settings.shard.owns(&key),
                target,
                source,
            });
        }
    };
    for target in &settings.targets {
        push(&mut resolved, target.clone(), "config".to_owned());
    }
    for (i, entry) in settings.discover.iter().enumerate() {
        match discover(entry, &[], settings).await {
            Ok(found) => {
                let how = entry.describe();
                for node in &found.refused {
                    resolved.warnings.push(refused_message(i, &how, node));
                }
                for why in &found.skipped {
                    resolved.warnings.push(format!(
                        "{how} announces a node that cannot be watched: {why}"
                    ));
                }
                if found.cut > 0 {
                    resolved
                        .warnings
                        .push(cut_message(i, &how, found.allowed, entry.max_nodes));
                }
                for target in found.targets {
                    push(&mut resolved, target, entry.describe());
                }
            }
            Err(e) => resolved
                .errors
                .push(format!("discovery failed for {}: {e:#}", entry.describe())),
        }
    }
    resolved
}

/// Prints `resolved` as a table (or JSON lines with `json`); discovery
/// failures go to the end.
///
/// # Errors
/// Writing failed, or a discover entry did not answer (after printing the
/// rest).
pub fn print(
    settings: &Settings,
    resolved: &Resolved,
    json: bool,
    out: &mut impl std::io::Write,
) -> Result<()> {
    use crate::redis::redact::redact_url;
    let labels = |t: &Target| {
        t.labels
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(",")
    };
    if json {
        for l in &resolved.targets {
            let line = serde_json::json!({
                "target": l.target.key(),
                "url": redact_url(&l.target.url),
                "labels": l.target.labels,
                "watchers": l.target.watchers,
                "source": l.source,
                "watched": l.watched,
                "shard": settings.shard.to_string(),
            });
            writeln!(out, "{line}")?;
        }
    } else {
        let rows: Vec<[String; 5]> = resolved
            .targets
            .iter()
            .map(|l| {
                [
                    l.target.key(),
                    if l.watched { "yes" } else { "no" }.to_owned(),
                    l.source.clone(),
                    labels(&l.target),
                    redact_url(&l.target.url),
                ]
            })
            .collect();
        let head = [
            "TARGET".to_owned(),
            format!("SHARD {}", settings.shard),
            "SOURCE".to_owned(),
            "LABELS".to_owned(),
            "URL".to_owned(),
        ];
        let mut widths = head.clone().map(|h| h.len());
        for row in &rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.len());
            }
        }
        for row in std::iter::once(&head).chain(&rows) {
            let line: Vec<String> = row
                .iter()
                .zip(widths)
                .map(|(cell, w)| format!("{cell:<w$}"))
                .collect();
            writeln!(out, "{}", line.join("  ").trim_end())?;
        }
        let watched = resolved.targets.iter().filter(|l| l.watched).count();
        writeln!(
            out,
            "{} targets, {watched} watched by shard {}",
            resolved.targets.len(),
            settings.shard
        )?;
    }
    for warning in &resolved.warnings {
        eprintln!("lookout: warning: {warning}");
    }
    if !resolved.errors.is_empty() {
        anyhow::bail!("{}", resolved.errors.join("; "));
    }
    Ok(())
}

//! The daemon's own events: whom each is about (a Redis and its target's
//! labels, or the process itself) and the one constructor that turns
//! events into envelopes for it; and the wording of the events about
//! start-up, watchers, discovery and what probes noticed, each with its
//! log line.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use tracing::{error, info, warn};

use crate::alerts::active::Subject;
use crate::config::Settings;
use crate::delivery::envelope::fields;
use crate::delivery::envelope::{Emitted, Level, Origin, Sealed};
use crate::redis::probe::{Gap, Notice, SLOWLOG_REREADS};
use crate::redis::redact::{instance_of, redact_url};
use crate::targets::Target;

/// Whom events are about: the Redis in their `fields.instance`, and the
/// labels of its target in `fields.labels`.
#[derive(Debug, Clone)]
pub(crate) struct About {
    instance: Arc<str>,
    /// The target's key (`Target::key`), which conditions' fingerprints
    /// name; the host name for the process's own.
    key: Arc<str>,
    labels: Option<Value>,
    /// The labels as configured or discovered, frozen into alerts.
    label_map: BTreeMap<String, String>,
}

impl About {
    /// Events about the Redis at `instance` (`host:port`), without labels.
    pub(crate) fn instance(instance: &str) -> Self {
        Self {
            instance: Arc::from(instance),
            key: Arc::from(instance),
            labels: None,
            label_map: BTreeMap::new(),
        }
    }

    /// Events about the process itself, not one target: they carry the
    /// origin's instance.
    pub(crate) fn process(origin: &Origin) -> Self {
        Self::instance(&origin.instance).keyed(&origin.host)
    }

    /// Events about `target`: its address and labels.
    pub(crate) fn target(target: &Target) -> Self {
        let mut about = Self::instance(&instance_of(&target.url)).keyed(&target.key());
        about.relabel(&target.labels);
        about
    }

    /// The same, about the target whose key is `key`.
    #[must_use]
    pub(crate) fn keyed(mut self, key: &str) -> Self {
        self.key = Arc::from(key);
        self
    }

    /// Whom a condition of these events is about.
    pub(crate) fn subject(&self) -> Subject<'_> {
        Subject {
            target_key: &self.key,
            instance: &self.instance,
            labels: &self.label_map,
        }
    }

    /// Puts `labels` on the events from now on.
    pub(crate) fn relabel(&mut self, labels: &BTreeMap<String, String>) {
        self.label_map.clone_from(labels);
        self.labels = (!labels.is_empty()).then(|| {
            Value::Object(
                labels
                    .iter()
                    .map(|(k, v)| (k.clone(), Value::from(v.as_str())))
                    .collect(),
            )
        });
    }

    /// The envelopes of `events`, stamped by `origin` and sealed: labels go
    /// in first, as they count toward the caps in bytes.
    pub(crate) fn envelopes(&self, origin: &Origin, events: Vec<Emitted>) -> Vec<Sealed> {
        origin.seal_all(&self.instance, &self.key, self.labels.as_ref(), events)
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// The start-up events, with their log lines: started (with the watchers
/// being loaded), and the spool replay when it replayed anything.
pub(super) fn started(
    settings: &Settings,
    names: &[String],
    replayed: Option<(usize, u64, String)>,
    origin: &Origin,
) -> Vec<Emitted> {
    // The first few URLs: a fleet's start-up line stays short.
    const SHOWN: usize = 5;
    let mut redis: Vec<String> = settings
        .targets
        .iter()
        .take(SHOWN)
        .map(|t| redact_url(&t.url))
        .collect();
    if settings.targets.len() > SHOWN {
        redis.push(format!("and {} more", settings.targets.len() - SHOWN));
    }
    info!(
        redis = %redis.join(","),
        targets = settings.targets.len(),
        watchers = ?names,
        interval_s = settings.poll_interval.as_secs_f64(),
        "lookout started"
    );
    let owned = super::start::owned(settings);
    let mut watching = match (owned, settings.targets.len()) {
        (1, 1) => origin.instance.clone(),
        (n, _) => format!("{n} targets"),
    };
    if !settings.discover.is_empty() {
        let entries: Vec<String> = settings.discover.iter().map(|d| d.describe()).collect();
        watching.push_str(&format!(" and those found by {}", entries.join(", ")));
    }
    if settings.shard.count > 1 {
        watching.push_str(&format!(" (shard {})", settings.shard));
    }
    let mut events = vec![Emitted::host(
        Level::Info,
        format!("lookout started, watching {watching}"),
        fields! {
            "version" => env!("CARGO_PKG_VERSION"),
            "watchers" => names.join(","),
            "poll_interval_s" => settings.poll_interval.as_secs_f64(),
            "targets" => owned,
            "shard" => settings.shard.to_string(),
        },
    )];
    if let Some((envelopes, corrupt, dir)) = replayed
        && (envelopes > 0 || corrupt > 0)
    {
        let level = if corrupt > 0 {
            Level::Warn
        } else {
            Level::Info
        };
        info!(envelopes, corrupt, spool = %dir, "replaying the spool");
        events.push(Emitted::host(
            level,
            format!(
                "replaying {envelopes} spooled envelopes from {dir} ({corrupt} corrupt records skipped)"
            ),
            fields! {"replayed" => envelopes, "corrupt" => corrupt, "spool" => dir},
        ));
    }
    events
}

/// The start-up loads are done: logged, and when no watcher runs, said in
/// an event too (Redis is still polled, and with `watching` a watcher
/// copied into the plugins folder is loaded).
pub(super) fn ready(
    settings: &Settings,
    watchers: usize,
    started: Instant,
    watching: bool,
) -> Option<Emitted> {
    let event = (watchers == 0).then(|| {
        let plugins = settings.plugins.display().to_string();
        let msg = if watching {
            format!(
                "no watchers loaded from {plugins}; polling Redis and watching the folder: \
                 NAME.wasm files copied into it are loaded"
            )
        } else {
            format!("no watchers loaded from {plugins}; polling Redis only")
        };
        warn!(plugins = %plugins, "{msg}");
        Emitted::host(Level::Warn, msg, fields! {"plugins" => plugins})
    });
    info!(
        watchers,
        load_ms = millis(started.elapsed()),
        "watchers ready"
    );
    event
}

/// A watcher loaded (or, with `reloaded`, replaced by a new version) and
/// put to work, with its log line.
pub(super) fn loaded(
    name: &str,
    version: &str,
    file: &str,
    took: Duration,
    reloaded: bool,
) -> Emitted {
    let load_ms = millis(took);
    let verb = if reloaded { "reloaded" } else { "loaded" };
    info!(watcher = %name, %version, %file, load_ms, "watcher {verb}");
    Emitted::host(
        Level::Info,
        format!("watcher {name} {version} {verb}"),
        fields! {"watcher" => name, "version" => version, "file" => file, "load_ms" => load_ms},
    )
}

/// A watcher unloaded because its file was removed, with its log line.
pub(super) fn unloaded(name: &str) -> Emitted {
    info!(watcher = %name, "watcher unloaded");
    Emitted::host(
        Level::Info,
        format!("watcher {name} unloaded (its file was removed)"),
        fields! {"watcher" => name},
    )
}

/// The targets and watchers running need `needed` memory mappings, over
/// the kernel's `limit` for a process, with its log line.
pub(super) fn mappings(targets: usize, watchers: usize, needed: usize, limit: usize) -> Emitted {
    let instances = targets * watchers;
    let advice = needed.next_power_of_two();
    let msg = format!(
        "{targets} targets with {watchers} watchers need about {needed} memory mappings, over \
         this machine's vm.max_map_count of {limit}: watcher instances beyond it fail to start; \
         raise it with `sysctl -w vm.max_map_count={advice}`, or split the fleet with --shard"
    );
    warn!("{msg}");
    Emitted::host(
        Level::Warn,
        msg,
        fields! {"needed" => needed, "max_map_count" => limit, "instances" => instances},
    )
}

/// What to say of a node outside discover entry `entry`'s `allow`.
pub(crate) fn refused_message(entry: usize, how: &str, node: &str) -> String {
    format!(
        "{how} announces the node {node}, outside `discover[{entry}].allow`: it is not \
         contacted; if it is yours, add its address or network to `allow`"
    )
}

/// What to say of an announced node that cannot be watched, and why.
pub(crate) fn unwatchable_message(how: &str, why: &str) -> String {
    format!("{how} announces a node that cannot be watched: {why}")
}

/// What to say when entry `entry`'s answer holds more nodes than
/// `max_nodes`.
pub(crate) fn cut_message(entry: usize, how: &str, nodes: usize, max: usize) -> String {
    format!(
        "{how} lists {nodes} nodes, over `discover[{entry}].max_nodes` = {max}: watching the \
         first {max}, masters first, then by address; raise `max_nodes` or split the fleet \
         with --shard"
    )
}

/// A discovered target started polling, with its log line.
pub(super) fn target_added(key: &str, role: &str, how: &str) -> Emitted {
    info!(target = %key, %role, "target added: {key} ({role}), found by {how}");
    Emitted::host(
        Level::Info,
        format!("target added: {key} ({role}), found by {how}"),
        fields! {"target" => key, "role" => role, "discover" => how},
    )
}

/// A discovered target changed role, with its log line.
pub(super) fn target_relabelled(key: &str, role: &str, was: &str, how: &str) -> Emitted {
    info!(target = %key, %role, was = %was, "target {key} is now {role} (was {was}), per {how}");
    Emitted::host(
        Level::Warn,
        format!("target {key} is now {role} (was {was}), per {how}"),
        fields! {"target" => key, "role" => role, "was" => was, "discover" => how},
    )
}

/// A discovered target is no longer listed and stopped polling, with its
/// log line.
pub(super) fn target_removed(key: &str, how: &str) -> Emitted {
    info!(target = %key, "target removed: {key}, no longer listed by {how}");
    Emitted::host(
        Level::Warn,
        format!("target removed: {key}, no longer listed by {how}"),
        fields! {"target" => key, "discover" => how},
    )
}

/// A discover entry did not answer (its targets keep running).
pub(super) fn discovery_failed(how: &str, text: &str) -> Emitted {
    Emitted::host(
        Level::Error,
        format!("discovery failed: {how}: {text}; the targets it found keep running"),
        fields! {"discover" => how, "error" => text},
    )
}

/// The host's event (and log line) for a probe's notice about the Redis
/// at `instance`.
pub(super) fn notice(instance: &str, notice: &Notice) -> Emitted {
    match notice {
        Notice::Gap { first, last, cause } => {
            let missed = last.saturating_sub(*first).saturating_add(1);
            let (why, name) = match cause {
                Gap::Ring => (
                    "; raise slowlog-max-len on the server, or slowlog_count, or poll more \
                     often"
                        .to_owned(),
                    "ring",
                ),
                Gap::Rereads => (
                    format!(
                        ": the server logged them faster than one poll's reads (the first \
                         and {SLOWLOG_REREADS} more) caught up; raise slowlog_count, or poll \
                         more often"
                    ),
                    "rereads",
                ),
                Gap::Repeated => (
                    ": its SLOWLOG repeats ids, as no Redis does (a proxy merging several \
                     servers' logs?); each id is read once, watch the servers themselves"
                        .to_owned(),
                    "repeated",
                ),
            };
            warn!(
                missed,
                first_id = first,
                last_id = last,
                cause = name,
                "slowlog entries missed at {instance}"
            );
            Emitted::host(
                Level::Warn,
                format!(
                    "slowlog gap: {missed} entries (ids {first} to {last}) on {instance} were \
                     logged but could not be read{why}"
                ),
                fields! {"missed" => missed, "first_id" => *first, "last_id" => *last, "cause" => name},
            )
        }
        Notice::Refused(reason) => {
            error!("{reason}; SLOWLOG switched off, watchers reading it wait");
            Emitted::host(
                Level::Error,
                format!(
                    "probe refused: {reason}; SLOWLOG switched off, watchers reading it wait, the others run"
                ),
                fields! {"probe" => "slowlog", "error" => reason.clone()},
            )
        }
        Notice::Allowed => {
            info!("SLOWLOG allowed again at {instance}");
            Emitted::host(
                Level::Info,
                format!("probe allowed: SLOWLOG answered again at {instance}"),
                fields! {"probe" => "slowlog"},
            )
        }
    }
}

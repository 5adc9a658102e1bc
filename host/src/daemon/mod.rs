//! The daemon: its state (settings, the shared engine, the loaded watchers,
//! the publisher) and the wiring of its tasks. Scheduling lives in
//! [`poller`] (one task per watched Redis) and [`crate::delivery::task`]
//! (the publisher); this module starts them, loads the watchers
//! concurrently, applies reloads and stops everything on shutdown.
//!
//! ```text
//!  watchers/*.wasm ──compile (blocking pool, concurrent)──┐
//!                                                         ▼ desired watchers (never waits)
//!  poll timer ──► poller task ── probe Redis ── call watchers (each under its deadline)
//!                     │
//!                     ▼ envelopes (bounded queue, always drained)
//!                publisher task ── outbox ── breaker ── spool ──► bus
//! ```

pub mod fleet;
pub mod lateness;
pub mod poller;

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use tokio::sync::{Semaphore, mpsc, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{error, info, warn};

use crate::config::Settings;
use crate::delivery::envelope::{Emitted, Level, Origin};
use crate::delivery::heartbeat::{self, Beat};
use crate::delivery::publisher::{Publisher, Sink};
pub use crate::delivery::task::rss_kib;
use crate::delivery::task::{self, Outlet};
use crate::fields;
use crate::metrics::Metrics;
use crate::redis::conn::Conn;
use crate::redis::redact::{instance_of, redact_url};
use crate::sandbox::Engine;
use crate::sandbox::engine::{Layout, read_checked};
use crate::sandbox::engine::{PACKAGE, VERSION};
use crate::watchers::load::signature;
use crate::watchers::load::{Loaded, Spec, name_of};
use crate::watchers::reload::{Plan, Stamp, load_each, not_loaded, prepare, stamp, wasm_files};
use crate::watchers::supervisor::Listed;
use fleet::{Fleet, Kit};
use lateness::Lateness;
use poller::FirstPoll;

/// How a run ends besides the shutdown future.
#[derive(Debug, Clone, Copy, Default)]
pub struct RunMode {
    /// Print envelopes on stdout instead of publishing.
    pub dry_run: bool,
    /// Stop after this many polls (`--once` is 1); `None` runs until shutdown.
    pub polls: Option<u64>,
    /// Refuse to start when a watcher file fails to load (`--strict`);
    /// otherwise such a file is skipped and reported, and the others run.
    pub strict: bool,
}

/// A prepared daemon: settings checked, watcher files listed, connections
/// and publisher built. Nothing is compiled or dialled yet.
pub struct Daemon {
    settings: Settings,
    origin: Origin,
    engine: Engine,
    publisher: Publisher,
    /// Start-up watcher files, each with its stamp when it was listed.
    files: Vec<(PathBuf, Stamp)>,
    /// Spool replay at start: (envelopes, corrupt records, folder).
    replayed: Option<(usize, u64, String)>,
    /// The heartbeat's own bus connection and key, when it is on.
    heartbeat: Option<(Conn, String)>,
    /// The metrics and the socket bound at `metrics_addr`, when it is set.
    metrics: Option<(Arc<Metrics>, std::net::TcpListener)>,
}

/// The watchers running, by name, shared by every poller.
type Registry = BTreeMap<String, Arc<Spec>>;

impl Daemon {
    /// Start-up checks: settings, the plugins folder and its files
    /// (compiling comes later, concurrently), URLs, the spool. With
    /// `mode.strict` the files' size and header are checked here too.
    ///
    /// # Errors
    /// Any start-up problem: missing plugins folder, a bad setting, a bad
    /// URL, and with `mode.strict` a file that is not a WebAssembly
    /// component. The message names the file or key.
    pub fn prepare(settings: Settings, mode: RunMode) -> Result<Self> {
        let files = wasm_files(&settings.plugins)?;
        // The compact memory layout when the fleet may be large: the
        // configured targets this shard owns, and 100 for each discover
        // entry, times the watcher files.
        let owned = settings
            .targets
            .iter()
            .filter(|t| settings.shard.owns(&t.key()))
            .count();
        let expected = (owned + 100 * settings.discover.len()) * files.len().max(1);
        let layout = Layout::for_instances(expected);
        let engine = Engine::with_layout(settings.cache_dir.as_deref(), layout)?;
        let files: Vec<(PathBuf, Stamp)> = files
            .into_iter()
            .map(|f| {
                let at = stamp(&f);
                (f, at)
            })
            .collect();
        if mode.strict {
            for (path, _) in &files {
                let limits = settings.limits.of(&name_of(path));
                read_checked(path, limits.max_wasm_bytes)?;
            }
        }
        let config_file = || {
            settings
                .config_path
                .as_ref()
                .map_or_else(|| "config".to_owned(), |p| p.display().to_string())
        };
        for name in settings.watchers.keys() {
            if !files.iter().any(|(f, _)| &name_of(f) == name) {
                bail!(
                    "{}: [watchers.{name}] names no watcher in {} (expected {name}.wasm there)",
                    config_file(),
                    settings.plugins.display()
                );
            }
        }
        for t in &settings.targets {
            Conn::open(
                &t.endpoint(),
                settings.connect_timeout,
                settings.response_timeout,
            )?;
        }
        // Host events not about one target carry the first configured
        // target's address, or the first discover entry's.
        let first = settings
            .targets
            .first()
            .map(|t| t.url.as_str())
            .or_else(|| settings.discover.first().map(|d| d.url.as_str()))
            .unwrap_or(settings.publish.url.as_str());
        let origin = Origin::new(&settings.service, &instance_of(first))
            .with_max_envelope_bytes(settings.limits.defaults.max_envelope_bytes);
        let sink = if mode.dry_run {
            Sink::Stdout
        } else {
            Sink::Redis {
                conn: Box::new(Conn::open(
                    &settings.publish.endpoint(),
                    settings.connect_timeout,
                    settings.response_timeout,
                )?),
                settings: Box::new(settings.publish.clone()),
            }
        };
        let heartbeat = match &settings.heartbeat {
            Some(prefix) if !mode.dry_run => Some((
                Conn::open(
                    &settings.publish.endpoint(),
                    settings.connect_timeout,
                    settings.response_timeout,
                )?,
                heartbeat::key(prefix, &origin.host, origin.pid),
            )),
            _ => None,
        };
        let mut publisher = Publisher::new(sink, settings.buffer, settings.breaker, origin.clone());
        let mut replayed = None;
        if let Some(dir) = &settings.spool_dir
            && !mode.dry_run
        {
            let replay = publisher.with_spool(dir)?;
            replayed = Some((
                replay.envelopes.len(),
                replay.corrupt,
                dir.display().to_string(),
            ));
        }
        let metrics = match settings.metrics_addr {
            Some(addr) => {
                let listener = std::net::TcpListener::bind(addr)
                    .and_then(|l| l.set_nonblocking(true).map(|()| l))
                    .with_context(|| format!("metrics_addr {addr}: cannot listen there"))?;
                let abi = format!("{PACKAGE}@{VERSION}");
                let metrics = Metrics::new(settings.poll_interval, env!("CARGO_PKG_VERSION"), &abi);
                Some((Arc::new(metrics), listener))
            }
            None => None,
        };
        Ok(Self {
            settings,
            origin,
            engine,
            publisher,
            files,
            replayed,
            heartbeat,
            metrics,
        })
    }

    /// Runs until `shutdown` completes or `mode.polls` polls are done:
    /// starts the publisher and the poller, loads the watchers off the poll
    /// path, smallest first (polling starts when they are ready, or one
    /// interval after start at the latest, with those that are), applies reloads
    /// whenever `reloads` yields, and drains on the way out.
    ///
    /// A start-up watcher that fails to load is skipped and reported (an
    /// error envelope and a log line naming the file and the fix), as a
    /// reload does; with `mode.strict` it ends the run instead. Reloads
    /// wait until the start-up loads are done.
    ///
    /// # Errors
    /// With `mode.strict`, a watcher refused at start-up (the message names
    /// the file), or with `--once`: the poll failed or its envelopes could
    /// not be published.
    pub async fn run(
        self,
        mode: RunMode,
        mut reloads: mpsc::UnboundedReceiver<()>,
        shutdown: impl Future<Output = ()>,
    ) -> Result<()> {
        let Self {
            mut settings,
            origin,
            engine,
            publisher,
            files,
            replayed,
            heartbeat,
            metrics,
        } = self;
        let started_at = humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string();
        // The shutdown tree: `shutdown` (or the end of a bounded run)
        // cancels `root`, and with it every poller, discovery refresh, the
        // heartbeat and the metrics server; `tasks` waits for those besides
        // the pollers. The publisher's token is not in that tree: it is
        // cancelled once polling stopped, so what the pollers queued drains.
        let root = CancellationToken::new();
        let tasks = TaskTracker::new();
        let publisher_stop = CancellationToken::new();
        // However `run` returns, every task is told to stop.
        let _stopping = (
            root.clone().drop_guard(),
            publisher_stop.clone().drop_guard(),
        );
        let (metrics, listener) = metrics.unzip();
        if let Some(listener) = listener {
            let listener = tokio::net::TcpListener::from_std(listener)
                .context("metrics_addr: the listening socket")?;
            let metrics = metrics.clone().expect("bound with its metrics");
            let serving = crate::metrics::serve::serve(listener, metrics, root.child_token());
            tasks.spawn(serving);
        }
        let (outlet, publishing) = task::spawn_observed(
            publisher,
            publisher_stop.clone(),
            settings.shutdown_grace,
            metrics.clone(),
        );
        let paths: Vec<PathBuf> = files.iter().map(|(f, _)| f.clone()).collect();
        announce(&settings, &paths, replayed, &origin, &outlet).await;

        let first = if mode.polls.is_some() {
            FirstPoll::WhenReady
        } else {
            FirstPoll::WhenReadyOrAfterInterval
        };
        // One poller per target this shard owns, their polls spread across
        // the interval; discovered targets join as their entries answer.
        let kit = Kit {
            engine: engine.clone(),
            origin: origin.clone(),
            outlet: outlet.clone(),
            first,
            limit: mode.polls,
            calls: Arc::new(Semaphore::new(settings.max_calls_in_flight)),
            snapshots: {
                let kib = u32::try_from(settings.limits.snapshots_bytes >> 10).unwrap_or(u32::MAX);
                (Arc::new(Semaphore::new(kib as usize)), kib)
            },
            lateness: Arc::new(Lateness::default()),
            metrics,
            shutdown: root.clone(),
        };
        let lateness = kit.lateness.clone();
        let mut fleet = Fleet::new(kit, settings.discover.len());
        let mut registry = Registry::new();
        fleet.start_configured(&settings, &registry)?;
        let (answers_tx, mut answers) = mpsc::channel(settings.discover.len().max(1));
        for entry in 0..settings.discover.len() {
            tasks.spawn(fleet::refresh(
                entry,
                settings.clone(),
                mode.polls.is_some(),
                answers_tx.clone(),
                root.child_token(),
            ));
        }
        drop(answers_tx);
        let (shard, interval) = (settings.shard.to_string(), settings.poll_interval);
        let beat = |targets: usize, watchers: usize| Beat {
            version: env!("CARGO_PKG_VERSION"),
            abi: format!("{PACKAGE}@{VERSION}"),
            host: origin.host.clone(),
            pid: origin.pid,
            started_at: started_at.clone(),
            targets,
            watchers,
            shard: shard.clone(),
            poll_interval_s: interval.as_secs_f64(),
        };
        let (beats, beats_rx) = watch::channel(beat(fleet.len(), 0));
        if let Some((conn, key)) = heartbeat {
            info!(key = %key, ttl_s = heartbeat::TTL_S, "heartbeat on the bus");
            tasks.spawn(heartbeat::run(
                conn,
                key,
                settings.poll_interval,
                beats_rx,
                root.child_token(),
            ));
        }

        // Start-up loads, off the poll path: each watcher joins when ready.
        let mut loaded_rx = load_each(&engine, &paths, &settings);
        let mut loading = files.len();
        let load_started = Instant::now();
        let watching = mode.polls.is_none();
        if loading == 0 {
            ready(&settings, 0, load_started, watching, &outlet, &origin).await;
            fleet.start();
            fleet.check_mappings(registry.len()).await;
        }

        let mut refused: HashMap<String, u64> = HashMap::new();
        let mut reloading: Option<tokio::task::JoinHandle<Plan>> = None;
        let mut shutdown = std::pin::pin!(shutdown);
        let mut failure: Option<anyhow::Error> = None;
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                Some(outcome) = fleet.polling.join_next() => {
                    match outcome {
                        Ok((key, Ok(()))) => fleet.ended(&key),
                        Ok((key, Err(e))) => {
                            fleet.ended(&key);
                            failure = Some(e);
                        }
                        Err(e) => failure = Some(anyhow::anyhow!("poller task failed: {e}")),
                    }
                    if failure.is_some()
                        || (mode.polls.is_some() && fleet.polling.is_empty() && fleet.discovered())
                    {
                        break;
                    }
                }
                Some((entry, answer)) = answers.recv() => {
                    match answer {
                        Ok(found) => fleet.discovered_by(&settings, &registry, entry, found).await,
                        Err(e) => fleet.discovery_failed(&settings, entry, &e).await,
                    }
                    if mode.polls.is_some() && fleet.polling.is_empty() && fleet.discovered() {
                        break;
                    }
                }
                Some((path, result)) = loaded_rx.recv() => {
                    loading -= 1;
                    match result {
                        Ok(loaded) => {
                            install(&mut registry, &fleet, &outlet, &origin, loaded, false).await;
                        }
                        Err(e) if mode.strict => {
                            error!(file = %path.display(), "watcher refused at start-up: {e:#}");
                            failure = Some(e);
                            break;
                        }
                        Err(e) => {
                            let listed = files.iter().find(|(f, _)| *f == path).map(|(_, at)| *at);
                            let skipped = Skipped { path: &path, error: &e, listed, watching };
                            skip(skipped, &settings, &mut refused, &outlet, &origin).await;
                        }
                    }
                    if loading == 0 {
                        ready(&settings, registry.len(), load_started, watching, &outlet, &origin)
                            .await;
                        fleet.start();
                        fleet.check_mappings(registry.len()).await;
                    }
                }
                Some(()) = reloads.recv(), if reloading.is_none() && loading == 0 => {
                    while reloads.try_recv().is_ok() {}
                    info!("reloading watchers");
                    let listed = list(&registry);
                    let (engine, current) = (engine.clone(), settings.clone());
                    let previously = std::mem::take(&mut refused);
                    reloading = Some(tokio::spawn(async move {
                        prepare(&engine, &current, &listed, previously).await
                    }));
                }
                plan = async { reloading.as_mut().expect("guarded").await }, if reloading.is_some() => {
                    reloading = None;
                    match plan {
                        Ok(plan) => {
                            refused = plan.refused.clone();
                            apply(plan, &mut settings, &mut registry, &fleet, &outlet, &origin).await;
                        }
                        Err(e) => error!("reload task failed: {e}"),
                    }
                }
            }
            let now = beat(fleet.len(), registry.len());
            beats.send_if_modified(|b| {
                let changed = *b != now;
                *b = now;
                changed
            });
        }
        // Pollers stop at once (a watcher call in flight is abandoned), then
        // the publisher drains what they queued, within the grace period.
        root.cancel();
        if let Some(task) = reloading {
            task.abort();
        }
        drop(answers);
        fleet.stop_all().await;
        tasks.close();
        tasks.wait().await;
        let late = lateness.summary();
        info!(
            polls = late.polls,
            lateness_p50_ms = late.p50_ms,
            lateness_p99_ms = late.p99_ms,
            lateness_max_ms = late.max_ms,
            "polling stopped"
        );
        publisher_stop.cancel();
        drop(outlet);
        let stopped = publishing.await.unwrap_or_default();
        if let Some(e) = failure {
            return Err(e);
        }
        if mode.polls == Some(1) && stopped.lost > 0 {
            bail!("{} envelopes could not be published", stopped.lost);
        }
        Ok(())
    }
}

fn millis(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn list(registry: &Registry) -> Vec<Listed> {
    registry
        .values()
        .map(|s| Listed {
            name: s.name.clone(),
            fingerprint: s.fingerprint,
        })
        .collect()
}

async fn publish(outlet: &Outlet, origin: &Origin, events: Vec<Emitted>) {
    let envelopes = events
        .into_iter()
        .map(|e| origin.wrap(&origin.instance, e))
        .collect();
    outlet.send(envelopes).await;
}

/// The start-up loads are done: logged, and when no watcher runs, said in
/// an envelope too (Redis is still polled, and with `watching` a watcher
/// copied into the plugins folder is loaded).
async fn ready(
    settings: &Settings,
    watchers: usize,
    started: Instant,
    watching: bool,
    outlet: &Outlet,
    origin: &Origin,
) {
    if watchers == 0 {
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
        publish(
            outlet,
            origin,
            vec![Emitted::host(
                Level::Warn,
                msg,
                fields! {"plugins" => plugins},
            )],
        )
        .await;
    }
    info!(
        watchers,
        load_ms = millis(started.elapsed()),
        "watchers ready"
    );
}

/// A start-up watcher that failed to load.
struct Skipped<'a> {
    path: &'a std::path::Path,
    error: &'a anyhow::Error,
    /// Its stamp when the folder was listed.
    listed: Option<Stamp>,
    /// Whether the folder is watched (changes trigger a reload).
    watching: bool,
}

/// Skips a start-up watcher that failed to load: reported as a reload
/// reports a file it cannot load, and remembered, so the next reload does
/// not report the same file again. A file that changed since the folder
/// was listed (a copy still in progress) is left to the reload its change
/// triggers.
async fn skip(
    skipped: Skipped<'_>,
    settings: &Settings,
    refused: &mut HashMap<String, u64>,
    outlet: &Outlet,
    origin: &Origin,
) {
    let Skipped {
        path,
        error,
        listed,
        watching,
    } = skipped;
    let signed = signature(path, settings).ok();
    if watching && listed.is_some_and(|at| at != stamp(path)) {
        info!(
            file = %path.display(),
            "watcher file changed while it was loading; the reload it triggers loads it ({error:#})"
        );
        return;
    }
    if let Some(sig) = signed {
        refused.insert(name_of(path), sig);
    }
    publish(outlet, origin, vec![not_loaded(path, error, settings)]).await;
}

/// The start-up envelopes: started (with the watchers being loaded) and
/// the spool replay.
async fn announce(
    settings: &Settings,
    files: &[PathBuf],
    replayed: Option<(usize, u64, String)>,
    origin: &Origin,
    outlet: &Outlet,
) {
    let names: Vec<String> = files.iter().map(|f| name_of(f)).collect();
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
    let owned = settings
        .targets
        .iter()
        .filter(|t| settings.shard.owns(&t.key()))
        .count();
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
    publish(outlet, origin, events).await;
}

/// Puts a loaded watcher to work: in the registry, on the poller (with its
/// configured instance), and announced.
async fn install(
    registry: &mut Registry,
    fleet: &Fleet,
    outlet: &Outlet,
    origin: &Origin,
    loaded: Loaded,
    reload: bool,
) {
    let spec = loaded.spec;
    let (name, version) = (spec.name.clone(), spec.manifest.version.clone());
    let file = spec.file.display().to_string();
    let load_ms = millis(loaded.took);
    let replaced = registry.insert(name.clone(), spec.clone()).is_some();
    fleet.install(&spec, Some(loaded.instance));
    let verb = if replaced && reload {
        "reloaded"
    } else {
        "loaded"
    };
    info!(watcher = %name, %version, %file, load_ms, "watcher {verb}");
    publish(
        outlet,
        origin,
        vec![Emitted::host(
            Level::Info,
            format!("watcher {name} {version} {verb}"),
            fields! {"watcher" => name, "version" => version, "file" => file, "load_ms" => load_ms},
        )],
    )
    .await;
}

/// Applies a reload plan: new settings, installs, removals, notices.
async fn apply(
    plan: Plan,
    settings: &mut Settings,
    registry: &mut Registry,
    fleet: &Fleet,
    outlet: &Outlet,
    origin: &Origin,
) {
    publish(outlet, origin, plan.notices).await;
    if let Some(new) = plan.settings {
        if new.targets != settings.targets
            || new.publish.url != settings.publish.url
            || new.poll_interval != settings.poll_interval
        {
            warn!("changes to redis_url, targets, publish or poll_interval take effect on restart");
        }
        settings.watchers = new.watchers;
        settings.limits = new.limits;
    }
    for loaded in plan.install {
        install(registry, fleet, outlet, origin, loaded, true).await;
    }
    for name in plan.remove {
        if registry.remove(&name).is_some() {
            fleet.remove(&name);
            info!(watcher = %name, "watcher unloaded");
            publish(
                outlet,
                origin,
                vec![Emitted::host(
                    Level::Info,
                    format!("watcher {name} unloaded (its file was removed)"),
                    fields! {"watcher" => name},
                )],
            )
            .await;
        }
    }
}

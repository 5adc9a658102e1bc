//! The run loop: the tasks started under one shutdown tree, then one
//! `select!` taking what happens (a poller ended, discovery answered, a
//! watcher loaded, a reload asked for or prepared) until shutdown or the
//! end of a bounded run; then pollers stop, the outbox drains within the
//! grace period, and the publisher stops.

use std::collections::HashMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::task::{JoinError, JoinHandle};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{error, info, warn};

use super::conditions::{BusConditions, PollsLate};
use super::discover::{Found, refresh};
use super::events::{self, About};
use super::fleet::{Fleet, Kit};
use super::lateness::Lateness;
use super::poller::FirstPoll;
use super::{Daemon, Registry, RunMode};
use crate::alerts::Board;
use crate::alerts::active::Active;
use crate::config::Settings;
use crate::delivery::envelope::{Emitted, Origin};
use crate::delivery::heartbeat::{self, Beat};
use crate::delivery::task::{self, Outlet};
use crate::redis::redact::instance_of;
use crate::sandbox::Engine;
use crate::sandbox::engine::{PACKAGE, VERSION};
use crate::status::history::History;
use crate::status::{BusInfo, Observed, Status};
use crate::watchers::load::{Loaded, name_of, signature};
use crate::watchers::reload::{Plan, Stamp, load_each, not_loaded, prepare, stamp};
use crate::watchers::supervisor::Listed;

impl Daemon {
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
    pub(crate) async fn run(
        self,
        mode: RunMode,
        mut reloads: mpsc::UnboundedReceiver<()>,
        shutdown: impl Future<Output = ()>,
    ) -> Result<()> {
        let Self {
            settings,
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
        // The active set of conditions, and the board it publishes for
        // the alerts' readers.
        let board = Board::new();
        let conditions = Active::new(&settings.service, board.clone());
        // The Alertmanager sender (not on a dry run) reads the board.
        let mut delivered = None;
        if let Some(am) = settings.alertmanager.clone()
            && !mode.dry_run
        {
            let service = settings.service.clone();
            let state = Arc::default();
            let sending = crate::alerts::alertmanager::reporting(
                am,
                service,
                board.clone(),
                root.child_token(),
                Arc::clone(&state),
            )?;
            delivered = Some(state);
            tasks.spawn(sending);
        }
        // With metrics on, the status page: events and lateness per minute.
        let history = metrics.as_ref().map(|_| Arc::new(History::default()));
        if let Some(listener) = listener {
            let listener = tokio::net::TcpListener::from_std(listener)
                .context("metrics_addr: the listening socket")?;
            let metrics = metrics.clone().expect("bound with its metrics");
            let status = Status::new(
                metrics.clone(),
                board.clone(),
                history.clone().expect("made with the metrics"),
                delivered,
                BusInfo {
                    instance: instance_of(&settings.publish.url),
                    outbox_max: settings.buffer.envelopes,
                    spool_dir: settings.spool_dir.clone(),
                },
            );
            let serving = crate::metrics::serve::serve(
                listener,
                metrics,
                Some(Arc::new(status)),
                root.child_token(),
            );
            tasks.spawn(serving);
        }
        if let Some(m) = &metrics {
            m.count_conditions(conditions.clone());
        }
        let bus = BusConditions::new(
            conditions.clone(),
            origin.clone(),
            settings.alerts.for_s,
            instance_of(&settings.publish.url),
        );
        let (outlet, publishing) = task::spawn_observed(
            publisher,
            publisher_stop.clone(),
            settings.shutdown_grace,
            metrics
                .clone()
                .zip(history.clone())
                .map(|(metrics, history)| Arc::new(Observed { metrics, history })),
            Some(Arc::new(bus)),
        );
        let paths: Vec<PathBuf> = files.iter().map(|(f, _)| f.clone()).collect();
        let names: Vec<String> = paths.iter().map(|f| name_of(f)).collect();
        let started = events::started(&settings, &names, replayed, &origin);
        outlet
            .send(About::process(&origin).envelopes(&origin, started))
            .await;

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
            lateness: Arc::new(Lateness::with_minutes(history)),
            metrics,
            shutdown: root.clone(),
            conditions,
            for_s: settings.alerts.for_s,
        };
        let lateness = kit.lateness.clone();
        let polls_late = PollsLate::new(
            kit.conditions.clone(),
            origin.clone(),
            settings.shard,
            settings.poll_interval,
            settings.alerts.for_s,
        );
        let late_metrics = kit.metrics.clone();
        let mut fleet = Fleet::new(kit, settings.discover.len());
        fleet.start_configured(&settings, &Registry::new())?;
        let (answers_tx, mut answers) = mpsc::channel(settings.discover.len().max(1));
        for entry in 0..settings.discover.len() {
            tasks.spawn(refresh(
                entry,
                settings.clone(),
                mode.polls.is_some(),
                answers_tx.clone(),
                root.child_token(),
            ));
        }
        drop(answers_tx);
        let (host, pid) = (origin.host.clone(), origin.pid);
        let (shard, interval) = (settings.shard.to_string(), settings.poll_interval);
        let beat = move |targets: usize, watchers: usize| Beat {
            version: env!("CARGO_PKG_VERSION"),
            abi: format!("{PACKAGE}@{VERSION}"),
            host: host.clone(),
            pid,
            started_at: started_at.clone(),
            targets,
            watchers,
            shard: shard.clone(),
            poll_interval_s: interval.as_secs_f64(),
        };
        let (beats, beats_rx) = watch::channel(beat(fleet.len(), 0));
        tasks.spawn(polls_late.run(
            lateness.clone(),
            beats.subscribe(),
            outlet.clone(),
            late_metrics,
            root.child_token(),
        ));
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
        let mut state = State {
            loading: files.len(),
            load_started: Instant::now(),
            watching: mode.polls.is_none(),
            settings,
            mode,
            engine,
            origin,
            outlet,
            fleet,
            registry: Registry::new(),
            files,
            refused: HashMap::new(),
        };
        if state.loading == 0 {
            state.ready().await;
        }

        let mut reloading: Option<JoinHandle<Plan>> = None;
        let mut shutdown = std::pin::pin!(shutdown);
        let mut failure: Option<anyhow::Error> = None;
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                Some(outcome) = state.fleet.polling.join_next() => {
                    if let Err(e) = state.ended(outcome) {
                        failure = Some(e);
                        break;
                    }
                    if state.bounded_run_done() {
                        break;
                    }
                }
                Some((entry, answer)) = answers.recv() => {
                    state.answered(entry, answer).await;
                    if state.bounded_run_done() {
                        break;
                    }
                }
                Some((path, result)) = loaded_rx.recv() => {
                    if let Err(e) = state.loaded(&path, result).await {
                        failure = Some(e);
                        break;
                    }
                }
                Some(()) = reloads.recv(), if reloading.is_none() && state.loading == 0 => {
                    while reloads.try_recv().is_ok() {}
                    reloading = Some(state.reload());
                }
                plan = async { reloading.as_mut().expect("guarded").await }, if reloading.is_some() => {
                    reloading = None;
                    state.reloaded(plan).await;
                }
            }
            let now = beat(state.fleet.len(), state.registry.len());
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
        state.fleet.stop_all().await;
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
        drop(state);
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

/// What the run loop works on between its events.
struct State {
    settings: Settings,
    mode: RunMode,
    engine: Engine,
    origin: Origin,
    outlet: Outlet,
    fleet: Fleet,
    registry: Registry,
    /// Start-up watcher files, each with its stamp when it was listed.
    files: Vec<(PathBuf, Stamp)>,
    /// Start-up loads not done yet; reloads wait for them.
    loading: usize,
    load_started: Instant,
    /// Whether the plugins folder is watched (changes trigger a reload).
    watching: bool,
    /// Signatures of files that failed to load, by watcher name, so the
    /// same broken file is reported once.
    refused: HashMap<String, u64>,
}

impl State {
    /// Queues events about the process itself.
    async fn publish(&self, events: Vec<Emitted>) {
        let envelopes = About::process(&self.origin).envelopes(&self.origin, events);
        self.outlet.send(envelopes).await;
    }

    /// Whether a bounded run is done: every poller ended and every
    /// discover entry answered.
    fn bounded_run_done(&self) -> bool {
        self.mode.polls.is_some() && self.fleet.polling.is_empty() && self.fleet.discovered()
    }

    /// A poller ended.
    ///
    /// # Errors
    /// Its poll failed (with `--once`), or its task did.
    fn ended(&mut self, outcome: Result<(String, Result<()>), JoinError>) -> Result<()> {
        match outcome {
            Ok((key, result)) => {
                self.fleet.ended(&key);
                result
            }
            Err(e) => Err(anyhow::anyhow!("poller task failed: {e}")),
        }
    }

    /// Discover entry `entry` answered (or failed to).
    async fn answered(&mut self, entry: usize, answer: Result<Found>) {
        match answer {
            Ok(found) => {
                let (settings, registry) = (&self.settings, &self.registry);
                self.fleet
                    .discovered_by(settings, registry, entry, found)
                    .await;
            }
            Err(e) => self.fleet.discovery_failed(&self.settings, entry, &e).await,
        }
    }

    /// A start-up watcher loaded, or failed to; the last one makes the
    /// fleet start.
    ///
    /// # Errors
    /// With `--strict`, the watcher failed to load.
    async fn loaded(&mut self, path: &Path, result: Result<Loaded>) -> Result<()> {
        self.loading -= 1;
        match result {
            Ok(loaded) => self.install(loaded, false).await,
            Err(e) if self.mode.strict => {
                error!(file = %path.display(), "watcher refused at start-up: {e:#}");
                return Err(e);
            }
            Err(e) => self.skip(path, &e).await,
        }
        if self.loading == 0 {
            self.ready().await;
        }
        Ok(())
    }

    /// The start-up loads are done: said, and every poller starts.
    async fn ready(&mut self) {
        let watchers = self.registry.len();
        let event = events::ready(&self.settings, watchers, self.load_started, self.watching);
        self.publish(event.into_iter().collect()).await;
        self.fleet.start();
        self.fleet.check_mappings(watchers).await;
    }

    /// Skips a start-up watcher that failed to load: reported as a reload
    /// reports a file it cannot load, and remembered, so the next reload
    /// does not report the same file again. A file that changed since the
    /// folder was listed (a copy still in progress) is left to the reload
    /// its change triggers.
    async fn skip(&mut self, path: &Path, error: &anyhow::Error) {
        let listed = self
            .files
            .iter()
            .find(|(f, _)| f.as_path() == path)
            .map(|(_, at)| *at);
        let signed = signature(path, &self.settings).ok();
        if self.watching && listed.is_some_and(|at| at != stamp(path)) {
            info!(
                file = %path.display(),
                "watcher file changed while it was loading; the reload it triggers loads it ({error:#})"
            );
            return;
        }
        if let Some(sig) = signed {
            self.refused.insert(name_of(path), sig);
        }
        self.publish(vec![not_loaded(path, error, &self.settings)])
            .await;
    }

    /// Puts a loaded watcher to work: in the registry, on the pollers (the
    /// first with the instance configured while loading), and announced.
    async fn install(&mut self, loaded: Loaded, reload: bool) {
        let spec = loaded.spec;
        let replaced = self
            .registry
            .insert(spec.name.clone(), spec.clone())
            .is_some();
        self.fleet.install(&spec, Some(loaded.instance));
        let file = spec.file.display().to_string();
        let (name, version) = (&spec.name, &spec.manifest.version);
        let event = events::loaded(name, version, &file, loaded.took, replaced && reload);
        self.publish(vec![event]).await;
    }

    /// Starts preparing a reload off the loop: the settings re-read and
    /// every new or changed watcher loaded.
    fn reload(&mut self) -> JoinHandle<Plan> {
        info!("reloading watchers");
        let listed: Vec<Listed> = self
            .registry
            .values()
            .map(|s| Listed {
                name: s.name.clone(),
                fingerprint: s.fingerprint,
            })
            .collect();
        let (engine, current) = (self.engine.clone(), self.settings.clone());
        let previously = std::mem::take(&mut self.refused);
        tokio::spawn(async move { prepare(&engine, &current, &listed, previously).await })
    }

    /// A reload was prepared: applied.
    async fn reloaded(&mut self, plan: Result<Plan, JoinError>) {
        match plan {
            Ok(mut plan) => {
                self.refused = std::mem::take(&mut plan.refused);
                self.apply(plan).await;
            }
            Err(e) => error!("reload task failed: {e}"),
        }
    }

    /// Applies a reload plan: new settings, installs, removals, notices.
    async fn apply(&mut self, plan: Plan) {
        self.publish(plan.notices).await;
        if let Some(new) = plan.settings {
            let settings = &self.settings;
            if new.targets != settings.targets
                || new.publish.url != settings.publish.url
                || new.poll_interval != settings.poll_interval
            {
                warn!(
                    "changes to redis_url, targets, publish or poll_interval take effect on restart"
                );
            }
            self.settings.watchers = new.watchers;
            self.settings.limits = new.limits;
        }
        for loaded in plan.install {
            self.install(loaded, true).await;
        }
        for name in plan.remove {
            if self.registry.remove(&name).is_some() {
                self.fleet.remove(&name);
                self.publish(vec![events::unloaded(&name)]).await;
            }
        }
    }
}

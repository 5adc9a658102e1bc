//! The poll loop: load watchers at start-up, then every interval PING,
//! probe, call the due watchers, wrap events in envelopes and publish them;
//! back off while Redis is unreachable, reload watchers when their files
//! change or on SIGHUP, and stop on the shutdown future.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use serde_json::{Map, Value};
use tokio::runtime::Runtime;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::{error, info, warn};

use crate::backoff::{Backoff, retry_wait};
use crate::config::Settings;
use crate::envelope::{HOST_TARGET, Level, Origin};
use crate::fields;
use crate::output::Emitted;
use crate::plugin::Runtime as WasmRuntime;
use crate::probe::{Conn, ProbeError, Prober};
use crate::publish::{Publisher, Sink};
use crate::redact::redact_url;
use crate::reload::{Plan, prepare, wasm_files};
use crate::supervisor::Supervisor;
use crate::watcher::Watcher;

/// How a run ends besides the shutdown future.
#[derive(Debug, Clone, Copy, Default)]
pub struct RunMode {
    /// Print envelopes on stdout instead of publishing.
    pub dry_run: bool,
    /// Stop after this many polls (`--once` is 1); `None` runs until shutdown.
    pub polls: Option<u64>,
}

/// A started daemon: watchers loaded and configured, connections prepared.
pub struct Daemon {
    settings: Settings,
    origin: Origin,
    prober: Prober,
    publisher: Publisher,
    /// Loaded watchers as (name, version, file), for start-up envelopes.
    loaded: Vec<(String, String, String)>,
    supervisor: Supervisor,
    runtime: WasmRuntime,
    instance: Arc<str>,
    polls: u64,
    /// Probes the next poll needs, as planned by the watcher thread; `None`
    /// asks it afresh (at start and after a reload).
    next_probes: Option<crate::probe::Probes>,
    /// Spool replay at start: (envelopes, corrupt records, folder).
    replayed: Option<(usize, u64, String)>,
    /// Publish at once instead of at the next retry (an outage of the
    /// watched Redis to report on another bus).
    flush_soon: bool,
    /// Files refused by a reload, by signature, so each is reported once.
    refused: HashMap<String, u64>,
}

impl Daemon {
    /// Start-up: loads and configures every watcher and prepares the
    /// connections. Nothing is dialled yet.
    ///
    /// # Errors
    /// Any start-up problem: missing plugins folder, a file that is not a
    /// valid watcher, a bad setting, a bad URL. The message names the file
    /// or key.
    pub fn start(settings: Settings, mode: RunMode) -> Result<Self> {
        let runtime = WasmRuntime::new(settings.cache_dir.as_deref())?;
        let mut watchers = Vec::new();
        for path in wasm_files(&settings.plugins)? {
            watchers.push(Watcher::load(&runtime, &path, &settings)?);
        }
        let file = || {
            settings
                .config_path
                .as_ref()
                .map_or_else(|| "config".to_owned(), |p| p.display().to_string())
        };
        for name in settings.watchers.keys() {
            if !watchers.iter().any(|w| &w.name == name) {
                bail!(
                    "{}: [watchers.{name}] names no watcher in {} (expected {name}.wasm there)",
                    file(),
                    settings.plugins.display()
                );
            }
        }
        let conn = Conn::new(
            &settings.redis_url,
            settings.connect_timeout,
            settings.response_timeout,
        )?;
        let origin = Origin::new(&settings.service, &conn.instance);
        let sink = if mode.dry_run {
            Sink::Stdout
        } else {
            Sink::Redis {
                conn: Box::new(Conn::new(
                    &settings.publish.url,
                    settings.connect_timeout,
                    settings.response_timeout,
                )?),
                settings: settings.publish.clone(),
            }
        };
        let loaded = watchers
            .iter()
            .map(|w| {
                (
                    w.name.clone(),
                    w.manifest.version.clone(),
                    w.file.display().to_string(),
                )
            })
            .collect();
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
        Ok(Self {
            instance: Arc::from(origin.instance.as_str()),
            prober: Prober::new(conn, settings.slowlog_count),
            publisher,
            replayed,
            origin,
            loaded,
            supervisor: Supervisor::new(runtime.clone(), watchers, settings.poll_interval),
            runtime,
            settings,
            polls: 0,
            next_probes: None,
            flush_soon: false,
            refused: HashMap::new(),
        })
    }

    /// Names of the watchers loaded at start-up.
    pub fn watcher_names(&self) -> Vec<String> {
        self.loaded
            .iter()
            .map(|(name, _, _)| name.clone())
            .collect()
    }

    fn host_event(&mut self, level: Level, msg: impl Into<String>, fields: Map<String, Value>) {
        let envelope = self.origin.envelope(level, HOST_TARGET, msg, fields);
        self.publisher.push(envelope);
    }

    fn publish_all(&mut self, emitted: Vec<Emitted>) {
        for e in emitted {
            let envelope = self.origin.envelope(e.level, &e.target, e.msg, e.fields);
            self.publisher.push(envelope);
        }
    }

    fn announce(&mut self) {
        let instance = self.instance.clone();
        info!(
            redis = %redact_url(&self.settings.redis_url),
            watchers = ?self.watcher_names(),
            interval_s = self.settings.poll_interval.as_secs_f64(),
            "lookout started"
        );
        self.host_event(
            Level::Info,
            format!("lookout started, watching {instance}"),
            fields! {
                "version" => env!("CARGO_PKG_VERSION"),
                "watchers" => self.watcher_names().join(","),
                "poll_interval_s" => self.settings.poll_interval.as_secs_f64(),
            },
        );
        for (name, version, file) in self.loaded.clone() {
            info!(watcher = %name, version = %version, file = %file, "watcher loaded");
            self.host_event(
                Level::Info,
                format!("watcher {name} {version} loaded"),
                fields! {"watcher" => name, "version" => version, "file" => file},
            );
        }
        if let Some((envelopes, corrupt, dir)) = self.replayed.take()
            && (envelopes > 0 || corrupt > 0)
        {
            let level = if corrupt > 0 {
                Level::Warn
            } else {
                Level::Info
            };
            info!(envelopes, corrupt, spool = %dir, "replaying the spool");
            self.host_event(
                level,
                format!(
                    "replaying {envelopes} spooled envelopes from {dir} ({corrupt} corrupt records skipped)"
                ),
                fields! {"replayed" => envelopes, "corrupt" => corrupt, "spool" => dir},
            );
        }
        if self.loaded.is_empty() {
            warn!(plugins = %self.settings.plugins.display(), "no watchers loaded");
        }
    }

    /// Runs the poll loop on `rt` until `shutdown` completes or
    /// `mode.polls` polls are done, reloading watchers whenever `reloads`
    /// yields. Redis I/O runs inside `rt`; watcher calls run on this thread
    /// outside it (synchronous WASI calls must not block an async context).
    ///
    /// # Errors
    /// Only with `--once`: the single poll or its publish failed.
    pub fn run(
        mut self,
        rt: &Runtime,
        mode: RunMode,
        mut reloads: mpsc::UnboundedReceiver<()>,
        shutdown: impl Future<Output = ()>,
    ) -> Result<()> {
        self.announce();
        let mut shutdown = std::pin::pin!(shutdown);
        let mut backoff = Backoff::default();
        let mut down_since: Option<Instant> = None;
        let mut done = 0u64;
        let once = mode.polls == Some(1);
        let mut next_poll = Instant::now();
        let mut pending: Option<JoinHandle<Plan>> = None;
        let mut next_flush: Option<Instant> = None;
        loop {
            let wake = rt.block_on(async {
                tokio::select! {
                    () = &mut shutdown => Wake::Stop,
                    () = tokio::time::sleep_until(next_poll.into()) => Wake::Poll,
                    () = sleep_until_opt(next_flush), if next_flush.is_some() => Wake::Flush,
                    Some(()) = reloads.recv(), if pending.is_none() => {
                        while reloads.try_recv().is_ok() {}
                        Wake::Reload
                    }
                    plan = async { pending.as_mut().expect("guarded").await }, if pending.is_some() => {
                        Wake::Reloaded(plan.map(Box::new).map_err(|e| e.to_string()))
                    }
                }
            });
            match wake {
                Wake::Stop => break,
                Wake::Reload => {
                    pending = Some(self.start_reload(rt));
                    continue;
                }
                Wake::Reloaded(plan) => {
                    pending = None;
                    match plan {
                        Ok(plan) => self.apply(rt, *plan),
                        Err(e) => error!("reload task failed: {e}"),
                    }
                    continue;
                }
                Wake::Flush => {
                    next_flush = self.flush_now(rt);
                    continue;
                }
                Wake::Poll => {}
            }
            let started = Instant::now();
            let Some(outcome) = self.poll_until(rt, &mut shutdown) else {
                break;
            };
            done += 1;
            let wait = match outcome {
                Ok(()) => {
                    backoff.reset();
                    if let Some(since) = down_since.take() {
                        rt.block_on(self.back_online(since.elapsed()));
                    }
                    self.settings
                        .poll_interval
                        .saturating_sub(started.elapsed())
                }
                Err(e) if once => return Err(e),
                Err(e) => self.failed_poll(e, &mut down_since, &mut backoff),
            };
            if mode.polls.is_some_and(|limit| done >= limit) {
                break;
            }
            next_poll = Instant::now() + wait;
            next_flush = if std::mem::take(&mut self.flush_soon) {
                Some(Instant::now())
            } else {
                self.flush_retry_at()
            };
        }
        let lost = rt.block_on(self.stop());
        if once && lost > 0 {
            bail!("{lost} envelopes could not be published");
        }
        Ok(())
    }

    /// When to retry publishing what is queued: when the breaker allows it,
    /// else in 1-2 s; `None` when nothing waits.
    fn flush_retry_at(&self) -> Option<Instant> {
        (self.publisher.pending() > 0).then(|| {
            self.publisher
                .retry_at()
                .unwrap_or_else(|| Instant::now() + retry_wait())
        })
    }

    /// Tries to publish now; returns when to try again.
    fn flush_now(&mut self, rt: &Runtime) -> Option<Instant> {
        if let Err(e) = rt.block_on(self.publisher.flush()) {
            warn!(
                buffered = self.publisher.pending(),
                "publish failed, will retry: {e:#}"
            );
        }
        self.flush_retry_at()
    }

    async fn back_online(&mut self, outage: Duration) {
        let instance = self.instance.clone();
        info!(
            outage_s = outage.as_secs_f64(),
            "redis reachable again at {instance}"
        );
        self.host_event(
            Level::Info,
            format!(
                "instance back: redis reachable again at {instance} after {:.1}s",
                outage.as_secs_f64()
            ),
            fields! {"outage_ms" => u64::try_from(outage.as_millis()).unwrap_or(u64::MAX)},
        );
        if let Err(e) = self.publisher.flush().await {
            warn!("publish failed, will retry: {e:#}");
        }
    }

    fn failed_poll(
        &mut self,
        e: anyhow::Error,
        down_since: &mut Option<Instant>,
        backoff: &mut Backoff,
    ) -> Duration {
        let instance = self.instance.clone();
        match e.downcast::<ProbeError>() {
            Ok(ProbeError::Unreachable(cause)) => {
                if down_since.is_none() {
                    *down_since = Some(Instant::now());
                    error!("redis lost at {instance}: {cause:#}");
                    self.host_event(
                        Level::Error,
                        format!("instance unreachable: redis at {instance} does not answer"),
                        fields! {"error" => format!("{cause:#}")},
                    );
                    // Tell the bus now when it is another Redis.
                    if self.settings.publish.url != self.settings.redis_url {
                        self.flush_soon = true;
                    }
                }
                let wait = backoff.next_wait();
                warn!(
                    "redis unreachable at {instance}, retrying in {:.1}s",
                    wait.as_secs_f64()
                );
                wait
            }
            Ok(other) => {
                let wait = retry_wait();
                warn!("{other}; retrying in {:.1}s", wait.as_secs_f64());
                wait
            }
            Err(other) => {
                let wait = retry_wait();
                warn!("{other:#}; retrying in {:.1}s", wait.as_secs_f64());
                wait
            }
        }
    }

    fn start_reload(&mut self, rt: &Runtime) -> JoinHandle<Plan> {
        info!("reloading watchers");
        let loaded = self.supervisor.list();
        let runtime = self.runtime.clone();
        let settings = self.settings.clone();
        let refused = std::mem::take(&mut self.refused);
        rt.spawn_blocking(move || prepare(&runtime, &settings, &loaded, refused))
    }

    fn apply(&mut self, rt: &Runtime, plan: Plan) {
        self.refused = plan.refused;
        self.publish_all(plan.notices);
        if let Some(settings) = plan.settings {
            if settings.redis_url != self.settings.redis_url
                || settings.publish.url != self.settings.publish.url
                || settings.poll_interval != self.settings.poll_interval
            {
                warn!("changes to redis_url, publish or poll_interval take effect on restart");
            }
            self.settings.watchers = settings.watchers;
            self.settings.limits = settings.limits;
        }
        for watcher in plan.install {
            let notices = self.supervisor.install(watcher);
            self.publish_all(notices);
        }
        for name in plan.remove {
            let notices = self.supervisor.remove(&name);
            self.publish_all(notices);
        }
        self.next_probes = None;
        if let Err(e) = rt.block_on(self.publisher.flush()) {
            warn!("publish failed, will retry: {e:#}");
        }
    }

    /// Shutdown: drains the outbox within the grace period, spools what is
    /// left (with a spool) and logs the counts; returns how many envelopes
    /// were lost.
    async fn stop(&mut self) -> usize {
        let left = self.publisher.drain(self.settings.shutdown_grace).await;
        let spooled = if left > 0 {
            self.publisher.spool_pending()
        } else {
            0
        };
        let lost = left - spooled.min(left);
        let counts = self.publisher.counts();
        if lost > 0 {
            warn!(lost, "could not publish queued envelopes before exit");
        }
        info!(
            emitted = counts.emitted,
            delivered = counts.delivered,
            dropped = counts.dropped,
            spooled,
            lost,
            rss_kib = rss_kib(),
            "lookout stopped"
        );
        lost
    }

    /// One poll: probe what the due watchers need, run them, publish.
    ///
    /// # Errors
    /// A [`ProbeError`] when Redis is unreachable or a probe failed, or a
    /// publish error; envelopes stay queued for the next poll.
    pub fn poll(&mut self, rt: &Runtime) -> Result<()> {
        self.poll_until(rt, &mut std::future::pending())
            .expect("never cancelled")
    }

    /// [`Daemon::poll`], abandoning the Redis I/O when `cancel` completes
    /// (then `None`).
    fn poll_until<F: Future<Output = ()> + Unpin>(
        &mut self,
        rt: &Runtime,
        cancel: &mut F,
    ) -> Option<Result<()>> {
        self.polls += 1;
        let probes = self
            .next_probes
            .unwrap_or_else(|| self.supervisor.plan(self.polls, Instant::now()));
        let snapshot = rt.block_on(async {
            tokio::select! {
                s = self.prober.poll(probes) => Some(s),
                () = &mut *cancel => None,
            }
        })?;
        let snapshot = match snapshot {
            Ok(s) => s,
            Err(e) => return Some(Err(e.into())),
        };
        let (emitted, next) = self.supervisor.poll(self.polls, &self.instance, &snapshot);
        self.next_probes = Some(next);
        self.publish_all(emitted);
        let flushed = rt.block_on(async {
            tokio::select! {
                r = self.publisher.flush() => Some(r),
                () = &mut *cancel => None,
            }
        })?;
        // A failed publish keeps the envelopes queued (the breaker and the
        // retry timer take it from here); the poll itself succeeded.
        if let Err(e) = flushed {
            warn!(
                buffered = self.publisher.pending(),
                "publish failed, will retry: {e:#}"
            );
        }
        Some(Ok(()))
    }
}

/// Sleeps until `at` (forever when `None`).
async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

/// What woke the poll loop.
enum Wake {
    Stop,
    Poll,
    Flush,
    Reload,
    Reloaded(Result<Box<Plan>, String>),
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

//! The poll loop: load watchers at start-up, then every interval PING,
//! probe, call each watcher, wrap events in envelopes and publish them;
//! back off while Redis is unreachable and stop on the shutdown future.

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::{Map, Value};
use tracing::{error, info, warn};

use crate::backoff::{Backoff, retry_wait};
use crate::config::Settings;
use crate::envelope::{HOST_TARGET, Level, Origin};
use crate::fields;
use crate::plugin::bindings::lookout::watcher::types as wit;
use crate::plugin::{Runtime, Watcher};
use crate::probe::{Conn, ProbeError, Prober, Probes};
use crate::publish::{Publisher, Sink};
use crate::redact::redact_url;
use crate::watcher_config::{Layer, read_side_file, resolve};
use crate::worker::WatcherThread;

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
    /// Loaded watchers as (file name, version, file), for start-up envelopes.
    loaded: Vec<(String, String, String)>,
    watchers: WatcherThread,
    instance: Arc<str>,
    probes: Probes,
    // Kept alive for the watchers' stores.
    _runtime: Runtime,
}

/// Lists the `*.wasm` files of the plugins folder, sorted by name.
///
/// # Errors
/// The folder is missing or unreadable.
pub fn wasm_files(dir: &std::path::Path) -> Result<Vec<PathBuf>> {
    if !dir.is_dir() {
        bail!(
            "plugins folder {} does not exist; build the watchers with `make plugins` \
             or point --plugins at a folder of NAME.wasm files",
            dir.display()
        );
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading plugins folder {}", dir.display()))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "wasm") && p.is_file())
        .collect();
    files.sort();
    Ok(files)
}

/// Loads one watcher and configures it from its layers of settings.
///
/// # Errors
/// Loading failed, a setting is unknown or mistyped, or the watcher
/// rejected its settings.
pub fn load_watcher(
    runtime: &Runtime,
    path: &std::path::Path,
    settings: &Settings,
) -> Result<Watcher> {
    let mut watcher = runtime.load(path)?;
    let side = read_side_file(path)?;
    let mut layers = Vec::new();
    if let Some((origin, table)) = &side {
        layers.push(Layer {
            origin: origin.clone(),
            table,
        });
    }
    if let Some(table) = settings.watchers.get(&watcher.name) {
        let file = settings
            .config_path
            .as_ref()
            .map_or_else(|| "config".to_owned(), |p| p.display().to_string());
        layers.push(Layer {
            origin: format!("{file} [watchers.{}]", watcher.name),
            table,
        });
    }
    let resolved = resolve(&watcher.manifest, &layers)?;
    watcher
        .configure(&resolved)
        .with_context(|| format!("{}", path.display()))?;
    Ok(watcher)
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
        let runtime = Runtime::new(settings.cache_dir.as_deref(), settings.limits)?;
        let mut watchers = Vec::new();
        for path in wasm_files(&settings.plugins)? {
            watchers.push(load_watcher(&runtime, &path, &settings)?);
        }
        for name in settings.watchers.keys() {
            if !watchers.iter().any(|w| &w.name == name) {
                let file = settings
                    .config_path
                    .as_ref()
                    .map_or_else(|| "config".to_owned(), |p| p.display().to_string());
                bail!(
                    "{file}: [watchers.{name}] names no watcher in {} (expected {name}.wasm there)",
                    settings.plugins.display()
                );
            }
        }
        let probes = watchers.iter().fold(Probes::default(), |acc, w| {
            let p = w.probes();
            Probes {
                info: acc.info || p.info,
                slowlog: acc.slowlog || p.slowlog,
            }
        });
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
        let prober = Prober::new(conn, settings.slowlog_count);
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
        Ok(Self {
            instance: Arc::from(origin.instance.as_str()),
            origin,
            prober,
            publisher: Publisher::new(sink),
            loaded,
            watchers: WatcherThread::spawn(watchers)?,
            probes,
            settings,
            _runtime: runtime,
        })
    }

    /// Names of the loaded watchers.
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

    /// Runs the poll loop until `shutdown` completes or `mode.polls` polls
    /// are done.
    ///
    /// # Errors
    /// Only with `--once`: the single poll or its publish failed.
    pub async fn run(mut self, mode: RunMode, shutdown: impl Future<Output = ()>) -> Result<()> {
        let instance = self.origin.instance.clone();
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
        if self.loaded.is_empty() {
            warn!(plugins = %self.settings.plugins.display(), "no watchers loaded");
        }
        let mut shutdown = std::pin::pin!(shutdown);
        let mut backoff = Backoff::default();
        let mut down_since: Option<Instant> = None;
        let mut polls = 0u64;
        let once = mode.polls == Some(1);
        loop {
            let started = Instant::now();
            polls += 1;
            let outcome = tokio::select! {
                outcome = self.poll() => outcome,
                () = &mut shutdown => break,
            };
            let wait = match outcome {
                Ok(()) => {
                    backoff.reset();
                    if let Some(since) = down_since.take() {
                        let outage = since.elapsed();
                        info!(
                            outage_s = outage.as_secs_f64(),
                            "redis reachable again at {instance}"
                        );
                        self.host_event(
                            Level::Info,
                            format!(
                                "redis reachable again at {instance} after {:.1}s",
                                outage.as_secs_f64()
                            ),
                            fields! {"outage_ms" => u64::try_from(outage.as_millis()).unwrap_or(u64::MAX)},
                        );
                        if let Err(e) = self.publisher.flush().await {
                            warn!("publish failed, will retry: {e:#}");
                        }
                    }
                    self.settings
                        .poll_interval
                        .saturating_sub(started.elapsed())
                }
                Err(e) if once => return Err(e),
                Err(e) => match e.downcast::<ProbeError>() {
                    Ok(ProbeError::Unreachable(cause)) => {
                        if down_since.is_none() {
                            down_since = Some(Instant::now());
                            error!("redis lost at {instance}: {cause:#}");
                            self.host_event(
                                Level::Error,
                                format!("redis unreachable at {instance}"),
                                fields! {"error" => format!("{cause:#}")},
                            );
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
                },
            };
            if mode.polls.is_some_and(|limit| polls >= limit) {
                break;
            }
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = &mut shutdown => break,
            }
        }
        self.stop().await;
        Ok(())
    }

    async fn stop(&mut self) {
        let pending = self.publisher.pending();
        if pending > 0 {
            let flush = tokio::time::timeout(Duration::from_secs(2), self.publisher.flush()).await;
            if !matches!(flush, Ok(Ok(_))) {
                warn!(
                    lost = pending,
                    "could not publish queued envelopes before exit"
                );
            }
        }
        info!(
            delivered = self.publisher.delivered,
            dropped = self.publisher.dropped,
            rss_kib = rss_kib(),
            "lookout stopped"
        );
    }

    /// One poll: probe, observe, publish.
    ///
    /// # Errors
    /// A [`ProbeError`] when Redis is unreachable or a probe failed, or a
    /// publish error; envelopes stay queued for the next poll.
    pub async fn poll(&mut self) -> Result<()> {
        let snapshot = Arc::new(self.prober.poll(self.probes).await?);
        let reports = self
            .watchers
            .observe(self.instance.clone(), snapshot)
            .await?;
        let mut failures = Vec::new();
        for report in reports {
            match report.result {
                Ok(events) => {
                    for event in events {
                        let envelope = self.origin.envelope(
                            level_of(event.level),
                            &report.target,
                            event.msg,
                            fields_of(event.fields),
                        );
                        self.publisher.push(envelope);
                    }
                }
                Err(e) => failures.push((report.watcher, e.to_string())),
            }
        }
        for (name, reason) in failures {
            error!(watcher = %name, "{reason}; watcher disabled");
            self.host_event(
                Level::Error,
                format!("{reason}; watcher disabled"),
                fields! {"watcher" => name, "reason" => reason},
            );
        }
        self.publisher.flush().await?;
        Ok(())
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

fn level_of(level: wit::Level) -> Level {
    match level {
        wit::Level::Debug => Level::Debug,
        wit::Level::Info => Level::Info,
        wit::Level::Warn => Level::Warn,
        wit::Level::Error => Level::Error,
    }
}

/// Converts watcher fields into the envelope's JSON `fields`.
pub fn fields_of(fields: Vec<wit::Field>) -> Map<String, Value> {
    fields
        .into_iter()
        .map(|f| {
            let value = match f.value {
                wit::Value::Text(s) => Value::from(s),
                wit::Value::Integer(n) => Value::from(n),
                wit::Value::Float(x) => Value::from(x),
                wit::Value::Boolean(b) => Value::from(b),
            };
            (f.name, value)
        })
        .collect()
}

//! Daemon settings: the optional `lookout.toml`, environment variables and
//! command-line flags merged into one [`Settings`], flags over env over
//! file. This module holds the file's top level and that layering; each
//! table belongs to the module that uses it, with its checks: delivery's
//! `[publish]`, `[buffer]`, `[breaker]` and `[heartbeat]`
//! ([`crate::delivery::settings`]), the sandbox's `[limits]`
//! ([`crate::sandbox::limits`]), `[[targets]]` and `[[discover]]`
//! ([`crate::targets`]). [`shown`] tells where each resolved setting came
//! from.

pub(crate) mod shown;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde::Deserialize;

use crate::checks::{IntKey, Origin, SecondsKey, check_url, seconds};
use crate::delivery::breaker::BreakerSettings;
use crate::delivery::outbox::Caps;
use crate::delivery::settings::{
    BreakerFile, BufferFile, HeartbeatFile, PublishFile, PublishSettings,
};
use crate::redis::tls::Tls;
use crate::sandbox::limits::{Limits, LimitsFile};
use crate::targets::{self, Discover, DiscoverFile, Shard, Target, TargetFile};

/// Watched Redis when nothing else is configured.
pub(crate) const DEFAULT_REDIS_URL: &str = "redis://127.0.0.1:6379";

/// The `lookout.toml` file as written by the operator. Every table rejects
/// unknown keys so a typo is an error, not a silently ignored setting.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Watched Redis URL.
    pub redis_url: Option<String>,
    /// Seconds between polls; fractions allowed.
    pub poll_interval: Option<f64>,
    /// Folder holding `NAME.wasm` watchers and their `NAME.toml` settings.
    pub plugins: Option<PathBuf>,
    /// Folder for compiled watcher artifacts.
    pub cache_dir: Option<PathBuf>,
    /// `service` field of every envelope.
    pub service: Option<String>,
    /// How many entries one SLOWLOG GET asks for at most.
    pub slowlog_count: Option<i64>,
    /// Seconds to wait for a TCP connection to Redis.
    pub connect_timeout: Option<f64>,
    /// Seconds to wait for any Redis reply.
    pub response_timeout: Option<f64>,
    /// Seconds SIGTERM waits for the outbox to drain.
    pub shutdown_grace: Option<f64>,
    /// `text` or `json` logs on stderr.
    pub log_format: Option<LogFormat>,
    /// Where and how envelopes are published.
    #[serde(default)]
    pub publish: PublishFile,
    /// The outbox used while the bus is unreachable.
    #[serde(default)]
    pub buffer: BufferFile,
    /// The publish circuit breaker.
    #[serde(default)]
    pub breaker: BreakerFile,
    /// Limits applied to every watcher.
    #[serde(default)]
    pub limits: LimitsFile,
    /// Per-watcher settings, by watcher file name; they override `NAME.toml`.
    #[serde(default)]
    pub watchers: BTreeMap<String, toml::Table>,
    /// Watched Redis instances (instead of `redis_url`).
    #[serde(default)]
    pub targets: Vec<TargetFile>,
    /// Clusters and Sentinel sets whose nodes are watched.
    #[serde(default)]
    pub discover: Vec<DiscoverFile>,
    /// `I/N`: watch only the targets whose key hashes to I modulo N.
    pub shard: Option<String>,
    /// Watcher calls running at once, across all targets.
    pub max_calls_in_flight: Option<i64>,
    /// The heartbeat key on the bus.
    #[serde(default)]
    pub heartbeat: HeartbeatFile,
    /// `HOST:PORT` serving `/metrics` and `/healthz`; off when unset.
    pub metrics_addr: Option<String>,
    /// TLS settings of every `rediss://` URL, unless overridden.
    #[serde(default)]
    pub tls: Tls,
    /// Where alerts are sent.
    #[serde(default)]
    pub alertmanager: crate::alerts::alertmanager::AlertmanagerFile,
    /// When host conditions fire.
    #[serde(default)]
    pub alerts: crate::alerts::settings::AlertsFile,
}

/// Log output format on stderr.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// Values given on the command line or through the environment; `None`
/// means "not given", so the file or the default applies.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    /// `--redis-url` (repeatable) / `REDIS_URL`: the watched Redis
    /// instances, over the file's.
    pub redis_urls: Vec<String>,
    /// `--poll-interval` / `POLL_INTERVAL`.
    pub poll_interval: Option<f64>,
    /// `--plugins`.
    pub plugins: Option<PathBuf>,
    /// `--cache-dir`.
    pub cache_dir: Option<PathBuf>,
    /// `--service`.
    pub service: Option<String>,
    /// `--log-format`.
    pub log_format: Option<LogFormat>,
    /// `--shard` / `LOOKOUT_SHARD`.
    pub shard: Option<String>,
    /// `--metrics-addr`.
    pub metrics_addr: Option<String>,
    /// Which of these came from the environment rather than a flag, by
    /// key: `redis_url`, `poll_interval`, `shard`.
    pub environment: BTreeSet<&'static str>,
}

/// Everything the daemon needs, resolved and validated.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The first watched Redis URL (may hold a password: log it through
    /// [`crate::redis::redact::redact_url`]); the bus by default. With
    /// only `[[discover]]` entries, the bus.
    pub redis_url: String,
    /// The watched Redis instances named in the configuration (all of
    /// them, before sharding); empty only when `discover` is not.
    pub targets: Vec<Target>,
    /// Clusters and Sentinel sets whose nodes are watched too.
    pub discover: Vec<Discover>,
    /// The part of the fleet this process watches.
    pub shard: Shard,
    /// Watcher calls running at once, across all targets.
    pub max_calls_in_flight: usize,
    /// Prefix of the heartbeat key, `None` when it is off.
    pub heartbeat: Option<String>,
    /// Where `/metrics` and `/healthz` are served; `None` when off.
    pub metrics_addr: Option<std::net::SocketAddr>,
    /// Time between polls.
    pub poll_interval: Duration,
    /// Watcher folder.
    pub plugins: PathBuf,
    /// Compiled-artifact cache folder; `None` disables the cache.
    pub cache_dir: Option<PathBuf>,
    /// Envelope `service` field.
    pub service: String,
    /// SLOWLOG GET count.
    pub slowlog_count: u32,
    /// TCP connect timeout.
    pub connect_timeout: Duration,
    /// Reply timeout.
    pub response_timeout: Duration,
    /// How long SIGTERM waits for the outbox to drain.
    pub shutdown_grace: Duration,
    /// Outbox caps and policy.
    pub buffer: Caps,
    /// Spool folder, when envelopes must survive a crash.
    pub spool_dir: Option<PathBuf>,
    /// Breaker settings.
    pub breaker: BreakerSettings,
    /// Where alerts are sent (`[alertmanager]`); `None` when nowhere.
    pub alertmanager: Option<crate::alerts::alertmanager::settings::AlertmanagerSettings>,
    /// When host conditions fire (`[alerts]`).
    pub alerts: crate::alerts::settings::AlertsSettings,
    /// stderr log format.
    pub log_format: LogFormat,
    /// Publishing target.
    pub publish: PublishSettings,
    /// Watcher limits.
    pub limits: Limits,
    /// Per-watcher settings from `lookout.toml`, with the file they came from.
    pub watchers: BTreeMap<String, toml::Table>,
    /// The config file, for error messages and reloads.
    pub config_path: Option<PathBuf>,
    /// Flags and environment given at start, re-applied on reload.
    pub overrides: Overrides,
    /// The `[tls]` table: TLS settings of every `rediss://` URL without
    /// its own (a bus named on the command line among them).
    pub tls: Tls,
}

/// `slowlog_count`.
pub(crate) const SLOWLOG_COUNT: IntKey = IntKey::new("slowlog_count", 128, 1..=100_000);

/// `max_calls_in_flight`.
pub(crate) const MAX_CALLS_IN_FLIGHT: IntKey = IntKey::new("max_calls_in_flight", 64, 1..=100_000);

/// `poll_interval` (also `--poll-interval`, `POLL_INTERVAL`).
pub(crate) const POLL_INTERVAL: SecondsKey = SecondsKey::new("poll_interval", 5.0);

/// `connect_timeout`.
pub(crate) const CONNECT_TIMEOUT: SecondsKey = SecondsKey::new("connect_timeout", 2.0);

/// `response_timeout`.
pub(crate) const RESPONSE_TIMEOUT: SecondsKey = SecondsKey::new("response_timeout", 2.0);

/// `shutdown_grace`.
pub(crate) const SHUTDOWN_GRACE: SecondsKey = SecondsKey::new("shutdown_grace", 5.0);

impl Settings {
    /// Resolves settings from an optional config file and overrides.
    ///
    /// # Errors
    /// A config file that cannot be read or parsed (unknown key, wrong type),
    /// or a value out of range; the message names the file and the key.
    pub fn load(config_path: Option<&Path>, overrides: Overrides) -> Result<Self> {
        let file = match config_path {
            Some(path) => parse(path, &read(path)?)?,
            None => FileConfig::default(),
        };
        Self::resolve(file, config_path, overrides)
    }

    fn resolve(file: FileConfig, path: Option<&Path>, o: Overrides) -> Result<Self> {
        let origin = Origin::new(path);
        let targets = watched(&file, &o, &origin)?;
        let discover = targets::discover::resolve(&file.discover, &file.tls, &origin)?;
        let shard = match o.shard.as_deref().or(file.shard.as_deref()) {
            Some(text) => Shard::parse(text)
                .with_context(|| format!("LOOKOUT_SHARD / --shard / {}", origin.key("shard")))?,
            None => Shard::ALL,
        };
        let max_calls_in_flight = MAX_CALLS_IN_FLIGHT.resolve(file.max_calls_in_flight, &origin)?;
        let redis_url = match (targets.first(), &file.publish.url) {
            (Some(t), _) => t.url.clone(),
            (None, Some(bus)) => bus.clone(),
            (None, None) => bail!(
                "{}: with only [[discover]] entries there is no watched Redis to publish into; \
                 set [publish] url to the bus",
                origin.key("publish.url")
            ),
        };
        let poll = o
            .poll_interval
            .or(file.poll_interval)
            .unwrap_or(POLL_INTERVAL.default);
        let poll_interval = seconds(poll).with_context(|| {
            format!(
                "POLL_INTERVAL / --poll-interval / {}",
                origin.key(POLL_INTERVAL.key)
            )
        })?;
        let connect_timeout = CONNECT_TIMEOUT.resolve(file.connect_timeout, &origin)?;
        let response_timeout = RESPONSE_TIMEOUT.resolve(file.response_timeout, &origin)?;
        let slowlog_count = SLOWLOG_COUNT.resolve(file.slowlog_count, &origin)?;
        let publish = file.publish.resolve(&redis_url, &file.tls, &origin)?;
        let limits = Limits::resolve(&file.limits, &origin.file_name())?;
        let shutdown_grace = SHUTDOWN_GRACE.resolve(file.shutdown_grace, &origin)?;
        let buffer = file.buffer.resolve(&origin)?;
        let breaker = file.breaker.resolve(&origin)?;
        let heartbeat = file.heartbeat.resolve(&origin)?;
        let alertmanager = file.alertmanager.resolve(&origin)?;
        let alerts = file.alerts.resolve(poll_interval, &origin)?;
        let metrics_addr = match o.metrics_addr.as_ref().or(file.metrics_addr.as_ref()) {
            None => None,
            Some(addr) => {
                let key = if o.metrics_addr.is_some() {
                    "--metrics-addr".to_owned()
                } else {
                    origin.key("metrics_addr")
                };
                Some(addr.parse::<std::net::SocketAddr>().map_err(|e| {
                    anyhow::anyhow!(
                        "{key}: {addr:?} is not an address to listen on ({e}); \
                         write IP:PORT, e.g. 127.0.0.1:9121"
                    )
                })?)
            }
        };
        Ok(Self {
            redis_url,
            targets,
            discover,
            shard,
            max_calls_in_flight,
            heartbeat,
            metrics_addr,
            poll_interval,
            plugins: o
                .plugins
                .clone()
                .or(file.plugins)
                .unwrap_or_else(|| PathBuf::from("./plugins")),
            cache_dir: o
                .cache_dir
                .clone()
                .or(file.cache_dir)
                .or_else(default_cache_dir),
            service: o
                .service
                .clone()
                .or(file.service)
                .unwrap_or_else(|| "redis".to_owned()),
            slowlog_count,
            connect_timeout,
            response_timeout,
            log_format: o.log_format.or(file.log_format).unwrap_or_default(),
            publish,
            shutdown_grace,
            spool_dir: file.buffer.dir,
            buffer,
            breaker,
            alertmanager,
            alerts,
            limits,
            watchers: file.watchers,
            config_path: path.map(Path::to_path_buf),
            overrides: o,
            tls: file.tls,
        })
    }
}

/// The watched Redis instances: `--redis-url` / `REDIS_URL` over
/// `[[targets]]` over `redis_url` (or its default); none with only
/// `[[discover]]` entries.
fn watched(file: &FileConfig, o: &Overrides, origin: &Origin) -> Result<Vec<Target>> {
    if o.redis_urls.is_empty() && !file.targets.is_empty() {
        if file.redis_url.is_some() {
            bail!(
                "{} and [[targets]] both name watched Redis instances; keep one",
                origin.key("redis_url")
            );
        }
        return targets::resolve(&file.targets, &file.tls, origin);
    }
    let urls = if !o.redis_urls.is_empty() {
        for url in &o.redis_urls {
            check_url(url).context("REDIS_URL / --redis-url")?;
        }
        o.redis_urls.clone()
    } else if !file.discover.is_empty() && file.redis_url.is_none() {
        Vec::new()
    } else {
        let url = file
            .redis_url
            .clone()
            .unwrap_or_else(|| DEFAULT_REDIS_URL.to_owned());
        check_url(&url).context("REDIS_URL / --redis-url / redis_url")?;
        vec![url]
    };
    let targets: Vec<Target> = urls
        .into_iter()
        .map(|url| Target {
            tls: file.tls.clone(),
            ..Target::url(url)
        })
        .collect();
    for (i, t) in targets.iter().enumerate() {
        // The `[tls]` table, named as the file's `[[targets]]` when it has
        // some (the flags replaced them).
        let key = if file.targets.is_empty() {
            "tls".to_owned()
        } else {
            format!("targets[{i}].tls")
        };
        t.tls.check(&t.url).with_context(|| origin.key(&key))?;
    }
    Ok(targets)
}

/// The config file's text.
fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("reading config file {}", path.display()))
}

/// The config file's text parsed; an unknown key or a wrong type is an
/// error naming the file.
fn parse(path: &Path, text: &str) -> Result<FileConfig> {
    toml::from_str::<FileConfig>(text).map_err(|e| {
        anyhow::anyhow!(
            "config file {}: {}",
            path.display(),
            e.to_string().trim_end()
        )
    })
}

fn default_cache_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("XDG_CACHE_HOME").filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(dir).join("lookout"));
    }
    std::env::var_os("HOME")
        .filter(|d| !d.is_empty())
        .map(|home| PathBuf::from(home).join(".cache").join("lookout"))
}

#[cfg(test)]
mod tests;

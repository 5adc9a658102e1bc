//! Daemon settings: the optional `lookout.toml`, environment variables and
//! command-line flags merged into one [`Settings`], flags over env over file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde::Deserialize;

use crate::delivery::breaker::BreakerSettings;
use crate::delivery::outbox::{Caps, DropPolicy};
use crate::redis::allow::Allow;
pub use crate::redis::endpoint::{Auth, Endpoint};
use crate::redis::redact::redact_url;
pub use crate::redis::tls::Tls;
use crate::sandbox::limits::{Limits, LimitsFile};
pub use crate::targets::Target;
use crate::targets::{Discover, Shard, Source};

/// Watched Redis when nothing else is configured.
pub const DEFAULT_REDIS_URL: &str = "redis://127.0.0.1:6379";

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
}

/// `[heartbeat]` table of `lookout.toml`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeartbeatFile {
    /// Write the key (default true).
    pub enabled: Option<bool>,
    /// Key prefix, `lookout:heartbeat` by default.
    pub prefix: Option<String>,
}

/// One `[[discover]]` table of `lookout.toml`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiscoverFile {
    /// A node of a Redis Cluster.
    pub cluster: Option<String>,
    /// A sentinel (with `master`).
    pub sentinel: Option<String>,
    /// The master's name in Sentinel.
    pub master: Option<String>,
    /// Seconds between discoveries, 30 by default.
    pub refresh_s: Option<f64>,
    /// Labels of every node found.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// The watchers that run on the nodes found; all by default.
    pub watchers: Option<Vec<String>>,
    /// TLS settings of this entry and the nodes it finds, over `[tls]`.
    pub tls: Option<Tls>,
    /// Where found nodes may be: networks, addresses, host names and
    /// `*.suffix` patterns; by default the seed's host, names under its
    /// parent domain and the loopback, private and link-local ranges.
    pub allow: Option<Vec<String>>,
    /// Most nodes watched, 1000 by default.
    pub max_nodes: Option<i64>,
    /// ACL user of the seed or sentinel (and of a cluster's nodes).
    pub username: Option<String>,
    /// File holding the password of the seed or sentinel (and of a
    /// cluster's nodes).
    pub password_file: Option<PathBuf>,
    /// ACL user of the nodes a sentinel names.
    pub node_username: Option<String>,
    /// File holding the password of the nodes a sentinel names.
    pub node_password_file: Option<PathBuf>,
}

/// One `[[targets]]` table of `lookout.toml`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetFile {
    /// Redis URL.
    pub url: String,
    /// A name for messages; the `host:port` by default.
    pub name: Option<String>,
    /// Labels copied into every envelope about this target.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// The watchers that run on it (file names); all by default.
    pub watchers: Option<Vec<String>>,
    /// TLS settings of this target, over `[tls]`.
    pub tls: Option<Tls>,
    /// ACL user, when the URL names none.
    pub username: Option<String>,
    /// File holding the password, instead of the URL.
    pub password_file: Option<PathBuf>,
}

/// `[buffer]` table of `lookout.toml`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BufferFile {
    /// Most envelopes held while the bus is unreachable.
    pub max_envelopes: Option<i64>,
    /// Most MiB of envelopes held.
    pub max_mib: Option<i64>,
    /// `drop_oldest` (default) or `drop_newest` when full.
    pub policy: Option<DropPolicy>,
    /// Folder of the durable spool; none by default.
    pub dir: Option<PathBuf>,
}

/// `[breaker]` table of `lookout.toml`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BreakerFile {
    /// Consecutive failed publishes that open the breaker.
    pub failures: Option<i64>,
    /// Seconds the breaker stays open before a probe.
    pub recovery_s: Option<f64>,
}

/// `[publish]` table of `lookout.toml`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublishFile {
    /// Redis that receives envelopes; defaults to the watched one.
    pub url: Option<String>,
    /// Pub/sub channel prefix; the level is appended after a dot.
    pub channel_prefix: Option<String>,
    /// Stream that receives every envelope.
    pub stream_key: Option<String>,
    /// Approximate cap on the stream length (`MAXLEN ~`).
    pub stream_maxlen: Option<i64>,
    /// TLS settings of the bus, over `[tls]`.
    pub tls: Option<Tls>,
    /// ACL user of the bus, when the URL names none.
    pub username: Option<String>,
    /// File holding the bus's password, instead of the URL.
    pub password_file: Option<PathBuf>,
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
}

/// Where envelopes go.
#[derive(Debug, Clone)]
pub struct PublishSettings {
    /// Redis URL of the bus (the watched Redis unless `publish.url` is set).
    pub url: String,
    /// Channel prefix, `logs.redis` by default.
    pub channel_prefix: String,
    /// Stream key, `logs:stream:redis` by default.
    pub stream_key: String,
    /// `MAXLEN ~` of the stream, 10000 by default.
    pub stream_maxlen: u64,
    /// TLS settings of the bus (`[publish] tls` over `[tls]`).
    pub tls: Tls,
    /// Credentials of the bus beside its URL (`[publish] username`,
    /// `password_file`).
    pub auth: Auth,
}

impl PublishSettings {
    /// How to dial the bus.
    #[must_use]
    pub fn endpoint(&self) -> Endpoint {
        Endpoint::configured(&self.url, &self.tls, &self.auth)
    }
}

/// Everything the daemon needs, resolved and validated.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The first watched Redis URL (may hold a password: log it through
    /// [`redact_url`]); the bus by default. With only `[[discover]]`
    /// entries, the bus.
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

impl Settings {
    /// Resolves settings from an optional config file and overrides.
    ///
    /// # Errors
    /// A config file that cannot be read or parsed (unknown key, wrong type),
    /// or a value out of range; the message names the file and the key.
    pub fn load(config_path: Option<&Path>, overrides: Overrides) -> Result<Self> {
        let file = match config_path {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading config file {}", path.display()))?;
                toml::from_str::<FileConfig>(&text).map_err(|e| {
                    anyhow::anyhow!(
                        "config file {}: {}",
                        path.display(),
                        e.to_string().trim_end()
                    )
                })?
            }
            None => FileConfig::default(),
        };
        Self::resolve(file, config_path, overrides)
    }

    fn resolve(file: FileConfig, path: Option<&Path>, o: Overrides) -> Result<Self> {
        let overrides = o.clone();
        let origin = |key: &str| match path {
            Some(p) => format!("key `{key}` in {}", p.display()),
            None => format!("`{key}`"),
        };
        let targets = if !o.redis_urls.is_empty() {
            for url in &o.redis_urls {
                check_url(url).context("REDIS_URL / --redis-url")?;
            }
            o.redis_urls
                .iter()
                .map(|url| Target {
                    tls: file.tls.clone(),
                    ..Target::url(url.clone())
                })
                .collect()
        } else if !file.targets.is_empty() {
            if file.redis_url.is_some() {
                bail!(
                    "{} and [[targets]] both name watched Redis instances; keep one",
                    origin("redis_url")
                );
            }
            let mut targets: Vec<Target> = Vec::new();
            for (i, t) in file.targets.iter().enumerate() {
                let key = format!("targets[{i}]");
                check_url(&t.url).with_context(|| origin(&format!("{key}.url")))?;
                if let Some(name) = &t.name
                    && targets.iter().any(|o| o.name.as_ref() == Some(name))
                {
                    bail!(
                        "{}: the name `{name}` is used twice",
                        origin(&format!("{key}.name"))
                    );
                }
                if targets.iter().any(|o| o.url == t.url) {
                    bail!(
                        "{}: `{}` is already a target",
                        origin(&format!("{key}.url")),
                        redact_url(&t.url)
                    );
                }
                if let Some(k) = t.labels.keys().find(|k| k.is_empty()) {
                    bail!(
                        "{}: a label has an empty name `{k}`",
                        origin(&format!("{key}.labels"))
                    );
                }
                if let Some(w) = &t.watchers
                    && let Some(bad) = w.iter().find(|n| n.is_empty())
                {
                    bail!(
                        "{}: `{bad}` is not a watcher name",
                        origin(&format!("{key}.watchers"))
                    );
                }
                if t.tls.is_some() {
                    own_tls_needs_rediss(&t.url).with_context(|| origin(&format!("{key}.tls")))?;
                }
                let tls = t
                    .tls
                    .as_ref()
                    .map_or_else(|| file.tls.clone(), |own| own.over(&file.tls));
                let auth = Auth {
                    username: t.username.clone(),
                    password_file: t.password_file.clone(),
                };
                auth.check(&t.url, &key).with_context(|| origin(&key))?;
                targets.push(Target {
                    url: t.url.clone(),
                    name: t.name.clone(),
                    labels: t.labels.clone(),
                    watchers: t.watchers.clone(),
                    tls,
                    auth,
                    allow: None,
                });
            }
            targets
        } else if !file.discover.is_empty() && file.redis_url.is_none() {
            Vec::new()
        } else {
            let url = file
                .redis_url
                .clone()
                .unwrap_or_else(|| DEFAULT_REDIS_URL.to_owned());
            check_url(&url).context("REDIS_URL / --redis-url / redis_url")?;
            vec![Target {
                tls: file.tls.clone(),
                ..Target::url(url)
            }]
        };
        for (i, t) in targets.iter().enumerate() {
            let key = if file.targets.is_empty() {
                "tls".to_owned()
            } else {
                format!("targets[{i}].tls")
            };
            t.tls.check(&t.url).with_context(|| origin(&key))?;
        }
        let discover = file
            .discover
            .iter()
            .enumerate()
            .map(|(i, d)| {
                discover_entry(d, &file.tls, &format!("discover[{i}]"), &|key| {
                    origin(&format!("discover[{i}]{key}"))
                })
            })
            .collect::<Result<Vec<_>>>()?;
        for (i, d) in discover.iter().enumerate() {
            if discover[..i]
                .iter()
                .any(|o| o.url == d.url && o.source == d.source)
            {
                bail!(
                    "{}: {} is already discovered by an earlier entry",
                    origin(&format!("discover[{i}]")),
                    d.describe()
                );
            }
        }
        let shard = match o.shard.as_deref().or(file.shard.as_deref()) {
            Some(text) => Shard::parse(text)
                .with_context(|| format!("LOOKOUT_SHARD / --shard / {}", origin("shard")))?,
            None => Shard::ALL,
        };
        let max_calls_in_flight = usize::try_from(
            integer(file.max_calls_in_flight, 64, INT_RANGES[5])
                .with_context(|| origin("max_calls_in_flight"))?,
        )?;
        let redis_url = match (targets.first(), &file.publish.url) {
            (Some(t), _) => t.url.clone(),
            (None, Some(bus)) => bus.clone(),
            (None, None) => bail!(
                "{}: with only [[discover]] entries there is no watched Redis to publish into; \
                 set [publish] url to the bus",
                origin("publish.url")
            ),
        };
        let poll = o.poll_interval.or(file.poll_interval).unwrap_or(5.0);
        let poll_interval = seconds(poll).with_context(|| {
            format!(
                "POLL_INTERVAL / --poll-interval / {}",
                origin("poll_interval")
            )
        })?;
        let connect_timeout = seconds(file.connect_timeout.unwrap_or(2.0))
            .with_context(|| origin("connect_timeout"))?;
        let response_timeout = seconds(file.response_timeout.unwrap_or(2.0))
            .with_context(|| origin("response_timeout"))?;
        let slowlog_count = u32::try_from(
            integer(file.slowlog_count, 128, INT_RANGES[0])
                .with_context(|| origin("slowlog_count"))?,
        )?;
        let publish_url = file.publish.url.unwrap_or_else(|| redis_url.clone());
        check_url(&publish_url).with_context(|| origin("publish.url"))?;
        let file_name = path.map_or_else(|| "config".to_owned(), |p| p.display().to_string());
        let limits = Limits::resolve(&file.limits, &file_name)?;
        let shutdown_grace = seconds(file.shutdown_grace.unwrap_or(5.0))
            .with_context(|| origin("shutdown_grace"))?;
        let envelopes = integer(file.buffer.max_envelopes, 10_000, INT_RANGES[1])
            .with_context(|| origin("buffer.max_envelopes"))?;
        let mib = integer(file.buffer.max_mib, 16, INT_RANGES[2])
            .with_context(|| origin("buffer.max_mib"))?;
        let buffer = Caps {
            envelopes: usize::try_from(envelopes)?,
            bytes: usize::try_from(mib)?.saturating_mul(1 << 20),
            policy: file.buffer.policy.unwrap_or_default(),
        };
        let failures = integer(file.breaker.failures, 3, INT_RANGES[3])
            .with_context(|| origin("breaker.failures"))?;
        let stream_maxlen = integer(file.publish.stream_maxlen, 10_000, INT_RANGES[4])
            .with_context(|| origin("publish.stream_maxlen"))?;
        let breaker = BreakerSettings {
            failures: u32::try_from(failures)?,
            recovery: seconds(file.breaker.recovery_s.unwrap_or(2.0))
                .with_context(|| origin("breaker.recovery_s"))?,
        };
        if file.publish.tls.is_some() {
            own_tls_needs_rediss(&publish_url).with_context(|| origin("publish.tls"))?;
        }
        let publish_tls = file
            .publish
            .tls
            .as_ref()
            .map_or_else(|| file.tls.clone(), |own| own.over(&file.tls));
        publish_tls
            .check(&publish_url)
            .with_context(|| origin("publish.tls"))?;
        let publish_auth = Auth {
            username: file.publish.username.clone(),
            password_file: file.publish.password_file.clone(),
        };
        publish_auth
            .check(&publish_url, "publish")
            .with_context(|| origin("publish"))?;
        let publish = PublishSettings {
            url: publish_url,
            channel_prefix: file
                .publish
                .channel_prefix
                .unwrap_or_else(|| "logs.redis".to_owned()),
            stream_key: file
                .publish
                .stream_key
                .unwrap_or_else(|| "logs:stream:redis".to_owned()),
            stream_maxlen: u64::try_from(stream_maxlen)?,
            tls: publish_tls,
            auth: publish_auth,
        };
        let heartbeat = match (file.heartbeat.enabled, file.heartbeat.prefix) {
            (Some(false), _) => None,
            (_, Some(prefix)) if prefix.trim().is_empty() => bail!(
                "{}: an empty prefix; set a key prefix or `enabled = false`",
                origin("heartbeat.prefix")
            ),
            (_, prefix) => Some(prefix.unwrap_or_else(|| "lookout:heartbeat".to_owned())),
        };
        let metrics_addr = match o.metrics_addr.as_ref().or(file.metrics_addr.as_ref()) {
            None => None,
            Some(addr) => {
                let key = if o.metrics_addr.is_some() {
                    "--metrics-addr".to_owned()
                } else {
                    origin("metrics_addr")
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
                .or(file.plugins)
                .unwrap_or_else(|| PathBuf::from("./plugins")),
            cache_dir: o.cache_dir.or(file.cache_dir).or_else(default_cache_dir),
            service: o
                .service
                .or(file.service)
                .unwrap_or_else(|| "redis".to_owned()),
            slowlog_count,
            connect_timeout,
            response_timeout,
            log_format: o.log_format.or(file.log_format).unwrap_or_default(),
            publish,
            shutdown_grace,
            spool_dir: file.buffer.dir.clone(),
            buffer,
            breaker,
            limits,
            watchers: file.watchers,
            config_path: path.map(Path::to_path_buf),
            overrides,
            tls: file.tls,
        })
    }
}

/// Parses a seconds value from the environment or a flag.
///
/// # Errors
/// Text that is not a positive, finite number.
pub fn parse_seconds(text: &str) -> Result<f64, String> {
    let value: f64 = text
        .trim()
        .parse()
        .map_err(|_| format!("`{text}` is not a number of seconds"))?;
    seconds(value).map_err(|e| e.to_string())?;
    Ok(value)
}

/// Every seconds setting (`poll_interval`, `connect_timeout`,
/// `response_timeout`, `shutdown_grace`, `breaker.recovery_s`, and
/// `POLL_INTERVAL`, `--poll-interval`, `record --every`) is at least this
/// (one millisecond: less would round to nothing)...
pub const MIN_SECONDS: f64 = 0.001;
/// ...and below this: one day.
pub const MAX_SECONDS: f64 = 86_400.0;

/// Accepted range of every integer key, inclusive; the README's
/// configuration section documents the same table.
pub const INT_RANGES: [(&str, i64, i64); 6] = [
    ("slowlog_count", 1, 100_000),
    ("buffer.max_envelopes", 1, 10_000_000),
    ("buffer.max_mib", 1, 16_384),
    ("breaker.failures", 1, 1000),
    ("publish.stream_maxlen", 1, 1_000_000_000),
    ("max_calls_in_flight", 1, 100_000),
];

/// Default `refresh_s` of a `[[discover]]` entry.
pub const DEFAULT_REFRESH_S: f64 = 30.0;

/// Checks one `[[discover]]` table; `key(".refresh_s")` names one of
/// its keys for messages (`key("")` the table).
fn discover_entry(
    d: &DiscoverFile,
    tls: &Tls,
    name: &str,
    key: &dyn Fn(&str) -> String,
) -> Result<Discover> {
    let at = key("");
    let (url, source) = match (&d.cluster, &d.sentinel, &d.master) {
        (Some(url), None, None) => (url, Source::Cluster),
        (None, Some(url), Some(master)) if !master.trim().is_empty() => (
            url,
            Source::Sentinel {
                master: master.clone(),
            },
        ),
        (None, Some(_), _) => {
            bail!("{at}: a sentinel entry needs `master`, the name Sentinel knows the master by")
        }
        (Some(_), None, Some(_)) => {
            bail!("{at}: `master` is for Sentinel; a cluster entry has only `cluster`")
        }
        (Some(_), Some(_), _) => {
            bail!("{at}: `cluster` and `sentinel` both given; one entry discovers one set")
        }
        (None, None, _) => bail!(
            "{at}: needs `cluster = \"redis://NODE:PORT\"` or \
             `sentinel = \"redis://HOST:26379\"` with `master = \"NAME\"`"
        ),
    };
    let url_key = if matches!(source, Source::Cluster) {
        ".cluster"
    } else {
        ".sentinel"
    };
    check_url(url).with_context(|| key(url_key))?;
    let refresh =
        seconds(d.refresh_s.unwrap_or(DEFAULT_REFRESH_S)).with_context(|| key(".refresh_s"))?;
    if let Some(k) = d.labels.keys().find(|k| k.is_empty()) {
        bail!("{}: a label has an empty name `{k}`", key(".labels"));
    }
    if d.tls.is_some() {
        own_tls_needs_rediss(url).with_context(|| key(".tls"))?;
    }
    let tls = d
        .tls
        .as_ref()
        .map_or_else(|| tls.clone(), |own| own.over(tls));
    tls.check(url).with_context(|| key(".tls"))?;
    let auth = Auth {
        username: d.username.clone(),
        password_file: d.password_file.clone(),
    };
    auth.check(url, name).with_context(|| key(""))?;
    let node_auth = Auth {
        username: d.node_username.clone(),
        password_file: d.node_password_file.clone(),
    };
    if !node_auth.is_empty() {
        if source == Source::Cluster {
            bail!(
                "{}: `node_username` and `node_password_file` are for the nodes a sentinel \
                 names; a cluster's nodes take the entry's own credentials",
                key("")
            );
        }
        node_auth
            .password(&format!("{name}.node_password_file"))
            .with_context(|| key(""))?;
    }
    let seed_host = url::Url::parse(url)
        .ok()
        .and_then(|u| u.host_str().map(str::to_owned))
        .unwrap_or_default();
    let allow = match &d.allow {
        Some(entries) => Allow::parse(entries, &seed_host).with_context(|| key(".allow"))?,
        None => Allow::default_for(&seed_host),
    };
    let max_nodes =
        integer(d.max_nodes, 1000, ("max_nodes", 1, 100_000)).with_context(|| key(".max_nodes"))?;
    Ok(Discover {
        source,
        url: url.clone(),
        refresh,
        labels: d.labels.clone(),
        watchers: d.watchers.clone(),
        tls,
        auth,
        node_auth,
        allow: std::sync::Arc::new(allow),
        max_nodes: usize::try_from(max_nodes)?,
    })
}

/// A `tls` table of a target, discover entry or the bus applies only to a
/// `rediss://` URL: on another it would be silently ignored.
fn own_tls_needs_rediss(url: &str) -> Result<()> {
    if url.starts_with("rediss:") {
        return Ok(());
    }
    bail!(
        "a `tls` table is set but the URL `{}` is not rediss://, so it would not be used; \
         write rediss:// to connect over TLS, or remove the table",
        redact_url(url)
    )
}

fn seconds(value: f64) -> Result<Duration> {
    if !(value.is_finite() && (MIN_SECONDS..MAX_SECONDS).contains(&value)) {
        bail!(
            "{value} is out of range: expected seconds from {MIN_SECONDS} to below {MAX_SECONDS} \
             (one day)"
        );
    }
    Ok(Duration::from_secs_f64(value))
}

/// `value` (or `default`) when it lies in `range`; the caller adds the key.
fn integer(value: Option<i64>, default: i64, range: (&str, i64, i64)) -> Result<i64> {
    let (_, min, max) = range;
    let v = value.unwrap_or(default);
    if v < min || v > max {
        bail!("{v} is out of range: expected an integer from {min} to {max}");
    }
    Ok(v)
}

/// Checks that a Redis URL parses, without echoing its password.
///
/// # Errors
/// The URL is malformed or not a `redis://`, `rediss://` or `unix://` URL.
pub fn check_url(url: &str) -> Result<()> {
    let shown = redact_url(url);
    let parsed =
        url::Url::parse(url).map_err(|e| anyhow::anyhow!("bad Redis URL `{shown}`: {e}"))?;
    match parsed.scheme() {
        "redis" | "rediss" | "redis+unix" | "unix" => {}
        other => bail!(
            "bad Redis URL `{shown}`: scheme `{other}` is not redis://, rediss:// (TLS), \
             redis+unix:// or unix://"
        ),
    }
    redis::Client::open(url).map_err(|e| {
        anyhow::anyhow!(
            "bad Redis URL `{shown}`: {}",
            crate::redis::redact::redact_text(&e.to_string(), url)
        )
    })?;
    Ok(())
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
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Settings> {
        let file: FileConfig = toml::from_str(text)?;
        Settings::resolve(file, Some(Path::new("lookout.toml")), Overrides::default())
    }

    #[test]
    fn defaults_match_the_shell_sidecar() {
        let s = parse("").unwrap();
        assert_eq!(s.redis_url, DEFAULT_REDIS_URL);
        assert_eq!(s.poll_interval, Duration::from_secs(5));
        assert_eq!(s.publish.channel_prefix, "logs.redis");
        assert_eq!(s.publish.stream_key, "logs:stream:redis");
        assert_eq!(s.publish.stream_maxlen, 10_000);
        assert_eq!(s.publish.url, s.redis_url);
        assert_eq!(s.slowlog_count, 128);
        assert_eq!(s.service, "redis");
    }

    #[test]
    fn unknown_key_is_named() {
        let err = toml::from_str::<FileConfig>("pol_interval = 3").unwrap_err();
        assert!(err.to_string().contains("pol_interval"), "{err}");
        let err = toml::from_str::<FileConfig>("[publish]\nstream = 'x'").unwrap_err();
        assert!(err.to_string().contains("stream"), "{err}");
    }

    #[test]
    fn metrics_addr_is_checked_and_the_flag_wins() {
        let file: FileConfig = toml::from_str("metrics_addr = '127.0.0.1:9121'").unwrap();
        let s = Settings::resolve(file, None, Overrides::default()).unwrap();
        assert_eq!(s.metrics_addr, Some("127.0.0.1:9121".parse().unwrap()));
        let file: FileConfig = toml::from_str("metrics_addr = 'localhost'").unwrap();
        let err = format!(
            "{:#}",
            Settings::resolve(file, Some(Path::new("l.toml")), Overrides::default()).unwrap_err()
        );
        assert!(
            err.contains("`metrics_addr` in l.toml") && err.contains("IP:PORT"),
            "{err}"
        );
        let o = Overrides {
            metrics_addr: Some("[::1]:9".to_owned()),
            ..Overrides::default()
        };
        let s = Settings::resolve(FileConfig::default(), None, o).unwrap();
        assert_eq!(s.metrics_addr, Some("[::1]:9".parse().unwrap()));
        assert_eq!(
            Settings::resolve(FileConfig::default(), None, Overrides::default())
                .unwrap()
                .metrics_addr,
            None
        );
    }

    #[test]
    fn overrides_win_over_file() {
        let file: FileConfig =
            toml::from_str("poll_interval = 9\nredis_url = 'redis://10.0.0.1:1'").unwrap();
        let o = Overrides {
            poll_interval: Some(0.25),
            ..Overrides::default()
        };
        let s = Settings::resolve(file, None, o).unwrap();
        assert_eq!(s.poll_interval, Duration::from_millis(250));
        assert_eq!(s.redis_url, "redis://10.0.0.1:1");
    }

    #[test]
    fn bad_values_are_rejected_with_the_key() {
        let err = parse("poll_interval = -1").unwrap_err();
        assert!(format!("{err:#}").contains("poll_interval"), "{err:#}");
        let err = parse("redis_url = 'http://x'").unwrap_err();
        assert!(format!("{err:#}").contains("scheme `http`"), "{err:#}");
        let err = parse("[publish]\nurl = 'redis://:hunter2@[bad'").unwrap_err();
        let text = format!("{err:#}");
        assert!(text.contains("publish.url"), "{text}");
        assert!(!text.contains("hunter2"), "{text}");
    }

    #[test]
    fn seconds_parse() {
        assert_eq!(parse_seconds("0.5").unwrap(), 0.5);
        assert!(parse_seconds("0").is_err());
        assert!(parse_seconds("abc").is_err());
        assert!(parse_seconds("1e300").is_err());
        assert!(parse_seconds("NaN").is_err());
    }

    #[test]
    fn every_integer_key_is_range_checked_by_name() {
        for (key, min, max) in INT_RANGES {
            let (table, leaf) = key.split_once('.').map_or(("", key), |(t, l)| (t, l));
            for bad in [min - 1, max + 1, i64::MIN, i64::MAX] {
                let text = if table.is_empty() {
                    format!("{leaf} = {bad}")
                } else {
                    format!("[{table}]\n{leaf} = {bad}")
                };
                let err = format!("{:#}", parse(&text).unwrap_err());
                assert!(
                    err.contains(key) && err.contains(&format!("from {min} to {max}")),
                    "{text}: {err}"
                );
            }
        }
        for key in ["connect_timeout", "response_timeout", "shutdown_grace"] {
            let err = format!("{:#}", parse(&format!("{key} = 1e300")).unwrap_err());
            assert!(err.contains(key) && err.contains("below 86400"), "{err}");
        }
        let err = format!("{:#}", parse("[breaker]\nrecovery_s = nan").unwrap_err());
        assert!(err.contains("breaker.recovery_s"), "{err}");
        let o = Overrides {
            poll_interval: Some(f64::INFINITY),
            ..Overrides::default()
        };
        let err = format!(
            "{:#}",
            Settings::resolve(FileConfig::default(), None, o).unwrap_err()
        );
        assert!(
            err.contains("POLL_INTERVAL") && err.contains("below 86400"),
            "{err}"
        );
    }

    #[test]
    fn discover_entries_are_checked() {
        let s = parse(
            "[publish]\nurl = 'redis://bus:6379'\n\
             [[discover]]\ncluster = 'redis://:pw@10.0.0.1:7000'\nlabels = { c = 'a' }\n\
             [[discover]]\nsentinel = 'redis://10.0.0.9:26379'\nmaster = 'm'\nrefresh_s = 5",
        )
        .unwrap();
        assert!(s.targets.is_empty());
        assert_eq!(s.redis_url, "redis://bus:6379");
        assert_eq!(s.discover.len(), 2);
        assert_eq!(s.discover[0].source, Source::Cluster);
        assert_eq!(s.discover[0].refresh, Duration::from_secs(30));
        assert_eq!(s.discover[0].describe(), "cluster 10.0.0.1:7000");
        assert_eq!(s.discover[1].refresh, Duration::from_secs(5));
        assert_eq!(s.discover[1].describe(), "sentinel 10.0.0.9:26379 master m");
        let cases = [
            ("[[discover]]\ncluster = 'redis://a:1'", "set [publish] url"),
            (
                "[publish]\nurl = 'redis://b:1'\n[[discover]]\nsentinel = 'redis://a:1'",
                "needs `master`",
            ),
            (
                "[publish]\nurl = 'redis://b:1'\n[[discover]]\ncluster = 'redis://a:1'\nmaster = 'm'",
                "`master` is for Sentinel",
            ),
            (
                "[publish]\nurl = 'redis://b:1'\n[[discover]]\nrefresh_s = 3",
                "needs `cluster",
            ),
            (
                "[publish]\nurl = 'redis://b:1'\n[[discover]]\ncluster = 'http://a:1'",
                "discover[0].cluster",
            ),
            (
                "[publish]\nurl = 'redis://b:1'\n[[discover]]\ncluster = 'redis://a:1'\nrefresh_s = 0",
                "discover[0].refresh_s",
            ),
            (
                "[publish]\nurl = 'redis://b:1'\n[[discover]]\ncluster = 'redis://a:1'\n\
                 [[discover]]\ncluster = 'redis://a:1'",
                "already discovered",
            ),
            ("shard = '2/2'", "expected I/N"),
            ("max_calls_in_flight = 0", "max_calls_in_flight"),
        ];
        for (text, want) in cases {
            let err = format!("{:#}", parse(text).unwrap_err());
            assert!(err.contains(want), "{text}: {err}");
        }
    }

    #[test]
    fn credentials_tls_and_allow_are_checked_by_key() {
        let dir = tempfile::tempdir().unwrap();
        let pw = dir.path().join("pw");
        std::fs::write(&pw, "s3cret\n").unwrap();
        let pw = pw.display();
        let s = parse(&format!(
            "[[targets]]\nurl = 'redis://10.0.0.1:6379'\nusername = 'ops'\npassword_file = '{pw}'\n\
             [publish]\nurl = 'redis://bus:6379'\npassword_file = '{pw}'\n\
             [[discover]]\nsentinel = 'redis://10.0.0.9:26379'\nmaster = 'm'\n\
             node_username = 'ops'\nnode_password_file = '{pw}'\n\
             allow = ['10.0.0.0/8', '*.redis.internal']\nmax_nodes = 5"
        ))
        .unwrap();
        assert_eq!(s.targets[0].auth.username.as_deref(), Some("ops"));
        assert!(s.publish.auth.password_file.is_some());
        let d = &s.discover[0];
        assert_eq!(d.max_nodes, 5);
        assert!(d.auth.is_empty() && !d.node_auth.is_empty());
        assert!(d.allow.host("a.redis.internal") && !d.allow.host("192.168.1.1"));
        let defaults = parse(
            "[publish]\nurl = 'redis://b:1'\n[[discover]]\ncluster = 'redis://n1.c.example.com:7000'",
        )
        .unwrap();
        assert_eq!(defaults.discover[0].max_nodes, 1000);
        assert!(defaults.discover[0].allow.host("n2.c.example.com"));
        assert!(!defaults.discover[0].allow.host("8.8.8.8"));
        let cases = [
            (
                "[[targets]]\nurl = 'redis://h:1'\ntls = { insecure = true }".to_owned(),
                "targets[0].tls",
            ),
            (
                "[publish]\nurl = 'redis://h:1'\ntls = { insecure = true }".to_owned(),
                "publish.tls",
            ),
            (
                "[publish]\nurl = 'redis://b:1'\n[[discover]]\ncluster = 'redis://a:1'\n\
                 tls = { insecure = true }"
                    .to_owned(),
                "discover[0].tls",
            ),
            (
                format!("[[targets]]\nurl = 'redis://:pw@h:1'\npassword_file = '{pw}'"),
                "targets[0].password_file",
            ),
            (
                "[[targets]]\nurl = 'redis://h:1'\npassword_file = '/nonexistent/pw'".to_owned(),
                "/nonexistent/pw",
            ),
            (
                format!(
                    "[publish]\nurl = 'redis://b:1'\n[[discover]]\ncluster = 'redis://a:1'\n\
                     node_password_file = '{pw}'"
                ),
                "for the nodes a sentinel names",
            ),
            (
                "[publish]\nurl = 'redis://b:1'\n[[discover]]\ncluster = 'redis://a:1'\n\
                 allow = ['10.0.0.0/33']"
                    .to_owned(),
                "discover[0].allow",
            ),
            (
                "[publish]\nurl = 'redis://b:1'\n[[discover]]\ncluster = 'redis://a:1'\n\
                 max_nodes = 0"
                    .to_owned(),
                "discover[0].max_nodes",
            ),
        ];
        for (text, want) in cases {
            let err = format!("{:#}", parse(&text).unwrap_err());
            assert!(err.contains(want), "{text}: {err}");
            assert!(!err.contains("s3cret"), "{err}");
        }
        // The global [tls] applies to rediss:// URLs only and is no error
        // beside redis:// ones.
        parse("[tls]\ninsecure = true\n[[targets]]\nurl = 'redis://h:1'").unwrap();
    }

    #[test]
    fn shard_from_file_or_flag() {
        assert_eq!(parse("").unwrap().shard, Shard::ALL);
        assert_eq!(
            parse("shard = '1/3'").unwrap().shard,
            Shard { index: 1, count: 3 }
        );
        let file: FileConfig = toml::from_str("shard = '1/3'").unwrap();
        let o = Overrides {
            shard: Some("0/2".to_owned()),
            ..Overrides::default()
        };
        let s = Settings::resolve(file, None, o).unwrap();
        assert_eq!(s.shard, Shard { index: 0, count: 2 });
        assert_eq!(s.max_calls_in_flight, 64);
    }

    mod random {
        use std::collections::BTreeMap;
        use std::time::Instant;

        use proptest::prelude::*;

        use super::super::*;

        /// Every numeric key of `lookout.toml`, as `table.key`.
        const KEYS: [&str; 22] = [
            "poll_interval",
            "slowlog_count",
            "connect_timeout",
            "response_timeout",
            "shutdown_grace",
            "buffer.max_envelopes",
            "buffer.max_mib",
            "breaker.failures",
            "breaker.recovery_s",
            "publish.stream_maxlen",
            "limits.call_deadline_ms",
            "limits.memory_mib",
            "limits.max_events",
            "limits.max_msg_bytes",
            "limits.max_fields",
            "limits.max_field_bytes",
            "limits.max_wasm_mib",
            "limits.quarantine_after",
            "limits.every_polls",
            "limits.interval_s",
            "limits.watchers.w.memory_mib",
            "limits.watchers.w.interval_s",
        ];

        fn float(x: f64) -> String {
            if x.is_nan() {
                "nan".to_owned()
            } else if x.is_infinite() {
                if x > 0.0 { "inf" } else { "-inf" }.to_owned()
            } else {
                format!("{x:?}")
            }
        }

        fn value() -> impl Strategy<Value = String> {
            prop_oneof![
                any::<i64>().prop_map(|n| n.to_string()),
                (-3i64..200_000).prop_map(|n| n.to_string()),
                any::<f64>().prop_map(float),
                (-1.0f64..100_000.0).prop_map(float),
                Just("1e300".to_owned()),
                Just("17592186044416".to_owned()),
                "[a-z0-9]{0,4}".prop_map(|s| format!("'{s}'")),
                Just("true".to_owned()),
            ]
        }

        fn render(pairs: &[(usize, String)]) -> String {
            let mut tables: BTreeMap<&str, BTreeMap<&str, &str>> = BTreeMap::new();
            for (i, v) in pairs {
                let key = KEYS[*i];
                let (table, leaf) = key.rsplit_once('.').unwrap_or(("", key));
                tables.entry(table).or_default().insert(leaf, v);
            }
            let mut text = String::new();
            for (table, keys) in tables {
                if !table.is_empty() {
                    text.push_str(&format!("[{table}]\n"));
                }
                for (k, v) in keys {
                    text.push_str(&format!("{k} = {v}\n"));
                }
            }
            text
        }

        fn sane(s: &Settings) {
            let now = Instant::now();
            let day = Duration::from_secs(86_400);
            for d in [
                s.poll_interval,
                s.connect_timeout,
                s.response_timeout,
                s.shutdown_grace,
                s.breaker.recovery,
            ] {
                assert!(d >= Duration::from_millis(1) && d < day, "{d:?}");
            }
            assert!(s.slowlog_count >= 1 && s.buffer.envelopes >= 1 && s.buffer.bytes >= 1);
            assert!(s.breaker.failures >= 1 && s.publish.stream_maxlen >= 1);
            for l in std::iter::once(&s.limits.defaults).chain(s.limits.watchers.values()) {
                assert!(now.checked_add(l.call_deadline).is_some());
                assert!(l.memory_bytes >= 1 << 20 && l.memory_bytes <= 4 << 30);
                assert!(l.max_wasm_bytes >= 1 << 20 && l.quarantine_after >= 1);
                if let Some(crate::sandbox::limits::Cadence::Interval(d)) = l.cadence {
                    assert!(d > Duration::ZERO && now.checked_add(d).is_some());
                }
            }
        }

        proptest! {
            /// Random values for every numeric key, through the file parser
            /// and the flag/env override: an error naming a key, or a
            /// config whose every duration and size is usable; never a
            /// panic.
            #[test]
            fn random_values_give_an_error_or_a_valid_config(
                pairs in proptest::collection::vec((0..KEYS.len(), value()), 0..8),
                poll in proptest::option::of(any::<f64>()),
            ) {
                let text = render(&pairs);
                let dir = tempfile::tempdir().unwrap();
                let path = dir.path().join("lookout.toml");
                std::fs::write(&path, &text).unwrap();
                let o = Overrides { poll_interval: poll, ..Overrides::default() };
                match Settings::load(Some(&path), o) {
                    Ok(s) => sane(&s),
                    Err(e) => {
                        let e = format!("{e:#}");
                        prop_assert!(
                            e.contains("lookout.toml") || e.contains("POLL_INTERVAL"),
                            "{text}: {e}"
                        );
                    }
                }
            }

            /// Any text given to a seconds flag or variable is refused or
            /// in range.
            #[test]
            fn seconds_flags_never_panic(text in "\\PC{0,12}", x in any::<f64>()) {
                for t in [text, float(x), format!("{x}")] {
                    if let Ok(v) = parse_seconds(&t) {
                        prop_assert!((MIN_SECONDS..MAX_SECONDS).contains(&v));
                    }
                }
            }
        }
    }
}

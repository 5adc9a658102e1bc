//! Daemon settings: the optional `lookout.toml`, environment variables and
//! command-line flags merged into one [`Settings`], flags over env over
//! file. This module holds the file's top level and that layering; each
//! table belongs to the module that uses it, with its checks: delivery's
//! `[publish]`, `[buffer]`, `[breaker]` and `[heartbeat]`
//! ([`crate::delivery::settings`]), the sandbox's `[limits]`
//! ([`crate::sandbox::limits`]), `[[targets]]` and `[[discover]]`
//! ([`crate::targets`]).

use std::collections::BTreeMap;
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
pub const SLOWLOG_COUNT: IntKey = IntKey::new("slowlog_count", 128, 1..=100_000);

/// `max_calls_in_flight`.
pub const MAX_CALLS_IN_FLIGHT: IntKey = IntKey::new("max_calls_in_flight", 64, 1..=100_000);

/// `poll_interval` (also `--poll-interval`, `POLL_INTERVAL`).
pub const POLL_INTERVAL: SecondsKey = SecondsKey::new("poll_interval", 5.0);

/// `connect_timeout`.
pub const CONNECT_TIMEOUT: SecondsKey = SecondsKey::new("connect_timeout", 2.0);

/// `response_timeout`.
pub const RESPONSE_TIMEOUT: SecondsKey = SecondsKey::new("response_timeout", 2.0);

/// `shutdown_grace`.
pub const SHUTDOWN_GRACE: SecondsKey = SecondsKey::new("shutdown_grace", 5.0);

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
    use crate::targets::Source;

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
    fn every_integer_key_is_range_checked_by_name() {
        use crate::delivery::settings::{FAILURES, MAX_ENVELOPES, MAX_MIB, STREAM_MAXLEN};
        for IntKey { key, min, max, .. } in [
            SLOWLOG_COUNT,
            MAX_ENVELOPES,
            MAX_MIB,
            FAILURES,
            STREAM_MAXLEN,
            MAX_CALLS_IN_FLIGHT,
        ] {
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
        use crate::checks::{MAX_SECONDS, MIN_SECONDS, parse_seconds};

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

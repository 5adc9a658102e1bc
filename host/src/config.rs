//! Daemon settings: the optional `lookout.toml`, environment variables and
//! command-line flags merged into one [`Settings`], flags over env over file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde::Deserialize;

use crate::delivery::breaker::BreakerSettings;
use crate::delivery::outbox::{Caps, DropPolicy};
use crate::redis::redact::redact_url;
use crate::sandbox::limits::{Limits, LimitsFile};

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
    pub slowlog_count: Option<u32>,
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
}

/// `[buffer]` table of `lookout.toml`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BufferFile {
    /// Most envelopes held while the bus is unreachable.
    pub max_envelopes: Option<usize>,
    /// Most MiB of envelopes held.
    pub max_mib: Option<usize>,
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
    pub failures: Option<u32>,
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
    pub stream_maxlen: Option<u64>,
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
    /// `--redis-url` / `REDIS_URL`.
    pub redis_url: Option<String>,
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
}

/// Everything the daemon needs, resolved and validated.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Watched Redis URL (may hold a password: log it through [`redact_url`]).
    pub redis_url: String,
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
        let redis_url = o
            .redis_url
            .or(file.redis_url)
            .unwrap_or_else(|| DEFAULT_REDIS_URL.to_owned());
        check_url(&redis_url).context("REDIS_URL / --redis-url / redis_url")?;
        let poll = o.poll_interval.or(file.poll_interval).unwrap_or(5.0);
        let poll_interval = seconds(poll).with_context(|| {
            format!(
                "POLL_INTERVAL / --poll-interval / {}: must be a positive number of seconds",
                origin("poll_interval")
            )
        })?;
        let connect_timeout = seconds(file.connect_timeout.unwrap_or(2.0))
            .with_context(|| origin("connect_timeout"))?;
        let response_timeout = seconds(file.response_timeout.unwrap_or(2.0))
            .with_context(|| origin("response_timeout"))?;
        let slowlog_count = file.slowlog_count.unwrap_or(128);
        if slowlog_count == 0 {
            bail!("{} must be at least 1", origin("slowlog_count"));
        }
        let publish_url = file.publish.url.unwrap_or_else(|| redis_url.clone());
        check_url(&publish_url).with_context(|| origin("publish.url"))?;
        let file_name = path.map_or_else(|| "config".to_owned(), |p| p.display().to_string());
        let limits = Limits::resolve(&file.limits, &file_name)?;
        let shutdown_grace = seconds(file.shutdown_grace.unwrap_or(5.0))
            .with_context(|| origin("shutdown_grace"))?;
        let buffer = Caps {
            envelopes: file.buffer.max_envelopes.unwrap_or(10_000),
            bytes: file.buffer.max_mib.unwrap_or(16).saturating_mul(1 << 20),
            policy: file.buffer.policy.unwrap_or_default(),
        };
        if buffer.envelopes == 0 || buffer.bytes == 0 {
            bail!(
                "{} and buffer.max_mib must be at least 1",
                origin("buffer.max_envelopes")
            );
        }
        let breaker = BreakerSettings {
            failures: file.breaker.failures.unwrap_or(3).max(1),
            recovery: seconds(file.breaker.recovery_s.unwrap_or(2.0))
                .with_context(|| origin("breaker.recovery_s"))?,
        };
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
            stream_maxlen: file.publish.stream_maxlen.unwrap_or(10_000),
        };
        Ok(Self {
            redis_url,
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

fn seconds(value: f64) -> Result<Duration> {
    if !(value.is_finite() && value > 0.0 && value < 86_400.0) {
        bail!("{value} is not a positive number of seconds below one day");
    }
    Ok(Duration::from_secs_f64(value))
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
        "redis" | "redis+unix" | "unix" => {}
        "rediss" => {
            bail!("bad Redis URL `{shown}`: TLS (rediss://) is not supported by this build")
        }
        other => bail!(
            "bad Redis URL `{shown}`: scheme `{other}` is not redis://, redis+unix:// or unix://"
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
    }
}

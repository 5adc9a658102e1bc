//! The flags of every subcommand; [`SettingsArgs`], the ones `lookout
//! run` layers over the environment and the file, is flattened into the
//! subcommands that read the daemon's settings.

use std::collections::BTreeSet;
use std::path::PathBuf;

use anyhow::Result;
use clap::parser::ValueSource;
use clap::{ArgMatches, Args};

use crate::checks::parse_seconds;
use crate::config::{LogFormat, Overrides, Settings};

#[derive(Args)]
pub(crate) struct TailArgs {
    /// Watched Redis, as for `lookout run`: the bus (with `[publish] tls`
    /// over `[tls]`) unless the config sets `[publish] url` [default:
    /// redis://127.0.0.1:6379].
    #[arg(long, env = "REDIS_URL", hide_env_values = true)]
    pub(crate) redis_url: Vec<String>,
    /// The bus to read, over `--redis-url` and the config; the config's
    /// `[tls]` applies to it.
    #[arg(long)]
    pub(crate) bus: Option<String>,
    /// Optional lookout.toml: its `[publish] url`, `stream_key`, `tls` and
    /// credentials apply, and `[tls]`.
    #[arg(long, short = 'c', env = "LOOKOUT_CONFIG", hide_env_values = true)]
    pub(crate) config: Option<PathBuf>,
    /// Stream key [default: the config's `[publish] stream_key`, or
    /// logs:stream:redis].
    #[arg(long)]
    pub(crate) stream: Option<String>,
    /// Start at the oldest entry of the stream [default: new entries only].
    #[arg(long)]
    pub(crate) from_start: bool,
    /// Read as a consumer of this group (created, with the stream, when
    /// missing) and acknowledge each entry read.
    #[arg(long)]
    pub(crate) group: Option<String>,
    /// Consumer name in the group [default: HOST-PID].
    #[arg(long, requires = "group")]
    pub(crate) consumer: Option<String>,
    /// Only envelopes at this level or above: debug, info, warn, error.
    #[arg(long, value_parser = crate::tail::render::parse_level)]
    pub(crate) level: Option<crate::delivery::envelope::Level>,
    /// Only envelopes of this target: a watcher's name, or `lookout`
    /// (repeatable).
    #[arg(long)]
    pub(crate) target: Vec<String>,
    /// Only envelopes about this instance, `fields.instance` (repeatable).
    #[arg(long)]
    pub(crate) instance: Vec<String>,
    /// JSON lines, as published, even on a terminal.
    #[arg(long)]
    pub(crate) json: bool,
    /// Exit after printing this many envelopes.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) count: Option<u64>,
}

#[derive(Args)]
pub(crate) struct TargetsArgs {
    /// Watched Redis, repeat for several [default: the config's].
    #[arg(long, env = "REDIS_URL", hide_env_values = true)]
    pub(crate) redis_url: Vec<String>,
    /// `I/N`: the shard whose targets are marked as watched [default: the
    /// config's `shard`, or 0/1].
    #[arg(long, env = "LOOKOUT_SHARD", hide_env_values = true)]
    pub(crate) shard: Option<String>,
    /// Optional lookout.toml.
    #[arg(long, short = 'c', env = "LOOKOUT_CONFIG", hide_env_values = true)]
    pub(crate) config: Option<PathBuf>,
    /// One JSON object per target instead of a table.
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Args)]
pub(crate) struct AlertsArgs {
    /// `IP:PORT` of the daemon's status (its `metrics_addr`) [default: the
    /// config's `metrics_addr`].
    #[arg(long)]
    pub(crate) metrics_addr: Option<String>,
    /// The daemon's lookout.toml, for its `metrics_addr`.
    #[arg(long, short = 'c', env = "LOOKOUT_CONFIG", hide_env_values = true)]
    pub(crate) config: Option<PathBuf>,
    /// One JSON object per condition, as the API gives it, instead of a
    /// table.
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Args)]
pub(crate) struct NewArgs {
    /// The watcher's name: lower-case letters, digits and dashes.
    pub(crate) name: String,
    /// Folder to create the crate in, as DIR/NAME.
    #[arg(long, default_value = ".")]
    pub(crate) dir: PathBuf,
    /// The lookout-watcher SDK crate to depend on [default: plugins/sdk of
    /// the Lookout checkout this binary was built from].
    #[arg(long, env = "LOOKOUT_SDK", hide_env_values = true)]
    pub(crate) sdk: Option<PathBuf>,
}

#[derive(Args)]
pub(crate) struct RecordArgs {
    /// The Redis to record [default: redis://127.0.0.1:6379].
    #[arg(long, env = "REDIS_URL", hide_env_values = true)]
    pub(crate) redis: Option<String>,
    /// How many snapshots, 1 to 1000000.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub(crate) polls: u64,
    /// Seconds between snapshots.
    #[arg(long, default_value = "1", value_parser = parse_seconds)]
    pub(crate) every: f64,
    /// Replace SLOWLOG arguments (all but the command), client addresses and
    /// names, replication peers' addresses and file paths.
    #[arg(long)]
    pub(crate) redact: bool,
    /// Also run the probes this watcher declares (repeatable); its
    /// NAME.toml beside it and --lookout-config's [watchers.NAME] give
    /// the settings that name stream keys.
    #[arg(long = "watcher", value_name = "WASM")]
    pub(crate) watchers: Vec<PathBuf>,
    /// Keep only the INFO fields and sections the --watcher watchers
    /// declare (and run_id), not all ~180.
    #[arg(long, requires = "watchers")]
    pub(crate) only_declared: bool,
    /// The daemon's lookout.toml: its [watchers.NAME] settings apply.
    #[arg(long, env = "LOOKOUT_CONFIG", hide_env_values = true)]
    pub(crate) lookout_config: Option<PathBuf>,
    /// Compiled-watcher cache folder [default: $XDG_CACHE_HOME/lookout].
    #[arg(long)]
    pub(crate) cache_dir: Option<PathBuf>,
}

#[derive(Args)]
pub(crate) struct TestArgs {
    /// The watcher component.
    pub(crate) file: PathBuf,
    /// Recorded snapshots (JSON lines from `lookout record`).
    #[arg(long)]
    pub(crate) snapshots: PathBuf,
    /// Its settings, as NAME.toml would give them.
    #[arg(long, short = 'c', conflicts_with = "set")]
    pub(crate) config: Option<PathBuf>,
    /// One setting, `key=value` (repeatable).
    #[arg(long)]
    pub(crate) set: Vec<String>,
    /// Expected events (JSON lines): print only the comparison (one `ok:`
    /// line, or a diff and exit non-zero when they differ).
    #[arg(long)]
    pub(crate) expect: Option<PathBuf>,
    /// With --expect, print the events too (JSON lines on stdout), as
    /// without it.
    #[arg(long)]
    pub(crate) print: bool,
    /// Compiled-watcher cache folder [default: $XDG_CACHE_HOME/lookout].
    #[arg(long)]
    pub(crate) cache_dir: Option<PathBuf>,
    /// The daemon's lookout.toml: its [limits] and [watchers.NAME] apply.
    #[arg(long, env = "LOOKOUT_CONFIG", hide_env_values = true)]
    pub(crate) lookout_config: Option<PathBuf>,
}

/// The flags `lookout run` layers over the environment and the file;
/// `lookout config` takes the same. Their `display_order` keeps `lookout
/// run --help` in its order among the flags of the run itself.
#[derive(Args, Default)]
pub(crate) struct SettingsArgs {
    /// Watched Redis, repeat for several [default: redis://127.0.0.1:6379].
    #[arg(long, env = "REDIS_URL", hide_env_values = true, display_order = 1)]
    pub(crate) redis_url: Vec<String>,
    /// Seconds between polls, fractions allowed [default: 5].
    #[arg(long, env = "POLL_INTERVAL", hide_env_values = true, value_parser = parse_seconds,
          display_order = 2)]
    pub(crate) poll_interval: Option<f64>,
    /// Folder of NAME.wasm watchers and NAME.toml settings [default: ./plugins].
    #[arg(long, display_order = 3)]
    pub(crate) plugins: Option<PathBuf>,
    /// `service` field of every envelope [default: redis].
    #[arg(long, display_order = 4)]
    pub(crate) service: Option<String>,
    /// `I/N`: watch only the targets whose key hashes to I modulo N
    /// (Prometheus hashmod) [default: all, 0/1].
    #[arg(long, env = "LOOKOUT_SHARD", hide_env_values = true, display_order = 9)]
    pub(crate) shard: Option<String>,
    /// `IP:PORT` serving /metrics (Prometheus) and /healthz [default: the
    /// config's `metrics_addr`, or off].
    #[arg(long, display_order = 10)]
    pub(crate) metrics_addr: Option<String>,
    /// Optional lookout.toml.
    #[arg(
        long,
        short = 'c',
        env = "LOOKOUT_CONFIG",
        hide_env_values = true,
        display_order = 11
    )]
    pub(crate) config: Option<PathBuf>,
    /// Compiled-watcher cache folder [default: $XDG_CACHE_HOME/lookout].
    #[arg(long, display_order = 12)]
    pub(crate) cache_dir: Option<PathBuf>,
    /// Log format on stderr.
    #[arg(long, value_enum, display_order = 13)]
    pub(crate) log_format: Option<LogFormat>,
}

impl SettingsArgs {
    /// The config file and the overrides of its settings, the ones that
    /// came from the environment named by `matches`: the one place flags
    /// become [`Overrides`].
    pub(crate) fn layers(self, matches: &ArgMatches) -> (Option<PathBuf>, Overrides) {
        let environment: BTreeSet<&'static str> = ["redis_url", "poll_interval", "shard"]
            .into_iter()
            .filter(|id| {
                matches.try_contains_id(id).unwrap_or(false)
                    && matches.value_source(id) == Some(ValueSource::EnvVariable)
            })
            .collect();
        let overrides = Overrides {
            redis_urls: self.redis_url,
            poll_interval: self.poll_interval,
            plugins: self.plugins,
            cache_dir: self.cache_dir,
            service: self.service,
            log_format: self.log_format,
            shard: self.shard,
            metrics_addr: self.metrics_addr,
            environment,
        };
        (self.config, overrides)
    }

    /// The settings these flags, the environment and the file resolve to.
    pub(crate) fn load(self, matches: &ArgMatches) -> Result<Settings> {
        let (config, overrides) = self.layers(matches);
        Settings::load(config.as_deref(), overrides)
    }
}

#[derive(Args)]
pub(crate) struct RunArgs {
    #[command(flatten)]
    pub(crate) settings: SettingsArgs,
    /// Print envelopes as JSON lines on stdout instead of publishing.
    #[arg(long, display_order = 5)]
    pub(crate) dry_run: bool,
    /// Poll once, publish, exit (non-zero when the poll failed).
    #[arg(long, conflicts_with = "polls", display_order = 6)]
    pub(crate) once: bool,
    /// Poll this many times (at least 1), then exit.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..), display_order = 7)]
    pub(crate) polls: Option<u64>,
    /// Refuse to start when a watcher file fails to load [default: skip
    /// it, report it, run the others].
    #[arg(long, display_order = 8)]
    pub(crate) strict: bool,
}

#[derive(Args)]
pub(crate) struct ConfigArgs {
    #[command(flatten)]
    pub(crate) settings: SettingsArgs,
    /// One JSON object per setting instead of a table.
    #[arg(long, display_order = 14)]
    pub(crate) json: bool,
}

#[derive(Args)]
pub(crate) struct CheckArgs {
    /// The watcher component.
    pub(crate) file: PathBuf,
    /// Its settings, as NAME.toml beside the .wasm would give them
    /// [default: NAME.toml beside FILE, if present].
    #[arg(long, short = 'c')]
    pub(crate) config: Option<PathBuf>,
    /// Compiled-watcher cache folder [default: $XDG_CACHE_HOME/lookout].
    #[arg(long)]
    pub(crate) cache_dir: Option<PathBuf>,
    /// The daemon's lookout.toml: its [limits] and [watchers.NAME] apply.
    #[arg(long, env = "LOOKOUT_CONFIG", hide_env_values = true)]
    pub(crate) lookout_config: Option<PathBuf>,
}

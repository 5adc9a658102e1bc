//! The `lookout` command: parses flags, sets up logging and hands over to
//! the library.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::parser::ValueSource;
use clap::{ArgMatches, Args, CommandFactory, FromArgMatches, Parser, Subcommand};
use lookout::checks::parse_seconds;
use lookout::config::{LogFormat, Overrides, Settings};
use lookout::{Daemon, RunMode};

/// `lookout --version`: the host's version and the watcher ABI it speaks,
/// `0.1.0 (watcher ABI lookout:watcher@0.2.0)`.
static VERSION: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    use lookout::sandbox::engine::{PACKAGE, VERSION};
    format!(
        "{} (watcher ABI {PACKAGE}@{VERSION})",
        env!("CARGO_PKG_VERSION")
    )
});

/// Redis watcher host: polls Redis and runs WebAssembly watcher components.
#[derive(Parser)]
#[command(version = VERSION.as_str(), about, args_override_self = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Watch a Redis and publish what the watchers report.
    Run(RunArgs),
    /// Load a watcher as the daemon would, print its manifest, configure it.
    Check(CheckArgs),
    /// Record snapshots of a Redis as JSON lines on stdout.
    Record(RecordArgs),
    /// Run a watcher over recorded snapshots and print (or check) its events.
    Test(TestArgs),
    /// Create a new watcher crate from a template.
    New(NewArgs),
    /// Print the targets (after discovery), their labels and whether this
    /// shard watches each.
    Targets(TargetsArgs),
    /// Print the settings `lookout run` would use with the same flags,
    /// environment and file, each with where it came from.
    Config(ConfigArgs),
    /// Follow the envelope stream on the bus and print each envelope.
    Tail(TailArgs),
}

#[derive(Args)]
struct TailArgs {
    /// Watched Redis, as for `lookout run`: the bus (with `[publish] tls`
    /// over `[tls]`) unless the config sets `[publish] url` [default:
    /// redis://127.0.0.1:6379].
    #[arg(long, env = "REDIS_URL", hide_env_values = true)]
    redis_url: Vec<String>,
    /// The bus to read, over `--redis-url` and the config; the config's
    /// `[tls]` applies to it.
    #[arg(long)]
    bus: Option<String>,
    /// Optional lookout.toml: its `[publish] url`, `stream_key`, `tls` and
    /// credentials apply, and `[tls]`.
    #[arg(long, short = 'c', env = "LOOKOUT_CONFIG", hide_env_values = true)]
    config: Option<PathBuf>,
    /// Stream key [default: the config's `[publish] stream_key`, or
    /// logs:stream:redis].
    #[arg(long)]
    stream: Option<String>,
    /// Start at the oldest entry of the stream [default: new entries only].
    #[arg(long)]
    from_start: bool,
    /// Read as a consumer of this group (created, with the stream, when
    /// missing) and acknowledge each entry read.
    #[arg(long)]
    group: Option<String>,
    /// Consumer name in the group [default: HOST-PID].
    #[arg(long, requires = "group")]
    consumer: Option<String>,
    /// Only envelopes at this level or above: debug, info, warn, error.
    #[arg(long, value_parser = lookout::tail::render::parse_level)]
    level: Option<lookout::delivery::envelope::Level>,
    /// Only envelopes of this target: a watcher's name, or `lookout`
    /// (repeatable).
    #[arg(long)]
    target: Vec<String>,
    /// Only envelopes about this instance, `fields.instance` (repeatable).
    #[arg(long)]
    instance: Vec<String>,
    /// JSON lines, as published, even on a terminal.
    #[arg(long)]
    json: bool,
    /// Exit after printing this many envelopes.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    count: Option<u64>,
}

#[derive(Args)]
struct TargetsArgs {
    /// Watched Redis, repeat for several [default: the config's].
    #[arg(long, env = "REDIS_URL", hide_env_values = true)]
    redis_url: Vec<String>,
    /// `I/N`: the shard whose targets are marked as watched [default: the
    /// config's `shard`, or 0/1].
    #[arg(long, env = "LOOKOUT_SHARD", hide_env_values = true)]
    shard: Option<String>,
    /// Optional lookout.toml.
    #[arg(long, short = 'c', env = "LOOKOUT_CONFIG", hide_env_values = true)]
    config: Option<PathBuf>,
    /// One JSON object per target instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct NewArgs {
    /// The watcher's name: lower-case letters, digits and dashes.
    name: String,
    /// Folder to create the crate in, as DIR/NAME.
    #[arg(long, default_value = ".")]
    dir: PathBuf,
    /// The lookout-watcher SDK crate to depend on [default: plugins/sdk of
    /// the Lookout checkout this binary was built from].
    #[arg(long, env = "LOOKOUT_SDK", hide_env_values = true)]
    sdk: Option<PathBuf>,
}

#[derive(Args)]
struct RecordArgs {
    /// The Redis to record [default: redis://127.0.0.1:6379].
    #[arg(long, env = "REDIS_URL", hide_env_values = true)]
    redis: Option<String>,
    /// How many snapshots, 1 to 1000000.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    polls: u64,
    /// Seconds between snapshots.
    #[arg(long, default_value = "1", value_parser = parse_seconds)]
    every: f64,
    /// Replace SLOWLOG arguments (all but the command), client addresses and
    /// names, replication peers' addresses and file paths.
    #[arg(long)]
    redact: bool,
    /// Also run the probes this watcher declares (repeatable); its
    /// NAME.toml beside it and --lookout-config's [watchers.NAME] give
    /// the settings that name stream keys.
    #[arg(long = "watcher", value_name = "WASM")]
    watchers: Vec<PathBuf>,
    /// Keep only the INFO fields and sections the --watcher watchers
    /// declare (and run_id), not all ~180.
    #[arg(long, requires = "watchers")]
    only_declared: bool,
    /// The daemon's lookout.toml: its [watchers.NAME] settings apply.
    #[arg(long, env = "LOOKOUT_CONFIG", hide_env_values = true)]
    lookout_config: Option<PathBuf>,
    /// Compiled-watcher cache folder [default: $XDG_CACHE_HOME/lookout].
    #[arg(long)]
    cache_dir: Option<PathBuf>,
}

#[derive(Args)]
struct TestArgs {
    /// The watcher component.
    file: PathBuf,
    /// Recorded snapshots (JSON lines from `lookout record`).
    #[arg(long)]
    snapshots: PathBuf,
    /// Its settings, as NAME.toml would give them.
    #[arg(long, short = 'c', conflicts_with = "set")]
    config: Option<PathBuf>,
    /// One setting, `key=value` (repeatable).
    #[arg(long)]
    set: Vec<String>,
    /// Expected events (JSON lines); exit non-zero with a diff when they differ.
    #[arg(long)]
    expect: Option<PathBuf>,
    /// Compiled-watcher cache folder [default: $XDG_CACHE_HOME/lookout].
    #[arg(long)]
    cache_dir: Option<PathBuf>,
    /// The daemon's lookout.toml: its [limits] and [watchers.NAME] apply.
    #[arg(long, env = "LOOKOUT_CONFIG", hide_env_values = true)]
    lookout_config: Option<PathBuf>,
}

/// The flags `lookout run` layers over the environment and the file;
/// `lookout config` takes the same. Their `display_order` keeps `lookout
/// run --help` in its order among the flags of the run itself.
#[derive(Args, Default)]
struct SettingsArgs {
    /// Watched Redis, repeat for several [default: redis://127.0.0.1:6379].
    #[arg(long, env = "REDIS_URL", hide_env_values = true, display_order = 1)]
    redis_url: Vec<String>,
    /// Seconds between polls, fractions allowed [default: 5].
    #[arg(long, env = "POLL_INTERVAL", hide_env_values = true, value_parser = parse_seconds,
          display_order = 2)]
    poll_interval: Option<f64>,
    /// Folder of NAME.wasm watchers and NAME.toml settings [default: ./plugins].
    #[arg(long, display_order = 3)]
    plugins: Option<PathBuf>,
    /// `service` field of every envelope [default: redis].
    #[arg(long, display_order = 4)]
    service: Option<String>,
    /// `I/N`: watch only the targets whose key hashes to I modulo N
    /// (Prometheus hashmod) [default: all, 0/1].
    #[arg(long, env = "LOOKOUT_SHARD", hide_env_values = true, display_order = 9)]
    shard: Option<String>,
    /// `IP:PORT` serving /metrics (Prometheus) and /healthz [default: the
    /// config's `metrics_addr`, or off].
    #[arg(long, display_order = 10)]
    metrics_addr: Option<String>,
    /// Optional lookout.toml.
    #[arg(
        long,
        short = 'c',
        env = "LOOKOUT_CONFIG",
        hide_env_values = true,
        display_order = 11
    )]
    config: Option<PathBuf>,
    /// Compiled-watcher cache folder [default: $XDG_CACHE_HOME/lookout].
    #[arg(long, display_order = 12)]
    cache_dir: Option<PathBuf>,
    /// Log format on stderr.
    #[arg(long, value_enum, display_order = 13)]
    log_format: Option<LogFormat>,
}

impl SettingsArgs {
    /// The config file and the overrides of its settings, the ones that
    /// came from the environment named by `matches`: the one place flags
    /// become [`Overrides`].
    fn layers(self, matches: &ArgMatches) -> (Option<PathBuf>, Overrides) {
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
    fn load(self, matches: &ArgMatches) -> Result<Settings> {
        let (config, overrides) = self.layers(matches);
        Settings::load(config.as_deref(), overrides)
    }
}

#[derive(Args)]
struct RunArgs {
    #[command(flatten)]
    settings: SettingsArgs,
    /// Print envelopes as JSON lines on stdout instead of publishing.
    #[arg(long, display_order = 5)]
    dry_run: bool,
    /// Poll once, publish, exit (non-zero when the poll failed).
    #[arg(long, conflicts_with = "polls", display_order = 6)]
    once: bool,
    /// Poll this many times (at least 1), then exit.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..), display_order = 7)]
    polls: Option<u64>,
    /// Refuse to start when a watcher file fails to load [default: skip
    /// it, report it, run the others].
    #[arg(long, display_order = 8)]
    strict: bool,
}

#[derive(Args)]
struct ConfigArgs {
    #[command(flatten)]
    settings: SettingsArgs,
    /// One JSON object per setting instead of a table.
    #[arg(long, display_order = 14)]
    json: bool,
}

#[derive(Args)]
struct CheckArgs {
    /// The watcher component.
    file: PathBuf,
    /// Its settings, as NAME.toml beside the .wasm would give them
    /// [default: NAME.toml beside FILE, if present].
    #[arg(long, short = 'c')]
    config: Option<PathBuf>,
    /// Compiled-watcher cache folder [default: $XDG_CACHE_HOME/lookout].
    #[arg(long)]
    cache_dir: Option<PathBuf>,
    /// The daemon's lookout.toml: its [limits] and [watchers.NAME] apply.
    #[arg(long, env = "LOOKOUT_CONFIG", hide_env_values = true)]
    lookout_config: Option<PathBuf>,
}

fn main() -> ExitCode {
    let matches = Cli::command().get_matches();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    // The subcommand's own matches tell a flag from its environment
    // variable.
    let given = matches.subcommand().map_or(&matches, |(_, m)| m);
    let result = match cli.command {
        Command::Run(args) => run(args, given),
        Command::Check(args) => check(args, given),
        Command::Record(args) => record(args, given),
        Command::Test(args) => test(args, given),
        Command::New(args) => new(args),
        Command::Targets(args) => targets(args, given),
        Command::Config(args) => config(args, given),
        Command::Tail(args) => tail(args, given),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("lookout: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn disabled() -> bool {
    std::env::var("LOG_SIDECAR_DISABLED")
        .is_ok_and(|v| matches!(v.trim(), "1" | "true" | "yes" | "on"))
}

fn run(args: RunArgs, given: &ArgMatches) -> Result<()> {
    if disabled() {
        return Ok(());
    }
    // The runtime and the signal handlers come first: from here on SIGTERM
    // and SIGINT end the daemon cleanly and SIGHUP asks for a reload,
    // whatever start-up is doing.
    let runtime = daemon_runtime()?;
    let result = runtime.block_on(async { start(args, given).await });
    // A compile still running on the blocking pool is not waited for.
    runtime.shutdown_timeout(std::time::Duration::from_millis(100));
    result
}

/// `lookout run` on the daemon's runtime.
async fn start(args: RunArgs, given: &ArgMatches) -> Result<()> {
    let signals = Signals::register()?;
    let settings = args.settings.load(given)?;
    init_logging(settings.log_format);
    // A connection per target: thousands of targets need more descriptors
    // than the usual soft limit.
    match lookout::fdlimit::raise_nofile_limit() {
        Ok((before, after)) if after > before => {
            tracing::debug!(before, after, "open files limit raised");
        }
        Ok(_) => {}
        Err(e) => tracing::warn!("could not raise the open files limit: {e}"),
    }
    let mode = RunMode {
        dry_run: args.dry_run,
        polls: if args.once { Some(1) } else { args.polls },
        strict: args.strict,
    };
    let (reload_tx, reloads) = tokio::sync::mpsc::unbounded_channel();
    // A bounded run (--once, --polls) does not reload. Otherwise the
    // folders are watched before the plugins folder is listed, so a file
    // copied in while the daemon starts is loaded (by the reload its
    // arrival triggers, once the start-up loads are done).
    let _watching = if mode.polls.is_none() {
        let watcher = lookout::watchers::reload::watch(
            &settings.plugins,
            settings.config_path.as_deref(),
            reload_tx.clone(),
        )?;
        forward_sighup(signals.hangup, reload_tx);
        Some(watcher)
    } else {
        forward_sighup_ignored(signals.hangup);
        None
    };
    let daemon = Daemon::prepare(settings, mode)?;
    daemon.run(mode, reloads, signals.shutdown).await
}

/// `lookout targets`: the configured targets and what discovery finds,
/// each with its labels and whether this shard watches it.
fn targets(args: TargetsArgs, given: &ArgMatches) -> Result<()> {
    let settings = SettingsArgs {
        redis_url: args.redis_url,
        shard: args.shard,
        config: args.config,
        ..SettingsArgs::default()
    }
    .load(given)?;
    let listed = authoring_runtime()?.block_on(lookout::commands::targets::resolve(&settings));
    let mut out = std::io::stdout().lock();
    lookout::commands::targets::print(&settings, &listed, args.json, &mut out)?;
    Ok(())
}

/// `lookout config`: what `lookout run` would resolve from the same flags,
/// environment and file, each setting with where it came from.
fn config(args: ConfigArgs, given: &ArgMatches) -> Result<()> {
    let (config, overrides) = args.settings.layers(given);
    let shown = lookout::config::shown::explain(config.as_deref(), overrides)?;
    let mut out = std::io::stdout().lock();
    lookout::commands::config::print(&shown, args.json, &mut out)?;
    Ok(())
}

/// `lookout tail`: the bus and stream key resolved as `lookout run` would,
/// followed until SIGINT or SIGTERM (exit 0) or `--count` envelopes.
fn tail(args: TailArgs, given: &ArgMatches) -> Result<()> {
    use lookout::tail::render::{Filter, Format};
    use std::io::IsTerminal as _;
    let settings = SettingsArgs {
        redis_url: args.redis_url,
        config: args.config,
        ..SettingsArgs::default()
    }
    .load(given)?;
    // The bus as `lookout run` publishes to it: `[publish] url` (or the
    // watched Redis) with `[publish] tls` over `[tls]` and the bus
    // credentials; a bus named with --bus takes `[tls]`.
    let endpoint = match args.bus {
        Some(bus) => {
            lookout::checks::check_url(&bus)?;
            settings
                .tls
                .check(&bus)
                .map_err(|e| anyhow::anyhow!("[tls] for --bus: {e:#}"))?;
            lookout::redis::endpoint::Endpoint::with_tls(&bus, &settings.tls)
        }
        None => settings.publish.endpoint(),
    };
    let format = if args.json || !std::io::stdout().is_terminal() {
        Format::Json
    } else {
        // https://no-color.org: set and not empty turns colours off.
        let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        Format::Human { colour: !no_color }
    };
    let options = lookout::tail::Options {
        endpoint,
        stream_key: args.stream.unwrap_or(settings.publish.stream_key),
        from_start: args.from_start,
        group: args.group.map(|name| lookout::tail::Group {
            name,
            consumer: args
                .consumer
                .unwrap_or_else(lookout::tail::default_consumer),
        }),
        filter: Filter {
            min_level: args.level,
            targets: args.target,
            instances: args.instance,
        },
        format,
        count: args.count,
        connect_timeout: settings.connect_timeout,
        response_timeout: settings.response_timeout,
    };
    authoring_runtime()?.block_on(async {
        let signals = Signals::register()?;
        let mut out = std::io::stdout().lock();
        lookout::tail::tail(&options, &mut out, signals.shutdown).await
    })
}

/// The daemon's runtime: a worker per core (at most 8); idle workers sleep
/// until a timer or a socket wakes them.
fn daemon_runtime() -> Result<tokio::runtime::Runtime> {
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get().min(8));
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .thread_name("lookout")
        .enable_all()
        .build()?)
}

/// A runtime for the authoring commands.
fn authoring_runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

fn check(args: CheckArgs, given: &ArgMatches) -> Result<()> {
    let settings = authoring_settings(
        given,
        args.lookout_config,
        args.cache_dir,
        &args.file,
        args.config.as_deref(),
        &[],
    )?;
    init_logging(settings.log_format);
    let report =
        authoring_runtime()?.block_on(lookout::authoring::check::check(&args.file, &settings))?;
    print!("{report}");
    Ok(())
}

/// Settings for `check` and `test`: the daemon's lookout.toml when given
/// (limits, cache, `[watchers.NAME]`), then the watcher's own settings from
/// `NAME.toml` or `--set`, which win.
fn authoring_settings(
    given: &ArgMatches,
    lookout_config: Option<PathBuf>,
    cache_dir: Option<PathBuf>,
    file: &std::path::Path,
    config: Option<&std::path::Path>,
    sets: &[String],
) -> Result<Settings> {
    let mut settings = SettingsArgs {
        config: lookout_config,
        cache_dir,
        ..SettingsArgs::default()
    }
    .load(given)?;
    let name = file
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    if let Some(path) = config {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))?;
        let table: toml::Table = text
            .parse()
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        settings.watchers.entry(name).or_default().extend(table);
        settings.config_path = Some(path.to_path_buf());
    } else if !sets.is_empty() {
        settings
            .watchers
            .entry(name)
            .or_default()
            .extend(lookout::authoring::replay::parse_sets(sets)?);
        settings.config_path = Some(PathBuf::from("--set"));
    }
    Ok(settings)
}

fn record(args: RecordArgs, given: &ArgMatches) -> Result<()> {
    let url = args
        .redis
        .unwrap_or_else(|| lookout::config::DEFAULT_REDIS_URL.to_owned());
    lookout::checks::check_url(&url)?;
    let runtime = authoring_runtime()?;
    let plan = if args.watchers.is_empty() {
        lookout::authoring::record::Plan::default()
    } else {
        let settings = SettingsArgs {
            config: args.lookout_config,
            cache_dir: args.cache_dir,
            ..SettingsArgs::default()
        }
        .load(given)?;
        runtime.block_on(lookout::authoring::record::Plan::for_watchers(
            &args.watchers,
            &settings,
            args.only_declared,
        ))?
    };
    let mut out = std::io::stdout().lock();
    runtime.block_on(lookout::authoring::record::record(
        &url,
        args.polls,
        std::time::Duration::from_secs_f64(args.every),
        args.redact,
        &plan,
        &mut out,
    ))
}

fn test(args: TestArgs, given: &ArgMatches) -> Result<()> {
    use std::io::Write;
    let settings = authoring_settings(
        given,
        args.lookout_config,
        args.cache_dir,
        &args.file,
        args.config.as_deref(),
        &args.set,
    )?;
    let snapshots = lookout::authoring::record::read_snapshots(&args.snapshots)?;
    let events = authoring_runtime()?.block_on(lookout::authoring::replay::run_watcher(
        &args.file, &settings, &snapshots,
    ))?;
    let mut out = std::io::stdout().lock();
    for event in &events {
        writeln!(out, "{}", serde_json::to_string(event)?)?;
    }
    if let Some(expected) = &args.expect {
        if let Some(diff) = lookout::authoring::replay::compare(&events, expected)? {
            anyhow::bail!(
                "events differ from {} (- expected, + actual):\n{}",
                expected.display(),
                diff.trim_end()
            );
        }
        let (n, s) = (events.len(), snapshots.len());
        let (event, verb) = if n == 1 { ("", "es") } else { ("s", "") };
        let plural = if s == 1 { "" } else { "s" };
        eprintln!(
            "ok: {n} event{event} match{verb} {} ({s} snapshot{plural})",
            expected.display()
        );
    }
    Ok(())
}

fn new(args: NewArgs) -> Result<()> {
    let sdk = args
        .sdk
        .unwrap_or_else(lookout::authoring::scaffold::default_sdk);
    let root = lookout::authoring::scaffold::new_watcher(&args.name, &args.dir, &sdk)?;
    let name = &args.name;
    let lib = name.replace('-', "_");
    println!(
        "created watcher `{name}` in {root}

  cd {root}
  cargo test                                      # native unit test
  cargo build --release --target wasm32-wasip2    # or: cargo component build --release
  cp target/wasm32-wasip2/release/{lib}.wasm {name}.wasm
  lookout check {name}.wasm
  lookout test {name}.wasm --snapshots golden/snapshots.jsonl --expect golden/expected.jsonl
  cp {name}.wasm {name}.toml /path/to/plugins/    # a running daemon loads it",
        root = root.display()
    );
    Ok(())
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("LOOKOUT_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.with_ansi(false).init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// The daemon's signals, registered before anything else it does: a
/// signal that arrives before its handler runs waits for it.
struct Signals {
    /// Completes on SIGTERM or SIGINT.
    shutdown: std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>,
    /// SIGHUP.
    hangup: tokio::signal::unix::Signal,
}

impl Signals {
    fn register() -> Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        let hangup = signal(SignalKind::hangup())?;
        Ok(Self {
            shutdown: Box::pin(async move {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = int.recv() => {}
                }
                tracing::info!("shutdown signal received");
            }),
            hangup,
        })
    }
}

/// Turns every SIGHUP into a reload request.
fn forward_sighup(
    mut hup: tokio::signal::unix::Signal,
    tx: tokio::sync::mpsc::UnboundedSender<()>,
) {
    tokio::spawn(async move {
        while hup.recv().await.is_some() {
            tracing::info!("SIGHUP received");
            if tx.send(()).is_err() {
                break;
            }
        }
    });
}

/// A bounded run does not reload: SIGHUP is logged and otherwise ignored
/// rather than ending the process.
fn forward_sighup_ignored(mut hup: tokio::signal::unix::Signal) {
    tokio::spawn(async move {
        while hup.recv().await.is_some() {
            tracing::info!("SIGHUP received; a bounded run does not reload");
        }
    });
}

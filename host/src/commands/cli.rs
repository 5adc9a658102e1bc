//! The `lookout` command line: the subcommands and where each goes.

use std::process::ExitCode;

use anyhow::Result;
use clap::{ArgMatches, CommandFactory, FromArgMatches, Parser, Subcommand};

use super::alerts::alerts;
use super::args::{
    AlertsArgs, CheckArgs, ConfigArgs, NewArgs, RecordArgs, RunArgs, SettingsArgs, TailArgs,
    TargetsArgs, TestArgs,
};
use super::authoring::{check, new, record, test};
use super::run::{authoring_runtime, run};
use super::tail::tail;

/// `lookout --version`: the host's version and the watcher ABI it speaks,
/// `0.1.0 (watcher ABI lookout:watcher@0.2.0)`.
static VERSION: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    use crate::sandbox::engine::{PACKAGE, VERSION};
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
    /// Print the active conditions of a running daemon, read from its
    /// status API at `metrics_addr`.
    Alerts(AlertsArgs),
}

/// Parses the command line, runs the subcommand and prints its error, if
/// any, as `lookout: error: ...` on stderr.
pub fn main() -> ExitCode {
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
        Command::Alerts(args) => alerts(args, given),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("lookout: error: {e:#}");
            ExitCode::FAILURE
        }
    }
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
    let listed = authoring_runtime()?.block_on(crate::commands::targets::resolve(&settings));
    let mut out = std::io::stdout().lock();
    crate::commands::targets::print(&settings, &listed, args.json, &mut out)?;
    Ok(())
}

/// `lookout config`: what `lookout run` would resolve from the same flags,
/// environment and file, each setting with where it came from.
fn config(args: ConfigArgs, given: &ArgMatches) -> Result<()> {
    let (config, overrides) = args.settings.layers(given);
    let shown = crate::config::shown::explain(config.as_deref(), overrides)?;
    let mut out = std::io::stdout().lock();
    crate::commands::config::print(&shown, args.json, &mut out)?;
    Ok(())
}

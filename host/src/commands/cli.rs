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

/// Where the documentation is, at the end of `lookout --help`.
const DOCS: &str = "\
Docs: README.md, and docs/ with one page per question (docs/install.md,
docs/configuration.md, docs/targets.md, docs/alerts.md, docs/writing-watchers.md,
...), in the Lookout source tree; `make install` puts them in
PREFIX/share/doc/lookout (/usr/local/share/doc/lookout by default).";

/// The `Docs:` line at the end of a subcommand's help: the pages that
/// explain it, by their path in the source tree and under the installed
/// documentation.
macro_rules! docs {
    ($first:literal $(, $page:literal)*) => {
        concat!(
            "Docs: ", $first, $(", ", $page,)*
            "\n(in the Lookout source tree, or PREFIX/share/doc/lookout when installed)"
        )
    };
}

/// Redis watcher host: polls Redis and runs WebAssembly watcher components.
#[derive(Parser)]
#[command(version = VERSION.as_str(), about, args_override_self = true, after_help = DOCS)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Watch a Redis and publish what the watchers report.
    #[command(after_help = docs!("docs/configuration.md", "docs/targets.md", "docs/delivery.md"))]
    Run(RunArgs),
    /// Load a watcher as the daemon would, print its manifest, configure it.
    #[command(after_help = docs!("docs/writing-watchers.md"))]
    Check(CheckArgs),
    /// Record snapshots of a Redis as JSON lines on stdout.
    #[command(after_help = docs!("docs/writing-watchers.md"))]
    Record(RecordArgs),
    /// Run a watcher over recorded snapshots and print (or check) its events.
    #[command(after_help = docs!("docs/writing-watchers.md"))]
    Test(TestArgs),
    /// Create a new watcher crate from a template.
    #[command(after_help = docs!("docs/writing-watchers.md"))]
    New(NewArgs),
    /// Print the targets (after discovery), their labels and whether this
    /// shard watches each.
    #[command(after_help = docs!("docs/targets.md"))]
    Targets(TargetsArgs),
    /// Print the settings `lookout run` would use with the same flags,
    /// environment and file, each with where it came from.
    #[command(after_help = docs!("docs/configuration.md"))]
    Config(ConfigArgs),
    /// Follow the envelope stream on the bus and print each envelope.
    #[command(after_help = docs!("docs/delivery.md"))]
    Tail(TailArgs),
    /// Print the active conditions of a running daemon, read from its
    /// status API at `metrics_addr`.
    #[command(after_help = docs!("docs/alerts.md", "docs/metrics.md"))]
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

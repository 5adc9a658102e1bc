//! `lookout check`, `record`, `test` and `new`: the authoring commands.

use std::path::PathBuf;

use anyhow::Result;
use clap::ArgMatches;

use super::args::{CheckArgs, NewArgs, RecordArgs, SettingsArgs, TestArgs};
use super::run::{authoring_runtime, init_logging};
use crate::config::Settings;
use crate::watchers::settings::Layer;

pub(crate) fn check(args: CheckArgs, given: &ArgMatches) -> Result<()> {
    let (settings, own) = authoring_settings(
        given,
        args.lookout_config,
        args.cache_dir,
        args.config.as_deref(),
        &[],
    )?;
    init_logging(settings.log_format);
    let report = authoring_runtime()?.block_on(crate::authoring::check::check(
        &args.file,
        &settings,
        own.as_ref().map(Own::layer).as_ref(),
    ))?;
    print!("{report}");
    Ok(())
}

/// A watcher's own settings given to `check` or `test`: a standalone
/// `NAME.toml` (`--config`) or the `--set` flags, named so in errors.
struct Own {
    /// The file, or `--set`.
    origin: String,
    /// The settings.
    table: toml::Table,
}

impl Own {
    fn layer(&self) -> Layer<'_> {
        Layer {
            origin: self.origin.clone(),
            table: &self.table,
        }
    }
}

/// Settings for `check` and `test`: the daemon's lookout.toml when given
/// (limits, cache, `[watchers.NAME]`), and apart from them the watcher's
/// own settings from `NAME.toml` (`--config`) or `--set`, which win.
fn authoring_settings(
    given: &ArgMatches,
    lookout_config: Option<PathBuf>,
    cache_dir: Option<PathBuf>,
    config: Option<&std::path::Path>,
    sets: &[String],
) -> Result<(Settings, Option<Own>)> {
    let settings = SettingsArgs {
        config: lookout_config,
        cache_dir,
        ..SettingsArgs::default()
    }
    .load(given)?;
    let own = if let Some(path) = config {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))?;
        let table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
            anyhow::anyhow!("{}: {}", path.display(), e.to_string().trim_end())
        })?;
        Some(Own {
            origin: path.display().to_string(),
            table,
        })
    } else if sets.is_empty() {
        None
    } else {
        Some(Own {
            origin: "--set".to_owned(),
            table: crate::authoring::replay::parse_sets(sets)?,
        })
    };
    Ok((settings, own))
}

pub(crate) fn record(args: RecordArgs, given: &ArgMatches) -> Result<()> {
    let url = args
        .redis
        .unwrap_or_else(|| crate::config::DEFAULT_REDIS_URL.to_owned());
    crate::checks::check_url(&url)?;
    let runtime = authoring_runtime()?;
    let plan = if args.watchers.is_empty() {
        crate::authoring::record::Plan::default()
    } else {
        let settings = SettingsArgs {
            config: args.lookout_config,
            cache_dir: args.cache_dir,
            ..SettingsArgs::default()
        }
        .load(given)?;
        runtime.block_on(crate::authoring::record::Plan::for_watchers(
            &args.watchers,
            &settings,
            args.only_declared,
        ))?
    };
    let mut out = std::io::stdout().lock();
    runtime.block_on(crate::authoring::record::record(
        &url,
        args.polls,
        std::time::Duration::from_secs_f64(args.every),
        args.redact,
        &plan,
        &mut out,
    ))
}

pub(crate) fn test(args: TestArgs, given: &ArgMatches) -> Result<()> {
    use std::io::Write;
    let (settings, own) = authoring_settings(
        given,
        args.lookout_config,
        args.cache_dir,
        args.config.as_deref(),
        &args.set,
    )?;
    let snapshots = crate::authoring::record::read_snapshots(&args.snapshots)?;
    let events = authoring_runtime()?.block_on(crate::authoring::replay::run_watcher(
        &args.file,
        &settings,
        own.as_ref().map(Own::layer).as_ref(),
        &snapshots,
    ))?;
    // With --expect only the comparison is printed, unless --print.
    if args.expect.is_none() || args.print {
        let mut out = std::io::stdout().lock();
        for event in &events {
            writeln!(out, "{}", serde_json::to_string(event)?)?;
        }
        out.flush()?;
    }
    if let Some(expected) = &args.expect {
        if let Some(diff) = crate::authoring::replay::compare(&events, expected)? {
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

pub(crate) fn new(args: NewArgs) -> Result<()> {
    let sdk = args
        .sdk
        .unwrap_or_else(crate::authoring::scaffold::default_sdk);
    let root = crate::authoring::scaffold::new_watcher(&args.name, &args.dir, &sdk)?;
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

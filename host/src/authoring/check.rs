//! `lookout check FILE.wasm`: loads a watcher exactly as the daemon would,
//! prints its manifest and runs `configure`.

use std::fmt::Write;
use std::path::Path;

use anyhow::Result;

use crate::config::Settings;
use crate::sandbox::Engine;
use crate::sandbox::limits::Cadence;
use crate::watchers::load::load_with;
use crate::watchers::settings::{Layer, kind_name, show};

/// Loads and configures the watcher at `path` and describes it; `own`:
/// its settings given on the command line, over all others.
///
/// # Errors
/// Anything that would stop the daemon from running this watcher.
pub(crate) async fn check(
    path: &Path,
    settings: &Settings,
    own: Option<&Layer<'_>>,
) -> Result<String> {
    let engine = Engine::new(settings.cache_dir.as_deref())?;
    let watcher = load_with(&engine, path, settings, own).await?.spec;
    let m = &watcher.manifest;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} {} ({}, built for lookout:watcher@{})",
        m.name,
        m.version,
        path.display(),
        watcher.abi()
    );
    let _ = writeln!(out, "  signal: {}", m.description);
    let _ = writeln!(out, "  config:");
    for key in &m.config {
        let _ = writeln!(
            out,
            "    {} ({}, default {}): {}",
            key.name,
            kind_name(key.kind),
            show(&key.default),
            key.description
        );
    }
    let needs = &m.needs;
    let _ = writeln!(out, "  reads INFO fields: {}", list(&needs.info_fields));
    let _ = writeln!(out, "  reads INFO sections: {}", list(&needs.info_sections));
    let _ = writeln!(
        out,
        "  reads SLOWLOG: {}",
        if needs.slowlog { "yes" } else { "no" }
    );
    let probes: Vec<String> = watcher
        .probes()
        .asks
        .iter()
        .map(crate::redis::declared::Ask::command)
        .collect();
    let _ = writeln!(out, "  runs probes: {}", list(&probes));
    let _ = writeln!(out, "  runs: {}", cadence(watcher.cadence()));
    let _ = writeln!(out, "ok: configured");
    Ok(out)
}

fn cadence(c: Cadence) -> String {
    match c {
        Cadence::EveryPoll => "every poll".to_owned(),
        Cadence::EveryPolls(n) => format!("every {n} polls"),
        Cadence::Interval(d) => format!("at most every {:.3}s", d.as_secs_f64()),
    }
}

fn list(items: &[String]) -> String {
    if items.is_empty() {
        "none".to_owned()
    } else {
        items.join(", ")
    }
}

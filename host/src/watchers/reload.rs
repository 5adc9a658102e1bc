//! Hot reload: file-system events on the plugins folder and the config
//! file, and SIGHUP, trigger a reload. A reload waits for files to settle,
//! re-reads the settings, loads every new or changed watcher (off the
//! async workers, smallest file first) and reports what to install or
//! remove; a watcher that fails to load leaves the running version in
//! place.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result};
use notify::{RecursiveMode, Watcher as _};
use tokio::sync::mpsc;

use super::load::{Loaded, load, name_of, signature};
use super::supervisor::Listed;
use crate::config::Settings;
use crate::delivery::envelope::fields;
use crate::delivery::envelope::{Emitted, Level};
use crate::sandbox::Engine;

/// How long files must stay unchanged before they are loaded, so a copy in
/// progress is not taken for a broken watcher.
pub(crate) const SETTLE: Duration = Duration::from_millis(300);

/// Watches the plugins folder and the config file's folder; each change
/// sends a unit on `tx`. Watching stops when the returned watcher drops.
///
/// # Errors
/// The folders cannot be watched.
pub(crate) fn watch(
    plugins: &Path,
    config: Option<&Path>,
    tx: mpsc::UnboundedSender<()>,
) -> Result<notify::RecommendedWatcher> {
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        // Only watchers and settings matter: `.wasm` and `.toml` files.
        let relevant = event.is_ok_and(|e| {
            !e.kind.is_access()
                && (e.paths.is_empty()
                    || e.paths
                        .iter()
                        .any(|p| p.extension().is_some_and(|x| x == "wasm" || x == "toml")))
        });
        if relevant {
            let _ = tx.send(());
        }
    })
    .context("starting the file watcher")?;
    check_folder(plugins)?;
    watcher
        .watch(plugins, RecursiveMode::NonRecursive)
        .with_context(|| format!("watching {}", plugins.display()))?;
    if let Some(dir) = config.and_then(Path::parent) {
        let dir = if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        };
        watcher
            .watch(dir, RecursiveMode::NonRecursive)
            .with_context(|| format!("watching {}", dir.display()))?;
    }
    Ok(watcher)
}

/// What a reload decided.
#[derive(Default)]
pub(crate) struct Plan {
    /// New settings, when the config file parsed.
    pub settings: Option<Settings>,
    /// Watchers to add or replace.
    pub install: Vec<Loaded>,
    /// Watchers whose file is gone.
    pub remove: Vec<String>,
    /// Errors to publish (a refused new version, a bad config file).
    pub notices: Vec<Emitted>,
    /// Signatures of files that failed to load, so the same broken file is
    /// reported once.
    pub refused: HashMap<String, u64>,
}

/// Size and modification time of a file, to tell whether it changed.
pub(crate) type Stamp = (u64, Option<SystemTime>);

/// The [`Stamp`] of `file` now (zero and none when it cannot be read).
pub(crate) fn stamp(file: &Path) -> Stamp {
    std::fs::metadata(file).map_or((0, None), |m| (m.len(), m.modified().ok()))
}

fn stamps(files: &[PathBuf]) -> Vec<Stamp> {
    files.iter().map(|f| stamp(f)).collect()
}

/// The plugins folder must exist.
fn check_folder(dir: &Path) -> Result<()> {
    if !dir.is_dir() {
        anyhow::bail!(
            "plugins folder {} does not exist; build the watchers with `make plugins` \
             or point --plugins at a folder of NAME.wasm files",
            dir.display()
        );
    }
    Ok(())
}

/// Lists the `*.wasm` files of the plugins folder, sorted by name.
///
/// # Errors
/// The folder is missing or unreadable.
pub(crate) fn wasm_files(dir: &Path) -> Result<Vec<PathBuf>> {
    check_folder(dir)?;
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading plugins folder {}", dir.display()))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "wasm") && p.is_file())
        .collect();
    files.sort();
    Ok(files)
}

/// Works out a reload.
pub(crate) async fn prepare(
    engine: &Engine,
    current: &Settings,
    loaded: &[Listed],
    mut refused: HashMap<String, u64>,
) -> Plan {
    let mut plan = Plan::default();
    let settings = match Settings::load(current.config_path.as_deref(), current.overrides.clone()) {
        Ok(s) => s,
        Err(e) => {
            let reason = format!("{e:#}");
            tracing::error!("reload: {reason}; keeping the running configuration");
            plan.notices.push(Emitted::host(
                Level::Error,
                format!("reload refused: {reason}; keeping the running configuration"),
                fields! {"reason" => reason},
            ));
            plan.refused = refused;
            return plan;
        }
    };
    // Settle: the set of files and their sizes must hold still.
    let files = loop {
        let before = wasm_files(&settings.plugins).unwrap_or_default();
        let first = stamps(&before);
        tokio::time::sleep(SETTLE).await;
        let after = wasm_files(&settings.plugins).unwrap_or_default();
        if before == after && first == stamps(&after) {
            break after;
        }
    };
    let mut changed = Vec::new();
    for path in &files {
        let name = name_of(path);
        let Ok(sig) = signature(path, &settings) else {
            continue;
        };
        if loaded
            .iter()
            .any(|l| l.name == name && l.fingerprint == sig)
            || refused.get(&name) == Some(&sig)
        {
            continue;
        }
        changed.push((path.clone(), name, sig));
    }
    let paths: Vec<PathBuf> = changed.iter().map(|(path, _, _)| path.clone()).collect();
    let results = load_all(engine, &paths, &settings).await;
    for ((path, name, sig), result) in changed.into_iter().zip(results) {
        match result {
            Ok(watcher) => {
                refused.remove(&name);
                plan.install.push(watcher);
            }
            Err(e) => {
                let running = loaded.iter().any(|l| l.name == name);
                if running {
                    let reason = format!("{e:#}");
                    tracing::error!(watcher = %name, "reload refused: {reason}");
                    plan.notices.push(Emitted::host(
                        Level::Error,
                        format!(
                            "watcher {name}: new version refused, the running one stays: {reason}"
                        ),
                        fields! {"watcher" => name.clone(), "reason" => reason},
                    ));
                } else {
                    plan.notices.push(not_loaded(&path, &e, &settings));
                }
                refused.insert(name, sig);
            }
        }
    }
    for l in loaded {
        if !files.iter().any(|f| name_of(f) == l.name) {
            plan.remove.push(l.name.clone());
        }
    }
    refused.retain(|name, _| files.iter().any(|f| &name_of(f) == name));
    plan.refused = refused;
    plan.settings = Some(settings);
    plan
}

/// A watcher file that is not running because it failed to load, at
/// start-up or on a reload: logged, and the error envelope to publish. The
/// message names the file, the reason and how to fix it; the other
/// watchers run on, and the file is loaded again when it or its settings
/// change.
pub(crate) fn not_loaded(file: &Path, error: &anyhow::Error, settings: &Settings) -> Emitted {
    let name = name_of(file);
    let reason = format!("{error:#}");
    let cap = settings.limits.of(&name).max_wasm_bytes;
    let size = std::fs::metadata(file).map_or(0, |m| m.len());
    let fix = if size > cap {
        format!(
            "to run it, set max_wasm_mib = {} in [limits.watchers.{name}] of lookout.toml \
             (or remove the file)",
            size.div_ceil(1 << 20)
        )
    } else {
        format!(
            "fix or remove {}; it is loaded when it or its settings change",
            file.display()
        )
    };
    tracing::error!(watcher = %name, file = %file.display(), "watcher not loaded: {reason}; {fix}");
    Emitted::host(
        Level::Error,
        format!("watcher {name} not loaded: {reason}; {fix}"),
        fields! {
            "watcher" => name,
            "file" => file.display().to_string(),
            "reason" => reason,
        },
    )
}

/// `paths` smallest file first: the order loads take, so that a large
/// component (seconds to compile) never holds up a small one. Each compile
/// uses every core on its own (wasmtime compiles functions in parallel),
/// so one at a time costs no throughput.
pub(crate) fn smallest_first(paths: &[PathBuf]) -> Vec<PathBuf> {
    let mut sorted = paths.to_vec();
    sorted.sort_by_key(|p| std::fs::metadata(p).map_or(u64::MAX, |m| m.len()));
    sorted
}

/// Loads `paths` one after the other, smallest first, on a task of their
/// own, sending each result as soon as it is ready.
pub(crate) fn load_each(
    engine: &Engine,
    paths: &[PathBuf],
    settings: &Settings,
) -> tokio::sync::mpsc::Receiver<(PathBuf, Result<Loaded>)> {
    let (tx, rx) = tokio::sync::mpsc::channel(paths.len().max(1));
    let (engine, paths, settings) = (engine.clone(), smallest_first(paths), settings.clone());
    tokio::spawn(async move {
        for path in paths {
            let result = load(&engine, &path, &settings).await;
            if tx.send((path, result)).await.is_err() {
                break;
            }
        }
    });
    rx
}

/// Loads `paths` (smallest first, see [`load_each`]); results in the
/// order of `paths`.
pub(crate) async fn load_all(
    engine: &Engine,
    paths: &[PathBuf],
    settings: &Settings,
) -> Vec<Result<Loaded>> {
    let mut done = load_each(engine, paths, settings);
    let mut results: Vec<Option<Result<Loaded>>> = paths.iter().map(|_| None).collect();
    while let Some((path, result)) = done.recv().await {
        if let Some(i) = paths.iter().position(|p| *p == path) {
            results[i] = Some(result);
        }
    }
    results
        .into_iter()
        .zip(paths)
        .map(|(r, path)| {
            r.unwrap_or_else(|| Err(anyhow::anyhow!("{}: loading failed", path.display())))
        })
        .collect()
}

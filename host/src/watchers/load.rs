//! Loading a watcher: its component compiled off the async workers,
//! checked, described and configured in the sandbox. The result is a
//! [`Spec`], shared read-only by every target's instances of it.

use std::collections::HashSet;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};

use super::settings::{Layer, read_side_file, resolve};
use crate::config::Settings;
use crate::redis::probe::{Probes, SlowEntry, Snapshot};
use crate::sandbox::limits::{Cadence, WatcherLimits};
use crate::sandbox::{Compiled, Engine, Instance, Trap, wit};

/// A loaded watcher: what it is and how it runs, shared by all targets.
pub struct Spec {
    /// File stem of the `.wasm`; names `NAME.toml` and config sections.
    pub name: String,
    /// The `.wasm` it came from.
    pub file: PathBuf,
    /// What the watcher said about itself.
    pub manifest: wit::Manifest,
    /// The settings `configure` accepted; reused for every instance.
    pub settings: Vec<wit::Setting>,
    /// Its sandbox limits.
    pub limits: WatcherLimits,
    /// Hash of the `.wasm` bytes and the settings: a reload replaces the
    /// watcher only when this changes.
    pub fingerprint: u64,
    compiled: Compiled,
    info_fields: HashSet<String>,
    info_sections: HashSet<String>,
}

/// A freshly loaded watcher with the instance that was described and
/// configured while loading it, ready to run on a first target.
pub struct Loaded {
    /// The shared part.
    pub spec: std::sync::Arc<Spec>,
    /// A configured instance.
    pub instance: Instance,
    /// From the start of the compile to the configured instance.
    pub took: Duration,
}

/// File stem of a watcher path.
pub fn name_of(path: &Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Hash of everything a watcher is built from: its `.wasm` bytes, its
/// `NAME.toml`, its `[watchers.NAME]` table and its limits. A reload
/// rebuilds a watcher only when this changes.
///
/// # Errors
/// The `.wasm` cannot be read.
pub fn signature(path: &Path, settings: &Settings) -> Result<u64> {
    let name = name_of(path);
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    std::fs::read(path)
        .with_context(|| format!("reading {}", path.display()))?
        .hash(&mut hasher);
    std::fs::read(path.with_extension("toml"))
        .unwrap_or_default()
        .hash(&mut hasher);
    format!(
        "{:?}{:?}",
        settings.watchers.get(&name),
        settings.limits.of(&name)
    )
    .hash(&mut hasher);
    Ok(hasher.finish())
}

/// Compiles (on the blocking pool: it is CPU-heavy and may take seconds),
/// checks, instantiates, describes and configures the watcher at `path`
/// with its settings layers (manifest defaults, `NAME.toml`,
/// `[watchers.NAME]`).
///
/// # Errors
/// Any reason the daemon would refuse to run it; the message names the
/// file, and the key for a bad setting.
pub async fn load(engine: &Engine, path: &Path, settings: &Settings) -> Result<Loaded> {
    let started = Instant::now();
    let name = name_of(path);
    let shown = path.display();
    let limits = settings.limits.of(&name);
    let compiled = {
        let engine = engine.clone();
        let path = path.to_path_buf();
        tokio::task::spawn_blocking(move || engine.compile(&path, limits.max_wasm_bytes))
            .await
            .map_err(|e| anyhow!("{shown}: compiling failed: {e}"))??
    };
    let mut instance = Instance::new(engine, &compiled, &name, &limits)
        .await
        .map_err(|t| anyhow!("{shown}: {t}"))?;
    let manifest = instance
        .describe()
        .await
        .map_err(|t| anyhow!("{shown}: describe() failed: {t}"))?;
    if manifest.name.trim().is_empty() {
        bail!("{shown}: describe() returned an empty name");
    }
    let side = read_side_file(path)?;
    let mut layers = Vec::new();
    if let Some((origin, table)) = &side {
        layers.push(Layer {
            origin: origin.clone(),
            table,
        });
    }
    if let Some(table) = settings.watchers.get(&name) {
        let file = settings
            .config_path
            .as_ref()
            .map_or_else(|| "config".to_owned(), |p| p.display().to_string());
        layers.push(Layer {
            origin: format!("{file} [watchers.{name}]"),
            table,
        });
    }
    let resolved = resolve(&manifest, &layers)?;
    match instance.configure(&resolved).await {
        Ok(Ok(())) => {}
        Ok(Err(reason)) => bail!("{shown}: watcher {name} rejected its settings: {reason}"),
        Err(trap) => bail!("{shown}: configure() failed: {trap}"),
    }
    let fingerprint = signature(path, settings)?;
    let info_fields = manifest.needs.info_fields.iter().cloned().collect();
    let info_sections = manifest
        .needs
        .info_sections
        .iter()
        .map(|s| s.to_ascii_lowercase())
        .collect();
    let spec = Spec {
        name,
        file: path.to_path_buf(),
        manifest,
        settings: resolved,
        limits,
        fingerprint,
        compiled,
        info_fields,
        info_sections,
    };
    Ok(Loaded {
        spec: std::sync::Arc::new(spec),
        instance,
        took: started.elapsed(),
    })
}

impl Spec {
    /// Probes this watcher needs.
    pub fn probes(&self) -> Probes {
        let needs = &self.manifest.needs;
        Probes {
            info: !(needs.info_fields.is_empty() && needs.info_sections.is_empty()),
            slowlog: needs.slowlog,
        }
    }

    /// How often it runs: the operator's override, else what the watcher
    /// declared.
    pub fn cadence(&self) -> Cadence {
        self.limits.cadence.unwrap_or(match self.manifest.cadence {
            wit::Cadence::EveryPoll => Cadence::EveryPoll,
            wit::Cadence::EveryPolls(n) => Cadence::EveryPolls(n.max(1)),
            wit::Cadence::IntervalMs(ms) => Cadence::Interval(Duration::from_millis(ms)),
        })
    }

    /// A fresh instance configured with the saved settings, for a target
    /// that has none or after a failure.
    ///
    /// # Errors
    /// Instantiation or configuration failed.
    pub async fn instantiate(&self, engine: &Engine) -> Result<Instance, Trap> {
        let mut instance = Instance::new(engine, &self.compiled, &self.name, &self.limits).await?;
        match instance.configure(&self.settings).await? {
            Ok(()) => Ok(instance),
            Err(reason) => Err(Trap::Other(format!("rejected its settings: {reason}"))),
        }
    }

    /// The part of `snapshot` this watcher declared, for `instance`.
    pub fn view(&self, instance: &str, snapshot: &Snapshot) -> wit::Snapshot {
        self.view_with(
            instance,
            snapshot,
            snapshot.slowlog.as_deref().map(<[SlowEntry]>::iter),
        )
    }

    /// The part of `snapshot` this watcher declared, for `instance`, with
    /// `slowlog` as its SLOWLOG entries (those not yet handed to it).
    pub fn view_with<'a>(
        &self,
        instance: &str,
        snapshot: &Snapshot,
        slowlog: Option<impl Iterator<Item = &'a SlowEntry>>,
    ) -> wit::Snapshot {
        let info = snapshot
            .info
            .iter()
            .filter(|f| {
                self.info_fields.contains(&f.name) || self.info_sections.contains(&*f.section)
            })
            .map(|f| wit::InfoField {
                section: f.section.to_string(),
                name: f.name.clone(),
                value: f.value.clone(),
            })
            .collect();
        let slowlog = if self.manifest.needs.slowlog {
            slowlog.map(|entries| {
                entries
                    .map(|e| wit::SlowlogEntry {
                        id: e.id,
                        started_at: e.started_at,
                        duration_us: e.duration_us,
                        args: e.args.clone(),
                        client_addr: e.client_addr.clone(),
                        client_name: e.client_name.clone(),
                    })
                    .collect()
            })
        } else {
            None
        };
        wit::Snapshot {
            instance: instance.to_owned(),
            taken_at_ms: snapshot.taken_at_ms,
            info,
            slowlog,
        }
    }
}

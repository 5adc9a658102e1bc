//! A loaded watcher: its compiled component, manifest, settings and limits,
//! and the live instance that can be dropped after a trap and rebuilt.

use std::collections::HashSet;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use wasmtime::component::Component;

use crate::config::Settings;
use crate::limits::{Cadence, WatcherLimits};
use crate::plugin::bindings::lookout::watcher::types as wit;
use crate::plugin::{Instance, Runtime, Trap};
use crate::probe::{Probes, Snapshot};
use crate::watcher_config::{Layer, read_side_file, resolve};

/// A watcher ready to observe.
pub struct Watcher {
    /// File stem of the `.wasm`; names `NAME.toml` and config sections.
    pub name: String,
    /// The `.wasm` it came from.
    pub file: PathBuf,
    /// What the watcher said about itself.
    pub manifest: wit::Manifest,
    /// The settings `configure` accepted; reused on every restart.
    pub settings: Vec<wit::Setting>,
    /// Its sandbox limits.
    pub limits: WatcherLimits,
    /// Hash of the `.wasm` bytes and the settings: a reload replaces the
    /// watcher only when this changes.
    pub fingerprint: u64,
    component: Component,
    instance: Option<Instance>,
    info_fields: HashSet<String>,
    info_sections: HashSet<String>,
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

impl Watcher {
    /// Compiles, checks, instantiates and configures the watcher at `path`
    /// with its settings layers (manifest defaults, `NAME.toml`,
    /// `[watchers.NAME]`).
    ///
    /// # Errors
    /// Any reason the daemon would refuse to run it; the message names the
    /// file, and the key for a bad setting.
    pub fn load(runtime: &Runtime, path: &Path, settings: &Settings) -> Result<Self> {
        let name = name_of(path);
        let shown = path.display();
        let limits = settings.limits.of(&name);
        let component = runtime.compile(path, limits.max_wasm_bytes)?;
        let mut instance = runtime
            .instantiate(&component, &name, &limits)
            .with_context(|| format!("{shown}"))?;
        let manifest = instance
            .describe()
            .map_err(|t| anyhow!("{shown}: describe() trapped: {t}"))?;
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
        match instance.configure(&resolved) {
            Ok(Ok(())) => {}
            Ok(Err(reason)) => bail!("{shown}: watcher {name} rejected its settings: {reason}"),
            Err(trap) => bail!("{shown}: configure() trapped: {trap}"),
        }
        let fingerprint = signature(path, settings)?;
        let info_fields = manifest.needs.info_fields.iter().cloned().collect();
        let info_sections = manifest
            .needs
            .info_sections
            .iter()
            .map(|s| s.to_ascii_lowercase())
            .collect();
        Ok(Self {
            name,
            file: path.to_path_buf(),
            manifest,
            settings: resolved,
            limits,
            fingerprint,
            component,
            instance: Some(instance),
            info_fields,
            info_sections,
        })
    }

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

    /// Whether a live instance exists (false after a trap until restarted).
    pub fn is_live(&self) -> bool {
        self.instance.is_some()
    }

    /// Builds a fresh instance and configures it with the saved settings;
    /// the previous instance's state is lost.
    ///
    /// # Errors
    /// Instantiation or configuration failed.
    pub fn restart(&mut self, runtime: &Runtime) -> Result<(), String> {
        self.instance = None;
        let mut instance = runtime
            .instantiate(&self.component, &self.name, &self.limits)
            .map_err(|e| format!("{e:#}"))?;
        match instance.configure(&self.settings) {
            Ok(Ok(())) => {
                self.instance = Some(instance);
                Ok(())
            }
            Ok(Err(reason)) => Err(format!("rejected its settings on restart: {reason}")),
            Err(trap) => Err(format!("configure() trapped on restart: {trap}")),
        }
    }

    /// Calls `observe` with the part of `snapshot` the watcher declared. On
    /// a trap the instance is dropped: it is never entered again.
    ///
    /// # Errors
    /// The watcher trapped, overran its deadline or its memory cap, or has
    /// no live instance.
    pub fn observe(
        &mut self,
        instance: &str,
        snapshot: &Snapshot,
    ) -> Result<Vec<wit::Event>, Trap> {
        let view = self.view(instance, snapshot);
        let live = self
            .instance
            .as_mut()
            .ok_or_else(|| Trap("no live instance".to_owned()))?;
        let result = live.observe(&view);
        if result.is_err() {
            self.instance = None;
        }
        result
    }

    fn view(&self, instance: &str, snapshot: &Snapshot) -> wit::Snapshot {
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
            snapshot.slowlog.as_ref().map(|entries| {
                entries
                    .iter()
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

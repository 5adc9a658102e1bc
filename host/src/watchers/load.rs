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
    check_manifest(&manifest).map_err(|e| {
        anyhow!("{shown}: manifest refused: {e}; fix what the watcher's describe() returns")
    })?;
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

/// Longest watcher name and config key, bytes.
pub const MAX_NAME_BYTES: usize = 64;
/// Longest version string, bytes.
pub const MAX_VERSION_BYTES: usize = 64;
/// Longest description (of the watcher or of a config key), bytes.
pub const MAX_DESCRIPTION_BYTES: usize = 1024;
/// Longest text default of a config key, bytes.
pub const MAX_DEFAULT_BYTES: usize = 4096;
/// Most config keys a watcher declares.
pub const MAX_CONFIG_KEYS: usize = 64;
/// Most INFO fields and sections a watcher declares (together), and the
/// longest of their names, bytes.
pub const MAX_NEEDS: (usize, usize) = (256, 128);
/// Largest declared cadence: every this many polls, or this many ms.
pub const MAX_CADENCE: (u32, u64) = (1_000_000, 604_800_000);

/// The first few characters of `text`, quoted, for error messages about a
/// string that may be huge.
fn preview(text: &str) -> String {
    let short: String = text.chars().take(40).collect();
    if short.len() < text.len() {
        format!("{short:?}...")
    } else {
        format!("{short:?}")
    }
}

/// A plain identifier: an ASCII letter, then ASCII letters, digits, `-` or
/// `_`, at most [`MAX_NAME_BYTES`].
fn is_identifier(text: &str) -> bool {
    let mut chars = text.chars();
    text.len() <= MAX_NAME_BYTES
        && chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

fn check_len(what: &str, text: &str, max: usize) -> Result<()> {
    if text.len() > max {
        bail!(
            "{what} {} is {} bytes, over the {max}-byte cap",
            preview(text),
            text.len()
        );
    }
    Ok(())
}

/// Checks what a watcher says about itself before any of it is kept: its
/// name (copied into every event as `target`) is a plain identifier and not
/// `lookout`, the host's own; every string is capped; its cadence is in
/// range.
///
/// # Errors
/// The first thing out of bounds, named.
pub fn check_manifest(m: &wit::Manifest) -> Result<()> {
    if m.name.eq_ignore_ascii_case("lookout") {
        bail!(
            "the name `{}` is reserved for the host's own events",
            m.name
        );
    }
    if !is_identifier(&m.name) {
        bail!(
            "the name {} ({} bytes) is not a plain identifier: 1 to {MAX_NAME_BYTES} ASCII \
             letters, digits, `-` or `_`, starting with a letter",
            preview(&m.name),
            m.name.len()
        );
    }
    check_len("version", &m.version, MAX_VERSION_BYTES)?;
    check_len("description", &m.description, MAX_DESCRIPTION_BYTES)?;
    if m.config.len() > MAX_CONFIG_KEYS {
        bail!(
            "{} config keys, over the cap of {MAX_CONFIG_KEYS}",
            m.config.len()
        );
    }
    for (i, key) in m.config.iter().enumerate() {
        if !is_identifier(&key.name) {
            bail!(
                "config key {} is not a plain identifier: 1 to {MAX_NAME_BYTES} ASCII letters, \
                 digits, `-` or `_`, starting with a letter",
                preview(&key.name)
            );
        }
        if m.config[..i].iter().any(|k| k.name == key.name) {
            bail!("config key `{}` is declared twice", key.name);
        }
        let what = format!("description of config key `{}`", key.name);
        check_len(&what, &key.description, MAX_DESCRIPTION_BYTES)?;
        match &key.default {
            wit::Value::Text(t) => {
                check_len(
                    &format!("default of config key `{}`", key.name),
                    t,
                    MAX_DEFAULT_BYTES,
                )?;
            }
            wit::Value::Float(x) if !x.is_finite() => {
                bail!(
                    "default of config key `{}` is {x}, not a finite number",
                    key.name
                );
            }
            _ => {}
        }
    }
    let needs = &m.needs;
    let (most, longest) = MAX_NEEDS;
    if needs.info_fields.len() + needs.info_sections.len() > most {
        bail!(
            "{} INFO fields and sections declared, over the cap of {most}",
            needs.info_fields.len() + needs.info_sections.len()
        );
    }
    for name in needs.info_fields.iter().chain(&needs.info_sections) {
        check_len("INFO field or section", name, longest)?;
    }
    let (polls, ms) = MAX_CADENCE;
    match m.cadence {
        wit::Cadence::EveryPolls(n) if n == 0 || n > polls => {
            bail!("cadence every-polls({n}) is out of range: expected 1 to {polls}")
        }
        wit::Cadence::IntervalMs(n) if n == 0 || n > ms => {
            bail!("cadence interval-ms({n}) is out of range: expected 1 to {ms} (one week)")
        }
        _ => {}
    }
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest() -> wit::Manifest {
        wit::Manifest {
            name: "client-delta".into(),
            version: "0.1.0".into(),
            description: "d".into(),
            config: vec![wit::ConfigKey {
                name: "threshold".into(),
                kind: wit::ValueKind::Integer,
                default: wit::Value::Integer(5),
                description: "x".into(),
            }],
            needs: wit::Needs {
                info_fields: vec!["connected_clients".into()],
                info_sections: vec![],
                slowlog: false,
            },
            cadence: wit::Cadence::EveryPoll,
        }
    }

    fn refused(change: impl FnOnce(&mut wit::Manifest)) -> String {
        let mut m = manifest();
        change(&mut m);
        let err = check_manifest(&m).unwrap_err().to_string();
        assert!(err.len() < 400, "short message: {err}");
        err
    }

    #[test]
    fn manifests_are_checked_before_they_are_kept() {
        check_manifest(&manifest()).unwrap();
        let huge = "x".repeat(12 << 20);
        assert!(refused(|m| m.name = "lookout".into()).contains("reserved"));
        assert!(refused(|m| m.name = "LookOut".into()).contains("reserved"));
        for bad in ["", "has space", "-dash", "a/b", "é", &huge] {
            assert!(refused(|m| m.name = bad.into()).contains("plain identifier"));
        }
        assert!(refused(|m| m.description = huge.clone()).contains("description"));
        assert!(refused(|m| m.version = huge.clone()).contains("version"));
        assert!(refused(|m| m.config[0].name = huge.clone()).contains("config key"));
        assert!(refused(|m| m.config[0].description = huge.clone()).contains("threshold"));
        assert!(refused(|m| m.config.push(m.config[0].clone())).contains("twice"));
        assert!(refused(|m| m.config[0].default = wit::Value::Float(f64::NAN)).contains("finite"));
        assert!(
            refused(|m| m.config[0].default = wit::Value::Text(huge.clone())).contains("default")
        );
        assert!(refused(|m| m.needs.info_fields = vec![String::new(); 300]).contains("INFO"));
        assert!(refused(|m| m.cadence = wit::Cadence::IntervalMs(u64::MAX)).contains("cadence"));
        assert!(refused(|m| m.cadence = wit::Cadence::EveryPolls(0)).contains("cadence"));
        check_manifest(&wit::Manifest {
            name: "hit_ratio-2".into(),
            cadence: wit::Cadence::IntervalMs(60_000),
            ..manifest()
        })
        .unwrap();
    }
}

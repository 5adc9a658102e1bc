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
use crate::delivery::envelope::HOST_TARGET;
use crate::redis::declared::{Ask, INFO_SECTIONS};
use crate::redis::probe::Probes;
use crate::sandbox::limits::{Cadence, WatcherLimits};
use crate::sandbox::{Compiled, Engine, Instance, Trap, wit};

/// A loaded watcher: what it is and how it runs, shared by all targets.
pub struct Spec {
    /// File stem of the `.wasm`, unique in the folder: the `target` of its
    /// events; names `NAME.toml` and config sections.
    pub name: String,
    /// The `.wasm` it came from.
    pub file: PathBuf,
    /// What the watcher said about itself, its needs narrowed to what
    /// `configure` returned, if it did (see [`narrow`]).
    pub manifest: wit::Manifest,
    /// The settings `configure` accepted; reused for every instance.
    pub settings: Vec<wit::Setting>,
    /// Its sandbox limits.
    pub limits: WatcherLimits,
    /// Hash of the `.wasm` bytes and the settings: a reload replaces the
    /// watcher only when this changes.
    pub fingerprint: u64,
    compiled: Compiled,
    pub(super) info_fields: HashSet<String>,
    pub(super) info_sections: HashSet<String>,
    /// Each declared probe with the probes it runs (one per stream key for
    /// XINFO probes), in the order declared.
    pub(super) declared: Vec<(wit::Probe, Vec<Ask>)>,
    /// Everything it needs run, precomputed for each poll's plan.
    needs: Probes,
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
pub(crate) fn name_of(path: &Path) -> String {
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
pub(crate) fn signature(path: &Path, settings: &Settings) -> Result<u64> {
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
    load_with(engine, path, settings, None).await
}

/// As [`load`], with `given` settings over all the others, under their
/// own origin: the standalone `NAME.toml` (`--config`) or the `--set`
/// flags of `lookout check` and `lookout test`.
///
/// # Errors
/// As [`load`]; a bad setting of `given` is named by its origin.
pub(crate) async fn load_with(
    engine: &Engine,
    path: &Path,
    settings: &Settings,
    given: Option<&Layer<'_>>,
) -> Result<Loaded> {
    let started = Instant::now();
    let name = name_of(path);
    let shown = path.display();
    if name.eq_ignore_ascii_case(HOST_TARGET) {
        bail!(
            "{shown}: the file name `{name}` is reserved for the host's own events (a watcher's \
             events carry its file name as their target); rename the file"
        );
    }
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
    if let Some(given) = given {
        layers.push(Layer {
            origin: given.origin.clone(),
            table: given.table,
        });
    }
    let resolved = resolve(&manifest, &layers)?;
    let mut declared =
        declared_probes(&manifest, &resolved).map_err(|e| anyhow!("{shown}: {e}"))?;
    let mut manifest = manifest;
    match instance.configure(&resolved).await {
        Ok(Ok(None)) => {}
        Ok(Ok(Some(narrowed))) => {
            manifest.needs = narrow(&manifest.needs, &narrowed);
            declared.retain(|(probe, _)| manifest.needs.probes.iter().any(|p| same(p, probe)));
        }
        Ok(Err(reason)) => bail!("{shown}: watcher {name} rejected its settings: {reason}"),
        Err(trap) => bail!("{shown}: configure() failed: {trap}"),
    }
    // Loaded: from now on its budget is the one of these limits.
    engine.set_fleet_budget(&name, &limits);
    let fingerprint = signature(path, settings)?;
    let info_fields = manifest.needs.info_fields.iter().cloned().collect();
    let info_sections = manifest
        .needs
        .info_sections
        .iter()
        .map(|s| s.to_ascii_lowercase())
        .collect();
    let mut asks: Vec<Ask> = declared
        .iter()
        .flat_map(|(_, a)| a.iter().cloned())
        .collect();
    asks.sort();
    asks.dedup();
    let needs = Probes {
        info: !(manifest.needs.info_fields.is_empty() && manifest.needs.info_sections.is_empty()),
        slowlog: manifest.needs.slowlog,
        asks,
    };
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
        declared,
        needs,
    };
    Ok(Loaded {
        spec: std::sync::Arc::new(spec),
        instance,
        took: started.elapsed(),
    })
}

/// The needs of `manifest` that `narrowed` names too, in the manifest's
/// order: what a watcher's `configure` narrowed its needs to, never more
/// than its manifest declared (a field, section or probe only `narrowed`
/// names is ignored).
pub(crate) fn narrow(manifest: &wit::Needs, narrowed: &wit::Needs) -> wit::Needs {
    let field = |f: &String| narrowed.info_fields.contains(f);
    let section = |s: &String| {
        narrowed
            .info_sections
            .iter()
            .any(|n| n.eq_ignore_ascii_case(s))
    };
    wit::Needs {
        info_fields: manifest
            .info_fields
            .iter()
            .filter(|f| field(f))
            .cloned()
            .collect(),
        info_sections: manifest
            .info_sections
            .iter()
            .filter(|s| section(s))
            .cloned()
            .collect(),
        slowlog: manifest.slowlog && narrowed.slowlog,
        probes: manifest
            .probes
            .iter()
            .filter(|p| narrowed.probes.iter().any(|n| same(n, p)))
            .cloned()
            .collect(),
    }
}

/// Whether two probes are the same (an INFO section compared without
/// case).
fn same(a: &wit::Probe, b: &wit::Probe) -> bool {
    use wit::Probe as P;
    match (a, b) {
        (P::LatencyLatest, P::LatencyLatest)
        | (P::ClientList, P::ClientList)
        | (P::ClusterInfo, P::ClusterInfo) => true,
        (P::InfoSection(a), P::InfoSection(b)) => a.eq_ignore_ascii_case(b),
        (P::XinfoGroups(a), P::XinfoGroups(b)) | (P::XinfoStream(a), P::XinfoStream(b)) => a == b,
        _ => false,
    }
}

/// Longest watcher name and config key, bytes.
pub(crate) const MAX_NAME_BYTES: usize = 64;
/// Longest version string, bytes.
pub(crate) const MAX_VERSION_BYTES: usize = 64;
/// Longest description (of the watcher or of a config key), bytes.
pub(crate) const MAX_DESCRIPTION_BYTES: usize = 1024;
/// Longest text default of a config key, bytes.
pub(crate) const MAX_DEFAULT_BYTES: usize = 4096;
/// Most config keys a watcher declares.
pub(crate) const MAX_CONFIG_KEYS: usize = 64;
/// Most INFO fields and sections a watcher declares (together), and the
/// longest of their names, bytes.
pub(crate) const MAX_NEEDS: (usize, usize) = (256, 128);
/// Most probes a watcher declares.
pub(crate) const MAX_PROBES: usize = 16;
/// Most stream keys one XINFO probe's setting lists, and the longest key,
/// bytes.
pub(crate) const MAX_STREAM_KEYS: (usize, usize) = (64, 1024);
/// Largest declared cadence: every this many polls, or this many ms.
pub(crate) const MAX_CADENCE: (u32, u64) = (1_000_000, 604_800_000);

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
/// name (copied into `fields.watcher` of its events when it differs from
/// the file name) is a plain identifier and not `lookout`, the host's own
/// target; every string is capped; its cadence is in range.
///
/// # Errors
/// The first thing out of bounds, named.
pub(crate) fn check_manifest(m: &wit::Manifest) -> Result<()> {
    if m.name.eq_ignore_ascii_case(HOST_TARGET) {
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
    check_probes(m)?;
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

/// A probe as the WIT writes it, for messages.
fn shown(probe: &wit::Probe) -> String {
    match probe {
        wit::Probe::LatencyLatest => "latency-latest".to_owned(),
        wit::Probe::InfoSection(s) => format!("info-section({s:?})"),
        wit::Probe::XinfoGroups(s) => format!("xinfo-groups({s:?})"),
        wit::Probe::XinfoStream(s) => format!("xinfo-stream({s:?})"),
        wit::Probe::ClientList => "client-list".to_owned(),
        wit::Probe::ClusterInfo => "cluster-info".to_owned(),
    }
}

/// Checks the declared probes against the allow-list: a known INFO
/// section, an XINFO probe naming a declared text setting, no repeats.
fn check_probes(m: &wit::Manifest) -> Result<()> {
    let probes = &m.needs.probes;
    if probes.len() > MAX_PROBES {
        bail!(
            "{} probes declared, over the cap of {MAX_PROBES}",
            probes.len()
        );
    }
    for (i, probe) in probes.iter().enumerate() {
        if probes[..i].iter().any(|p| shown(p) == shown(probe)) {
            bail!("probe {} is declared twice", shown(probe));
        }
        match probe {
            wit::Probe::InfoSection(section)
                if !INFO_SECTIONS.contains(&section.to_ascii_lowercase().as_str()) =>
            {
                check_len("INFO section", section, MAX_NEEDS.1)?;
                bail!(
                    "probe {} is not allowed: expected one of {}; sections of the default \
                     INFO are declared in `info-sections`",
                    shown(probe),
                    INFO_SECTIONS.join(", ")
                );
            }
            wit::Probe::XinfoGroups(setting) | wit::Probe::XinfoStream(setting) => {
                let declared = m.config.iter().find(|k| k.name == *setting).map(|k| k.kind);
                if declared != Some(wit::ValueKind::Text) {
                    bail!(
                        "probe {} names no text setting: declare a text config key `{}` that \
                         lists the stream keys",
                        shown(probe),
                        preview(setting).trim_matches('"')
                    );
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// The probes each declared probe runs, with XINFO stream keys read from
/// the resolved settings.
///
/// # Errors
/// A setting lists more keys than [`MAX_STREAM_KEYS`] allows, or too long
/// a key.
fn declared_probes(
    m: &wit::Manifest,
    settings: &[wit::Setting],
) -> Result<Vec<(wit::Probe, Vec<Ask>)>> {
    let keys = |setting: &str| -> Result<Vec<String>> {
        let text = settings
            .iter()
            .find(|s| s.name == setting)
            .and_then(|s| match &s.value {
                wit::Value::Text(t) => Some(t.as_str()),
                _ => None,
            })
            .unwrap_or_default();
        let keys: Vec<String> = text
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|k| !k.is_empty())
            .map(str::to_owned)
            .collect();
        let (most, longest) = MAX_STREAM_KEYS;
        if keys.len() > most {
            bail!(
                "setting `{setting}` lists {} stream keys, over the cap of {most}",
                keys.len()
            );
        }
        if let Some(long) = keys.iter().find(|k| k.len() > longest) {
            bail!(
                "setting `{setting}`: stream key {} is {} bytes, over the cap of {longest}",
                preview(long),
                long.len()
            );
        }
        Ok(keys)
    };
    m.needs
        .probes
        .iter()
        .map(|probe| {
            let asks = match probe {
                wit::Probe::LatencyLatest => vec![Ask::LatencyLatest],
                wit::Probe::InfoSection(s) => vec![Ask::InfoSection(s.to_ascii_lowercase())],
                wit::Probe::XinfoGroups(s) => keys(s)?.into_iter().map(Ask::XinfoGroups).collect(),
                wit::Probe::XinfoStream(s) => keys(s)?.into_iter().map(Ask::XinfoStream).collect(),
                wit::Probe::ClientList => vec![Ask::ClientList],
                wit::Probe::ClusterInfo => vec![Ask::ClusterInfo],
            };
            Ok((probe.clone(), asks))
        })
        .collect()
}

impl Spec {
    /// Probes this watcher needs.
    pub fn probes(&self) -> &Probes {
        &self.needs
    }

    /// The ABI version its component was built for.
    pub fn abi(&self) -> &'static str {
        self.compiled.abi()
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
        // The same settings narrow the needs as they did at the load.
        match instance.configure(&self.settings).await? {
            Ok(_) => Ok(instance),
            Err(reason) => Err(Trap::Other(format!("rejected its settings: {reason}"))),
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
                probes: vec![],
            },
            cadence: wit::Cadence::EveryPoll,
        }
    }

    /// `configure` narrows the manifest's needs to what both name, never
    /// more.
    #[test]
    fn narrowed_needs_are_the_intersection() {
        let declared = wit::Needs {
            info_fields: vec!["used_memory".into(), "maxmemory".into(), "role".into()],
            info_sections: vec!["keyspace".into()],
            slowlog: true,
            probes: vec![
                wit::Probe::ClientList,
                wit::Probe::XinfoGroups("streams".into()),
                wit::Probe::InfoSection("commandstats".into()),
            ],
        };
        let asked = wit::Needs {
            info_fields: vec!["role".into(), "used_memory".into(), "evicted_keys".into()],
            info_sections: vec!["Keyspace".into(), "clients".into()],
            slowlog: false,
            probes: vec![
                wit::Probe::InfoSection("CommandStats".into()),
                wit::Probe::XinfoGroups("other".into()),
                wit::Probe::ClusterInfo,
            ],
        };
        let kept = narrow(&declared, &asked);
        assert_eq!(kept.info_fields, ["used_memory", "role"]);
        assert_eq!(kept.info_sections, ["keyspace"]);
        assert!(!kept.slowlog);
        assert_eq!(kept.probes.len(), 1);
        assert!(matches!(&kept.probes[0], wit::Probe::InfoSection(s) if s == "commandstats"));
        // Narrowed to the same: nothing changes.
        let same = narrow(&declared, &declared);
        assert_eq!(same.info_fields, declared.info_fields);
        assert_eq!(same.probes.len(), 3);
        assert!(same.slowlog);
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
        assert!(
            refused(|m| m.needs.probes = vec![wit::Probe::InfoSection("memory".into())])
                .contains("info-sections")
        );
        assert!(
            refused(|m| m.needs.probes = vec![wit::Probe::XinfoGroups("threshold".into())])
                .contains("names no text setting")
        );
        assert!(
            refused(|m| m.needs.probes = vec![wit::Probe::ClientList, wit::Probe::ClientList])
                .contains("twice")
        );
        assert!(
            refused(|m| m.needs.probes = vec![wit::Probe::ClusterInfo; 20]).contains("cap of 16")
        );
        assert!(refused(|m| m.cadence = wit::Cadence::EveryPolls(0)).contains("cadence"));
        check_manifest(&wit::Manifest {
            name: "hit_ratio-2".into(),
            cadence: wit::Cadence::IntervalMs(60_000),
            ..manifest()
        })
        .unwrap();
    }
}

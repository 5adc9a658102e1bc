//! Watcher components: the wasmtime engine, loading and checking a `.wasm`
//! against the `lookout:watcher` world, and calling it inside a sandbox with
//! a memory cap and a per-call deadline.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{Engine, Store, StoreLimits, StoreLimitsBuilder};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::config::Limits;
use crate::probe::{Probes, Snapshot};

/// Generated bindings of the `lookout:watcher` world; the one place the
/// host reads the WIT package.
pub mod bindings {
    #![allow(missing_docs)]
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "watcher",
    });
}

use bindings::lookout::watcher::types as wit;

/// WIT package and version this host speaks.
pub const PACKAGE: &str = "lookout:watcher";
/// Version of [`PACKAGE`]; components must be semver-compatible with it.
pub const VERSION: &str = "0.1.0";
/// The interface a watcher exports.
pub const EXPORT: &str = "lookout:watcher/plugin@0.1.0";

/// How often the epoch advances; call deadlines are multiples of it.
const EPOCH_TICK: Duration = Duration::from_millis(5);

/// Per-store data: the WASI context (no files, no env, no network, no
/// stdio) and the memory limiter.
struct HostState {
    wasi: WasiCtx,
    table: ResourceTable,
    limits: StoreLimits,
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// The engine and linker shared by every watcher.
pub struct Runtime {
    engine: Engine,
    linker: Linker<HostState>,
    limits: Limits,
}

impl Runtime {
    /// Builds an engine with epoch interruption and, when `cache_dir` is
    /// given, an on-disk cache of compiled artifacts in that folder.
    ///
    /// # Errors
    /// The cache folder cannot be created or the engine fails to build.
    pub fn new(cache_dir: Option<&Path>, limits: Limits) -> Result<Self> {
        let mut config = wasmtime::Config::new();
        config.epoch_interruption(true);
        config.wasm_component_model(true);
        if let Some(dir) = cache_dir {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("creating cache folder {}", dir.display()))?;
            let mut cache = wasmtime::CacheConfig::new();
            cache.with_directory(dir);
            config.cache(Some(wasmtime::Cache::new(cache)?));
        }
        let engine = Engine::new(&config)?;
        let weak = engine.weak();
        std::thread::Builder::new()
            .name("lookout-epoch".into())
            .spawn(move || {
                while let Some(engine) = weak.upgrade() {
                    engine.increment_epoch();
                    drop(engine);
                    std::thread::sleep(EPOCH_TICK);
                }
            })?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)?;
        Ok(Self {
            engine,
            linker,
            limits,
        })
    }

    /// Loads, checks and instantiates the watcher at `path` and reads its
    /// manifest. The watcher is not configured yet.
    ///
    /// # Errors
    /// The file is unreadable, not a component, built for another world or
    /// package version, or traps while describing itself; the message names
    /// the file and what was expected.
    pub fn load(&self, path: &Path) -> Result<Watcher> {
        let shown = path.display();
        let bytes = std::fs::read(path).with_context(|| format!("reading watcher {shown}"))?;
        check_header(&bytes).with_context(|| format!("{shown}"))?;
        let component = Component::from_binary(&self.engine, &bytes)
            .map_err(|e| anyhow!("{shown}: not a valid WebAssembly component: {e:#}"))?;
        self.check_world(&component)
            .with_context(|| format!("{shown}"))?;
        let mut store = self.store();
        let instance = bindings::Watcher::instantiate(&mut store, &component, &self.linker)
            .map_err(|e| anyhow!("{shown}: cannot instantiate: {e:#}"))?;
        let manifest = instance
            .lookout_watcher_plugin()
            .call_describe(&mut store)
            .map_err(|e| anyhow!("{shown}: describe() failed: {e:#}"))?;
        if manifest.name.trim().is_empty() {
            bail!("{shown}: describe() returned an empty name");
        }
        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let info_fields = manifest.needs.info_fields.iter().cloned().collect();
        let info_sections = manifest
            .needs
            .info_sections
            .iter()
            .map(|s| s.to_ascii_lowercase())
            .collect();
        Ok(Watcher {
            name,
            file: path.to_path_buf(),
            manifest,
            store,
            instance,
            info_fields,
            info_sections,
            failed: None,
            deadline_ticks: self.deadline_ticks(),
        })
    }

    fn deadline_ticks(&self) -> u64 {
        let ticks = self.limits.call_deadline.as_micros() / EPOCH_TICK.as_micros();
        u64::try_from(ticks).unwrap_or(u64::MAX).max(1)
    }

    fn store(&self) -> Store<HostState> {
        // No preopens, no environment, no sockets, no inherited stdio:
        // a watcher sees only what the host hands it.
        let wasi = WasiCtx::builder()
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .build();
        let limits = StoreLimitsBuilder::new()
            .memory_size(self.limits.memory_bytes)
            .trap_on_grow_failure(true)
            .instances(32)
            .build();
        let mut store = Store::new(
            &self.engine,
            HostState {
                wasi,
                table: ResourceTable::new(),
                limits,
            },
        );
        store.limiter(|s| &mut s.limits);
        store.epoch_deadline_trap();
        store.set_epoch_deadline(self.deadline_ticks());
        store
    }

    fn check_world(&self, component: &Component) -> Result<()> {
        let ty = component.component_type();
        let exports: Vec<String> = ty
            .exports(&self.engine)
            .map(|(name, _)| name.to_owned())
            .collect();
        if exports.iter().any(|e| e == EXPORT) {
            return Ok(());
        }
        let prefix = "lookout:watcher/plugin@";
        if let Some(found) = exports.iter().find(|e| e.starts_with(prefix)) {
            let version = &found[prefix.len()..];
            bail!(
                "built for {PACKAGE}@{version}, but this host speaks {PACKAGE}@{VERSION}; \
                 rebuild the watcher against wit/ of this Lookout"
            );
        }
        let shown = if exports.is_empty() {
            "nothing".to_owned()
        } else {
            exports.join(", ")
        };
        bail!(
            "not a Lookout watcher: it exports {shown}, expected {EXPORT} \
             (world {PACKAGE}/watcher@{VERSION})"
        )
    }
}

fn check_header(bytes: &[u8]) -> Result<()> {
    const MAGIC: &[u8] = b"\0asm";
    if bytes.len() < 8 || &bytes[..4] != MAGIC {
        bail!(
            "not a WebAssembly file (no \\0asm header); expected a component built for {PACKAGE}/watcher"
        );
    }
    if bytes[4..8] == [1, 0, 0, 0] {
        bail!(
            "a core WebAssembly module, not a component; build it with `cargo component build` \
             or `cargo build --target wasm32-wasip2`"
        );
    }
    Ok(())
}

/// A loaded watcher instance and what it declared.
pub struct Watcher {
    /// File stem of the `.wasm`; names `NAME.toml` and `[watchers.NAME]`.
    pub name: String,
    /// The `.wasm` it came from.
    pub file: PathBuf,
    /// What the watcher said about itself.
    pub manifest: wit::Manifest,
    store: Store<HostState>,
    instance: bindings::Watcher,
    info_fields: HashSet<String>,
    info_sections: HashSet<String>,
    deadline_ticks: u64,
    /// Why the watcher was disabled, once it trapped; a trapped instance is
    /// never entered again.
    pub failed: Option<String>,
}

/// Why a call into a watcher failed.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// The watcher trapped, ran out of memory or overran its deadline.
    #[error("watcher {name} trapped: {reason}")]
    Trap {
        /// Watcher name.
        name: String,
        /// The trap, as wasmtime reports it.
        reason: String,
    },
    /// `configure` returned an error.
    #[error("watcher {name} rejected its settings: {reason}")]
    Rejected {
        /// Watcher name.
        name: String,
        /// The watcher's message.
        reason: String,
    },
}

impl Watcher {
    /// Probes this watcher needs.
    pub fn probes(&self) -> Probes {
        let needs = &self.manifest.needs;
        Probes {
            info: !(needs.info_fields.is_empty() && needs.info_sections.is_empty()),
            slowlog: needs.slowlog,
        }
    }

    /// Hands the watcher its settings.
    ///
    /// # Errors
    /// The watcher rejected them or trapped.
    pub fn configure(&mut self, settings: &[wit::Setting]) -> Result<(), CallError> {
        self.store.set_epoch_deadline(self.deadline_ticks);
        let result = self
            .instance
            .lookout_watcher_plugin()
            .call_configure(&mut self.store, settings);
        match result {
            Ok(Ok(())) => Ok(()),
            Ok(Err(reason)) => Err(CallError::Rejected {
                name: self.name.clone(),
                reason,
            }),
            Err(trap) => Err(self.trapped(&trap)),
        }
    }

    /// Calls `observe` with the part of `snapshot` the watcher declared.
    ///
    /// # Errors
    /// The watcher trapped (including a deadline or memory-cap hit); it is
    /// then marked failed.
    pub fn observe(
        &mut self,
        instance: &str,
        snapshot: &Snapshot,
    ) -> Result<Vec<wit::Event>, CallError> {
        let info = snapshot
            .info
            .iter()
            .filter(|f| {
                self.info_fields.contains(&f.name) || self.info_sections.contains(&f.section)
            })
            .map(|f| wit::InfoField {
                section: f.section.clone(),
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
        let view = wit::Snapshot {
            instance: instance.to_owned(),
            taken_at_ms: snapshot.taken_at_ms,
            info,
            slowlog,
        };
        self.store.set_epoch_deadline(self.deadline_ticks);
        self.instance
            .lookout_watcher_plugin()
            .call_observe(&mut self.store, &view)
            .map_err(|trap| self.trapped(&trap))
    }

    fn trapped(&mut self, trap: &wasmtime::Error) -> CallError {
        let reason = match trap.downcast_ref::<wasmtime::Trap>() {
            Some(wasmtime::Trap::Interrupt) => "call deadline exceeded".to_owned(),
            _ => format!("{trap:#}"),
        };
        self.failed = Some(reason.clone());
        CallError::Trap {
            name: self.name.clone(),
            reason,
        }
    }
}

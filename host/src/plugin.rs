//! Watcher components: the wasmtime engine, compiling and checking a `.wasm`
//! against the `lookout:watcher` world, and instances that run in a sandbox
//! with a memory cap, a per-call deadline and captured stdio.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{Engine, Store, StoreLimits, StoreLimitsBuilder};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::limits::WatcherLimits;
use crate::stdio::LogPipe;

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

/// WIT package this host speaks.
pub const PACKAGE: &str = "lookout:watcher";
/// Version of [`PACKAGE`].
pub const VERSION: &str = "0.2.0";
/// The interface a watcher exports.
pub const EXPORT: &str = "lookout:watcher/plugin@0.2.0";

/// How often the epoch advances; call deadlines are multiples of it.
const EPOCH_TICK: Duration = Duration::from_millis(5);

/// Per-store data: the WASI context (no files, no env, no network, stdio
/// into the host log) and the memory limiter.
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
#[derive(Clone)]
pub struct Runtime {
    engine: Engine,
    linker: Linker<HostState>,
}

impl Runtime {
    /// Builds an engine with epoch interruption and, when `cache_dir` is
    /// given, an on-disk cache of compiled artifacts in that folder (keyed by
    /// the file's content and the engine configuration; only the host writes
    /// there).
    ///
    /// # Errors
    /// The cache folder cannot be created or the engine fails to build.
    pub fn new(cache_dir: Option<&Path>) -> Result<Self> {
        Self::with_deadlines(cache_dir, true)
    }

    /// Like [`Runtime::new`], with call deadlines switchable; without them a
    /// looping watcher hangs its thread, so only benchmarks turn them off
    /// to measure what they cost.
    ///
    /// # Errors
    /// As [`Runtime::new`].
    pub fn with_deadlines(cache_dir: Option<&Path>, deadlines: bool) -> Result<Self> {
        let mut config = wasmtime::Config::new();
        config.epoch_interruption(deadlines);
        config.wasm_component_model(true);
        if let Some(dir) = cache_dir {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("creating cache folder {}", dir.display()))?;
            // wasmtime wants an absolute path; a relative --cache-dir is
            // relative to the working directory, as for every other path.
            let dir = std::path::absolute(dir)
                .with_context(|| format!("cache folder {}", dir.display()))?;
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
        Ok(Self { engine, linker })
    }

    /// Reads, compiles (or fetches from the cache) and checks the component
    /// at `path`.
    ///
    /// # Errors
    /// The file is unreadable, larger than `max_bytes`, not a component, or
    /// built for another world or package version; the message names the
    /// file and what was expected.
    pub fn compile(&self, path: &Path, max_bytes: u64) -> Result<Component> {
        let shown = path.display();
        let size = std::fs::metadata(path)
            .with_context(|| format!("reading watcher {shown}"))?
            .len();
        if size > max_bytes {
            bail!(
                "{shown}: {size} bytes is over the {max_bytes}-byte cap on watcher files \
                 (limits.max_wasm_mib)"
            );
        }
        let bytes = std::fs::read(path).with_context(|| format!("reading watcher {shown}"))?;
        check_header(&bytes).with_context(|| format!("{shown}"))?;
        let component = Component::from_binary(&self.engine, &bytes)
            .map_err(|e| anyhow!("{shown}: not a valid WebAssembly component: {e:#}"))?;
        self.check_world(&component)
            .with_context(|| format!("{shown}"))?;
        Ok(component)
    }

    /// A fresh instance of `component` in its own sandboxed store.
    ///
    /// # Errors
    /// Instantiation failed (missing imports, start function trapped).
    pub fn instantiate(
        &self,
        component: &Component,
        name: &str,
        limits: &WatcherLimits,
    ) -> Result<Instance> {
        // No preopens, no environment, no sockets; stdout and stderr go to
        // the host log. Clocks and random are the defaults.
        let wasi = WasiCtx::builder()
            .stdout(LogPipe::new(name, "stdout"))
            .stderr(LogPipe::new(name, "stderr"))
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .build();
        let store_limits = StoreLimitsBuilder::new()
            .memory_size(limits.memory_bytes)
            .trap_on_grow_failure(true)
            .instances(64)
            .build();
        let mut store = Store::new(
            &self.engine,
            HostState {
                wasi,
                table: ResourceTable::new(),
                limits: store_limits,
            },
        );
        store.limiter(|s| &mut s.limits);
        store.epoch_deadline_trap();
        let ticks = limits
            .call_deadline
            .as_micros()
            .div_ceil(EPOCH_TICK.as_micros());
        let deadline_ticks = u64::try_from(ticks).unwrap_or(u64::MAX).max(1);
        store.set_epoch_deadline(deadline_ticks);
        let bindings = bindings::Watcher::instantiate(&mut store, component, &self.linker)
            .map_err(|e| anyhow!("cannot instantiate: {e:#}"))?;
        Ok(Instance {
            store,
            bindings,
            deadline_ticks,
        })
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
            "not a WebAssembly file (no \\0asm header); expected a component built for \
             {PACKAGE}/watcher"
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

/// A trap, a deadline overrun or a failed memory growth inside a watcher.
/// The instance must never be entered again.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct Trap(pub String);

impl Trap {
    fn from_error(error: &wasmtime::Error) -> Self {
        match error.downcast_ref::<wasmtime::Trap>() {
            Some(wasmtime::Trap::Interrupt) => Self("call deadline exceeded".to_owned()),
            Some(wasmtime::Trap::StackOverflow) => Self("stack overflow".to_owned()),
            _ => {
                let text = format!("{error:#}");
                if text.contains("memory") && text.contains("grow") {
                    Self(format!("memory cap reached: {text}"))
                } else {
                    Self(text)
                }
            }
        }
    }
}

/// One live instance of a watcher component.
pub struct Instance {
    store: Store<HostState>,
    bindings: bindings::Watcher,
    deadline_ticks: u64,
}

impl Instance {
    fn arm(&mut self) {
        self.store.set_epoch_deadline(self.deadline_ticks);
    }

    /// Calls `describe`.
    ///
    /// # Errors
    /// The watcher trapped.
    pub fn describe(&mut self) -> Result<wit::Manifest, Trap> {
        self.arm();
        self.bindings
            .lookout_watcher_plugin()
            .call_describe(&mut self.store)
            .map_err(|e| Trap::from_error(&e))
    }

    /// Calls `configure`; the inner error is the watcher's own message.
    ///
    /// # Errors
    /// The watcher trapped.
    pub fn configure(&mut self, settings: &[wit::Setting]) -> Result<Result<(), String>, Trap> {
        self.arm();
        self.bindings
            .lookout_watcher_plugin()
            .call_configure(&mut self.store, settings)
            .map_err(|e| Trap::from_error(&e))
    }

    /// Calls `observe`.
    ///
    /// # Errors
    /// The watcher trapped.
    pub fn observe(&mut self, snapshot: &wit::Snapshot) -> Result<Vec<wit::Event>, Trap> {
        self.arm();
        self.bindings
            .lookout_watcher_plugin()
            .call_observe(&mut self.store, snapshot)
            .map_err(|e| Trap::from_error(&e))
    }
}

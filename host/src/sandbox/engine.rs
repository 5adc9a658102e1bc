//! The wasmtime engine shared by every watcher and target: compiling a
//! `.wasm` (or fetching it from the on-disk cache), checking it against the
//! `lookout:watcher` world, and pre-linking it once so each target's
//! instance is cheap to create.

use std::path::Path;

use anyhow::{Context, Result, anyhow, bail};
use wasmtime::component::{Component, Linker};

use super::store::HostState;

/// Generated bindings of the `lookout:watcher` world; the one place the
/// host reads the WIT package. Exports are called asynchronously so that a
/// call can be abandoned at its deadline wherever it is, host calls
/// included.
pub mod bindings {
    #![allow(missing_docs)]
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "watcher",
        exports: { default: async },
    });
}

/// WIT package this host speaks.
pub const PACKAGE: &str = "lookout:watcher";
/// Version of [`PACKAGE`].
pub const VERSION: &str = "0.2.0";
/// The interface a watcher exports.
pub const EXPORT: &str = "lookout:watcher/plugin@0.2.0";

/// A compiled, checked and pre-linked watcher component; cheap to clone and
/// shared by every target's instances.
#[derive(Clone)]
pub struct Compiled {
    pub(crate) pre: bindings::WatcherPre<HostState>,
}

/// The engine and linker shared by every watcher.
#[derive(Clone)]
pub struct Engine {
    pub(crate) engine: wasmtime::Engine,
    linker: Linker<HostState>,
}

impl Engine {
    /// Builds an engine with fuel metering (so running wasm yields to the
    /// async runtime regularly and a deadline can stop it) and, when
    /// `cache_dir` is given, an on-disk cache of compiled artifacts in that
    /// folder (keyed by the file's content and the engine configuration;
    /// only the host writes there). No thread is started: nothing runs
    /// while no watcher is called.
    ///
    /// # Errors
    /// The cache folder cannot be created or the engine fails to build.
    pub fn new(cache_dir: Option<&Path>) -> Result<Self> {
        let mut config = wasmtime::Config::new();
        config.wasm_component_model(true);
        config.consume_fuel(true);
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
        let engine = wasmtime::Engine::new(&config)?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
        Ok(Self { engine, linker })
    }

    /// Reads, compiles (or fetches from the cache), checks and pre-links the
    /// component at `path`. Blocking and CPU-heavy: run it off the async
    /// runtime's workers.
    ///
    /// # Errors
    /// The file is unreadable, larger than `max_bytes`, not a component, or
    /// built for another world or package version; the message names the
    /// file and what was expected.
    pub fn compile(&self, path: &Path, max_bytes: u64) -> Result<Compiled> {
        let shown = path.display();
        let bytes = read_checked(path, max_bytes)?;
        let component = Component::from_binary(&self.engine, &bytes)
            .map_err(|e| anyhow!("{shown}: not a valid WebAssembly component: {e:#}"))?;
        self.check_world(&component)
            .with_context(|| format!("{shown}"))?;
        let pre = self
            .linker
            .instantiate_pre(&component)
            .map_err(|e| anyhow!("{shown}: cannot link: {e:#}"))?;
        let pre =
            bindings::WatcherPre::new(pre).map_err(|e| anyhow!("{shown}: cannot link: {e:#}"))?;
        Ok(Compiled { pre })
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

/// The file's bytes once its size and header say it can be a component:
/// the cheap checks, run before any compilation.
///
/// # Errors
/// Unreadable, over `max_bytes`, not WebAssembly, or a core module.
pub fn read_checked(path: &Path, max_bytes: u64) -> Result<Vec<u8>> {
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
    Ok(bytes)
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

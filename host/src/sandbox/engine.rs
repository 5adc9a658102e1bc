//! The wasmtime engine shared by every watcher and target: compiling a
//! `.wasm` (or fetching it from the on-disk cache), checking it against the
//! `lookout:watcher` world, and pre-linking it once so each target's
//! instance is cheap to create.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};

use anyhow::{Context, Result, anyhow, bail};
use wasmtime::component::{Component, Linker};

use super::bindings::{v0_2_0, v0_3_0, v0_4_0};
use super::limits::WatcherLimits;
use super::store::{FleetBudget, HostState};
use crate::delivery::envelope::fields;
use crate::delivery::envelope::{Emitted, Level};

/// WIT package this host speaks.
pub const PACKAGE: &str = "lookout:watcher";
/// Version of [`PACKAGE`].
pub const VERSION: &str = "0.4.0";
/// The interface a watcher exports.
pub(crate) const EXPORT: &str = "lookout:watcher/plugin@0.4.0";
/// Older versions of [`PACKAGE`] this host still loads, newest first.
pub(crate) const OLDER_VERSIONS: [&str; 2] = ["0.3.0", "0.2.0"];
/// The interface prefix every version's watcher exports, followed by
/// the version.
const EXPORT_PREFIX: &str = "lookout:watcher/plugin@";

/// A compiled, checked and pre-linked watcher component; cheap to clone and
/// shared by every target's instances.
#[derive(Clone)]
pub struct Compiled {
    pub(crate) pre: Pre,
}

/// A pre-linked component of one of the ABI versions the host loads.
#[derive(Clone)]
pub(crate) enum Pre {
    /// Built for [`VERSION`], 0.4.0.
    V0_4_0(v0_4_0::WatcherPre<HostState>),
    /// Built for 0.3.0, before conditions.
    V0_3_0(v0_3_0::WatcherPre<HostState>),
    /// Built for 0.2.0, before declared probes.
    V0_2_0(v0_2_0::WatcherPre<HostState>),
}

impl Compiled {
    /// The ABI version the watcher was built for.
    #[must_use]
    pub fn abi(&self) -> &'static str {
        match self.pre {
            Pre::V0_4_0(_) => VERSION,
            Pre::V0_3_0(_) => "0.3.0",
            Pre::V0_2_0(_) => "0.2.0",
        }
    }
}

/// The engine and linker shared by every watcher; cheap to clone (every
/// target's supervisor holds one: a linker with WASI is tens of KiB, so
/// it is shared, not copied).
#[derive(Clone)]
pub struct Engine {
    pub(crate) engine: wasmtime::Engine,
    linker: Arc<Linker<HostState>>,
    /// The fleet budget of each watcher name loaded so far: every version
    /// of a watcher charges the same one, so a reload neither resets what
    /// the running instances hold nor doubles the budget.
    budgets: Arc<Mutex<HashMap<String, Arc<FleetBudget>>>>,
}

impl Engine {
    /// Builds an engine with fuel metering (so running wasm yields to the
    /// async runtime regularly and a deadline can stop it) and, when
    /// `cache_dir` is given, an on-disk cache of compiled artifacts in that
    /// folder (keyed by the file's content and the engine configuration;
    /// only the host writes there). No thread is started: nothing runs
    /// while no watcher is called.
    ///
    /// Instances get wasmtime's default memory layout (see [`Layout`]).
    ///
    /// # Errors
    /// The cache folder cannot be created or the engine fails to build.
    pub fn new(cache_dir: Option<&Path>) -> Result<Self> {
        Self::with_layout(cache_dir, Layout::Fast)
    }

    /// [`Engine::new`] with the memory layout of its instances.
    ///
    /// # Errors
    /// As [`Engine::new`].
    pub fn with_layout(cache_dir: Option<&Path>, layout: Layout) -> Result<Self> {
        let mut config = wasmtime::Config::new();
        config.wasm_component_model(true);
        config.consume_fuel(true);
        if layout == Layout::Compact {
            small_instances(&mut config);
        }
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
        Ok(Self {
            engine,
            linker: Arc::new(linker),
            budgets: Arc::default(),
        })
    }

    /// The fleet budget of the watcher `name`: the one its earlier loads
    /// used, else a new one with the budget of `limits`.
    pub(crate) fn fleet_budget(&self, name: &str, limits: &WatcherLimits) -> Arc<FleetBudget> {
        self.budgets
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(name.to_owned())
            .or_insert_with(|| Arc::new(FleetBudget::new(name, limits)))
            .clone()
    }

    /// Gives the watcher `name` the fleet budget of `limits`, once a load
    /// of it succeeded: a reload with other limits changes the budget, a
    /// failed one leaves it to the running version.
    pub fn set_fleet_budget(&self, name: &str, limits: &WatcherLimits) {
        self.fleet_budget(name, limits).set_limits(limits);
    }

    /// A warning host event for each watcher whose fleet budget refused a
    /// growth since the last call (once per watcher until its instances
    /// come back under half their budget), for the event stream; the log
    /// line was written when it happened.
    pub fn fleet_notices(&self) -> Vec<Emitted> {
        let budgets = self.budgets.lock().unwrap_or_else(PoisonError::into_inner);
        budgets
            .values()
            .filter_map(|b| b.take_unpublished())
            .map(|r| {
                let (watcher, key) = (r.watcher, r.key);
                Emitted::host(
                    Level::Warn,
                    format!(
                        "watcher {watcher} is over its fleet memory budget: its instances on all \
                         targets have grown {} beyond their initial memory and {} more was \
                         refused, over the {} budget ({key}); the instance that asked fails and \
                         restarts, the others run on; raise {key} or fix the watcher",
                        mib(r.used),
                        mib(r.requested),
                        mib(r.cap)
                    ),
                    fields! {
                        "watcher" => watcher,
                        "key" => key,
                        "requested_bytes" => r.requested,
                        "used_bytes" => r.used,
                        "budget_bytes" => r.cap,
                    },
                )
            })
            .collect()
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
        let version = self
            .check_world(&component)
            .with_context(|| format!("{shown}"))?;
        let pre = self
            .linker
            .instantiate_pre(&component)
            .map_err(|e| anyhow!("{shown}: cannot link: {e:#}"))?;
        let link = |e: wasmtime::Error| anyhow!("{shown}: cannot link: {e:#}");
        let pre = match version {
            "0.2.0" => Pre::V0_2_0(v0_2_0::WatcherPre::new(pre).map_err(link)?),
            "0.3.0" => Pre::V0_3_0(v0_3_0::WatcherPre::new(pre).map_err(link)?),
            _ => Pre::V0_4_0(v0_4_0::WatcherPre::new(pre).map_err(link)?),
        };
        Ok(Compiled { pre })
    }

    /// The version of the watcher the component is: [`VERSION`] or one of
    /// [`OLDER_VERSIONS`].
    fn check_world(&self, component: &Component) -> Result<&'static str> {
        let ty = component.component_type();
        let exports: Vec<String> = ty
            .exports(&self.engine)
            .map(|(name, _)| name.to_owned())
            .collect();
        for version in std::iter::once(VERSION).chain(OLDER_VERSIONS) {
            if exports.iter().any(|e| {
                e.strip_prefix(EXPORT_PREFIX)
                    .is_some_and(|found| found == version)
            }) {
                return Ok(version);
            }
        }
        if let Some(found) = exports.iter().find(|e| e.starts_with(EXPORT_PREFIX)) {
            let version = &found[EXPORT_PREFIX.len()..];
            bail!(
                "built for {PACKAGE}@{version}, but this host speaks {PACKAGE}@{VERSION} \
                 (and loads {}); rebuild the watcher against wit/ of this Lookout",
                OLDER_VERSIONS.join(", ")
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

/// `bytes` in MiB with one decimal, for messages.
fn mib(bytes: usize) -> String {
    format!("{:.1} MiB", bytes as f64 / f64::from(1 << 20))
}

/// How watcher instances' linear memories are laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// wasmtime's default: 4 GiB of address space reserved per memory, so
    /// compiled code needs no bounds checks (the fastest calls), but at
    /// most about 30,000 instances fit in a process's address space.
    Fast,
    /// Memories sized to what they hold (see `small_instances`): bounds
    /// checks on every access, tens of thousands of instances per process.
    Compact,
}

/// Watcher instances a process may run before it uses [`Layout::Compact`]:
/// 1,000 fast-layout memories reserve 4 TiB of the 128 TiB address space.
pub(crate) const COMPACT_FROM: usize = 1_000;

impl Layout {
    /// The layout for about `instances` watcher instances.
    #[must_use]
    pub fn for_instances(instances: usize) -> Self {
        if instances > COMPACT_FROM {
            Self::Compact
        } else {
            Self::Fast
        }
    }
}

/// Room a linear memory may grow into without moving: the default
/// `memory_mib` cap.
const GROWTH_RESERVE: u64 = 16 << 20;

/// Memory settings for thousands of instances in one process: 10,000
/// targets with three watchers are 30,000 stores, each with one linear
/// memory and one cached fiber stack. What an instance costs was measured
/// by `make bench-fleet` (host/benches/fleet.rs): about 40 KiB of RSS
/// (about 21 KiB of touched linear memory, 15 KiB of host heap for the
/// store, its instances and WASI context, 4 KiB of fiber stack), the same
/// before and after these settings, which change its address space and
/// mappings.
///
/// - `memory_reservation(0)`, `memory_guard_size(0)`,
///   `guard_before_linear_memory(false)`: wasmtime's default reserves 4 GiB
///   plus 32 MiB guards on each side per linear memory so that compiled
///   code needs no bounds checks; 30,000 of those are 122 TiB of the
///   128 TiB user address space of x86-64. Now a memory is exactly its
///   initial size (1.06 MiB for the bundled watchers, of which only the
///   touched pages are resident) and compiled code checks bounds, which
///   did not move the bench's `observe` times.
/// - `memory_reservation_for_growth`: [`GROWTH_RESERVE`]. Wasmtime adds
///   it to the initial allocation too, as an inaccessible tail (virtual
///   address space only, one more mapping). Without it every `memory.grow`
///   moved the memory (a new mapping and a copy): a watcher growing 1 MiB
///   at a time towards its cap copied so much that it overran its 50 ms
///   deadline before reaching the cap.
/// - `memory_init_cow(false)`: data segments (about 12 KiB for the bundled
///   watchers) are copied in at instantiation instead of mapped from a
///   shared image. Mapping them saved no resident memory (the watchers
///   read those pages anyway) and split each memory into four mappings.
///   With these settings an instance holds four mappings (its memory and
///   the reserve after it, its fiber stack and that stack's guard page)
///   instead of seven, against Linux's `vm.max_map_count` of 65,530 per
///   process by default: 10,000 targets with three watchers need it raised
///   to about 128k (`sysctl vm.max_map_count=131072`, a common setting).
/// - The async stack (`async_stack_size`, 2 MiB) and `max_wasm_stack`
///   (512 KiB) keep their defaults: a store keeps the stack of its last
///   call for the next one, but only its touched pages (about 4 KiB for the
///   bundled watchers) are resident, and a smaller stack would only lower
///   the recursion depth guests such as interpreters get.
/// - The on-demand allocator, not the pooling one: the pool would reserve
///   every slot up front at the largest `memory_mib` any watcher may set,
///   and slots would not make instances smaller.
fn small_instances(config: &mut wasmtime::Config) {
    config
        .memory_reservation(0)
        .memory_guard_size(0)
        .guard_before_linear_memory(false)
        .memory_reservation_for_growth(GROWTH_RESERVE)
        .memory_init_cow(false);
}

/// The file's bytes once its size and header say it can be a component:
/// the cheap checks, run before any compilation.
///
/// # Errors
/// Unreadable, over `max_bytes`, not WebAssembly, or a core module.
pub(crate) fn read_checked(path: &Path, max_bytes: u64) -> Result<Vec<u8>> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_load_of_a_watcher_charges_one_fleet_budget() {
        let engine = Engine::new(None).unwrap();
        let limits = WatcherLimits::default();
        let first = engine.fleet_budget("hog", &limits);
        // A reload with other limits, through a clone of the engine.
        let other = WatcherLimits {
            fleet_memory_bytes: 1 << 20,
            ..limits
        };
        assert!(Arc::ptr_eq(
            &first,
            &engine.clone().fleet_budget("hog", &other)
        ));
        assert!(!Arc::ptr_eq(
            &first,
            &engine.fleet_budget("ticker", &limits)
        ));
        assert_eq!(first.used(), 0);
        assert!(engine.fleet_notices().is_empty());
    }
}

//! What each watcher's store holds: its WASI context (no files, no
//! environment, no network) and the resource limiter that caps its memory
//! and records which cap was hit.

use wasmtime::ResourceLimiter;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::trap::Trap;

/// Largest table a watcher may grow to, in elements.
const MAX_TABLE_ELEMENTS: usize = 1 << 20;
/// Most instances, memories and tables one watcher's store may create.
const MAX_STORE_ITEMS: usize = 64;

/// The store's resource limiter: records which cap was hit so the failure
/// is reported by type, not by its text.
pub(crate) struct Limiter {
    memory_bytes: usize,
    hit: Option<Trap>,
}

impl Limiter {
    /// A limiter capping linear memory at `memory_bytes`.
    pub(crate) fn new(memory_bytes: usize) -> Self {
        Self {
            memory_bytes,
            hit: None,
        }
    }

    /// The cap that was hit, if any.
    pub(crate) fn hit(&self) -> Option<&Trap> {
        self.hit.as_ref()
    }
}

impl ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.memory_bytes {
            let trap = Trap::MemoryCap {
                requested: desired,
                cap: self.memory_bytes,
            };
            self.hit = Some(trap.clone());
            return Err(trap.into());
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS)
    }

    fn instances(&self) -> usize {
        MAX_STORE_ITEMS
    }

    fn tables(&self) -> usize {
        MAX_STORE_ITEMS
    }

    fn memories(&self) -> usize {
        MAX_STORE_ITEMS
    }
}

/// Per-store data: the WASI context and the limiter.
pub(crate) struct HostState {
    pub(crate) wasi: WasiCtx,
    pub(crate) table: ResourceTable,
    pub(crate) limiter: Limiter,
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

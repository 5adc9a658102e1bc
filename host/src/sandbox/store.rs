//! What each watcher's store holds: its WASI context (no files, no
//! environment, no network) and the resource limiter that caps its memory,
//! its tables and its instances, and records which cap was hit.

use wasmtime::ResourceLimiter;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::trap::Trap;

/// Most table elements all of one watcher's tables may hold together
/// (8 to 16 bytes of host memory each).
pub(crate) const MAX_TABLE_ELEMENTS: usize = 1 << 20;
/// Most core instances and tables one watcher's store may create.
pub(crate) const MAX_STORE_ITEMS: usize = 64;
/// Linear memories one watcher's store may create: one, the memory cap
/// applies to it. (A component's adapters share the main module's memory.)
pub(crate) const MAX_MEMORIES: usize = 1;

/// The store's resource limiter: records which cap was hit so the failure
/// is reported by type, not by its text.
pub(crate) struct Limiter {
    memory_bytes: usize,
    /// Elements held by every table of the store.
    table_elements: usize,
    hit: Option<Trap>,
}

impl Limiter {
    /// A limiter capping linear memory at `memory_bytes`.
    pub(crate) fn new(memory_bytes: usize) -> Self {
        Self {
            memory_bytes,
            table_elements: 0,
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
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let total = self
            .table_elements
            .saturating_add(desired.saturating_sub(current));
        if total > MAX_TABLE_ELEMENTS {
            // Like memory: `table.grow` past the cap traps, and a table
            // created too large fails its instantiation.
            let trap = Trap::TableCap {
                requested: total,
                cap: MAX_TABLE_ELEMENTS,
            };
            self.hit = Some(trap.clone());
            return Err(trap.into());
        }
        self.table_elements = total;
        Ok(true)
    }

    fn instances(&self) -> usize {
        MAX_STORE_ITEMS
    }

    fn tables(&self) -> usize {
        MAX_STORE_ITEMS
    }

    fn memories(&self) -> usize {
        MAX_MEMORIES
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

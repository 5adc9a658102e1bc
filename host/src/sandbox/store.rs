//! What each watcher's store holds: its WASI context (no files, no
//! environment, no network) and the resource limiter that caps its memory,
//! its tables and its instances, charges its memory growth to the fleet
//! budget of its watcher, and records which cap was hit.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use wasmtime::ResourceLimiter;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::limits::WatcherLimits;
use super::trap::Trap;

/// Most core instances and tables one watcher's store may create.
pub(crate) const MAX_STORE_ITEMS: usize = 64;
/// Linear memories one watcher's store may create: one, the memory cap
/// applies to it. (A component's adapters share the main module's memory.)
pub(crate) const MAX_MEMORIES: usize = 1;

/// The memory all instances of one watcher, on every target, may grow
/// beyond their initial size, together (`limits.fleet_memory_mib`). An
/// instance is charged what its memory grows and gives it back when it is
/// dropped; the growth that would go over the budget is refused. One
/// budget per watcher name, kept across reloads of the watcher (see
/// `Engine::fleet_budget`).
pub(crate) struct FleetBudget {
    watcher: String,
    /// The budget, bytes; a reload with other limits changes it.
    cap: AtomicUsize,
    /// Whether `[limits.watchers.NAME]` set the budget: messages name the
    /// key the operator would change.
    own: AtomicBool,
    /// Bytes the live instances have grown beyond their initial memory.
    used: AtomicUsize,
    /// A refusal was reported and the watcher has not fitted since (its
    /// instances back under half the budget by dropping ones never
    /// refused, or another budget): further refusals are not reported.
    warned: AtomicBool,
    /// The reported refusal, until a supervisor publishes it.
    unpublished: Mutex<Option<Refusal>>,
}

/// A memory growth the fleet budget refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Refusal {
    /// The watcher's file name.
    pub(crate) watcher: String,
    /// Bytes the instance asked for beyond what it held.
    pub(crate) requested: usize,
    /// Bytes all its instances had grown when it asked.
    pub(crate) used: usize,
    /// The budget, bytes.
    pub(crate) cap: usize,
    /// The key setting the budget.
    pub(crate) key: String,
}

impl FleetBudget {
    /// An empty budget for the watcher `watcher` with the cap of `limits`.
    pub(crate) fn new(watcher: &str, limits: &WatcherLimits) -> Self {
        Self {
            watcher: watcher.to_owned(),
            cap: AtomicUsize::new(limits.fleet_memory_bytes),
            own: AtomicBool::new(limits.fleet_memory_own),
            used: AtomicUsize::new(0),
            warned: AtomicBool::new(false),
            unpublished: Mutex::new(None),
        }
    }

    /// Takes the cap of `limits` (a reload with other limits); a changed
    /// cap reports its next refusal again.
    pub(crate) fn set_limits(&self, limits: &WatcherLimits) {
        self.own.store(limits.fleet_memory_own, Ordering::Relaxed);
        if self.cap.swap(limits.fleet_memory_bytes, Ordering::Relaxed) != limits.fleet_memory_bytes
        {
            self.warned.store(false, Ordering::Relaxed);
        }
    }

    /// The key that sets this budget.
    pub(crate) fn key(&self) -> String {
        if self.own.load(Ordering::Relaxed) {
            format!("limits.watchers.{}.fleet_memory_mib", self.watcher)
        } else {
            "limits.fleet_memory_mib".to_owned()
        }
    }

    /// Bytes the live instances have grown beyond their initial memory.
    #[cfg(test)]
    pub(crate) fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    /// Charges `bytes` more if they fit in the budget. A refusal is logged
    /// and kept for the host's event stream once, then not again until the
    /// instances have come back under half the budget.
    fn charge(&self, bytes: usize) -> Result<(), Refusal> {
        let cap = self.cap.load(Ordering::Relaxed);
        let charged = self
            .used
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |used| {
                used.checked_add(bytes).filter(|total| *total <= cap)
            });
        let used = match charged {
            Ok(used) => {
                tracing::debug!(
                    watcher = %self.watcher,
                    grown = bytes,
                    fleet_used = used + bytes,
                    "watcher memory grew"
                );
                return Ok(());
            }
            Err(used) => used,
        };
        let refusal = Refusal {
            watcher: self.watcher.clone(),
            requested: bytes,
            used,
            cap,
            key: self.key(),
        };
        if !self.warned.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                watcher = %refusal.watcher,
                requested_bytes = refusal.requested,
                used_bytes = refusal.used,
                budget_bytes = refusal.cap,
                key = %refusal.key,
                "watcher over its fleet memory budget: growth refused; the instance that asked \
                 fails, the others run on"
            );
            *self
                .unpublished
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = Some(refusal.clone());
        }
        Err(refusal)
    }

    /// Gives back `bytes` an instance held. `fits` says the instance was
    /// never refused: then the watcher fits again once its instances hold
    /// at most half the budget. (A refused instance that fails and
    /// restarts gives back what it held but the watcher does not fit the
    /// better for it.)
    fn give_back(&self, bytes: usize, fits: bool) {
        if bytes == 0 {
            return;
        }
        let before = self
            .used
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |used| {
                Some(used.saturating_sub(bytes))
            })
            .unwrap_or_default();
        if fits && before.saturating_sub(bytes) <= self.cap.load(Ordering::Relaxed) / 2 {
            self.warned.store(false, Ordering::Relaxed);
        }
    }

    /// The reported refusal not yet published, taken.
    pub(crate) fn take_unpublished(&self) -> Option<Refusal> {
        self.unpublished
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }
}

/// The store's resource limiter: caps one instance and charges its memory
/// growth to its watcher's fleet budget; records which cap was hit so the
/// failure is reported by type, not by its text.
pub(crate) struct Limiter {
    memory_bytes: usize,
    max_table_elements: usize,
    /// Elements held by every table of the store.
    table_elements: usize,
    hit: Option<Trap>,
    fleet: Arc<FleetBudget>,
    /// Size of the linear memory when it was created: not charged.
    initial: Option<usize>,
    /// Bytes charged to `fleet`: the memory's growth beyond `initial`.
    charged: usize,
    /// A growth the fleet budget refused during the current call.
    refused: Option<Trap>,
    /// Whether the fleet budget ever refused this instance a growth.
    ever_refused: bool,
}

impl Limiter {
    /// A limiter with the caps of `limits`, charging growth to `fleet`.
    pub(crate) fn new(limits: &WatcherLimits, fleet: Arc<FleetBudget>) -> Self {
        Self {
            memory_bytes: limits.memory_bytes,
            max_table_elements: limits.max_table_elements,
            table_elements: 0,
            hit: None,
            fleet,
            initial: None,
            charged: 0,
            refused: None,
            ever_refused: false,
        }
    }

    /// The cap that was hit, if any, or the fleet budget's refusal during
    /// the current call (a watcher whose allocation failed traps after it).
    pub(crate) fn hit(&self) -> Option<&Trap> {
        self.hit.as_ref().or(self.refused.as_ref())
    }

    /// A new call starts: a refusal the previous call survived is not the
    /// reason this one fails.
    pub(crate) fn call_starts(&mut self) {
        self.refused = None;
    }
}

impl Drop for Limiter {
    fn drop(&mut self) {
        self.fleet.give_back(self.charged, !self.ever_refused);
    }
}

impl ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        current: usize,
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
        let Some(initial) = self.initial else {
            // The memory being created (the store has one): its initial
            // size, bounded by the cap above and the file's, is free.
            self.initial = Some(desired);
            return Ok(true);
        };
        // A growth granted but failed afterwards (the system's refusal) is
        // given back here.
        let grown = current.saturating_sub(initial);
        if grown < self.charged {
            self.fleet.give_back(self.charged - grown, false);
            self.charged = grown;
        }
        let more = desired.saturating_sub(initial).saturating_sub(self.charged);
        match self.fleet.charge(more) {
            Ok(()) => {
                self.charged += more;
                Ok(true)
            }
            Err(refusal) => {
                // `memory.grow` returns -1: the watcher may cope; one written
                // in Rust aborts (a trap) when its allocation fails.
                self.ever_refused = true;
                self.refused = Some(Trap::FleetBudget {
                    requested: refusal.requested,
                    used: refusal.used,
                    cap: refusal.cap,
                    key: refusal.key,
                });
                Ok(false)
            }
        }
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
        if total > self.max_table_elements {
            // Like memory: `table.grow` past the cap traps, and a table
            // created too large fails its instantiation.
            let trap = Trap::TableCap {
                requested: total,
                cap: self.max_table_elements,
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

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: usize = 1 << 20;

    fn limits(fleet_mib: usize) -> WatcherLimits {
        WatcherLimits {
            fleet_memory_bytes: fleet_mib * MIB,
            ..WatcherLimits::default()
        }
    }

    /// A limiter whose memory was created at 1 MiB.
    fn instance(fleet: &Arc<FleetBudget>) -> Limiter {
        let mut limiter = Limiter::new(&limits(0), fleet.clone());
        assert!(limiter.memory_growing(0, MIB, None).unwrap());
        limiter
    }

    #[test]
    fn growth_beyond_the_initial_memory_is_charged_to_the_fleet_and_given_back() {
        let fleet = Arc::new(FleetBudget::new("hog", &limits(10)));
        let mut a = instance(&fleet);
        let mut b = instance(&fleet);
        assert_eq!(fleet.used(), 0, "initial memories are free");
        assert!(a.memory_growing(MIB, 7 * MIB, None).unwrap());
        assert_eq!(fleet.used(), 6 * MIB);
        // 6 + 5 > 10: refused without a trap, and reported once.
        assert!(!b.memory_growing(MIB, 6 * MIB, None).unwrap());
        assert!(matches!(
            b.hit(),
            Some(Trap::FleetBudget { requested, used, cap, key })
                if *requested == 5 * MIB && *used == 6 * MIB && *cap == 10 * MIB
                    && key == "limits.fleet_memory_mib"
        ));
        let refusal = fleet.take_unpublished().unwrap();
        assert_eq!(
            (refusal.watcher.as_str(), refusal.requested),
            ("hog", 5 * MIB)
        );
        assert!(!b.memory_growing(MIB, 6 * MIB, None).unwrap());
        assert_eq!(fleet.take_unpublished(), None, "reported once");
        // A smaller growth fits; a new call forgets the old refusal.
        assert!(b.memory_growing(MIB, 4 * MIB, None).unwrap());
        b.call_starts();
        assert_eq!(b.hit(), None);
        assert_eq!(fleet.used(), 9 * MIB);
        // The refused instance fails and a fresh one takes its place: what
        // it held comes back, but the watcher does not fit the better.
        drop(b);
        assert_eq!(fleet.used(), 6 * MIB, "a dropped instance gives back");
        let mut c = instance(&fleet);
        assert!(!c.memory_growing(MIB, 6 * MIB, None).unwrap());
        assert_eq!(fleet.take_unpublished(), None, "still reported once");
        // An instance never refused goes: under half the budget again, the
        // next refusal is reported.
        drop(a);
        assert_eq!(fleet.used(), 0);
        assert!(!c.memory_growing(MIB, 15 * MIB, None).unwrap());
        assert!(fleet.take_unpublished().is_some());
        drop(c);
        assert_eq!(fleet.used(), 0);
    }

    #[test]
    fn the_per_instance_caps_come_first() {
        let fleet = Arc::new(FleetBudget::new("w", &limits(1024)));
        let mut limiter = instance(&fleet);
        let cap = WatcherLimits::default().memory_bytes;
        assert!(limiter.memory_growing(MIB, cap + 1, None).is_err());
        assert!(matches!(limiter.hit(), Some(Trap::MemoryCap { .. })));
        assert_eq!(fleet.used(), 0);
        let mut limiter = instance(&fleet);
        assert!(limiter.table_growing(0, 9_000, None).unwrap());
        assert!(limiter.table_growing(0, 1_001, None).is_err());
        assert!(matches!(
            limiter.hit(),
            Some(Trap::TableCap {
                requested: 10_001,
                cap: 10_000
            })
        ));
    }

    #[test]
    fn a_budget_set_per_watcher_names_its_key() {
        let own = WatcherLimits {
            fleet_memory_own: true,
            ..limits(1)
        };
        let fleet = Arc::new(FleetBudget::new("hog", &own));
        let mut limiter = instance(&fleet);
        assert!(!limiter.memory_growing(MIB, 3 * MIB, None).unwrap());
        assert_eq!(
            fleet.take_unpublished().unwrap().key,
            "limits.watchers.hog.fleet_memory_mib"
        );
        // A reload with another budget reports its next refusal again.
        fleet.set_limits(&limits(2));
        assert!(!limiter.memory_growing(MIB, 4 * MIB, None).unwrap());
        assert_eq!(
            fleet.take_unpublished().unwrap().key,
            "limits.fleet_memory_mib"
        );
    }
}

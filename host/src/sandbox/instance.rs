//! One live watcher instance in its own store: no files, no environment,
//! no network, stdio into the host log, a memory cap, and every call
//! (`describe`, `configure`, `observe`, instantiation itself) under a
//! wall-clock deadline that covers everything the call does, host calls
//! such as clock waits included. At the deadline the call's future is
//! dropped, which abandons the call wherever it is; the instance must then
//! be dropped too.

use std::future::Future;
use std::pin::pin;
use std::task::Poll;
use std::time::{Duration, Instant};

use wasmtime::component::ResourceTable;
use wasmtime::{ResourceLimiter, Store};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::engine::bindings::lookout::watcher::types as wit;
use super::engine::{Compiled, Engine, bindings};
use super::limits::WatcherLimits;
use super::stdio::LogPipe;

/// Fuel between two yields of running wasm to the async runtime: about a
/// tenth of a millisecond of guest code, the precision of a deadline on a
/// guest that computes without calling the host.
const YIELD_EVERY_FUEL: u64 = 100_000;

/// Largest table a watcher may grow to, in elements.
const MAX_TABLE_ELEMENTS: usize = 1 << 20;
/// Most instances, memories and tables one watcher's store may create.
const MAX_STORE_ITEMS: usize = 64;

/// Why a call failed. After any of these the instance is dropped and never
/// entered again.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Trap {
    /// The call was still running (in wasm or waiting in a host call) at
    /// its deadline and was abandoned.
    #[error("call deadline exceeded ({} ms)", .0.as_millis())]
    Deadline(Duration),
    /// The guest tried to grow its memory past the cap.
    #[error("memory cap reached: {requested} bytes requested, cap {cap} bytes (limits.memory_mib)")]
    MemoryCap {
        /// Size the guest asked for.
        requested: usize,
        /// The cap.
        cap: usize,
    },
    /// The guest's wasm stack overflowed.
    #[error("stack overflow")]
    StackOverflow,
    /// A wasm trap (a panic is `unreachable`), with its description.
    #[error("trapped: {0}")]
    Wasm(String),
    /// Anything else that ended the call: a failed instantiation, a host
    /// error; the text has the detail.
    #[error("{0}")]
    Other(String),
    /// There was no live instance to call.
    #[error("no live instance")]
    NoInstance,
}

impl Trap {
    fn classify(error: &wasmtime::Error, limiter: &Limiter) -> Self {
        if let Some(hit) = &limiter.hit {
            return hit.clone();
        }
        match error.downcast_ref::<wasmtime::Trap>() {
            Some(wasmtime::Trap::StackOverflow) => Self::StackOverflow,
            Some(trap) => Self::Wasm(trap.to_string()),
            None => Self::Other(format!("{error:#}")),
        }
    }
}

/// The store's resource limiter: records which cap was hit so the failure
/// is reported by type, not by its text.
pub(crate) struct Limiter {
    memory_bytes: usize,
    hit: Option<Trap>,
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
    wasi: WasiCtx,
    table: ResourceTable,
    limiter: Limiter,
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// Runs `call` until it completes or `deadline` passes, whichever comes
/// first. A guest computing yields every [`YIELD_EVERY_FUEL`], when the
/// clock is read; a guest waiting in a host call is woken by the timer.
async fn until<T>(deadline: Instant, call: impl Future<Output = T>) -> Option<T> {
    let mut call = pin!(call);
    let mut timer = pin!(tokio::time::sleep_until(deadline.into()));
    std::future::poll_fn(|cx| {
        if let Poll::Ready(v) = call.as_mut().poll(cx) {
            return Poll::Ready(Some(v));
        }
        if Instant::now() >= deadline || timer.as_mut().poll(cx).is_ready() {
            return Poll::Ready(None);
        }
        Poll::Pending
    })
    .await
}

/// One live instance of a watcher component.
pub struct Instance {
    store: Store<HostState>,
    bindings: bindings::Watcher,
    deadline: Duration,
}

impl Instance {
    /// A fresh instance of `compiled` in its own sandboxed store, built
    /// under the call deadline of `limits`.
    ///
    /// # Errors
    /// Instantiation failed (a start function trapped or overran).
    pub async fn new(
        engine: &Engine,
        compiled: &Compiled,
        name: &str,
        limits: &WatcherLimits,
    ) -> Result<Self, Trap> {
        // No preopens, no environment, no sockets; stdout and stderr go to
        // the host log. Clocks and random are the defaults.
        let wasi = WasiCtx::builder()
            .stdout(LogPipe::new(name, "stdout"))
            .stderr(LogPipe::new(name, "stderr"))
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .build();
        let mut store = Store::new(
            &engine.engine,
            HostState {
                wasi,
                table: ResourceTable::new(),
                limiter: Limiter {
                    memory_bytes: limits.memory_bytes,
                    hit: None,
                },
            },
        );
        store.limiter(|s| &mut s.limiter);
        let fuel = |store: &mut Store<HostState>| -> wasmtime::Result<()> {
            store.set_fuel(u64::MAX)?;
            store.fuel_async_yield_interval(Some(YIELD_EVERY_FUEL))
        };
        fuel(&mut store).map_err(|e| Trap::Other(format!("{e:#}")))?;
        let deadline = limits.call_deadline;
        let at = Instant::now() + deadline;
        let built = until(at, compiled.pre.instantiate_async(&mut store)).await;
        match built {
            None => Err(Trap::Deadline(deadline)),
            Some(Ok(bindings)) => Ok(Self {
                store,
                bindings,
                deadline,
            }),
            Some(Err(e)) => {
                let trap = Trap::classify(&e, &store.data().limiter);
                Err(match trap {
                    Trap::Other(text) => Trap::Other(format!("cannot instantiate: {text}")),
                    other => other,
                })
            }
        }
    }

    fn settle<T>(&mut self, result: Option<wasmtime::Result<T>>) -> Result<T, Trap> {
        match result {
            None => Err(Trap::Deadline(self.deadline)),
            Some(Ok(v)) => Ok(v),
            Some(Err(e)) => Err(Trap::classify(&e, &self.store.data().limiter)),
        }
    }

    fn refuel(&mut self) -> Instant {
        // Fuel is only the yield clock here, never a budget.
        let _ = self.store.set_fuel(u64::MAX);
        Instant::now() + self.deadline
    }

    /// Calls `describe`.
    ///
    /// # Errors
    /// The watcher trapped or overran its deadline.
    pub async fn describe(&mut self) -> Result<wit::Manifest, Trap> {
        let at = self.refuel();
        let plugin = self.bindings.lookout_watcher_plugin();
        let result = until(at, plugin.call_describe(&mut self.store)).await;
        self.settle(result)
    }

    /// Calls `configure`; the inner error is the watcher's own message.
    ///
    /// # Errors
    /// The watcher trapped or overran its deadline.
    pub async fn configure(
        &mut self,
        settings: &[wit::Setting],
    ) -> Result<Result<(), String>, Trap> {
        let at = self.refuel();
        let plugin = self.bindings.lookout_watcher_plugin();
        let result = until(at, plugin.call_configure(&mut self.store, settings)).await;
        self.settle(result)
    }

    /// Calls `observe`.
    ///
    /// # Errors
    /// The watcher trapped or overran its deadline.
    pub async fn observe(&mut self, snapshot: &wit::Snapshot) -> Result<Vec<wit::Event>, Trap> {
        let at = self.refuel();
        let plugin = self.bindings.lookout_watcher_plugin();
        let result = until(at, plugin.call_observe(&mut self.store, snapshot)).await;
        self.settle(result)
    }
}

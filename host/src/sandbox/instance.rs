//! One live watcher instance in its own store: no files, no environment,
//! no network, stdio into the host log, caps on its memory, tables and
//! WASI resources, its memory growth charged to its watcher's fleet
//! budget, and every call
//! (`describe`, `configure`, `observe`, instantiation itself) under a
//! wall-clock deadline that covers everything the call does, host calls
//! such as clock waits included. At the deadline the call's future is
//! dropped, which abandons the call wherever it is; the instance must then
//! be dropped too.

use std::future::Future;
use std::pin::pin;
use std::task::Poll;
use std::time::{Duration, Instant};

use wasmtime::Store;
use wasmtime::component::{ResourceTable, ResourceTableError};
use wasmtime_wasi::WasiCtx;

use super::bindings::v0_2_0::lookout::watcher::types as v2;
use super::bindings::v0_3_0::lookout::watcher::types as v3;
use super::bindings::{v0_2_0, v0_3_0, v0_4_0, wit};
use super::engine::{Compiled, Engine, Pre};
use super::limits::WatcherLimits;
use super::stdio::LogPipe;
use super::store::{HostState, Limiter};
pub(crate) use super::trap::Trap;
use super::trap::clip;

/// Fuel between two yields of running wasm to the async runtime: about a
/// tenth of a millisecond of guest code, the precision of a deadline on a
/// guest that computes without calling the host.
const YIELD_EVERY_FUEL: u64 = 100_000;

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

/// Why a call or an instantiation in `store` failed with `error`: a cap the
/// limiter recorded, a full WASI resource table, else the error's own kind.
fn classify(store: &Store<HostState>, error: &wasmtime::Error) -> Trap {
    let state = store.data();
    if let Some(hit) = state.limiter.hit() {
        return hit.clone();
    }
    let full = error.chain().any(|cause| {
        matches!(
            cause.downcast_ref::<ResourceTableError>(),
            Some(ResourceTableError::Full)
        )
    });
    if full {
        return Trap::ResourceCap {
            cap: state.table.max_capacity(),
        };
    }
    Trap::classify(error, None)
}

/// One live instance of a watcher component.
pub struct Instance {
    store: Store<HostState>,
    bindings: Live,
    deadline: Duration,
}

/// The exports of an instance of one of the ABI versions.
enum Live {
    V0_4_0(v0_4_0::Watcher),
    V0_3_0(v0_3_0::Watcher),
    V0_2_0(v0_2_0::Watcher),
}

impl Instance {
    /// A fresh instance of `compiled` in its own sandboxed store, built
    /// under the call deadline and caps of `limits`, its memory growth
    /// charged to the fleet budget of the watcher `name`.
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
        let mut table = ResourceTable::new();
        table.set_max_capacity(limits.max_resources);
        let mut store = Store::new(
            &engine.engine,
            HostState {
                wasi,
                table,
                limiter: Limiter::new(limits, engine.fleet_budget(name, limits)),
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
        let built = match &compiled.pre {
            Pre::V0_4_0(pre) => until(at, pre.instantiate_async(&mut store))
                .await
                .map(|r| r.map(Live::V0_4_0)),
            Pre::V0_3_0(pre) => until(at, pre.instantiate_async(&mut store))
                .await
                .map(|r| r.map(Live::V0_3_0)),
            Pre::V0_2_0(pre) => until(at, pre.instantiate_async(&mut store))
                .await
                .map(|r| r.map(Live::V0_2_0)),
        };
        match built {
            None => Err(Trap::Deadline(deadline)),
            Some(Ok(bindings)) => Ok(Self {
                store,
                bindings,
                deadline,
            }),
            Some(Err(e)) => {
                let trap = classify(&store, &e);
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
            Some(Err(e)) => Err(classify(&self.store, &e)),
        }
    }

    fn refuel(&mut self) -> Instant {
        // Fuel is only the yield clock here, never a budget.
        let _ = self.store.set_fuel(u64::MAX);
        self.store.data_mut().limiter.call_starts();
        Instant::now() + self.deadline
    }

    /// Calls `describe`.
    ///
    /// # Errors
    /// The watcher trapped or overran its deadline.
    pub async fn describe(&mut self) -> Result<wit::Manifest, Trap> {
        let at = self.refuel();
        let result = match &self.bindings {
            Live::V0_4_0(live) => {
                let plugin = live.lookout_watcher_plugin();
                until(at, plugin.call_describe(&mut self.store)).await
            }
            Live::V0_3_0(live) => {
                let plugin = live.lookout_watcher_plugin();
                until(at, plugin.call_describe(&mut self.store))
                    .await
                    .map(|r| r.map(wit::Manifest::from))
            }
            Live::V0_2_0(live) => {
                let plugin = live.lookout_watcher_plugin();
                until(at, plugin.call_describe(&mut self.store))
                    .await
                    .map(|r| r.map(wit::Manifest::from))
            }
        };
        self.settle(result)
    }

    /// Calls `configure`; `Ok(Some(needs))` is what the watcher narrowed
    /// its manifest's needs to (0.4.0 and later; older watchers narrow
    /// nothing); the inner error is the watcher's own message, cut to
    /// [`MAX_TEXT_BYTES`](super::trap::MAX_TEXT_BYTES).
    ///
    /// # Errors
    /// The watcher trapped or overran its deadline.
    pub async fn configure(
        &mut self,
        settings: &[wit::Setting],
    ) -> Result<Result<Option<wit::Needs>, String>, Trap> {
        let at = self.refuel();
        let result = match &self.bindings {
            Live::V0_4_0(live) => {
                let plugin = live.lookout_watcher_plugin();
                until(at, plugin.call_configure(&mut self.store, settings)).await
            }
            Live::V0_3_0(live) => {
                let plugin = live.lookout_watcher_plugin();
                let settings: Vec<_> = settings.iter().map(v3::Setting::from).collect();
                until(at, plugin.call_configure(&mut self.store, &settings))
                    .await
                    .map(|r| r.map(|r| r.map(|()| None)))
            }
            Live::V0_2_0(live) => {
                let plugin = live.lookout_watcher_plugin();
                let settings: Vec<_> = settings.iter().map(v2::Setting::from).collect();
                until(at, plugin.call_configure(&mut self.store, &settings))
                    .await
                    .map(|r| r.map(|r| r.map(|()| None)))
            }
        };
        Ok(self.settle(result)?.map_err(|reason| clip(&reason)))
    }

    /// Calls `observe`.
    ///
    /// # Errors
    /// The watcher trapped or overran its deadline.
    pub async fn observe(&mut self, snapshot: &wit::Snapshot) -> Result<Vec<wit::Event>, Trap> {
        let at = self.refuel();
        let result = match &self.bindings {
            Live::V0_4_0(live) => {
                let plugin = live.lookout_watcher_plugin();
                until(at, plugin.call_observe(&mut self.store, snapshot)).await
            }
            Live::V0_3_0(live) => {
                let plugin = live.lookout_watcher_plugin();
                let snapshot = v3::Snapshot::from(snapshot);
                until(at, plugin.call_observe(&mut self.store, &snapshot))
                    .await
                    .map(|r| r.map(|events| events.into_iter().map(wit::Event::from).collect()))
            }
            Live::V0_2_0(live) => {
                let plugin = live.lookout_watcher_plugin();
                let snapshot = v2::Snapshot::from(snapshot);
                until(at, plugin.call_observe(&mut self.store, &snapshot))
                    .await
                    .map(|r| r.map(|events| events.into_iter().map(wit::Event::from).collect()))
            }
        };
        self.settle(result)
    }
}

//! SDK for Lookout watchers: the `lookout:watcher@0.4.0` bindings, generated
//! once here for every watcher, plus small helpers for reading INFO fields
//! and settings, building manifests and events, keeping state between polls
//! (a [`Counter`], a [`Conditions`] tracker that fires and resolves a
//! condition per key) and writing native unit tests.
//!
//! A watcher crate can write the exported interface in either of two ways.
//!
//! **[`Watch`] and [`export!`]** (what the bundled watchers do): the watcher
//! is a plain type holding its state; the macro implements [`Guest`] for it,
//! keeps one value of it between polls and exports it on wasm targets.
//!
//! ```
//! use lookout_watcher::{
//!     Cadence, ConfigKey, Event, Level, Manifest, Needs, Setting, Settings, Snapshot, Watch,
//! };
//!
//! struct Example {
//!     /// Report only counts above this.
//!     min: u64,
//! }
//!
//! impl Watch for Example {
//!     fn manifest() -> Manifest {
//!         // Runs every poll unless `with_cadence` says otherwise.
//!         Manifest::new("example", "0.1.0", "reports the client count every 5th poll")
//!             .with_config(vec![ConfigKey::new("min", 0i64, "report only counts above this")])
//!             .with_needs(Needs::info(&["connected_clients"]))
//!             .with_cadence(Cadence::EveryPolls(5))
//!     }
//!     fn from_settings(settings: &[Setting]) -> Result<Self, String> {
//!         let min = Settings::new(settings).integer("min", 0)?;
//!         let min = u64::try_from(min).map_err(|_| lookout_watcher::invalid("min", ">= 0", min))?;
//!         Ok(Example { min })
//!     }
//!     fn observe(&mut self, snapshot: &Snapshot) -> Vec<Event> {
//!         match snapshot.info_u64("connected_clients") {
//!             Ok(n) if n > self.min => {
//!                 vec![Event::new(Level::Debug, format!("{n} clients")).field("clients", n)]
//!             }
//!             _ => Vec::new(),
//!         }
//!     }
//! }
//!
//! lookout_watcher::export!(Example);
//!
//! // Natively the macro's `Guest` impl can be called directly, as in a unit test:
//! use lookout_watcher::Guest;
//! use lookout_watcher::testing::{SnapshotBuilder, setting};
//!
//! Example::configure(vec![setting("min", 2i64)]).unwrap();
//! assert_eq!(Example::describe().cadence, Cadence::EveryPolls(5));
//! let snap = SnapshotBuilder::new().info("clients", "connected_clients", "3").build();
//! assert_eq!(<Example as Guest>::observe(snap).len(), 1);
//! ```
//!
//! **[`Guest`] by hand**, for full control: implement the three functions on
//! a unit struct, keep any state in a `static` (a [`Slot`]), and export it
//! with [`export_watcher!`], gated to wasm:
//!
//! ```
//! use lookout_watcher::{Cadence, Event, Guest, Level, Manifest, Needs, Setting, Snapshot};
//!
//! struct Component;
//!
//! impl Guest for Component {
//!     fn describe() -> Manifest {
//!         Manifest {
//!             name: "example".to_string(),
//!             version: "0.1.0".to_string(),
//!             description: "reports the client count every poll".to_string(),
//!             config: Vec::new(),
//!             needs: Needs::info(&["connected_clients"]),
//!             cadence: Cadence::EveryPoll,
//!         }
//!     }
//!     fn configure(_settings: Vec<Setting>) -> Result<Option<Needs>, String> {
//!         // `Some(needs)` would narrow the manifest's needs to these settings'.
//!         Ok(None)
//!     }
//!     fn observe(snapshot: Snapshot) -> Vec<Event> {
//!         match snapshot.info_u64("connected_clients") {
//!             Ok(n) => vec![Event::new(Level::Debug, format!("{n} clients")).field("clients", n)],
//!             Err(_) => Vec::new(),
//!         }
//!     }
//! }
//!
//! #[cfg(target_family = "wasm")]
//! lookout_watcher::export_watcher!(Component);
//! ```
//!
//! The crate compiles on the native target too, so watcher logic is tested
//! with a plain `cargo test`. `docs/sdk.md` in the Lookout checkout is the
//! reference of every public item, readable without building anything (a
//! test keeps it naming them all).

// Lets the generated code name this crate by its public path, the same way
// it does when the export macro expands inside a watcher crate.
extern crate self as lookout_watcher;

/// Bindings generated from `wit/watcher.wit` (world `watcher`).
///
/// Use the re-exports at the crate root; this module is public so that the
/// [`export_watcher!`] macro can reach it from watcher crates.
#[allow(unsafe_code, missing_docs, clippy::all)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "watcher",
        pub_export_macro: true,
        export_macro_name: "export_watcher",
        default_bindings_module: "lookout_watcher::bindings",
        runtime_path: "lookout_watcher::__rt",
        additional_derives: [PartialEq],
    });
}

#[doc(hidden)]
pub use wit_bindgen::rt as __rt;

pub use bindings::exports::lookout::watcher::plugin::Guest;
pub use bindings::lookout::watcher::types::{
    Cadence, Client, Condition, ConditionState, ConfigKey, Event, Field, InfoField, LatencySpike,
    Level, Manifest, Needs, Probe, ProbeReading, Reading, Setting, SlowlogEntry, Snapshot,
    StreamGroup, StreamInfo, Value, ValueKind,
};

mod conditions;
mod counter;
mod event;
pub mod format;
mod info;
mod probes;
mod settings;
pub mod slowlog;
mod state;
pub mod testing;
mod watch;

pub use conditions::{Conditions, Transition};
pub use counter::{Change, Counter, Restarts};
pub use info::{InfoError, Keyspace};
pub use probes::{FieldError, stream_keys};
pub use settings::{Settings, invalid};
pub use state::Slot;
pub use watch::{Exported, Watch};

/// Exports a type implementing [`Guest`] as the component's
/// `lookout:watcher/plugin` implementation: `export_watcher!(Component);`.
/// Invoke it once, in the watcher crate ([`export!`] invokes it for a
/// [`Watch`]). Gate it with
/// `#[cfg(target_family = "wasm")]` if the crate is also built natively as a
/// `cdylib`: the exported names (`lookout:watcher/plugin@0.4.0#observe`) are
/// not valid symbols in a native shared library.
pub use bindings::export_watcher;

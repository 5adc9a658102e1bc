//! Component glue: the exported `lookout:watcher/plugin` functions, with
//! one [`Slowlog`] kept between polls.
// Natively nothing is exported, so the glue is only reached from tests.
#![cfg_attr(not(target_family = "wasm"), allow(dead_code))]

use lookout_watcher::{Event, Guest, Manifest, Setting, Slot, Snapshot};

use crate::{Config, Slowlog};

/// The instance's watcher; `configure` replaces it (fresh state).
static STATE: Slot<Slowlog> = Slot::new();

/// Implements the exported interface. Natively (unit tests) it is called
/// directly instead of being exported.
struct Component;

impl Guest for Component {
    fn describe() -> Manifest {
        crate::manifest()
    }

    fn configure(settings: Vec<Setting>) -> Result<(), String> {
        STATE.set(Slowlog::new(Config::from_settings(&settings)?));
        Ok(())
    }

    fn observe(snapshot: Snapshot) -> Vec<Event> {
        STATE.with(|| Slowlog::new(Config::default()), |w| w.observe(&snapshot))
    }
}

// Only for wasm: exported names like `lookout:watcher/plugin@0.1.0#observe`
// are not valid symbol names in a native shared library.
#[cfg(target_family = "wasm")]
lookout_watcher::export_watcher!(Component);

#[cfg(test)]
mod tests {
    use lookout_watcher::testing::{SnapshotBuilder, setting};
    use lookout_watcher::{Guest, SlowlogEntry};

    use super::Component;

    #[test]
    fn state_survives_between_calls() {
        assert_eq!(Component::describe().name, "slowlog");
        assert_eq!(
            Component::configure(vec![setting("max_arg_len", 0i64)]).unwrap_err(),
            "key `max_arg_len` must be >= 1, got 0"
        );
        Component::configure(vec![
            setting("ignore_clients", "lookout"),
            setting("max_arg_len", 128i64),
        ])
        .unwrap();
        let snap = |ids: &[u64]| {
            SnapshotBuilder::new()
                .info("server", "run_id", "r1")
                .slowlog(
                    ids.iter()
                        .map(|&id| SlowlogEntry::new(id, 1, &["get"]))
                        .collect(),
                )
                .build()
        };
        assert_eq!(Component::observe(snap(&[1, 2])).len(), 2);
        assert_eq!(Component::observe(snap(&[2, 3])).len(), 1);
    }
}

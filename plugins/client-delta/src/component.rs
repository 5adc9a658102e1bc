//! Component glue: the exported `lookout:watcher/plugin` functions, with
//! one [`ClientDelta`] kept between polls.
// Natively nothing is exported, so the glue is only reached from tests.
#![cfg_attr(not(target_family = "wasm"), allow(dead_code))]

use lookout_watcher::{Event, Guest, Manifest, Setting, Slot, Snapshot};

use crate::{ClientDelta, Config};

/// The instance's watcher; `configure` replaces it (fresh state).
static STATE: Slot<ClientDelta> = Slot::new();

/// Implements the exported interface. Natively (unit tests) it is called
/// directly instead of being exported.
struct Component;

impl Guest for Component {
    fn describe() -> Manifest {
        crate::manifest()
    }

    fn configure(settings: Vec<Setting>) -> Result<(), String> {
        STATE.set(ClientDelta::new(Config::from_settings(&settings)?));
        Ok(())
    }

    fn observe(snapshot: Snapshot) -> Vec<Event> {
        STATE.with(
            || ClientDelta::new(Config::default()),
            |w| w.observe(&snapshot),
        )
    }
}

// Only for wasm: exported names like `lookout:watcher/plugin@0.1.0#observe`
// are not valid symbol names in a native shared library.
#[cfg(target_family = "wasm")]
lookout_watcher::export_watcher!(Component);

#[cfg(test)]
mod tests {
    use lookout_watcher::Guest;
    use lookout_watcher::testing::{SnapshotBuilder, setting};

    use super::Component;

    #[test]
    fn state_survives_between_calls() {
        assert_eq!(Component::describe().name, "client-delta");
        assert_eq!(
            Component::configure(vec![setting("threshold", -3i64)]).unwrap_err(),
            "key `threshold` must be >= 0, got -3"
        );
        Component::configure(vec![setting("threshold", 5i64)]).unwrap();
        let snap = |n: &str| {
            SnapshotBuilder::new()
                .info("clients", "connected_clients", n)
                .build()
        };
        assert!(Component::observe(snap("3")).is_empty());
        assert_eq!(Component::observe(snap("14")).len(), 1);
        assert!(Component::observe(snap("15")).is_empty());
    }
}

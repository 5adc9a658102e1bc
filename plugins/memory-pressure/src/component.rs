//! Component glue: the exported `lookout:watcher/plugin` functions, with
//! one [`MemoryPressure`] kept between polls.
// Natively nothing is exported, so the glue is only reached from tests.
#![cfg_attr(not(target_family = "wasm"), allow(dead_code))]

use lookout_watcher::{Event, Guest, Manifest, Setting, Slot, Snapshot};

use crate::{Config, MemoryPressure};

/// The instance's watcher; `configure` replaces it (fresh state).
static STATE: Slot<MemoryPressure> = Slot::new();

/// Implements the exported interface. Natively (unit tests) it is called
/// directly instead of being exported.
struct Component;

impl Guest for Component {
    fn describe() -> Manifest {
        crate::manifest()
    }

    fn configure(settings: Vec<Setting>) -> Result<(), String> {
        STATE.set(MemoryPressure::new(Config::from_settings(&settings)?));
        Ok(())
    }

    fn observe(snapshot: Snapshot) -> Vec<Event> {
        STATE.with(
            || MemoryPressure::new(Config::default()),
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
        assert_eq!(Component::describe().name, "memory-pressure");
        assert_eq!(
            Component::configure(vec![setting("ratio", 0.0)]).unwrap_err(),
            "key `ratio` must be > 0 and <= 10, got 0"
        );
        Component::configure(vec![setting("ratio", 0.5), setting("remind_every", 0i64)]).unwrap();
        let snap = |rss: &str| {
            SnapshotBuilder::new()
                .info("memory", "used_memory_rss", rss)
                .info("memory", "maxmemory", "100")
                .build()
        };
        assert_eq!(Component::observe(snap("90")).len(), 1);
        assert!(Component::observe(snap("90")).is_empty());
        assert_eq!(Component::observe(snap("10")).len(), 1);
    }
}

//! The `client-delta` watcher: an info event when `connected_clients`
//! moves by more than `threshold` between two polls.
//!
//! The first poll only records a baseline. Every later poll compares with
//! the previous one and then becomes the new baseline, so the delta is
//! always "since the last poll". A missing or unparseable field is ignored
//! (no event, baseline kept).

use lookout_watcher::{
    Cadence, ConfigKey, Event, Level, Manifest, Needs, Setting, Settings, Snapshot, Watch, invalid,
};

lookout_watcher::export!(ClientDelta);

/// The watcher's name, the envelopes' `target`.
pub const NAME: &str = "client-delta";
/// Default of `threshold`.
pub const DEFAULT_THRESHOLD: i64 = 5;
/// The INFO field watched.
pub const FIELD: &str = "connected_clients";

/// Validated settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    /// A change must exceed this (in absolute value) to be reported.
    pub threshold: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            threshold: DEFAULT_THRESHOLD as u64,
        }
    }
}

impl Config {
    /// Reads and checks the settings handed to `configure`; the error names
    /// the offending key.
    pub fn from_settings(settings: &[Setting]) -> Result<Self, String> {
        let threshold = Settings::new(settings).integer("threshold", DEFAULT_THRESHOLD)?;
        let threshold =
            u64::try_from(threshold).map_err(|_| invalid("threshold", ">= 0", threshold))?;
        Ok(Config { threshold })
    }
}

/// The watcher's logic and state.
#[derive(Debug, Clone)]
pub struct ClientDelta {
    config: Config,
    /// `connected_clients` at the previous poll that had it.
    previous: Option<u64>,
}

impl ClientDelta {
    /// A watcher with no baseline yet.
    pub fn new(config: Config) -> Self {
        ClientDelta {
            config,
            previous: None,
        }
    }

    /// The current baseline.
    pub fn previous(&self) -> Option<u64> {
        self.previous
    }
}

impl Watch for ClientDelta {
    fn manifest() -> Manifest {
        Manifest {
            name: NAME.to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            description:
                "reports connected_clients changing by more than a threshold between polls"
                    .to_string(),
            config: vec![ConfigKey::new(
                "threshold",
                DEFAULT_THRESHOLD,
                "report when connected_clients moves by more than this between two polls; at least 0",
            )],
            needs: Needs::info(&[FIELD]),
            cadence: Cadence::EveryPoll,
        }
    }

    fn from_settings(settings: &[Setting]) -> Result<Self, String> {
        Config::from_settings(settings).map(ClientDelta::new)
    }

    /// Compares with the previous poll; at most one event.
    fn observe(&mut self, snapshot: &Snapshot) -> Vec<Event> {
        let Ok(current) = snapshot.info_u64(FIELD) else {
            return Vec::new();
        };
        let Some(previous) = self.previous.replace(current) else {
            return Vec::new();
        };
        let delta = i128::from(current) - i128::from(previous);
        if delta.unsigned_abs() <= u128::from(self.config.threshold) {
            return Vec::new();
        }
        let delta = i64::try_from(delta).unwrap_or(if delta < 0 { i64::MIN } else { i64::MAX });
        let msg = format!("connected clients {previous} -> {current} ({delta:+})");
        vec![
            Event::new(Level::Info, msg)
                .field("previous", previous)
                .field("current", current)
                .field("delta", delta)
                .field("threshold", self.config.threshold),
        ]
    }
}

#[cfg(test)]
mod tests {
    use lookout_watcher::testing::{SnapshotBuilder, fields, setting};
    use lookout_watcher::{Guest, Value};

    use super::*;

    fn snap(clients: &str) -> Snapshot {
        SnapshotBuilder::new()
            .info("clients", FIELD, clients)
            .build()
    }

    fn watcher(threshold: u64) -> ClientDelta {
        ClientDelta::new(Config { threshold })
    }

    #[test]
    fn manifest_declares_needs_and_config() {
        let m = ClientDelta::manifest();
        assert_eq!(m.name, "client-delta");
        assert_eq!(m.version, "0.1.0");
        assert_eq!(m.cadence, Cadence::EveryPoll);
        assert_eq!(m.needs.info_fields, ["connected_clients"]);
        assert!(m.needs.info_sections.is_empty());
        assert!(!m.needs.slowlog);
        assert_eq!(m.config.len(), 1);
        assert_eq!(m.config[0].name, "threshold");
        assert_eq!(m.config[0].default, Value::Integer(5));
    }

    #[test]
    fn first_poll_is_a_baseline() {
        let mut w = watcher(5);
        assert!(w.observe(&snap("100")).is_empty());
        assert_eq!(w.previous(), Some(100));
    }

    #[test]
    fn rise_above_threshold_reports() {
        let mut w = watcher(5);
        w.observe(&snap("3"));
        let events = w.observe(&snap("14"));
        assert_eq!(events.len(), 1);
        let e = &events[0];
        assert_eq!(e.level, Level::Info);
        assert_eq!(e.msg, "connected clients 3 -> 14 (+11)");
        assert_eq!(
            fields(e),
            [
                ("previous", &Value::Integer(3)),
                ("current", &Value::Integer(14)),
                ("delta", &Value::Integer(11)),
                ("threshold", &Value::Integer(5)),
            ]
        );
    }

    #[test]
    fn fall_reports_a_negative_delta() {
        let mut w = watcher(5);
        w.observe(&snap("14"));
        let events = w.observe(&snap("3"));
        assert_eq!(events[0].msg, "connected clients 14 -> 3 (-11)");
        assert_eq!(events[0].get("delta"), Some(&Value::Integer(-11)));
    }

    #[test]
    fn change_equal_to_threshold_does_not_fire() {
        let mut w = watcher(5);
        w.observe(&snap("10"));
        assert!(w.observe(&snap("15")).is_empty());
        assert!(w.observe(&snap("10")).is_empty());
        assert_eq!(w.observe(&snap("16")).len(), 1);
    }

    #[test]
    fn baseline_moves_every_poll() {
        let mut w = watcher(5);
        w.observe(&snap("10"));
        // Creeping up by 4 per poll never fires: each delta is since the last poll.
        for n in [14, 18, 22, 26] {
            assert!(w.observe(&snap(&n.to_string())).is_empty());
        }
        assert_eq!(w.previous(), Some(26));
    }

    #[test]
    fn zero_threshold_fires_on_any_change() {
        let mut w = watcher(0);
        w.observe(&snap("10"));
        assert!(w.observe(&snap("10")).is_empty());
        assert_eq!(w.observe(&snap("11")).len(), 1);
    }

    #[test]
    fn missing_or_bad_field_changes_nothing() {
        let mut w = watcher(5);
        assert!(w.observe(&SnapshotBuilder::new().build()).is_empty());
        assert_eq!(w.previous(), None);
        w.observe(&snap("10"));
        assert!(w.observe(&snap("lots")).is_empty());
        assert!(w.observe(&SnapshotBuilder::new().build()).is_empty());
        assert_eq!(w.previous(), Some(10));
        assert_eq!(w.observe(&snap("20")).len(), 1);
    }

    #[test]
    fn configure_defaults_and_rejections() {
        assert_eq!(Config::from_settings(&[]).unwrap().threshold, 5);
        assert_eq!(
            Config::from_settings(&[setting("threshold", 0i64)])
                .unwrap()
                .threshold,
            0
        );
        assert_eq!(
            Config::from_settings(&[setting("threshold", -3i64)]).unwrap_err(),
            "key `threshold` must be >= 0, got -3"
        );
        let wrong = Config::from_settings(&[setting("threshold", "high")]).unwrap_err();
        assert_eq!(
            wrong,
            "key `threshold` must be an integer, got a text \"high\""
        );
    }

    #[test]
    fn exported_glue_keeps_state_between_calls() {
        assert_eq!(ClientDelta::describe().name, "client-delta");
        assert_eq!(
            ClientDelta::configure(vec![setting("threshold", -3i64)]).unwrap_err(),
            "key `threshold` must be >= 0, got -3"
        );
        ClientDelta::configure(vec![setting("threshold", 5i64)]).unwrap();
        let snap = |n: &str| {
            SnapshotBuilder::new()
                .info("clients", "connected_clients", n)
                .build()
        };
        assert!(<ClientDelta as Guest>::observe(snap("3")).is_empty());
        assert_eq!(<ClientDelta as Guest>::observe(snap("14")).len(), 1);
        assert!(<ClientDelta as Guest>::observe(snap("15")).is_empty());
    }
}

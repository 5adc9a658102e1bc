//! The `slowlog` watcher: one warn event per new SLOWLOG entry.
//!
//! Entries are reported oldest id first, each once: the watcher keeps the
//! highest id it has seen and skips entries at or below it. When INFO
//! `run_id` changes (Redis restarted, ids start again at 0) the mark is
//! reset. On the first poll every entry handed over is reported (the
//! resident SLOWLOG ring). Entries from clients named in `ignore_clients`
//! (by default the host's own connection, `lookout`) count toward the mark
//! but are not reported.

pub use lookout_watcher::slowlog::{ELLIPSIS, truncate};
use lookout_watcher::{
    Cadence, ConfigKey, Event, Level, Manifest, Needs, Setting, Settings, SlowlogEntry, Snapshot,
    Watch, invalid,
};

lookout_watcher::export!(Slowlog);

/// The watcher's name, the envelopes' `target`.
pub const NAME: &str = "slowlog";
/// Default of `ignore_clients`: the name the host gives its own connection.
pub const DEFAULT_IGNORE_CLIENTS: &str = "lookout";
/// Default of `max_arg_len`, bytes.
pub const DEFAULT_MAX_ARG_LEN: i64 = 128;

/// Validated settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Client names whose entries are skipped; exact, case-sensitive.
    pub ignore_clients: Vec<String>,
    /// Bytes kept of each argument, at least 1.
    pub max_arg_len: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            ignore_clients: parse_names(DEFAULT_IGNORE_CLIENTS),
            max_arg_len: DEFAULT_MAX_ARG_LEN as usize,
        }
    }
}

/// Splits a comma-separated list of names, trimming blanks, dropping empty
/// items.
fn parse_names(list: &str) -> Vec<String> {
    list.split(',')
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .map(str::to_string)
        .collect()
}

impl Config {
    /// Reads and checks the settings handed to `configure`; the error names
    /// the offending key.
    pub fn from_settings(settings: &[Setting]) -> Result<Self, String> {
        let s = Settings::new(settings);
        let ignore_clients = parse_names(s.text("ignore_clients", DEFAULT_IGNORE_CLIENTS)?);
        let max_arg_len = s.integer("max_arg_len", DEFAULT_MAX_ARG_LEN)?;
        if max_arg_len < 1 {
            return Err(invalid("max_arg_len", ">= 1", max_arg_len));
        }
        Ok(Config {
            ignore_clients,
            // Beyond usize (wasm32) every argument fits anyway.
            max_arg_len: usize::try_from(max_arg_len).unwrap_or(usize::MAX),
        })
    }
}

/// The watcher's logic and state.
#[derive(Debug, Clone)]
pub struct Slowlog {
    config: Config,
    /// Highest entry id seen since the last reset, skipped ones included.
    high_water: Option<u64>,
    /// INFO `run_id` last seen.
    run_id: Option<String>,
}

impl Slowlog {
    /// A watcher that has seen nothing yet.
    pub fn new(config: Config) -> Self {
        Slowlog {
            config,
            high_water: None,
            run_id: None,
        }
    }

    /// The highest entry id seen since the last reset.
    pub fn high_water(&self) -> Option<u64> {
        self.high_water
    }

    /// One warn event for `entry`. The command is its first argument in
    /// ASCII upper case (Redis command names are ASCII), cut like the rest.
    fn event(&self, entry: &SlowlogEntry) -> Event {
        let max = self.config.max_arg_len;
        let command = truncate(&entry.command(), max).into_owned();
        let args = entry.args_line(max);
        let shown = if command.is_empty() {
            "(no command)"
        } else {
            &command
        };
        let msg = format!("slow command {shown} took {}us", entry.duration_us);
        Event::new(Level::Warn, msg)
            .field("id", entry.id)
            .field("duration_us", entry.duration_us)
            .field("command", command)
            .field("args", args)
            .field("client_addr", &entry.client_addr)
            .field("client_name", &entry.client_name)
            .field("started_at", entry.started_at)
    }
}

impl Watch for Slowlog {
    fn manifest() -> Manifest {
        Manifest {
            name: NAME.to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            description: "reports each new SLOWLOG entry once, resetting when Redis restarts"
                .to_string(),
            config: vec![
                ConfigKey::new(
                    "ignore_clients",
                    DEFAULT_IGNORE_CLIENTS,
                    "comma-separated client names whose slow commands are not reported",
                ),
                ConfigKey::new(
                    "max_arg_len",
                    DEFAULT_MAX_ARG_LEN,
                    "bytes kept of each command argument, at least 1; longer ones are cut with …",
                ),
            ],
            needs: Needs::info(&["run_id"]).with_slowlog(),
            cadence: Cadence::EveryPoll,
        }
    }

    fn from_settings(settings: &[Setting]) -> Result<Self, String> {
        Config::from_settings(settings).map(Slowlog::new)
    }

    /// Reports the entries newer than the high-water mark, oldest first.
    fn observe(&mut self, snapshot: &Snapshot) -> Vec<Event> {
        if let Some(run_id) = snapshot.info("run_id").map(str::trim)
            && !run_id.is_empty()
            && self.run_id.as_deref() != Some(run_id)
        {
            if self.run_id.is_some() {
                // Redis restarted: its SLOWLOG ids start again at 0.
                self.high_water = None;
            }
            self.run_id = Some(run_id.to_string());
        }
        let entries = snapshot.slowlog_entries();
        let mut events = Vec::new();
        for entry in entries {
            if self.high_water.is_some_and(|mark| entry.id <= mark) {
                continue;
            }
            self.high_water = Some(entry.id);
            if self.config.ignore_clients.contains(&entry.client_name) {
                continue;
            }
            events.push(self.event(entry));
        }
        events
    }
}

#[cfg(test)]
mod tests {
    use lookout_watcher::testing::{SnapshotBuilder, fields, setting};
    use lookout_watcher::{Guest, SlowlogEntry as E, Value};

    use super::*;

    fn snap(run_id: &str, entries: Vec<E>) -> Snapshot {
        SnapshotBuilder::new()
            .info("server", "run_id", run_id)
            .slowlog(entries)
            .build()
    }

    fn ids(events: &[Event]) -> Vec<i64> {
        events
            .iter()
            .map(|e| e.get("id").and_then(Value::as_i64).unwrap())
            .collect()
    }

    fn watcher() -> Slowlog {
        Slowlog::new(Config::default())
    }

    #[test]
    fn manifest_declares_needs_and_config() {
        let m = Slowlog::manifest();
        assert_eq!(m.name, "slowlog");
        assert_eq!(m.version, "0.1.0");
        assert_eq!(m.cadence, Cadence::EveryPoll);
        assert_eq!(m.needs.info_fields, ["run_id"]);
        assert!(m.needs.info_sections.is_empty());
        assert!(m.needs.slowlog);
        let keys: Vec<_> = m.config.iter().map(|k| k.name.as_str()).collect();
        assert_eq!(keys, ["ignore_clients", "max_arg_len"]);
        assert_eq!(m.config[0].default, Value::Text("lookout".into()));
        assert_eq!(m.config[1].default, Value::Integer(128));
    }

    #[test]
    fn event_shape() {
        let mut w = watcher();
        let entry = E::new(7, 1532, &["get", "user:1"])
            .client("10.0.0.5:51234", "api")
            .started_at(1_700_000_000);
        let events = w.observe(&snap("r1", vec![entry]));
        assert_eq!(events.len(), 1);
        let e = &events[0];
        assert_eq!(e.level, Level::Warn);
        assert_eq!(e.msg, "slow command GET took 1532us");
        assert_eq!(
            fields(e),
            [
                ("id", &Value::Integer(7)),
                ("duration_us", &Value::Integer(1532)),
                ("command", &Value::Text("GET".into())),
                ("args", &Value::Text("get user:1".into())),
                ("client_addr", &Value::Text("10.0.0.5:51234".into())),
                ("client_name", &Value::Text("api".into())),
                ("started_at", &Value::Integer(1_700_000_000)),
            ]
        );
    }

    #[test]
    fn first_poll_reports_the_resident_ring_then_only_new_ids() {
        let mut w = watcher();
        let first = w.observe(&snap(
            "r1",
            vec![E::new(0, 10, &["a"]), E::new(1, 10, &["b"])],
        ));
        assert_eq!(ids(&first), [0, 1]);
        assert_eq!(w.high_water(), Some(1));
        // The same entries again plus a new one: only the new one.
        let second = w.observe(&snap(
            "r1",
            vec![
                E::new(0, 10, &["a"]),
                E::new(1, 10, &["b"]),
                E::new(2, 10, &["c"]),
            ],
        ));
        assert_eq!(ids(&second), [2]);
        assert!(
            w.observe(&snap("r1", vec![E::new(2, 10, &["c"])]))
                .is_empty()
        );
        assert!(w.observe(&snap("r1", vec![])).is_empty());
    }

    #[test]
    fn unordered_entries_are_reported_oldest_first() {
        let mut w = watcher();
        let events = w.observe(&snap(
            "r1",
            vec![
                E::new(5, 1, &["x"]),
                E::new(3, 1, &["x"]),
                E::new(4, 1, &["x"]),
            ],
        ));
        assert_eq!(ids(&events), [3, 4, 5]);
        assert_eq!(w.high_water(), Some(5));
    }

    #[test]
    fn duplicate_ids_in_one_snapshot_report_once() {
        let mut w = watcher();
        let events = w.observe(&snap(
            "r1",
            vec![E::new(3, 1, &["x"]), E::new(3, 1, &["x"])],
        ));
        assert_eq!(ids(&events), [3]);
    }

    #[test]
    fn run_id_change_resets_the_mark() {
        let mut w = watcher();
        assert_eq!(
            ids(&w.observe(&snap("r1", vec![E::new(40, 1, &["x"])]))),
            [40]
        );
        // Same run: an old id is not reported.
        assert!(
            w.observe(&snap("r1", vec![E::new(3, 1, &["x"])]))
                .is_empty()
        );
        // Restarted: ids from 0 again are.
        let after = w.observe(&snap(
            "r2",
            vec![E::new(0, 1, &["x"]), E::new(1, 1, &["y"])],
        ));
        assert_eq!(ids(&after), [0, 1]);
        assert_eq!(w.high_water(), Some(1));
        assert!(
            w.observe(&snap("r2", vec![E::new(1, 1, &["y"])]))
                .is_empty()
        );
    }

    #[test]
    fn restart_seen_before_the_slowlog_still_resets() {
        let mut w = watcher();
        w.observe(&snap("r1", vec![E::new(9, 1, &["x"])]));
        let no_slowlog = SnapshotBuilder::new()
            .info("server", "run_id", "r2")
            .build();
        assert!(w.observe(&no_slowlog).is_empty());
        assert_eq!(w.high_water(), None);
        assert_eq!(
            ids(&w.observe(&snap("r2", vec![E::new(0, 1, &["x"])]))),
            [0]
        );
    }

    #[test]
    fn missing_run_id_keeps_the_mark() {
        let mut w = watcher();
        w.observe(&snap("r1", vec![E::new(9, 1, &["x"])]));
        let anonymous = SnapshotBuilder::new()
            .slowlog(vec![E::new(2, 1, &["x"])])
            .build();
        assert!(w.observe(&anonymous).is_empty());
        assert_eq!(w.high_water(), Some(9));
        // Back to the same run_id: still no reset.
        assert!(
            w.observe(&snap("r1", vec![E::new(5, 1, &["x"])]))
                .is_empty()
        );
    }

    #[test]
    fn no_slowlog_emits_nothing() {
        let mut w = watcher();
        let s = SnapshotBuilder::new()
            .info("server", "run_id", "r1")
            .build();
        assert!(w.observe(&s).is_empty());
        assert_eq!(w.high_water(), None);
    }

    #[test]
    fn ignored_clients_are_skipped_but_advance_the_mark() {
        let mut w = watcher();
        let events = w.observe(&snap(
            "r1",
            vec![
                E::new(1, 1, &["ping"]).client("127.0.0.1:1", "lookout"),
                E::new(2, 1, &["get", "k"]).client("127.0.0.1:2", "app"),
                E::new(3, 1, &["info"]).client("127.0.0.1:1", "lookout"),
            ],
        ));
        assert_eq!(ids(&events), [2]);
        assert_eq!(w.high_water(), Some(3));
    }

    #[test]
    fn ignore_clients_list_is_parsed() {
        let config =
            Config::from_settings(&[setting("ignore_clients", " batch , ,lookout,")]).unwrap();
        assert_eq!(config.ignore_clients, ["batch", "lookout"]);
        let mut w = Slowlog::new(config);
        let events = w.observe(&snap(
            "r1",
            vec![
                E::new(1, 1, &["a"]).client("", "batch"),
                E::new(2, 1, &["b"]).client("", "lookout"),
                E::new(3, 1, &["c"]).client("", "Batch"),
                E::new(4, 1, &["d"]),
            ],
        ));
        assert_eq!(ids(&events), [3, 4]);
        // Empty list: nothing ignored.
        let none = Config::from_settings(&[setting("ignore_clients", "")]).unwrap();
        assert!(none.ignore_clients.is_empty());
        let mut w = Slowlog::new(none);
        let e = E::new(1, 1, &["a"]).client("", "lookout");
        assert_eq!(w.observe(&snap("r1", vec![e])).len(), 1);
    }

    #[test]
    fn args_are_truncated_in_events() {
        let config = Config::from_settings(&[setting("max_arg_len", 4i64)]).unwrap();
        let mut w = Slowlog::new(config);
        let events = w.observe(&snap(
            "r1",
            vec![E::new(1, 99, &["hgetall", "user:12345", "ab"])],
        ));
        let e = &events[0];
        assert_eq!(
            e.get("args").and_then(Value::as_str),
            Some("hget… user… ab")
        );
        assert_eq!(e.get("command").and_then(Value::as_str), Some("HGET…"));
        assert_eq!(e.msg, "slow command HGET… took 99us");
    }

    #[test]
    fn command_is_upper_cased() {
        let mut w = watcher();
        let events = w.observe(&snap(
            "r1",
            vec![
                E::new(1, 5, &["hGetAll", "Key"]),
                E::new(2, 5, &["CONFIG", "get", "x"]),
            ],
        ));
        assert_eq!(events[0].msg, "slow command HGETALL took 5us");
        assert_eq!(
            events[0].get("args").and_then(Value::as_str),
            Some("hGetAll Key")
        );
        assert_eq!(
            events[1].get("command").and_then(Value::as_str),
            Some("CONFIG")
        );
    }

    #[test]
    fn entry_without_args() {
        let mut w = watcher();
        let events = w.observe(&snap("r1", vec![E::new(1, 5, &[])]));
        assert_eq!(events[0].msg, "slow command (no command) took 5us");
        assert_eq!(events[0].get("command").and_then(Value::as_str), Some(""));
        assert_eq!(events[0].get("args").and_then(Value::as_str), Some(""));
    }

    #[test]
    fn configure_defaults_and_rejections() {
        assert_eq!(Config::from_settings(&[]).unwrap(), Config::default());
        assert_eq!(
            Config::from_settings(&[setting("max_arg_len", 0i64)]).unwrap_err(),
            "key `max_arg_len` must be >= 1, got 0"
        );
        assert_eq!(
            Config::from_settings(&[setting("max_arg_len", -3i64)]).unwrap_err(),
            "key `max_arg_len` must be >= 1, got -3"
        );
        assert_eq!(
            Config::from_settings(&[setting("max_arg_len", 1i64)])
                .unwrap()
                .max_arg_len,
            1
        );
        let wrong = Config::from_settings(&[setting("ignore_clients", 3i64)]).unwrap_err();
        assert!(
            wrong.starts_with("key `ignore_clients` must be a text"),
            "{wrong}"
        );
    }

    #[test]
    fn exported_glue_keeps_state_between_calls() {
        assert_eq!(Slowlog::describe().name, "slowlog");
        assert_eq!(
            Slowlog::configure(vec![setting("max_arg_len", 0i64)]).unwrap_err(),
            "key `max_arg_len` must be >= 1, got 0"
        );
        Slowlog::configure(vec![
            setting("ignore_clients", "lookout"),
            setting("max_arg_len", 128i64),
        ])
        .unwrap();
        let snap = |ids: &[u64]| {
            SnapshotBuilder::new()
                .info("server", "run_id", "r1")
                .slowlog(ids.iter().map(|&id| E::new(id, 1, &["get"])).collect())
                .build()
        };
        assert_eq!(<Slowlog as Guest>::observe(snap(&[1, 2])).len(), 2);
        assert_eq!(<Slowlog as Guest>::observe(snap(&[2, 3])).len(), 1);
    }
}

//! The `slowlog` watcher: one warn event per new SLOWLOG entry, and one
//! summary event for a burst.
//!
//! The host hands each entry over once (it keeps a cursor per watcher and
//! leaves out its own commands), so the watcher keeps no mark of its own.
//! Per poll at most `max_events` entries are reported one by one, oldest
//! first; the rest of a burst is folded into one summary event with the
//! count, the id range, the commands seen and the worst duration. Entries
//! from clients named in `ignore_clients` are not reported.

use std::collections::BTreeMap;

pub use lookout_watcher::slowlog::{ELLIPSIS, truncate};
use lookout_watcher::{
    Cadence, ConfigKey, Event, Level, Manifest, Needs, Setting, Settings, SlowlogEntry, Snapshot,
    Watch, invalid,
};

lookout_watcher::export!(Slowlog);

/// The watcher's name, the envelopes' `target`.
pub const NAME: &str = "slowlog";
/// Default of `ignore_clients`: none (the host leaves out its own commands).
pub const DEFAULT_IGNORE_CLIENTS: &str = "";
/// Default of `max_arg_len`, bytes.
pub const DEFAULT_MAX_ARG_LEN: i64 = 128;
/// Default of `max_events`: entries reported one by one per poll.
pub const DEFAULT_MAX_EVENTS: i64 = 20;
/// Most distinct commands named in a summary's `commands` field.
pub const SUMMARY_COMMANDS: usize = 16;

/// Validated settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Client names whose entries are skipped; exact, case-sensitive.
    pub ignore_clients: Vec<String>,
    /// Bytes kept of each argument, at least 1.
    pub max_arg_len: usize,
    /// Entries reported one by one per poll; the rest go in one summary.
    pub max_events: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            ignore_clients: parse_names(DEFAULT_IGNORE_CLIENTS),
            max_arg_len: DEFAULT_MAX_ARG_LEN as usize,
            max_events: DEFAULT_MAX_EVENTS as usize,
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
        let max_events = s.integer("max_events", DEFAULT_MAX_EVENTS)?;
        if !(0..=1000).contains(&max_events) {
            return Err(invalid("max_events", "from 0 to 1000", max_events));
        }
        Ok(Config {
            ignore_clients,
            // Beyond usize (wasm32) every argument fits anyway.
            max_arg_len: usize::try_from(max_arg_len).unwrap_or(usize::MAX),
            max_events: usize::try_from(max_events).unwrap_or(0),
        })
    }
}

/// The watcher's logic.
#[derive(Debug, Clone)]
pub struct Slowlog {
    config: Config,
}

impl Slowlog {
    /// A watcher with `config`.
    pub fn new(config: Config) -> Self {
        Slowlog { config }
    }

    /// The command name cut to `max_arg_len`.
    fn command(&self, entry: &SlowlogEntry) -> String {
        truncate(&entry.command(), self.config.max_arg_len).into_owned()
    }

    /// One warn event for `entry`. The command is its first argument in
    /// ASCII upper case (Redis command names are ASCII), cut like the rest.
    fn event(&self, entry: &SlowlogEntry) -> Event {
        let command = self.command(entry);
        let args = entry.args_line(self.config.max_arg_len);
        let msg = format!(
            "slow command {} took {}us",
            shown(&command),
            entry.duration_us
        );
        Event::new(Level::Warn, msg)
            .field("id", entry.id)
            .field("duration_us", entry.duration_us)
            .field("command", command)
            .field("args", args)
            .field("client_addr", &entry.client_addr)
            .field("client_name", &entry.client_name)
            .field("started_at", entry.started_at)
    }

    /// One warn event standing for `entries` (not empty): how many, their
    /// id range, the commands seen with their counts (most frequent first)
    /// and the slowest.
    fn summary(&self, entries: &[&SlowlogEntry]) -> Event {
        let mut counts: BTreeMap<String, u64> = BTreeMap::new();
        for entry in entries {
            *counts.entry(self.command(entry)).or_default() += 1;
        }
        let mut commands: Vec<(String, u64)> = counts.into_iter().collect();
        commands.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        let named = commands
            .iter()
            .take(SUMMARY_COMMANDS)
            .map(|(c, n)| format!("{}:{n}", shown(c)))
            .collect::<Vec<_>>()
            .join(" ");
        let first_id = entries.iter().map(|e| e.id).min().unwrap_or_default();
        let last_id = entries.iter().map(|e| e.id).max().unwrap_or_default();
        let worst = entries
            .iter()
            .max_by_key(|e| (e.duration_us, std::cmp::Reverse(e.id)))
            .copied();
        let (worst_us, worst_id, worst_command) = worst.map_or((0, 0, String::new()), |w| {
            (w.duration_us, w.id, self.command(w))
        });
        let msg = format!(
            "{} more slow commands (ids {first_id} to {last_id}): {named}; worst {} took {worst_us}us",
            entries.len(),
            shown(&worst_command),
        );
        Event::new(Level::Warn, msg)
            .field("count", entries.len())
            .field("first_id", first_id)
            .field("last_id", last_id)
            .field("commands", named)
            .field("distinct_commands", commands.len())
            .field("worst_duration_us", worst_us)
            .field("worst_id", worst_id)
            .field("worst_command", worst_command)
    }
}

fn shown(command: &str) -> &str {
    if command.is_empty() {
        "(no command)"
    } else {
        command
    }
}

impl Watch for Slowlog {
    fn manifest() -> Manifest {
        Manifest {
            name: NAME.to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            description: "reports each new SLOWLOG entry, folding bursts into one summary"
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
                ConfigKey::new(
                    "max_events",
                    DEFAULT_MAX_EVENTS,
                    "entries reported one by one per poll (0 to 1000); the rest are folded into one summary",
                ),
            ],
            needs: Needs::info(&[]).with_slowlog(),
            cadence: Cadence::EveryPoll,
        }
    }

    fn from_settings(settings: &[Setting]) -> Result<Self, String> {
        Config::from_settings(settings).map(Slowlog::new)
    }

    /// Reports the entries handed over, oldest first, at most `max_events`
    /// one by one and the rest in one summary.
    fn observe(&mut self, snapshot: &Snapshot) -> Vec<Event> {
        let entries: Vec<&SlowlogEntry> = snapshot
            .slowlog_entries()
            .into_iter()
            .filter(|e| !self.config.ignore_clients.contains(&e.client_name))
            .collect();
        let single = entries.len().min(self.config.max_events);
        let mut events: Vec<Event> = entries[..single].iter().map(|e| self.event(e)).collect();
        if entries.len() > single {
            events.push(self.summary(&entries[single..]));
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
        assert!(m.needs.info_fields.is_empty());
        assert!(m.needs.info_sections.is_empty());
        assert!(m.needs.slowlog);
        let keys: Vec<_> = m.config.iter().map(|k| k.name.as_str()).collect();
        assert_eq!(keys, ["ignore_clients", "max_arg_len", "max_events"]);
        assert_eq!(m.config[0].default, Value::Text(String::new()));
        assert_eq!(m.config[1].default, Value::Integer(128));
        assert_eq!(m.config[2].default, Value::Integer(20));
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
    fn every_entry_handed_over_is_reported_oldest_first() {
        let mut w = watcher();
        let first = w.observe(&snap(
            "r1",
            vec![E::new(1, 10, &["b"]), E::new(0, 10, &["a"])],
        ));
        assert_eq!(ids(&first), [0, 1]);
        // The host hands each entry over once; ids from 0 again after a
        // Redis restart are reported like any other.
        assert_eq!(
            ids(&w.observe(&snap("r2", vec![E::new(0, 1, &["x"])]))),
            [0]
        );
        assert!(w.observe(&snap("r2", vec![])).is_empty());
        let no_slowlog = SnapshotBuilder::new().build();
        assert!(w.observe(&no_slowlog).is_empty());
    }

    fn burst(n: u64) -> Vec<E> {
        (100..100 + n)
            .map(|id| {
                let cmd = if id % 3 == 0 { "set" } else { "get" };
                E::new(id, 10 + id, &[cmd, "k"])
            })
            .collect()
    }

    #[test]
    fn a_burst_is_folded_into_one_summary_after_max_events() {
        let mut w = watcher();
        let events = w.observe(&snap("r1", burst(50)));
        assert_eq!(events.len(), 21, "20 entries and one summary");
        assert_eq!(ids(&events[..20]), (100..120).collect::<Vec<_>>());
        let summary = &events[20];
        assert_eq!(summary.level, Level::Warn);
        assert_eq!(summary.get("count").and_then(Value::as_i64), Some(30));
        assert_eq!(summary.get("first_id").and_then(Value::as_i64), Some(120));
        assert_eq!(summary.get("last_id").and_then(Value::as_i64), Some(149));
        // Ids 120..150: multiples of 3 are SET (10 of them), the rest GET.
        assert_eq!(
            summary.get("commands").and_then(Value::as_str),
            Some("GET:20 SET:10")
        );
        assert_eq!(
            summary.get("worst_duration_us").and_then(Value::as_i64),
            Some(159)
        );
        assert_eq!(summary.get("worst_id").and_then(Value::as_i64), Some(149));
        assert_eq!(
            summary.get("worst_command").and_then(Value::as_str),
            Some("GET")
        );
        assert_eq!(
            summary.msg,
            "30 more slow commands (ids 120 to 149): GET:20 SET:10; worst GET took 159us"
        );
    }

    #[test]
    fn max_events_is_a_setting() {
        let config = Config::from_settings(&[setting("max_events", 0i64)]).unwrap();
        let mut w = Slowlog::new(config);
        let events = w.observe(&snap("r1", burst(3)));
        assert_eq!(events.len(), 1, "only the summary");
        assert_eq!(events[0].get("count").and_then(Value::as_i64), Some(3));
        let mut w = Slowlog::new(Config::from_settings(&[setting("max_events", 5i64)]).unwrap());
        assert_eq!(
            w.observe(&snap("r1", burst(5))).len(),
            5,
            "no summary when all fit"
        );
        assert_eq!(
            w.observe(&snap("r1", burst(6))).len(),
            6,
            "five and a summary of one"
        );
        assert_eq!(
            Config::from_settings(&[setting("max_events", -1i64)]).unwrap_err(),
            "key `max_events` must be from 0 to 1000, got -1"
        );
    }

    #[test]
    fn summary_names_at_most_sixteen_commands() {
        let entries: Vec<E> = (0..40u64)
            .map(|id| E::new(id, 1, &[&format!("cmd{id:02}")]))
            .collect();
        let config = Config::from_settings(&[setting("max_events", 0i64)]).unwrap();
        let events = Slowlog::new(config).observe(&snap("r1", entries));
        let named = events[0].get("commands").and_then(Value::as_str).unwrap();
        assert_eq!(named.split(' ').count(), SUMMARY_COMMANDS);
        assert!(named.starts_with("CMD00:1 CMD01:1"), "{named}");
        assert_eq!(
            events[0].get("distinct_commands").and_then(Value::as_i64),
            Some(40)
        );
    }

    #[test]
    fn ignored_clients_are_skipped() {
        let config = Config::from_settings(&[setting("ignore_clients", "batch")]).unwrap();
        let mut w = Slowlog::new(config);
        let events = w.observe(&snap(
            "r1",
            vec![
                E::new(1, 1, &["ping"]).client("127.0.0.1:1", "batch"),
                E::new(2, 1, &["get", "k"]).client("127.0.0.1:2", "app"),
                E::new(3, 1, &["info"]).client("127.0.0.1:1", "lookout"),
            ],
        ));
        assert_eq!(
            ids(&events),
            [2, 3],
            "a client calling itself lookout is reported"
        );
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
        assert_eq!(<Slowlog as Guest>::observe(snap(&[3])).len(), 1);
    }
}

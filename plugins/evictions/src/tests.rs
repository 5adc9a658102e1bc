//! Unit tests of the `evictions` watcher.
use lookout_watcher::testing::{SnapshotBuilder, fields, setting};
use lookout_watcher::{Guest, Value};

use super::*;

const MIB: u64 = 1024 * 1024;

/// A poll at `secs` seconds on server `run`.
fn snap(run: &str, secs: i64, evicted: u64, rejected: u64) -> Snapshot {
    SnapshotBuilder::new()
        .taken_at_ms(secs * 1000)
        .info("server", "run_id", run)
        .info("memory", "used_memory", &(99 * MIB).to_string())
        .info("memory", "maxmemory", &(100 * MIB).to_string())
        .info("memory", "maxmemory_policy", "allkeys-lru")
        .info("stats", EVICTED, &evicted.to_string())
        .info("stats", REJECTED, &rejected.to_string())
        .build()
}

fn watcher(min_evicted: u64, min_rejected: u64, remind_every: u64, quiet: u64) -> Evictions {
    Evictions::new(Config {
        min_evicted,
        min_rejected,
        remind_every,
        quiet_polls: quiet,
    })
}

fn state(e: &Event) -> &str {
    e.get("state").and_then(Value::as_str).unwrap()
}

/// Runs the polls (seconds, evicted, rejected) on run "a"; the events
/// of each as (poll index, counter, state).
fn run(w: &mut Evictions, polls: &[(i64, u64, u64)]) -> Vec<(usize, String, String)> {
    let mut out = Vec::new();
    for (i, &(t, ev, rej)) in polls.iter().enumerate() {
        for e in w.observe(&snap("a", t, ev, rej)) {
            let counter = e
                .get("counter")
                .and_then(Value::as_str)
                .unwrap()
                .to_string();
            out.push((i, counter, state(&e).to_string()));
        }
    }
    out
}

#[test]
fn manifest_declares_needs_and_config() {
    let m = Evictions::manifest();
    assert_eq!(m.name, "evictions");
    assert_eq!(m.version, "0.1.0");
    assert_eq!(m.cadence, Cadence::EveryPoll);
    assert_eq!(
        m.needs.info_fields,
        [
            "evicted_keys",
            "rejected_connections",
            "run_id",
            "maxmemory",
            "used_memory",
            "maxmemory_policy"
        ]
    );
    assert!(m.needs.info_sections.is_empty());
    assert!(m.needs.probes.is_empty());
    assert!(!m.needs.slowlog);
    let keys: Vec<_> = m.config.iter().map(|k| k.name.as_str()).collect();
    assert_eq!(
        keys,
        ["min_evicted", "min_rejected", "remind_every", "quiet_polls"]
    );
    let defaults: Vec<_> = m.config.iter().map(|k| k.default.clone()).collect();
    assert_eq!(
        defaults,
        [
            Value::Integer(0),
            Value::Integer(0),
            Value::Integer(0),
            Value::Integer(3)
        ]
    );
}

#[test]
fn first_poll_is_a_baseline() {
    let mut w = watcher(0, 0, 0, 3);
    assert!(w.observe(&snap("a", 0, 1_000_000, 500)).is_empty());
    assert!(!w.evicting());
    assert!(!w.rejecting());
}

#[test]
fn entering_evictions_warns_once_with_rate_and_context() {
    let mut w = watcher(0, 0, 0, 3);
    w.observe(&snap("a", 0, 100, 0));
    let events = w.observe(&snap("a", 10, 220, 0));
    assert_eq!(events.len(), 1);
    let e = &events[0];
    assert_eq!(e.level, Level::Warn);
    assert_eq!(
        e.msg,
        "evicting: 120 keys in 10 s (12.0/s), maxmemory-policy allkeys-lru, used_memory 99.0MiB of maxmemory 100.0MiB"
    );
    assert_eq!(
        fields(e),
        [
            ("counter", &Value::Text("evicted_keys".into())),
            ("delta", &Value::Integer(120)),
            ("per_second", &Value::Float(12.0)),
            ("total", &Value::Integer(120)),
            ("maxmemory", &Value::Integer((100 * MIB) as i64)),
            ("used_memory", &Value::Integer((99 * MIB) as i64)),
            ("policy", &Value::Text("allkeys-lru".into())),
            ("state", &Value::Text("entered".into())),
        ]
    );
    assert!(w.evicting());
    // Still growing: quiet (no reminders by default).
    for t in 2..20 {
        assert!(
            w.observe(&snap("a", t * 10, 220 + t as u64 * 50, 0))
                .is_empty()
        );
    }
}

#[test]
fn leaving_after_quiet_polls_reports_total_and_duration() {
    let mut w = watcher(0, 0, 0, 3);
    let fired = run(
        &mut w,
        &[
            (0, 0, 0),
            (10, 10, 0), // entered
            (20, 30, 0), // +20
            (30, 30, 0), // flat 1
            (40, 30, 0), // flat 2
            (50, 35, 0), // grew: flat count starts over
            (60, 35, 0), // flat 1
            (70, 35, 0), // flat 2
            (80, 35, 0), // flat 3: left
            (90, 35, 0), // nothing
        ],
    );
    assert_eq!(
        fired,
        [
            (1, "evicted_keys".into(), "entered".into()),
            (8, "evicted_keys".into(), "left".into()),
        ]
    );
    let mut w = watcher(0, 0, 0, 2);
    w.observe(&snap("a", 0, 0, 0));
    w.observe(&snap("a", 10, 10, 0));
    w.observe(&snap("a", 20, 40, 0));
    assert!(w.observe(&snap("a", 30, 40, 0)).is_empty());
    let events = w.observe(&snap("a", 40, 40, 0));
    let e = &events[0];
    assert_eq!(e.level, Level::Info);
    assert_eq!(
        e.msg,
        "evictions stopped: 40 keys evicted over 20 s, none in the last 2 polls"
    );
    assert_eq!(e.get("total"), Some(&Value::Integer(40)));
    assert_eq!(e.get("delta"), Some(&Value::Integer(0)));
    assert_eq!(e.get("duration_ms"), Some(&Value::Integer(20_000)));
    assert_eq!(state(e), "left");
    assert!(!w.evicting());
    // It can start again.
    let again = w.observe(&snap("a", 50, 41, 0));
    assert_eq!(state(&again[0]), "entered");
    assert_eq!(again[0].get("total"), Some(&Value::Integer(1)));
    assert_eq!(
        again[0].msg.split(',').next().unwrap(),
        "evicting: 1 key in 10 s (0.1/s)"
    );
}

#[test]
fn minimum_gates_entering_but_not_staying() {
    let mut w = watcher(100, 0, 0, 2);
    let fired = run(
        &mut w,
        &[
            (0, 0, 0),
            (10, 100, 0), // exactly the minimum: not enough
            (20, 150, 0),
            (30, 251, 0), // +101: entered
            (40, 252, 0), // +1 keeps it open
            (50, 252, 0),
            (60, 253, 0),
            (70, 253, 0),
            (80, 253, 0), // left
        ],
    );
    assert_eq!(
        fired,
        [
            (3, "evicted_keys".into(), "entered".into()),
            (8, "evicted_keys".into(), "left".into()),
        ]
    );
}

#[test]
fn reminders_carry_the_total() {
    let mut w = watcher(0, 0, 2, 3);
    let fired = run(
        &mut w,
        &[
            (0, 0, 0),
            (10, 10, 0), // entered (poll 1 of the episode)
            (20, 20, 0), // 2
            (30, 30, 0), // 3: reminder
            (40, 40, 0), // 4
            (50, 40, 0), // 5 flat: no reminder
            (60, 50, 0), // 6
            (70, 60, 0), // 7: reminder
        ],
    );
    assert_eq!(
        fired,
        [
            (1, "evicted_keys".into(), "entered".into()),
            (3, "evicted_keys".into(), "ongoing".into()),
            (7, "evicted_keys".into(), "ongoing".into()),
        ]
    );
    let mut w = watcher(0, 0, 1, 3);
    w.observe(&snap("a", 0, 0, 0));
    w.observe(&snap("a", 10, 10, 0));
    let events = w.observe(&snap("a", 20, 30, 0));
    let e = &events[0];
    assert_eq!(e.level, Level::Warn);
    assert_eq!(
        e.msg,
        "still evicting: 30 keys in 20 s since it started, 20 in the last 10 s (2.0/s), maxmemory-policy allkeys-lru, used_memory 99.0MiB of maxmemory 100.0MiB"
    );
    assert_eq!(e.get("total"), Some(&Value::Integer(30)));
    assert_eq!(e.get("delta"), Some(&Value::Integer(20)));
    assert_eq!(state(e), "ongoing");
}

#[test]
fn rejected_connections_follow_their_own_minimum() {
    let mut w = watcher(0, 5, 0, 1);
    w.observe(&snap("a", 0, 0, 10));
    assert!(w.observe(&snap("a", 10, 0, 15)).is_empty());
    let events = w.observe(&snap("a", 20, 0, 21));
    assert_eq!(events.len(), 1);
    let e = &events[0];
    assert_eq!(e.level, Level::Warn);
    assert_eq!(
        e.msg,
        "rejecting connections: 6 connections in 10 s (0.6/s)"
    );
    assert_eq!(
        e.get("counter"),
        Some(&Value::Text("rejected_connections".into()))
    );
    assert_eq!(e.get("policy"), Some(&Value::Text("allkeys-lru".into())));
    assert!(w.rejecting());
    assert!(!w.evicting());
    let left = w.observe(&snap("a", 30, 0, 21));
    assert_eq!(
        left[0].msg,
        "connection rejections stopped: 6 connections rejected over 10 s, none in the last 1 poll"
    );
    assert_eq!(state(&left[0]), "left");
}

#[test]
fn both_counters_report_in_one_poll_evictions_first() {
    let mut w = watcher(0, 0, 0, 3);
    w.observe(&snap("a", 0, 0, 0));
    let events = w.observe(&snap("a", 10, 1, 1));
    let counters: Vec<_> = events
        .iter()
        .map(|e| e.get("counter").and_then(Value::as_str).unwrap())
        .collect();
    assert_eq!(counters, ["evicted_keys", "rejected_connections"]);
    assert_eq!(
        events[1].msg,
        "rejecting connections: 1 connection in 10 s (0.1/s)"
    );
}

#[test]
fn restart_and_resetstat_move_the_baseline_only() {
    let mut w = watcher(0, 0, 0, 3);
    w.observe(&snap("a", 0, 1000, 50));
    // CONFIG RESETSTAT: both counters went back.
    assert!(w.observe(&snap("a", 10, 0, 0)).is_empty());
    // A restart with higher counters than before (a new run_id).
    assert!(w.observe(&snap("b", 20, 5000, 900)).is_empty());
    assert!(!w.evicting() && !w.rejecting());
    // Growth after the new baseline reports only what grew since.
    let events = w.observe(&snap("b", 30, 5003, 900));
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].get("delta"), Some(&Value::Integer(3)));
}

#[test]
fn reset_during_an_episode_neither_counts_nor_reports() {
    let mut w = watcher(0, 0, 0, 2);
    w.observe(&snap("a", 0, 0, 0));
    w.observe(&snap("a", 10, 10, 0));
    assert!(w.observe(&snap("b", 20, 0, 0)).is_empty());
    assert!(w.evicting());
    assert!(w.observe(&snap("b", 30, 0, 0)).is_empty());
    let events = w.observe(&snap("b", 40, 0, 0));
    assert_eq!(state(&events[0]), "left");
    assert_eq!(events[0].get("total"), Some(&Value::Integer(10)));
}

#[test]
fn same_timestamp_reports_without_a_rate() {
    let mut w = watcher(0, 0, 0, 3);
    w.observe(&snap("a", 10, 0, 0));
    let events = w.observe(&snap("a", 10, 4, 0));
    let e = &events[0];
    assert!(
        e.msg
            .starts_with("evicting: 4 keys in 0 s, maxmemory-policy"),
        "{}",
        e.msg
    );
    assert_eq!(e.get("per_second"), None);
}

#[test]
fn fractional_seconds() {
    let mut w = watcher(0, 0, 0, 3);
    let at = |ms: i64, ev: &str| {
        SnapshotBuilder::new()
            .taken_at_ms(ms)
            .info("server", "run_id", "a")
            .info("stats", EVICTED, ev)
            .build()
    };
    w.observe(&at(0, "0"));
    let events = w.observe(&at(2500, "5"));
    // No context fields in INFO: none in the message or the event.
    assert_eq!(events[0].msg, "evicting: 5 keys in 2.5 s (2.0/s)");
    let names: Vec<_> = events[0].fields.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names, ["counter", "delta", "per_second", "total", "state"]);
}

#[test]
fn missing_or_bad_fields_change_nothing() {
    let mut w = watcher(0, 0, 0, 1);
    assert!(w.observe(&SnapshotBuilder::new().build()).is_empty());
    w.observe(&snap("a", 0, 10, 10));
    let bad = SnapshotBuilder::new()
        .taken_at_ms(10_000)
        .info("server", "run_id", "a")
        .info("stats", EVICTED, "lots")
        .build();
    assert!(w.observe(&bad).is_empty());
    // The baseline is still 10 evictions / 10 rejections.
    let events = w.observe(&snap("a", 20, 12, 10));
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].get("delta"), Some(&Value::Integer(2)));
    // Missing polls in an episode are not flat polls.
    assert!(w.observe(&SnapshotBuilder::new().build()).is_empty());
    assert!(w.evicting());
    assert_eq!(state(&w.observe(&snap("a", 30, 12, 10))[0]), "left");
}

#[test]
fn maxmemory_zero_leaves_memory_out_of_the_message() {
    let mut w = watcher(0, 0, 0, 3);
    let at = |secs: i64, ev: &str| {
        SnapshotBuilder::new()
            .taken_at_ms(secs * 1000)
            .info("server", "run_id", "a")
            .info("memory", "used_memory", "1000")
            .info("memory", "maxmemory", "0")
            .info("memory", "maxmemory_policy", "noeviction")
            .info("stats", EVICTED, ev)
            .build()
    };
    w.observe(&at(0, "0"));
    let events = w.observe(&at(10, "3"));
    assert_eq!(
        events[0].msg,
        "evicting: 3 keys in 10 s (0.3/s), maxmemory-policy noeviction"
    );
    assert_eq!(events[0].get("maxmemory"), Some(&Value::Integer(0)));
}

#[test]
fn configure_defaults_and_rejections() {
    assert_eq!(Config::from_settings(&[]).unwrap(), Config::default());
    assert_eq!(
        Config::from_settings(&[
            setting("min_evicted", 10i64),
            setting("min_rejected", 2i64),
            setting("remind_every", 6i64),
            setting("quiet_polls", 1i64),
        ])
        .unwrap(),
        Config {
            min_evicted: 10,
            min_rejected: 2,
            remind_every: 6,
            quiet_polls: 1
        }
    );
    for (key, bad, want) in [
        ("min_evicted", -1i64, ">= 0"),
        ("min_rejected", -5, ">= 0"),
        ("remind_every", -1, ">= 0"),
        ("quiet_polls", 0, ">= 1"),
        ("quiet_polls", -2, ">= 1"),
    ] {
        assert_eq!(
            Config::from_settings(&[setting(key, bad)]).unwrap_err(),
            format!("key `{key}` must be {want}, got {bad}")
        );
    }
    assert_eq!(
        Config::from_settings(&[setting("quiet_polls", "3")]).unwrap_err(),
        "key `quiet_polls` must be an integer, got a text \"3\""
    );
}

#[test]
fn exported_glue_keeps_state_between_calls() {
    assert_eq!(Evictions::describe().name, "evictions");
    assert_eq!(
        Evictions::configure(vec![setting("quiet_polls", 0i64)]).unwrap_err(),
        "key `quiet_polls` must be >= 1, got 0"
    );
    Evictions::configure(vec![setting("quiet_polls", 1i64)]).unwrap();
    assert!(<Evictions as Guest>::observe(snap("a", 0, 0, 0)).is_empty());
    assert_eq!(<Evictions as Guest>::observe(snap("a", 10, 5, 0)).len(), 1);
    assert!(<Evictions as Guest>::observe(snap("a", 20, 9, 0)).is_empty());
    assert_eq!(<Evictions as Guest>::observe(snap("a", 30, 9, 0)).len(), 1);
}

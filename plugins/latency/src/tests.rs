//! Unit tests of the `latency` watcher.
use lookout_watcher::testing::{SnapshotBuilder, fields, setting};
use lookout_watcher::{Guest, LatencySpike, Value};

use super::*;

const OFF: &str = "latency-monitor-threshold is 0, so the server records no latency events; \
                       CONFIG SET latency-monitor-threshold 100 (ms) turns it on";

fn spike(event: &str, at: i64, latest: u64, max: u64) -> LatencySpike {
    LatencySpike::new(event, at, latest, max)
}

fn snap(at_s: i64, spikes: Vec<LatencySpike>) -> Snapshot {
    SnapshotBuilder::new()
        .taken_at_ms(at_s * 1000)
        .latency(spikes)
        .build()
}

fn gone(at_s: i64, reason: &str) -> Snapshot {
    SnapshotBuilder::new()
        .taken_at_ms(at_s * 1000)
        .unavailable(Probe::LatencyLatest, "", reason)
        .build()
}

fn watcher(threshold_ms: u64, overrides: &str) -> Latency {
    Latency::new(Config {
        threshold_ms,
        event_thresholds: parse_event_thresholds(overrides).unwrap(),
    })
}

fn events_named(events: &[Event]) -> Vec<&str> {
    events
        .iter()
        .map(|e| e.get("event").and_then(Value::as_str).unwrap_or("-"))
        .collect()
}

#[test]
fn manifest_declares_needs_and_config() {
    let m = Latency::manifest();
    assert_eq!(m.name, "latency");
    assert_eq!(m.version, "0.1.0");
    assert_eq!(m.cadence, Cadence::EveryPoll);
    assert!(m.needs.info_fields.is_empty());
    assert!(m.needs.info_sections.is_empty());
    assert!(!m.needs.slowlog);
    assert_eq!(m.needs.probes, [Probe::LatencyLatest]);
    let keys: Vec<_> = m.config.iter().map(|k| k.name.as_str()).collect();
    assert_eq!(keys, ["threshold_ms", "event_thresholds"]);
    assert_eq!(m.config[0].default, Value::Integer(100));
    assert_eq!(m.config[1].default, Value::Text(String::new()));
}

#[test]
fn configure_defaults_and_overrides() {
    assert_eq!(Config::from_settings(&[]).unwrap(), Config::default());
    let c = Config::from_settings(&[
        setting("threshold_ms", 0i64),
        setting(
            "event_thresholds",
            " fork=20, Command = 250 ,,aof-fsync-always=0,",
        ),
    ])
    .unwrap();
    assert_eq!(c.threshold_ms, 0);
    assert_eq!(
        c.event_thresholds,
        [
            ("fork".to_string(), 20),
            ("command".to_string(), 250),
            ("aof-fsync-always".to_string(), 0)
        ]
    );
    assert_eq!(c.threshold_for("fork"), 20);
    assert_eq!(c.threshold_for("COMMAND"), 250);
    assert_eq!(c.threshold_for("expire-cycle"), 0);
    assert!(parse_event_thresholds("  ").unwrap().is_empty());
}

#[test]
fn configure_rejections_name_the_key_and_the_entry() {
    assert_eq!(
        Config::from_settings(&[setting("threshold_ms", -1i64)]).unwrap_err(),
        "key `threshold_ms` must be >= 0, got -1"
    );
    assert_eq!(
        Config::from_settings(&[setting("threshold_ms", 1.5)]).unwrap_err(),
        "key `threshold_ms` must be an integer, got a float 1.5"
    );
    assert_eq!(
        Config::from_settings(&[setting("event_thresholds", 5i64)]).unwrap_err(),
        "key `event_thresholds` must be a text, got an integer 5"
    );
    for (text, entry) in [
        ("fork", "\"fork\""),
        ("fork=20, command", "\"command\""),
        ("fork=abc", "\"fork=abc\""),
        ("fork=-5", "\"fork=-5\""),
        ("fork=", "\"fork=\""),
        ("=20", "\"=20\""),
        ("fork 2=20", "\"fork 2=20\""),
        ("fork=20=30", "\"fork=20=30\""),
        ("fork=1.5", "\"fork=1.5\""),
    ] {
        assert_eq!(
            Config::from_settings(&[setting("event_thresholds", text)]).unwrap_err(),
            format!(
                "key `event_thresholds` must be a comma-separated list of EVENT=MS entries (MS >= 0), got {entry}"
            ),
            "{text}"
        );
    }
    assert_eq!(
        Config::from_settings(&[setting("event_thresholds", "fork=20, FORK=30")]).unwrap_err(),
        "key `event_thresholds` must be a list naming each event once, got \"fork\" twice, in \"FORK=30\""
    );
}

#[test]
fn first_poll_is_a_baseline() {
    let mut w = watcher(100, "");
    assert!(!w.has_baseline());
    assert!(
        w.observe(&snap(0, vec![spike("command", 50, 900, 900)]))
            .is_empty()
    );
    assert!(w.has_baseline());
    // Unchanged: still nothing.
    assert!(
        w.observe(&snap(1, vec![spike("command", 50, 900, 900)]))
            .is_empty()
    );
}

#[test]
fn a_new_spike_at_or_above_the_threshold_warns() {
    let mut w = watcher(100, "");
    w.observe(&snap(0, vec![spike("command", 50, 900, 900)]));
    let events = w.observe(&snap(1, vec![spike("command", 60, 100, 900)]));
    assert_eq!(events.len(), 1);
    let e = &events[0];
    assert_eq!(e.level, Level::Warn);
    assert_eq!(e.msg, "latency spike: command took 100 ms (worst 900 ms)");
    assert_eq!(
        fields(e),
        [
            ("event", &Value::Text("command".into())),
            ("latest_ms", &Value::Integer(100)),
            ("max_ms", &Value::Integer(900)),
            ("latest_at", &Value::Integer(60)),
            ("threshold_ms", &Value::Integer(100)),
            ("state", &Value::Text("changed".into())),
        ]
    );
    // Seen: not again.
    assert!(
        w.observe(&snap(2, vec![spike("command", 60, 100, 900)]))
            .is_empty()
    );
    // Below the threshold: quiet, but recorded.
    assert!(
        w.observe(&snap(3, vec![spike("command", 70, 99, 900)]))
            .is_empty()
    );
    assert!(
        w.observe(&snap(4, vec![spike("command", 70, 99, 900)]))
            .is_empty()
    );
}

#[test]
fn a_changed_duration_at_the_same_second_is_new() {
    let mut w = watcher(100, "");
    w.observe(&snap(0, vec![spike("fork", 60, 150, 150)]));
    let events = w.observe(&snap(1, vec![spike("fork", 60, 300, 300)]));
    assert_eq!(events_named(&events), ["fork"]);
    assert_eq!(
        events[0].msg,
        "latency spike: fork took 300 ms (worst 300 ms)"
    );
}

#[test]
fn an_event_appearing_after_the_baseline_is_new() {
    let mut w = watcher(100, "");
    w.observe(&snap(0, vec![spike("command", 50, 900, 900)]));
    let events = w.observe(&snap(
        1,
        vec![
            spike("command", 50, 900, 900),
            spike("fork", 61, 200, 200),
            spike("expire-cycle", 61, 20, 20),
        ],
    ));
    assert_eq!(events_named(&events), ["fork"]);
}

#[test]
fn per_event_thresholds_override_the_default() {
    let mut w = watcher(100, "fork=20, command=250");
    w.observe(&snap(0, Vec::new()));
    let events = w.observe(&snap(
        1,
        vec![
            spike("command", 60, 200, 200),
            spike("fork", 60, 20, 20),
            spike("aof-write", 60, 100, 100),
        ],
    ));
    assert_eq!(events_named(&events), ["fork", "aof-write"]);
    assert_eq!(events[0].get("threshold_ms"), Some(&Value::Integer(20)));
    assert_eq!(events[1].get("threshold_ms"), Some(&Value::Integer(100)));
    let events = w.observe(&snap(2, vec![spike("command", 61, 250, 250)]));
    assert_eq!(events_named(&events), ["command"]);
    assert_eq!(events[0].get("threshold_ms"), Some(&Value::Integer(250)));
}

#[test]
fn threshold_zero_reports_every_new_spike() {
    let mut w = watcher(0, "");
    w.observe(&snap(0, Vec::new()));
    let events = w.observe(&snap(1, vec![spike("command", 60, 0, 0)]));
    assert_eq!(events_named(&events), ["command"]);
}

#[test]
fn at_most_one_event_per_event_type_per_poll() {
    let mut w = watcher(10, "");
    w.observe(&snap(0, Vec::new()));
    let events = w.observe(&snap(
        1,
        vec![spike("command", 60, 50, 50), spike("command", 61, 70, 70)],
    ));
    assert_eq!(events_named(&events), ["command"]);
    assert_eq!(events[0].get("latest_ms"), Some(&Value::Integer(50)));
    // The first listing is the one remembered.
    assert!(
        w.observe(&snap(2, vec![spike("command", 60, 50, 50)]))
            .is_empty()
    );
}

#[test]
fn latency_reset_then_a_new_spike() {
    let mut w = watcher(100, "");
    w.observe(&snap(0, vec![spike("command", 50, 900, 900)]));
    // LATENCY RESET: the event is gone.
    assert!(w.observe(&snap(1, Vec::new())).is_empty());
    // The same spike figures again after the reset is a new spike.
    let events = w.observe(&snap(2, vec![spike("command", 50, 900, 900)]));
    assert_eq!(events_named(&events), ["command"]);
}

#[test]
fn monitor_off_reported_once_and_when_back() {
    let mut w = watcher(100, "");
    let events = w.observe(&gone(0, OFF));
    assert_eq!(events.len(), 1);
    let e = &events[0];
    assert_eq!(e.level, Level::Info);
    assert_eq!(e.msg, format!("cannot see latency spikes: {OFF}"));
    assert_eq!(
        fields(e),
        [
            ("reason", &Value::Text(OFF.into())),
            ("state", &Value::Text("entered".into())),
        ]
    );
    assert!(w.is_unavailable());
    for i in 1..10 {
        assert!(w.observe(&gone(i, OFF)).is_empty());
    }
    // The threshold was raised and a spike recorded: it is news.
    let events = w.observe(&snap(75, vec![spike("fork", 70, 300, 300)]));
    assert_eq!(events.len(), 2);
    assert_eq!(events[0].level, Level::Info);
    assert_eq!(events[0].msg, "latency readings are back after 1 min 15 s");
    assert_eq!(
        fields(&events[0]),
        [
            ("state", &Value::Text("left".into())),
            ("duration_ms", &Value::Integer(75_000)),
        ]
    );
    assert_eq!(events_named(&events[1..]), ["fork"]);
    assert!(!w.is_unavailable());
    // Off again: said again.
    assert_eq!(w.observe(&gone(80, OFF)).len(), 1);
}

#[test]
fn back_with_nothing_recorded_only_says_it_is_back() {
    let mut w = watcher(100, "");
    w.observe(&gone(0, OFF));
    let events = w.observe(&snap(5, Vec::new()));
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].get("state"), Some(&Value::Text("left".into())));
}

#[test]
fn a_refusal_keeps_no_history_and_the_first_reading_back_is_a_baseline() {
    let mut w = watcher(100, "");
    let refused = "NOPERM this user has no permissions to run the 'latency' command";
    let events = w.observe(&gone(0, refused));
    assert_eq!(
        events[0].msg,
        format!("cannot see latency spikes: {refused}")
    );
    assert!(!w.has_baseline());
    let events = w.observe(&snap(3, vec![spike("command", 1, 900, 900)]));
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].msg, "latency readings are back after 3 s");
    // After a refusal that followed readings, the old baseline stands.
    w.observe(&gone(4, refused));
    let events = w.observe(&snap(5, vec![spike("command", 1, 900, 900)]));
    assert_eq!(events.len(), 1);
    let events = w.observe(&snap(6, vec![spike("command", 6, 400, 900)]));
    assert_eq!(events_named(&events), ["command"]);
}

#[test]
fn monitor_turned_off_after_readings_clears_the_history() {
    let mut w = watcher(100, "");
    w.observe(&snap(0, vec![spike("command", 50, 900, 900)]));
    w.observe(&gone(1, OFF));
    // Restarted with the same figures (unlikely, but new by definition).
    let events = w.observe(&snap(2, vec![spike("command", 50, 900, 900)]));
    assert_eq!(events.len(), 2);
    assert_eq!(events_named(&events[1..]), ["command"]);
}

#[test]
fn clock_going_back_gives_a_zero_duration() {
    let mut w = watcher(100, "");
    w.observe(&gone(100, OFF));
    let events = w.observe(&snap(50, Vec::new()));
    assert_eq!(events[0].get("duration_ms"), Some(&Value::Integer(0)));
}

#[test]
fn huge_figures_saturate() {
    let mut w = watcher(100, "");
    w.observe(&snap(0, Vec::new()));
    let events = w.observe(&snap(
        1,
        vec![spike("command", i64::MIN, u64::MAX, u64::MAX)],
    ));
    assert_eq!(events[0].get("latest_ms"), Some(&Value::Integer(i64::MAX)));
    assert_eq!(events[0].get("latest_at"), Some(&Value::Integer(i64::MIN)));
}

#[test]
fn exported_glue_keeps_state_between_calls() {
    assert_eq!(Latency::describe().name, "latency");
    assert_eq!(
        Latency::configure(vec![setting("event_thresholds", "fork")]).unwrap_err(),
        "key `event_thresholds` must be a comma-separated list of EVENT=MS entries (MS >= 0), got \"fork\""
    );
    Latency::configure(vec![setting("threshold_ms", 10i64)]).unwrap();
    assert!(<Latency as Guest>::observe(snap(0, vec![spike("fork", 1, 50, 50)])).is_empty());
    assert!(<Latency as Guest>::observe(snap(1, vec![spike("fork", 1, 50, 50)])).is_empty());
    assert_eq!(
        <Latency as Guest>::observe(snap(2, vec![spike("fork", 2, 50, 50)])).len(),
        1
    );
}

//! Unit tests of the `stream-lag` watcher.
use lookout_watcher::testing::{SnapshotBuilder, fields, setting};
use lookout_watcher::{ConditionState, Guest, Value};

use super::*;

/// A group with this lag (`None`: before Redis 7) and `pending`.
fn group(name: &str, pending: u64, lag: Option<u64>) -> StreamGroup {
    StreamGroup::new(name, pending, lag)
}

/// One stream `jobs` holding these groups, at `at` seconds.
fn snap(at: i64, groups: Vec<StreamGroup>) -> Snapshot {
    SnapshotBuilder::new()
        .taken_at_ms(at * 1000)
        .stream_groups("jobs", groups)
        .build()
}

/// Stream `jobs` with one group `workers` at lag `lag`.
fn lag(at: i64, lag: u64) -> Snapshot {
    snap(at, vec![group("workers", 2, Some(lag))])
}

fn gone(at: i64, reason: &str) -> Snapshot {
    SnapshotBuilder::new()
        .taken_at_ms(at * 1000)
        .unavailable(Probe::XinfoGroups("streams".into()), "jobs", reason)
        .build()
}

fn watcher(max_lag: u64, growing_polls: u64) -> StreamLag {
    StreamLag::new(Config {
        streams: vec!["jobs".into()],
        groups: Vec::new(),
        max_lag,
        growing_polls,
    })
}

fn text<'a>(e: &'a Event, name: &str) -> &'a str {
    e.get(name).and_then(Value::as_str).unwrap()
}

fn int(e: &Event, name: &str) -> i64 {
    e.get(name).and_then(Value::as_i64).unwrap()
}

/// `(condition, state)` of each event.
fn kinds(events: &[Event]) -> Vec<(&str, &str)> {
    events
        .iter()
        .map(|e| (text(e, "condition"), text(e, "state")))
        .collect()
}

/// `(kind, key, firing)` of each event's condition.
fn conditions(events: &[Event]) -> Vec<(&str, &str, bool)> {
    events
        .iter()
        .map(|e| {
            let c = e.condition.as_ref().expect("a condition");
            (
                c.kind.as_str(),
                c.key.as_str(),
                c.state == ConditionState::Firing,
            )
        })
        .collect()
}

#[test]
fn conditions_fire_and_resolve_per_group_and_stream() {
    let mut w = watcher(10, 1);
    w.observe(&lag(0, 1));
    let both = |firing| {
        [
            ("over-max-lag", "jobs/workers", firing),
            ("lag-growing", "jobs/workers", firing),
        ]
    };
    assert_eq!(conditions(&w.observe(&lag(1, 50))), both(true));
    assert!(w.observe(&lag(2, 60)).is_empty());
    assert_eq!(conditions(&w.observe(&lag(3, 5))), both(false));
    // Gone while holding both: each resolved by an event of its own.
    assert_eq!(conditions(&w.observe(&lag(4, 60))), both(true));
    assert_eq!(conditions(&w.observe(&snap(5, Vec::new()))), both(false));
    // Unreadable: the stream's condition fires, its groups' resolve.
    w.observe(&lag(6, 60));
    assert_eq!(
        conditions(&w.observe(&gone(7, "ERR no such key"))),
        [
            ("stream-unavailable", "jobs", true),
            ("over-max-lag", "jobs/workers", false)
        ]
    );
    assert_eq!(
        conditions(&w.observe(&lag(8, 0))),
        [("stream-unavailable", "jobs", false)]
    );
}

#[test]
fn manifest_declares_needs_and_config() {
    let m = StreamLag::manifest();
    assert_eq!(m.name, "stream-lag");
    assert_eq!(m.version, "0.1.0");
    assert_eq!(m.cadence, Cadence::EveryPoll);
    assert!(m.needs.info_fields.is_empty());
    assert!(m.needs.info_sections.is_empty());
    assert!(!m.needs.slowlog);
    assert_eq!(m.needs.probes, [Probe::XinfoGroups("streams".into())]);
    let keys: Vec<_> = m.config.iter().map(|k| k.name.as_str()).collect();
    assert_eq!(keys, ["streams", "groups", "max_lag", "growing_polls"]);
    assert_eq!(m.config[0].default, Value::Text(String::new()));
    assert_eq!(m.config[1].default, Value::Text(String::new()));
    assert_eq!(m.config[2].default, Value::Integer(1000));
    assert_eq!(m.config[3].default, Value::Integer(5));
}

#[test]
fn configure_defaults_lists_and_rejections() {
    assert_eq!(Config::from_settings(&[]).unwrap(), Config::default());
    let c = Config::from_settings(&[
        setting("streams", " jobs, mail  logs:stream"),
        setting("groups", "workers,archivers"),
        setting("max_lag", 0i64),
        setting("growing_polls", 0i64),
    ])
    .unwrap();
    assert_eq!(c.streams, ["jobs", "mail", "logs:stream"]);
    assert_eq!(c.groups, ["workers", "archivers"]);
    assert_eq!((c.max_lag, c.growing_polls), (0, 0));
    assert!(c.watches_group("workers"));
    assert!(!c.watches_group("other"));
    assert!(Config::default().watches_group("anything"));

    assert_eq!(
        Config::from_settings(&[setting("max_lag", -1i64)]).unwrap_err(),
        "key `max_lag` must be >= 0, got -1"
    );
    assert_eq!(
        Config::from_settings(&[setting("growing_polls", -5i64)]).unwrap_err(),
        "key `growing_polls` must be >= 0, got -5"
    );
    assert_eq!(
        Config::from_settings(&[setting("streams", 3i64)]).unwrap_err(),
        "key `streams` must be a text, got an integer 3"
    );
    assert_eq!(
        Config::from_settings(&[setting("groups", true)]).unwrap_err(),
        "key `groups` must be a text, got a boolean true"
    );
    assert_eq!(
        Config::from_settings(&[setting("max_lag", "lots")]).unwrap_err(),
        "key `max_lag` must be an integer, got a text \"lots\""
    );
    let many: Vec<String> = (0..65).map(|i| format!("s{i}")).collect();
    assert_eq!(
        Config::from_settings(&[setting("streams", many.join(","))]).unwrap_err(),
        "key `streams` must be at most 64 stream keys, got 65 keys"
    );
    assert_eq!(
        Config::from_settings(&[setting("streams", many[..64].join(" "))])
            .unwrap()
            .streams
            .len(),
        64
    );
}

#[test]
fn nothing_watched_means_no_events() {
    let mut w = StreamLag::new(Config::default());
    assert!(w.observe(&SnapshotBuilder::new().build()).is_empty());
}

#[test]
fn over_max_lag_enters_once_and_leaves_with_duration() {
    let mut w = watcher(1000, 0);
    assert!(w.observe(&lag(0, 1000)).is_empty());
    let events = w.observe(&lag(10, 1500));
    assert_eq!(events.len(), 1);
    let e = &events[0];
    assert_eq!(e.level, Level::Warn);
    assert_eq!(
        e.msg,
        "consumer group workers on stream jobs: lag 1500 above max_lag 1000"
    );
    assert_eq!(
        fields(e),
        [
            ("stream", &Value::Text("jobs".into())),
            ("group", &Value::Text("workers".into())),
            ("lag", &Value::Integer(1500)),
            ("measure", &Value::Text("lag".into())),
            ("max_lag", &Value::Integer(1000)),
            ("pending", &Value::Integer(2)),
            ("consumers", &Value::Integer(1)),
            ("state", &Value::Text("entered".into())),
            ("condition", &Value::Text("over_max_lag".into())),
        ]
    );
    assert!(w.is_over("jobs", "workers"));
    // Still above: quiet.
    assert!(w.observe(&lag(20, 5000)).is_empty());
    assert!(w.observe(&lag(30, 1001)).is_empty());
    // Back at max_lag: left.
    let events = w.observe(&lag(145, 1000));
    assert_eq!(events.len(), 1);
    let e = &events[0];
    assert_eq!(e.level, Level::Info);
    assert_eq!(
        e.msg,
        "consumer group workers on stream jobs: lag back to 1000, at or below max_lag 1000, after 2 min 15 s"
    );
    assert_eq!(kinds(&events), [("over_max_lag", "left")]);
    assert_eq!(int(e, "duration_ms"), 135_000);
    assert_eq!(int(e, "lag"), 1000);
    assert!(!w.is_over("jobs", "workers"));
    assert!(w.observe(&lag(150, 10)).is_empty());
    // And again.
    assert_eq!(
        kinds(&w.observe(&lag(160, 2000))),
        [("over_max_lag", "entered")]
    );
}

#[test]
fn over_max_lag_on_the_first_poll_is_reported() {
    let mut w = watcher(10, 0);
    assert_eq!(
        kinds(&w.observe(&lag(0, 11))),
        [("over_max_lag", "entered")]
    );
}

#[test]
fn max_lag_zero_reports_any_lag() {
    let mut w = watcher(0, 0);
    assert!(w.observe(&lag(0, 0)).is_empty());
    assert_eq!(kinds(&w.observe(&lag(1, 1))), [("over_max_lag", "entered")]);
    assert_eq!(kinds(&w.observe(&lag(2, 0))), [("over_max_lag", "left")]);
}

#[test]
fn pending_stands_in_when_lag_is_unknown() {
    let mut w = watcher(100, 0);
    let events = w.observe(&snap(0, vec![group("workers", 150, None)]));
    assert_eq!(events.len(), 1);
    let e = &events[0];
    assert_eq!(
        e.msg,
        "consumer group workers on stream jobs: pending 150 above max_lag 100 (lag unknown, counting pending entries)"
    );
    assert_eq!(text(e, "measure"), "pending");
    assert_eq!(int(e, "lag"), 150);
    assert_eq!(int(e, "pending"), 150);
    // Redis 7 tells the lag again: 20 is below, so the condition is left.
    let events = w.observe(&snap(5, vec![group("workers", 150, Some(20))]));
    assert_eq!(kinds(&events), [("over_max_lag", "left")]);
    assert_eq!(text(&events[0], "measure"), "lag");
    assert!(events[0].msg.starts_with(
        "consumer group workers on stream jobs: lag back to 20, at or below max_lag 100"
    ));
}

#[test]
fn a_known_lag_wins_over_pending() {
    let mut w = watcher(100, 0);
    // Many pending but nothing undelivered: not behind.
    assert!(
        w.observe(&snap(0, vec![group("workers", 5000, Some(0))]))
            .is_empty()
    );
}

#[test]
fn growing_lag_warns_after_growing_polls() {
    let mut w = watcher(1_000_000, 3);
    assert!(w.observe(&lag(0, 10)).is_empty()); // baseline
    assert!(w.observe(&lag(10, 20)).is_empty()); // 1
    assert!(w.observe(&lag(20, 30)).is_empty()); // 2
    let events = w.observe(&lag(30, 45)); // 3
    assert_eq!(events.len(), 1);
    let e = &events[0];
    assert_eq!(e.level, Level::Warn);
    assert_eq!(
        e.msg,
        "consumer group workers on stream jobs: lag growing for 3 polls, 10 -> 45"
    );
    assert_eq!(kinds(&events), [("growing", "entered")]);
    assert_eq!(int(e, "growing_polls"), 3);
    assert_eq!(int(e, "start_lag"), 10);
    assert!(w.is_growing("jobs", "workers"));
    // Keeps growing: quiet.
    assert!(w.observe(&lag(40, 60)).is_empty());
    assert!(w.observe(&lag(50, 70)).is_empty());
    // Stops growing; under max_lag, so it is left.
    let events = w.observe(&lag(60, 70));
    assert_eq!(events.len(), 1);
    let e = &events[0];
    assert_eq!(e.level, Level::Info);
    assert_eq!(
        e.msg,
        "consumer group workers on stream jobs: lag stopped growing, now 70 (started at 10, peak 70), after 1 min 0 s"
    );
    assert_eq!(kinds(&events), [("growing", "left")]);
    assert_eq!(int(e, "start_lag"), 10);
    assert_eq!(int(e, "peak_lag"), 70);
    assert_eq!(int(e, "duration_ms"), 60_000);
    assert!(!w.is_growing("jobs", "workers"));
}

#[test]
fn a_flat_poll_restarts_the_count() {
    let mut w = watcher(1_000_000, 3);
    w.observe(&lag(0, 10));
    w.observe(&lag(1, 20));
    w.observe(&lag(2, 30));
    assert!(w.observe(&lag(3, 30)).is_empty());
    assert!(w.observe(&lag(4, 25)).is_empty());
    assert!(w.observe(&lag(5, 26)).is_empty());
    assert!(w.observe(&lag(6, 27)).is_empty());
    let events = w.observe(&lag(7, 28));
    assert_eq!(kinds(&events), [("growing", "entered")]);
    assert!(events[0].msg.ends_with("growing for 3 polls, 25 -> 28"));
}

#[test]
fn growth_above_max_lag_stays_entered_until_drained() {
    let mut w = watcher(100, 2);
    w.observe(&lag(0, 50));
    assert!(w.observe(&lag(1, 80)).is_empty());
    assert_eq!(
        kinds(&w.observe(&lag(2, 200))),
        [("over_max_lag", "entered"), ("growing", "entered")]
    );
    // Flat, then dipping, but above both max_lag and the start: still growing.
    assert!(w.observe(&lag(3, 200)).is_empty());
    assert!(w.observe(&lag(4, 150)).is_empty());
    assert!(w.is_growing("jobs", "workers"));
    // Growing again does not warn again.
    assert!(w.observe(&lag(5, 300)).is_empty());
    assert!(w.observe(&lag(6, 400)).is_empty());
    assert!(w.observe(&lag(7, 500)).is_empty());
    // Back to max_lag: both conditions left.
    let events = w.observe(&lag(10, 100));
    assert_eq!(
        kinds(&events),
        [("over_max_lag", "left"), ("growing", "left")]
    );
    assert_eq!(
        events[1].msg,
        "consumer group workers on stream jobs: lag stopped growing, now 100 (started at 50, peak 500), after 10 s"
    );
}

#[test]
fn growth_is_left_when_back_to_its_start_even_above_max_lag() {
    let mut w = watcher(10, 2);
    assert_eq!(
        kinds(&w.observe(&lag(0, 500))),
        [("over_max_lag", "entered")]
    );
    w.observe(&lag(1, 600));
    assert_eq!(kinds(&w.observe(&lag(2, 700))), [("growing", "entered")]);
    assert!(w.observe(&lag(3, 501)).is_empty());
    assert_eq!(kinds(&w.observe(&lag(4, 500))), [("growing", "left")]);
    assert!(w.is_over("jobs", "workers"));
}

#[test]
fn growing_polls_zero_never_warns_growth() {
    let mut w = watcher(u64::MAX, 0);
    for i in 0..50 {
        assert!(w.observe(&lag(i, i as u64 * 10)).is_empty());
    }
}

#[test]
fn growing_polls_one_warns_on_the_first_rise() {
    let mut w = watcher(1000, 1);
    assert!(w.observe(&lag(0, 5)).is_empty());
    assert_eq!(kinds(&w.observe(&lag(1, 6))), [("growing", "entered")]);
    assert_eq!(kinds(&w.observe(&lag(2, 6))), [("growing", "left")]);
}

#[test]
fn switching_measure_resets_the_growth_count() {
    let mut w = watcher(1_000_000, 2);
    w.observe(&snap(0, vec![group("workers", 5, None)]));
    w.observe(&snap(1, vec![group("workers", 6, None)]));
    // Now the lag is known: a new baseline, not a rise.
    assert!(
        w.observe(&snap(2, vec![group("workers", 6, Some(100))]))
            .is_empty()
    );
    assert!(
        w.observe(&snap(3, vec![group("workers", 6, Some(101))]))
            .is_empty()
    );
    let events = w.observe(&snap(4, vec![group("workers", 6, Some(102))]));
    assert_eq!(kinds(&events), [("growing", "entered")]);
    assert!(
        events[0]
            .msg
            .ends_with("lag growing for 2 polls, 100 -> 102")
    );
}

#[test]
fn pending_growth_is_named_pending() {
    let mut w = watcher(1_000_000, 2);
    w.observe(&snap(0, vec![group("workers", 5, None)]));
    w.observe(&snap(1, vec![group("workers", 6, None)]));
    let events = w.observe(&snap(2, vec![group("workers", 9, None)]));
    assert_eq!(
        events[0].msg,
        "consumer group workers on stream jobs: pending growing for 2 polls, 5 -> 9 (lag unknown, counting pending entries)"
    );
    assert_eq!(text(&events[0], "measure"), "pending");
}

#[test]
fn groups_are_followed_apart_and_filtered() {
    let mut w = StreamLag::new(Config {
        streams: vec!["jobs".into(), "mail".into()],
        groups: vec!["workers".into(), "senders".into()],
        max_lag: 10,
        growing_polls: 0,
    });
    let s = SnapshotBuilder::new()
        .stream_groups(
            "jobs",
            vec![
                group("workers", 0, Some(50)),
                group("ignored", 0, Some(5000)),
            ],
        )
        .stream_groups(
            "mail",
            vec![group("senders", 0, Some(3)), group("workers", 0, Some(11))],
        )
        .build();
    let events = w.observe(&s);
    let who: Vec<_> = events
        .iter()
        .map(|e| (text(e, "stream"), text(e, "group")))
        .collect();
    assert_eq!(who, [("jobs", "workers"), ("mail", "workers")]);
    assert!(w.is_over("jobs", "workers"));
    assert!(!w.is_over("jobs", "ignored"));
    assert!(!w.is_over("mail", "senders"));
    assert!(w.observe(&s).is_empty());
}

#[test]
fn a_group_listed_twice_in_a_reading_counts_once() {
    let mut w = watcher(10, 0);
    let events = w.observe(&snap(
        0,
        vec![group("workers", 0, Some(50)), group("workers", 0, Some(1))],
    ));
    assert_eq!(kinds(&events), [("over_max_lag", "entered")]);
}

#[test]
fn unavailable_stream_reported_once_and_when_back() {
    let mut w = watcher(10, 0);
    let events = w.observe(&gone(0, "ERR no such key"));
    assert_eq!(events.len(), 1);
    let e = &events[0];
    assert_eq!(e.level, Level::Warn);
    assert_eq!(e.msg, "stream jobs cannot be read: ERR no such key");
    assert_eq!(
        fields(e),
        [
            ("stream", &Value::Text("jobs".into())),
            ("reason", &Value::Text("ERR no such key".into())),
            ("state", &Value::Text("entered".into())),
            ("condition", &Value::Text("unavailable".into())),
        ]
    );
    assert!(w.is_unavailable("jobs"));
    // Still unreadable, even for another reason: quiet.
    assert!(w.observe(&gone(5, "ERR no such key")).is_empty());
    assert!(
        w.observe(&gone(
            6,
            "WRONGTYPE Operation against a key holding the wrong kind of value"
        ))
        .is_empty()
    );
    let events = w.observe(&lag(42, 1));
    assert_eq!(events.len(), 1);
    let e = &events[0];
    assert_eq!(e.level, Level::Info);
    assert_eq!(e.msg, "stream jobs readable again after 42 s");
    assert_eq!(kinds(&events), [("unavailable", "left")]);
    assert_eq!(int(e, "duration_ms"), 42_000);
    assert!(!w.is_unavailable("jobs"));
    // Gone again: reported again.
    assert_eq!(
        kinds(&w.observe(&gone(50, "NOPERM"))),
        [("unavailable", "entered")]
    );
}

#[test]
fn readable_again_and_over_in_the_same_poll() {
    let mut w = watcher(10, 0);
    w.observe(&gone(0, "ERR no such key"));
    assert_eq!(
        kinds(&w.observe(&lag(1, 50))),
        [("unavailable", "left"), ("over_max_lag", "entered")]
    );
}

#[test]
fn unavailable_stream_forgets_its_groups() {
    let mut w = watcher(10, 2);
    w.observe(&lag(0, 50));
    assert!(w.is_over("jobs", "workers"));
    let events = w.observe(&gone(1, "ERR no such key"));
    assert!(!w.is_over("jobs", "workers"));
    // The group's condition ends with the stream.
    assert_eq!(
        kinds(&events),
        [("unavailable", "entered"), ("gone", "left")]
    );
    assert_eq!(
        events[1].msg,
        "consumer group workers on stream jobs is no longer watched, its stream cannot be read (it was reported for lag above max_lag)"
    );
    // Recreated with the same lag: a fresh group, entered again, and its
    // first poll is a new growth baseline.
    assert_eq!(
        kinds(&w.observe(&lag(2, 60))),
        [("unavailable", "left"), ("over_max_lag", "entered")]
    );
}

#[test]
fn a_quiet_group_that_disappears_is_forgotten_silently() {
    let mut w = watcher(10, 0);
    w.observe(&lag(0, 1));
    assert!(w.observe(&snap(1, Vec::new())).is_empty());
    assert!(w.group("jobs", "workers").is_none());
}

#[test]
fn a_reported_group_that_disappears_says_so_once() {
    let mut w = watcher(10, 1);
    w.observe(&lag(0, 1));
    assert_eq!(
        kinds(&w.observe(&lag(1, 50))),
        [("over_max_lag", "entered"), ("growing", "entered")]
    );
    // One event per condition it resolves, both with the same message.
    let events = w.observe(&snap(2, vec![group("others", 0, Some(0))]));
    assert_eq!(events.len(), 2);
    let e = &events[0];
    assert_eq!(e.level, Level::Info);
    assert_eq!(
        e.msg,
        "consumer group workers on stream jobs is gone (it was reported for lag above max_lag and lag growing)"
    );
    assert_eq!(events[1].msg, e.msg);
    assert_eq!(kinds(&events), [("gone", "left"), ("gone", "left")]);
    assert_eq!(text(e, "group"), "workers");
    assert!(
        w.observe(&snap(3, vec![group("others", 0, Some(0))]))
            .is_empty()
    );
    // Back with the same lag: entered afresh.
    assert_eq!(
        kinds(&w.observe(&lag(4, 50))),
        [("over_max_lag", "entered")]
    );
}

#[test]
fn a_stream_listed_twice_counts_once() {
    let mut w = watcher(10, 0);
    let s = SnapshotBuilder::new()
        .stream_groups("jobs", vec![group("workers", 0, Some(50))])
        .stream_groups("jobs", vec![group("workers", 0, Some(0))])
        .build();
    assert_eq!(kinds(&w.observe(&s)), [("over_max_lag", "entered")]);
    assert!(w.is_over("jobs", "workers"));
}

#[test]
fn clock_going_back_gives_zero_durations() {
    let mut w = watcher(10, 0);
    w.observe(&lag(100, 50));
    let events = w.observe(&lag(50, 0));
    assert_eq!(int(&events[0], "duration_ms"), 0);
    assert!(events[0].msg.ends_with("after 0 s"));
}

#[test]
fn huge_values_do_not_overflow() {
    let mut w = watcher(u64::MAX - 1, 1);
    w.observe(&lag(i64::MIN / 1000, u64::MAX - 1));
    let events = w.observe(&lag(i64::MAX / 1000, u64::MAX));
    assert_eq!(
        kinds(&events),
        [("over_max_lag", "entered"), ("growing", "entered")]
    );
    assert_eq!(int(&events[0], "lag"), i64::MAX);
}

#[test]
fn exported_glue_keeps_state_between_calls() {
    assert_eq!(StreamLag::describe().name, "stream-lag");
    assert_eq!(
        StreamLag::configure(vec![setting("max_lag", -3i64)]).unwrap_err(),
        "key `max_lag` must be >= 0, got -3"
    );
    StreamLag::configure(vec![
        setting("streams", "jobs"),
        setting("max_lag", 10i64),
        setting("growing_polls", 0i64),
    ])
    .unwrap();
    assert_eq!(<StreamLag as Guest>::observe(lag(0, 50)).len(), 1);
    assert!(<StreamLag as Guest>::observe(lag(1, 50)).is_empty());
    assert_eq!(<StreamLag as Guest>::observe(lag(2, 5)).len(), 1);
}

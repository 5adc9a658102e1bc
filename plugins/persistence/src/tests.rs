//! Unit tests of the `persistence` watcher.
use lookout_watcher::testing::{SnapshotBuilder, fields, setting};
use lookout_watcher::{Guest, Value};

use super::*;

/// INFO persistence of a redis-server 7.0.15 started with `--save ''`,
/// nothing saved yet.
const HEALTHY: &str = "\
# Persistence
loading:0
async_loading:0
current_cow_peak:0
current_cow_size:0
current_cow_size_age:0
current_fork_perc:0.00
current_save_keys_processed:0
current_save_keys_total:0
rdb_changes_since_last_save:0
rdb_bgsave_in_progress:0
rdb_last_save_time:1795458675
rdb_last_bgsave_status:ok
rdb_last_bgsave_time_sec:-1
rdb_current_bgsave_time_sec:-1
rdb_saves:0
rdb_last_cow_size:0
rdb_last_load_keys_expired:0
rdb_last_load_keys_loaded:0
aof_enabled:0
aof_rewrite_in_progress:0
aof_rewrite_scheduled:0
aof_last_rewrite_time_sec:-1
aof_current_rewrite_time_sec:-1
aof_last_bgrewrite_status:ok
aof_rewrites:0
aof_rewrites_consecutive_failures:0
aof_last_write_status:ok
aof_last_cow_size:0
module_fork_in_progress:0
module_fork_last_cow_size:0";

/// The same server after a BGSAVE into a directory that was removed.
const BGSAVE_FAILED: &str = "\
# Persistence
rdb_changes_since_last_save:1
rdb_bgsave_in_progress:0
rdb_last_save_time:1795458691
rdb_last_bgsave_status:err
rdb_last_bgsave_time_sec:0
rdb_current_bgsave_time_sec:-1
rdb_saves:2
rdb_last_cow_size:270336
aof_last_bgrewrite_status:ok
aof_last_write_status:ok";

/// A BGSAVE slowed down by `rdb-key-save-delay`, 3 s in, after the
/// failed one.
const BGSAVE_RUNNING: &str = "\
# Persistence
current_cow_peak:385024
current_cow_size:385024
current_cow_size_age:1
current_fork_perc:50.00
current_save_keys_processed:1
current_save_keys_total:2
rdb_changes_since_last_save:1
rdb_bgsave_in_progress:1
rdb_last_save_time:1795458691
rdb_last_bgsave_status:err
rdb_last_bgsave_time_sec:0
rdb_current_bgsave_time_sec:3
rdb_saves:3
aof_last_bgrewrite_status:ok
aof_last_write_status:ok";

/// That save finished, after 4 s.
const BGSAVE_DONE: &str = "\
# Persistence
rdb_changes_since_last_save:0
rdb_bgsave_in_progress:0
rdb_last_save_time:1795458701
rdb_last_bgsave_status:ok
rdb_last_bgsave_time_sec:4
rdb_current_bgsave_time_sec:-1
rdb_saves:3
aof_last_bgrewrite_status:ok
aof_last_write_status:ok";

/// AOF on, a BGREWRITEAOF into a directory that was removed.
const AOF_REWRITE_FAILED: &str = "\
# Persistence
rdb_changes_since_last_save:1
rdb_bgsave_in_progress:0
rdb_last_save_time:1795458701
rdb_last_bgsave_status:ok
aof_enabled:1
aof_rewrite_in_progress:0
aof_rewrite_scheduled:0
aof_last_rewrite_time_sec:0
aof_current_rewrite_time_sec:-1
aof_last_bgrewrite_status:err
aof_rewrites:1
aof_rewrites_consecutive_failures:0
aof_last_write_status:ok
aof_last_cow_size:249856
aof_current_size:155
aof_base_size:105";

const RUN: &str = "f25dec7567c01cd4b4760449ff395a0bee1cad92";
/// `rdb_last_save_time` of HEALTHY, in ms.
const T0: i64 = 1_795_458_675_000;

/// A snapshot from INFO text with `run_id` in the server section.
fn info(run_id: &str, at_ms: i64, text: &str) -> Snapshot {
    let mut b = SnapshotBuilder::new()
        .taken_at_ms(at_ms)
        .info("server", "run_id", run_id);
    let mut section = String::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if let Some(name) = line.strip_prefix('#') {
            section = name.trim().to_ascii_lowercase();
        } else if let Some((name, value)) = line.split_once(':') {
            b = b.info(&section, name, value);
        }
    }
    b.build()
}

/// `text` with the given fields' values replaced.
fn with(text: &str, changes: &[(&str, &str)]) -> String {
    text.lines()
        .map(|line| {
            let name = line.split_once(':').map_or("", |(n, _)| n);
            match changes.iter().find(|(n, _)| *n == name) {
                Some((n, v)) => format!("{n}:{v}\n"),
                None => format!("{line}\n"),
            }
        })
        .collect()
}

/// HEALTHY with a save running for `s` seconds.
fn running(s: u64) -> String {
    with(
        HEALTHY,
        &[
            ("rdb_bgsave_in_progress", "1"),
            ("rdb_current_bgsave_time_sec", &s.to_string()),
        ],
    )
}

fn watcher(max_bgsave_s: u64, max_save_age_s: u64) -> Persistence {
    Persistence::new(Config {
        max_bgsave_s,
        max_save_age_s,
    })
}

fn state(e: &Event) -> &str {
    e.get("state").and_then(Value::as_str).unwrap()
}

fn text(v: &str) -> Value {
    Value::Text(v.to_string())
}

#[test]
fn manifest_declares_needs_and_config() {
    let m = Persistence::manifest();
    assert_eq!(m.name, "persistence");
    assert_eq!(m.version, "0.1.0");
    assert_eq!(m.cadence, Cadence::EveryPoll);
    assert_eq!(m.needs.info_fields, ["run_id"]);
    assert_eq!(m.needs.info_sections, ["persistence"]);
    assert!(m.needs.probes.is_empty());
    assert!(!m.needs.slowlog);
    let keys: Vec<_> = m.config.iter().map(|k| k.name.as_str()).collect();
    assert_eq!(keys, ["max_bgsave_s", "max_save_age_s"]);
    assert_eq!(m.config[0].default, Value::Integer(600));
    assert_eq!(m.config[1].default, Value::Integer(86_400));
}

#[test]
fn configure_defaults_and_rejections() {
    assert_eq!(Config::from_settings(&[]).unwrap(), Config::default());
    assert_eq!(
        Config::default(),
        Config {
            max_bgsave_s: 600,
            max_save_age_s: 86_400
        }
    );
    let ok = Config::from_settings(&[
        setting("max_bgsave_s", 1i64),
        setting("max_save_age_s", 0i64),
    ])
    .unwrap();
    assert_eq!((ok.max_bgsave_s, ok.max_save_age_s), (1, 0));
    for bad in [0i64, -5] {
        assert_eq!(
            Config::from_settings(&[setting("max_bgsave_s", bad)]).unwrap_err(),
            format!("key `max_bgsave_s` must be >= 1, got {bad}")
        );
    }
    assert_eq!(
        Config::from_settings(&[setting("max_save_age_s", -1i64)]).unwrap_err(),
        "key `max_save_age_s` must be >= 0, got -1"
    );
    assert_eq!(
        Config::from_settings(&[setting("max_bgsave_s", "10m")]).unwrap_err(),
        "key `max_bgsave_s` must be an integer, got a text \"10m\""
    );
    assert_eq!(
        Config::from_settings(&[setting("max_save_age_s", true)]).unwrap_err(),
        "key `max_save_age_s` must be an integer, got a boolean true"
    );
}

#[test]
fn a_healthy_server_reports_nothing() {
    let mut w = watcher(600, 86_400);
    for i in 0..5 {
        assert!(w.observe(&info(RUN, T0 + i * 1000, HEALTHY)).is_empty());
    }
}

#[test]
fn a_failed_bgsave_is_an_error_once_and_its_recovery_info_once() {
    let mut w = watcher(600, 86_400);
    assert!(w.observe(&info(RUN, T0, HEALTHY)).is_empty());
    let events = w.observe(&info(RUN, T0 + 17_000, BGSAVE_FAILED));
    assert_eq!(events.len(), 1);
    let e = &events[0];
    assert_eq!(e.level, Level::Error);
    assert_eq!(
        e.msg,
        "last background save failed (rdb_last_bgsave_status err), 1 change not saved"
    );
    assert_eq!(
        fields(e),
        [
            ("rdb_last_bgsave_status", &text("err")),
            ("rdb_changes_since_last_save", &Value::Integer(1)),
            ("state", &text("entered")),
        ]
    );
    assert!(w.bgsave_failed());
    assert!(w.observe(&info(RUN, T0 + 18_000, BGSAVE_FAILED)).is_empty());
    // A new save running: the status still says err, nothing new.
    assert!(
        w.observe(&info(RUN, T0 + 20_000, BGSAVE_RUNNING))
            .is_empty()
    );
    let events = w.observe(&info(RUN, T0 + 27_000, BGSAVE_DONE));
    assert_eq!(events.len(), 1);
    let e = &events[0];
    assert_eq!(e.level, Level::Info);
    assert_eq!(e.msg, "background save succeeded again after 10 s");
    assert_eq!(
        fields(e),
        [
            ("rdb_last_bgsave_status", &text("ok")),
            ("duration_s", &Value::Integer(10)),
            ("state", &text("left")),
        ]
    );
    assert!(!w.bgsave_failed());
    assert!(w.observe(&info(RUN, T0 + 28_000, BGSAVE_DONE)).is_empty());
}

#[test]
fn a_failed_bgsave_at_the_first_poll_is_reported() {
    let mut w = watcher(600, 86_400);
    let events = w.observe(&info(RUN, T0 + 17_000, BGSAVE_FAILED));
    assert_eq!(events.len(), 1);
    assert_eq!(state(&events[0]), "entered");
}

#[test]
fn a_failed_aof_rewrite_is_an_error_once() {
    let mut w = watcher(600, 86_400);
    let events = w.observe(&info(RUN, T0, AOF_REWRITE_FAILED));
    assert_eq!(events.len(), 1);
    let e = &events[0];
    assert_eq!(e.level, Level::Error);
    assert_eq!(
        e.msg,
        "AOF rewrite failed (aof_last_bgrewrite_status err), 0 consecutive failures"
    );
    assert_eq!(
        fields(e),
        [
            ("aof_last_bgrewrite_status", &text("err")),
            ("aof_rewrites_consecutive_failures", &Value::Integer(0)),
            ("state", &text("entered")),
        ]
    );
    assert!(w.aof_rewrite_failed());
    assert!(!w.aof_write_failed());
    assert!(
        w.observe(&info(RUN, T0 + 1_000, AOF_REWRITE_FAILED))
            .is_empty()
    );
    let fixed = with(AOF_REWRITE_FAILED, &[("aof_last_bgrewrite_status", "ok")]);
    let events = w.observe(&info(RUN, T0 + 61_000, &fixed));
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].level, Level::Info);
    assert_eq!(events[0].msg, "AOF rewrite ok again after 61 s");
    assert_eq!(
        fields(&events[0]),
        [
            ("aof_last_bgrewrite_status", &text("ok")),
            ("duration_s", &Value::Integer(61)),
            ("state", &text("left")),
        ]
    );
    assert!(w.observe(&info(RUN, T0 + 62_000, &fixed)).is_empty());
}

#[test]
fn a_failed_aof_write_is_an_error_once() {
    let mut w = watcher(600, 86_400);
    w.observe(&info(RUN, T0, HEALTHY));
    let broken = with(
        HEALTHY,
        &[("aof_enabled", "1"), ("aof_last_write_status", "err")],
    );
    let events = w.observe(&info(RUN, T0 + 1_000, &broken));
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].level, Level::Error);
    assert_eq!(
        events[0].msg,
        "AOF write failed (aof_last_write_status err)"
    );
    assert_eq!(
        fields(&events[0]),
        [
            ("aof_last_write_status", &text("err")),
            ("state", &text("entered")),
        ]
    );
    // Both failing: each reported on its own.
    let both = with(&broken, &[("aof_last_bgrewrite_status", "err")]);
    let events = w.observe(&info(RUN, T0 + 2_000, &both));
    assert_eq!(events.len(), 1);
    assert_eq!(
        events[0].get("aof_last_bgrewrite_status"),
        Some(&text("err"))
    );
    let events = w.observe(&info(RUN, T0 + 5_000, HEALTHY));
    let msgs: Vec<_> = events.iter().map(|e| e.msg.as_str()).collect();
    assert_eq!(
        msgs,
        [
            "AOF write ok again after 4 s",
            "AOF rewrite ok again after 3 s"
        ]
    );
    assert!(
        events
            .iter()
            .all(|e| e.level == Level::Info && state(e) == "left")
    );
}

#[test]
fn a_long_bgsave_warns_once_and_reports_its_length_when_done() {
    let mut w = watcher(600, 0);
    assert!(w.observe(&info(RUN, T0, &running(599))).is_empty());
    assert!(w.observe(&info(RUN, T0 + 1_000, &running(600))).is_empty());
    let events = w.observe(&info(RUN, T0 + 2_000, &running(601)));
    assert_eq!(events.len(), 1);
    let e = &events[0];
    assert_eq!(e.level, Level::Warn);
    assert_eq!(e.msg, "background save running for 601 s (limit 600 s)");
    assert_eq!(
        fields(e),
        [
            ("rdb_current_bgsave_time_sec", &Value::Integer(601)),
            ("max_bgsave_s", &Value::Integer(600)),
            ("state", &text("entered")),
        ]
    );
    assert!(w.bgsave_too_long());
    for s in [700, 800] {
        assert!(
            w.observe(&info(RUN, T0 + s * 1000, &running(s as u64)))
                .is_empty()
        );
    }
    let done = with(
        HEALTHY,
        &[
            ("rdb_last_bgsave_time_sec", "812"),
            ("rdb_last_save_time", "1795459487"),
        ],
    );
    let events = w.observe(&info(RUN, T0 + 815_000, &done));
    assert_eq!(events.len(), 1);
    let e = &events[0];
    assert_eq!(e.level, Level::Info);
    assert_eq!(e.msg, "background save finished after 812 s (status ok)");
    assert_eq!(
        fields(e),
        [
            ("duration_s", &Value::Integer(812)),
            ("rdb_last_bgsave_status", &text("ok")),
            ("restarted", &Value::Boolean(false)),
            ("state", &text("left")),
        ]
    );
    assert!(!w.bgsave_too_long());
    assert!(w.observe(&info(RUN, T0 + 816_000, &done)).is_empty());
}

#[test]
fn a_long_bgsave_that_failed_says_so() {
    let mut w = watcher(1, 0);
    // The earlier save failed; this one runs too long.
    let events = w.observe(&info(RUN, T0 + 20_000, BGSAVE_RUNNING));
    let levels: Vec<_> = events.iter().map(|e| e.level).collect();
    assert_eq!(levels, [Level::Error, Level::Warn]);
    // It failed as well: the failure is still the open one.
    let failed = with(BGSAVE_FAILED, &[("rdb_last_bgsave_time_sec", "4")]);
    let events = w.observe(&info(RUN, T0 + 22_000, &failed));
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(
        events[0].msg,
        "background save finished after 4 s (status err)"
    );
    assert!(w.bgsave_failed());
}

#[test]
fn a_save_replaced_between_polls_ends_and_the_next_is_judged_afresh() {
    let mut w = watcher(10, 0);
    w.observe(&info(RUN, T0, &running(50)));
    assert!(w.bgsave_too_long());
    // Shorter than before: that save ended, another one runs.
    let events = w.observe(&info(RUN, T0 + 60_000, &running(5)));
    assert_eq!(events.len(), 1);
    assert_eq!(
        events[0].msg,
        "background save finished after at least 50 s (status ok)"
    );
    assert_eq!(events[0].get("duration_s"), Some(&Value::Integer(50)));
    assert!(!w.bgsave_too_long());
    let events = w.observe(&info(RUN, T0 + 70_000, &running(15)));
    assert_eq!(state(&events[0]), "entered");
}

#[test]
fn a_restart_ends_a_long_save() {
    let mut w = watcher(10, 0);
    w.observe(&info(RUN, T0, &running(50)));
    let events = w.observe(&info("new-run", T0 + 5_000, HEALTHY));
    assert_eq!(events.len(), 1);
    let e = &events[0];
    assert_eq!(e.level, Level::Info);
    assert_eq!(
        e.msg,
        "background save no longer running: the server restarted (it ran at least 50 s)"
    );
    assert_eq!(e.get("restarted"), Some(&Value::Boolean(true)));
    assert_eq!(state(e), "left");
    // Even when the new server is saving already.
    let mut w = watcher(10, 0);
    w.observe(&info(RUN, T0, &running(50)));
    let events = w.observe(&info("new-run", T0 + 70_000, &running(60)));
    assert_eq!(events.len(), 2);
    assert_eq!(state(&events[0]), "left");
    assert_eq!(state(&events[1]), "entered");
}

#[test]
fn old_unsaved_changes_warn_once_and_a_save_ends_it() {
    let mut w = watcher(600, 3_600);
    let dirty = with(HEALTHY, &[("rdb_changes_since_last_save", "1234")]);
    // An hour after the last save, not more.
    assert!(w.observe(&info(RUN, T0 + 3_600_999, &dirty)).is_empty());
    let events = w.observe(&info(RUN, T0 + 3_601_000, &dirty));
    assert_eq!(events.len(), 1);
    let e = &events[0];
    assert_eq!(e.level, Level::Warn);
    assert_eq!(
        e.msg,
        "last successful save 3601 s ago (limit 3600 s) with 1234 unsaved changes"
    );
    assert_eq!(
        fields(e),
        [
            ("last_save_age_s", &Value::Integer(3601)),
            ("rdb_last_save_time", &Value::Integer(1_795_458_675)),
            ("rdb_changes_since_last_save", &Value::Integer(1234)),
            ("max_save_age_s", &Value::Integer(3600)),
            ("state", &text("entered")),
        ]
    );
    assert!(w.save_too_old());
    assert!(w.observe(&info(RUN, T0 + 7_200_000, &dirty)).is_empty());
    let saved = with(
        HEALTHY,
        &[
            ("rdb_last_save_time", "1795465875"),
            ("rdb_changes_since_last_save", "3"),
        ],
    );
    let events = w.observe(&info(RUN, T0 + 7_210_000, &saved));
    assert_eq!(events.len(), 1);
    let e = &events[0];
    assert_eq!(e.level, Level::Info);
    assert_eq!(
        e.msg,
        "a save happened: last successful save 10 s ago, 3 unsaved changes (at risk for 3609 s)"
    );
    assert_eq!(
        fields(e),
        [
            ("last_save_age_s", &Value::Integer(10)),
            ("rdb_last_save_time", &Value::Integer(1_795_465_875)),
            ("rdb_changes_since_last_save", &Value::Integer(3)),
            ("max_save_age_s", &Value::Integer(3600)),
            ("duration_s", &Value::Integer(3609)),
            ("state", &text("left")),
        ]
    );
    assert!(!w.save_too_old());
}

#[test]
fn an_old_save_without_changes_is_fine() {
    let mut w = watcher(600, 60);
    // Nothing changed since: nothing at risk, however old.
    assert!(
        w.observe(&info(RUN, T0 + 86_400_000 * 30, HEALTHY))
            .is_empty()
    );
    // Changes, then nothing unsaved any more without a newer save
    // (FLUSHALL with saving off, a replica resync).
    let dirty = with(HEALTHY, &[("rdb_changes_since_last_save", "1")]);
    assert_eq!(w.observe(&info(RUN, T0 + 100_000, &dirty)).len(), 1);
    let events = w.observe(&info(RUN, T0 + 110_000, HEALTHY));
    assert_eq!(
        events[0].msg,
        "unsaved changes no longer at risk: last successful save 110 s ago, 0 unsaved changes (after 10 s)"
    );
}

#[test]
fn max_save_age_zero_turns_the_check_off() {
    let mut w = watcher(600, 0);
    let dirty = with(HEALTHY, &[("rdb_changes_since_last_save", "99")]);
    assert!(
        w.observe(&info(RUN, T0 + 86_400_000 * 365, &dirty))
            .is_empty()
    );
    assert!(!w.save_too_old());
}

#[test]
fn a_restart_ends_old_unsaved_changes() {
    let mut w = watcher(600, 60);
    let dirty = with(HEALTHY, &[("rdb_changes_since_last_save", "5")]);
    w.observe(&info(RUN, T0 + 120_000, &dirty));
    let restarted = with(HEALTHY, &[("rdb_last_save_time", "1795458800")]);
    let events = w.observe(&info("new-run", T0 + 130_000, &restarted));
    assert_eq!(events.len(), 1);
    assert_eq!(
        events[0].msg,
        "unsaved changes no longer tracked: the server restarted, last save 5 s ago, 0 unsaved changes (reported 10 s ago)"
    );
    assert_eq!(state(&events[0]), "left");
}

#[test]
fn a_clock_behind_the_server_is_not_an_old_save() {
    let mut w = watcher(600, 60);
    let dirty = with(HEALTHY, &[("rdb_changes_since_last_save", "5")]);
    assert!(w.observe(&info(RUN, 0, &dirty)).is_empty());
}

#[test]
fn missing_or_bad_fields_change_nothing() {
    let mut w = watcher(10, 60);
    assert!(w.observe(&SnapshotBuilder::new().build()).is_empty());
    let mut all_bad = watcher(10, 60);
    let bad_state = with(
        &running(50),
        &[
            ("rdb_last_bgsave_status", "err"),
            ("aof_last_write_status", "err"),
            ("aof_last_bgrewrite_status", "err"),
            ("rdb_changes_since_last_save", "5"),
        ],
    );
    assert_eq!(
        all_bad.observe(&info(RUN, T0 + 120_000, &bad_state)).len(),
        5
    );
    for text in [
        "",
        "rdb_bgsave_in_progress:1\nrdb_current_bgsave_time_sec:-1",
        "rdb_bgsave_in_progress:x\nrdb_last_save_time:soon\nrdb_changes_since_last_save:-3",
    ] {
        assert!(
            all_bad.observe(&info(RUN, T0 + 130_000, text)).is_empty(),
            "{text}"
        );
    }
    assert!(all_bad.bgsave_failed());
    assert!(all_bad.aof_write_failed());
    assert!(all_bad.aof_rewrite_failed());
    assert!(all_bad.bgsave_too_long());
    assert!(all_bad.save_too_old());
    // Older Redis without aof_rewrites_consecutive_failures.
    let mut w = watcher(10, 60);
    let s = SnapshotBuilder::new()
        .info("persistence", "aof_last_bgrewrite_status", "err")
        .build();
    assert_eq!(
        w.observe(&s)[0].msg,
        "AOF rewrite failed (aof_last_bgrewrite_status err)"
    );
    // No run_id declared: no restart is seen.
    let mut w = watcher(10, 0);
    w.observe(
        &SnapshotBuilder::new()
            .info("persistence", "rdb_bgsave_in_progress", "1")
            .info("persistence", "rdb_current_bgsave_time_sec", "11")
            .build(),
    );
    assert!(
        w.observe(
            &SnapshotBuilder::new()
                .info("persistence", "rdb_bgsave_in_progress", "1")
                .info("persistence", "rdb_current_bgsave_time_sec", "12")
                .build()
        )
        .is_empty()
    );
}

#[test]
fn exported_glue_keeps_state_between_calls() {
    assert_eq!(Persistence::describe().name, "persistence");
    assert_eq!(
        Persistence::configure(vec![setting("max_bgsave_s", 0i64)]).unwrap_err(),
        "key `max_bgsave_s` must be >= 1, got 0"
    );
    Persistence::configure(vec![setting("max_save_age_s", 0i64)]).unwrap();
    assert!(<Persistence as Guest>::observe(info(RUN, T0, HEALTHY)).is_empty());
    assert_eq!(
        <Persistence as Guest>::observe(info(RUN, T0, BGSAVE_FAILED)).len(),
        1
    );
    assert!(<Persistence as Guest>::observe(info(RUN, T0, BGSAVE_FAILED)).is_empty());
    assert_eq!(
        <Persistence as Guest>::observe(info(RUN, T0, BGSAVE_DONE)).len(),
        1
    );
}

//! Unit tests of the `replication` watcher.
use lookout_watcher::testing::{SnapshotBuilder, fields, setting};
use lookout_watcher::{Guest, Value};

use super::*;

/// INFO replication of a redis-server 7.0.15 master with one replica
/// online (the offsets and `connected_slaves` are replaced by `master`).
const MASTER: &str = "\
# Replication
role:master
connected_slaves:1
slave0:ip=127.0.0.1,port=21380,state=online,offset=0,lag=1
master_failover_state:no-failover
master_replid:e73a1a4a66efe419a2b91c5b32ce0c05dc326956
master_replid2:0000000000000000000000000000000000000000
master_repl_offset:50
second_repl_offset:-1
repl_backlog_active:1
repl_backlog_size:1048576
repl_backlog_first_byte_offset:1
repl_backlog_histlen:50";

/// INFO replication of a redis-server 7.0.15 replica, link up.
const REPLICA_UP: &str = "\
# Replication
role:slave
master_host:127.0.0.1
master_port:21379
master_link_status:up
master_last_io_seconds_ago:0
master_sync_in_progress:0
slave_read_repl_offset:50
slave_repl_offset:50
slave_priority:100
slave_read_only:1
replica_announced:1
connected_slaves:0
master_failover_state:no-failover
master_replid:e73a1a4a66efe419a2b91c5b32ce0c05dc326956
master_replid2:0000000000000000000000000000000000000000
master_repl_offset:50
second_repl_offset:-1
repl_backlog_active:1
repl_backlog_size:1048576
repl_backlog_first_byte_offset:1
repl_backlog_histlen:50";

/// The same replica 3 s after its master shut down.
const REPLICA_DOWN: &str = "\
# Replication
role:slave
master_host:127.0.0.1
master_port:21379
master_link_status:down
master_last_io_seconds_ago:-1
master_sync_in_progress:0
slave_read_repl_offset:50
slave_repl_offset:50
master_link_down_since_seconds:3
slave_priority:100
slave_read_only:1
replica_announced:1
connected_slaves:0
master_failover_state:no-failover
master_replid:e73a1a4a66efe419a2b91c5b32ce0c05dc326956
master_replid2:0000000000000000000000000000000000000000
master_repl_offset:50
second_repl_offset:-1
repl_backlog_active:1
repl_backlog_size:1048576
repl_backlog_first_byte_offset:1
repl_backlog_histlen:50";

/// A replica just started, before its first sync completed: the link
/// was never up, so `master_link_down_since_seconds` is -1.
const REPLICA_STARTING: &str = "\
# Replication
role:slave
master_host:127.0.0.1
master_port:21379
master_link_status:down
master_last_io_seconds_ago:-1
master_sync_in_progress:1
slave_read_repl_offset:1
slave_repl_offset:1
master_link_down_since_seconds:-1
slave_priority:100
slave_read_only:1
replica_announced:1
connected_slaves:0
master_failover_state:no-failover
master_replid:9f482196aa7e7853ccda5f7f2d9804672d54d7e3
master_replid2:0000000000000000000000000000000000000000
master_repl_offset:0
second_repl_offset:-1
repl_backlog_active:0
repl_backlog_size:1048576
repl_backlog_first_byte_offset:0
repl_backlog_histlen:0";

const RUN: &str = "f25dec7567c01cd4b4760449ff395a0bee1cad92";

/// A snapshot from INFO text (`# Section` headers, `name:value` lines),
/// with `run_id` in the server section.
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

/// The real master text with `connected_slaves`, `master_repl_offset`
/// and the `slaveN` lines replaced: `(ip, port, state, offset)`.
fn master(at_ms: i64, offset: u64, replicas: &[(&str, u16, &str, u64)]) -> Snapshot {
    master_run(RUN, at_ms, offset, replicas)
}

fn master_run(
    run_id: &str,
    at_ms: i64,
    offset: u64,
    replicas: &[(&str, u16, &str, u64)],
) -> Snapshot {
    let mut text = String::new();
    for line in MASTER.lines() {
        if line.starts_with("slave0:") {
            for (i, (ip, port, state, off)) in replicas.iter().enumerate() {
                text.push_str(&format!(
                    "slave{i}:ip={ip},port={port},state={state},offset={off},lag=0\n"
                ));
            }
        } else if line.starts_with("connected_slaves:") {
            text.push_str(&format!("connected_slaves:{}\n", replicas.len()));
        } else if line.starts_with("master_repl_offset:") {
            text.push_str(&format!("master_repl_offset:{offset}\n"));
        } else {
            text.push_str(line);
            text.push('\n');
        }
    }
    info(run_id, at_ms, &text)
}

fn watcher(max_offset_lag: u64, min_replicas: u64) -> Replication {
    Replication::new(Config {
        max_offset_lag,
        min_replicas,
    })
}

fn state(e: &Event) -> &str {
    e.get("state").and_then(Value::as_str).unwrap()
}

fn text(v: &str) -> Value {
    Value::Text(v.to_string())
}

const A: (&str, u16, &str, u64) = ("10.0.0.7", 6379, "online", 1000);
const B: (&str, u16, &str, u64) = ("10.0.0.8", 6379, "online", 1000);
const C: (&str, u16, &str, u64) = ("10.0.0.9", 6380, "online", 1000);

#[test]
fn manifest_declares_needs_and_config() {
    let m = Replication::manifest();
    assert_eq!(m.name, "replication");
    assert_eq!(m.version, "0.1.0");
    assert_eq!(m.cadence, Cadence::EveryPoll);
    assert_eq!(m.needs.info_fields, ["run_id"]);
    assert_eq!(m.needs.info_sections, ["replication"]);
    assert!(m.needs.probes.is_empty());
    assert!(!m.needs.slowlog);
    let keys: Vec<_> = m.config.iter().map(|k| k.name.as_str()).collect();
    assert_eq!(keys, ["max_offset_lag", "min_replicas"]);
    assert_eq!(m.config[0].default, Value::Integer(1_048_576));
    assert_eq!(m.config[1].default, Value::Integer(0));
}

#[test]
fn configure_defaults_and_rejections() {
    assert_eq!(Config::from_settings(&[]).unwrap(), Config::default());
    assert_eq!(
        Config::default(),
        Config {
            max_offset_lag: 1_048_576,
            min_replicas: 0
        }
    );
    let ok = Config::from_settings(&[
        setting("max_offset_lag", 0i64),
        setting("min_replicas", 2i64),
    ])
    .unwrap();
    assert_eq!((ok.max_offset_lag, ok.min_replicas), (0, 2));
    assert_eq!(
        Config::from_settings(&[setting("max_offset_lag", -1i64)]).unwrap_err(),
        "key `max_offset_lag` must be >= 0, got -1"
    );
    assert_eq!(
        Config::from_settings(&[setting("min_replicas", -2i64)]).unwrap_err(),
        "key `min_replicas` must be >= 0, got -2"
    );
    assert_eq!(
        Config::from_settings(&[setting("max_offset_lag", "1mb")]).unwrap_err(),
        "key `max_offset_lag` must be an integer, got a text \"1mb\""
    );
    assert_eq!(
        Config::from_settings(&[setting("min_replicas", 1.5)]).unwrap_err(),
        "key `min_replicas` must be an integer, got a float 1.5"
    );
}

#[test]
fn replica_lines_are_parsed() {
    let s = info(RUN, 0, MASTER);
    assert_eq!(
        replica_lines(&s),
        [ReplicaLine {
            addr: "127.0.0.1:21380".to_string(),
            state: "online".to_string(),
            offset: Some(0),
            lag_s: Some(1),
        }]
    );
    // A replica's own slave_* fields are not replica lines.
    assert!(replica_lines(&info(RUN, 0, REPLICA_UP)).is_empty());
    assert_eq!(
        ReplicaLine::parse("ip=::1,port=6380,state=wait_bgsave,offset=0,lag=0")
            .unwrap()
            .addr,
        "[::1]:6380"
    );
    // Older Redis: no lag; unknown keys are skipped.
    let old = ReplicaLine::parse("ip=10.0.0.7,port=6379,state=online,offset=12,x=y,junk").unwrap();
    assert_eq!((old.offset, old.lag_s), (Some(12), None));
    assert_eq!(ReplicaLine::parse("ip=10.0.0.7,state=online"), None);
    assert_eq!(ReplicaLine::parse(""), None);
    let bad = ReplicaLine::parse("ip=a,port=1,offset=lots").unwrap();
    assert_eq!((bad.state.as_str(), bad.offset), ("", None));
    assert!(is_slave_line("slave12"));
    for no in [
        "slave",
        "slave_repl_offset",
        "slave_read_only",
        "slave1x",
        "slaves",
    ] {
        assert!(!is_slave_line(no), "{no}");
    }
}

#[test]
fn healthy_master_and_replica_report_nothing() {
    let mut m = watcher(1024, 1);
    let mut r = watcher(1024, 1);
    for at in 0..5 {
        assert!(m.observe(&info(RUN, at * 1000, MASTER)).is_empty());
        assert!(r.observe(&info("other", at * 1000, REPLICA_UP)).is_empty());
    }
}

#[test]
fn master_link_down_is_reported_once_and_its_end_with_the_outage() {
    let mut w = watcher(1024, 0);
    assert!(w.observe(&info(RUN, 0, REPLICA_UP)).is_empty());
    let events = w.observe(&info(RUN, 10_000, REPLICA_DOWN));
    assert_eq!(events.len(), 1);
    let e = &events[0];
    assert_eq!(e.level, Level::Error);
    assert_eq!(e.msg, "replica link to 127.0.0.1:21379 down for 3 s");
    assert_eq!(
        fields(e),
        [
            ("master", &text("127.0.0.1:21379")),
            ("down_for_s", &Value::Integer(3)),
            ("master_link_status", &text("down")),
            ("sync_in_progress", &Value::Boolean(false)),
            ("state", &text("entered")),
        ]
    );
    assert!(w.link_is_down());
    for at in [20_000, 30_000] {
        assert!(w.observe(&info(RUN, at, REPLICA_DOWN)).is_empty());
    }
    let events = w.observe(&info(RUN, 52_500, REPLICA_UP));
    assert_eq!(events.len(), 1);
    let e = &events[0];
    assert_eq!(e.level, Level::Info);
    // 3 s before the first poll that saw it, 42 s since.
    assert_eq!(e.msg, "replica link to 127.0.0.1:21379 up again after 45 s");
    assert_eq!(
        fields(e),
        [
            ("master", &text("127.0.0.1:21379")),
            ("down_for_s", &Value::Integer(45)),
            ("state", &text("left")),
        ]
    );
    assert!(!w.link_is_down());
    assert!(w.observe(&info(RUN, 60_000, REPLICA_UP)).is_empty());
}

#[test]
fn a_link_down_at_the_first_poll_is_reported() {
    let mut w = watcher(1024, 0);
    let events = w.observe(&info(RUN, 0, REPLICA_DOWN));
    assert_eq!(events.len(), 1);
    assert_eq!(state(&events[0]), "entered");
}

#[test]
fn a_link_never_up_has_no_down_time() {
    let mut w = watcher(1024, 0);
    let events = w.observe(&info(RUN, 0, REPLICA_STARTING));
    assert_eq!(events.len(), 1);
    let e = &events[0];
    assert_eq!(
        e.msg,
        "replica link to 127.0.0.1:21379 down (sync with the master in progress)"
    );
    assert_eq!(e.get("down_for_s"), None);
    assert_eq!(e.get("sync_in_progress"), Some(&Value::Boolean(true)));
    let left = w.observe(&info(RUN, 7_900, REPLICA_UP));
    assert_eq!(
        left[0].msg,
        "replica link to 127.0.0.1:21379 up again after 7 s"
    );
}

#[test]
fn failover_is_a_role_change() {
    let mut w = watcher(1024, 0);
    assert!(w.observe(&info(RUN, 0, REPLICA_UP)).is_empty());
    // REPLICAOF NO ONE: the replica is promoted.
    let events = w.observe(&master(1_000, 50, &[]));
    assert_eq!(events.len(), 1);
    let e = &events[0];
    assert_eq!(e.level, Level::Warn);
    assert_eq!(
        e.msg,
        "role changed from replica of 127.0.0.1:21379 to master (failover)"
    );
    assert_eq!(
        fields(e),
        [
            ("old_role", &text("slave")),
            ("new_role", &text("master")),
            ("old_master", &text("127.0.0.1:21379")),
            ("state", &text("changed")),
        ]
    );
    assert!(w.observe(&master(2_000, 50, &[])).is_empty());
    // And demoted again.
    let events = w.observe(&info(RUN, 3_000, REPLICA_UP));
    assert_eq!(events.len(), 1);
    assert_eq!(
        events[0].msg,
        "role changed from master to replica of 127.0.0.1:21379 (failover)"
    );
    assert_eq!(
        fields(&events[0]),
        [
            ("old_role", &text("master")),
            ("new_role", &text("slave")),
            ("new_master", &text("127.0.0.1:21379")),
            ("state", &text("changed")),
        ]
    );
}

#[test]
fn a_new_master_address_is_a_change() {
    let mut w = watcher(1024, 0);
    w.observe(&info(RUN, 0, REPLICA_UP));
    let moved = REPLICA_UP.replace("master_host:127.0.0.1", "master_host:10.0.0.5");
    let events = w.observe(&info(RUN, 1_000, &moved));
    assert_eq!(events.len(), 1);
    assert_eq!(
        events[0].msg,
        "replica now follows master 10.0.0.5:21379 (was 127.0.0.1:21379)"
    );
    assert_eq!(events[0].get("old_master"), Some(&text("127.0.0.1:21379")));
    assert_eq!(events[0].get("new_master"), Some(&text("10.0.0.5:21379")));
    assert_eq!(state(&events[0]), "changed");
    let moved = moved.replace("master_port:21379", "master_port:6380");
    assert_eq!(
        w.observe(&info(RUN, 2_000, &moved))[0].msg,
        "replica now follows master 10.0.0.5:6380 (was 10.0.0.5:21379)"
    );
    assert!(w.observe(&info(RUN, 3_000, &moved)).is_empty());
}

#[test]
fn promotion_ends_a_link_outage() {
    let mut w = watcher(1024, 0);
    w.observe(&info(RUN, 0, REPLICA_DOWN));
    let events = w.observe(&master(20_000, 50, &[]));
    assert_eq!(events.len(), 2);
    assert_eq!(state(&events[0]), "changed");
    let e = &events[1];
    assert_eq!(e.level, Level::Info);
    assert_eq!(
        e.msg,
        "replica link no longer down: the instance is now a master, after 23 s"
    );
    assert_eq!(state(e), "left");
    assert!(!w.link_is_down());
}

#[test]
fn replicas_dropping_warn_with_the_ones_gone_and_recover_once() {
    let mut w = watcher(u64::MAX, 0);
    assert!(w.observe(&master(0, 1000, &[A, B, C])).is_empty());
    let events = w.observe(&master(10_000, 1000, &[B]));
    assert_eq!(events.len(), 1);
    let e = &events[0];
    assert_eq!(e.level, Level::Warn);
    assert_eq!(
        e.msg,
        "connected replicas dropped from 3 to 1: 10.0.0.7:6379, 10.0.0.9:6380 gone"
    );
    assert_eq!(
        fields(e),
        [
            ("previous", &Value::Integer(3)),
            ("current", &Value::Integer(1)),
            ("lost", &text("10.0.0.7:6379,10.0.0.9:6380")),
            ("state", &text("entered")),
        ]
    );
    assert!(w.replicas_dropped());
    assert!(w.observe(&master(20_000, 1000, &[B])).is_empty());
    // Partly back: nothing yet.
    assert!(w.observe(&master(30_000, 1000, &[B, A])).is_empty());
    // Down again while still below: a further warn.
    let events = w.observe(&master(40_000, 1000, &[]));
    assert_eq!(
        events[0].msg,
        "connected replicas dropped from 2 to 0: 10.0.0.8:6379, 10.0.0.7:6379 gone"
    );
    assert_eq!(state(&events[0]), "changed");
    let events = w.observe(&master(70_000, 1000, &[A, B, C]));
    assert_eq!(events.len(), 1);
    let e = &events[0];
    assert_eq!(e.level, Level::Info);
    assert_eq!(e.msg, "connected replicas back to 3 (from 0) after 60 s");
    assert_eq!(
        fields(e),
        [
            ("previous", &Value::Integer(0)),
            ("current", &Value::Integer(3)),
            ("duration_s", &Value::Integer(60)),
            ("restarted", &Value::Boolean(false)),
            ("state", &text("left")),
        ]
    );
    assert!(!w.replicas_dropped());
    assert!(w.observe(&master(80_000, 1000, &[A, B, C])).is_empty());
}

#[test]
fn a_drop_without_replica_lines_names_none() {
    let mut w = watcher(1024, 0);
    let snap = |n: &str| {
        SnapshotBuilder::new()
            .info("replication", "role", "master")
            .info("replication", "connected_slaves", n)
            .build()
    };
    w.observe(&snap("2"));
    let events = w.observe(&snap("1"));
    assert_eq!(events[0].msg, "connected replicas dropped from 2 to 1");
    assert_eq!(events[0].get("lost"), Some(&text("")));
}

#[test]
fn a_restart_resets_the_count_without_a_drop() {
    let mut w = watcher(u64::MAX, 0);
    w.observe(&master(0, 1000, &[A, B]));
    assert!(w.observe(&master_run("new-run", 5_000, 0, &[])).is_empty());
    assert!(!w.replicas_dropped());
    // The new baseline is 0: one replica back is no drop, nor a recovery.
    assert!(w.observe(&master_run("new-run", 6_000, 0, &[A])).is_empty());
    // A drop open across a restart ends there.
    w.observe(&master_run("new-run", 7_000, 0, &[]));
    assert!(w.replicas_dropped());
    let events = w.observe(&master_run("third", 9_000, 0, &[]));
    assert_eq!(events.len(), 1);
    let e = &events[0];
    assert_eq!(e.level, Level::Info);
    assert_eq!(
        e.msg,
        "connected replicas watch reset: the server restarted, 0 connected now (was 1 before the drop)"
    );
    assert_eq!(e.get("restarted"), Some(&Value::Boolean(true)));
    assert_eq!(e.get("duration_s"), Some(&Value::Integer(2)));
    assert_eq!(state(e), "left");
    assert!(!w.replicas_dropped());
}

#[test]
fn min_replicas_is_off_by_default() {
    let mut w = Replication::from_settings(&[]).unwrap();
    assert!(w.observe(&master(0, 0, &[])).is_empty());
    assert!(!w.too_few_replicas());
}

#[test]
fn too_few_replicas_warns_once_and_recovers_once() {
    let mut w = watcher(u64::MAX, 2);
    let events = w.observe(&master(0, 1000, &[A]));
    assert_eq!(events.len(), 1);
    let e = &events[0];
    assert_eq!(e.level, Level::Warn);
    assert_eq!(e.msg, "master has 1 connected replica, fewer than 2");
    assert_eq!(
        fields(e),
        [
            ("connected_slaves", &Value::Integer(1)),
            ("min_replicas", &Value::Integer(2)),
            ("state", &text("entered")),
        ]
    );
    assert!(w.observe(&master(1_000, 1000, &[A])).is_empty());
    let events = w.observe(&master(31_000, 1000, &[A, B]));
    assert_eq!(events.len(), 1);
    let e = &events[0];
    assert_eq!(e.level, Level::Info);
    assert_eq!(
        e.msg,
        "master has 2 connected replicas again (at least 2) after 31 s"
    );
    assert_eq!(
        fields(e),
        [
            ("connected_slaves", &Value::Integer(2)),
            ("min_replicas", &Value::Integer(2)),
            ("duration_s", &Value::Integer(31)),
            ("state", &text("left")),
        ]
    );
    assert!(w.observe(&master(40_000, 1000, &[A, B])).is_empty());
}

#[test]
fn min_replicas_applies_to_masters_only() {
    let mut w = watcher(u64::MAX, 1);
    assert!(w.observe(&info(RUN, 0, REPLICA_UP)).is_empty());
    let events = w.observe(&master(1_000, 0, &[]));
    assert_eq!(events.len(), 2, "{events:?}");
    assert_eq!(state(&events[0]), "changed");
    assert_eq!(state(&events[1]), "entered");
    let events = w.observe(&info(RUN, 4_000, REPLICA_UP));
    assert_eq!(events.len(), 2, "{events:?}");
    assert_eq!(
        events[1].msg,
        "too few replicas no longer checked: the instance is not a master, after 3 s"
    );
    assert_eq!(state(&events[1]), "left");
}

#[test]
fn a_replica_behind_is_reported_once_per_replica() {
    let mut w = watcher(1024, 0);
    assert!(
        w.observe(&master(0, 5000, &[("10.0.0.7", 6379, "online", 4500)]))
            .is_empty()
    );
    let events = w.observe(&master(
        1_000,
        10_000,
        &[
            ("10.0.0.7", 6379, "online", 8000),
            ("10.0.0.8", 6379, "online", 9990),
        ],
    ));
    assert_eq!(events.len(), 1);
    let e = &events[0];
    assert_eq!(e.level, Level::Warn);
    assert_eq!(
        e.msg,
        "replica 10.0.0.7:6379 is 2.0KiB behind the master (limit 1.0KiB)"
    );
    assert_eq!(
        fields(e),
        [
            ("replica", &text("10.0.0.7:6379")),
            ("lag_bytes", &Value::Integer(2000)),
            ("offset", &Value::Integer(8000)),
            ("master_repl_offset", &Value::Integer(10_000)),
            ("max_offset_lag", &Value::Integer(1024)),
            ("state", &text("entered")),
        ]
    );
    assert_eq!(w.replicas_behind(), ["10.0.0.7:6379"]);
    // Still behind, and the second one falls behind too.
    let events = w.observe(&master(
        2_000,
        20_000,
        &[
            ("10.0.0.7", 6379, "online", 9000),
            ("10.0.0.8", 6379, "online", 9000),
        ],
    ));
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].get("replica"), Some(&text("10.0.0.8:6379")));
    assert_eq!(w.replicas_behind(), ["10.0.0.7:6379", "10.0.0.8:6379"]);
    let events = w.observe(&master(
        11_000,
        20_000,
        &[
            ("10.0.0.7", 6379, "online", 20_000),
            ("10.0.0.8", 6379, "online", 9000),
        ],
    ));
    assert_eq!(events.len(), 1);
    let e = &events[0];
    assert_eq!(e.level, Level::Info);
    assert_eq!(
        e.msg,
        "replica 10.0.0.7:6379 caught up: 0B behind after 10 s"
    );
    assert_eq!(
        fields(e),
        [
            ("replica", &text("10.0.0.7:6379")),
            ("lag_bytes", &Value::Integer(0)),
            ("max_offset_lag", &Value::Integer(1024)),
            ("duration_s", &Value::Integer(10)),
            ("state", &text("left")),
        ]
    );
    // The other one disconnects while behind: its condition ends too
    // (with the drop reported separately).
    let events = w.observe(&master(
        12_000,
        20_000,
        &[("10.0.0.7", 6379, "online", 20_000)],
    ));
    assert_eq!(events.len(), 2, "{events:?}");
    assert_eq!(events[0].get("lost"), Some(&text("10.0.0.8:6379")));
    assert_eq!(
        events[1].msg,
        "replica 10.0.0.8:6379 no longer online, after 10 s behind the master"
    );
    assert_eq!(state(&events[1]), "left");
    assert!(w.replicas_behind().is_empty());
}

#[test]
fn replicas_still_syncing_are_not_behind() {
    let mut w = watcher(0, 0);
    let s = master(
        0,
        1 << 30,
        &[
            ("10.0.0.7", 6379, "wait_bgsave", 0),
            ("10.0.0.8", 6379, "send_bulk", 0),
        ],
    );
    assert!(w.observe(&s).is_empty());
    // max_offset_lag 0: any byte behind counts.
    let events = w.observe(&master(1_000, 100, &[("10.0.0.7", 6379, "online", 99)]));
    assert_eq!(events.len(), 2, "{events:?}");
    assert_eq!(state(&events[0]), "entered");
    assert_eq!(events[0].get("lost"), Some(&text("10.0.0.8:6379")));
    assert_eq!(events[1].get("lag_bytes"), Some(&Value::Integer(1)));
    assert!(
        w.observe(&master(2_000, 100, &[("10.0.0.7", 6379, "online", 99)]))
            .is_empty()
    );
}

#[test]
fn a_replica_ahead_of_the_polled_offset_is_not_behind() {
    let mut w = watcher(0, 0);
    assert!(
        w.observe(&master(0, 100, &[("10.0.0.7", 6379, "online", 150)]))
            .is_empty()
    );
}

#[test]
fn missing_or_bad_fields_change_nothing() {
    let mut w = watcher(1024, 1);
    assert!(w.observe(&SnapshotBuilder::new().build()).is_empty());
    w.observe(&info(RUN, 0, REPLICA_DOWN));
    w.observe(&master(0, 10_000, &[("10.0.0.7", 6379, "online", 0)]));
    let mut w = watcher(1024, 1);
    w.observe(&info(RUN, 0, REPLICA_DOWN));
    assert!(w.link_is_down());
    // No role, no status, garbage counts: no events, state kept.
    for text in [
        "",
        "role:slave\nmaster_host:127.0.0.1\nmaster_port:21379",
        "role:\nconnected_slaves:lots\nmaster_repl_offset:-5",
        "role:slave\nmaster_link_status:down\nmaster_link_down_since_seconds:x",
    ] {
        assert!(w.observe(&info(RUN, 1_000, text)).is_empty(), "{text}");
    }
    assert!(w.link_is_down());
    // A master without master_repl_offset: its replicas are not judged.
    let mut w = watcher(0, 0);
    let s = SnapshotBuilder::new()
        .info("replication", "role", "master")
        .info("replication", "connected_slaves", "1")
        .info(
            "replication",
            "slave0",
            "ip=10.0.0.7,port=6379,state=online,offset=1",
        )
        .build();
    assert!(w.observe(&s).is_empty());
    // Without run_id (not declared): no restarts seen, counts compared.
    assert_eq!(
        w.observe(
            &SnapshotBuilder::new()
                .info("replication", "role", "master")
                .info("replication", "connected_slaves", "0")
                .build()
        )
        .len(),
        1
    );
}

#[test]
fn exported_glue_keeps_state_between_calls() {
    assert_eq!(Replication::describe().name, "replication");
    assert_eq!(
        Replication::configure(vec![setting("min_replicas", -1i64)]).unwrap_err(),
        "key `min_replicas` must be >= 0, got -1"
    );
    Replication::configure(vec![setting("min_replicas", 0i64)]).unwrap();
    assert!(<Replication as Guest>::observe(info(RUN, 0, REPLICA_UP)).is_empty());
    assert_eq!(
        <Replication as Guest>::observe(info(RUN, 1, REPLICA_DOWN)).len(),
        1
    );
    assert!(<Replication as Guest>::observe(info(RUN, 2, REPLICA_DOWN)).is_empty());
    assert_eq!(
        <Replication as Guest>::observe(info(RUN, 3, REPLICA_UP)).len(),
        1
    );
}

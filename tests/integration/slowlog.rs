//! SLOWLOG is exact: every entry another client causes reaches the bus,
//! one by one or inside a summary's id range, through faults of the bus
//! and of the host; the host's own commands are told apart by connection,
//! not by name; each watcher has its own cursor; refused credentials and
//! commands are configuration errors.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use serde_json::Value;

use crate::support::*;

/// A client named `app` running `SET` 40 times a second until stopped.
struct Load {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<u64>>,
}

impl Load {
    fn start(redis: &Redis) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let mut conn = redis.conn();
        redis::cmd("CLIENT")
            .arg("SETNAME")
            .arg("app")
            .exec(&mut conn)
            .unwrap();
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut n = 0u64;
            while !flag.load(Ordering::Relaxed) {
                redis::cmd("SET")
                    .arg(format!("load:{n}"))
                    .arg(n)
                    .exec(&mut conn)
                    .unwrap();
                n += 1;
                // Pacing of the load, not a wait for anything.
                std::thread::sleep(Duration::from_millis(25));
            }
            n
        });
        Self {
            stop,
            thread: Some(thread),
        }
    }

    /// Stops the load; returns how many commands it ran.
    fn finish(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().unwrap().join().unwrap()
    }
}

/// SLOWLOG ids of the entries from clients named `name`.
fn slowlog_ids(redis: &Redis, name: &str) -> BTreeSet<u64> {
    let entries: Vec<Vec<redis::Value>> = redis::cmd("SLOWLOG")
        .arg("GET")
        .arg(1_000_000)
        .query(&mut redis.conn())
        .unwrap();
    entries
        .iter()
        .filter(|e| matches!(e.get(5), Some(redis::Value::BulkString(b)) if b == name.as_bytes()))
        .map(|e| match e[0] {
            redis::Value::Int(id) => u64::try_from(id).unwrap(),
            ref other => panic!("id {other:?}"),
        })
        .collect()
}

/// Ids covered by the envelopes of the slowlog watcher deployed as
/// `target`: each event's `id`, each summary's `first_id..=last_id`.
fn covered(envelopes: &[Value], target: &str) -> BTreeSet<u64> {
    let mut ids = BTreeSet::new();
    for e in by_target(envelopes, target) {
        let f = &e["fields"];
        if let Some(id) = f["id"].as_u64() {
            ids.insert(id);
        } else if let (Some(a), Some(b)) = (f["first_id"].as_u64(), f["last_id"].as_u64()) {
            ids.extend(a..=b);
        }
    }
    ids
}

/// Polls `check` until it returns an empty list or `deadline` passes;
/// returns the last list.
fn wait_for_or_last(deadline: Duration, mut check: impl FnMut() -> Vec<u64>) -> Vec<u64> {
    let start = std::time::Instant::now();
    loop {
        let left = check();
        if left.is_empty() || start.elapsed() >= deadline {
            return left;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn missing(expected: &BTreeSet<u64>, bus: &Redis) -> Vec<u64> {
    let got = covered(&bus.stream(STREAM), "slowlog");
    expected.difference(&got).copied().collect()
}

/// `SLOWLOG GET` calls and PINGs (one a poll) `redis` has answered.
fn gets_and_pings(redis: &Redis) -> (u64, u64) {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query(&mut redis.conn())
        .unwrap();
    let calls = |name: &str| {
        info.lines()
            .find_map(|l| l.strip_prefix(&format!("cmdstat_{name}:calls=")))
            .map_or(0, |rest| rest.split(',').next().unwrap().parse().unwrap())
    };
    (calls("slowlog|get"), calls("ping"))
}

/// How many times each SLOWLOG id arrived in an event of the slowlog
/// watcher deployed as `target` (entries reported one by one).
fn id_counts(envelopes: &[Value], target: &str) -> BTreeMap<u64, usize> {
    let mut counts = BTreeMap::new();
    for e in by_target(envelopes, target) {
        if let Some(id) = e["fields"]["id"].as_u64() {
            *counts.entry(id).or_default() += 1;
        }
    }
    counts
}

/// Host events saying `slowlog gap`.
fn gaps(envelopes: &[Value]) -> Vec<Value> {
    by_target(envelopes, "lookout")
        .into_iter()
        .filter(|e| e["msg"].as_str().unwrap().starts_with("slowlog gap"))
        .collect()
}

/// Waits until every id in `expected` arrived on `bus`; then each id on
/// the bus arrived exactly once, and no gap was reported.
fn each_arrives_once(bus: &Redis, expected: &BTreeSet<u64>) {
    let counts = wait_for(
        "every SLOWLOG entry on the bus",
        Duration::from_secs(30),
        || {
            let counts = id_counts(&bus.stream(STREAM), "slowlog");
            expected
                .iter()
                .all(|id| counts.contains_key(id))
                .then_some(counts)
        },
    );
    let again: Vec<(&u64, &usize)> = counts.iter().filter(|(_, n)| **n != 1).collect();
    assert!(
        again.is_empty(),
        "ids that arrived more than once: {again:?}"
    );
    let gaps = gaps(&bus.stream(STREAM));
    assert!(gaps.is_empty(), "{gaps:?}");
}

/// The daemon watching `watched` every 0.5 s with the slowlog watcher
/// reporting every entry one by one, publishing to `bus`.
fn watch_every_entry(tmp: &std::path::Path, watched: &Redis, bus: &Redis) -> Lookout {
    let config = bus_config(
        tmp,
        bus,
        "slowlog_count = 1024",
        "[limits]\nmax_events = 1000\n",
    );
    let plugins = plugins_with(tmp, &["slowlog"], &[]);
    std::fs::write(plugins.join("slowlog.toml"), "max_events = 1000\n").unwrap();
    let args = [
        "--config",
        config.to_str().unwrap(),
        "--poll-interval",
        "0.5",
    ];
    let lookout = run_lookout(tmp, &watched.url(), &plugins, &args);
    lookout.wait_started();
    lookout
}

/// A busy server with a steady SLOWLOG load (a client 40 times a second,
/// the test's own INFO reads, the host's commands): after a few polls the
/// new entries come in the poll's one round trip, its pipeline's SLOWLOG
/// GET sized from the recent rate. Over 40 polls at most a tenth make a
/// second read, and every entry arrives exactly once.
#[test]
fn a_steady_slowlog_load_takes_one_round_trip_a_poll() {
    let watched = Redis::start(&[
        "--slowlog-log-slower-than",
        "0",
        "--slowlog-max-len",
        "100000",
    ]);
    let bus = Redis::start(&[]);
    let tmp = tempfile::tempdir().unwrap();
    let mut lookout = watch_every_entry(tmp.path(), &watched, &bus);
    let load = Load::start(&watched);
    polls_pass(&watched, 5);
    let (gets0, pings0) = gets_and_pings(&watched);
    wait_for("40 polls under load", Duration::from_secs(90), || {
        (pings(&watched) >= pings0 + 40).then_some(())
    });
    let (gets, pings) = gets_and_pings(&watched);
    let ran = load.finish();
    let (polls, reads) = (pings - pings0, gets - gets0);
    let second = reads.saturating_sub(polls);
    #[allow(clippy::cast_precision_loss)]
    let per_poll = reads as f64 / polls as f64;
    eprintln!(
        "steady load: {reads} SLOWLOG GETs over {polls} polls ({per_poll:.2} a poll), \
         {second} second reads"
    );
    assert!(
        second * 10 <= polls,
        "{second} of {polls} polls made a second SLOWLOG read"
    );
    let expected = slowlog_ids(&watched, "app");
    assert!(expected.len() as u64 >= ran, "the load is in SLOWLOG");
    each_arrives_once(&bus, &expected);
    let _ = stop(&mut lookout);
}

/// A burst far beyond the recent rate (300 commands in one pipeline) is
/// more than the poll's first SLOWLOG read asks for: it arrives complete,
/// each entry once, through the poll's second read.
#[test]
fn a_burst_beyond_the_estimate_arrives_through_the_second_read() {
    let watched = Redis::start(&[
        "--slowlog-log-slower-than",
        "0",
        "--slowlog-max-len",
        "100000",
    ]);
    let bus = Redis::start(&[]);
    let tmp = tempfile::tempdir().unwrap();
    let mut lookout = watch_every_entry(tmp.path(), &watched, &bus);
    polls_pass(&watched, 4);
    let (gets0, pings0) = gets_and_pings(&watched);
    let mut app = watched.conn();
    redis::cmd("CLIENT")
        .arg("SETNAME")
        .arg("app")
        .exec(&mut app)
        .unwrap();
    let mut pipe = redis::pipe();
    for i in 0..300 {
        pipe.cmd("SET").arg(format!("burst:{i}")).arg(i).ignore();
    }
    pipe.exec(&mut app).unwrap();
    wait_for("the burst on the bus", Duration::from_secs(30), || {
        let burst = by_target(&bus.stream(STREAM), "slowlog")
            .iter()
            .filter(|e| {
                e["fields"]["args"]
                    .as_str()
                    .is_some_and(|a| a.starts_with("SET burst:"))
            })
            .count();
        (burst >= 300).then_some(())
    });
    let (gets, pings) = gets_and_pings(&watched);
    assert!(
        gets - gets0 > pings - pings0,
        "a second read: {} SLOWLOG GETs over {} polls",
        gets - gets0,
        pings - pings0
    );
    each_arrives_once(&bus, &slowlog_ids(&watched, "app"));
    let _ = stop(&mut lookout);
}

/// The scenario of a busy server: a steady SLOWLOG load while the bus is
/// killed and restarted, then frozen for 5 s, then the host is killed -9
/// and restarted on the same spool. Every entry of the load arrives.
#[test]
fn every_slowlog_entry_arrives_through_bus_and_host_faults() {
    let watched = Redis::start(&[
        "--slowlog-log-slower-than",
        "0",
        "--slowlog-max-len",
        "100000",
    ]);
    let mut bus = Redis::start(&["--appendonly", "yes", "--appendfsync", "always"]);
    let tmp = tempfile::tempdir().unwrap();
    let spool = tmp.path().join("spool");
    let config = bus_config(
        tmp.path(),
        &bus,
        "slowlog_count = 1024",
        &format!(
            "[buffer]\ndir = '{}'\n[breaker]\nfailures = 2\nrecovery_s = 0.5\n",
            spool.display()
        ),
    );
    let plugins = plugins_with(tmp.path(), &["slowlog"], &[]);
    let args = ["--config", config.to_str().unwrap()];
    let mut lookout = run_lookout(tmp.path(), &watched.url(), &plugins, &args);
    lookout.wait_started();
    let load = Load::start(&watched);
    let flowing = |bus: &Redis, after: usize| {
        wait_for("slowlog events on the bus", Duration::from_secs(30), || {
            let n = by_target(&bus.stream(STREAM), "slowlog").len();
            (n > after).then_some(n)
        })
    };
    let seen = flowing(&bus, 20);

    // The bus dies and comes back (its AOF keeps what it acknowledged).
    bus.kill();
    let polls = pings(&watched);
    wait_for(
        "ten polls with the bus down",
        Duration::from_secs(30),
        || (pings(&watched) >= polls + 10).then_some(()),
    );
    bus.restart();
    let seen = flowing(&bus, seen);

    // The bus freezes for 5 s.
    let pid = info_field(&bus, "server", "process_id");
    signal_pid("-STOP", &pid);
    let frozen = std::time::Instant::now();
    wait_for("a 5 s freeze", Duration::from_secs(10), || {
        (frozen.elapsed() >= Duration::from_secs(5)).then_some(())
    });
    signal_pid("-CONT", &pid);
    let seen = flowing(&bus, seen);

    // The host is killed -9 and restarted on the same spool.
    lookout.signal("-KILL");
    lookout.wait_exit(Duration::from_secs(10));
    let mut lookout = run_lookout(tmp.path(), &watched.url(), &plugins, &args);
    lookout.wait_started();
    flowing(&bus, seen);
    let ran = load.finish();

    let expected = slowlog_ids(&watched, "app");
    assert!(
        expected.len() as u64 >= ran,
        "every load command is in SLOWLOG ({} ids, {ran} commands)",
        expected.len()
    );
    let complete = wait_for_or_last(Duration::from_secs(30), || missing(&expected, &bus));
    assert!(
        complete.is_empty(),
        "{} of {} SLOWLOG ids never arrived: {complete:?}",
        complete.len(),
        expected.len()
    );
    let _ = stop(&mut lookout);
}

/// A client that names itself `lookout` is reported like any other; the
/// host's own PING, INFO and SLOWLOG are not.
#[test]
fn a_client_named_lookout_cannot_hide_its_slow_commands() {
    let watched = Redis::start(&["--slowlog-log-slower-than", "0"]);
    let tmp = tempfile::tempdir().unwrap();
    let plugins = plugins_with(tmp.path(), &["slowlog"], &[]);
    // Every entry one by one (the test's own reads are slow commands too).
    std::fs::write(plugins.join("slowlog.toml"), "max_events = 1000\n").unwrap();
    let mut lookout = run_lookout(tmp.path(), &watched.url(), &plugins, &[]);
    lookout.wait_started();
    let mut sneaky = watched.conn();
    redis::cmd("CLIENT")
        .arg("SETNAME")
        .arg("lookout")
        .exec(&mut sneaky)
        .unwrap();
    redis::cmd("SET")
        .arg("hidden:key")
        .arg(1)
        .exec(&mut sneaky)
        .unwrap();
    let events = wait_for(
        "the SET of a client named lookout",
        Duration::from_secs(20),
        || {
            let slow = by_target(&watched.stream(STREAM), "slowlog");
            slow.iter()
                .any(|e| e["fields"]["args"] == "SET hidden:key 1")
                .then_some(slow)
        },
    );
    let own: Vec<&Value> = events
        .iter()
        .filter(|e| {
            let command = e["fields"]["command"].as_str().unwrap_or_default();
            e["fields"]["client_name"] == "lookout" && !["CLIENT", "SET"].contains(&command)
        })
        .collect();
    assert!(
        own.is_empty(),
        "the host's own commands are reported: {own:?}"
    );
    let _ = stop(&mut lookout);
}

/// Own connections are known per server, with room for a fleet: 300
/// targets on one redis-server (one per database, each its own
/// connection) plus the bus's, and the slowlog watcher on one of them
/// still reports none of their commands, only another client's.
#[test]
fn three_hundred_own_connections_to_one_server_are_never_reported() {
    let watched = Redis::start(&[
        "--databases",
        "320",
        "--slowlog-log-slower-than",
        "0",
        "--slowlog-max-len",
        "100000",
    ]);
    let tmp = tempfile::tempdir().unwrap();
    let plugins = plugins_with(tmp.path(), &["slowlog"], &[]);
    std::fs::write(plugins.join("slowlog.toml"), "max_events = 1000\n").unwrap();
    let mut targets = String::new();
    for db in 0..300 {
        let only = if db == 0 { "['slowlog']" } else { "[]" };
        targets.push_str(&format!(
            "[[targets]]\nurl = '{}/{db}'\nwatchers = {only}\n",
            watched.url()
        ));
    }
    // The bus is the watched server too: its connection is one more own one.
    // One read takes every entry since the last poll (about a thousand a
    // second), and a busy machine gets time for the watcher's call.
    let config = config_file(
        tmp.path(),
        &format!(
            "slowlog_count = 20000\n{targets}[publish]\nurl = '{}'\n\
             [limits]\ncall_deadline_ms = 5000\n",
            watched.url()
        ),
    );
    let mut lookout = run_config(tmp.path(), &plugins, &config, &["--poll-interval", "1"]);
    lookout.wait_started();
    wait_for(
        "301 connections named lookout",
        Duration::from_secs(60),
        || {
            let list: String = redis::cmd("CLIENT")
                .arg("LIST")
                .query(&mut watched.conn())
                .ok()?;
            (list.matches("name=lookout ").count() >= 301).then_some(())
        },
    );
    // Every connection has polled since: its commands are in SLOWLOG.
    let polls = pings(&watched);
    wait_for(
        "two more polls of each target",
        Duration::from_secs(90),
        || (pings(&watched) >= polls + 600).then_some(()),
    );
    redis::cmd("SET")
        .arg("marker:key")
        .arg(1)
        .exec(&mut watched.conn())
        .unwrap();
    let events = wait_for("the marker SET", Duration::from_secs(60), || {
        let slow = by_target(&watched.stream(STREAM), "slowlog");
        slow.iter()
            .any(|e| e["fields"]["args"] == "SET marker:key 1")
            .then_some(slow)
    });
    let own: Vec<&Value> = events
        .iter()
        .filter(|e| e["fields"]["client_name"] == "lookout")
        .collect();
    assert!(
        own.is_empty(),
        "{} of the host's own commands are reported, e.g. {:?}",
        own.len(),
        own.first()
    );
    let _ = stop(&mut lookout);
}

/// Two SLOWLOG watchers, one every poll and one every 5th poll: the slow
/// one still gets every entry (its own cursor), folded into summaries.
#[test]
fn each_watcher_has_its_own_slowlog_cursor() {
    let watched = Redis::start(&[
        "--slowlog-log-slower-than",
        "0",
        "--slowlog-max-len",
        "100000",
    ]);
    let tmp = tempfile::tempdir().unwrap();
    let plugins = plugins_with(tmp.path(), &["slowlog"], &[]);
    std::fs::copy(
        plugins.join("slowlog.wasm"),
        plugins.join("slowlog_every5.wasm"),
    )
    .unwrap();
    // The fast one reports entries one by one, the slow one only summaries.
    std::fs::write(plugins.join("slowlog.toml"), "max_events = 1000\n").unwrap();
    std::fs::write(plugins.join("slowlog_every5.toml"), "max_events = 0\n").unwrap();
    let config = config_file(
        tmp.path(),
        "slowlog_count = 1024\n[limits.watchers.slowlog_every5]\nevery_polls = 5\n",
    );
    let mut lookout = run_lookout(
        tmp.path(),
        &watched.url(),
        &plugins,
        &["--config", config.to_str().unwrap()],
    );
    lookout.wait_started();
    let load = Load::start(&watched);
    wait_for("a few seconds of load", Duration::from_secs(30), || {
        (slowlog_ids(&watched, "app").len() >= 120).then_some(())
    });
    load.finish();
    let expected = slowlog_ids(&watched, "app");
    let (singles, summaries) = wait_for(
        "both watchers to cover the load",
        Duration::from_secs(30),
        || {
            // Each copy publishes under its own file name.
            let all = watched.stream(STREAM);
            let singles: Vec<Value> = by_target(&all, "slowlog")
                .into_iter()
                .filter(|e| !e["fields"]["count"].is_u64())
                .collect();
            let summaries = by_target(&all, "slowlog_every5");
            let s = covered(&singles, "slowlog");
            let m = covered(&summaries, "slowlog_every5");
            (expected.is_subset(&s) && expected.is_subset(&m)).then_some((singles, summaries))
        },
    );
    assert!(singles.iter().all(|e| e["fields"]["id"].is_u64()));
    assert!(summaries.len() >= 2, "the slow watcher ran several times");
    assert!(
        summaries
            .iter()
            .all(|e| e["fields"]["watcher"] == "slowlog")
    );
    let _ = stop(&mut lookout);
}

/// More new entries than the ring holds between two reads: one event says
/// how many were missed and between which ids.
#[test]
fn entries_the_ring_dropped_are_reported_as_a_gap() {
    let watched = Redis::start(&["--slowlog-log-slower-than", "0", "--slowlog-max-len", "16"]);
    let tmp = tempfile::tempdir().unwrap();
    let plugins = plugins_with(tmp.path(), &["slowlog"], &[]);
    let mut lookout = run_lookout(
        tmp.path(),
        &watched.url(),
        &plugins,
        &["--poll-interval", "0.5"],
    );
    lookout.wait_started();
    wait_for("a first slowlog event", Duration::from_secs(20), || {
        (!by_target(&watched.stream(STREAM), "slowlog").is_empty()).then_some(())
    });
    // The ring is small enough for the test's and the daemon's own commands
    // to overflow it too: the gap looked for is the one after this id.
    let newest: Vec<Vec<redis::Value>> = redis::cmd("SLOWLOG")
        .arg("GET")
        .arg(1)
        .query(&mut watched.conn())
        .unwrap();
    let before = match newest.first().and_then(|e| e.first()) {
        Some(redis::Value::Int(id)) => u64::try_from(*id).unwrap(),
        other => panic!("SLOWLOG GET 1: {other:?}"),
    };
    // 200 commands in one pipeline: far more than the 16-entry ring.
    let mut pipe = redis::pipe();
    for i in 0..200 {
        pipe.cmd("SET").arg(format!("burst:{i}")).arg(i).ignore();
    }
    pipe.exec(&mut watched.conn()).unwrap();
    let gap = wait_for("a slowlog gap event", Duration::from_secs(20), || {
        by_target(&watched.stream(STREAM), "lookout")
            .into_iter()
            .find(|e| {
                e["msg"].as_str().unwrap().starts_with("slowlog gap")
                    && e["fields"]["last_id"].as_u64().unwrap() > before
            })
    });
    let f = &gap["fields"];
    let (first, last) = (
        f["first_id"].as_u64().unwrap(),
        f["last_id"].as_u64().unwrap(),
    );
    assert_eq!(f["missed"].as_u64().unwrap(), last - first + 1);
    assert!(last - first + 1 >= 200 - 16, "{gap}");
    assert_eq!(gap["level"], "warn");
    let _ = stop(&mut lookout);
}

/// SLOWLOG entries handed to a watcher call that fails are handed once
/// more, to a fresh instance; when it fails on them too they are dropped
/// with one warning naming their ids, and the watcher gets the entries
/// logged after them.
#[test]
fn entries_of_a_failed_call_are_handed_again_then_dropped_by_id() {
    let watched = Redis::start(&["--slowlog-log-slower-than", "0"]);
    let bus = Redis::start(&[]);
    let tmp = tempfile::tempdir().unwrap();
    let plugins = plugins_with(tmp.path(), &[], &["slowlog-trap"]);
    let config = bus_config(tmp.path(), &bus, "", "");
    let args = ["--config", config.to_str().unwrap()];
    let mut lookout = run_lookout(tmp.path(), &watched.url(), &plugins, &args);
    lookout.wait_started();
    let mut app = watched.conn();
    redis::cmd("CLIENT")
        .arg("SETNAME")
        .arg("app")
        .exec(&mut app)
        .unwrap();
    let entry = |args: &'static str| {
        move |e: &Value| e["msg"].as_str().unwrap().ends_with(&format!(": {args}"))
    };
    redis::cmd("SET")
        .arg("before")
        .arg(1)
        .exec(&mut app)
        .unwrap();
    wait_event(
        &bus,
        "slowlog-trap",
        "the entry before the trap",
        entry("SET before 1"),
    );

    redis::cmd("SET").arg("TRAP").arg(1).exec(&mut app).unwrap();
    let trap = *slowlog_ids(&watched, "app").last().unwrap();
    let dropped = wait_event(&bus, "lookout", "the trap's entries dropped", |e| {
        e["msg"]
            .as_str()
            .unwrap()
            .contains("failed twice on the same")
    });
    let f = &dropped["fields"];
    assert_eq!(dropped["level"], "warn");
    assert!(
        f["first_id"].as_u64().unwrap() <= trap && trap <= f["last_id"].as_u64().unwrap(),
        "{dropped}"
    );
    let failed: Vec<Value> = events_of(&bus, "lookout")
        .into_iter()
        .filter(|e| {
            e["msg"]
                .as_str()
                .unwrap()
                .starts_with("watcher slowlog-trap failed:")
        })
        .collect();
    assert_eq!(
        failed.len(),
        2,
        "handed once more, then dropped: {failed:?}"
    );

    redis::cmd("SET")
        .arg("after")
        .arg(1)
        .exec(&mut app)
        .unwrap();
    wait_event(
        &bus,
        "slowlog-trap",
        "the entry after the trap",
        entry("SET after 1"),
    );
    assert!(
        events_of(&bus, "slowlog-trap")
            .iter()
            .all(|e| !e["msg"].as_str().unwrap().contains("TRAP")),
        "the trap entry never reached the bus"
    );
    let _ = stop(&mut lookout);
}

/// A wrong password is one clear line naming the redacted URL, not an
/// outage with backoff, and the password is never printed.
#[test]
fn a_wrong_password_is_a_configuration_error() {
    let watched = Redis::start(&[]);
    redis::cmd("CONFIG")
        .arg("SET")
        .arg("requirepass")
        .arg("right-one")
        .exec(&mut watched.conn())
        .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let plugins = plugins_with(tmp.path(), &["slowlog"], &[]);
    let url = format!("redis://:wrong-pw-7731@127.0.0.1:{}", watched.port);
    let mut lookout = run_lookout(tmp.path(), &url, &plugins, &["--dry-run"]);
    let line = wait_for("the refusal", Duration::from_secs(30), || {
        lookout.stderr.matching("refused").pop()
    });
    assert!(line.contains("WRONGPASS"), "{line}");
    assert!(line.contains("check the user and password"), "{line}");
    assert!(line.contains(":***@127.0.0.1"), "{line}");
    let event = wait_for("the refusal event", Duration::from_secs(10), || {
        lookout
            .stdout
            .all()
            .into_iter()
            .find(|l| l.contains("instance refused"))
    });
    assert!(event.contains("\"level\":\"error\""), "{event}");
    assert!(lookout.stderr.matching("unreachable").is_empty());
    let all = format!(
        "{}\n{}",
        lookout.stderr.all().join("\n"),
        lookout.stdout.all().join("\n")
    );
    assert!(!all.contains("wrong-pw-7731"), "password printed");
    assert_eq!(lookout.stderr.matching("refused").len(), 1, "said once");
    let _ = stop(&mut lookout);

    // No password at all: NOAUTH, said the same way.
    let mut lookout = run_lookout(tmp.path(), &watched.url(), &plugins, &["--dry-run"]);
    let line = wait_for("the refusal", Duration::from_secs(30), || {
        lookout.stderr.matching("refused").pop()
    });
    assert!(line.contains("NOAUTH"), "{line}");
    let _ = stop(&mut lookout);

    // No password and a database: SELECT is refused with NOAUTH, the same
    // refusal.
    let db = format!("{}/2", watched.url());
    let mut lookout = run_lookout(tmp.path(), &db, &plugins, &["--dry-run"]);
    let line = wait_for("the refusal", Duration::from_secs(30), || {
        lookout.stderr.matching("refused").pop()
    });
    assert!(line.contains("NOAUTH"), "{line}");
    assert!(lookout.stderr.matching("unreachable").is_empty());
    let _ = stop(&mut lookout);
}

/// The watched Redis's user for Lookout (docs/tls.md: ACL rules).
const WATCHED_ACL: &str =
    "on >watch-pw -@all +ping +info +slowlog|get +client|setname +client|info";

/// The bus's user for Lookout (docs/tls.md: ACL rules).
const BUS_ACL: &str = "on >bus-pw -@all +publish +xadd +info +exists +set +del +client|setname \
     +client|info ~logs:stream:* ~lookout:heartbeat:* &logs.redis.*";

fn acl(redis: &Redis, user: &str, rules: &str) {
    let mut cmd = redis::cmd("ACL");
    cmd.arg("SETUSER").arg(user);
    for rule in rules.split_whitespace() {
        cmd.arg(rule);
    }
    cmd.exec(&mut redis.conn()).unwrap();
}

/// With exactly the ACL users of docs/tls.md (watched and bus), slowlog events
/// arrive; without `+slowlog|get` the SLOWLOG probe is switched off with one
/// error event while the other watchers keep their cadence.
#[test]
fn minimal_acl_users_work_and_a_refused_probe_is_switched_off() {
    let watched = Redis::start(&["--slowlog-log-slower-than", "0"]);
    let bus = Redis::start(&[]);
    acl(&watched, "lookout", WATCHED_ACL);
    acl(&bus, "lookout", BUS_ACL);
    let tmp = tempfile::tempdir().unwrap();
    let config = config_file(
        tmp.path(),
        &format!(
            "[publish]\nurl = 'redis://lookout:bus-pw@127.0.0.1:{}'\n",
            bus.port
        ),
    );
    let plugins = plugins_with(tmp.path(), &["slowlog"], &["ticker"]);
    // Every entry one by one (the test's own reads are slow commands too).
    std::fs::write(plugins.join("slowlog.toml"), "max_events = 1000\n").unwrap();
    let url = format!("redis://lookout:watch-pw@127.0.0.1:{}", watched.port);
    let args = ["--config", config.to_str().unwrap()];
    let mut lookout = run_lookout(tmp.path(), &url, &plugins, &args);
    lookout.wait_started();
    redis::cmd("SET")
        .arg("acl:probe")
        .arg(1)
        .exec(&mut watched.conn())
        .unwrap();
    wait_for(
        "the SET reported by slowlog",
        Duration::from_secs(20),
        || {
            by_target(&bus.stream(STREAM), "slowlog")
                .iter()
                .any(|e| e["fields"]["args"] == "SET acl:probe 1")
                .then_some(())
        },
    );
    assert!(lookout.stderr.matching("refused").is_empty());
    let beats: Vec<String> = redis::cmd("KEYS")
        .arg("lookout:heartbeat:*")
        .query(&mut bus.conn())
        .unwrap();
    assert_eq!(beats.len(), 1, "the bus user writes the heartbeat");
    assert!(lookout.stderr.matching("heartbeat not written").is_empty());
    let _ = stop(&mut lookout);

    // The same user without SLOWLOG.
    acl(&watched, "lookout", "-slowlog|get");
    let before = bus.stream(STREAM).len();
    let mut lookout = run_lookout(tmp.path(), &url, &plugins, &args);
    lookout.wait_started();
    let refused = wait_for("the probe refusal", Duration::from_secs(20), || {
        bus.stream(STREAM)[before..]
            .iter()
            .find(|e| e["msg"].as_str().unwrap().starts_with("probe refused"))
            .cloned()
    });
    assert_eq!(refused["level"], "error");
    assert!(
        refused["msg"].as_str().unwrap().contains("SLOWLOG"),
        "{refused}"
    );
    // The ticker keeps running on every poll.
    let ticks = wait_for("ten more ticks", Duration::from_secs(30), || {
        let ns = ticks(&bus.stream(STREAM)[before..]);
        (ns.len() >= 10).then_some(ns)
    });
    assert!(no_gap(&ticks), "{ticks:?}");
    let refusals = bus.stream(STREAM)[before..]
        .iter()
        .filter(|e| e["msg"].as_str().unwrap().starts_with("probe refused"))
        .count();
    assert_eq!(refusals, 1, "said once");
    let _ = stop(&mut lookout);
}

//! Outages, backoff, the disable switch and signals.

use std::time::Duration;

use crate::support::{
    Redis, bundled, bus_config, by_target, events_of, free_port, lookout_cmd, pings, plugins_with,
    run_lookout, run_to_end, wait_event, wait_for,
};

/// Seconds in a "retrying in 3.7s" log line.
fn retry_seconds(line: &str) -> f64 {
    let rest = line.split("retrying in ").nth(1).unwrap();
    rest.split('s').next().unwrap().parse().unwrap()
}

/// Redis killed and restarted mid-run: backoff lines appear, the host says
/// Redis is back, events flow again and the SLOWLOG cursor resets
/// (ids starting again at 0 are reported).
#[test]
fn redis_restart_is_survived_and_slowlog_resets() {
    // A long slowlog ring: the test's own polling is logged too.
    let mut redis = Redis::start(&[
        "--slowlog-log-slower-than",
        "0",
        "--slowlog-max-len",
        "4096",
    ]);
    let tmp = tempfile::tempdir().unwrap();
    let plugins = bundled(tmp.path());
    // Every entry one by one, no summary.
    std::fs::write(plugins.join("slowlog.toml"), "max_events = 1000\n").unwrap();
    let mut lookout = run_lookout(tmp.path(), &redis.url(), &plugins, &[]);
    lookout.wait_started();
    let mut client = redis.conn();
    for _ in 0..20 {
        redis::cmd("SET")
            .arg("before")
            .arg("1")
            .exec(&mut client)
            .unwrap();
    }
    let max_before = wait_for(
        "slowlog events before the restart",
        Duration::from_secs(20),
        || {
            let ids: Vec<i64> = by_target(&redis.stream("logs:stream:redis"), "slowlog")
                .iter()
                .filter(|e| {
                    e["fields"]["args"]
                        .as_str()
                        .unwrap_or("")
                        .starts_with("SET before")
                })
                .map(|e| e["fields"]["id"].as_i64().unwrap())
                .collect();
            (ids.len() >= 20).then(|| *ids.iter().max().unwrap())
        },
    );
    redis.kill();
    wait_for("backoff lines", Duration::from_secs(20), || {
        (lookout.stderr.matching("retrying in").len() >= 2).then_some(())
    });
    redis.restart();
    let mut client = redis.conn();
    redis::cmd("SET")
        .arg("after")
        .arg("1")
        .exec(&mut client)
        .unwrap();
    let back = wait_for("the back-online envelope", Duration::from_secs(30), || {
        by_target(&redis.stream("logs:stream:redis"), "lookout")
            .into_iter()
            .find(|e| e["msg"].as_str().unwrap().contains("reachable again"))
    });
    assert!(back["fields"]["outage_ms"].as_u64().unwrap() > 0);
    let lost = by_target(&redis.stream("logs:stream:redis"), "lookout")
        .into_iter()
        .filter(|e| e["level"] == "error" && e["msg"].as_str().unwrap().contains("unreachable"))
        .count();
    assert_eq!(
        lost, 1,
        "the outage is reported once, delivered after recovery"
    );
    let after = wait_for(
        "slowlog events after the restart",
        Duration::from_secs(20),
        || {
            by_target(&redis.stream("logs:stream:redis"), "slowlog")
                .into_iter()
                .find(|e| e["fields"]["args"] == "SET after 1")
        },
    );
    let id = after["fields"]["id"].as_i64().unwrap();
    assert!(
        id < max_before,
        "ids restart after a Redis restart: {id} vs {max_before}"
    );
    assert!(lookout.alive());
    assert!(lookout.terminate().success());
}

/// A reply that comes after `response_timeout` (the watched server blocked
/// by DEBUG SLEEP) is never taken for a later call's: the poll that waited
/// fails, the target is reported unreachable once and reachable again,
/// the slow command arrives once as a slowlog event with its own
/// arguments, and the polls after it read what they asked for.
#[test]
fn a_late_reply_is_never_read_as_a_later_calls() {
    let redis = Redis::start(&[
        "--enable-debug-command",
        "yes",
        "--slowlog-log-slower-than",
        "100000",
    ]);
    let bus = Redis::start(&[]);
    let tmp = tempfile::tempdir().unwrap();
    let plugins = plugins_with(tmp.path(), &["slowlog"], &[]);
    let config = bus_config(tmp.path(), &bus, "response_timeout = 0.3", "");
    let mut lookout = run_lookout(
        tmp.path(),
        &redis.url(),
        &plugins,
        &["--config", config.to_str().unwrap()],
    );
    lookout.wait_started();
    let start = pings(&redis);
    wait_for("three polls", Duration::from_secs(20), || {
        (pings(&redis) >= start + 3).then_some(())
    });
    redis::cmd("DEBUG")
        .arg("SLEEP")
        .arg("1")
        .exec(&mut redis.conn())
        .unwrap();
    wait_event(&bus, "lookout", "the target back", |e| {
        e["msg"].as_str().unwrap_or("").contains("reachable again")
    });
    let slow = wait_event(&bus, "slowlog", "the DEBUG SLEEP entry", |e| {
        e["fields"]["args"] == "DEBUG SLEEP 1"
    });
    assert!(
        slow["fields"]["duration_us"].as_u64().unwrap() >= 900_000,
        "{slow}"
    );
    let back = pings(&redis);
    wait_for("ten polls after it", Duration::from_secs(20), || {
        (pings(&redis) >= back + 10).then_some(())
    });
    assert_eq!(lookout.stderr.matching("redis lost at").len(), 1);
    let lost = events_of(&bus, "lookout")
        .into_iter()
        .filter(|e| e["msg"].as_str().unwrap_or("").contains("unreachable"))
        .count();
    assert_eq!(lost, 1, "one outage, reported once");
    let slow = events_of(&bus, "slowlog")
        .into_iter()
        .filter(|e| e["fields"]["args"] == "DEBUG SLEEP 1")
        .count();
    assert_eq!(slow, 1, "the entry once");
    assert!(lookout.terminate().success());
}

/// LOG_SIDECAR_DISABLED=1 exits 0 at once, doing nothing (even with a bad URL).
#[test]
fn disabled_switch_exits_zero() {
    let tmp = tempfile::tempdir().unwrap();
    let mut cmd = lookout_cmd(tmp.path());
    cmd.args(["run", "--plugins", "/nonexistent"])
        .env("LOG_SIDECAR_DISABLED", "1")
        .env("REDIS_URL", "http://not-redis");
    let (status, out, err) = run_to_end(cmd, Duration::from_secs(10));
    assert!(status.success());
    assert!(out.is_empty() && err.is_empty(), "silent: {out}{err}");
}

/// A dead port: growing backoff lines, no crash, SIGTERM still exits 0.
#[test]
fn dead_port_backs_off_without_crashing() {
    let tmp = tempfile::tempdir().unwrap();
    let port = free_port();
    let url = format!("redis://:hunter2@127.0.0.1:{port}");
    let mut lookout = run_lookout(tmp.path(), &url, &bundled(tmp.path()), &[]);
    let lines = wait_for("three backoff lines", Duration::from_secs(30), || {
        let lines = lookout.stderr.matching("retrying in");
        (lines.len() >= 3).then_some(lines)
    });
    assert!(
        lines[0].contains(&format!("redis unreachable at 127.0.0.1:{port}")),
        "{}",
        lines[0]
    );
    let waits: Vec<f64> = lines.iter().map(|l| retry_seconds(l)).collect();
    assert!(
        waits.windows(2).all(|w| w[1] >= w[0]),
        "backoff grows: {waits:?}"
    );
    assert!(waits[0] >= 0.5 && waits[0] <= 1.0, "{waits:?}");
    assert!(waits[2] >= 2.0, "{waits:?}");
    assert!(lookout.alive());
    assert!(lookout.terminate().success());
    let all = lookout.stderr.all().join("\n");
    assert!(
        !all.contains("hunter2"),
        "the password never appears: {all}"
    );
}

/// SIGTERM while running normally exits 0.
#[test]
fn sigterm_exits_zero() {
    let redis = Redis::start(&[]);
    let tmp = tempfile::tempdir().unwrap();
    let mut lookout = run_lookout(tmp.path(), &redis.url(), &bundled(tmp.path()), &[]);
    wait_for("the first envelope", Duration::from_secs(20), || {
        (!redis.stream("logs:stream:redis").is_empty()).then_some(())
    });
    assert!(lookout.terminate().success());
}

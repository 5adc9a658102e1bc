//! The heartbeat key on the bus: `lookout:heartbeat:HOST:PID` with EX 90,
//! refreshed while the daemon runs, deleted on a clean stop, left to
//! expire after a crash.

use std::time::Duration;

use serde_json::Value;

use crate::support::*;

/// The heartbeat keys on `bus`.
fn heartbeats(bus: &Redis) -> Vec<String> {
    redis::cmd("KEYS")
        .arg("lookout:heartbeat:*")
        .query(&mut bus.conn())
        .unwrap()
}

fn ttl(bus: &Redis, key: &str) -> i64 {
    redis::cmd("TTL").arg(key).query(&mut bus.conn()).unwrap()
}

/// Starts the ticker on `watched` publishing to `bus` with `top` keys.
fn start(tmp: &std::path::Path, watched: &Redis, bus: &Redis, top: &str) -> Lookout {
    let config = bus_config(tmp, bus, top, "");
    start_ticker(tmp, watched, &config, "0.2")
}

/// The key names this process, holds what it watches, lives at most 90 s,
/// survives a kill -9 only until it expires (its TTL runs down, nothing
/// refreshes it), and a clean stop deletes it.
#[test]
fn heartbeat_lives_while_the_daemon_does() {
    let (watched, bus) = (Redis::start(&[]), Redis::start(&[]));
    let tmp = tempfile::tempdir().unwrap();
    let mut lookout = start(tmp.path(), &watched, &bus, "");
    let pid = lookout.pid();
    let key = wait_for("the heartbeat key", Duration::from_secs(20), || {
        heartbeats(&bus).into_iter().next()
    });
    assert!(key.ends_with(&format!(":{pid}")), "{key}");
    let t = ttl(&bus, &key);
    assert!((1..=90).contains(&t), "TTL {t}");
    let value: String = redis::cmd("GET").arg(&key).query(&mut bus.conn()).unwrap();
    let beat: Value = serde_json::from_str(&value).unwrap();
    assert_eq!(beat["pid"], pid);
    assert_eq!(beat["targets"], 1);
    assert_eq!(beat["shard"], "0/1");
    assert!(
        beat["abi"]
            .as_str()
            .unwrap()
            .starts_with("lookout:watcher@")
    );
    wait_for("the ticker counted", Duration::from_secs(20), || {
        let v: String = redis::cmd("GET").arg(&key).query(&mut bus.conn()).ok()?;
        let beat: Value = serde_json::from_str(&v).ok()?;
        (beat["watchers"] == 1).then_some(())
    });

    // A clean stop deletes it.
    assert!(lookout.terminate().success());
    assert!(heartbeats(&bus).is_empty(), "deleted on a clean stop");

    // kill -9 leaves it to expire: its TTL runs down, no refresh.
    let mut lookout = start(tmp.path(), &watched, &bus, "");
    let key = wait_for("the heartbeat key", Duration::from_secs(20), || {
        heartbeats(&bus).into_iter().next()
    });
    lookout.signal("-KILL");
    lookout.wait_exit(Duration::from_secs(10));
    let first = ttl(&bus, &key);
    assert!((1..=90).contains(&first), "TTL {first}");
    wait_for("the TTL to run down", Duration::from_secs(10), || {
        (ttl(&bus, &key) < first).then_some(())
    });
    assert!(ttl(&bus, &key) > 0, "still there until it expires");
}

/// `[heartbeat] enabled = false` writes no key; a custom prefix is used.
#[test]
fn heartbeat_can_be_off_or_renamed() {
    let (watched, bus) = (Redis::start(&[]), Redis::start(&[]));
    let tmp = tempfile::tempdir().unwrap();
    let mut lookout = start(
        tmp.path(),
        &watched,
        &bus,
        "[heartbeat]\nprefix = 'ops:alive'",
    );
    let keys: Vec<String> = wait_for("the renamed key", Duration::from_secs(20), || {
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg("ops:alive:*")
            .query(&mut bus.conn())
            .ok()?;
        (!keys.is_empty()).then_some(keys)
    });
    assert!(keys[0].ends_with(&format!(":{}", lookout.pid())));
    assert!(lookout.terminate().success());

    let mut lookout = start(tmp.path(), &watched, &bus, "[heartbeat]\nenabled = false");
    wait_for("three ticks", Duration::from_secs(20), || {
        (ticks(&bus.stream(STREAM)).len() >= 3).then_some(())
    });
    assert!(heartbeats(&bus).is_empty());
    assert!(lookout.terminate().success());
}

//! Several watched Redis instances in one process: each target has its own
//! poller, watcher instances (state per target), labels and watchers.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::Value;

use crate::support::*;

/// The ticker's `n` values of the envelopes about `instance`, in order.
fn ticks_of(envelopes: &[Value], instance: &str) -> Vec<i64> {
    by_target(envelopes, "ticker")
        .iter()
        .filter(|e| e["fields"]["instance"] == instance)
        .map(|e| e["fields"]["n"].as_i64().unwrap())
        .collect()
}

/// Three standalone targets from `[[targets]]`: each counts its own ticks
/// from 1 (its own watcher instance), carries its labels, and runs only
/// the watchers it names.
#[test]
fn three_targets_each_with_their_own_events() {
    let watched: Vec<Redis> = (0..3)
        .map(|_| Redis::start(&["--slowlog-log-slower-than", "0"]))
        .collect();
    let bus = Redis::start(&[]);
    let tmp = tempfile::tempdir().unwrap();
    let plugins = plugins_with(tmp.path(), &["slowlog"], &["ticker"]);
    let targets = format!(
        "[[targets]]\nurl = '{}'\nlabels = {{ role = 'cache', zone = 'a' }}\n\
         [[targets]]\nurl = '{}'\n\
         [[targets]]\nurl = '{}'\nwatchers = ['ticker']\n",
        watched[0].url(),
        watched[1].url(),
        watched[2].url()
    );
    let config = bus_config(tmp.path(), &bus, "", &targets);
    let mut lookout = run_config(tmp.path(), &plugins, &config, &[]);
    lookout.wait_started();
    let instances: Vec<String> = watched
        .iter()
        .map(|r| format!("127.0.0.1:{}", r.port))
        .collect();
    for r in &watched {
        redis::cmd("SET")
            .arg("marker")
            .arg(r.port)
            .exec(&mut r.conn())
            .unwrap();
    }
    let all = wait_for(
        "five ticks from every target",
        Duration::from_secs(30),
        || {
            let all = bus.stream(STREAM);
            instances
                .iter()
                .all(|i| ticks_of(&all, i).len() >= 5)
                .then_some(all)
        },
    );
    for instance in &instances {
        let ns = ticks_of(&all, instance);
        assert!(no_gap(&ns), "{instance}: {ns:?}");
    }
    let labels: BTreeMap<String, Value> = by_target(&all, "ticker")
        .iter()
        .filter(|e| e["fields"]["instance"] == instances[0].as_str())
        .map(|e| serde_json::from_value(e["fields"]["labels"].clone()).unwrap())
        .next()
        .unwrap();
    assert_eq!(labels["role"], "cache");
    assert_eq!(labels["zone"], "a");
    assert!(
        by_target(&all, "ticker")
            .iter()
            .filter(|e| e["fields"]["instance"] != instances[0].as_str())
            .all(|e| e["fields"].get("labels").is_none())
    );
    // slowlog runs on the first two targets only.
    let marked = wait_for(
        "the markers of the first two",
        Duration::from_secs(30),
        || {
            let slow = by_target(&bus.stream(STREAM), "slowlog");
            let on = |i: usize| {
                slow.iter().any(|e| {
                    e["fields"]["instance"] == instances[i].as_str()
                        && e["fields"]["command"] == "SET"
                })
            };
            (on(0) && on(1)).then_some(slow)
        },
    );
    assert!(
        marked
            .iter()
            .all(|e| e["fields"]["instance"] != instances[2].as_str()),
        "the third target runs only the ticker"
    );
    let _ = stop(&mut lookout);
}

/// `--redis-url` repeats: one bounded run polls each of them.
#[test]
fn redis_url_flag_repeats() {
    let a = Redis::start(&[]);
    let b = Redis::start(&[]);
    let tmp = tempfile::tempdir().unwrap();
    let plugins = plugins_with(tmp.path(), &[], &["ticker"]);
    let mut cmd = lookout_cmd(tmp.path());
    cmd.args(["run", "--once", "--dry-run", "--plugins"])
        .arg(&plugins)
        .args(["--redis-url", &a.url(), "--redis-url", &b.url()]);
    let (status, out, err) = run_to_end(cmd, Duration::from_secs(60));
    assert!(status.success(), "{err}");
    let envelopes: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    for r in [&a, &b] {
        let instance = format!("127.0.0.1:{}", r.port);
        assert_eq!(ticks_of(&envelopes, &instance), [1], "{instance}: {out}");
    }
}

/// Two ways of naming targets at once, or the same URL twice, are refused
/// naming the key.
#[test]
fn conflicting_targets_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let plugins = plugins_with(tmp.path(), &[], &["ticker"]);
    for (text, needle) in [
        (
            "redis_url = 'redis://127.0.0.1:1'\n[[targets]]\nurl = 'redis://127.0.0.1:2'\n",
            "keep one",
        ),
        (
            "[[targets]]\nurl = 'redis://127.0.0.1:2'\n[[targets]]\nurl = 'redis://127.0.0.1:2'\n",
            "targets[1].url",
        ),
        ("[[targets]]\nurl = 'http://x'\n", "targets[0].url"),
    ] {
        let config = config_file(tmp.path(), text);
        let mut cmd = lookout_cmd(tmp.path());
        cmd.args(["run", "--once", "--dry-run", "--plugins"])
            .arg(&plugins)
            .arg("--config")
            .arg(&config);
        let (status, _, err) = run_to_end(cmd, Duration::from_secs(30));
        assert!(!status.success());
        assert!(err.contains(needle), "{needle}: {err}");
    }
}

/// A watcher stuck for ten minutes in one target's poll delays no other
/// target: the other keeps ticking on every poll, and SIGTERM still ends
/// the daemon.
#[test]
fn a_stuck_watcher_on_one_target_delays_no_other() {
    let stuck = Redis::start(&[]);
    let healthy = Redis::start(&[]);
    let bus = Redis::start(&[]);
    let tmp = tempfile::tempdir().unwrap();
    let plugins = plugins_with(tmp.path(), &[], &["ticker", "sleeper"]);
    let targets = format!(
        "[[targets]]\nurl = '{}'\nwatchers = ['sleeper']\n\
         [[targets]]\nurl = '{}'\nwatchers = ['ticker']\n\
         [limits.watchers.sleeper]\ncall_deadline_ms = 600000\n",
        stuck.url(),
        healthy.url()
    );
    let config = bus_config(tmp.path(), &bus, "shutdown_grace = 2", &targets);
    let mut lookout = run_config(tmp.path(), &plugins, &config, &[]);
    wait_for(
        "the sleeper to go to sleep",
        Duration::from_secs(30),
        || (!lookout.stderr.matching("going to sleep").is_empty()).then_some(()),
    );
    let instance = format!("127.0.0.1:{}", healthy.port);
    let before = ticks_of(&bus.stream(STREAM), &instance).len();
    let ns = wait_for(
        "ten more ticks from the other target",
        Duration::from_secs(30),
        || {
            let ns = ticks_of(&bus.stream(STREAM), &instance);
            (ns.len() >= before + 10).then_some(ns)
        },
    );
    assert!(no_gap(&ns), "{ns:?}");
    assert_eq!(
        lookout.stderr.matching("going to sleep").len(),
        1,
        "the stuck call is still the first one"
    );
    assert!(lookout.terminate().success());
}

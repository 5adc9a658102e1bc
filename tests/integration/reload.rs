//! Hot reload while the daemon runs: add, re-configure, break, fix, delete
//! and half-write watchers, SIGHUP, and lifting a quarantine, without a
//! missed poll of the untouched watcher.

use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use crate::support::{
    Lookout, Redis, assert_counts_up, by_target, fixture, plugins_dir, run_lookout, wait_for,
};

fn host_msgs(all: &[Value]) -> Vec<String> {
    by_target(all, "lookout")
        .iter()
        .map(|e| e["msg"].as_str().unwrap().to_owned())
        .collect()
}

fn wait_msg(redis: &Redis, what: &str, needle: &str) -> Vec<Value> {
    wait_for(what, Duration::from_secs(30), || {
        let all = redis.stream("logs:stream:redis");
        host_msgs(&all)
            .iter()
            .any(|m| m.contains(needle))
            .then_some(all)
    })
}

fn start(redis: &Redis, plugins: &Path, tmp: &Path) -> Lookout {
    let lookout = run_lookout(tmp, &redis.url(), plugins, &["--poll-interval", "0.25"]);
    lookout.wait_started();
    lookout
}

/// Add, re-configure, break, fix and delete watchers while the daemon runs;
/// a copy in progress is not taken for a broken file; SIGHUP reloads; the
/// untouched watcher never misses a poll.
#[test]
fn watchers_reload_without_a_restart() {
    let redis = Redis::start(&[]);
    let tmp = tempfile::tempdir().unwrap();
    let plugins = tmp.path().join("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    std::fs::copy(fixture("ticker"), plugins.join("steady.wasm")).unwrap();
    std::fs::write(plugins.join("steady.toml"), "label = 'steady'\n").unwrap();
    let mut lookout = start(&redis, &plugins, tmp.path());

    // Add a watcher.
    std::fs::copy(fixture("ticker"), plugins.join("ticker.wasm")).unwrap();
    wait_msg(&redis, "the new watcher", "watcher ticker 0.1.0 loaded");

    // Change its settings: it is re-configured.
    std::fs::write(plugins.join("ticker.toml"), "label = 'changed'\n").unwrap();
    wait_for("events with the new label", Duration::from_secs(30), || {
        by_target(&redis.stream("logs:stream:redis"), "ticker")
            .into_iter()
            .find(|e| e["fields"]["label"] == "changed")
    });

    // Break it: the running version stays and the refusal is reported once.
    std::fs::write(plugins.join("ticker.wasm"), b"\0asm garbage").unwrap();
    wait_msg(
        &redis,
        "the refusal",
        "new version refused, the running one stays",
    );
    let before = by_target(&redis.stream("logs:stream:redis"), "ticker").len();
    wait_for(
        "the old version still running",
        Duration::from_secs(30),
        || {
            (by_target(&redis.stream("logs:stream:redis"), "ticker").len() > before + 2)
                .then_some(())
        },
    );

    // Fix it with a different watcher under the same name, copied slowly.
    let good = std::fs::read(plugins_dir().join("client-delta.wasm")).unwrap();
    let path = plugins.join("ticker.wasm");
    std::fs::write(&path, &good[..good.len() / 2]).unwrap();
    std::thread::sleep(Duration::from_millis(100)); // a copy in progress, on purpose
    std::fs::write(&path, &good).unwrap();
    std::fs::remove_file(plugins.join("ticker.toml")).unwrap();
    wait_msg(&redis, "the fixed version", "watcher ticker 0.1.0 reloaded");

    // Delete it.
    std::fs::remove_file(&path).unwrap();
    let all = wait_msg(&redis, "the removal", "watcher ticker unloaded");

    let refusals = host_msgs(&all)
        .iter()
        .filter(|m| m.contains("refused") || m.contains("not loaded"))
        .count();
    assert_eq!(
        refusals,
        1,
        "one refusal, none for the half-copied file: {:?}",
        host_msgs(&all)
    );

    // SIGHUP reloads (nothing changed, so nothing is replaced).
    lookout.signal("-HUP");
    wait_for("the SIGHUP reload", Duration::from_secs(30), || {
        (!lookout.stderr.matching("reloading watchers").is_empty()
            && !lookout.stderr.matching("SIGHUP received").is_empty())
        .then_some(())
    });

    // The untouched watcher ran on every poll, with no gap of more than
    // a few intervals.
    let steady = by_target(&redis.stream("logs:stream:redis"), "steady");
    assert_counts_up(&steady);
    let times: Vec<std::time::SystemTime> = steady
        .iter()
        .map(|e| humantime::parse_rfc3339(e["ts"].as_str().unwrap()).unwrap())
        .collect();
    for pair in times.windows(2) {
        let gap = pair[1].duration_since(pair[0]).unwrap();
        assert!(
            gap < Duration::from_millis(1500),
            "a poll was missed: gap {gap:?}"
        );
    }
    assert!(lookout.terminate().success());
}

/// A quarantined watcher stays quiet until its file changes; then the new
/// version runs.
#[test]
fn quarantine_lifts_when_the_file_changes() {
    let redis = Redis::start(&[]);
    let tmp = tempfile::tempdir().unwrap();
    let plugins = tmp.path().join("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    std::fs::copy(fixture("recurse"), plugins.join("flaky.wasm")).unwrap();
    let mut lookout = start(&redis, &plugins, tmp.path());
    wait_msg(
        &redis,
        "the quarantine",
        "watcher flaky quarantined after 5 consecutive failures",
    );
    std::fs::copy(fixture("ticker"), plugins.join("flaky.wasm")).unwrap();
    wait_msg(&redis, "the new version", "watcher flaky 0.1.0 reloaded");
    // Under its file name, whatever its manifest says.
    let tick = wait_for("events of the new version", Duration::from_secs(30), || {
        by_target(&redis.stream("logs:stream:redis"), "flaky")
            .first()
            .cloned()
    });
    assert_eq!(tick["fields"]["watcher"], "ticker", "{tick}");
    assert!(lookout.terminate().success());
}

/// A broken watcher file copied into the folder of a running daemon is
/// reported once, as at start-up (an error envelope naming the file, the
/// reason and the fix); replacing it with a good one loads it.
#[test]
fn a_bad_new_file_is_reported_once_and_loads_when_fixed() {
    let redis = Redis::start(&[]);
    let tmp = tempfile::tempdir().unwrap();
    let plugins = tmp.path().join("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    std::fs::copy(fixture("ticker"), plugins.join("steady.wasm")).unwrap();
    let mut lookout = start(&redis, &plugins, tmp.path());

    let path = plugins.join("later.wasm");
    std::fs::copy(fixture("future-version"), &path).unwrap();
    let all = wait_msg(&redis, "the report", "watcher later not loaded");
    let report = by_target(&all, "lookout")
        .into_iter()
        .find(|e| {
            e["msg"]
                .as_str()
                .unwrap()
                .contains("watcher later not loaded")
        })
        .unwrap();
    assert_eq!(report["level"], "error", "{report}");
    assert_eq!(report["fields"]["file"], path.to_str().unwrap(), "{report}");
    let msg = report["msg"].as_str().unwrap();
    assert!(
        msg.contains("built for lookout:watcher@0.5.0")
            && msg.contains(&format!("fix or remove {}", path.display())),
        "{msg}"
    );

    // Another reload (SIGHUP) does not report the unchanged file again.
    let reloads = lookout.stderr.matching("reloading watchers").len();
    lookout.signal("-HUP");
    wait_for("the SIGHUP reload", Duration::from_secs(30), || {
        (lookout.stderr.matching("reloading watchers").len() > reloads).then_some(())
    });
    std::fs::copy(fixture("ticker"), &path).unwrap();
    let all = wait_msg(&redis, "the fixed file", "watcher later 0.1.0 loaded");
    let reports = host_msgs(&all)
        .into_iter()
        .filter(|m| m.contains("watcher later not loaded"))
        .count();
    assert_eq!(reports, 1, "{:?}", host_msgs(&all));
    assert!(lookout.terminate().success());
}

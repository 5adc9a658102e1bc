//! The fleet memory budget: all instances of one watcher, on every target,
//! grow at most `limits.fleet_memory_mib` beyond their initial memory
//! together; the instance that would grow past it fails alone, with one
//! warning naming the key, and what a dropped instance held comes back.
//! Also the per-instance caps on table elements and WASI resources.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use crate::support::*;

/// Peak resident set size of the process `pid` so far (`VmHWM`), KiB.
fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// The host's notices about the hog in `state` (`failed`, `quarantined`...).
fn hog_notices<'a>(all: &'a [Value], state: &str) -> Vec<&'a Value> {
    all.iter()
        .filter(|e| {
            e["target"] == "lookout" && e["fields"]["watcher"] == "hog" && event_state(e) == state
        })
        .collect()
}

/// The host's warnings that the hog is over its fleet budget.
fn budget_warnings(all: &[Value]) -> Vec<&Value> {
    all.iter()
        .filter(|e| {
            e["target"] == "lookout"
                && e["level"] == "warn"
                && e["fields"]["watcher"] == "hog"
                && e["msg"]
                    .as_str()
                    .is_some_and(|m| m.contains("over its fleet memory budget"))
        })
        .collect()
}

/// The target an envelope is about: its label `t` (see [`fleet_config`]).
fn target_of(e: &Value) -> String {
    e["fields"]["labels"]["t"].as_str().unwrap().to_owned()
}

/// The `n` values of `watcher`'s events on each target, in stream order.
fn counts(all: &[Value], watcher: &str) -> BTreeMap<String, Vec<i64>> {
    let mut out: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for e in by_target(all, watcher) {
        out.entry(target_of(&e))
            .or_default()
            .push(e["fields"]["n"].as_i64().unwrap());
    }
    out
}

/// The `n` values of each target's "hog holds" events.
fn holders(all: &[Value]) -> BTreeMap<String, Vec<i64>> {
    counts(all, "hog")
}

/// The ticker's `n` values on each target.
fn tickers(all: &[Value]) -> BTreeMap<String, Vec<i64>> {
    counts(all, "ticker")
}

/// The targets of the hog notices in `state`.
fn hog_targets(all: &[Value], state: &str) -> BTreeSet<String> {
    hog_notices(all, state).into_iter().map(target_of).collect()
}

/// `lookout.toml` watching databases `0..targets` of `watched` (database
/// N labelled `t = "tNN"`: they share an instance name), publishing to
/// `bus` (a long stream: nothing is trimmed while a test reads it), with
/// `limits` as the `[limits]` table's lines.
fn fleet_config(tmp: &Path, watched: &Redis, bus: &Redis, targets: usize, limits: &str) -> String {
    let mut text = format!(
        "[limits]\n{limits}\n[publish]\nurl = '{}'\nstream_maxlen = 1000000\n",
        bus.url()
    );
    for db in 0..targets {
        text.push_str(&format!(
            "[[targets]]\nurl = '{}/{db}'\nlabels = {{ t = 't{db:02}' }}\n",
            watched.url()
        ));
    }
    config_file(tmp, &text).to_str().unwrap().to_owned()
}

/// Sixty targets (sixty databases of one server) with a hog holding 12 MiB
/// on each under `fleet_memory_mib = 128`: ten instances hold their
/// 12 MiB, every other one fails when it grows, with one warning naming the
/// key, and is quarantined on its target; the holders go on untouched, the
/// ticker beside them ticks on every target on every poll, and the
/// daemon's peak RSS stays far below the 60 x 12 MiB the hogs asked for.
#[test]
fn a_fleet_budget_holds_sixty_hogs_to_it() {
    let watched = Redis::start(&["--databases", "64"]);
    let bus = Redis::start(&[]);
    let tmp = tempfile::tempdir().unwrap();
    let plugins = plugins_with(tmp.path(), &[], &["hog", "ticker"]);
    // A generous deadline: filling 12 MiB must never be what fails a call.
    let config = fleet_config(
        tmp.path(),
        &watched,
        &bus,
        60,
        "fleet_memory_mib = 128\ncall_deadline_ms = 2000",
    );
    let mut lookout = run_config(
        tmp.path(),
        &plugins,
        Path::new(&config),
        &["--poll-interval", "1"],
    );
    lookout.wait_started();
    let targets: BTreeSet<String> = (0..60).map(|db| format!("t{db:02}")).collect();
    // Every target's hog either holds its memory or is quarantined there.
    let settled = wait_for(
        "every hog holding or quarantined",
        Duration::from_secs(120),
        || {
            let all = bus.stream(STREAM);
            let held: BTreeSet<String> = holders(&all).into_keys().collect();
            let out = hog_targets(&all, "quarantined");
            (held.union(&out).count() == 60).then_some(tickers(&all))
        },
    );
    // The ticker goes on on every target after that.
    wait_for(
        "five more ticks on every target",
        Duration::from_secs(60),
        || {
            let now = tickers(&bus.stream(STREAM));
            targets
                .iter()
                .all(|i| {
                    let before = settled.get(i).map_or(0, Vec::len);
                    now.get(i).map_or(0, Vec::len) >= before + 5
                })
                .then_some(())
        },
    );
    let peak_kib = peak_rss_kib(lookout.pid());
    assert!(lookout.terminate().success());
    let all = bus.stream(STREAM);
    let held = holders(&all);
    let quarantined = hog_targets(&all, "quarantined");
    eprintln!(
        "60 hogs of 12 MiB under fleet_memory_mib = 128: {} hold, {} quarantined, peak RSS \
         {peak_kib} KiB",
        held.len(),
        quarantined.len()
    );
    // 128 MiB hold ten growths of 12 MiB and a page or so each.
    assert!((9..=10).contains(&held.len()), "holders: {held:?}");
    assert_eq!(held.len() + quarantined.len(), 60, "{quarantined:?}");
    for (i, ns) in &held {
        assert!(!quarantined.contains(i), "{i} held and was quarantined");
        assert!(no_gap(ns), "{i}: a holder is never touched: {ns:?}");
    }
    for e in hog_notices(&all, "failed") {
        let reason = e["fields"]["reason"].as_str().unwrap();
        assert!(
            reason.starts_with("fleet memory budget spent: ")
                && reason.ends_with("budget 134217728 bytes (limits.fleet_memory_mib)"),
            "{reason}"
        );
    }
    // One warning for the watcher, however many instances were refused.
    let warnings = budget_warnings(&all);
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    let warning = warnings[0];
    assert_eq!(warning["fields"]["key"], "limits.fleet_memory_mib");
    assert_eq!(warning["fields"]["budget_bytes"], 128 << 20);
    let msg = warning["msg"].as_str().unwrap();
    assert!(
        msg.starts_with("watcher hog is over its fleet memory budget")
            && msg.contains("raise limits.fleet_memory_mib"),
        "{msg}"
    );
    assert_eq!(
        lookout
            .stderr
            .matching("over its fleet memory budget")
            .len(),
        1,
        "one log line"
    );
    let ticks = tickers(&all);
    for t in &targets {
        assert!(no_gap(&ticks[t]), "{t}: {:?}", ticks[t]);
    }
    // Without the budget the same daemon held 60 x 12 MiB: 753 MB.
    assert!(peak_kib < 400 << 10, "peak RSS {peak_kib} KiB");
}

/// A budget set in `[limits.watchers.hog]` is named by its own key; what an
/// instance held comes back when it is dropped: with the hog unloaded and
/// loaded again, one instance holds again (the budget is not still spent
/// by the instances that went) and, the watcher having fitted in between,
/// the next refusal is reported again.
#[test]
fn a_dropped_instance_gives_its_growth_back() {
    let watched = Redis::start(&["--databases", "4"]);
    let bus = Redis::start(&[]);
    let tmp = tempfile::tempdir().unwrap();
    let plugins = plugins_with(tmp.path(), &[], &["hog"]);
    let config = fleet_config(
        tmp.path(),
        &watched,
        &bus,
        3,
        "call_deadline_ms = 2000\nquarantine_after = 1000\n\
         [limits.watchers.hog]\nfleet_memory_mib = 20",
    );
    let mut lookout = run_config(tmp.path(), &plugins, Path::new(&config), &[]);
    lookout.wait_started();
    let key = "limits.watchers.hog.fleet_memory_mib";
    let all = wait_for(
        "one hog holding, the others refused",
        Duration::from_secs(60),
        || {
            let all = bus.stream(STREAM);
            let failed = hog_targets(&all, "failed");
            (holders(&all).len() == 1 && failed.len() == 2 && budget_warnings(&all).len() == 1)
                .then_some(all)
        },
    );
    assert_eq!(budget_warnings(&all)[0]["fields"]["key"], key);
    for e in hog_notices(&all, "failed") {
        let reason = e["fields"]["reason"].as_str().unwrap();
        assert!(reason.ends_with(&format!("({key})")), "{reason}");
    }
    std::fs::remove_file(plugins.join("hog.wasm")).unwrap();
    wait_for("the hog unloaded", Duration::from_secs(30), || {
        (!lookout.stderr.matching("watcher unloaded").is_empty()).then_some(())
    });
    // Every target has dropped its instance: a few polls of each.
    polls_pass(&watched, 9);
    let before = bus.stream(STREAM).len();
    std::fs::copy(fixture("hog"), plugins.join("hog.wasm")).unwrap();
    let after = wait_for(
        "one hog holding again, and a second warning",
        Duration::from_secs(60),
        || {
            let all = bus.stream(STREAM);
            let again = &all[before..];
            (holders(again).len() == 1 && budget_warnings(&all).len() == 2).then(|| all.clone())
        },
    );
    assert_eq!(budget_warnings(&after)[1]["fields"]["key"], key);
    assert!(lookout.terminate().success());
}

/// `lookout test` of the hog over the recorded snapshots with
/// `lookout.toml` limits `limits` and hog settings `settings`, in the
/// folder `case`: the JSON lines it printed.
fn hog_test(tmp: &Path, case: &str, limits: &str, settings: &str) -> Vec<Value> {
    let dir = tmp.join(case);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("lookout.toml"), format!("[limits]\n{limits}\n")).unwrap();
    std::fs::write(dir.join("hog.toml"), settings).unwrap();
    let mut cmd = lookout_cmd(tmp);
    cmd.arg("test")
        .arg(fixture("hog"))
        .arg("--snapshots")
        .arg(repo().join("plugins/slowlog/golden/snapshots.jsonl"))
        .arg("--config")
        .arg(dir.join("hog.toml"))
        .arg("--lookout-config")
        .arg(dir.join("lookout.toml"));
    let (status, out, err) = run_to_end(cmd, Duration::from_secs(60));
    assert!(status.success(), "{err}");
    out.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// An instance holds at most `limits.max_resources` WASI resources (100 by
/// default; a clock's pollable is two, its deadline and the pollable): the
/// hog opening 150 pollables fails with the reason naming the key, one
/// opening 30 runs, and so does one opening 150 with the cap raised to 400;
/// and a watcher's tables hold at most
/// `limits.max_table_elements` elements: `rules` (about 170) is refused
/// under a cap of 100, the ticker (about 60) loads.
#[test]
fn resources_and_table_elements_are_capped_per_instance() {
    let tmp = tempfile::tempdir().unwrap();
    let failed = |out: &[Value]| -> Vec<String> {
        out.iter()
            .filter(|e| e["target"] == "lookout" && event_state(e) == "failed")
            .map(|e| e["fields"]["reason"].as_str().unwrap().to_owned())
            .collect()
    };
    let out = hog_test(tmp.path(), "over", "", "mib = 0\npollables = 150\n");
    let reasons = failed(&out);
    assert!(!reasons.is_empty(), "{out:?}");
    for reason in reasons {
        assert_eq!(
            reason,
            "resource cap reached: 100 WASI resources held (limits.max_resources)"
        );
    }
    assert!(by_target(&out, "hog").is_empty());
    let out = hog_test(tmp.path(), "under", "", "mib = 0\npollables = 30\n");
    assert!(failed(&out).is_empty(), "{out:?}");
    assert!(!by_target(&out, "hog").is_empty());
    let out = hog_test(
        tmp.path(),
        "raised",
        "max_resources = 400",
        "mib = 0\npollables = 150\n",
    );
    assert!(failed(&out).is_empty(), "{out:?}");

    let config = tmp.path().join("tables.toml");
    std::fs::write(&config, "[limits]\nmax_table_elements = 100\n").unwrap();
    let check = |wasm: &Path| {
        let mut cmd = lookout_cmd(tmp.path());
        cmd.arg("check")
            .arg(wasm)
            .arg("--lookout-config")
            .arg(&config);
        run_to_end(cmd, Duration::from_secs(60))
    };
    let (status, out, err) = check(&plugins_dir().join("rules.wasm"));
    assert!(!status.success(), "{out}");
    assert!(
        err.contains("rules.wasm: ")
            && err.contains("table cap reached: ")
            && err.contains("cap 100 elements (limits.max_table_elements)"),
        "{err}"
    );
    let (status, out, err) = check(&fixture("ticker"));
    assert!(status.success() && out.contains("ok: configured"), "{err}");
}

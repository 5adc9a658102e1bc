//! Declared probes (ABI 0.3) in the daemon: watchers built for 0.2.0 and
//! 0.3.0 still load and report beside 0.4.0 ones; a watcher's `configure`
//! narrows the probes the host runs for it; stream-lag and latency,
//! beside every other bundled watcher, see a real Redis driven into their
//! conditions; refused probes are not repeated every poll; a probe two
//! watchers declare runs once per poll; in a Redis Cluster a stream is read
//! on its own master; `lookout record --watcher` records the probes.

use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use crate::support::{
    ALL_WATCHERS, Lookout, Redis, bus_config, daemon_with_all_watchers, daemon_with_plugins,
    events_of, lookout_cmd, plugins_with, polls_pass, redis_cmd, repo, run_lookout, run_to_end,
    wait_event,
};

/// memory-pressure as built for lookout:watcher@0.2.0 (before declared
/// probes) loads unchanged beside watchers built for 0.3.0 and reports.
#[test]
fn a_watcher_built_for_0_2_0_still_loads_and_reports() {
    let old = repo().join("tests/fixtures/abi-0.2.0/memory-pressure.wasm");
    let tmp = tempfile::tempdir().unwrap();
    let mut check = lookout_cmd(tmp.path());
    check.arg("check").arg(&old);
    let (status, out, err) = run_to_end(check, Duration::from_secs(60));
    assert!(status.success(), "{out}{err}");
    assert!(out.contains("built for lookout:watcher@0.2.0"), "{out}");
    assert!(out.contains("runs probes: none"), "{out}");

    let redis = Redis::start(&["--maxmemory", "1mb"]);
    let bus = Redis::start(&[]);
    let plugins = plugins_with(tmp.path(), &["client-delta", "latency"], &[]);
    std::fs::copy(&old, plugins.join("memory-pressure.wasm")).unwrap();
    let mut lookout = daemon_with_plugins(tmp.path(), &redis, &bus, &plugins, "");
    let entered = wait_event(&bus, "memory-pressure", "the 0.2.0 watcher's event", |e| {
        e["fields"]["state"] == "entered"
    });
    assert_eq!(entered["level"], "warn");
    assert_eq!(entered["fields"]["maxmemory"], 1024 * 1024);
    // The 0.3.0 watcher beside it gets its probe.
    wait_event(&bus, "latency", "the latency watcher's first word", |e| {
        e["fields"]["state"] == "entered"
    });
    assert!(lookout.terminate().success());
}

/// stream-lag as built for lookout:watcher@0.3.0 (before conditions)
/// loads unchanged beside watchers built for 0.4.0, gets its probes and
/// reports its lag, its envelopes without a condition.
#[test]
fn a_watcher_built_for_0_3_0_still_loads_and_reports() {
    let old = repo().join("tests/fixtures/abi-0.3.0/stream-lag.wasm");
    let tmp = tempfile::tempdir().unwrap();
    let side = tmp.path().join("stream-lag.toml");
    std::fs::write(
        &side,
        "streams = 'jobs'
",
    )
    .unwrap();
    let mut check = lookout_cmd(tmp.path());
    check.arg("check").arg(&old).arg("--config").arg(&side);
    let (status, out, err) = run_to_end(check, Duration::from_secs(60));
    assert!(status.success(), "{out}{err}");
    assert!(out.contains("built for lookout:watcher@0.3.0"), "{out}");
    assert!(out.contains("runs probes: XINFO GROUPS jobs"), "{out}");

    let redis = Redis::start(&[]);
    let bus = Redis::start(&[]);
    redis_cmd(&redis, &["XADD", "jobs", "*", "n", "0"]);
    redis_cmd(&redis, &["XGROUP", "CREATE", "jobs", "workers", "$"]);
    let plugins = plugins_with(tmp.path(), &["latency"], &["ticker"]);
    std::fs::copy(&old, plugins.join("stream-lag.wasm")).unwrap();
    let mut lookout = daemon_with_plugins(
        tmp.path(),
        &redis,
        &bus,
        &plugins,
        "[watchers.stream-lag]\nstreams = 'jobs'\nmax_lag = 5\ngrowing_polls = 0\n",
    );
    add_ten_entries(&redis);
    let over = wait_event(&bus, "stream-lag", "the 0.3.0 watcher's lag", |e| {
        e["fields"]["stream"] == "jobs" && e["fields"]["state"] == "entered"
    });
    assert_eq!(over["level"], "warn");
    assert_eq!(over["fields"]["lag"], 10);
    assert!(over.get("condition").is_none(), "{over}");
    // The 0.4.0 watchers beside it run too.
    wait_event(&bus, "latency", "the latency watcher's first word", |e| {
        e["fields"]["state"] == "entered"
    });
    wait_event(&bus, "ticker", "a tick", |_| true);
    assert!(lookout.terminate().success());
}

/// A watcher's `configure` narrows its needs: probe-echo told to use only
/// CLIENT LIST and XINFO GROUPS gets only those, the server is sent no
/// other probe, `lookout check` says so; a reload with other settings
/// narrows them again.
#[test]
fn configure_narrows_the_probes_the_host_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let side = tmp.path().join("probe-echo.toml");
    std::fs::write(
        &side,
        "streams = 'jobs'\nonly = 'client-list, xinfo-groups'\n",
    )
    .unwrap();
    let mut check = lookout_cmd(tmp.path());
    check
        .arg("check")
        .arg(crate::support::fixture("probe-echo"))
        .arg("--config")
        .arg(&side);
    let (status, out, err) = run_to_end(check, Duration::from_secs(60));
    assert!(status.success(), "{out}{err}");
    assert!(
        out.contains("runs probes: XINFO GROUPS jobs, CLIENT LIST")
            || out.contains("runs probes: CLIENT LIST, XINFO GROUPS jobs"),
        "{out}"
    );

    let redis = Redis::start(&[]);
    redis_cmd(&redis, &["XADD", "jobs", "*", "n", "0"]);
    redis_cmd(&redis, &["XGROUP", "CREATE", "jobs", "workers", "0"]);
    let bus = Redis::start(&[]);
    let plugins = plugins_with(tmp.path(), &[], &["probe-echo"]);
    let mut lookout = daemon_with_plugins(
        tmp.path(),
        &redis,
        &bus,
        &plugins,
        "[watchers.probe-echo]\nstreams = 'jobs'\nonly = 'client-list, xinfo-groups'\n",
    );
    wait_event(&bus, "probe-echo", "a CLIENT LIST reading", |e| {
        e["fields"]["kind"] == "client-list"
    });
    polls_pass(&redis, 3);
    let kinds: Vec<Value> = events_of(&bus, "probe-echo")
        .iter()
        .map(|e| e["fields"]["kind"].clone())
        .collect();
    assert!(
        kinds
            .iter()
            .all(|k| k == "client-list" || k == "xinfo-groups"),
        "{kinds:?}"
    );
    assert!(kinds.iter().any(|k| k == "xinfo-groups"), "{kinds:?}");
    let stats: String = redis::cmd("INFO")
        .arg("commandstats")
        .query(&mut redis.conn())
        .unwrap();
    assert!(
        !stats.contains("cmdstat_cluster|info") && !stats.contains("cmdstat_latency|latest"),
        "{stats}"
    );

    // Other settings, reloaded: narrowed to CLUSTER INFO alone.
    bus_config(
        tmp.path(),
        &bus,
        "",
        "[watchers.probe-echo]\nstreams = 'jobs'\nonly = 'cluster-info'\n",
    );
    wait_event(&bus, "probe-echo", "a CLUSTER INFO reading", |e| {
        e["fields"]["kind"] == "cluster-info"
    });
    assert!(lookout.terminate().success());
}

/// stream-lag and latency, with every other bundled watcher loaded: lag
/// over the limit is reported once and its recovery once; latency says
/// once that the monitor is off, then reports a real spike.
#[test]
fn stream_lag_and_latency_see_their_conditions() {
    let redis = Redis::start(&[
        "--enable-debug-command",
        "yes",
        "--latency-monitor-threshold",
        "0",
    ]);
    let bus = Redis::start(&[]);
    let tmp = tempfile::tempdir().unwrap();
    redis_cmd(&redis, &["XADD", "jobs", "*", "n", "0"]);
    redis_cmd(&redis, &["XGROUP", "CREATE", "jobs", "workers", "$"]);
    let mut lookout = daemon_with_all_watchers(
        tmp.path(),
        &redis,
        &bus,
        "[watchers.stream-lag]\nstreams = 'jobs, missing'\nmax_lag = 5\ngrowing_polls = 0\n\
         [watchers.latency]\nthreshold_ms = 20\n",
    );
    let off = wait_event(&bus, "latency", "latency saying it sees nothing", |e| {
        e["fields"]["state"] == "entered"
    });
    assert!(
        off["msg"]
            .as_str()
            .unwrap()
            .contains("latency-monitor-threshold is 0"),
        "{off}"
    );
    let missing = wait_event(&bus, "stream-lag", "the missing stream reported", |e| {
        e["fields"]["stream"] == "missing"
    });
    assert!(
        missing["msg"].as_str().unwrap().contains("no such key"),
        "{missing}"
    );

    add_ten_entries(&redis);
    let over = wait_event(&bus, "stream-lag", "lag over max_lag", |e| {
        e["fields"]["stream"] == "jobs" && e["fields"]["state"] == "entered"
    });
    assert_eq!(over["level"], "warn");
    assert_eq!(over["fields"]["lag"], 10);
    assert_eq!(over["fields"]["measure"], "lag");
    redis_cmd(
        &redis,
        &[
            "XREADGROUP",
            "GROUP",
            "workers",
            "c1",
            "STREAMS",
            "jobs",
            ">",
        ],
    );
    let back = wait_event(&bus, "stream-lag", "lag back under max_lag", |e| {
        e["fields"]["stream"] == "jobs" && e["fields"]["state"] == "left"
    });
    assert_eq!(back["level"], "info");
    assert_eq!(back["fields"]["lag"], 0);

    redis_cmd(
        &redis,
        &["CONFIG", "SET", "latency-monitor-threshold", "10"],
    );
    redis_cmd(&redis, &["DEBUG", "SLEEP", "0.05"]);
    let spike = wait_event(&bus, "latency", "a latency spike", |e| e["level"] == "warn");
    assert_eq!(spike["fields"]["event"], "command");
    assert!(
        spike["fields"]["latest_ms"].as_i64().unwrap() >= 50,
        "{spike}"
    );

    let lag_events: Vec<Value> = events_of(&bus, "stream-lag")
        .into_iter()
        .filter(|e| e["fields"]["stream"] == "jobs")
        .collect();
    assert_eq!(
        lag_events.len(),
        2,
        "one event per transition: {lag_events:?}"
    );
    assert!(lookout.terminate().success());
}

/// Calls of each command the server refused or failed (`INFO
/// commandstats`: `rejected_calls` + `failed_calls`).
fn failures(redis: &Redis) -> std::collections::HashMap<String, u64> {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query(&mut redis.conn())
        .unwrap();
    info.lines()
        .filter_map(|l| l.strip_prefix("cmdstat_"))
        .filter_map(|l| {
            let (command, stats) = l.split_once(':')?;
            let count = |name: &str| -> u64 {
                stats
                    .split(',')
                    .find_map(|kv| kv.strip_prefix(name))
                    .and_then(|v| v.trim().parse().ok())
                    .unwrap_or(0)
            };
            Some((
                command.to_owned(),
                count("rejected_calls=") + count("failed_calls="),
            ))
        })
        .collect()
}

/// The daemon with every bundled watcher, polling `redis` every 0.1 s as
/// the user `lookout` with ACL `rules` (besides `on >pw -@all`), stream-lag
/// watching `streams`, publishing on `bus`.
fn daemon_as_user(tmp: &Path, redis: &Redis, bus: &Redis, rules: &str, streams: &str) -> Lookout {
    let mut acl = vec!["ACL", "SETUSER", "lookout", "on", ">pw", "-@all"];
    acl.extend(rules.split_whitespace());
    redis_cmd(redis, &acl);
    let plugins = plugins_with(tmp, &ALL_WATCHERS, &[]);
    let url = redis.url().replace("redis://", "redis://lookout:pw@");
    let config = tmp.join("lookout.toml");
    std::fs::write(
        &config,
        format!(
            "redis_url = '{url}'\n[publish]\nurl = '{}'\n\
             [watchers.stream-lag]\nstreams = '{streams}'\n",
            bus.url()
        ),
    )
    .unwrap();
    let mut cmd = lookout_cmd(tmp);
    // A poll's reads end at its interval: 0.25 s leaves a loaded machine
    // time to read every reply, so a refusal is learned the first time.
    cmd.args(["run", "--poll-interval", "0.25", "--config"])
        .arg(&config)
        .arg("--plugins")
        .arg(&plugins);
    Lookout::spawn(cmd)
}

/// A probe refused for the user (NOPERM) reaches its watcher as
/// unavailable with the fix, once, and is not asked again every poll;
/// CLUSTER INFO is not sent to a server without cluster support. So the
/// server's own error statistics do not grow with every poll (only
/// the daemon's commands are counted: the test's own connections add
/// errors of their own).
#[test]
fn refused_and_pointless_probes_are_not_repeated_every_poll() {
    let redis = Redis::start(&[]);
    let bus = Redis::start(&[]);
    redis_cmd(&redis, &["XADD", "jobs", "*", "n", "0"]);
    let tmp = tempfile::tempdir().unwrap();
    let mut lookout = daemon_as_user(
        tmp.path(),
        &redis,
        &bus,
        "+ping +info +slowlog|get +client|setname +client|info +latency|latest +client|list ~*",
        "jobs",
    );
    let refused = wait_event(&bus, "stream-lag", "XINFO refused for the user", |e| {
        e["fields"]["state"] == "entered"
    });
    let msg = refused["msg"].as_str().unwrap();
    assert!(msg.contains("NOPERM") && msg.contains("grant it"), "{msg}");
    polls_pass(&redis, 20);
    let failed = failures(&redis);
    for command in ["xinfo|groups", "config|get", "cluster|info"] {
        assert!(
            failed.get(command).copied().unwrap_or(0) <= 1,
            "{command} refused or failed again and again over 20 polls: {failed:?}"
        );
    }
    assert_eq!(
        failed.get("latency|latest").copied().unwrap_or(0),
        0,
        "{failed:?}"
    );
    let stream_lag = events_of(&bus, "stream-lag");
    assert_eq!(stream_lag.len(), 1, "said once: {stream_lag:?}");
    assert!(lookout.terminate().success());
}

/// A listed stream that does not exist, and one whose key holds a string,
/// reach stream-lag as unavailable once each; while they stay so, the
/// host asks their TYPE (which cannot fail) instead of XINFO (an error
/// reply counted in the server's error statistics every poll). Once they
/// hold streams, XINFO reads them again and the watcher says so. The
/// daemon runs as the ACL user of docs/tls.md with the probe rules.
#[test]
fn a_missing_stream_key_does_not_fail_a_command_every_poll() {
    let redis = Redis::start(&[]);
    let bus = Redis::start(&[]);
    redis_cmd(&redis, &["SET", "text", "not a stream"]);
    let tmp = tempfile::tempdir().unwrap();
    // The ACL user of docs/tls.md, with the probe rules, for these two streams.
    let mut lookout = daemon_as_user(
        tmp.path(),
        &redis,
        &bus,
        "+ping +info +slowlog|get +client|setname +client|info \
         +latency|latest +xinfo|groups +xinfo|stream +type +client|list +cluster|info \
         %R~missing %R~text",
        "missing, text",
    );
    lookout.wait_started();
    for (stream, reason) in [("missing", "no such key"), ("text", "WRONGTYPE")] {
        let event = wait_event(&bus, "stream-lag", "the unreadable stream reported", |e| {
            e["fields"]["stream"] == stream && e["fields"]["state"] == "entered"
        });
        let msg = event["msg"].as_str().unwrap();
        assert!(msg.contains(reason), "{msg}");
    }
    let failed_before = failures(&redis).get("xinfo|groups").copied().unwrap_or(0);
    let types_before = calls(&redis, "type");
    polls_pass(&redis, 20);
    let failed = failures(&redis).get("xinfo|groups").copied().unwrap_or(0) - failed_before;
    assert!(
        failed <= 2,
        "XINFO GROUPS failed {failed} times in 20 polls"
    );
    assert!(
        calls(&redis, "type") - types_before >= 30,
        "TYPE asked for both keys every poll"
    );

    redis_cmd(&redis, &["XADD", "missing", "*", "n", "0"]);
    redis_cmd(&redis, &["DEL", "text"]);
    redis_cmd(&redis, &["XADD", "text", "*", "n", "0"]);
    for stream in ["missing", "text"] {
        wait_event(&bus, "stream-lag", "the stream readable again", |e| {
            e["fields"]["stream"] == stream && e["fields"]["state"] == "left"
        });
    }
    let all = events_of(&bus, "stream-lag");
    assert_eq!(all.len(), 4, "one event per transition: {all:?}");
    assert!(lookout.terminate().success());
}

/// stream-lag over a discovered Redis Cluster: each node's target asks
/// XINFO GROUPS, but only the master serving the stream's slot reads it;
/// the other nodes' MOVED replies give no reading (no "cannot be read"),
/// so the lag is reported once, by that master's target.
#[test]
fn stream_lag_in_a_cluster_reads_each_stream_on_its_node() {
    let cluster = crate::discovery::start_cluster();
    let bus = Redis::start(&[]);
    let owner = cluster
        .nodes
        .iter()
        .find(|node| {
            redis::cmd("XADD")
                .arg("jobs")
                .arg("*")
                .arg("n")
                .arg("0")
                .exec(&mut node.conn())
                .is_ok()
        })
        .expect("a master serves the key");
    redis_cmd(owner, &["XGROUP", "CREATE", "jobs", "workers", "$"]);
    let tmp = tempfile::tempdir().unwrap();
    let plugins = plugins_with(tmp.path(), &ALL_WATCHERS, &[]);
    let config = crate::support::bus_config(
        tmp.path(),
        &bus,
        "",
        &format!(
            "[[discover]]\ncluster = '{}'\nrefresh_s = 1\n\
             [watchers.stream-lag]\nstreams = 'jobs'\nmax_lag = 5\ngrowing_polls = 0\n",
            cluster.urls()[0]
        ),
    );
    let mut lookout = crate::support::run_config(tmp.path(), &plugins, &config, &[]);
    lookout.wait_started();
    for node in &cluster.nodes {
        polls_pass(node, 2);
    }
    add_ten_entries(owner);
    let over = wait_event(&bus, "stream-lag", "lag over max_lag", |e| {
        e["fields"]["condition"] == "over_max_lag"
    });
    assert_eq!(
        over["fields"]["instance"],
        format!("127.0.0.1:{}", owner.port)
    );
    assert_eq!(over["fields"]["lag"], 10);
    for node in &cluster.nodes {
        polls_pass(node, 2);
    }
    let all = events_of(&bus, "stream-lag");
    assert_eq!(all.len(), 1, "only the serving master reports: {all:?}");
    assert!(lookout.terminate().success());
}

/// Adds ten entries to `jobs` in one MULTI/EXEC, so no poll sees a lag
/// between the old one and ten more.
fn add_ten_entries(redis: &Redis) {
    let mut adds = redis::pipe();
    adds.atomic();
    for n in 1..=10 {
        adds.cmd("XADD")
            .arg("jobs")
            .arg("*")
            .arg("n")
            .arg(n)
            .ignore();
    }
    adds.exec(&mut redis.conn()).expect("XADD ten entries");
}

/// Calls of `command` on `redis` so far (`INFO commandstats`).
fn calls(redis: &Redis, command: &str) -> u64 {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query(&mut redis.conn())
        .unwrap();
    let prefix = format!("cmdstat_{command}:calls=");
    info.lines()
        .find_map(|l| l.strip_prefix(prefix.as_str()))
        .map_or(0, |rest| rest.split(',').next().unwrap().parse().unwrap())
}

/// Two watchers declaring the same probe share one run of it per poll:
/// LATENCY LATEST is sent as often as PING, not twice as often.
#[test]
fn a_probe_two_watchers_declare_runs_once_per_poll() {
    let redis = Redis::start(&["--latency-monitor-threshold", "100"]);
    let bus = Redis::start(&[]);
    let tmp = tempfile::tempdir().unwrap();
    let plugins = plugins_with(tmp.path(), &["latency"], &[]);
    std::fs::copy(
        plugins.join("latency.wasm"),
        plugins.join("latency-too.wasm"),
    )
    .unwrap();
    let mut lookout = daemon_with_plugins(tmp.path(), &redis, &bus, &plugins, "");
    polls_pass(&redis, 3);
    let (pings, latency) = (
        crate::support::pings(&redis),
        calls(&redis, "latency|latest"),
    );
    polls_pass(&redis, 10);
    let polls = crate::support::pings(&redis) - pings;
    let asked = calls(&redis, "latency|latest") - latency;
    assert!(
        asked <= polls + 1 && asked + 2 >= polls,
        "LATENCY LATEST {asked} times in {polls} polls"
    );
    assert!(lookout.terminate().success());
}

/// `lookout record --watcher --only-declared` records the probes the
/// watcher declares, with the stream keys its settings name, and only the
/// INFO it reads; `lookout test` replays them.
#[test]
fn record_keeps_a_watchers_probes_and_only_its_info() {
    let redis = Redis::start(&[]);
    redis_cmd(&redis, &["XADD", "jobs", "*", "n", "1"]);
    redis_cmd(&redis, &["XGROUP", "CREATE", "jobs", "workers", "0"]);
    let tmp = tempfile::tempdir().unwrap();
    let wasm = crate::support::plugins_dir().join("stream-lag.wasm");
    let config = tmp.path().join("lookout.toml");
    std::fs::write(&config, "[watchers.stream-lag]\nstreams = 'jobs gone'\n").unwrap();
    let mut record = lookout_cmd(tmp.path());
    record
        .args([
            "record",
            "--redis",
            &redis.url(),
            "--polls",
            "2",
            "--every",
            "0.1",
        ])
        .arg("--watcher")
        .arg(&wasm)
        .arg("--only-declared")
        .arg("--lookout-config")
        .arg(&config);
    let (status, out, err) = run_to_end(record, Duration::from_secs(60));
    assert!(status.success(), "{err}");
    let lines: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    let first = &lines[0];
    let names: Vec<&str> = first["info"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f[1].as_str().unwrap())
        .collect();
    assert_eq!(names, ["run_id"], "only what stream-lag reads: {first}");
    let probes = first["probes"].as_array().unwrap();
    assert_eq!(probes.len(), 2, "{first}");
    assert_eq!(probes[0][0]["probe"], "xinfo-groups");
    assert_eq!(probes[0][0]["key"], "gone");
    assert!(
        probes[0][1]["unavailable"]
            .as_str()
            .unwrap()
            .contains("no such key")
    );
    assert_eq!(probes[1][0]["key"], "jobs");
    assert_eq!(probes[1][1]["stream-groups"][0]["name"], "workers");
    assert_eq!(probes[1][1]["stream-groups"][0]["lag"], 1);

    let snapshots = tmp.path().join("snapshots.jsonl");
    std::fs::write(&snapshots, &out).unwrap();
    let mut test = lookout_cmd(tmp.path());
    test.arg("test")
        .arg(&wasm)
        .arg("--snapshots")
        .arg(&snapshots)
        .args(["--set", "streams=jobs,gone"]);
    let (status, out, err) = run_to_end(test, Duration::from_secs(60));
    assert!(status.success(), "{err}");
    let events: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(events.len(), 1, "{out}");
    assert_eq!(events[0]["fields"]["stream"], "gone");
}

/// Every kind of declared probe reaches a watcher from a real Redis, typed:
/// the `probe-echo` fixture declares all six and reports what it got.
#[test]
fn every_probe_kind_reaches_the_watcher() {
    let redis = Redis::start(&[
        "--latency-monitor-threshold",
        "10",
        "--enable-debug-command",
        "yes",
    ]);
    redis_cmd(&redis, &["DEBUG", "SLEEP", "0.02"]);
    for n in 0..3 {
        redis_cmd(&redis, &["XADD", "jobs", "*", "n", &n.to_string()]);
    }
    redis_cmd(&redis, &["XGROUP", "CREATE", "jobs", "workers", "0"]);
    // One error reply, for INFO errorstats.
    let _ = redis::cmd("NOSUCHCOMMAND").exec(&mut redis.conn());
    let bus = Redis::start(&[]);
    let tmp = tempfile::tempdir().unwrap();
    let plugins = plugins_with(tmp.path(), &[], &["probe-echo"]);
    let mut lookout = daemon_with_plugins(
        tmp.path(),
        &redis,
        &bus,
        &plugins,
        "[watchers.probe-echo]\nstreams = 'jobs gone'\n",
    );
    let events = crate::support::wait_for("a poll's readings", Duration::from_secs(30), || {
        let all = events_of(&bus, "probe-echo");
        (all.len() >= 8).then_some(all)
    });
    let reading = |kind: &str, key: &str| -> Value {
        events
            .iter()
            .find(|e| e["fields"]["kind"] == kind && e["fields"]["key"] == key)
            .unwrap_or_else(|| panic!("no {kind} {key} reading in {events:?}"))["fields"]
            .clone()
    };
    let detail = |r: &Value| r["detail"].as_str().unwrap().to_owned();

    let latency = reading("latency-latest", "");
    assert_eq!(latency["ok"], true, "{latency}");
    assert_eq!(detail(&latency), "command");
    let errors = reading("info-section", "");
    assert_eq!(errors["ok"], true, "{errors}");
    assert!(
        detail(&errors).starts_with("errorstat_ERR=count="),
        "{errors}"
    );
    let groups = reading("xinfo-groups", "jobs");
    assert_eq!(groups["count"], 1);
    assert_eq!(detail(&groups), "workers lag=Some(3) pending=0");
    let gone = reading("xinfo-groups", "gone");
    assert_eq!(gone["ok"], false);
    assert!(detail(&gone).contains("no such key"), "{gone}");
    let stream = reading("xinfo-stream", "jobs");
    assert_eq!(stream["count"], 3, "{stream}");
    assert!(detail(&stream).starts_with("groups=1 last="), "{stream}");
    assert_eq!(reading("xinfo-stream", "gone")["ok"], false);
    let clients = reading("client-list", "");
    assert_eq!(clients["ok"], true, "{clients}");
    // The host's own connection, named lookout, is left out of the reading.
    assert_eq!(detail(&clients), "", "{clients}");
    let cluster = reading("cluster-info", "");
    assert_eq!(cluster["ok"], false);
    assert!(detail(&cluster).contains("cluster support"), "{cluster}");
    assert!(lookout.terminate().success());
}

/// CLIENT LIST is skipped while INFO counts more clients than
/// `limits.max_clients_listed`: the watcher gets the reading as
/// unavailable, naming the key, and the server gets no CLIENT LIST; once
/// the clients are gone it is read again.
#[test]
fn client_list_is_skipped_over_max_clients_listed() {
    let redis = Redis::start(&[]);
    let bus = Redis::start(&[]);
    let tmp = tempfile::tempdir().unwrap();
    let plugins = plugins_with(tmp.path(), &[], &["probe-echo"]);
    let crowd: Vec<redis::Connection> = (0..12).map(|_| redis.conn()).collect();
    let config = bus_config(
        tmp.path(),
        &bus,
        "",
        "[limits]\nmax_clients_listed = 8\n[watchers.probe-echo]\nstreams = 'jobs'\n",
    );
    let mut lookout = run_lookout(
        tmp.path(),
        &redis.url(),
        &plugins,
        &["--config", config.to_str().unwrap()],
    );
    lookout.wait_started();
    let client_list_calls = || {
        let info: String = redis::cmd("INFO")
            .arg("commandstats")
            .query(&mut redis.conn())
            .unwrap();
        info.lines()
            .find_map(|l| l.strip_prefix("cmdstat_client|list:calls="))
            .map_or(0u64, |rest| {
                rest.split(',').next().unwrap().parse().unwrap()
            })
    };
    let skipped = |e: &Value| {
        e["fields"]["kind"] == "client-list"
            && e["fields"]["ok"] == false
            && e["fields"]["detail"]
                .as_str()
                .is_some_and(|d| d.contains("limits.max_clients_listed"))
    };
    crate::support::wait_for(
        "CLIENT LIST skipped over the limit",
        Duration::from_secs(30),
        || {
            events_of(&bus, "probe-echo")
                .iter()
                .any(skipped)
                .then_some(())
        },
    );
    // From the first poll that knew the count on, none is sent.
    let calls = client_list_calls();
    let seen = events_of(&bus, "probe-echo").len();
    crate::support::wait_for("five more polls", Duration::from_secs(30), || {
        (events_of(&bus, "probe-echo").len() >= seen + 5 * 6).then_some(())
    });
    assert_eq!(
        client_list_calls(),
        calls,
        "CLIENT LIST sent over the limit"
    );
    drop(crowd);
    crate::support::wait_for(
        "CLIENT LIST read again once the crowd is gone",
        Duration::from_secs(30),
        || {
            events_of(&bus, "probe-echo")
                .iter()
                .any(|e| e["fields"]["kind"] == "client-list" && e["fields"]["ok"] == true)
                .then_some(())
        },
    );
    assert!(lookout.terminate().success());
}

/// Twenty targets whose snapshots (a CLIENT LIST of 300 clients each,
/// about 400 KiB) are far larger together than a 1 MiB
/// `limits.snapshots_mib`: they take turns, and every target keeps
/// polling.
#[test]
fn a_small_snapshot_budget_makes_targets_take_turns_not_stall() {
    let redis = Redis::start(&["--databases", "32"]);
    let bus = Redis::start(&[]);
    let _crowd: Vec<redis::Connection> = (0..300).map(|_| redis.conn()).collect();
    let tmp = tempfile::tempdir().unwrap();
    let plugins = plugins_with(tmp.path(), &[], &["probe-echo", "ticker"]);
    let mut targets = String::new();
    for db in 0..20 {
        targets.push_str(&format!(
            "[[targets]]\nurl = '{}/{db}'\nlabels = {{ db = '{db}' }}\n",
            redis.url()
        ));
    }
    let config = bus_config(
        tmp.path(),
        &bus,
        &targets,
        "[limits]\nsnapshots_mib = 1\ncall_deadline_ms = 2000\n\
         [watchers.probe-echo]\nstreams = 'jobs'\n",
    );
    let mut lookout = crate::support::run_config(tmp.path(), &plugins, &config, &[]);
    lookout.wait_started();
    crate::support::wait_for(
        "three ticks from each of the twenty targets",
        // Twenty targets taking turns for 1 MiB: minutes on a loaded
        // machine, seconds on an idle one.
        Duration::from_secs(240),
        || {
            let ticks = events_of(&bus, "ticker");
            (0..20)
                .all(|db| {
                    ticks
                        .iter()
                        .filter(|e| e["fields"]["labels"]["db"] == db.to_string().as_str())
                        .count()
                        >= 3
                })
                .then_some(())
        },
    );
    // The crowd, without the daemon's own connections (left out).
    crate::support::wait_for(
        "the large readings to reach the watchers",
        Duration::from_secs(60),
        || {
            events_of(&bus, "probe-echo")
                .iter()
                .any(|e| {
                    e["fields"]["kind"] == "client-list"
                        && e["fields"]["count"].as_u64() >= Some(300)
                })
                .then_some(())
        },
    );
    assert!(lookout.terminate().success());
}

/// One CLIENT LIST as the test sees it: each client's `key=value` fields.
fn client_list(conn: &mut redis::Connection) -> Vec<std::collections::HashMap<String, String>> {
    let text: String = redis::cmd("CLIENT").arg("LIST").query(conn).unwrap();
    text.lines()
        .map(|line| {
            line.split_whitespace()
                .filter_map(|kv| kv.split_once('='))
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect()
        })
        .collect()
}

/// A CLIENT LIST reading leaves out the process's own connections, known
/// by client id: the daemon's watcher sees neither the prober's connection
/// nor, on a shared server, the bus's, but sees another client named
/// `lookout`; `lookout record` leaves out its own connection and keeps the
/// daemon's, which are another process's.
#[test]
fn client_list_leaves_out_this_process_own_connections() {
    let redis = Redis::start(&[]);
    let tmp = tempfile::tempdir().unwrap();
    let plugins = plugins_with(tmp.path(), &[], &["probe-echo"]);
    let tables = "[watchers.probe-echo]\nstreams = 'jobs'\nonly = 'client-list'\n";
    // The bus on the watched server: its connection is the daemon's too.
    let mut lookout = daemon_with_plugins(tmp.path(), &redis, &redis, &plugins, tables);
    let is_list = |e: &Value| e["fields"]["kind"] == "client-list" && e["fields"]["ok"] == true;
    wait_event(&redis, "probe-echo", "a first CLIENT LIST reading", is_list);

    let mut impostor = redis.conn();
    redis::cmd("CLIENT")
        .arg("SETNAME")
        .arg("lookout")
        .exec(&mut impostor)
        .unwrap();
    let impostor_id: u64 = redis::cmd("CLIENT").arg("ID").query(&mut impostor).unwrap();
    let impostor_id = impostor_id.to_string();
    let mut conn = redis.conn();
    // The probe-echo reading: how many clients, and the address of the
    // first named lookout (the daemon's connections came before the
    // impostor's). Its count is every client the test lists but the
    // daemon's (a stream read of the test's may add one for a moment).
    let (daemon, reading) = crate::support::wait_for(
        "a reading with the impostor and without the daemon",
        Duration::from_secs(30),
        || {
            let listed = client_list(&mut conn);
            let addr = listed.iter().find(|c| c["id"] == impostor_id)?["addr"].clone();
            let daemon: Vec<String> = listed
                .iter()
                .filter(|c| c["name"] == "lookout" && c["id"] != impostor_id)
                .map(|c| c["id"].clone())
                .collect();
            let others = listed.len() - daemon.len();
            events_of(&redis, "probe-echo")
                .into_iter()
                .rev()
                .find(|e| {
                    is_list(e)
                        && e["fields"]["detail"]
                            .as_str()
                            .is_some_and(|d| d.starts_with(&format!("{addr} ")))
                        && e["fields"]["count"].as_u64() == u64::try_from(others).ok()
                })
                .map(|e| (daemon, e))
        },
    );
    assert!(
        daemon.len() >= 2,
        "the prober's and the bus's connections are listed to others: {daemon:?} {reading}"
    );

    // `lookout record` of the same server: the daemon's connections are
    // another process's and stay; its own is left out.
    let config = tmp.path().join("record.toml");
    std::fs::write(&config, tables).unwrap();
    let mut record = lookout_cmd(tmp.path());
    record
        .args(["record", "--redis", &redis.url(), "--polls", "1"])
        .arg("--watcher")
        .arg(crate::support::fixture("probe-echo"))
        .arg("--lookout-config")
        .arg(&config);
    let (status, out, err) = run_to_end(record, Duration::from_secs(60));
    assert!(status.success(), "{err}");
    let line: Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
    let clients = line["probes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p[0]["probe"] == "client-list")
        .unwrap_or_else(|| panic!("no CLIENT LIST in {line}"))[1]["clients"]
        .as_array()
        .unwrap_or_else(|| panic!("no clients in {line}"))
        .clone();
    let field = |client: &Value, key: &str| -> String {
        client
            .as_array()
            .unwrap()
            .iter()
            .find(|kv| kv[0] == key)
            .map_or_else(String::new, |kv| kv[1].as_str().unwrap().to_owned())
    };
    let mut named: Vec<String> = clients
        .iter()
        .filter(|c| field(c, "name") == "lookout")
        .map(|c| field(c, "id"))
        .collect();
    named.sort();
    let mut expected: Vec<String> = daemon.iter().cloned().chain([impostor_id]).collect();
    expected.sort();
    assert_eq!(
        named, expected,
        "the daemon's and the impostor's, not the recorder's own: {clients:?}"
    );
    assert!(lookout.terminate().success());
}

//! A fleet split across processes and found by discovery: `--shard I/N`,
//! `lookout targets`, `[[discover]]` entries followed while running.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde_json::Value;

use crate::support::*;

/// `[[targets]]` tables for `count` targets spread over `servers` by
/// database number, each labelled `t = "tNN"`.
fn many_targets(servers: &[Redis], count: usize) -> String {
    (0..count)
        .map(|i| {
            let server = &servers[i % servers.len()];
            let db = i / servers.len();
            format!(
                "[[targets]]\nurl = 'redis://127.0.0.1:{}/{db}'\nlabels = {{ t = 't{i:02}' }}\n",
                server.port
            )
        })
        .collect()
}

/// `lookout run` of `config` every 0.2 s with `plugins` and `args`.
fn run_config(
    tmp: &std::path::Path,
    plugins: &std::path::Path,
    config: &std::path::Path,
    args: &[&str],
) -> Lookout {
    let mut cmd = lookout_cmd(tmp);
    cmd.args(["run", "--poll-interval", "0.2", "--plugins"])
        .arg(plugins)
        .arg("--config")
        .arg(config)
        .args(args);
    Lookout::spawn(cmd)
}

/// The `t` label of each ticker envelope, with the pids that sent it.
fn senders(envelopes: &[Value]) -> BTreeMap<String, BTreeSet<u64>> {
    let mut out: BTreeMap<String, BTreeSet<u64>> = BTreeMap::new();
    for e in by_target(envelopes, "ticker") {
        if let Some(t) = e["fields"]["labels"]["t"].as_str() {
            out.entry(t.to_owned())
                .or_default()
                .insert(e["pid"].as_u64().unwrap());
        }
    }
    out
}

/// `lookout targets --json` for `config` and `shard`: target key and
/// whether that shard watches it.
fn listed(tmp: &std::path::Path, config: &std::path::Path, shard: &str) -> BTreeMap<String, bool> {
    let mut cmd = lookout_cmd(tmp);
    cmd.args(["targets", "--json", "--shard", shard, "--config"])
        .arg(config);
    let (status, stdout, stderr) = run_to_end(cmd, Duration::from_secs(30));
    assert!(status.success(), "{stderr}");
    stdout
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            (
                v["labels"]["t"].as_str().unwrap().to_owned(),
                v["watched"].as_bool().unwrap(),
            )
        })
        .collect()
}

/// Two processes, `--shard 0/2` and `--shard 1/2`, over 20 targets on two
/// servers: every target is watched, each by exactly one process, the one
/// `lookout targets` says owns it.
#[test]
fn two_shards_watch_each_target_exactly_once() {
    let servers: Vec<Redis> = (0..2)
        .map(|_| Redis::start(&["--databases", "16"]))
        .collect();
    let bus = Redis::start(&[]);
    let tmp = tempfile::tempdir().unwrap();
    let plugins = plugins_with(tmp.path(), &[], &["ticker"]);
    let config = bus_config(tmp.path(), &bus, "", &many_targets(&servers, 20));
    let mut shards: Vec<Lookout> = ["0/2", "1/2"]
        .iter()
        .map(|s| run_config(tmp.path(), &plugins, &config, &["--shard", s]))
        .collect();
    for s in &shards {
        s.wait_started();
    }
    let seen = wait_for(
        "three ticks from each of the 20 targets",
        Duration::from_secs(60),
        || {
            let all = bus.stream(STREAM);
            let ticks = by_target(&all, "ticker");
            let per_t = |t: &str| {
                ticks
                    .iter()
                    .filter(|e| e["fields"]["labels"]["t"] == t)
                    .count()
            };
            (0..20)
                .all(|i| per_t(&format!("t{i:02}")) >= 3)
                .then(|| senders(&all))
        },
    );
    let pids: Vec<u64> = shards.iter_mut().map(|s| u64::from(s.pid())).collect();
    for s in &mut shards {
        assert!(s.terminate().success());
    }
    let all = senders(&bus.stream(STREAM));
    assert_eq!(seen.len(), 20, "{seen:?}");
    for (t, from) in &all {
        assert_eq!(from.len(), 1, "{t} watched by {from:?}");
    }
    let zero = listed(tmp.path(), &config, "0/2");
    let one = listed(tmp.path(), &config, "1/2");
    assert_eq!(zero.len(), 20);
    for (t, from) in &all {
        let owner = if zero[t] { pids[0] } else { pids[1] };
        assert_ne!(zero[t], one[t], "{t}: one shard owns it");
        assert_eq!(from.iter().next(), Some(&owner), "{t}");
    }
    // Both shards have work: the hash spreads 20 keys over two.
    assert!(zero.values().any(|w| *w) && one.values().any(|w| *w));
}

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

/// Host events whose message starts with `prefix`.
fn host_events<'a>(envelopes: &'a [Value], prefix: &str) -> Vec<&'a Value> {
    envelopes
        .iter()
        .filter(|e| {
            e["target"] == "lookout" && e["msg"].as_str().is_some_and(|m| m.starts_with(prefix))
        })
        .collect()
}

/// Instances (`127.0.0.1:PORT`) the ticker reported from.
fn ticking(envelopes: &[Value]) -> BTreeSet<String> {
    by_target(envelopes, "ticker")
        .iter()
        .filter_map(|e| e["fields"]["instance"].as_str().map(str::to_owned))
        .collect()
}

fn instance(port: u16) -> String {
    format!("127.0.0.1:{port}")
}

/// A 6-node cluster found from one seed: all six watched with their role
/// and the entry's labels; a replica killed gives an unreachable event for
/// that node only and is dropped once the cluster flags it; a node added
/// with CLUSTER MEET is watched at the next refreshes.
#[test]
fn a_cluster_is_discovered_and_followed() {
    let mut cluster = crate::discovery::start_cluster();
    let bus = Redis::start(&[]);
    let tmp = tempfile::tempdir().unwrap();
    let plugins = plugins_with(tmp.path(), &[], &["ticker"]);
    let tables = format!(
        "[[discover]]\ncluster = '{}'\nrefresh_s = 1\nlabels = {{ cluster = 'c1' }}\n",
        cluster.urls()[0]
    );
    let config = bus_config(tmp.path(), &bus, "", &tables);
    let mut lookout = run_config(tmp.path(), &plugins, &config, &[]);
    lookout.wait_started();
    let all: BTreeSet<String> = cluster.ports().into_iter().map(instance).collect();
    let seen = wait_for("ticks from all six nodes", Duration::from_secs(30), || {
        let envelopes = bus.stream(STREAM);
        (ticking(&envelopes) == all).then_some(envelopes)
    });
    let added = host_events(&seen, "target added");
    assert_eq!(added.len(), 6, "{added:?}");
    let roles: Vec<&str> = added
        .iter()
        .map(|e| e["fields"]["labels"]["role"].as_str().unwrap())
        .collect();
    assert_eq!(
        roles.iter().filter(|r| **r == "master").count(),
        3,
        "{roles:?}"
    );
    assert_eq!(
        roles.iter().filter(|r| **r == "replica").count(),
        3,
        "{roles:?}"
    );
    for e in by_target(&seen, "ticker") {
        assert_eq!(e["fields"]["labels"]["cluster"], "c1", "{e}");
    }

    // Kill a replica: only it is unreachable, then it is dropped.
    let victim = cluster
        .nodes
        .iter()
        .position(|n| info_field(n, "replication", "role") == "slave")
        .unwrap();
    let gone = instance(cluster.nodes[victim].port);
    cluster.nodes[victim].kill();
    let after = wait_for("the killed node dropped", Duration::from_secs(30), || {
        let envelopes = bus.stream(STREAM);
        let removed = host_events(&envelopes, "target removed")
            .iter()
            .any(|e| e["fields"]["instance"] == gone.as_str());
        removed.then_some(envelopes)
    });
    let unreachable: Vec<String> = host_events(&after, "instance unreachable")
        .iter()
        .map(|e| e["fields"]["instance"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(unreachable, vec![gone.clone()]);

    // A node joins with CLUSTER MEET.
    let bus_port = free_port();
    let newcomer = Redis::start(&[
        "--cluster-enabled",
        "yes",
        "--cluster-port",
        &bus_port.to_string(),
        "--cluster-node-timeout",
        "1000",
    ]);
    let seed = cluster
        .nodes
        .iter()
        .find(|n| n.port != cluster.nodes[victim].port)
        .unwrap();
    redis::cmd("CLUSTER")
        .arg("MEET")
        .arg("127.0.0.1")
        .arg(newcomer.port)
        .arg(bus_port)
        .exec(&mut seed.conn())
        .unwrap();
    let joined = instance(newcomer.port);
    wait_for(
        "ticks from the node that joined",
        Duration::from_secs(30),
        || ticking(&bus.stream(STREAM)).contains(&joined).then_some(()),
    );
    assert!(lookout.terminate().success());
}

/// A master and replica found through Sentinel, each with its role; after
/// SENTINEL FAILOVER the roles are followed: relabel events, and the ticks
/// of the promoted node say `role = master`.
#[test]
fn a_sentinel_set_is_discovered_and_a_failover_followed() {
    let set = crate::discovery::start_sentinel_set();
    let bus = Redis::start(&[]);
    let tmp = tempfile::tempdir().unwrap();
    let plugins = plugins_with(tmp.path(), &[], &["ticker"]);
    // A failover leaves the promoted replica out of the sentinel's answers
    // for about a second (neither the master yet nor a replica any more);
    // two refreshes in a row must span it, or the node is removed and
    // added back instead of relabelled.
    let tables = format!(
        "[[discover]]\nsentinel = '{}'\nmaster = 'm'\nrefresh_s = 1.5\n",
        set.sentinel_url()
    );
    let config = bus_config(tmp.path(), &bus, "", &tables);
    let mut lookout = run_config(tmp.path(), &plugins, &config, &[]);
    lookout.wait_started();
    let (master, replica) = (instance(set.master_port), instance(set.replica_port));
    let role_of = |envelopes: &[Value], at: &str| {
        by_target(envelopes, "ticker")
            .iter()
            .rev()
            .find(|e| e["fields"]["instance"] == at)
            .map(|e| e["fields"]["labels"]["role"].as_str().unwrap().to_owned())
    };
    wait_for(
        "ticks from master and replica",
        Duration::from_secs(30),
        || {
            let envelopes = bus.stream(STREAM);
            (role_of(&envelopes, &master).as_deref() == Some("master")
                && role_of(&envelopes, &replica).as_deref() == Some("replica"))
            .then_some(())
        },
    );
    set.sentinel_cmd(redis::cmd("SENTINEL").arg("FAILOVER").arg("m"))
        .unwrap();
    let after = wait_for("the roles swapped", Duration::from_secs(60), || {
        let envelopes = bus.stream(STREAM);
        (role_of(&envelopes, &replica).as_deref() == Some("master")
            && role_of(&envelopes, &master).as_deref() == Some("replica"))
        .then_some(envelopes)
    });
    let promoted = host_events(&after, &format!("target {replica} is now master"));
    let said: Vec<&Value> = host_events(&after, "target");
    assert_eq!(promoted.len(), 1, "{said:#?}");
    assert_eq!(promoted[0]["fields"]["was"], "replica");
    assert!(lookout.terminate().success());
}

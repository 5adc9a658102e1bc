//! The replication, persistence, evictions and rules watchers in the
//! daemon beside every other bundled watcher, each against a real Redis
//! driven into its condition.

use std::time::Duration;

use serde_json::Value;

use crate::support::{
    ALL_WATCHERS, Redis, daemon_with_all_watchers, daemon_with_plugins, event_state, events_of,
    info_field, plugins_with, polls_pass, redis_cmd, repo, wait_event, wait_for,
};

/// The replication watcher, every bundled watcher beside it, watching a
/// replica: its master killed is one error (link down) and the master back
/// one info; `REPLICAOF NO ONE` one warn (role change), each once.
#[test]
fn replication_link_down_and_failover() {
    let mut master = Redis::start(&[]);
    let master_addr = format!("127.0.0.1:{}", master.port);
    let replica = Redis::start(&["--replicaof", "127.0.0.1", &master.port.to_string()]);
    let link_is = |status: &str| {
        wait_for(
            &format!("master_link_status:{status}"),
            Duration::from_secs(30),
            || (info_field(&replica, "replication", "master_link_status") == status).then_some(()),
        );
    };
    link_is("up");
    let bus = Redis::start(&[]);
    let tmp = tempfile::tempdir().unwrap();
    let mut lookout =
        daemon_with_all_watchers(tmp.path(), &replica, &bus, "[watchers.replication]\n");
    polls_pass(&replica, 3);
    assert!(
        events_of(&bus, "replication").is_empty(),
        "nothing while the link is up"
    );

    master.kill();
    link_is("down");
    let down = wait_event(&bus, "replication", "the link down", |e| {
        event_state(e) == "entered"
    });
    assert_eq!(down["level"], "error", "{down}");
    assert_eq!(down["fields"]["master"], master_addr.as_str(), "{down}");
    assert_eq!(down["fields"]["master_link_status"], "down", "{down}");
    assert!(
        down["msg"]
            .as_str()
            .unwrap()
            .starts_with(&format!("replica link to {master_addr} down")),
        "{down}"
    );

    master.restart();
    link_is("up");
    let up = wait_event(&bus, "replication", "the link up again", |e| {
        event_state(e) == "left"
    });
    assert_eq!(up["level"], "info", "{up}");
    assert_eq!(up["fields"]["master"], master_addr.as_str(), "{up}");
    assert!(up["fields"]["down_for_s"].is_u64(), "{up}");
    assert!(
        up["msg"]
            .as_str()
            .unwrap()
            .contains(&format!("replica link to {master_addr} up again after")),
        "{up}"
    );

    redis_cmd(&replica, &["REPLICAOF", "NO", "ONE"]);
    let failover = wait_event(&bus, "replication", "the role change", |e| {
        event_state(e) == "changed"
    });
    assert_eq!(failover["level"], "warn", "{failover}");
    assert_eq!(failover["fields"]["old_role"], "slave", "{failover}");
    assert_eq!(failover["fields"]["new_role"], "master", "{failover}");
    assert_eq!(
        failover["fields"]["old_master"],
        master_addr.as_str(),
        "{failover}"
    );
    assert_eq!(
        failover["msg"],
        format!("role changed from replica of {master_addr} to master (failover)").as_str()
    );

    // A few more polls: no repeats.
    polls_pass(&replica, 5);
    let states: Vec<String> = events_of(&bus, "replication")
        .iter()
        .map(|e| event_state(e).to_owned())
        .collect();
    assert_eq!(
        states,
        ["entered", "left", "changed"],
        "one event per transition"
    );
    assert!(lookout.terminate().success());
}

/// The persistence watcher, every bundled watcher beside it: a background
/// save into a deleted directory fails (one error), a save after the
/// directory is back succeeds (one info).
#[test]
fn persistence_failed_bgsave() {
    let redis = Redis::start(&["--enable-protected-configs", "yes"]);
    let bus = Redis::start(&[]);
    let tmp = tempfile::tempdir().unwrap();
    let mut lookout =
        daemon_with_all_watchers(tmp.path(), &redis, &bus, "[watchers.persistence]\n");
    polls_pass(&redis, 3);
    assert!(
        events_of(&bus, "persistence").is_empty(),
        "nothing while saves are fine"
    );

    let data = tmp.path().join("data");
    std::fs::create_dir(&data).unwrap();
    redis_cmd(&redis, &["CONFIG", "SET", "dir", data.to_str().unwrap()]);
    std::fs::remove_dir(&data).unwrap();
    for n in 0..3 {
        redis_cmd(&redis, &["SET", &format!("key:{n}"), "v"]);
    }
    redis_cmd(&redis, &["BGSAVE"]);
    let failed = wait_event(&bus, "persistence", "the failed save", |e| {
        event_state(e) == "entered"
    });
    assert_eq!(failed["level"], "error", "{failed}");
    assert_eq!(
        failed["fields"]["rdb_last_bgsave_status"], "err",
        "{failed}"
    );
    assert_eq!(
        failed["fields"]["rdb_changes_since_last_save"], 3,
        "{failed}"
    );
    assert_eq!(
        failed["msg"],
        "last background save failed (rdb_last_bgsave_status err), 3 changes not saved"
    );

    std::fs::create_dir(&data).unwrap();
    redis_cmd(&redis, &["CONFIG", "SET", "dir", data.to_str().unwrap()]);
    redis_cmd(&redis, &["BGSAVE"]);
    wait_for("a good save", Duration::from_secs(30), || {
        (info_field(&redis, "persistence", "rdb_last_bgsave_status") == "ok").then_some(())
    });
    let ok = wait_event(&bus, "persistence", "the save ok again", |e| {
        event_state(e) == "left"
    });
    assert_eq!(ok["level"], "info", "{ok}");
    assert_eq!(ok["fields"]["rdb_last_bgsave_status"], "ok", "{ok}");
    assert!(
        ok["msg"]
            .as_str()
            .unwrap()
            .starts_with("background save succeeded again after"),
        "{ok}"
    );

    polls_pass(&redis, 5);
    let states: Vec<String> = events_of(&bus, "persistence")
        .iter()
        .map(|e| event_state(e).to_owned())
        .collect();
    assert_eq!(states, ["entered", "left"], "one event per transition");
    assert!(lookout.terminate().success());
}

/// Opens `n` connections to `redis` at once (each sends PING and reads its
/// answer), then closes them all; returns how many were rejected
/// (`-ERR max number of clients reached`).
fn rules_crowd(redis: &Redis, n: usize) -> usize {
    use std::io::{Read, Write};
    let mut held = Vec::new();
    let mut rejected = 0;
    for _ in 0..n {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", redis.port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        // A rejected connection may be closed before the PING arrives.
        let _ = s.write_all(b"PING\r\n");
        let mut buf = [0u8; 128];
        let got = s.read(&mut buf).unwrap_or(0);
        if String::from_utf8_lossy(&buf[..got]).contains("max number of clients") {
            rejected += 1;
        }
        held.push(s);
    }
    rejected
}

/// Keys evicted under allkeys-lru, with every bundled watcher loaded: the
/// evictions watcher warns once when `evicted_keys` starts growing, stays
/// quiet while it grows, and says once (info) that it stopped, with the
/// total evicted.
#[test]
fn evictions_reported_once_then_quiet() {
    let redis = Redis::start(&["--maxmemory", "2mb", "--maxmemory-policy", "allkeys-lru"]);
    let bus = Redis::start(&[]);
    let tmp = tempfile::tempdir().unwrap();
    let mut lookout = daemon_with_all_watchers(
        tmp.path(),
        &redis,
        &bus,
        "[watchers.evictions]\nquiet_polls = 2\n",
    );
    // latency reports the monitor off at its first poll: the daemon polls,
    // so evictions has its baseline of 0.
    wait_event(&bus, "latency", "the daemon's first poll", |e| {
        e["fields"]["state"] == "entered"
    });

    // 3000 values of 1 KB through 2 MB: most of them evicted.
    let value = "x".repeat(1024);
    let mut pipe = redis::pipe();
    for n in 0..3000 {
        pipe.cmd("SET").arg(format!("k:{n}")).arg(&value).ignore();
    }
    pipe.exec(&mut redis.conn()).unwrap();
    let evicted: u64 = info_field(&redis, "stats", "evicted_keys").parse().unwrap();
    assert!(evicted > 1000, "evicted_keys {evicted}");

    let entered = wait_event(&bus, "evictions", "evictions entered", |e| {
        e["fields"]["counter"] == "evicted_keys" && e["fields"]["state"] == "entered"
    });
    assert_eq!(entered["level"], "warn");
    assert_eq!(entered["fields"]["policy"], "allkeys-lru");
    assert_eq!(entered["fields"]["maxmemory"], 2 * 1024 * 1024);
    let delta = entered["fields"]["delta"].as_u64().unwrap();
    assert!(delta > 0 && delta <= evicted, "{entered}");
    assert!(
        entered["msg"].as_str().unwrap().starts_with("evicting: "),
        "{entered}"
    );

    // Writes stopped; room to spare, so the daemon's own connections evict
    // nothing more.
    redis_cmd(&redis, &["CONFIG", "SET", "maxmemory", "8mb"]);
    let evicted: u64 = info_field(&redis, "stats", "evicted_keys").parse().unwrap();
    let left = wait_event(&bus, "evictions", "evictions left", |e| {
        e["fields"]["counter"] == "evicted_keys" && e["fields"]["state"] == "left"
    });
    assert_eq!(left["level"], "info");
    assert_eq!(left["fields"]["total"], evicted);
    assert_eq!(left["fields"]["delta"], 0);
    assert!(
        left["msg"]
            .as_str()
            .unwrap()
            .starts_with(&format!("evictions stopped: {evicted} keys evicted over ")),
        "{left}"
    );

    // One more quiet stretch: still exactly one event per transition.
    polls_pass(&redis, 3);
    let states: Vec<String> = events_of(&bus, "evictions")
        .iter()
        .map(|e| {
            format!(
                "{} {}",
                e["fields"]["counter"].as_str().unwrap(),
                e["fields"]["state"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(
        states,
        ["evicted_keys entered", "evicted_keys left"],
        "one event per transition"
    );
    assert!(lookout.terminate().success());
}

/// The rules watcher configured by a rules.toml beside rules.wasm, made of
/// rules of plugins/rules/rules.example.toml (`for` lowered to 1), with
/// every bundled watcher loaded: used_memory/maxmemory over 0.9, rejected
/// connections and a failed background save each enter once and leave
/// once.
#[test]
fn rules_from_the_example_file() {
    // The example's rules, by name, each block as written there.
    let example = std::fs::read_to_string(repo().join("plugins/rules/rules.example.toml")).unwrap();
    let body = example.split("\nrules = '''\n").nth(1).unwrap();
    let body = body.split("\n'''").next().unwrap();
    let wanted = ["memory_critical", "connections_rejected", "bgsave_broken"];
    let blocks: Vec<String> = body
        .split("[[rule]]")
        .filter(|b| {
            wanted
                .iter()
                .any(|w| b.contains(&format!("name = \"{w}\"")))
        })
        .map(|b| {
            let lines: Vec<String> = b
                .lines()
                .filter(|l| !l.starts_with('#'))
                .map(|l| {
                    if l.starts_with("for = ") {
                        "for = 1".to_owned()
                    } else {
                        l.to_owned()
                    }
                })
                .collect();
            format!("[[rule]]{}", lines.join("\n"))
        })
        .collect();
    assert_eq!(blocks.len(), wanted.len(), "{blocks:?}");
    // memory_critical's 30 polls (5 minutes at 10 s) are 1 here.
    assert!(
        blocks
            .iter()
            .any(|b| b.contains("memory_critical") && b.contains("for = 1")),
        "{blocks:?}"
    );

    let redis = Redis::start(&["--enable-protected-configs", "yes"]);
    let bus = Redis::start(&[]);
    let tmp = tempfile::tempdir().unwrap();
    let plugins = plugins_with(tmp.path(), &ALL_WATCHERS, &[]);
    std::fs::write(
        plugins.join("rules.toml"),
        format!("rules = '''\n{}\n'''\n", blocks.join("\n")),
    )
    .unwrap();
    let mut lookout = daemon_with_plugins(tmp.path(), &redis, &bus, &plugins, "");
    wait_event(&bus, "latency", "the daemon's first poll", |e| {
        e["fields"]["state"] == "entered"
    });
    let state_of = |rule: &str, state: &'static str| {
        let rule = rule.to_owned();
        move |e: &Value| e["fields"]["rule"] == rule && e["fields"]["state"] == state
    };

    // maxmemory just over used_memory: the ratio is over 0.9.
    let used: u64 = info_field(&redis, "memory", "used_memory").parse().unwrap();
    let max = used + 64 * 1024;
    redis_cmd(&redis, &["CONFIG", "SET", "maxmemory", &max.to_string()]);
    let entered = wait_event(
        &bus,
        "rules",
        "memory_critical entered",
        state_of("memory_critical", "entered"),
    );
    assert_eq!(entered["level"], "error");
    assert_eq!(entered["fields"]["divide_by"], "maxmemory");
    assert!(
        entered["fields"]["value"].as_f64().unwrap() > 0.9,
        "{entered}"
    );
    assert!(
        entered["msg"]
            .as_str()
            .unwrap()
            .starts_with("memory_critical: used_memory/maxmemory is "),
        "{entered}"
    );
    redis_cmd(&redis, &["CONFIG", "SET", "maxmemory", "1gb"]);
    let left = wait_event(
        &bus,
        "rules",
        "memory_critical left",
        state_of("memory_critical", "left"),
    );
    assert_eq!(left["level"], "info");
    assert!(left["fields"]["value"].as_f64().unwrap() < 0.01, "{left}");

    // maxclients just over the connections open now: a crowd is rejected.
    let mut admin = redis.conn();
    let clients: u64 = info_field(&redis, "clients", "connected_clients")
        .parse()
        .unwrap();
    redis::cmd("CONFIG")
        .arg("SET")
        .arg("maxclients")
        .arg(clients + 2)
        .exec(&mut admin)
        .unwrap();
    let rejected = rules_crowd(&redis, 12);
    redis::cmd("CONFIG")
        .arg("SET")
        .arg("maxclients")
        .arg(10000)
        .exec(&mut admin)
        .unwrap();
    assert!(rejected >= 8, "{rejected} rejected");
    let entered = wait_event(
        &bus,
        "rules",
        "connections_rejected entered",
        state_of("connections_rejected", "entered"),
    );
    assert_eq!(entered["level"], "warn");
    assert_eq!(entered["fields"]["measure"], "delta");
    let value = entered["fields"]["value"].as_f64().unwrap();
    assert!(value >= 1.0 && value <= rejected as f64, "{entered}");
    assert!(
        entered["msg"]
            .as_str()
            .unwrap()
            .ends_with("connections rejected since the last poll (maxclients reached)"),
        "{entered}"
    );
    let left = wait_event(
        &bus,
        "rules",
        "connections_rejected left",
        state_of("connections_rejected", "left"),
    );
    assert_eq!(left["level"], "info");
    assert_eq!(left["fields"]["value"], 0.0);

    // A background save into a directory that is gone fails.
    let data = tmp.path().join("data");
    std::fs::create_dir(&data).unwrap();
    redis_cmd(&redis, &["CONFIG", "SET", "dir", data.to_str().unwrap()]);
    std::fs::remove_dir(&data).unwrap();
    redis_cmd(&redis, &["BGSAVE"]);
    wait_for(
        "the background save to fail",
        Duration::from_secs(10),
        || (info_field(&redis, "persistence", "rdb_last_bgsave_status") == "err").then_some(()),
    );
    let entered = wait_event(
        &bus,
        "rules",
        "bgsave_broken entered",
        state_of("bgsave_broken", "entered"),
    );
    assert_eq!(entered["level"], "error");
    assert_eq!(entered["fields"]["value"], "err");
    assert_eq!(
        entered["msg"],
        "bgsave_broken: last background save status is err"
    );
    // The directory back: the next background save succeeds.
    std::fs::create_dir(&data).unwrap();
    redis_cmd(&redis, &["CONFIG", "SET", "dir", data.to_str().unwrap()]);
    redis_cmd(&redis, &["BGSAVE"]);
    let left = wait_event(
        &bus,
        "rules",
        "bgsave_broken left",
        state_of("bgsave_broken", "left"),
    );
    assert_eq!(left["level"], "info");
    assert_eq!(left["fields"]["value"], "ok");

    let transitions: Vec<String> = events_of(&bus, "rules")
        .iter()
        .map(|e| {
            format!(
                "{} {}",
                e["fields"]["rule"].as_str().unwrap(),
                e["fields"]["state"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(
        transitions,
        [
            "memory_critical entered",
            "memory_critical left",
            "connections_rejected entered",
            "connections_rejected left",
            "bgsave_broken entered",
            "bgsave_broken left",
        ],
        "one event per transition"
    );
    assert!(lookout.terminate().success());
}

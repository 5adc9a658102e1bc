//! The replication, persistence, evictions and rules watchers in the
//! daemon beside every other bundled watcher, each against a real Redis
//! driven into its condition.

/// The daemon watching `watched` every 0.2 s with every bundled watcher,
/// publishing to `bus`, with the watcher settings `tables`; waits until it
/// runs. (The replication and persistence tests.)
fn replication_daemon(
    tmp: &std::path::Path,
    watched: &crate::support::Redis,
    bus: &crate::support::Redis,
    tables: &str,
) -> crate::support::Lookout {
    let plugins = crate::support::plugins_with(tmp, &crate::support::ALL_WATCHERS, &[]);
    let config = crate::support::bus_config(tmp, bus, "", tables);
    let lookout = crate::support::run_lookout(
        tmp,
        &watched.url(),
        &plugins,
        &["--config", config.to_str().unwrap()],
    );
    lookout.wait_started();
    lookout
}

/// The events of `target` on `bus` so far, in stream order.
fn replication_events(bus: &crate::support::Redis, target: &str) -> Vec<serde_json::Value> {
    crate::support::by_target(&bus.stream(crate::support::STREAM), target)
}

/// The first event of `target` on `bus` that `matches`, waited for.
fn replication_event(
    bus: &crate::support::Redis,
    target: &str,
    what: &str,
    matches: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    crate::support::wait_for(what, std::time::Duration::from_secs(30), || {
        replication_events(bus, target)
            .into_iter()
            .find(|e| matches(e))
    })
}

/// Waits until the daemon has polled `watched` `polls` more times (one
/// PING per poll).
fn replication_polls_pass(watched: &crate::support::Redis, polls: u64) {
    let start = crate::support::pings(watched);
    crate::support::wait_for(
        "the daemon to poll again",
        std::time::Duration::from_secs(30),
        || (crate::support::pings(watched) >= start + polls).then_some(()),
    );
}

/// Runs `args` on `redis`.
fn replication_cmd(redis: &crate::support::Redis, args: &[&str]) {
    let mut cmd = redis::cmd(args[0]);
    for arg in &args[1..] {
        cmd.arg(*arg);
    }
    cmd.exec(&mut redis.conn()).unwrap();
}

/// `state` of an event.
fn replication_state(e: &serde_json::Value) -> &str {
    e["fields"]["state"].as_str().unwrap_or_default()
}

/// The replication watcher, every bundled watcher beside it, watching a
/// replica: its master killed is one error (link down) and the master back
/// one info; `REPLICAOF NO ONE` one warn (role change), each once.
#[test]
fn replication_link_down_and_failover() {
    use crate::support::{Redis, info_field, wait_for};
    use std::time::Duration;

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
    let mut lookout = replication_daemon(tmp.path(), &replica, &bus, "[watchers.replication]\n");
    replication_polls_pass(&replica, 3);
    assert!(
        replication_events(&bus, "replication").is_empty(),
        "nothing while the link is up"
    );

    master.kill();
    link_is("down");
    let down = replication_event(&bus, "replication", "the link down", |e| {
        replication_state(e) == "entered"
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
    let up = replication_event(&bus, "replication", "the link up again", |e| {
        replication_state(e) == "left"
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

    replication_cmd(&replica, &["REPLICAOF", "NO", "ONE"]);
    let failover = replication_event(&bus, "replication", "the role change", |e| {
        replication_state(e) == "changed"
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
    replication_polls_pass(&replica, 5);
    let states: Vec<String> = replication_events(&bus, "replication")
        .iter()
        .map(|e| replication_state(e).to_owned())
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
    use crate::support::{Redis, info_field, wait_for};
    use std::time::Duration;

    let redis = Redis::start(&["--enable-protected-configs", "yes"]);
    let bus = Redis::start(&[]);
    let tmp = tempfile::tempdir().unwrap();
    let mut lookout = replication_daemon(tmp.path(), &redis, &bus, "[watchers.persistence]\n");
    replication_polls_pass(&redis, 3);
    assert!(
        replication_events(&bus, "persistence").is_empty(),
        "nothing while saves are fine"
    );

    let data = tmp.path().join("data");
    std::fs::create_dir(&data).unwrap();
    replication_cmd(&redis, &["CONFIG", "SET", "dir", data.to_str().unwrap()]);
    std::fs::remove_dir(&data).unwrap();
    for n in 0..3 {
        replication_cmd(&redis, &["SET", &format!("key:{n}"), "v"]);
    }
    replication_cmd(&redis, &["BGSAVE"]);
    let failed = replication_event(&bus, "persistence", "the failed save", |e| {
        replication_state(e) == "entered"
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
    replication_cmd(&redis, &["CONFIG", "SET", "dir", data.to_str().unwrap()]);
    replication_cmd(&redis, &["BGSAVE"]);
    wait_for("a good save", Duration::from_secs(30), || {
        (info_field(&redis, "persistence", "rdb_last_bgsave_status") == "ok").then_some(())
    });
    let ok = replication_event(&bus, "persistence", "the save ok again", |e| {
        replication_state(e) == "left"
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

    replication_polls_pass(&redis, 5);
    let states: Vec<String> = replication_events(&bus, "persistence")
        .iter()
        .map(|e| replication_state(e).to_owned())
        .collect();
    assert_eq!(states, ["entered", "left"], "one event per transition");
    assert!(lookout.terminate().success());
}

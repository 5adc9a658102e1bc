//! The three bundled watchers against a real Redis driven into each
//! condition, and a failing watcher beside healthy ones.

use std::time::Duration;

use crate::support::{
    Lookout, Redis, by_target, info_field, lookout_cmd, plugins_with, polls_pass, wait_for,
};

fn start(redis: &Redis, plugins: &std::path::Path, cache: &std::path::Path) -> Lookout {
    let mut cmd = lookout_cmd(cache);
    cmd.args(["run", "--poll-interval", "0.2", "--plugins"])
        .arg(plugins);
    cmd.env("REDIS_URL", redis.url());
    Lookout::spawn(cmd)
}

/// Watches `redis` and publishes to `bus`.
fn start_with_bus(
    redis: &Redis,
    bus: &Redis,
    plugins: &std::path::Path,
    tmp: &std::path::Path,
) -> Lookout {
    let config = tmp.join("lookout.toml");
    std::fs::write(&config, format!("[publish]\nurl = '{}'\n", bus.url())).unwrap();
    let mut cmd = lookout_cmd(tmp);
    cmd.args(["run", "--poll-interval", "0.2", "--config"])
        .arg(&config)
        .arg("--plugins")
        .arg(plugins);
    cmd.env("REDIS_URL", redis.url());
    Lookout::spawn(cmd)
}

/// Twenty extra connections produce a client-delta event of at least +10;
/// closing them one of at least -10 (the daemon is paused meanwhile, so
/// one poll sees them all).
#[test]
fn client_delta_sees_twenty_new_connections() {
    let redis = Redis::start(&[]);
    let tmp = tempfile::tempdir().unwrap();
    let plugins = plugins_with(tmp.path(), &["client-delta"], &[]);
    let mut lookout = start(&redis, &plugins, tmp.path());
    lookout.wait_started();
    // The watcher's baseline is a snapshot taken after it was ready (a busy
    // machine may poll a few times before the watchers are compiled): two
    // more PINGs (one poll each) mean a whole poll ran with it.
    polls_pass(&redis, 2);
    // The daemon is stopped while the connections open (or close), so one
    // poll sees all twenty however slowly a busy machine opens them.
    let clients = || {
        info_field(&redis, "clients", "connected_clients")
            .parse::<i64>()
            .unwrap()
    };
    let before = clients();
    lookout.signal("-STOP");
    let extra: Vec<redis::Connection> = (0..20).map(|_| redis.conn()).collect();
    wait_for("twenty more clients", Duration::from_secs(20), || {
        (clients() >= before + 20).then_some(())
    });
    lookout.signal("-CONT");
    let event = wait_for("a client-delta event", Duration::from_secs(20), || {
        by_target(&redis.stream("logs:stream:redis"), "client-delta")
            .into_iter()
            .find(|e| e["fields"]["delta"].as_i64().unwrap() >= 10)
    });
    assert_eq!(event["level"], "info");
    assert_eq!(event["fields"]["threshold"], 5);
    lookout.signal("-STOP");
    drop(extra);
    wait_for("the twenty closed", Duration::from_secs(20), || {
        (clients() <= before).then_some(())
    });
    lookout.signal("-CONT");
    wait_for("the negative delta", Duration::from_secs(20), || {
        by_target(&redis.stream("logs:stream:redis"), "client-delta")
            .into_iter()
            .find(|e| e["fields"]["delta"].as_i64().unwrap() <= -10)
    });
    assert!(lookout.terminate().success());
}

/// A small maxmemory puts the instance under pressure (one warn on entering,
/// not one per poll); raising it clears the pressure (one info). Events go
/// to a separate bus, since the squeezed instance refuses writes.
#[test]
fn memory_pressure_enters_and_clears() {
    let redis = Redis::start(&["--maxmemory", "1mb"]);
    let bus = Redis::start(&[]);
    let tmp = tempfile::tempdir().unwrap();
    let plugins = plugins_with(tmp.path(), &["memory-pressure"], &[]);
    std::fs::write(
        plugins.join("memory-pressure.toml"),
        "remind_every = 1000\n",
    )
    .unwrap();
    let mut lookout = start_with_bus(&redis, &bus, &plugins, tmp.path());
    let entered = wait_for(
        "memory pressure to be reported",
        Duration::from_secs(20),
        || {
            by_target(&bus.stream("logs:stream:redis"), "memory-pressure")
                .into_iter()
                .find(|e| e["fields"]["state"] == "entered")
        },
    );
    assert_eq!(entered["level"], "warn");
    assert_eq!(entered["fields"]["maxmemory"], 1024 * 1024);
    let mut conn = redis.conn();
    redis::cmd("CONFIG")
        .arg("SET")
        .arg("maxmemory")
        .arg("1gb")
        .exec(&mut conn)
        .unwrap();
    let cleared = wait_for("memory pressure to clear", Duration::from_secs(20), || {
        by_target(&bus.stream("logs:stream:redis"), "memory-pressure")
            .into_iter()
            .find(|e| e["fields"]["state"] == "cleared")
    });
    assert_eq!(cleared["level"], "info");
    let all = by_target(&bus.stream("logs:stream:redis"), "memory-pressure");
    assert_eq!(
        all.len(),
        2,
        "one event per transition, not one per poll: {all:?}"
    );
    assert!(lookout.terminate().success());
}

/// A watcher that traps is reported with an error envelope naming it and
/// rebuilt; the other watchers keep reporting.
#[test]
fn trapping_watcher_is_skipped_and_others_continue() {
    let redis = Redis::start(&["--slowlog-log-slower-than", "0"]);
    let tmp = tempfile::tempdir().unwrap();
    let plugins = plugins_with(tmp.path(), &["slowlog"], &["panicker"]);
    // Every entry one by one (the test's own reads are slow commands too).
    std::fs::write(plugins.join("slowlog.toml"), "max_events = 1000\n").unwrap();
    let mut lookout = start(&redis, &plugins, tmp.path());
    let failure = wait_for("the failure envelope", Duration::from_secs(20), || {
        by_target(&redis.stream("logs:stream:redis"), "lookout")
            .into_iter()
            .find(|e| e["level"] == "error" && e["fields"]["watcher"] == "panicker")
    });
    assert!(
        failure["msg"].as_str().unwrap().contains("panicker"),
        "{failure}"
    );
    let mut client = redis.conn();
    redis::cmd("SET")
        .arg("after-failure")
        .arg("1")
        .exec(&mut client)
        .unwrap();
    wait_for(
        "slowlog still reporting after the failure",
        Duration::from_secs(20),
        || {
            by_target(&redis.stream("logs:stream:redis"), "slowlog")
                .into_iter()
                .find(|e| {
                    e["fields"]["args"]
                        .as_str()
                        .unwrap_or("")
                        .contains("after-failure")
                })
        },
    );
    assert!(lookout.alive());
    // Each panic is one failure and one restart; the two alternate.
    let states: Vec<String> = by_target(&redis.stream("logs:stream:redis"), "lookout")
        .into_iter()
        .filter(|e| e["fields"]["watcher"] == "panicker" && e["fields"]["state"].is_string())
        .map(|e| e["fields"]["state"].as_str().unwrap().to_owned())
        .collect();
    assert!(states.len() >= 2, "{states:?}");
    for pair in states.chunks(2) {
        assert_eq!(pair[0], "failed", "{states:?}");
        if let Some(next) = pair.get(1) {
            assert_eq!(next, "restarted", "{states:?}");
        }
    }
    assert!(lookout.terminate().success());
}

/// The Python hit-ratio watcher (`make plugins-extra`) runs in the daemon
/// beside the Rust ones, under the limits its lookout.toml table gives it:
/// a burst of misses makes it warn, hits again make it report the recovery,
/// and client-delta still reports a client surge meanwhile.
#[test]
fn python_hit_ratio_runs_beside_the_rust_watchers() {
    let redis = Redis::start(&[]);
    let tmp = tempfile::tempdir().unwrap();
    let plugins = plugins_with(tmp.path(), &crate::support::BUNDLED, &[]);
    std::fs::copy(
        crate::support::extra_watcher("hit-ratio"),
        plugins.join("hit-ratio.wasm"),
    )
    .unwrap();
    let limits =
        std::fs::read_to_string(crate::support::repo().join("plugins/hit-ratio/lookout.toml"))
            .unwrap();
    let config = tmp.path().join("lookout.toml");
    std::fs::write(
        &config,
        format!("{limits}\n[watchers.hit-ratio]\nmin_lookups = 50\n"),
    )
    .unwrap();
    let mut cmd = lookout_cmd(tmp.path());
    cmd.args(["run", "--poll-interval", "0.2", "--config"])
        .arg(&config)
        .arg("--plugins")
        .arg(&plugins)
        // Shared with `make test-extra`, so the 17.5 MiB component is
        // compiled once per build, not once per test.
        .arg("--cache-dir")
        .arg(crate::support::repo().join("target/golden-cache"))
        .env("REDIS_URL", redis.url());
    let mut lookout = Lookout::spawn(cmd);
    lookout.wait_started();
    assert!(
        !lookout
            .stderr
            .matching("watcher loaded watcher=hit-ratio")
            .is_empty(),
        "{:?}",
        lookout.stderr.all()
    );

    let mut conn = redis.conn();
    let burst = |conn: &mut redis::Connection, key: &str| {
        let mut pipe = redis::pipe();
        for _ in 0..60 {
            pipe.cmd("GET").arg(key);
        }
        pipe.query::<Vec<Option<String>>>(conn).unwrap();
    };
    let hit_ratio = |state: &str| {
        by_target(&redis.stream("logs:stream:redis"), "hit-ratio")
            .into_iter()
            .find(|e| e["fields"]["state"] == state)
    };
    let entered = wait_for("hit-ratio to warn", Duration::from_secs(60), || {
        burst(&mut conn, "absent");
        hit_ratio("entered")
    });
    assert_eq!(entered["level"], "warn");
    assert!(
        entered["msg"]
            .as_str()
            .unwrap()
            .starts_with("keyspace hit ratio"),
        "{entered}"
    );
    redis::cmd("SET")
        .arg("present")
        .arg("v")
        .exec(&mut conn)
        .unwrap();
    let cleared = wait_for("hit-ratio to clear", Duration::from_secs(60), || {
        burst(&mut conn, "present");
        hit_ratio("cleared")
    });
    assert_eq!(cleared["level"], "info");

    let extra: Vec<redis::Connection> = (0..10).map(|_| redis.conn()).collect();
    wait_for("a client-delta event", Duration::from_secs(20), || {
        (!by_target(&redis.stream("logs:stream:redis"), "client-delta").is_empty()).then_some(())
    });
    drop(extra);
    assert!(lookout.terminate().success());
}

/// A watcher's condition reaches the bus: each envelope of the ticker
/// fixture told to fire `ticking` carries the top-level `condition`
/// (kind, key, state, fingerprint, runbook_url), the fingerprint the same
/// when it fires and when it resolves; its fields stay its own. A bad
/// condition is dropped from its event, which is still published, and
/// counted in the cut report.
#[test]
fn a_watchers_condition_reaches_the_envelope() {
    let redis = Redis::start(&[]);
    let bus = Redis::start(&[]);
    let tmp = tempfile::tempdir().unwrap();
    let plugins = plugins_with(tmp.path(), &[], &["ticker"]);
    std::fs::copy(
        crate::support::fixture("ticker"),
        plugins.join("bad-ticker.wasm"),
    )
    .unwrap();
    let mut lookout = crate::support::daemon_with_plugins(
        tmp.path(),
        &redis,
        &bus,
        &plugins,
        "[watchers.ticker]\ncondition = 'ticking'\nrunbook = 'https://runbooks.example/ticking'\n\
         [watchers.bad-ticker]\ncondition = 'Not A Kind'\n",
    );
    let ticks = wait_for(
        "a firing and a resolved tick",
        Duration::from_secs(30),
        || {
            let ticks = crate::support::events_of(&bus, "ticker");
            (ticks.iter().any(|e| e["condition"]["state"] == "firing")
                && ticks.iter().any(|e| e["condition"]["state"] == "resolved"))
            .then_some(ticks)
        },
    );
    let firing = ticks
        .iter()
        .find(|e| e["condition"]["state"] == "firing")
        .unwrap();
    let c = &firing["condition"];
    assert_eq!(c["kind"], "ticking");
    assert_eq!(c["key"], "tick");
    assert_eq!(c["runbook_url"], "https://runbooks.example/ticking");
    let fingerprint = c["fingerprint"].as_str().unwrap();
    assert_eq!(fingerprint.len(), 16, "{c}");
    assert!(
        ticks
            .iter()
            .all(|e| e["condition"]["fingerprint"] == fingerprint)
    );
    assert!(firing["fields"].get("condition").is_none(), "{firing}");

    let bad = wait_for(
        "the bad ticker's cut report",
        Duration::from_secs(30),
        || {
            crate::support::events_of(&bus, "lookout")
                .into_iter()
                .find(|e| {
                    e["fields"]["watcher"] == "bad-ticker" && e["fields"]["conditions_dropped"] == 1
                })
        },
    );
    assert_eq!(bad["level"], "warn");
    let published = crate::support::events_of(&bus, "bad-ticker");
    assert!(!published.is_empty());
    assert!(published.iter().all(|e| e.get("condition").is_none()));
    assert!(lookout.terminate().success());
}

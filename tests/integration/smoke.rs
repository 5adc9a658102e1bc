//! The shell sidecar's smoke test, and the wire format on both outputs.

use std::time::Duration;

use serde_json::Value;

use crate::support::{Lookout, Redis, assert_envelope, bundled, by_target, lookout_cmd, wait_for};

/// With slowlog-log-slower-than 0 and a few PINGs, slowlog events reach the
/// stream and pub/sub, and every entry parses as the v1 envelope.
#[test]
fn smoke_slowlog_events_reach_stream_and_pubsub() {
    let redis = Redis::start(&[
        "--slowlog-log-slower-than",
        "0",
        "--slowlog-max-len",
        "4096",
    ]);
    let tmp = tempfile::tempdir().unwrap();
    let mut sub = redis.conn();
    let mut pubsub = sub.as_pubsub();
    pubsub.psubscribe("logs.redis.*").unwrap();
    pubsub
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();

    let plugins = bundled(tmp.path());
    // Every entry one by one (the test's own reads are slow commands too).
    std::fs::write(plugins.join("slowlog.toml"), "max_events = 1000\n").unwrap();
    let mut cmd = lookout_cmd(tmp.path());
    cmd.args(["run", "--plugins"]).arg(&plugins);
    cmd.env("REDIS_URL", redis.url())
        .env("POLL_INTERVAL", "0.2");
    let mut lookout = Lookout::spawn(cmd);
    lookout.wait_started();

    let mut client = redis.conn();
    for _ in 0..3 {
        redis::cmd("PING").query::<String>(&mut client).unwrap();
    }
    let events = wait_for(
        "a slowlog event on the stream",
        Duration::from_secs(20),
        || {
            let all = redis.stream("logs:stream:redis");
            let pings = by_target(&all, "slowlog")
                .into_iter()
                .filter(|e| e["fields"]["command"] == "PING")
                .count();
            (pings >= 3).then_some(all)
        },
    );
    assert!(!events.is_empty());
    for env in &events {
        assert_envelope(env);
    }
    let slow = by_target(&events, "slowlog");
    assert!(slow.iter().all(|e| e["level"] == "warn"));
    assert!(
        slow.iter().all(|e| e["fields"]["client_name"] != "lookout"),
        "the host's own commands are skipped"
    );
    assert!(
        by_target(&events, "lookout")
            .iter()
            .any(|e| e["msg"].as_str().unwrap().starts_with("lookout started"))
    );

    let mut payloads = Vec::new();
    wait_for("pub/sub payloads", Duration::from_secs(10), || {
        if let Ok(msg) = pubsub.get_message() {
            let channel = msg.get_channel_name().to_owned();
            let env: Value = serde_json::from_str(&msg.get_payload::<String>().unwrap()).unwrap();
            assert_eq!(
                channel,
                format!("logs.redis.{}", env["level"].as_str().unwrap())
            );
            payloads.push(env);
        }
        (payloads.iter().any(|e| e["target"] == "slowlog")).then_some(())
    });
    for env in &payloads {
        assert_envelope(env);
    }
    assert!(lookout.terminate().success());
}

/// `--dry-run --once` prints envelopes on stdout and publishes nothing.
#[test]
fn dry_run_once_prints_json_lines() {
    let redis = Redis::start(&["--slowlog-log-slower-than", "0"]);
    let tmp = tempfile::tempdir().unwrap();
    let mut cmd = lookout_cmd(tmp.path());
    cmd.args(["run", "--dry-run", "--once", "--plugins"])
        .arg(bundled(tmp.path()));
    cmd.env("REDIS_URL", redis.url());
    let (status, out, err) = crate::support::run_to_end(cmd, Duration::from_secs(30));
    assert!(status.success(), "{err}");
    let lines: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(lines.iter().any(|e| e["target"] == "lookout"), "{out}");
    for env in &lines {
        assert_envelope(env);
    }
    assert!(
        redis.stream("logs:stream:redis").is_empty(),
        "dry run publishes nothing"
    );
}

/// `publish.url` sends envelopes to another Redis (the bus), with the
/// configured channel prefix, stream key and service name.
#[test]
fn publishes_to_a_separate_bus_with_custom_names() {
    let watched = Redis::start(&["--slowlog-log-slower-than", "0"]);
    let bus = Redis::start(&[]);
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("lookout.toml");
    std::fs::write(
        &config,
        format!(
            "redis_url = '{}'\npoll_interval = 0.2\nservice = 'cache-eu'\n\
             [publish]\nurl = '{}'\nchannel_prefix = 'ops.redis'\nstream_key = 'ops:stream'\nstream_maxlen = 500\n",
            watched.url(),
            bus.url()
        ),
    )
    .unwrap();
    let mut cmd = lookout_cmd(tmp.path());
    cmd.args(["run", "--config"])
        .arg(&config)
        .arg("--plugins")
        .arg(bundled(tmp.path()));
    let mut lookout = Lookout::spawn(cmd);
    let events = wait_for("slowlog events on the bus", Duration::from_secs(20), || {
        let all = bus.stream("ops:stream");
        (!by_target(&all, "slowlog").is_empty()).then_some(all)
    });
    assert!(events.iter().all(|e| e["service"] == "cache-eu"));
    assert!(
        events
            .iter()
            .all(|e| e["fields"]["instance"] == format!("127.0.0.1:{}", watched.port)),
        "instance names the watched Redis"
    );
    assert!(watched.stream("logs:stream:redis").is_empty());
    assert!(lookout.terminate().success());
}

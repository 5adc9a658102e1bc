//! Watcher authoring tools: `lookout record` captures real snapshots and
//! `lookout test` replays them through a watcher in the daemon's sandbox.

use std::time::Duration;

use crate::support::{Redis, lookout_cmd, plugins_dir, run_to_end};

/// Snapshots recorded from a real Redis drive the slowlog watcher offline;
/// `--expect` passes on the same events and fails with a diff otherwise.
#[test]
fn record_then_test_a_watcher_offline() {
    let redis = Redis::start(&["--slowlog-log-slower-than", "0"]);
    let tmp = tempfile::tempdir().unwrap();
    let mut conn = redis.conn();
    redis::cmd("SET")
        .arg("user:1")
        .arg("s3cret")
        .exec(&mut conn)
        .unwrap();

    let mut cmd = lookout_cmd(tmp.path());
    cmd.args([
        "record",
        "--redis",
        &redis.url(),
        "--polls",
        "2",
        "--every",
        "0.1",
        "--redact",
    ]);
    let (status, out, err) = run_to_end(cmd, Duration::from_secs(30));
    assert!(status.success(), "{err}");
    assert_eq!(out.lines().count(), 2);
    assert!(!out.contains("s3cret"), "--redact hides arguments");
    let snapshots = tmp.path().join("snapshots.jsonl");
    std::fs::write(&snapshots, &out).unwrap();

    let slowlog = plugins_dir().join("slowlog.wasm");
    let test = |extra: &[&str]| {
        let mut cmd = lookout_cmd(tmp.path());
        cmd.arg("test")
            .arg(&slowlog)
            .arg("--snapshots")
            .arg(&snapshots)
            .args(extra);
        run_to_end(cmd, Duration::from_secs(30))
    };
    let (status, events, err) = test(&[]);
    assert!(status.success(), "{err}");
    assert!(events.contains("slow command SET"), "{events}");
    let expected = tmp.path().join("expected.jsonl");
    std::fs::write(&expected, &events).unwrap();
    let (status, _, err) = test(&["--expect", expected.to_str().unwrap()]);
    assert!(status.success(), "{err}");

    let (status, _, err) = test(&[
        "--set",
        "max_arg_len=1",
        "--expect",
        expected.to_str().unwrap(),
    ]);
    assert!(!status.success());
    assert!(
        err.contains("events differ") && err.contains("- {") && err.contains("+ {"),
        "{err}"
    );
}

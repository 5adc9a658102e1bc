//! Watcher authoring tools: `lookout record` captures real snapshots and
//! `lookout test` replays them through a watcher in the daemon's sandbox.

use std::time::Duration;

use crate::support::{Redis, lookout_cmd, lookout_env, plugins_dir, run_to_end};

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

/// The shell blocks of README.md marked `<!-- tutorial -->`, in order.
fn readme_tutorial() -> Vec<String> {
    let readme = std::fs::read_to_string(crate::support::repo().join("README.md")).unwrap();
    let mut lines = Vec::new();
    let mut rest = readme.as_str();
    while let Some(at) = rest.find("<!-- tutorial -->\n```sh\n") {
        let block = &rest[at + "<!-- tutorial -->\n```sh\n".len()..];
        let end = block.find("\n```").expect("tutorial block is closed");
        lines.extend(block[..end].lines().map(str::to_owned));
        rest = &block[end..];
    }
    assert!(lines.len() > 10, "README has the tutorial blocks");
    lines
}

/// "Write a watcher" in README.md, run as written: `lookout new`, both
/// builds, check, the golden test, a recording, then the component dropped
/// into a running daemon's plugins folder until its event is on the stream.
#[test]
fn readme_tutorial_runs_as_written() {
    let redis = Redis::start(&[]);
    let tmp = tempfile::tempdir().unwrap();
    let work = tmp.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    let script = format!(
        "set -euo pipefail\ntrap 'kill $(jobs -p) 2>/dev/null || true' EXIT\nset -x\n{}\n",
        readme_tutorial().join("\n")
    );
    let bin = std::path::Path::new(env!("CARGO_BIN_EXE_lookout"))
        .parent()
        .unwrap()
        .to_path_buf();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    let mut cmd = std::process::Command::new("bash");
    lookout_env(&mut cmd, tmp.path());
    cmd.arg("-c")
        .arg(&script)
        .env("PATH", path)
        .env("REDIS_URL", redis.url())
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("CARGO_BUILD_TARGET")
        .current_dir(&work);
    cmd.stdin(std::process::Stdio::null());
    let (status, out, err) = run_to_end(cmd, Duration::from_secs(900));
    assert!(status.success(), "tutorial failed:\n{out}\n{err}");
    assert!(out.contains("ok: configured"), "{out}");
    assert!(out.contains("watching Redis"), "{out}");

    let events = redis.stream("logs:stream:redis");
    let mine: Vec<_> = crate::support::by_target(&events, "my-watcher");
    assert!(
        mine.iter().any(|e| e["msg"]
            .as_str()
            .is_some_and(|m| m.starts_with("watching Redis"))),
        "{mine:?}"
    );
    assert!(
        work.join("my-watcher/target/wasm32-wasip1/release/my_watcher.wasm")
            .is_file()
    );
}

/// `check` and `test` apply the default limits, or a daemon's lookout.toml:
/// the 17.5 MiB Python watcher is refused by the file-size cap, naming the
/// key to raise, and passes its golden test under its own table.
#[test]
fn lookout_config_gives_check_and_test_the_daemons_limits() {
    let tmp = tempfile::tempdir().unwrap();
    let wasm = crate::support::extra_watcher("hit-ratio");
    let dir = crate::support::repo().join("plugins/hit-ratio");
    let cache = crate::support::repo().join("target/golden-cache");
    let mut cmd = lookout_cmd(tmp.path());
    cmd.arg("check").arg(&wasm).arg("--cache-dir").arg(&cache);
    let (status, _, err) = run_to_end(cmd, Duration::from_secs(30));
    assert!(!status.success());
    assert!(err.contains("limits.max_wasm_mib"), "{err}");

    let mut cmd = lookout_cmd(tmp.path());
    cmd.arg("test")
        .arg(&wasm)
        .arg("--lookout-config")
        .arg(dir.join("lookout.toml"))
        .arg("--snapshots")
        .arg(dir.join("golden/snapshots.jsonl"))
        .arg("--expect")
        .arg(dir.join("golden/expected.jsonl"))
        .arg("--cache-dir")
        .arg(&cache);
    let (status, out, err) = run_to_end(cmd, Duration::from_secs(300));
    assert!(status.success(), "{err}");
    assert_eq!(out.lines().count(), 4, "{out}");
}

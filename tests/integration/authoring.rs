//! Watcher authoring tools: `lookout record` captures real snapshots and
//! `lookout test` replays them through a watcher in the daemon's sandbox.

use std::time::Duration;

use crate::support::{
    ALL_WATCHERS, Redis, info_field, lookout_cmd, lookout_env, plugins_dir, run_to_end, wait_for,
};

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
    let n = events.lines().count();
    assert!(
        err.contains(&format!("ok: {n} event")) && err.contains("(2 snapshots)"),
        "{err}"
    );

    // Shorter arguments: the same events with another message, so each is
    // reported as changed rather than as missing plus extra.
    let (status, _, err) = test(&[
        "--set",
        "max_arg_len=1",
        "--expect",
        expected.to_str().unwrap(),
    ]);
    assert!(!status.success());
    assert!(
        err.contains("events differ")
            && err.contains("0 missing, 0 extra, ")
            && err.contains("changed at snapshot ")
            && err.contains("- {")
            && err.contains("+ {"),
        "{err}"
    );
}

/// `lookout test` shows the condition a watcher's event starts or ends,
/// runbook included, and `--expect` compares it.
#[test]
fn test_shows_and_compares_conditions() {
    let tmp = tempfile::tempdir().unwrap();
    let snapshot = r#"{"instance":"127.0.0.1:6400","taken_at_ms":1,"info":[["clients","connected_clients","1"]],"slowlog":[]}"#;
    let snapshots = tmp.path().join("snapshots.jsonl");
    std::fs::write(&snapshots, format!("{snapshot}\n{snapshot}\n")).unwrap();
    let test = |extra: &[&str]| {
        let mut cmd = lookout_cmd(tmp.path());
        cmd.arg("test")
            .arg(crate::support::fixture("ticker"))
            .arg("--snapshots")
            .arg(&snapshots)
            .args([
                "--set",
                "condition=ticking",
                "--set",
                "runbook=https://runbooks.example/ticking",
            ])
            .args(extra);
        run_to_end(cmd, Duration::from_secs(60))
    };
    let (status, out, err) = test(&[]);
    assert!(status.success(), "{err}");
    let events: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(events.len(), 2, "{out}");
    assert_eq!(
        events[0]["condition"],
        serde_json::json!({
            "kind": "ticking",
            "key": "tick",
            "state": "firing",
            "runbook": "https://runbooks.example/ticking",
        })
    );
    assert_eq!(events[1]["condition"]["state"], "resolved");
    let expected = tmp.path().join("expected.jsonl");
    std::fs::write(&expected, &out).unwrap();
    let (status, _, err) = test(&["--expect", expected.to_str().unwrap()]);
    assert!(status.success(), "{err}");
    std::fs::write(&expected, out.replace("\"resolved\"", "\"firing\"")).unwrap();
    let (status, _, err) = test(&["--expect", expected.to_str().unwrap()]);
    assert!(!status.success());
    assert!(err.contains("changed at snapshot 1 (condition):"), "{err}");
}

/// `--expect` aligns the events: one event missing from the middle of the
/// golden run, or one more than expected, is reported alone, not as every
/// later event changed.
#[test]
fn expect_reports_only_the_event_that_differs() {
    let tmp = tempfile::tempdir().unwrap();
    let golden = crate::support::repo().join("plugins/client-delta/golden");
    let lines: Vec<String> = std::fs::read_to_string(golden.join("expected.jsonl"))
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    assert!(lines.len() >= 2, "{lines:?}");
    let test = |expected: &[String]| {
        let path = tmp.path().join("expected.jsonl");
        std::fs::write(&path, expected.join("\n") + "\n").unwrap();
        let mut cmd = lookout_cmd(tmp.path());
        cmd.arg("test")
            .arg(crate::support::repo().join("plugins/client-delta.wasm"))
            .arg("--snapshots")
            .arg(golden.join("snapshots.jsonl"))
            .arg("--expect")
            .arg(&path);
        run_to_end(cmd, Duration::from_secs(120))
    };
    let count = lines.len();

    let (status, _, err) = test(&lines);
    assert!(status.success(), "{err}");
    assert!(err.contains(&format!("ok: {count} events match")), "{err}");

    // Expected twice, produced once: one missing event, nothing else.
    let mut doubled = lines.clone();
    doubled.insert(1, lines[0].clone());
    let (status, _, err) = test(&doubled);
    assert!(!status.success());
    let first: serde_json::Value = serde_json::from_str(&lines[0]).unwrap();
    let at = &first["snapshot"];
    assert!(
        err.contains(&format!(
            "0 extra, 0 changed of {} expected events\nmissing at snapshot {at}:\n- {}",
            count + 1,
            lines[0]
        )) && err.contains("1 missing, "),
        "{err}"
    );
    assert_eq!(err.matches("\n- ").count(), 1, "{err}");
    assert!(!err.contains("\n+ "), "{err}");

    // One line removed from the expected file: one extra event.
    let mut fewer = lines.clone();
    let removed = fewer.remove(0);
    let (status, _, err) = test(&fewer);
    assert!(!status.success());
    assert!(
        err.contains(&format!(
            "0 missing, 1 extra, 0 changed of {}\n",
            if count == 2 {
                "1 expected event".to_owned()
            } else {
                format!("{} expected events", count - 1)
            }
        )) && err.contains(&format!(
            "extra at snapshot {}:\n+ {removed}",
            first["snapshot"]
        )),
        "{err}"
    );
    assert_eq!(err.matches("\n+ ").count(), 1, "{err}");
}

/// Every bundled watcher keeps its golden case in its own folder, as
/// `lookout new` lays out a new one (`golden/snapshots.jsonl`,
/// `golden/expected.jsonl`), with the script that re-records them
/// (`golden/record.sh`, executable); bash reads those scripts and the
/// helpers they share in `tests/golden`.
#[test]
fn every_bundled_watcher_keeps_its_golden_case_in_its_folder() {
    use std::os::unix::fs::PermissionsExt;
    let repo = crate::support::repo();
    let bash_reads = |script: &std::path::Path| {
        let out = std::process::Command::new("bash")
            .arg("-n")
            .arg(script)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}: {}",
            script.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    };
    for w in ALL_WATCHERS.iter().chain(&["hit-ratio"]) {
        let golden = repo.join("plugins").join(w).join("golden");
        for file in ["snapshots.jsonl", "expected.jsonl"] {
            let path = golden.join(file);
            let text = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            assert!(!text.trim().is_empty(), "{} is empty", path.display());
        }
        let script = golden.join("record.sh");
        let mode = std::fs::metadata(&script)
            .unwrap_or_else(|e| panic!("{}: {e}", script.display()))
            .permissions()
            .mode();
        assert!(mode & 0o111 != 0, "{} is not executable", script.display());
        bash_reads(&script);
    }
    for helper in ["redis.sh", "session.sh"] {
        bash_reads(&repo.join("tests/golden").join(helper));
    }
}

/// The tutorial in docs/writing-watchers.md as script lines, in order: the shell blocks marked
/// `<!-- tutorial -->` as they are, and each block marked
/// `<!-- tutorial: PATH -->` written to PATH (a here-document).
fn readme_tutorial() -> Vec<String> {
    let page =
        std::fs::read_to_string(crate::support::repo().join("docs/writing-watchers.md")).unwrap();
    let mut lines = Vec::new();
    let mut rest = page.as_str();
    while let Some(at) = rest.find("<!-- tutorial") {
        let (marker, after) = rest[at..]
            .split_once(" -->\n```")
            .expect("a tutorial marker is followed by a code block");
        let (fence, block) = after.split_once('\n').unwrap();
        let end = block.find("\n```").expect("tutorial block is closed");
        let body = block[..end].lines().map(str::to_owned);
        match marker.strip_prefix("<!-- tutorial: ") {
            None => {
                assert_eq!(fence, "sh", "a tutorial block to run is sh");
                lines.extend(body);
            }
            Some(path) => {
                lines.push(format!("cat > {path} <<'TUTORIAL_FILE'"));
                lines.extend(body);
                lines.push("TUTORIAL_FILE".to_owned());
            }
        }
        rest = &block[end..];
    }
    assert!(
        lines.len() > 10,
        "docs/writing-watchers.md has the tutorial blocks"
    );
    lines
}

/// "Write a watcher" in docs/writing-watchers.md, run as written: `lookout new`, both
/// builds, check, the golden test, a recording, then the component dropped
/// into a running daemon's plugins folder until its event is on the stream;
/// then the second example, a CLIENT LIST watcher written from the page, its
/// unit test, its build, and a recording of a subscriber that stops reading
/// and goes, in which it warns once and resolves once.
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
    let expected = std::fs::read_to_string(work.join("buffers/golden/expected.jsonl")).unwrap();
    let buffers: Vec<serde_json::Value> = expected
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let conditions: Vec<_> = buffers
        .iter()
        .map(|e| (e["level"].as_str(), e["condition"]["state"].as_str()))
        .collect();
    assert_eq!(
        conditions,
        [
            (Some("warn"), Some("firing")),
            (Some("info"), Some("resolved"))
        ],
        "{expected}"
    );
    assert!(
        buffers[0]["msg"]
            .as_str()
            .is_some_and(|m| m.contains(": output at ")),
        "{expected}"
    );
    assert!(out.contains(") gone"), "{out}");

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
/// the 17.5 MiB Python watcher passes under the defaults, is refused by a
/// daemon's smaller file cap (naming the key to raise), and passes its
/// golden test under its own table.
#[test]
fn lookout_config_gives_check_and_test_the_daemons_limits() {
    let tmp = tempfile::tempdir().unwrap();
    let wasm = crate::support::extra_watcher("hit-ratio");
    let dir = crate::support::repo().join("plugins/hit-ratio");
    let cache = crate::support::repo().join("target/golden-cache");
    let mut cmd = lookout_cmd(tmp.path());
    cmd.arg("check").arg(&wasm).arg("--cache-dir").arg(&cache);
    let (status, _, err) = run_to_end(cmd, Duration::from_secs(300));
    assert!(status.success(), "{err}");

    let small = tmp.path().join("small.toml");
    std::fs::write(&small, "[limits]\nmax_wasm_mib = 16\n").unwrap();
    let mut cmd = lookout_cmd(tmp.path());
    cmd.arg("check")
        .arg(&wasm)
        .arg("--lookout-config")
        .arg(&small)
        .arg("--cache-dir")
        .arg(&cache);
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
        .arg("--print")
        .arg("--cache-dir")
        .arg(&cache);
    let (status, out, err) = run_to_end(cmd, Duration::from_secs(300));
    assert!(status.success(), "{err}");
    assert_eq!(out.lines().count(), 4, "{out}");
}

/// The recorded value of INFO field `name`, from `record` output.
fn recorded(out: &str, name: &str) -> Vec<String> {
    out.lines()
        .flat_map(|line| {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            v["info"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|f| f[1] == name)
                .map(|f| f[2].as_str().unwrap().to_owned())
                .collect::<Vec<_>>()
        })
        .collect()
}

/// `record --redact` from a real master with a real replica: client names,
/// the replication peers' addresses and file paths are gone, counters and
/// states stay; a `?pass=` password never reaches the output or an error.
#[test]
fn record_redact_hides_names_peers_and_paths() {
    let master = Redis::start(&["--slowlog-log-slower-than", "0"]);
    let port = master.port.to_string();
    let replica = Redis::start(&["--replicaof", "127.0.0.1", &port]);
    wait_for("the replica to attach", Duration::from_secs(30), || {
        (info_field(&master, "replication", "connected_slaves") == "1").then_some(())
    });
    let mut conn = master.conn();
    redis::cmd("CLIENT")
        .arg("SETNAME")
        .arg("billing-api")
        .exec(&mut conn)
        .unwrap();
    redis::cmd("SET")
        .arg("user:1")
        .arg("s3cret")
        .exec(&mut conn)
        .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let record = |url: &str, redact: bool| {
        let mut cmd = lookout_cmd(tmp.path());
        cmd.args(["record", "--redis", url, "--polls", "1"]);
        if redact {
            cmd.arg("--redact");
        }
        run_to_end(cmd, Duration::from_secs(30))
    };
    let replica_addr = format!("ip=127.0.0.1,port={}", replica.port);

    // Without --redact the recording holds all of it.
    let (status, plain, err) = record(&master.url(), false);
    assert!(status.success(), "{err}");
    assert!(plain.contains("billing-api"), "{plain}");
    assert!(recorded(&plain, "slave0")[0].contains(&replica_addr));
    assert!(recorded(&plain, "executable")[0].starts_with('/'));

    let (status, out, err) = record(&master.url(), true);
    assert!(status.success(), "{err}");
    for secret in ["billing-api", "s3cret", &replica_addr] {
        assert!(!out.contains(secret), "{secret} in {out}");
    }
    let slave0 = &recorded(&out, "slave0")[0];
    assert!(
        slave0.starts_with("ip=?,port=?,state=") && slave0.contains(",offset="),
        "{slave0}"
    );
    assert_eq!(recorded(&out, "executable"), ["?"]);
    assert_eq!(recorded(&out, "connected_slaves"), ["1"]);
    assert_eq!(recorded(&out, "run_id"), recorded(&plain, "run_id"));

    // On the replica: the master's address.
    let (status, out, err) = record(&replica.url(), true);
    assert!(status.success(), "{err}");
    assert_eq!(recorded(&out, "master_host"), ["?"]);
    assert_eq!(recorded(&out, "master_port"), ["?"]);
    assert_eq!(recorded(&out, "role"), ["slave"]);

    // A password given as a query parameter is never printed.
    let (status, out, err) = record("unix:///nonexistent/redis.sock?db=0&pass=hunter2", true);
    assert!(!status.success());
    assert!(
        !out.contains("hunter2") && !err.contains("hunter2"),
        "{out}{err}"
    );
}

/// Out-of-range numbers on the command line or in lookout.toml are
/// refused naming the flag or key, never a panic (exit status 101).
#[test]
fn out_of_range_flags_are_refused_by_name() {
    let tmp = tempfile::tempdir().unwrap();
    for (args, flag) in [
        (&["record", "--polls", "0"][..], "--polls"),
        (&["record", "--every", "1e300"][..], "--every"),
        (&["record", "--every", "nan"][..], "--every"),
        (&["run", "--polls", "0"][..], "--polls"),
        (
            &["run", "--poll-interval", "0.0000001"][..],
            "--poll-interval",
        ),
    ] {
        let mut cmd = lookout_cmd(tmp.path());
        cmd.args(args);
        let (status, _, err) = run_to_end(cmd, Duration::from_secs(30));
        assert!(
            !status.success() && status.code() != Some(101),
            "{args:?}: {err}"
        );
        assert!(err.contains(flag), "{args:?}: {err}");
    }
    // The same through a config file: status 1 and the key, not a panic.
    let config = tmp.path().join("lookout.toml");
    for (text, key) in [
        ("[limits]\ninterval_s = 1e300\n", "limits.interval_s"),
        (
            "[limits]\nmemory_mib = 17592186044416\n",
            "limits.memory_mib",
        ),
        (
            "[limits.watchers.ticker]\ncall_deadline_ms = 9223372036854775807\n",
            "limits.watchers.ticker.call_deadline_ms",
        ),
        ("poll_interval = 1e300\n", "poll_interval"),
        ("[buffer]\nmax_mib = 0\n", "buffer.max_mib"),
    ] {
        std::fs::write(&config, text).unwrap();
        let mut cmd = lookout_cmd(tmp.path());
        cmd.arg("check")
            .arg(crate::support::fixture("ticker"))
            .arg("--lookout-config")
            .arg(&config);
        let (status, _, err) = run_to_end(cmd, Duration::from_secs(30));
        assert_eq!(status.code(), Some(1), "{text}: {err}");
        assert!(
            err.contains(key) && err.contains("out of range"),
            "{text}: {err}"
        );
    }
}

/// The SDK path a crate made by `lookout new` depends on.
fn sdk_dependency(root: &std::path::Path) -> String {
    let manifest = std::fs::read_to_string(root.join("Cargo.toml")).unwrap();
    manifest
        .lines()
        .find_map(|l| l.strip_prefix("lookout-watcher = { path = \""))
        .and_then(|rest| rest.strip_suffix("\" }"))
        .unwrap_or_else(|| panic!("no SDK path in {manifest}"))
        .to_owned()
}

/// `lookout new` writes the SDK path normalised: relative when the crate
/// sits inside the checkout the SDK belongs to (so it still builds when
/// the checkout moves), absolute otherwise; `--sdk` and `LOOKOUT_SDK` are
/// taken as given, and so is the SDK this binary was built beside.
#[test]
fn new_writes_a_normalised_sdk_path() {
    let tmp = tempfile::tempdir().unwrap();
    let checkout = tmp.path().join("checkout");
    let sdk = checkout.join("plugins/sdk");
    std::fs::create_dir_all(&sdk).unwrap();
    std::fs::write(
        sdk.join("Cargo.toml"),
        "[package]\nname = \"lookout-watcher\"\n",
    )
    .unwrap();
    let new = |name: &str, dir: &std::path::Path, sdk: Option<&std::path::Path>, env: bool| {
        let mut cmd = lookout_cmd(tmp.path());
        cmd.arg("new").arg(name).arg("--dir").arg(dir);
        match (sdk, env) {
            (Some(sdk), true) => {
                cmd.env("LOOKOUT_SDK", sdk);
            }
            (Some(sdk), false) => {
                cmd.arg("--sdk").arg(sdk);
            }
            (None, _) => {}
        }
        let (status, out, err) = run_to_end(cmd, Duration::from_secs(30));
        assert!(status.success(), "{out}{err}");
        dir.join(name)
    };

    // Inside the checkout: relative, and still right once it moved.
    let inside = new(
        "inside",
        &checkout.join("work"),
        Some(&checkout.join("work/../plugins/./sdk")),
        false,
    );
    assert_eq!(sdk_dependency(&inside), "../../plugins/sdk");
    let moved = tmp.path().join("moved");
    std::fs::rename(&checkout, &moved).unwrap();
    assert!(
        moved
            .join("work/inside/../../plugins/sdk/Cargo.toml")
            .is_file()
    );

    // Outside it: absolute and normalised, from LOOKOUT_SDK as from --sdk.
    let outside = tmp.path().join("outside");
    let from_env = new(
        "from-env",
        &outside,
        Some(&moved.join("work/../plugins/sdk")),
        true,
    );
    let absolute = moved.join("plugins/sdk").display().to_string();
    assert_eq!(sdk_dependency(&from_env), absolute);
    let from_flag = new(
        "from-flag",
        &outside,
        Some(&moved.join("plugins/sdk/.")),
        false,
    );
    assert_eq!(sdk_dependency(&from_flag), absolute);

    // The SDK of this checkout: absolute and normalised from outside it,
    // relative from inside it.
    let plugins_sdk = crate::support::repo().join("plugins/sdk");
    let same_sdk = |path: &std::path::Path| {
        assert_eq!(
            std::fs::canonicalize(path).unwrap(),
            std::fs::canonicalize(&plugins_sdk).unwrap()
        );
    };
    let default = new("default", &outside, None, false);
    let written = sdk_dependency(&default);
    assert!(
        written.starts_with('/') && !written.contains("/../") && !written.contains("/./"),
        "{written}"
    );
    same_sdk(std::path::Path::new(&written));
    let within = tempfile::tempdir_in(crate::support::repo().join("target")).unwrap();
    let default = new("default", within.path(), None, false);
    let written = sdk_dependency(&default);
    assert!(
        written.starts_with("../") && written.ends_with("plugins/sdk"),
        "{written}"
    );
    same_sdk(&default.join(&written));
}

/// `lookout test --expect` prints only the comparison (its `ok:` line or
/// the diff); `--print` prints the events too, as `lookout test` does
/// without `--expect`; `--help` says so.
#[test]
fn test_expect_prints_only_the_comparison() {
    let tmp = tempfile::tempdir().unwrap();
    let snapshot = r#"{"instance":"127.0.0.1:6400","taken_at_ms":1,"info":[["clients","connected_clients","1"]],"slowlog":[]}"#;
    let snapshots = tmp.path().join("snapshots.jsonl");
    std::fs::write(&snapshots, format!("{snapshot}\n{snapshot}\n")).unwrap();
    let expected = tmp.path().join("expected.jsonl");
    let test = |extra: &[&str]| {
        let mut cmd = lookout_cmd(tmp.path());
        cmd.arg("test")
            .arg(crate::support::fixture("ticker"))
            .arg("--snapshots")
            .arg(&snapshots)
            .args(["--set", "condition=ticking"])
            .args(extra);
        run_to_end(cmd, Duration::from_secs(60))
    };
    let (status, events, err) = test(&[]);
    assert!(status.success(), "{err}");
    assert_eq!(events.lines().count(), 2, "{events}");
    std::fs::write(&expected, &events).unwrap();
    let expect = expected.to_str().unwrap();

    let (status, out, err) = test(&["--expect", expect]);
    assert!(status.success(), "{err}");
    assert_eq!(out, "", "only the comparison");
    assert!(err.contains("ok: 2 events match"), "{err}");
    let (status, out, err) = test(&["--expect", expect, "--print"]);
    assert!(status.success(), "{err}");
    assert_eq!(out, events);
    assert!(err.contains("ok: 2 events match"), "{err}");

    std::fs::write(&expected, events.replace("\"resolved\"", "\"firing\"")).unwrap();
    let (status, out, err) = test(&["--expect", expect]);
    assert!(!status.success());
    assert_eq!(out, "", "only the comparison");
    assert!(err.contains("changed at snapshot 1 (condition):"), "{err}");

    let mut help = lookout_cmd(tmp.path());
    help.args(["test", "--help"]);
    let (status, out, err) = run_to_end(help, Duration::from_secs(30));
    assert!(status.success(), "{err}");
    assert!(out.contains("--print"), "{out}");
}

/// A bad key in a watcher's standalone settings file (`--config FILE` of
/// `check` and `test`, or `NAME.toml` beside the `.wasm`) or in `--set` is
/// named by that file or flag, not as a `[watchers.NAME]` table; one in a
/// daemon's lookout.toml still is.
#[test]
fn standalone_settings_errors_name_their_file() {
    let tmp = tempfile::tempdir().unwrap();
    let snapshots = tmp.path().join("snapshots.jsonl");
    std::fs::write(
        &snapshots,
        "{\"instance\":\"127.0.0.1:6400\",\"taken_at_ms\":1,\"info\":[],\"slowlog\":[]}\n",
    )
    .unwrap();
    let settings = tmp.path().join("ticker-settings.toml");
    std::fs::write(&settings, "treshold = 3\n").unwrap();
    let run = |args: &[&std::ffi::OsStr]| {
        let mut cmd = lookout_cmd(tmp.path());
        cmd.args(args);
        let (status, out, err) = run_to_end(cmd, Duration::from_secs(60));
        assert!(!status.success(), "{args:?}: {out}");
        err
    };
    let ticker = crate::support::fixture("ticker");
    let test = |extra: &[&std::ffi::OsStr]| {
        let mut args = vec![
            "test".as_ref(),
            ticker.as_os_str(),
            "--snapshots".as_ref(),
            snapshots.as_os_str(),
        ];
        args.extend_from_slice(extra);
        run(&args)
    };
    let file = settings.display().to_string();

    let err = run(&[
        "check".as_ref(),
        ticker.as_os_str(),
        "--config".as_ref(),
        settings.as_os_str(),
    ]);
    assert!(
        err.contains(&format!("{file}: unknown key `treshold`")),
        "{err}"
    );
    assert!(!err.contains("[watchers."), "{err}");
    let err = test(&["--config".as_ref(), settings.as_os_str()]);
    assert!(
        err.contains(&format!("{file}: unknown key `treshold`")),
        "{err}"
    );
    assert!(!err.contains("[watchers."), "{err}");
    let err = test(&["--set".as_ref(), "treshold=3".as_ref()]);
    assert!(err.contains("--set: unknown key `treshold`"), "{err}");
    assert!(!err.contains("[watchers."), "{err}");

    // Beside the .wasm.
    let beside = tmp.path().join("beside");
    std::fs::create_dir_all(&beside).unwrap();
    let wasm = beside.join("ticker.wasm");
    std::fs::copy(&ticker, &wasm).unwrap();
    std::fs::write(beside.join("ticker.toml"), "treshold = 3\n").unwrap();
    let side = beside.join("ticker.toml").display().to_string();
    let err = run(&["check".as_ref(), wasm.as_os_str()]);
    assert!(
        err.contains(&format!("{side}: unknown key `treshold`")),
        "{err}"
    );
    assert!(!err.contains("[watchers."), "{err}");

    // A daemon's lookout.toml names its table; the standalone file beside
    // it keeps its own name.
    let daemon = tmp.path().join("lookout.toml");
    std::fs::write(&daemon, "[watchers.ticker]\ntreshold = 3\n").unwrap();
    let err = test(&["--lookout-config".as_ref(), daemon.as_os_str()]);
    assert!(
        err.contains(&format!(
            "{} [watchers.ticker]: unknown key `treshold`",
            daemon.display()
        )),
        "{err}"
    );
    std::fs::write(&daemon, "[watchers.ticker]\ncondition = 'ticking'\n").unwrap();
    let err = test(&[
        "--lookout-config".as_ref(),
        daemon.as_os_str(),
        "--config".as_ref(),
        settings.as_os_str(),
    ]);
    assert!(
        err.contains(&format!("{file}: unknown key `treshold`")),
        "{err}"
    );
    assert!(!err.contains("[watchers."), "{err}");
}

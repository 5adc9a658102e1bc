//! Start-up errors exit non-zero and name the file or key and the fix; a
//! bad watcher file is skipped and reported while the others run (with
//! `--strict` it stops start-up); files copied in during start-up are
//! loaded; signals during start-up and reload end the daemon cleanly;
//! `lookout check` describes a good watcher.

use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use crate::support::{
    BUNDLED, Lookout, Redis, STREAM, bundled, by_target, config_file, extra_watcher, fixture,
    lookout_cmd, plugins_dir, plugins_with, run_lookout, run_to_end, wait_for,
};

fn fails_with(args: &[&str], env: &[(&str, &str)], cache: &Path, needles: &[&str]) -> String {
    let mut cmd = lookout_cmd(cache);
    cmd.args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let (status, _out, err) = run_to_end(cmd, Duration::from_secs(30));
    assert!(!status.success(), "expected failure for {args:?}: {err}");
    for needle in needles {
        assert!(
            err.contains(needle),
            "stderr should mention `{needle}`: {err}"
        );
    }
    err
}

/// `lookout run --config CONFIG --plugins PLUGINS` fails mentioning `needles`.
fn fails_with_config(config: &Path, plugins: &Path, needles: &[&str]) -> String {
    let cache = config.parent().unwrap();
    let args = [
        "run",
        "--config",
        config.to_str().unwrap(),
        "--plugins",
        plugins.to_str().unwrap(),
    ];
    fails_with(&args, &[], cache, needles)
}

/// An unknown key in lookout.toml names the file and the key.
#[test]
fn unknown_config_key() {
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("lookout.toml");
    std::fs::write(&config, "pol_interval = 3\n").unwrap();
    let plugins = bundled(tmp.path());
    fails_with_config(&config, &plugins, &["lookout.toml", "pol_interval"]);
}

/// A bad URL is named, with its password hidden.
#[test]
fn bad_url() {
    let tmp = tempfile::tempdir().unwrap();
    let err = fails_with(
        &["run", "--plugins", bundled(tmp.path()).to_str().unwrap()],
        &[("REDIS_URL", "http://user:hunter2@example")],
        tmp.path(),
        &["REDIS_URL", "scheme `http`"],
    );
    assert!(!err.contains("hunter2"), "{err}");
}

/// A missing plugins folder is named with the fix.
#[test]
fn missing_plugins_folder() {
    let tmp = tempfile::tempdir().unwrap();
    fails_with(
        &["run", "--plugins", "/nonexistent/plugins"],
        &[],
        tmp.path(),
        &["/nonexistent/plugins", "make plugins"],
    );
}

/// With `--strict`, files that are not watcher components are refused,
/// each with its reason.
#[test]
fn invalid_components_are_refused_with_strict() {
    let tmp = tempfile::tempdir().unwrap();
    let whole = std::fs::read(fixture("ticker")).unwrap();
    let truncated = &whole[..whole.len() / 2];
    let cases: [(&str, Option<&str>, &[u8], &str); 5] = [
        ("cut", None, truncated, "not a valid WebAssembly component"),
        ("notes", None, b"this is not wasm", "not a WebAssembly file"),
        (
            "core",
            None,
            b"\0asm\x01\0\0\0",
            "core WebAssembly module, not a component",
        ),
        ("other", Some("wrong-world"), b"", "not a Lookout watcher"),
        (
            "future",
            Some("future-version"),
            b"",
            "built for lookout:watcher@0.5.0",
        ),
    ];
    for (name, fixture_name, bytes, needle) in cases {
        let dir = tmp.path().join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let wasm = dir.join(format!("{name}.wasm"));
        match fixture_name {
            Some(f) => {
                std::fs::copy(fixture(f), &wasm).unwrap();
            }
            None => std::fs::write(&wasm, bytes).unwrap(),
        }
        fails_with(
            &["run", "--strict", "--plugins", dir.to_str().unwrap()],
            &[("REDIS_URL", "redis://127.0.0.1:1")],
            tmp.path(),
            &[wasm.to_str().unwrap(), needle],
        );
    }
}

/// With `--strict`, a watcher setting the manifest does not declare, a
/// mistyped one, and a value the watcher rejects are each named with their
/// file and key. A `[watchers.NAME]` table naming no watcher stops
/// start-up with or without `--strict`: it is a mistake in lookout.toml.
#[test]
fn bad_watcher_settings() {
    let tmp = tempfile::tempdir().unwrap();
    let plugins = plugins_with(tmp.path(), &["client-delta"], &[]);
    let side = plugins.join("client-delta.toml");
    let run = ["run", "--strict", "--plugins", plugins.to_str().unwrap()];
    std::fs::write(&side, "treshold = 3\n").unwrap();
    fails_with(
        &run,
        &[],
        tmp.path(),
        &["client-delta.toml", "treshold", "threshold"],
    );
    std::fs::write(&side, "threshold = 'high'\n").unwrap();
    fails_with(
        &run,
        &[],
        tmp.path(),
        &["client-delta.toml", "threshold", "expected an integer"],
    );
    std::fs::write(&side, "threshold = -3\n").unwrap();
    fails_with(&run, &[], tmp.path(), &["client-delta", "threshold"]);
    std::fs::remove_file(&side).unwrap();
    let config = tmp.path().join("lookout.toml");
    std::fs::write(&config, "[watchers.nosuch]\nx = 1\n").unwrap();
    fails_with_config(&config, &plugins, &["lookout.toml", "[watchers.nosuch]"]);
}

/// With `--strict`, a `.wasm` over the size cap is refused before it is
/// read.
#[test]
fn oversized_component() {
    let tmp = tempfile::tempdir().unwrap();
    let plugins = plugins_with(tmp.path(), &["client-delta"], &[]);
    let config = tmp.path().join("lookout.toml");
    std::fs::write(
        &config,
        "[limits.watchers.client-delta]\nmax_wasm_mib = 1\n",
    )
    .unwrap();
    std::fs::write(plugins.join("client-delta.wasm"), vec![0u8; 2 << 20]).unwrap();
    let args = [
        "run",
        "--strict",
        "--config",
        config.to_str().unwrap(),
        "--plugins",
        plugins.to_str().unwrap(),
    ];
    fails_with(
        &args,
        &[],
        tmp.path(),
        &["client-delta.wasm", "max_wasm_mib"],
    );
}

/// `lookout check --config` applies settings and reports a rejected one.
#[test]
fn check_applies_and_rejects_settings() {
    let tmp = tempfile::tempdir().unwrap();
    let side = tmp.path().join("settings.toml");
    std::fs::write(&side, "threshold = -1\n").unwrap();
    let mut cmd = lookout_cmd(tmp.path());
    cmd.arg("check")
        .arg(plugins_dir().join("client-delta.wasm"))
        .arg("--config")
        .arg(&side);
    let (status, _out, err) = run_to_end(cmd, Duration::from_secs(30));
    assert!(!status.success());
    assert!(err.contains("threshold"), "{err}");
    std::fs::write(&side, "threshold = 9\n").unwrap();
    let mut cmd = lookout_cmd(tmp.path());
    cmd.arg("check")
        .arg(plugins_dir().join("client-delta.wasm"))
        .arg("--config")
        .arg(&side);
    let (status, out, err) = run_to_end(cmd, Duration::from_secs(30));
    assert!(status.success(), "{err}");
    assert!(
        out.contains("ok: configured") && out.contains("runs: every poll"),
        "{out}"
    );
}

/// `lookout check` prints the manifest and succeeds for a good watcher.
#[test]
fn check_describes_a_watcher() {
    let tmp = tempfile::tempdir().unwrap();
    let mut cmd = lookout_cmd(tmp.path());
    cmd.arg("check")
        .arg(plugins_dir().join("client-delta.wasm"));
    let (status, out, err) = run_to_end(cmd, Duration::from_secs(30));
    assert!(status.success(), "{err}");
    assert!(out.contains("client-delta 0.1.0"), "{out}");
    assert!(out.contains("threshold (an integer, default 5)"), "{out}");
    assert!(out.contains("connected_clients"), "{out}");
}

/// The host's own envelopes in the stream of `redis`.
fn host_envelopes(redis: &Redis) -> Vec<Value> {
    by_target(&redis.stream(STREAM), "lookout")
}

/// The host envelopes whose `msg` contains `needle`.
fn host_saying(redis: &Redis, needle: &str) -> Vec<Value> {
    host_envelopes(redis)
        .into_iter()
        .filter(|e| e["msg"].as_str().unwrap().contains(needle))
        .collect()
}

/// Waits until a host envelope says `needle` and returns it.
fn wait_saying(redis: &Redis, needle: &str, deadline: Duration) -> Value {
    wait_for(&format!("an envelope saying `{needle}`"), deadline, || {
        host_saying(redis, needle).into_iter().next()
    })
}

/// Without `--strict`, start-up behaves like a reload: every bad watcher
/// file (a cut component, text, a core module, another world, a future
/// version, a setting the watcher does not declare, a file over its size
/// cap) is skipped with one error envelope and one log line naming the
/// file, the reason and the fix, and the good watcher polls on. A SIGHUP
/// reload does not report the same files again; SIGTERM exits 0.
#[test]
fn bad_files_are_skipped_and_the_others_run() {
    let redis = Redis::start(&[]);
    let tmp = tempfile::tempdir().unwrap();
    let plugins = plugins_with(tmp.path(), &["client-delta"], &["ticker"]);
    let whole = std::fs::read(fixture("ticker")).unwrap();
    std::fs::write(plugins.join("cut.wasm"), &whole[..whole.len() / 2]).unwrap();
    std::fs::write(plugins.join("notes.wasm"), b"this is not wasm").unwrap();
    std::fs::write(plugins.join("core.wasm"), b"\0asm\x01\0\0\0").unwrap();
    std::fs::copy(fixture("wrong-world"), plugins.join("other.wasm")).unwrap();
    std::fs::copy(fixture("future-version"), plugins.join("future.wasm")).unwrap();
    std::fs::write(plugins.join("client-delta.toml"), "treshold = 3\n").unwrap();
    std::fs::write(plugins.join("big.wasm"), vec![0u8; (2 << 20) + 1]).unwrap();
    let config = config_file(tmp.path(), "[limits.watchers.big]\nmax_wasm_mib = 1\n");
    let mut lookout = run_lookout(
        tmp.path(),
        &redis.url(),
        &plugins,
        &["--config", config.to_str().unwrap()],
    );
    let cases = [
        ("cut", "not a valid WebAssembly component"),
        ("notes", "not a WebAssembly file"),
        ("core", "core WebAssembly module, not a component"),
        ("other", "not a Lookout watcher"),
        ("future", "built for lookout:watcher@0.5.0"),
        ("client-delta", "treshold"),
        ("big", "set max_wasm_mib = 3 in [limits.watchers.big]"),
    ];
    lookout.wait_started();
    wait_for("the ticker's events", Duration::from_secs(30), || {
        (by_target(&redis.stream(STREAM), "ticker").len() >= 3).then_some(())
    });
    for (name, needle) in cases {
        let file = plugins.join(format!("{name}.wasm"));
        let file = file.to_str().unwrap();
        let env = wait_saying(
            &redis,
            &format!("watcher {name} not loaded"),
            Duration::from_secs(30),
        );
        assert_eq!(env["level"], "error", "{env}");
        assert_eq!(env["fields"]["watcher"], name, "{env}");
        assert_eq!(env["fields"]["file"], file, "{env}");
        let msg = env["msg"].as_str().unwrap();
        assert!(msg.contains(needle), "`{needle}` in {msg}");
        assert!(
            msg.contains("max_wasm_mib") || msg.contains(&format!("fix or remove {file}")),
            "the fix in {msg}"
        );
        let logged = lookout.stderr.matching(&format!("file={file}"));
        assert!(
            logged
                .iter()
                .any(|l| l.contains("not loaded") && l.contains(needle)),
            "a log line names {file} and `{needle}`: {logged:?}"
        );
    }
    let client_delta = host_saying(&redis, "watcher client-delta not loaded");
    assert!(
        client_delta[0]["msg"]
            .as_str()
            .unwrap()
            .contains("client-delta.toml"),
        "the settings file is named: {}",
        client_delta[0]
    );
    assert!(host_saying(&redis, "watcher ticker 0.1.0 loaded").len() == 1);

    // A reload finds nothing new: the same files are not reported again.
    lookout.signal("-HUP");
    wait_for(
        "the SIGHUP reload to finish",
        Duration::from_secs(30),
        || (!lookout.stderr.matching("reloading watchers").is_empty()).then_some(()),
    );
    let before = by_target(&redis.stream(STREAM), "ticker").len();
    wait_for(
        "more ticks after the reload",
        Duration::from_secs(30),
        || (by_target(&redis.stream(STREAM), "ticker").len() > before + 3).then_some(()),
    );
    for (name, _) in cases {
        let reports = host_saying(&redis, &format!("watcher {name} not loaded"));
        assert_eq!(reports.len(), 1, "{name} reported once: {reports:#?}");
    }
    assert!(lookout.alive());
    assert!(lookout.terminate().success());
}

/// With no loadable watcher the daemon still starts: it warns (log and
/// envelope), keeps polling and watches the folder, and a watcher copied
/// in later runs.
#[test]
fn no_loadable_watcher_keeps_watching_the_folder() {
    let redis = Redis::start(&[]);
    let tmp = tempfile::tempdir().unwrap();
    let plugins = tmp.path().join("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    std::fs::write(plugins.join("notes.wasm"), b"this is not wasm").unwrap();
    let mut lookout = run_lookout(tmp.path(), &redis.url(), &plugins, &[]);
    lookout.wait_started();
    let warning = wait_saying(&redis, "no watchers loaded", Duration::from_secs(30));
    assert_eq!(warning["level"], "warn", "{warning}");
    assert!(
        warning["msg"]
            .as_str()
            .unwrap()
            .contains("watching the folder"),
        "{warning}"
    );
    assert!(!lookout.stderr.matching("no watchers loaded").is_empty());
    wait_saying(&redis, "watcher notes not loaded", Duration::from_secs(30));

    std::fs::copy(fixture("ticker"), plugins.join("ticker.wasm")).unwrap();
    wait_saying(
        &redis,
        "watcher ticker 0.1.0 loaded",
        Duration::from_secs(30),
    );
    wait_for("the ticker's events", Duration::from_secs(30), || {
        by_target(&redis.stream(STREAM), "ticker").first().cloned()
    });
    assert!(lookout.alive());
    assert!(lookout.terminate().success());
}

/// Watcher files copied (plainly, not renamed into place) into the plugins
/// folder while the daemon starts are all loaded, whether they arrive
/// before the folder is listed, while it is listed, or after.
#[test]
fn files_copied_in_during_start_up_are_loaded() {
    let redis = Redis::start(&[]);
    let tmp = tempfile::tempdir().unwrap();
    let plugins = plugins_with(tmp.path(), &BUNDLED, &[]);
    let ticker = std::fs::read(fixture("ticker")).unwrap();
    let mut lookout = run_lookout(tmp.path(), &redis.url(), &plugins, &[]);
    // One copy after the other from the moment the process starts until
    // its start-up loads are done (at most 60).
    let mut names = Vec::new();
    while names.len() < 60 && lookout.stderr.matching("watchers ready").is_empty() {
        let name = format!("t{}", names.len());
        std::fs::write(plugins.join(format!("{name}.wasm")), &ticker).unwrap();
        names.push(name);
        std::thread::sleep(Duration::from_millis(3)); // pacing the copies, not a wait
    }
    assert!(!names.is_empty());
    // Every "loaded" envelope, gathered as they come: sixty tickers fill
    // the stream (MAXLEN ~ 10000) fast enough that the oldest are trimmed
    // within a minute.
    let mut unseen: std::collections::BTreeSet<String> = names.into_iter().collect();
    wait_for(
        "an envelope saying `watcher tN 0.1.0 loaded` for every copy",
        Duration::from_secs(60),
        || {
            for e in host_envelopes(&redis) {
                let msg = e["msg"].as_str().unwrap();
                if let Some(name) = msg
                    .strip_prefix("watcher ")
                    .and_then(|m| m.strip_suffix(" 0.1.0 loaded"))
                {
                    unseen.remove(name);
                }
            }
            unseen.is_empty().then_some(())
        },
    );
    assert!(lookout.alive());
    assert!(lookout.terminate().success());
}

/// What `make test` leaves in `plugins/`: the bundled watchers and the
/// 17.5 MiB Python hit-ratio, within the default 32 MiB file cap. The docs'
/// `lookout run` (no lookout.toml) starts all four, with no error.
#[test]
fn readme_run_starts_after_make_test() {
    let redis = Redis::start(&[]);
    let tmp = tempfile::tempdir().unwrap();
    let plugins = bundled(tmp.path());
    std::fs::copy(extra_watcher("hit-ratio"), plugins.join("hit-ratio.wasm")).unwrap();
    let config = config_file(tmp.path(), "# nothing\n");
    let mut cmd = lookout_cmd(tmp.path());
    cmd.args(["run", "--poll-interval", "0.2", "--plugins"])
        .arg(&plugins)
        .arg("--config")
        .arg(&config)
        // Shared with `make test-extra`, so the 17.5 MiB component is
        // compiled once per build, not once per test.
        .arg("--cache-dir")
        .arg(crate::support::repo().join("target/golden-cache"))
        .env("REDIS_URL", redis.url());
    let mut lookout = Lookout::spawn(cmd);
    // A cold compile of hit-ratio takes seconds alone, several times that
    // beside other tests on a small machine.
    for name in BUNDLED.iter().chain(&["hit-ratio"]) {
        wait_saying(
            &redis,
            &format!("watcher {name} 0.1.0 loaded"),
            Duration::from_secs(120),
        );
    }
    assert!(host_saying(&redis, "not loaded").is_empty());
    assert!(
        lookout.stderr.matching("ERROR").is_empty(),
        "{:?}",
        lookout.stderr.matching("ERROR")
    );
    assert!(lookout.alive());
    assert!(lookout.terminate().success());
}

/// Signals while watchers compile: with an empty compile cache the 17.5
/// MiB hit-ratio takes seconds to compile at start-up. SIGHUP then does not
/// end the daemon (its reload runs once the start-up loads are done);
/// SIGTERM during a reload, and SIGTERM or SIGINT during the start-up
/// compile, end it with status 0.
#[test]
fn signals_during_start_up_and_reload_end_cleanly() {
    let redis = Redis::start(&[]);
    let tmp = tempfile::tempdir().unwrap();
    let plugins = plugins_with(tmp.path(), &[], &["ticker"]);
    std::fs::copy(extra_watcher("hit-ratio"), plugins.join("hit-ratio.wasm")).unwrap();
    let config = config_file(
        tmp.path(),
        "[limits.watchers.hit-ratio]\nmax_wasm_mib = 18\n",
    );
    let spawn = |cache: &str| {
        let cache = tmp.path().join(cache);
        std::fs::create_dir_all(&cache).unwrap();
        let lookout = run_lookout(
            &cache,
            &redis.url(),
            &plugins,
            &["--config", config.to_str().unwrap()],
        );
        wait_for("lookout to start loading", Duration::from_secs(30), || {
            (!lookout.stderr.matching("lookout started").is_empty()).then_some(())
        });
        lookout
    };
    let compiling = |lookout: &Lookout| lookout.stderr.matching("watchers ready").is_empty();

    // SIGTERM, then SIGINT, during the cold start-up compile.
    for (signal, cache) in [("-TERM", "cold-1"), ("-INT", "cold-2")] {
        let mut lookout = spawn(cache);
        assert!(compiling(&lookout), "hit-ratio still compiling");
        lookout.signal(signal);
        let status = lookout.wait_exit(Duration::from_secs(30));
        assert!(
            status.success(),
            "{signal} during start-up exits 0: {status:?}"
        );
    }

    // SIGHUP during the cold start-up compile: the daemon runs on and
    // reloads once the start-up loads are done.
    let mut lookout = spawn("cold-3");
    assert!(compiling(&lookout), "hit-ratio still compiling");
    lookout.signal("-HUP");
    wait_for("SIGHUP to be logged", Duration::from_secs(30), || {
        (!lookout.stderr.matching("SIGHUP received").is_empty()).then_some(())
    });
    assert!(
        lookout.alive(),
        "SIGHUP during start-up does not end the daemon"
    );
    wait_for(
        "the start-up loads and the reload",
        Duration::from_secs(120),
        || {
            (!compiling(&lookout) && !lookout.stderr.matching("reloading watchers").is_empty())
                .then_some(())
        },
    );
    wait_saying(
        &redis,
        "watcher hit-ratio 0.1.0 loaded",
        Duration::from_secs(30),
    );

    // SIGTERM during a reload (settling, then compiling a new watcher).
    let reloads = lookout.stderr.matching("reloading watchers").len();
    std::fs::copy(fixture("slow-ticker"), plugins.join("slow.wasm")).unwrap();
    wait_for("the reload to begin", Duration::from_secs(30), || {
        (lookout.stderr.matching("reloading watchers").len() > reloads).then_some(())
    });
    let status = lookout.terminate();
    assert!(
        status.success(),
        "SIGTERM during a reload exits 0: {status:?}"
    );
}

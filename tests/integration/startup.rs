//! Start-up errors exit non-zero and name the file or key and the fix;
//! `lookout check` describes a good watcher.

use std::path::Path;
use std::time::Duration;

use crate::support::{bundled, fixture, lookout_cmd, plugins_dir, plugins_with, run_to_end};

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

/// Files that are not watcher components are refused, each with its reason.
#[test]
fn invalid_components_are_refused() {
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
            "built for lookout:watcher@0.3.0",
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
            &["run", "--plugins", dir.to_str().unwrap()],
            &[("REDIS_URL", "redis://127.0.0.1:1")],
            tmp.path(),
            &[wasm.to_str().unwrap(), needle],
        );
    }
}

/// A watcher setting the manifest does not declare, a mistyped one, and a
/// value the watcher rejects are each named with their file and key.
#[test]
fn bad_watcher_settings() {
    let tmp = tempfile::tempdir().unwrap();
    let plugins = plugins_with(tmp.path(), &["client-delta"], &[]);
    let side = plugins.join("client-delta.toml");
    let run = ["run", "--plugins", plugins.to_str().unwrap()];
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

/// A `.wasm` over the size cap is refused before it is read.
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
    fails_with_config(&config, &plugins, &["client-delta.wasm", "max_wasm_mib"]);
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

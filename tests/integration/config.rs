//! `lookout config`: the settings `lookout run` would use with the same
//! flags, environment and file, each with where it came from (default,
//! file, environment, flag), and never a password.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::ExitStatus;
use std::time::Duration;

use serde_json::{Value, json};

use crate::support::*;

/// `lookout config ARGS` with the environment `env`, run to its end.
fn config(cache: &Path, args: &[&str], env: &[(&str, &str)]) -> (ExitStatus, String, String) {
    let mut cmd = lookout_cmd(cache);
    cmd.arg("config").args(args).env_remove("LOOKOUT_SHARD");
    for (k, v) in env {
        cmd.env(k, v);
    }
    run_to_end(cmd, Duration::from_secs(30))
}

/// A file setting some keys, `POLL_INTERVAL` and a `REDIS_URL` with a
/// password in the environment, `--service` on the command line: every
/// key shows the value `lookout run` would use and the layer it came from
/// (the environment over the file, a flag over both, `[limits]` and
/// `[tls]` inherited where a table does not set them), as JSON lines and
/// as a table; the passwords of the URLs and of the password file are
/// printed nowhere.
#[test]
fn every_setting_with_where_it_came_from_and_no_password() {
    let tmp = tempfile::tempdir().unwrap();
    let password_file = tmp.path().join("sentinel.password");
    std::fs::write(&password_file, "file-secret-3\n").unwrap();
    let file = tmp.path().join("lookout.toml");
    std::fs::write(
        &file,
        format!(
            "poll_interval = 9\nservice = 'from-file'\nslowlog_count = 64\n\
             [publish]\nurl = 'redis://:bus-secret-2@127.0.0.1:1'\n\
             [buffer]\nmax_mib = 4\n\
             [tls]\nserver_name = 'redis.internal'\n\
             [limits]\nmemory_mib = 32\n\
             [limits.watchers.slowlog]\nevery_polls = 2\n\
             [[discover]]\nsentinel = 'redis://127.0.0.1:26379'\nmaster = 'm'\n\
             password_file = '{}'\n",
            password_file.display()
        ),
    )
    .unwrap();
    let file = file.to_str().unwrap();
    let env = [
        ("REDIS_URL", "redis://:env-secret-1@127.0.0.1:2"),
        ("POLL_INTERVAL", "0.5"),
    ];
    let (status, out, err) = config(
        tmp.path(),
        &["--config", file, "--service", "from-flag", "--json"],
        &env,
    );
    assert!(status.success(), "{err}");
    let shown: BTreeMap<String, (Value, String)> = out
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            let source = v["source"].as_str().unwrap().to_owned();
            (
                v["key"].as_str().unwrap().to_owned(),
                (v["value"].clone(), source),
            )
        })
        .collect();
    for (key, value, source) in [
        ("poll_interval", json!(0.5), "environment"),
        (
            "redis_url",
            json!("redis://:***@127.0.0.1:2"),
            "environment",
        ),
        ("service", json!("from-flag"), "flag"),
        ("slowlog_count", json!(64), "file"),
        ("connect_timeout", json!(2.0), "default"),
        ("metrics_addr", Value::Null, "default"),
        ("publish.url", json!("redis://:***@127.0.0.1:1"), "file"),
        ("publish.stream_key", json!("logs:stream:redis"), "default"),
        ("buffer.max_mib", json!(4), "file"),
        ("buffer.max_envelopes", json!(10_000), "default"),
        ("tls.server_name", json!("redis.internal"), "file"),
        ("limits.memory_mib", json!(32), "file"),
        ("limits.watchers.slowlog.every_polls", json!(2), "file"),
        ("limits.watchers.slowlog.memory_mib", json!(32), "file"),
        ("limits.watchers.slowlog.max_events", json!(100), "default"),
        (
            "discover[0].sentinel",
            json!("redis://127.0.0.1:26379"),
            "file",
        ),
        ("discover[0].refresh_s", json!(30.0), "default"),
        (
            "discover[0].password_file",
            json!(password_file.display().to_string()),
            "file",
        ),
    ] {
        assert_eq!(
            shown.get(key),
            Some(&(value, source.to_owned())),
            "{key} in\n{out}"
        );
    }
    let (status, table, err) = config(tmp.path(), &["--config", file], &env);
    assert!(status.success(), "{err}");
    let mut lines = table.lines();
    let head = lines.next().unwrap();
    assert!(
        head.starts_with("KEY ") && head.contains(" VALUE "),
        "{table}"
    );
    let source_at = head.find("SOURCE").unwrap();
    let row = lines.find(|l| l.starts_with("poll_interval ")).unwrap();
    assert_eq!(row.find("environment"), Some(source_at), "{table}");
    assert!(row.contains(" 0.5 "), "{table}");
    for text in [&out, &err, &table] {
        for secret in ["env-secret-1", "bus-secret-2", "file-secret-3"] {
            assert!(!text.contains(secret), "{secret} printed:\n{text}");
        }
    }
}

/// Settings `lookout run` refuses are refused the same way: exit 1, the
/// key and the file named.
#[test]
fn bad_settings_are_refused_as_run_refuses_them() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("lookout.toml");
    std::fs::write(&file, "slowlog_count = 0\n").unwrap();
    let (status, out, err) = config(tmp.path(), &["--config", file.to_str().unwrap()], &[]);
    assert_eq!(status.code(), Some(1), "{out}");
    assert!(
        err.contains("key `slowlog_count` in") && err.contains("lookout.toml"),
        "{err}"
    );
}

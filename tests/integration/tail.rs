//! `lookout tail`: the stream followed from its start, from now and in a
//! consumer group, filtered, as JSON lines and as coloured lines in a
//! pseudo-terminal, across a bus outage and until a signal; over TLS and
//! mutual TLS; hostile text escaped in both formats; and no secret from
//! the environment in any `--help`.

use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};

use crate::support::*;

/// XADDs an envelope in the publisher's layout and returns it as JSON.
fn add(redis: &Redis, key: &str, level: &str, target: &str, instance: &str, msg: &str) -> Value {
    let n: u64 = redis::cmd("XLEN")
        .arg(key)
        .query(&mut redis.conn())
        .unwrap();
    let env = json!({
        "v": 2,
        "id": format!("0190000{n}-0000-7000-8000-000000000000"),
        "ts": format!("2026-11-22T20:41:0{n}.513Z"),
        "service": "redis",
        "host": "cache-3",
        "level": level,
        "pid": 4242,
        "target": target,
        "msg": msg,
        "fields": {"instance": instance, "n": n, "why": "two words"},
    });
    xadd(redis, key, &env);
    env
}

/// XADDs `env` in the publisher's layout: scalars as strings, `fields` as
/// a JSON object string.
fn xadd(redis: &Redis, key: &str, env: &Value) {
    let mut cmd = redis::cmd("XADD");
    cmd.arg(key).arg("*");
    for (k, v) in env.as_object().unwrap() {
        let text = v.as_str().map_or_else(|| v.to_string(), ToOwned::to_owned);
        cmd.arg(k).arg(text);
    }
    cmd.query::<String>(&mut redis.conn()).unwrap();
}

/// The four envelopes of most tests: two instances, four levels, three
/// targets.
fn add_four(redis: &Redis) -> Vec<Value> {
    vec![
        add(redis, STREAM, "info", "slowlog", "127.0.0.1:6379", "first"),
        add(
            redis,
            STREAM,
            "warn",
            "client-delta",
            "127.0.0.1:6379",
            "second",
        ),
        add(redis, STREAM, "error", "lookout", "10.0.0.1:6380", "third"),
        add(redis, STREAM, "debug", "slowlog", "10.0.0.1:6380", "fourth"),
    ]
}

/// `lookout tail ARGS` on `redis`'s bus, with no inherited configuration.
fn tail_cmd(tmp: &std::path::Path, redis: &Redis, args: &[&str]) -> Command {
    let mut cmd = lookout_cmd(tmp);
    cmd.env_remove("NO_COLOR")
        .args(["tail", "--redis-url", &redis.url()])
        .args(args);
    cmd
}

/// Runs `lookout tail ARGS` to its exit (`--count`) and returns its stdout
/// lines parsed as JSON.
fn tail_json(tmp: &std::path::Path, redis: &Redis, args: &[&str]) -> Vec<Value> {
    let (status, out, err) = run_to_end(tail_cmd(tmp, redis, args), Duration::from_secs(20));
    assert!(status.success(), "{status}: {err}");
    out.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// Waits until a client is blocked in `command` (lower case) on `redis`.
fn wait_blocked(redis: &Redis, command: &str) {
    let needle = format!("cmd={command} ");
    wait_for(
        &format!("a client blocked in {command}"),
        Duration::from_secs(20),
        || {
            let list: String = redis::cmd("CLIENT")
                .arg("LIST")
                .query(&mut redis.conn())
                .unwrap();
            list.lines()
                .any(|l| l.contains(&needle) && l.contains("flags=b"))
                .then_some(())
        },
    );
}

/// From the start, every envelope comes out as published (the stream
/// entry's fields back in their JSON types), in order; `--level` keeps
/// that level and above, `--target` and `--instance` (repeatable) keep
/// those named.
#[test]
fn json_lines_from_the_start_and_filters() {
    let tmp = tempfile::tempdir().unwrap();
    let redis = Redis::start(&[]);
    let all = add_four(&redis);
    let from_start = ["--json", "--from-start", "--count"];
    let got = tail_json(tmp.path(), &redis, &[&from_start[..], &["4"]].concat());
    assert_eq!(got, all);
    for env in &got {
        assert_envelope(env);
    }
    let warn = tail_json(
        tmp.path(),
        &redis,
        &[&from_start[..], &["2", "--level", "warn"]].concat(),
    );
    assert_eq!(warn, [all[1].clone(), all[2].clone()]);
    let slowlog = tail_json(
        tmp.path(),
        &redis,
        &[&from_start[..], &["2", "--target", "slowlog"]].concat(),
    );
    assert_eq!(slowlog, [all[0].clone(), all[3].clone()]);
    let combined = tail_json(
        tmp.path(),
        &redis,
        &[
            &from_start[..],
            &[
                "1",
                "--instance",
                "10.0.0.1:6380",
                "--target",
                "slowlog",
                "--target",
                "x",
            ],
        ]
        .concat(),
    );
    assert_eq!(combined, [all[3].clone()]);
}

/// Without `--from-start` only entries added after it started are
/// printed; a stream entry that is not an envelope is reported on stderr
/// and skipped. Stdout not being a terminal means JSON without `--json`.
#[test]
fn follows_new_entries_only() {
    let tmp = tempfile::tempdir().unwrap();
    let redis = Redis::start(&[]);
    add_four(&redis);
    let mut tail = Lookout::spawn(tail_cmd(tmp.path(), &redis, &["--count", "1"]));
    wait_blocked(&redis, "xread");
    redis::cmd("XADD")
        .arg(STREAM)
        .arg("*")
        .arg("junk")
        .arg("1")
        .query::<String>(&mut redis.conn())
        .unwrap();
    let new = add(&redis, STREAM, "info", "ticker", "127.0.0.1:6379", "new");
    let status = tail.wait_exit(Duration::from_secs(20));
    assert!(status.success(), "{status}");
    let out = tail.stdout.all();
    assert_eq!(out.len(), 1, "{out:?}");
    assert_eq!(serde_json::from_str::<Value>(&out[0]).unwrap(), new);
    let err = tail.stderr.all().join("\n");
    assert!(err.contains("is not an envelope: no `v` field"), "{err}");
}

/// `--group` creates the group (and the stream) when missing, reads as a
/// consumer of it and acknowledges what it printed: a second member of the
/// group continues where the first stopped and nothing stays pending.
#[test]
fn consumer_group_reads_and_acknowledges() {
    let tmp = tempfile::tempdir().unwrap();
    let redis = Redis::start(&[]);
    let all = add_four(&redis);
    let group = ["--json", "--group", "ops", "--from-start", "--count"];
    let first = tail_json(tmp.path(), &redis, &[&group[..], &["3"]].concat());
    assert_eq!(first, all[..3]);
    let second = tail_json(tmp.path(), &redis, &[&group[..], &["1"]].concat());
    assert_eq!(second, all[3..]);
    let pending: Vec<Value> = redis::cmd("XPENDING")
        .arg(STREAM)
        .arg("ops")
        .query::<redis::Value>(&mut redis.conn())
        .map(|v| match v {
            redis::Value::Array(items) => items
                .into_iter()
                .map(|i| match i {
                    redis::Value::Int(n) => json!(n),
                    _ => Value::Null,
                })
                .collect(),
            _ => Vec::new(),
        })
        .unwrap();
    assert_eq!(pending[0], json!(0), "nothing pending: {pending:?}");

    // A missing stream is created with the group; only new entries follow.
    let mut tail = Lookout::spawn(tail_cmd(
        tmp.path(),
        &redis,
        &["--group", "g2", "--stream", "other", "--count", "1"],
    ));
    wait_blocked(&redis, "xreadgroup");
    let new = add(&redis, "other", "warn", "slowlog", "127.0.0.1:6379", "new");
    assert!(tail.wait_exit(Duration::from_secs(20)).success());
    assert_eq!(
        serde_json::from_str::<Value>(&tail.stdout.all()[0]).unwrap(),
        new
    );
}

/// On a terminal (a pseudo-terminal from `script`), lines are aligned
/// (`HH:MM:SS.mmm LEVEL  instance  target  msg  key=value`) and coloured per
/// level; NO_COLOR turns the colours off; escape sequences in a message are
/// shown escaped, never sent to the terminal.
#[test]
fn human_lines_on_a_terminal() {
    let tmp = tempfile::tempdir().unwrap();
    let redis = Redis::start(&[]);
    add_four(&redis);
    add(
        &redis,
        STREAM,
        "warn",
        "memory-pressure",
        "127.0.0.1:6379",
        "clear\x1b[2J",
    );
    let bin = env!("CARGO_BIN_EXE_lookout");
    let run = |no_color: bool| {
        let mut cmd = Command::new("script");
        lookout_env(&mut cmd, tmp.path());
        cmd.env_remove("NO_COLOR");
        if no_color {
            cmd.env("NO_COLOR", "1");
        }
        cmd.args(["-qfec"])
            .arg(format!(
                "{bin} tail --redis-url {} --from-start --count 5",
                redis.url()
            ))
            .arg("/dev/null");
        let (status, out, err) = run_to_end(cmd, Duration::from_secs(20));
        assert!(status.success(), "script needs util-linux: {status} {err}");
        out.lines()
            .map(|l| l.trim_end_matches('\r').to_owned())
            .collect::<Vec<_>>()
    };
    let coloured = run(false);
    assert_eq!(coloured.len(), 5, "{coloured:?}");
    for (line, code) in coloured.iter().zip([
        "\x1b[32mINFO ",
        "\x1b[33mWARN ",
        "\x1b[1;31mERROR",
        "\x1b[34mDEBUG",
    ]) {
        assert!(line.contains(code), "{code:?} in {line:?}");
    }
    assert!(!coloured[4].contains("\x1b[2J"), "{:?}", coloured[4]);
    let plain = run(true);
    assert!(plain.iter().all(|l| !l.contains('\x1b')), "{plain:?}");
    assert_eq!(
        plain,
        [
            "20:41:00.513 INFO   127.0.0.1:6379  slowlog          first  n=0  why=\"two words\"",
            "20:41:01.513 WARN   127.0.0.1:6379  client-delta     second  n=1  why=\"two words\"",
            "20:41:02.513 ERROR  10.0.0.1:6380   lookout          third  n=2  why=\"two words\"",
            "20:41:03.513 DEBUG  10.0.0.1:6380   slowlog          fourth  n=3  why=\"two words\"",
            "20:41:04.513 WARN   127.0.0.1:6379  memory-pressure  clear\\u{1b}[2J  n=4  why=\"two words\"",
        ]
    );
}

/// While the bus does not answer, one stderr line says so (password
/// hidden) and tail retries; once the bus is back it prints what arrives.
/// SIGTERM and SIGINT end it with status 0.
#[test]
fn rides_out_a_bus_outage_and_exits_0_on_signals() {
    let tmp = tempfile::tempdir().unwrap();
    let mut redis = Redis::start(&[]);
    redis.kill();
    let secret = format!("redis://:hunter2@127.0.0.1:{}", redis.port);
    let mut cmd = lookout_cmd(tmp.path());
    cmd.args([
        "tail",
        "--json",
        "--from-start",
        "--count",
        "1",
        "--bus",
        &secret,
    ]);
    let mut tail = Lookout::spawn(cmd);
    let line = wait_for("the outage line", Duration::from_secs(20), || {
        tail.stderr.matching("does not answer").pop()
    });
    assert!(
        line.contains(&format!("redis://:***@127.0.0.1:{}", redis.port)),
        "{line}"
    );
    assert!(!line.contains("hunter2"), "{line}");
    assert!(tail.terminate().success(), "SIGTERM exits 0");

    let mut cmd = lookout_cmd(tmp.path());
    cmd.args(["tail", "--json", "--from-start", "--count", "1"])
        .env("REDIS_URL", redis.url());
    let mut tail = Lookout::spawn(cmd);
    wait_for("the outage line", Duration::from_secs(20), || {
        tail.stderr.matching("does not answer").pop()
    });
    redis.restart();
    let env = add(&redis, STREAM, "info", "slowlog", "127.0.0.1:6379", "back");
    assert!(tail.wait_exit(Duration::from_secs(30)).success());
    assert_eq!(
        serde_json::from_str::<Value>(&tail.stdout.all()[0]).unwrap(),
        env
    );
    let err = tail.stderr.all().join("\n");
    assert_eq!(err.matches("does not answer").count(), 1, "{err}");
    assert!(err.contains("answers again"), "{err}");

    let mut tail = Lookout::spawn(tail_cmd(tmp.path(), &redis, &[]));
    wait_blocked(&redis, "xread");
    tail.signal("-INT");
    assert!(
        tail.wait_exit(Duration::from_secs(10)).success(),
        "SIGINT exits 0"
    );
}

/// The bus and stream key come from `[publish]` of the config, as for
/// `lookout run`; a refused command ends tail with the reason.
#[test]
fn bus_and_stream_from_the_config() {
    let tmp = tempfile::tempdir().unwrap();
    let bus = Redis::start(&[]);
    let config = bus_config(
        tmp.path(),
        &bus,
        "redis_url = 'redis://127.0.0.1:1'",
        "stream_key = 'events'",
    );
    let env = add(&bus, "events", "warn", "slowlog", "127.0.0.1:6379", "here");
    let mut cmd = lookout_cmd(tmp.path());
    cmd.args(["tail", "--from-start", "--count", "1", "--config"])
        .arg(&config);
    let (status, out, err) = run_to_end(cmd, Duration::from_secs(20));
    assert!(status.success(), "{err}");
    assert_eq!(serde_json::from_str::<Value>(&out).unwrap(), env);

    redis::cmd("SET")
        .arg("plain")
        .arg("x")
        .query::<()>(&mut bus.conn())
        .unwrap();
    let (status, _, err) = run_to_end(
        tail_cmd(tmp.path(), &bus, &["--stream", "plain", "--from-start"]),
        Duration::from_secs(20),
    );
    assert!(!status.success());
    assert!(
        err.contains("reading the stream plain on redis://127.0.0.1:"),
        "{err}"
    );
    assert!(err.contains("WRONGTYPE"), "{err}");
}

/// Writes `text` as `etc/lookout.toml` (every test has its own `tmp`).
fn write_config(tmp: &std::path::Path, text: &str) -> std::path::PathBuf {
    let dir = tmp.join("etc");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("lookout.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// `lookout tail --from-start --count 1 ARGS` to its exit: (success,
/// stdout, stderr).
fn tail_once(tmp: &std::path::Path, args: &[&str]) -> (bool, String, String) {
    let mut cmd = lookout_cmd(tmp);
    cmd.args(["tail", "--from-start", "--count", "1"])
        .args(args);
    let (status, out, err) = run_to_end(cmd, Duration::from_secs(30));
    (status.success(), out, err)
}

/// A TLS bus with a private CA: read with `[publish] url` and `[publish]
/// tls` (`ca_file`, `server_name`), with `--bus` and `[tls]`, and with
/// `--redis-url` and `[tls]` (the watched Redis is the bus); without
/// `ca_file` the certificate is refused and tail exits at once with a
/// message naming `tls.ca_file` and the bus, its password hidden.
#[test]
fn reads_a_tls_bus_with_a_private_ca() {
    let tmp = tempfile::tempdir().unwrap();
    let certs = crate::tls::Certs::generate(tmp.path(), true);
    let (bus, tls_port) = crate::tls::tls_redis(&certs, false);
    let env = add(&bus, STREAM, "warn", "slowlog", "127.0.0.1:6379", "secure");
    let ca = certs.path("ca.crt");
    let bus_url = format!("rediss://127.0.0.1:{tls_port}");

    let config = write_config(
        tmp.path(),
        &format!(
            "redis_url = 'redis://127.0.0.1:1'\n[publish]\nurl = '{bus_url}'\n\
             tls = {{ ca_file = '{ca}', server_name = 'redis.test' }}\n"
        ),
    );
    let config = config.display().to_string();
    let (ok, out, err) = tail_once(tmp.path(), &["--config", &config]);
    assert!(ok, "[publish] tls: {err}");
    assert_eq!(serde_json::from_str::<Value>(&out).unwrap(), env);

    let config = write_config(
        tmp.path(),
        &format!("redis_url = 'redis://127.0.0.1:1'\n[tls]\nca_file = '{ca}'\n"),
    );
    let config = config.display().to_string();
    let (ok, out, err) = tail_once(tmp.path(), &["--config", &config, "--bus", &bus_url]);
    assert!(ok, "--bus with [tls]: {err}");
    assert_eq!(serde_json::from_str::<Value>(&out).unwrap(), env);
    let (ok, out, err) = tail_once(tmp.path(), &["--config", &config, "--redis-url", &bus_url]);
    assert!(ok, "--redis-url with [tls]: {err}");
    assert_eq!(serde_json::from_str::<Value>(&out).unwrap(), env);

    // No CA: refused, not retried.
    let secret = format!("rediss://:hunter2@127.0.0.1:{tls_port}");
    let (ok, out, err) = tail_once(tmp.path(), &["--bus", &secret]);
    assert!(!ok && out.is_empty(), "{out}\n{err}");
    assert!(err.contains("tls.ca_file"), "{err}");
    assert!(
        err.contains(&format!("rediss://:***@127.0.0.1:{tls_port}")),
        "{err}"
    );
    assert!(!err.contains("hunter2"), "{err}");
    assert!(!err.contains("retrying"), "{err}");
}

/// A bus that asks for a client certificate: read with `cert_file` and
/// `key_file`; without them tail exits with a message that the server may
/// require one, naming `tls.cert_file`.
#[test]
fn reads_a_mutual_tls_bus() {
    let tmp = tempfile::tempdir().unwrap();
    let certs = crate::tls::Certs::generate(tmp.path(), true);
    let (bus, tls_port) = crate::tls::tls_redis(&certs, true);
    let env = add(&bus, STREAM, "info", "slowlog", "127.0.0.1:6379", "mutual");
    let (ca, cert, key) = (
        certs.path("ca.crt"),
        certs.path("client.crt"),
        certs.path("client.key"),
    );
    let config = write_config(
        tmp.path(),
        &format!(
            "redis_url = 'redis://127.0.0.1:1'\n\
             [tls]\nca_file = '{ca}'\ncert_file = '{cert}'\nkey_file = '{key}'\n\
             [publish]\nurl = 'rediss://127.0.0.1:{tls_port}'\n"
        ),
    );
    let config = config.display().to_string();
    let (ok, out, err) = tail_once(tmp.path(), &["--config", &config]);
    assert!(ok, "{err}");
    assert_eq!(serde_json::from_str::<Value>(&out).unwrap(), env);

    let config = write_config(
        tmp.path(),
        &format!(
            "redis_url = 'redis://127.0.0.1:1'\n[tls]\nca_file = '{ca}'\n\
             [publish]\nurl = 'rediss://127.0.0.1:{tls_port}'\n"
        ),
    );
    let config = config.display().to_string();
    let (ok, out, err) = tail_once(tmp.path(), &["--config", &config]);
    assert!(!ok && out.is_empty(), "{out}\n{err}");
    assert!(
        err.contains("client certificate") && err.contains("tls.cert_file"),
        "{err}"
    );
    assert!(!err.contains("retrying"), "{err}");
}

/// Text anyone who can write to the stream controls: an escape sequence,
/// a C1 CSI, a right-to-left override, an isolate, a zero-width space and
/// a newline in `target`, `msg`, a field name and a field value (and the
/// first three in `ts`).
const HOSTILE: &str = "x\x1b[31m\u{9b}1m\u{202e}\u{2066}\u{200b}\ny";

/// Whether `c` would act on a terminal rather than show.
fn acts(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}'
        )
}

/// Hostile text in every field reaches neither a pipe (JSON, C1 escaped,
/// the same value) nor a terminal (human lines, everything escaped) raw.
#[test]
fn hostile_text_is_escaped_in_both_formats() {
    let tmp = tempfile::tempdir().unwrap();
    let redis = Redis::start(&[]);
    let env = json!({
        "v": 2,
        "id": "01900000-0000-7000-8000-000000000000",
        "ts": "2026-11-22T\x1b[31m\u{9b}\u{202e}.5Z",
        "service": "redis",
        "host": "cache-3",
        "level": "error",
        "pid": 4242,
        "target": HOSTILE,
        "msg": HOSTILE,
        "fields": {"instance": "127.0.0.1:6379", HOSTILE: HOSTILE},
    });
    xadd(&redis, STREAM, &env);

    let (status, out, err) = run_to_end(
        tail_cmd(tmp.path(), &redis, &["--from-start", "--count", "1"]),
        Duration::from_secs(20),
    );
    assert!(status.success(), "{err}");
    assert!(!out.chars().any(char::is_control), "{out:?}");
    assert!(out.contains("\\u009b") && out.contains("\\u001b"), "{out}");
    assert_eq!(serde_json::from_str::<Value>(&out).unwrap(), env);

    let bin = env!("CARGO_BIN_EXE_lookout");
    let mut cmd = Command::new("script");
    lookout_env(&mut cmd, tmp.path());
    cmd.env("NO_COLOR", "1")
        .args(["-qfec"])
        .arg(format!(
            "{bin} tail --redis-url {} --from-start --count 1",
            redis.url()
        ))
        .arg("/dev/null");
    let (status, out, err) = run_to_end(cmd, Duration::from_secs(20));
    assert!(status.success(), "script needs util-linux: {status} {err}");
    let line = out.trim_end_matches(['\r', '\n']);
    assert!(!line.chars().any(acts), "{line:?}");
    let shown = r"x\u{1b}[31m\u{9b}1m\u{202e}\u{2066}\u{200b}\ny";
    // The time part of the timestamp, then target, msg and the field.
    assert!(
        line.starts_with(r"\u{1b}[31m\u{9b}\u{202e}.5 ERROR"),
        "{line:?}"
    );
    assert!(
        line.ends_with(&format!("  {shown}  {shown}  {shown}=\"{shown}\"")),
        "{line:?}"
    );
}

/// `--help` shows which variables a flag reads, never their values: a
/// password in REDIS_URL (or anything in the others) stays out of it.
#[test]
fn help_shows_no_environment_values() {
    let tmp = tempfile::tempdir().unwrap();
    for sub in ["run", "tail", "targets", "record", "check", "test", "new"] {
        let mut cmd = lookout_cmd(tmp.path());
        cmd.args([sub, "--help"])
            .env("REDIS_URL", "redis://:hunter2@h:1")
            .env("LOOKOUT_CONFIG", "/etc/hunter2/lookout.toml")
            .env("LOOKOUT_SHARD", "hunter2")
            .env("POLL_INTERVAL", "hunter2")
            .env("LOOKOUT_SDK", "/hunter2");
        let (status, out, err) = run_to_end(cmd, Duration::from_secs(20));
        assert!(status.success(), "{sub}: {err}");
        assert!(out.contains("Usage: lookout"), "{sub}: {out}");
        assert!(
            !out.contains("hunter2") && !err.contains("hunter2"),
            "{sub}:\n{out}\n{err}"
        );
        if sub != "new" {
            assert!(
                out.contains("[env: REDIS_URL]") || out.contains("[env: LOOKOUT_CONFIG]"),
                "{sub}: {out}"
            );
        }
    }
}

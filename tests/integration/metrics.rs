//! `--metrics-addr`: /metrics in the Prometheus text format, read with a
//! Prometheus parser, and /healthz turning 503 with a reason when polls
//! stop completing or the publisher is stuck, 200 again on recovery;
//! target names with quotes, backslashes and newlines keep the scrape valid
//! for `promtool check metrics` and read back as they were written.

use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::Duration;

use prometheus_parse::{Scrape, Value};

use crate::support::*;

/// `GET path` on `port`: the status code and the body.
fn get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let status = response.split(' ').nth(1)?.parse().ok()?;
    let body = response.split_once("\r\n\r\n")?.1.to_owned();
    Some((status, body))
}

fn scrape(port: u16) -> Scrape {
    let (status, body) = get(port, "/metrics").expect("/metrics answers");
    assert_eq!(status, 200, "{body}");
    Scrape::parse(body.lines().map(|l| Ok(l.to_owned()))).expect("Prometheus text")
}

/// The value of the sample `metric` whose labels include `labels`.
fn value(scrape: &Scrape, metric: &str, labels: &[(&str, &str)]) -> Option<f64> {
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == metric)
        .filter(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .find_map(|s| match s.value {
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => Some(v),
            _ => None,
        })
}

/// The `/healthz` answer once its status is `want`.
fn health(port: u16, want: u16) -> String {
    wait_for(&format!("/healthz {want}"), Duration::from_secs(30), || {
        get(port, "/healthz").and_then(|(status, body)| (status == want).then_some(body))
    })
}

/// Polls, watcher calls and deliveries move between two scrapes, the
/// build is labelled, and /healthz follows the daemon's state: 503 naming
/// the stale targets while the watched Redis is stopped (SIGSTOP), 503
/// naming the publisher while the bus is down, 200 after each recovery.
#[test]
fn metrics_and_health_follow_the_daemon() {
    let (watched, mut bus) = (Redis::start(&[]), Redis::start(&[]));
    let tmp = tempfile::tempdir().unwrap();
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let config = bus_config(tmp.path(), &bus, "response_timeout = 0.5", "");
    let plugins = plugins_with(tmp.path(), &[], &["ticker"]);
    let mut lookout = run_lookout(
        tmp.path(),
        &watched.url(),
        &plugins,
        &[
            "--config",
            config.to_str().unwrap(),
            "--poll-interval",
            "0.3",
            "--metrics-addr",
            &addr,
        ],
    );
    lookout.wait_started();
    let target = format!("127.0.0.1:{}", watched.port);
    let t = [("target", target.as_str())];
    let tw = [("target", target.as_str()), ("watcher", "ticker")];

    let first = wait_for(
        "a scrape with a ticker call",
        Duration::from_secs(30),
        || {
            let s = scrape(port);
            (value(&s, "lookout_watcher_calls_total", &tw)? >= 1.0).then_some(s)
        },
    );
    let build = first
        .samples
        .iter()
        .find(|s| s.metric == "lookout_build_info")
        .expect("build_info");
    assert_eq!(build.labels.get("version"), Some(env!("CARGO_PKG_VERSION")));
    assert!(
        build
            .labels
            .get("abi")
            .unwrap()
            .starts_with("lookout:watcher@")
    );
    assert_eq!(value(&first, "lookout_target_up", &t), Some(1.0));
    let polls = value(&first, "lookout_polls_total", &t).unwrap();
    let calls = value(&first, "lookout_watcher_calls_total", &tw).unwrap();
    let second = wait_for("polls and calls to move", Duration::from_secs(30), || {
        let s = scrape(port);
        (value(&s, "lookout_polls_total", &t)? > polls
            && value(&s, "lookout_watcher_calls_total", &tw)? > calls
            && value(&s, "lookout_envelopes_delivered_total", &[])? > 0.0)
            .then_some(s)
    });
    let info = [("level", "info")];
    assert!(
        value(
            &second,
            "lookout_watcher_events_total",
            &[tw[0], tw[1], info[0]]
        )
        .unwrap()
            >= 1.0
    );
    assert_eq!(
        value(&second, "lookout_watcher_quarantined", &tw),
        Some(0.0)
    );
    assert_eq!(value(&second, "lookout_breaker_state", &[]), Some(0.0));
    assert_eq!(value(&second, "lookout_probe_errors_total", &t), Some(0.0));
    assert!(health(port, 200).contains(r#""status":"ok""#));

    // The watched Redis stops answering: no poll completes.
    let pid = info_field(&watched, "server", "process_id");
    signal_pid("-STOP", &pid);
    let body = health(port, 503);
    wait_for("a failed poll", Duration::from_secs(30), || {
        let s = scrape(port);
        (value(&s, "lookout_probe_errors_total", &t)? >= 1.0
            && value(&s, "lookout_target_up", &t)? == 0.0)
            .then_some(())
    });
    signal_pid("-CONT", &pid);
    assert!(
        body.contains("no poll completed") && body.contains("1 of 1 targets"),
        "{body}"
    );
    health(port, 200);
    assert_eq!(value(&scrape(port), "lookout_target_up", &t), Some(1.0));

    // The bus goes away: envelopes wait in the outbox.
    bus.kill();
    let body = health(port, 503);
    assert!(
        body.contains("publisher:") && body.contains("envelopes waiting"),
        "{body}"
    );
    let s = scrape(port);
    assert!(value(&s, "lookout_outbox_envelopes", &[]).unwrap() >= 1.0);
    bus.restart();
    health(port, 200);
    assert!(lookout.terminate().success());
}

/// A label value as the text format writes it, read back strictly: `\\`,
/// `\"` and `\n` are the only escapes, and a bare quote or newline is not
/// allowed. `None` for anything else.
fn unescape(raw: &str) -> Option<String> {
    let mut out = String::new();
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.push(match chars.next()? {
                '\\' => '\\',
                '"' => '"',
                'n' => '\n',
                _ => return None,
            }),
            '"' | '\n' => return None,
            c => out.push(c),
        }
    }
    Some(out)
}

/// `promtool check metrics` of `text`: its exit code (0 clean, 1 not
/// parseable, 3 parsed with lint problems) and what it said.
fn promtool_check(text: &str) -> (Option<i32>, String) {
    let mut child = match Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(child) => child,
        Err(e) => panic!(
            "promtool cannot run ({e}): `make promtool` installs it (Debian package prometheus)"
        ),
    };
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code(), said)
}

/// Whether promtool's lint problems are only the one the OpenMetrics
/// format always draws from a linter of the older text format: a counter
/// family `F` declared once, its sample named `F_total`.
fn only_total_suffix_lints(said: &str, body: &str) -> bool {
    said.lines().filter(|l| !l.trim().is_empty()).all(|line| {
        line.strip_suffix("_total no help text")
            .is_some_and(|family| body.contains(&format!("# TYPE {family} counter\n")))
    })
}

/// Targets named with a double quote, backslashes and a newline: the
/// scrape of /metrics parses with `promtool check metrics` (Prometheus's
/// own parser; its only lint is the `_total` naming every OpenMetrics
/// counter draws), and the `target` label values, parsed with
/// prometheus-parse and unescaped by the text format's rules, are exactly
/// the names. Without the escaping a name like `we"ird\name` made the
/// whole scrape unparseable.
#[test]
fn hostile_target_names_keep_the_scrape_valid() {
    let (code, said) =
        promtool_check("# HELP probe A probe.\n# TYPE probe gauge\nprobe{a=\"b\"} 1\n");
    assert_eq!(code, Some(0), "promtool rejects a valid scrape: {said}");
    let (code, said) =
        promtool_check("# HELP probe A probe.\n# TYPE probe gauge\nprobe{a=\"we\"ird\"} 1\n");
    assert_eq!(code, Some(1), "an unescaped quote: {said}");
    assert!(said.contains("label value"), "{said}");

    let watched = Redis::start(&[]);
    let tmp = tempfile::tempdir().unwrap();
    let port = free_port();
    let names = ["we\"ird\\name", "two\nlines", "C:\\dir\\", "plain"];
    let toml_string = |s: &str| serde_json::to_string(s).unwrap();
    let targets: String = names
        .iter()
        .enumerate()
        .map(|(db, name)| {
            format!(
                "[[targets]]\nname = {}\nurl = '{}/{db}'\n",
                toml_string(name),
                watched.url()
            )
        })
        .collect();
    let config = config_file(
        tmp.path(),
        &format!("metrics_addr = '127.0.0.1:{port}'\n{targets}"),
    );
    let plugins = plugins_with(tmp.path(), &[], &["ticker"]);
    let mut lookout = run_config(tmp.path(), &plugins, &config, &[]);
    lookout.wait_started();

    let want: HashSet<String> = names.iter().map(|n| (*n).to_owned()).collect();
    // Each target's ticker series, however its name is written.
    let body = wait_for(
        "the ticker's series of every target in /metrics",
        Duration::from_secs(30),
        || {
            let (status, body) = get(port, "/metrics")?;
            assert_eq!(status, 200, "{body}");
            (body.matches("lookout_watcher_calls_total{").count() == names.len()).then_some(body)
        },
    );
    let (code, said) = promtool_check(&body);
    assert!(
        code == Some(0) || (code == Some(3) && only_total_suffix_lints(&said, &body)),
        "promtool check metrics exited {code:?}: {said}\n{body}"
    );
    let scrape = Scrape::parse(body.lines().map(|l| Ok(l.to_owned()))).unwrap();
    let called: HashSet<String> = scrape
        .samples
        .iter()
        .filter(|s| s.metric == "lookout_watcher_calls_total")
        .filter_map(|s| s.labels.get("target").and_then(unescape))
        .collect();
    assert_eq!(called, want, "the names read back");
    for sample in &scrape.samples {
        if let Some(raw) = sample.labels.get("target") {
            let value =
                unescape(raw).unwrap_or_else(|| panic!("not escaped by the text format: {raw:?}"));
            assert!(want.contains(&value), "{}: target {value:?}", sample.metric);
        }
    }
    let up: HashSet<String> = scrape
        .samples
        .iter()
        .filter(|s| s.metric == "lookout_target_up")
        .filter_map(|s| s.labels.get("target").and_then(unescape))
        .collect();
    assert_eq!(up, want, "one series per name");
    assert!(lookout.terminate().success());
}

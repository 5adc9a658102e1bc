//! The status page and its API at `--metrics-addr`, against real
//! redis-servers: `/api/v1/status` follows a target killed and restarted,
//! a quarantined watcher and firing conditions; `lookout alerts` prints
//! them (a table, or JSON lines) and names the address and the reason when
//! no daemon answers; the page, loaded in headless Chromium, names the
//! targets and the active conditions, and shows a hostile target name and
//! a watcher message with markup as text. With `LOOKOUT_SCREENSHOT` set it
//! writes the page's screenshot to docs/status.png.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, SystemTime};

use serde_json::Value;

use crate::support::*;

/// `GET path` on `port`: the status code and the body (a chunked body
/// joined).
fn get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let status = response.split(' ').nth(1)?.parse().ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    let chunked = head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    if !chunked {
        return Some((status, body.to_owned()));
    }
    let (mut rest, mut joined) = (body, String::new());
    loop {
        let (size, after) = rest.split_once("\r\n")?;
        let size = usize::from_str_radix(size.split(';').next()?.trim(), 16).ok()?;
        if size == 0 {
            return Some((status, joined));
        }
        joined.push_str(after.get(..size)?);
        rest = after.get(size + 2..)?;
    }
}

/// `/api/v1/status` (with `query`) parsed, once it answers 200.
fn status(port: u16, query: &str) -> Option<Value> {
    let (code, body) = get(port, &format!("/api/v1/status{query}"))?;
    (code == 200).then(|| serde_json::from_str(&body).expect("the status is JSON"))
}

/// The target `key` of a status.
fn target<'a>(status: &'a Value, key: &str) -> Option<&'a Value> {
    status["targets"]
        .as_array()?
        .iter()
        .find(|t| t["key"] == key)
}

/// The active conditions of a status of `watcher` and `kind`.
fn conditions<'a>(status: &'a Value, watcher: &str, kind: &str) -> Vec<&'a Value> {
    status["conditions"]
        .as_array()
        .map(|all| {
            all.iter()
                .filter(|c| c["watcher"] == watcher && c["kind"] == kind)
                .collect()
        })
        .unwrap_or_default()
}

/// Whether `watcher` is quarantined on target `key`.
fn quarantined(status: &Value, key: &str, watcher: &str) -> bool {
    target(status, key)
        .and_then(|t| t["watchers"].as_array())
        .is_some_and(|ws| {
            ws.iter()
                .any(|w| w["name"] == watcher && w["quarantined"] == true)
        })
}

fn rfc3339(text: &Value) -> SystemTime {
    humantime::parse_rfc3339(text.as_str().expect("an RFC 3339 string"))
        .unwrap_or_else(|e| panic!("{text}: {e}"))
}

/// `lookout alerts ARGS`: exit status, stdout, stderr.
fn alerts(tmp: &Path, args: &[&str]) -> (std::process::ExitStatus, String, String) {
    let mut cmd = lookout_cmd(tmp);
    cmd.arg("alerts").args(args);
    run_to_end(cmd, Duration::from_secs(60))
}

/// Headless Chromium (a profile of its own under `tmp`) with `args`;
/// its stdout.
fn chromium(tmp: &Path, args: &[&str]) -> String {
    let profile = tempfile::tempdir_in(tmp).unwrap();
    let mut cmd = Command::new("chromium");
    cmd.args([
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--hide-scrollbars",
    ])
    .arg(format!("--user-data-dir={}", profile.path().display()))
    .args(args);
    let (exit, stdout, stderr) = run_to_end(cmd, Duration::from_secs(180));
    assert!(
        exit.success(),
        "chromium (Debian package chromium, installed by `make deps`) failed: {stderr}"
    );
    stdout
}

/// The part of `dom` from the element with id `id` to the next element of
/// another of the page's section ids (or the end).
fn section<'a>(dom: &'a str, id: &str) -> &'a str {
    const IDS: [&str; 7] = [
        "summary",
        "conditions",
        "targets",
        "bus",
        "alertmanager",
        "events-chart",
        "lateness-chart",
    ];
    let start = dom
        .find(&format!("id=\"{id}\""))
        .unwrap_or_else(|| panic!("no #{id} in the page: {dom}"));
    let end = IDS
        .iter()
        .filter(|other| **other != id)
        .filter_map(|other| dom[start..].find(&format!("id=\"{other}\"")))
        .min()
        .map_or(dom.len(), |at| start + at);
    &dom[start..end]
}

/// The status follows the daemon: both targets up, the looper quarantined
/// on `orders` (the host's `watcher-quarantined`), the ticker's
/// `queue-full` firing on both (it runs once: `interval_s` of a week);
/// `orders` killed is `down`, with `target-unreachable` (the newest)
/// after `[alerts] for_s`, and `up` again without it once restarted.
/// `lookout alerts` prints the same conditions, from the flag's address or
/// the config's `metrics_addr`.
#[test]
fn the_status_follows_a_killed_target_a_quarantine_and_conditions() {
    let mut orders = Redis::start(&[]);
    let cache = Redis::start(&[]);
    let bus = Redis::start(&[]);
    let tmp = tempfile::tempdir().unwrap();
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let plugins = plugins_with(tmp.path(), &[], &["ticker", "looper"]);
    let config = config_file(
        tmp.path(),
        &format!(
            "[[targets]]\nname = 'orders'\nurl = '{}'\nlabels = {{ role = 'master' }}\n\
             [[targets]]\nname = 'cache'\nurl = '{}'\nwatchers = ['ticker']\n\
             [publish]\nurl = '{}'\n[alerts]\nfor_s = 0.4\n\
             [limits]\nquarantine_after = 2\n[limits.watchers.looper]\ncall_deadline_ms = 50\n\
             [limits.watchers.ticker]\ninterval_s = 604800\n\
             [watchers.ticker]\ncondition = 'queue-full'\nlabel = 'jobs'\n",
            orders.url(),
            cache.url(),
            bus.url()
        ),
    );
    let mut lookout = run_config(tmp.path(), &plugins, &config, &["--metrics-addr", &addr]);
    lookout.wait_started();

    let s = wait_for(
        "both targets up, the looper quarantined, three conditions",
        Duration::from_secs(60),
        || {
            let s = status(port, "")?;
            let up = |key| target(&s, key).is_some_and(|t| t["state"] == "up");
            (up("orders")
                && up("cache")
                && quarantined(&s, "orders", "looper")
                && conditions(&s, "ticker", "queue-full").len() == 2
                && conditions(&s, "lookout", "watcher-quarantined").len() == 1)
                .then_some(s)
        },
    );
    assert_eq!(s["version"], env!("CARGO_PKG_VERSION"), "{s}");
    assert!(rfc3339(&s["started_at"]) <= rfc3339(&s["now"]), "{s}");
    let summary = &s["summary"];
    assert_eq!(summary["targets"], 2, "{s}");
    assert_eq!(summary["watched"], 2, "{s}");
    assert_eq!(summary["down"], 0, "{s}");
    assert_eq!(summary["quarantined"], 1, "{s}");
    assert_eq!(summary["conditions"], 3, "{s}");
    assert_eq!(
        (s["page"].as_u64(), s["pages"].as_u64()),
        (Some(1), Some(1))
    );
    let o = target(&s, "orders").unwrap();
    assert_eq!(o["instance"], format!("127.0.0.1:{}", orders.port), "{o}");
    assert_eq!(o["labels"]["role"], "master", "{o}");
    rfc3339(&o["last_poll"]);
    assert!(o["lateness_ms"].is_u64(), "{o}");
    let names: Vec<&str> = o["watchers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["name"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"ticker") && names.contains(&"looper"),
        "{o}"
    );
    assert!(!quarantined(&s, "cache", "ticker"), "{s}");

    let all = s["conditions"].as_array().unwrap();
    for c in all {
        let fingerprint = c["fingerprint"].as_str().unwrap();
        assert!(
            fingerprint.len() == 16 && fingerprint.chars().all(|h| h.is_ascii_hexdigit()),
            "{c}"
        );
        assert!(c["age_s"].is_u64(), "{c}");
    }
    let started: Vec<SystemTime> = all.iter().map(|c| rfc3339(&c["started_at"])).collect();
    assert!(
        started.windows(2).all(|w| w[0] >= w[1]),
        "newest first: {s}"
    );
    let q = conditions(&s, "lookout", "watcher-quarantined")[0];
    assert_eq!(
        (q["key"].as_str(), q["target"].as_str()),
        (Some("looper"), Some("orders"))
    );
    let tick = conditions(&s, "ticker", "queue-full")
        .into_iter()
        .find(|c| c["target"] == "orders")
        .expect("the ticker's condition on orders");
    assert_eq!(tick["key"], "jobs", "{tick}");
    assert_eq!(tick["message"], "jobs 1", "{tick}");
    assert_eq!(tick["labels"]["role"], "master", "{tick}");

    assert_eq!(
        s["bus"]["instance"],
        format!("127.0.0.1:{}", bus.port),
        "{s}"
    );
    assert_eq!(s["bus"]["breaker"], "closed", "{s}");
    assert_eq!(s["alertmanager"], serde_json::json!([]), "{s}");
    let events = &s["events_per_minute"];
    for level in ["debug", "info", "warn", "error"] {
        assert_eq!(events[level].as_array().map(Vec::len), Some(60), "{s}");
    }
    let info: u64 = events["info"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_u64)
        .sum();
    assert!(info >= 2, "the ticker's two events at least: {s}");
    assert_eq!(
        s["lateness_per_minute_ms"].as_array().map(Vec::len),
        Some(60)
    );

    // Paged: one target a page.
    let second = status(port, "?page=2&per_page=1").expect("page 2");
    assert_eq!(
        (
            second["page"].as_u64(),
            second["pages"].as_u64(),
            second["per_page"].as_u64()
        ),
        (Some(2), Some(2), Some(1)),
        "{second}"
    );
    assert_eq!(second["targets"].as_array().map(Vec::len), Some(1));
    let fingerprints = |s: &Value| -> Vec<Value> {
        s["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["fingerprint"].clone())
            .collect()
    };
    assert_eq!(
        fingerprints(&second),
        fingerprints(&s),
        "conditions are not paged"
    );

    // `lookout alerts --json`: the API's conditions, one a line.
    let (exit, out, err) = alerts(tmp.path(), &["--json", "--metrics-addr", &addr]);
    assert!(exit.success(), "{err}");
    let lines: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect();
    assert_eq!(lines.len(), 3, "{out}");
    assert!(
        lines.iter().any(|c| c["watcher"] == "ticker"
            && c["kind"] == "queue-full"
            && c["target"] == "orders"),
        "{out}"
    );
    // The table, with the address from the config's `metrics_addr`.
    let own = tmp.path().join("alerts.toml");
    std::fs::write(&own, format!("metrics_addr = '{addr}'\n")).unwrap();
    let (exit, out, err) = alerts(tmp.path(), &["-c", own.to_str().unwrap()]);
    assert!(exit.success(), "{err}");
    let rows: Vec<&str> = out.lines().collect();
    assert!(
        rows[0].starts_with("AGE  LEVEL  TARGET  WATCHER/KIND  KEY  MESSAGE")
            || rows[0].split_whitespace().collect::<Vec<_>>()
                == ["AGE", "LEVEL", "TARGET", "WATCHER/KIND", "KEY", "MESSAGE"],
        "{out}"
    );
    assert!(
        rows.iter().any(|r| r.contains("orders")
            && r.contains("ticker/queue-full")
            && r.contains("jobs 1")),
        "{out}"
    );
    assert!(
        rows.iter()
            .any(|r| r.contains("lookout/watcher-quarantined") && r.contains("looper")),
        "{out}"
    );
    assert_eq!(
        rows.last().copied(),
        Some("3 active conditions; 2 targets, 0 down, 1 quarantined watchers"),
        "{out}"
    );

    // Killed: down, target-unreachable once it held for_s.
    orders.kill();
    let s = wait_for(
        "orders down with target-unreachable",
        Duration::from_secs(60),
        || {
            let s = status(port, "")?;
            (target(&s, "orders")?["state"] == "down"
                && conditions(&s, "lookout", "target-unreachable")
                    .iter()
                    .any(|c| c["target"] == "orders"))
            .then_some(s)
        },
    );
    assert_eq!(s["summary"]["down"], 1, "{s}");
    let unreachable = conditions(&s, "lookout", "target-unreachable")[0];
    assert_eq!(unreachable["level"], "error", "{unreachable}");
    assert_eq!(
        s["conditions"][0]["kind"], "target-unreachable",
        "the newest first: {s}"
    );
    let (exit, out, err) = alerts(tmp.path(), &["--metrics-addr", &addr]);
    assert!(exit.success(), "{err}");
    eprintln!("lookout alerts with orders down:\n{out}");
    assert!(
        out.lines()
            .any(|r| r.contains("error") && r.contains("lookout/target-unreachable")),
        "{out}"
    );

    // Restarted: up again, the condition gone.
    orders.restart();
    wait_for(
        "orders up without target-unreachable",
        Duration::from_secs(60),
        || {
            let s = status(port, "")?;
            (target(&s, "orders")?["state"] == "up"
                && conditions(&s, "lookout", "target-unreachable").is_empty())
            .then_some(())
        },
    );
    let (exit, out, err) = alerts(tmp.path(), &["--metrics-addr", &addr, "--json"]);
    assert!(exit.success(), "{err}");
    assert!(!out.contains("target-unreachable"), "{out}");
    assert!(lookout.alive());
    stop(&mut lookout);
}

/// No daemon at the address: exit 1 naming it and why; no address at all,
/// or a config without `metrics_addr`: an error naming what to set.
#[test]
fn alerts_without_a_daemon_names_the_address_and_why() {
    let tmp = tempfile::tempdir().unwrap();
    let addr = format!("127.0.0.1:{}", free_port());
    let (exit, out, err) = alerts(tmp.path(), &["--metrics-addr", &addr]);
    assert_eq!(exit.code(), Some(1), "{out}{err}");
    assert!(
        err.contains(&format!("http://{addr}/api/v1/status")) && err.contains("refused"),
        "{err}"
    );
    assert!(out.is_empty(), "{out}");

    let (exit, _, err) = alerts(tmp.path(), &[]);
    assert_eq!(exit.code(), Some(1), "{err}");
    assert!(
        err.contains("--metrics-addr") && err.contains("`metrics_addr`"),
        "{err}"
    );

    let bare = config_file(tmp.path(), "poll_interval = 1\n");
    let (exit, _, err) = alerts(tmp.path(), &["-c", bare.to_str().unwrap()]);
    assert_eq!(exit.code(), Some(1), "{err}");
    assert!(
        err.contains("lookout.toml sets no `metrics_addr`") && err.contains("--metrics-addr"),
        "{err}"
    );
}

/// The page in headless Chromium: every section, the targets (a hostile
/// name among them) and the active conditions (the ticker's, whose label
/// and message carry markup, and a killed target's `target-unreachable`),
/// every server and watcher text as text: no element comes from them.
#[test]
fn the_page_in_a_real_browser_names_targets_and_conditions_as_text() {
    let orders = Redis::start(&[]);
    let hostile = Redis::start(&[]);
    let mut sessions = Redis::start(&[]);
    let bus = Redis::start(&[]);
    let tmp = tempfile::tempdir().unwrap();
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let plugins = plugins_with(tmp.path(), &[], &["ticker", "looper"]);
    let config = config_file(
        tmp.path(),
        &format!(
            "[[targets]]\nname = 'orders'\nurl = '{}'\nlabels = {{ role = 'master', zone = 'eu-1' }}\n\
             [[targets]]\nname = '<script>x</script>'\nurl = '{}'\nwatchers = ['ticker']\n\
             [[targets]]\nname = 'sessions'\nurl = '{}'\nlabels = {{ role = 'replica' }}\nwatchers = ['ticker']\n\
             [publish]\nurl = '{}'\n[alerts]\nfor_s = 0.4\n\
             [limits]\nquarantine_after = 2\n[limits.watchers.looper]\ncall_deadline_ms = 50\n\
             [limits.watchers.ticker]\ninterval_s = 604800\n\
             [watchers.ticker]\ncondition = 'queue-full'\nlabel = '<img src=x onerror=alert(1)><b>jobs</b>'\n",
            orders.url(),
            hostile.url(),
            sessions.url(),
            bus.url()
        ),
    );
    let mut lookout = run_config(tmp.path(), &plugins, &config, &["--metrics-addr", &addr]);
    lookout.wait_started();
    wait_for(
        "the ticker's conditions and the quarantine",
        Duration::from_secs(60),
        || {
            let s = status(port, "")?;
            (conditions(&s, "ticker", "queue-full").len() == 3
                && quarantined(&s, "orders", "looper")
                && target(&s, "sessions")?["state"] == "up")
                .then_some(())
        },
    );
    sessions.kill();
    wait_for(
        "sessions down with target-unreachable",
        Duration::from_secs(60),
        || {
            let s = status(port, "")?;
            (target(&s, "sessions")?["state"] == "down"
                && !conditions(&s, "lookout", "target-unreachable").is_empty())
            .then_some(())
        },
    );

    let url = format!("http://{addr}/");
    let dom = chromium(tmp.path(), &["--dump-dom", &url]);
    let lower = dom.to_ascii_lowercase();
    assert!(
        lower.contains("<html") && lower.contains("http-equiv=\"refresh\""),
        "{dom}"
    );
    // Nothing from a server or a watcher became an element: the page has
    // no script and no image of its own.
    assert!(!lower.contains("<script"), "{dom}");
    assert!(!lower.contains("<img"), "{dom}");
    assert!(!lower.contains("<b>jobs"), "{dom}");
    assert!(!lower.contains("onerror=alert(1)>"), "{dom}");
    for id in [
        "summary",
        "bus",
        "alertmanager",
        "events-chart",
        "lateness-chart",
    ] {
        section(&dom, id);
    }
    assert!(section(&dom, "events-chart").contains("<svg"), "{dom}");
    assert!(section(&dom, "lateness-chart").contains("<svg"), "{dom}");

    let targets = section(&dom, "targets");
    for shown in [
        "orders",
        "sessions",
        "&lt;script&gt;x&lt;/script&gt;",
        "down",
        "looper",
    ] {
        assert!(targets.contains(shown), "#targets names {shown}: {targets}");
    }
    assert!(
        targets.contains("zone=eu-1") || targets.contains("eu-1"),
        "{targets}"
    );
    let active = section(&dom, "conditions");
    for shown in [
        "queue-full",
        "target-unreachable",
        "watcher-quarantined",
        "sessions",
        "&lt;img src=x onerror=alert(1)&gt;&lt;b&gt;jobs&lt;/b&gt; 1",
    ] {
        assert!(
            active.contains(shown),
            "#conditions names {shown}: {active}"
        );
    }
    // Newest first: the killed target's condition came last, so it leads.
    let first = |needle: &str| active.find(needle).unwrap();
    assert!(
        first("target-unreachable") < first("queue-full"),
        "newest first: {active}"
    );

    if std::env::var_os("LOOKOUT_SCREENSHOT").is_some() {
        let png = repo().join("docs/status.png");
        std::fs::create_dir_all(png.parent().unwrap()).unwrap();
        let _ = std::fs::remove_file(&png);
        chromium(
            tmp.path(),
            &[
                &format!("--screenshot={}", png.display()),
                "--window-size=1280,1600",
                &url,
            ],
        );
        let bytes = std::fs::read(&png).expect("the screenshot");
        assert!(bytes.starts_with(b"\x89PNG"), "a PNG");
        eprintln!("wrote {} ({} bytes)", png.display(), bytes.len());
    }
    assert!(lookout.alive());
    stop(&mut lookout);
}

//! Conditions against real redis-servers: the host's own fire after
//! `[alerts] for_s` and resolve, every envelope of one condition carrying
//! the top-level `condition` object with the same fingerprint; an unloaded
//! watcher resolves what it held, saying why; `/metrics` counts what fires.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use serde_json::Value;

use crate::support::*;

/// The host's envelopes of condition `kind` in `state` on `bus` so far.
fn host_conditions(bus: &Redis, kind: &str, state: &str) -> Vec<Value> {
    events_of(bus, "lookout")
        .into_iter()
        .filter(|e| e["condition"]["kind"] == kind && e["condition"]["state"] == state)
        .collect()
}

/// The body of `GET /metrics` on `port`, once it answers.
fn metrics(port: u16) -> Option<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        stream,
        "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    Some(response.split_once("\r\n\r\n")?.1.to_owned())
}

/// Milliseconds between two envelopes' `ts`.
fn ms_between(earlier: &Value, later: &Value) -> i64 {
    let at = |e: &Value| {
        humantime::parse_rfc3339(e["ts"].as_str().unwrap())
            .unwrap()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis()
    };
    i64::try_from(at(later)).unwrap() - i64::try_from(at(earlier)).unwrap()
}

/// A killed target: `target-unreachable` fires once it held `for_s` (not
/// at the first failed poll), `/metrics` counts it, and the restarted
/// target resolves it; both envelopes carry the same fingerprint, the
/// target's key as the condition's key, and a stream field `condition`.
#[test]
fn a_killed_target_fires_after_for_s_and_resolves_when_back() {
    let mut watched = Redis::start(&[]);
    let bus = Redis::start(&[]);
    let tmp = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = bus_config(
        tmp.path(),
        &bus,
        &format!("metrics_addr = '127.0.0.1:{port}'"),
        "[alerts]\nfor_s = 1.0\n",
    );
    let mut lookout = start_ticker(tmp.path(), &watched, &config, "0.2");
    wait_for("the first ticks", Duration::from_secs(20), || {
        (max_tick(&bus) >= 2).then_some(())
    });
    let instance = format!("127.0.0.1:{}", watched.port);
    assert!(host_conditions(&bus, "target-unreachable", "firing").is_empty());

    watched.kill();
    let firing = wait_for("target-unreachable firing", Duration::from_secs(30), || {
        host_conditions(&bus, "target-unreachable", "firing").pop()
    });
    let down = events_of(&bus, "lookout")
        .into_iter()
        .find(|e| {
            e["msg"]
                .as_str()
                .unwrap()
                .starts_with("instance unreachable")
        })
        .expect("the outage's first report");
    assert!(
        ms_between(&down, &firing) >= 900,
        "fires once it held for_s (1 s), not at the first failed poll: {down} then {firing}"
    );
    let c = &firing["condition"];
    assert_eq!(c["key"], instance.as_str(), "{firing}");
    assert_eq!(firing["level"], "error", "{firing}");
    let fingerprint = c["fingerprint"].as_str().unwrap().to_owned();
    assert!(
        fingerprint.len() == 16 && fingerprint.chars().all(|h| h.is_ascii_hexdigit()),
        "{firing}"
    );
    let counted = wait_for("the gauge", Duration::from_secs(20), || {
        metrics(port).filter(|m| {
            m.lines().any(|l| {
                l.starts_with("lookout_conditions_active{")
                    && l.contains("watcher=\"lookout\"")
                    && l.contains("level=\"error\"")
                    && l.ends_with(" 1")
            })
        })
    });
    assert!(counted.contains("lookout_conditions_active"));
    let retries = lookout.stderr.matching("retrying in").len();
    wait_for("more retries", Duration::from_secs(20), || {
        (lookout.stderr.matching("retrying in").len() >= retries + 2).then_some(())
    });
    assert_eq!(
        host_conditions(&bus, "target-unreachable", "firing").len(),
        1,
        "fired once"
    );

    watched.restart();
    let resolved = wait_for(
        "target-unreachable resolved",
        Duration::from_secs(30),
        || host_conditions(&bus, "target-unreachable", "resolved").pop(),
    );
    assert_eq!(resolved["condition"]["fingerprint"], fingerprint.as_str());
    let back = events_of(&bus, "lookout")
        .into_iter()
        .find(|e| e["msg"].as_str().unwrap().starts_with("instance back"))
        .expect("the outage's end");
    eprintln!(
        "target-unreachable: fired {} ms after the first failed poll (for_s 1 s), resolved by the first poll that \
         reached it again ({} ms from that poll's `instance back` report)",
        ms_between(&down, &firing),
        ms_between(&back, &resolved).abs()
    );
    assert_eq!(resolved["condition"]["key"], instance.as_str());
    assert_eq!(resolved["level"], "info", "{resolved}");
    wait_for("the gauge back to nothing", Duration::from_secs(20), || {
        metrics(port).filter(|m| {
            !m.lines().any(|l| {
                l.starts_with("lookout_conditions_active{")
                    && l.contains("watcher=\"lookout\"")
                    && !l.ends_with(" 0")
            })
        })
    });
    // Envelopes without a condition carry none.
    let ticks = events_of(&bus, "ticker");
    assert!(ticks.iter().all(|e| e.get("condition").is_none()));
    assert!(lookout.alive());
    stop(&mut lookout);
}

/// A watcher quarantined on its target is the host's condition
/// `watcher-quarantined` (key: the watcher); deleting its file unloads it,
/// which resolves the condition, saying why, with the same fingerprint.
#[test]
fn an_unloaded_watcher_resolves_what_it_held_saying_why() {
    let watched = Redis::start(&[]);
    let bus = Redis::start(&[]);
    let tmp = tempfile::tempdir().unwrap();
    let plugins = plugins_with(tmp.path(), &[], &["ticker", "looper"]);
    let config = bus_config(
        tmp.path(),
        &bus,
        "",
        "[limits]\nquarantine_after = 2\n[limits.watchers.looper]\ncall_deadline_ms = 50\n",
    );
    let mut lookout = run_lookout(
        tmp.path(),
        &watched.url(),
        &plugins,
        &["--config", config.to_str().unwrap()],
    );
    lookout.wait_started();
    let firing = wait_for("the quarantine firing", Duration::from_secs(30), || {
        host_conditions(&bus, "watcher-quarantined", "firing").pop()
    });
    assert_eq!(firing["condition"]["key"], "looper", "{firing}");
    assert_eq!(firing["fields"]["state"], "quarantined", "{firing}");

    std::fs::remove_file(plugins.join("looper.wasm")).unwrap();
    let resolved = wait_for("the quarantine resolved", Duration::from_secs(30), || {
        host_conditions(&bus, "watcher-quarantined", "resolved").pop()
    });
    assert_eq!(
        resolved["condition"]["fingerprint"],
        firing["condition"]["fingerprint"]
    );
    assert!(
        resolved["msg"]
            .as_str()
            .unwrap()
            .contains("watcher looper was unloaded"),
        "{resolved}"
    );
    assert!(lookout.alive());
    stop(&mut lookout);
}

/// A watcher's condition (the ticker fires `on-demand` on odd polls and
/// resolves it on even ones): the envelopes carry the top-level
/// `condition` with one fingerprint for firing and resolved, and the
/// watcher's own `fields` stay as they were.
#[test]
fn a_watcher_condition_fires_and_resolves_with_one_fingerprint() {
    let watched = Redis::start(&[]);
    let bus = Redis::start(&[]);
    let tmp = tempfile::tempdir().unwrap();
    let config = bus_config(
        tmp.path(),
        &bus,
        "",
        "[watchers.ticker]\ncondition = 'on-demand'\nrunbook = 'https://runbooks.example/on-demand'\n",
    );
    let mut lookout = start_ticker(tmp.path(), &watched, &config, "0.2");
    let (firing, resolved) = wait_for(
        "a firing and its resolution",
        Duration::from_secs(30),
        || {
            let ticks = events_of(&bus, "ticker");
            let at = ticks
                .iter()
                .position(|e| e["condition"]["state"] == "firing")?;
            let resolved = ticks[at..]
                .iter()
                .find(|e| e["condition"]["state"] == "resolved")?;
            Some((ticks[at].clone(), resolved.clone()))
        },
    );
    let (f, r) = (&firing["condition"], &resolved["condition"]);
    assert_eq!(f["kind"], "on-demand", "{firing}");
    assert_eq!(f["fingerprint"], r["fingerprint"], "{firing} {resolved}");
    assert_eq!(f["key"], r["key"]);
    assert_eq!(f["runbook_url"], "https://runbooks.example/on-demand");
    assert_eq!(
        firing["fields"]["instance"],
        format!("127.0.0.1:{}", watched.port)
    );
    assert!(lookout.alive());
    stop(&mut lookout);
}

//! `polls-late` against real redis-servers: a daemon stopped (SIGSTOP)
//! for longer than half its poll interval starts its next polls late; the
//! window holding them fires the host condition (a warning on the bus, on
//! the status page, the window's p99 on `/metrics`), and the next window
//! of polls on time resolves it.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::*;

/// `GET path` on `port`: the body, once it answers (a plain one: the
/// status API's JSON and `/metrics` are sent whole).
fn get(port: u16, path: &str) -> Option<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    (head.starts_with("HTTP/1.1 200") && !head.to_ascii_lowercase().contains("chunked"))
        .then(|| body.to_owned())
}

/// The host's `polls-late` envelopes on `bus` so far, in stream order.
fn polls_late(bus: &Redis) -> Vec<Value> {
    events_of(bus, "lookout")
        .into_iter()
        .filter(|e| e["condition"]["kind"] == "polls-late")
        .collect()
}

/// Whether the last `polls-late` envelope so far is a firing one.
fn open(bus: &Redis) -> bool {
    polls_late(bus)
        .last()
        .is_some_and(|e| e["condition"]["state"] == "firing")
}

/// A daemon at a 0.2 s interval (window: `for_s` = 5 s, over ten
/// intervals) stopped for 2 s: its next poll starts about 2 s late, so
/// the window holding it has a p99 over 100 ms. `polls-late` fires as a
/// warning keyed `lookout` whose message names the p99, the interval, the
/// targets and the fix; the status page lists it among the active
/// conditions and `/metrics` has the window's p99; the next window, polls
/// on time, resolves it with the same fingerprint.
#[test]
fn a_stopped_daemon_fires_polls_late_and_resolves_when_on_time_again() {
    let watched = Redis::start(&[]);
    let bus = Redis::start(&[]);
    let tmp = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = bus_config(
        tmp.path(),
        &bus,
        &format!("metrics_addr = '127.0.0.1:{port}'"),
        "[alerts]\nfor_s = 5.0\n",
    );
    let mut lookout = start_ticker(tmp.path(), &watched, &config, "0.2");
    wait_for("the first ticks", Duration::from_secs(20), || {
        (max_tick(&bus) >= 3).then_some(())
    });
    // A loaded machine may have fired it already; the stop is judged from
    // a closed condition.
    wait_for("no polls-late open", Duration::from_secs(30), || {
        (!open(&bus)).then_some(())
    });
    let before = polls_late(&bus).len();

    lookout.signal("-STOP");
    // The length of the stall being measured, not a wait for something.
    std::thread::sleep(Duration::from_secs(2));
    lookout.signal("-CONT");
    let resumed = Instant::now();

    let firing = wait_for("polls-late firing", Duration::from_secs(30), || {
        polls_late(&bus).into_iter().skip(before).find(|e| {
            e["condition"]["state"] == "firing"
                && e["fields"]["lateness_p99_ms"].as_u64() >= Some(1_000)
        })
    });
    let fired_after = resumed.elapsed();
    let c = &firing["condition"];
    assert_eq!(c["key"], "lookout", "{firing}");
    assert_eq!(firing["level"], "warn", "{firing}");
    let msg = firing["msg"].as_str().unwrap();
    for part in [
        "p99 ",
        "0.2s poll interval",
        "with 1 target in this process",
        "--shard",
        "poll_interval",
        "more cores",
    ] {
        assert!(msg.contains(part), "{part:?} in {msg}");
    }
    assert_eq!(firing["fields"]["targets"], 1, "{firing}");
    assert_eq!(firing["fields"]["window_s"], 5.0, "{firing}");
    let fingerprint = c["fingerprint"].as_str().unwrap().to_owned();

    // On the board at once: the status page lists it while it fires (the
    // window after the firing one is 5 s away).
    let status = wait_for("the status page", Duration::from_secs(5), || {
        let body = get(port, "/api/v1/status")?;
        serde_json::from_str::<Value>(&body).ok()
    });
    let listed: Vec<&Value> = status["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["watcher"] == "lookout" && c["kind"] == "polls-late")
        .collect();
    assert_eq!(listed.len(), 1, "{status}");
    assert_eq!(listed[0]["key"], "lookout", "{status}");
    assert_eq!(listed[0]["fingerprint"], fingerprint.as_str(), "{status}");
    let metrics = get(port, "/metrics").expect("/metrics answers");
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("lookout_poll_lateness_p99_seconds ")),
        "{metrics}"
    );

    let resolved = wait_for("polls-late resolved", Duration::from_secs(30), || {
        polls_late(&bus)
            .into_iter()
            .skip(before)
            .skip_while(|e| e["id"] != firing["id"])
            .find(|e| e["condition"]["state"] == "resolved")
    });
    let resolved_after = resumed.elapsed();
    assert_eq!(resolved["condition"]["fingerprint"], fingerprint.as_str());
    assert_eq!(resolved["level"], "info", "{resolved}");
    assert!(
        resolved["msg"]
            .as_str()
            .unwrap()
            .starts_with("polls on time again"),
        "{resolved}"
    );
    eprintln!(
        "polls-late: a 2 s stop at a 0.2 s interval (5 s windows) fired {} ms after SIGCONT with p99 \
         {} ms, and resolved {} ms after SIGCONT with p99 {} ms",
        fired_after.as_millis(),
        firing["fields"]["lateness_p99_ms"],
        resolved_after.as_millis(),
        resolved["fields"]["lateness_p99_ms"],
    );
    assert!(lookout.terminate().success());
}

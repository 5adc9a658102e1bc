//! Servers are untrusted too: a fake Redis whose SLOWLOG lies (ever newer
//! entries sharing one id) or never answers a SLOWLOG read, watched beside
//! a real redis-server. The liar's polls stay bounded in reads and time,
//! the healthy target keeps every poll, a hot reload reaches both, and
//! SIGTERM ends the daemon within its grace.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::fake_resp::{FakeRedis, array, bulk, integer};
use crate::support::*;

/// The grace the tests give the daemon to stop (`shutdown_grace`).
const GRACE_S: u64 = 2;

/// A minimal INFO: what the prober reads (version, run id) and the field
/// the ticker declares.
const INFO: &str = "# Server\r\nredis_version:7.2.4\r\n\
                    run_id:0123456789abcdef0123456789abcdef01234567\r\ntcp_port:6379\r\n\r\n\
                    # Clients\r\nconnected_clients:1\r\n";

/// One SLOWLOG entry with `id`, from another client.
fn entry(id: u64) -> Vec<u8> {
    array([
        integer(i64::try_from(id).unwrap()),
        integer(1_700_000_000),
        integer(20_000),
        array([bulk("GET"), bulk("k")]),
        bulk("10.9.9.9:5000"),
        bulk("app"),
    ])
}

/// Upper-case text of argument `i`.
fn word(args: &[Vec<u8>], i: usize) -> String {
    args.get(i)
        .map(|a| String::from_utf8_lossy(a).to_ascii_uppercase())
        .unwrap_or_default()
}

/// A fake answering PING, INFO and CLIENT as a Redis would, and SLOWLOG
/// GET with `slowlog(count)`: `None` leaves the command unanswered.
fn fake(slowlog: impl Fn(u64) -> Option<Vec<u8>> + Send + Sync + 'static) -> FakeRedis {
    FakeRedis::start("127.0.0.1", move |args| match word(args, 0).as_str() {
        "INFO" => Some(bulk(INFO)),
        "SLOWLOG" if word(args, 1) == "GET" => {
            let count = word(args, 2).parse().unwrap_or(10);
            // An empty reply writes nothing: the command stays unanswered.
            Some(slowlog(count).unwrap_or_default())
        }
        "SLOWLOG" if word(args, 1) == "LEN" => Some(integer(128)),
        _ => None,
    })
}

/// The lying SLOWLOG: `GET 1` shows an id 10 above the last one, every
/// longer read answers as many entries as asked, all with that one id, so
/// no read ever reaches back to the id after the last one read.
fn liar() -> FakeRedis {
    let newest = Arc::new(AtomicU64::new(1_000));
    fake(move |count| {
        let id = if count == 1 {
            newest.fetch_add(10, Ordering::SeqCst) + 10
        } else {
            newest.load(Ordering::SeqCst)
        };
        Some(array((0..count).map(|_| entry(id))))
    })
}

/// The daemon watching `first` and `healthy` every 0.25 s with the slowlog
/// watcher and the ticker, publishing to `bus`; waits until it runs.
fn watch_both(tmp: &std::path::Path, first: &FakeRedis, healthy: &Redis, bus: &Redis) -> Lookout {
    let plugins = plugins_with(tmp, &["slowlog"], &["ticker"]);
    let targets = format!(
        "[[targets]]\nurl = '{}'\n[[targets]]\nurl = '{}'\n",
        first.url(),
        healthy.url()
    );
    let config = bus_config(tmp, bus, &format!("shutdown_grace = {GRACE_S}"), &targets);
    let lookout = run_config(tmp, &plugins, &config, &["--poll-interval", "0.25"]);
    lookout.wait_started();
    lookout
}

/// The `n` of the ticker's events about `instance`, in stream order.
fn ticks_of(envelopes: &[Value], instance: &str) -> Vec<i64> {
    by_target(envelopes, "ticker")
        .iter()
        .filter(|e| e["fields"]["instance"] == instance)
        .map(|e| e["fields"]["n"].as_i64().unwrap())
        .collect()
}

/// Host events about `instance` whose message starts with `prefix`.
fn host_events(envelopes: &[Value], instance: &str, prefix: &str) -> Vec<Value> {
    by_target(envelopes, "lookout")
        .into_iter()
        .filter(|e| {
            e["fields"]["instance"] == instance
                && e["msg"].as_str().is_some_and(|m| m.starts_with(prefix))
        })
        .collect()
}

/// Waits until the healthy target has been polled `polls` more times,
/// then checks that its ticker ran on each of them with no gap.
fn healthy_keeps_every_poll(bus: &Redis, healthy: &Redis, polls: u64) {
    let instance = format!("127.0.0.1:{}", healthy.port);
    let (pings0, ticks0) = (
        pings(healthy),
        ticks_of(&bus.stream(STREAM), &instance).len(),
    );
    polls_pass(healthy, polls);
    let pinged = pings(healthy) - pings0;
    let ticks = wait_for(
        "the healthy target's ticks of those polls",
        Duration::from_secs(30),
        || {
            let ticks = ticks_of(&bus.stream(STREAM), &instance);
            (u64::try_from(ticks.len() - ticks0).unwrap() + 1 >= pinged).then_some(ticks)
        },
    );
    assert!(no_gap(&ticks), "one tick per poll, no gap: {ticks:?}");
    let all = bus.stream(STREAM);
    for prefix in ["instance", "slowlog gap"] {
        let said = host_events(&all, &instance, prefix);
        assert!(said.is_empty(), "the healthy target: {said:?}");
    }
}

/// A server offering ever newer SLOWLOG entries that share one id: each
/// poll reads it a bounded number of times (the pipeline's SLOWLOG GET and
/// at most one more read, the repeated ids reported as a gap) instead of
/// spinning; the real
/// server beside it keeps every poll, a watcher copied into the plugins
/// folder reaches both, and SIGTERM exits 0 within the grace.
#[test]
fn a_lying_slowlog_costs_a_bounded_number_of_reads() {
    let liar = liar();
    let (healthy, bus) = (Redis::start(&[]), Redis::start(&[]));
    let tmp = tempfile::tempdir().unwrap();
    let mut lookout = watch_both(tmp.path(), &liar, &healthy, &bus);
    wait_for(
        "the liar polled a few times",
        Duration::from_secs(30),
        || (liar.count(&["PING"]) >= 4).then_some(()),
    );

    // Over about 3 s of the healthy target's polls, count the liar's.
    let (gets0, polls0, since) = (
        liar.count(&["SLOWLOG", "GET"]),
        liar.count(&["PING"]),
        Instant::now(),
    );
    healthy_keeps_every_poll(&bus, &healthy, 12);
    let (gets, polls, took) = (
        liar.count(&["SLOWLOG", "GET"]) - gets0,
        liar.count(&["PING"]) - polls0,
        since.elapsed().as_secs_f64(),
    );
    #[allow(clippy::cast_precision_loss)]
    let per_second = gets as f64 / took;
    eprintln!(
        "the liar: {gets} SLOWLOG GETs over {polls} polls in {took:.1} s ({per_second:.1} a second)"
    );
    assert!(polls >= 3, "the liar keeps being polled: {polls} polls");
    assert!(
        gets <= 2 * (polls + 1),
        "{gets} SLOWLOG GETs for {polls} polls: at most the pipeline's and one re-read each"
    );

    let liar_at = liar.addr();
    let gap = wait_for(
        "a gap event about the liar",
        Duration::from_secs(30),
        || host_events(&bus.stream(STREAM), &liar_at, "slowlog gap").pop(),
    );
    assert_eq!(gap["fields"]["cause"], "repeated", "{gap}");
    assert!(
        gap["msg"].as_str().unwrap().contains("repeats ids"),
        "{gap}"
    );
    assert!(
        !ticks_of(&bus.stream(STREAM), &liar_at).is_empty(),
        "the liar's polls complete: its ticker runs"
    );

    // A hot reload reaches both targets.
    std::fs::copy(
        fixture("slow-ticker"),
        tmp.path().join("plugins/slow-ticker.wasm"),
    )
    .unwrap();
    let healthy_at = format!("127.0.0.1:{}", healthy.port);
    wait_for(
        "the reloaded watcher on both targets",
        Duration::from_secs(30),
        || {
            let slow = by_target(&bus.stream(STREAM), "slow-ticker");
            let on = |at: &str| slow.iter().any(|e| e["fields"]["instance"] == at);
            (on(&liar_at) && on(&healthy_at)).then_some(())
        },
    );

    let status = lookout.terminate_within(Duration::from_secs(GRACE_S + 5));
    assert!(status.success(), "SIGTERM exits 0: {status:?}");
}

/// A fake answering a poll's pipeline (PING, INFO and its SLOWLOG GET,
/// one entry 10 ids above the last each time) but never a SLOWLOG read
/// after it: each poll past the first needs one.
fn silent_rereads() -> FakeRedis {
    let (after_info, newest) = (AtomicBool::new(false), AtomicU64::new(5));
    FakeRedis::start("127.0.0.1", move |args| match word(args, 0).as_str() {
        "INFO" => {
            after_info.store(true, Ordering::SeqCst);
            Some(bulk(INFO))
        }
        "SLOWLOG" if word(args, 1) == "GET" => Some(if after_info.swap(false, Ordering::SeqCst) {
            let id = newest.fetch_add(10, Ordering::SeqCst) + 10;
            array([entry(id)])
        } else {
            // Nothing written: the command stays unanswered.
            Vec::new()
        }),
        _ => None,
    })
}

/// A server that answers the poll's pipeline but never the SLOWLOG read
/// after it: each poll fails at its interval, saying so once (event and
/// log line) with the read it waited for, on a fresh connection each
/// time, and the next poll starts at its usual time; the real server
/// beside it keeps every poll.
#[test]
fn a_silent_slowlog_read_fails_the_poll_at_its_interval() {
    let stuck = silent_rereads();
    let (healthy, bus) = (Redis::start(&[]), Redis::start(&[]));
    let tmp = tempfile::tempdir().unwrap();
    let mut lookout = watch_both(tmp.path(), &stuck, &healthy, &bus);
    let stuck_at = stuck.addr();
    let slow = wait_for("the slow poll reported", Duration::from_secs(30), || {
        host_events(&bus.stream(STREAM), &stuck_at, "instance slow").pop()
    });
    let msg = slow["msg"].as_str().unwrap();
    // The second poll's first read (1 entry: it was quiet) ends 10 ids
    // ahead: the re-read asks for those 10 and 32 more.
    assert!(
        msg.contains("poll took longer than the interval (0.25s)")
            && msg.contains("PING answered but SLOWLOG GET 42 got no reply"),
        "{msg}"
    );
    assert!(
        !lookout
            .stderr
            .matching("poll took longer than the interval (0.25s)")
            .is_empty(),
        "logged too"
    );
    // Polls go on, each on a fresh connection (a late reply would
    // otherwise answer the next poll's command).
    let (polls0, conns0) = (stuck.count(&["PING"]), stuck.connections());
    healthy_keeps_every_poll(&bus, &healthy, 8);
    wait_for(
        "more polls of the stuck server",
        Duration::from_secs(30),
        || {
            (stuck.count(&["PING"]) >= polls0 + 4 && stuck.connections() >= conns0 + 3)
                .then_some(())
        },
    );
    let all = bus.stream(STREAM);
    assert_eq!(
        host_events(&all, &stuck_at, "instance slow").len(),
        1,
        "said once"
    );
    assert!(host_events(&all, &stuck_at, "instance unreachable").is_empty());

    let status = lookout.terminate_within(Duration::from_secs(GRACE_S + 5));
    assert!(status.success(), "SIGTERM exits 0: {status:?}");
}

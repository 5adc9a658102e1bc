//! The engine's timing guarantees: a watcher call is cut at its deadline,
//! host calls included, and never costs other watchers their polls;
//! SIGTERM ends the daemon within `shutdown_grace` whatever a watcher is
//! doing; a frozen bus never holds up polling; and a watcher that is slow
//! to compile joins when ready instead of delaying the first poll.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::{
    Lookout, Redis, STREAM, bus_config, by_target, extra_watcher, info_field, max_tick, no_gap,
    pings, plugins_with, run_lookout, signal_pid, start_ticker, stop, ticks, unique, wait_for,
};

/// `shutdown_grace` in the tests that time SIGTERM.
const GRACE: Duration = Duration::from_secs(2);

/// What SIGTERM may take beyond the grace: process exit, the test's own
/// polling of the exit status.
const MARGIN: Duration = Duration::from_secs(3);

/// Writes `lookout.toml` with `text`, in a folder of its own so the
/// daemon's reload watcher sees nothing else.
fn config(tmp: &Path, text: &str) -> PathBuf {
    let dir = tmp.join("etc");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("lookout.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// Host envelopes about `watcher` in `state` ("failed", "restarted",
/// "quarantined").
fn notices(all: &[Value], watcher: &str, state: &str) -> Vec<Value> {
    by_target(all, "lookout")
        .into_iter()
        .filter(|e| e["fields"]["watcher"] == watcher && e["fields"]["state"] == state)
        .collect()
}

/// The host envelope saying `watcher` was loaded, if it is in `all`, with
/// its position in the stream.
fn loaded(all: &[Value], watcher: &str) -> Option<(usize, Value)> {
    all.iter()
        .position(|e| {
            let msg = e["msg"].as_str().unwrap();
            e["target"] == "lookout"
                && e["fields"]["watcher"] == watcher
                && msg.starts_with(&format!("watcher {watcher} "))
                && msg.ends_with(" loaded")
        })
        .map(|at| (at, all[at].clone()))
}

/// Sends SIGTERM and asserts that the daemon exits 0 within the grace
/// plus the margin.
fn terminate_within_grace(lookout: &mut Lookout) {
    let sent = Instant::now();
    let status = lookout.terminate_within(GRACE + MARGIN);
    let took = sent.elapsed();
    assert!(status.success(), "SIGTERM exits 0: {status:?}");
    assert!(
        took <= GRACE + MARGIN,
        "SIGTERM took {took:?}, over the {GRACE:?} grace plus {MARGIN:?}"
    );
}

/// The sleeper (an hour-long sleep on the WASI clock in every `observe`)
/// beside the ticker, polling every 0.2 s under the default 50 ms call
/// deadline. Over a 12 s window from the ticker's first tick, the ticker
/// gets at least 90% of the polls the interval promises: the sleeper costs
/// it at most its own deadline per call. Each sleeper call is cut at the
/// deadline and counts as a failure, reported like a trap with a reason
/// naming the deadline, until the sleeper is quarantined; it never
/// returns an event. SIGTERM then exits 0 within `shutdown_grace` (2 s)
/// plus a margin.
#[test]
fn sleeper_is_cut_at_its_deadline_and_the_ticker_keeps_its_polls() {
    const POLL_S: f64 = 0.2;
    const WINDOW: Duration = Duration::from_secs(12);
    let redis = Redis::start(&[]);
    let tmp = tempfile::tempdir().unwrap();
    let plugins = plugins_with(tmp.path(), &[], &["ticker", "sleeper"]);
    let config = config(tmp.path(), "shutdown_grace = 2\n");
    let mut lookout = run_lookout(
        tmp.path(),
        &redis.url(),
        &plugins,
        &["--config", config.to_str().unwrap()],
    );

    let first = wait_for(
        "the ticker's first tick (a sleeping watcher must not hold it up)",
        Duration::from_secs(30),
        || {
            let n = max_tick(&redis);
            (n >= 1).then_some(n)
        },
    );
    let window = Instant::now();
    wait_for("the 12 s window", WINDOW + Duration::from_secs(5), || {
        (window.elapsed() >= WINDOW).then_some(())
    });
    let all = redis.stream(STREAM);
    let elapsed = window.elapsed();
    let in_window: BTreeSet<i64> = ticks(&all).into_iter().filter(|n| *n > first).collect();
    let got = in_window.len();
    let expected = elapsed.as_secs_f64() / POLL_S;
    let share = got as f64 / expected;
    assert!(
        share >= 0.9,
        "the ticker got {got} ticks in {elapsed:?}, {:.0}% of the {expected:.0} polls \
         the 0.2 s interval promises (at least 90% expected): {:?}",
        share * 100.0,
        ticks(&all)
    );

    let all = wait_for("the sleeper quarantined", Duration::from_secs(30), || {
        let all = redis.stream(STREAM);
        (!notices(&all, "sleeper", "quarantined").is_empty()).then_some(all)
    });
    let failed = notices(&all, "sleeper", "failed");
    let quarantined = notices(&all, "sleeper", "quarantined");
    assert!(!failed.is_empty(), "the sleeper's failures are reported");
    assert!(
        !notices(&all, "sleeper", "restarted").is_empty(),
        "the sleeper is restarted after a failure"
    );
    assert_eq!(quarantined.len(), 1, "quarantined once: {quarantined:#?}");
    for e in failed.iter().chain(&quarantined) {
        assert_eq!(e["level"], "error", "{e}");
        let reason = e["fields"]["reason"].as_str().unwrap().to_lowercase();
        assert!(
            reason.contains("deadline"),
            "the reason names the deadline: {e}"
        );
    }
    let events = by_target(&all, "sleeper");
    assert!(
        events.is_empty(),
        "no sleeper call ever ran to its end: {events:#?}"
    );
    assert!(lookout.alive());

    terminate_within_grace(&mut lookout);
}

/// The sleeper with an hour-long call deadline of its own, so it is still
/// inside its sleep (its stdout line says it went to sleep) when SIGTERM
/// arrives: the daemon exits 0 within `shutdown_grace` (2 s) plus a margin,
/// without waiting for the call.
#[test]
fn sigterm_exits_within_the_grace_while_a_watcher_sleeps() {
    let redis = Redis::start(&[]);
    let tmp = tempfile::tempdir().unwrap();
    let plugins = plugins_with(tmp.path(), &[], &["ticker", "sleeper"]);
    let config = config(
        tmp.path(),
        "shutdown_grace = 2\n\
         [limits.watchers.sleeper]\ncall_deadline_ms = 600000\n",
    );
    let mut lookout = run_lookout(
        tmp.path(),
        &redis.url(),
        &plugins,
        &["--config", config.to_str().unwrap()],
    );
    wait_for(
        "the sleeper to go to sleep",
        Duration::from_secs(30),
        || (!lookout.stderr.matching("going to sleep").is_empty()).then_some(()),
    );
    assert!(lookout.alive());
    terminate_within_grace(&mut lookout);
}

/// The bus frozen (SIGSTOP) for 5 s while the daemon polls every 0.25 s
/// with 0.5 s timeouts towards it: publishing runs apart from polling, so
/// the watched Redis still sees at least 18 of the 20 polls (PINGs counted
/// on it) while the bus is frozen. After SIGCONT every ticker `n` from 1
/// up arrives on the bus in order (duplicates of a batch cut by a timeout
/// removed by id, first occurrences with no gap), and SIGTERM exits 0
/// with nothing lost or dropped.
#[test]
fn frozen_bus_for_five_seconds_does_not_stop_polling() {
    const FREEZE: Duration = Duration::from_secs(5);
    let watched = Redis::start(&[]);
    let bus = Redis::start(&[]);
    let tmp = tempfile::tempdir().unwrap();
    let config = bus_config(
        tmp.path(),
        &bus,
        "response_timeout = 0.5\nconnect_timeout = 0.5",
        "[breaker]\nrecovery_s = 0.5\n",
    );
    let mut lookout = start_ticker(tmp.path(), &watched, &config, "0.25");
    wait_for("the first ticks", Duration::from_secs(20), || {
        (max_tick(&bus) >= 2).then_some(())
    });

    let pid = info_field(&bus, "server", "process_id");
    let polls_before = pings(&watched);
    signal_pid("-STOP", &pid);
    let stopped = Instant::now();
    wait_for("5 s of frozen bus", FREEZE + Duration::from_secs(5), || {
        (stopped.elapsed() >= FREEZE).then_some(())
    });
    let polls_during = pings(&watched) - polls_before;
    let frozen_for = stopped.elapsed();
    signal_pid("-CONT", &pid);
    assert!(
        polls_during >= 18,
        "{polls_during} polls while the bus was frozen for {frozen_for:?}; \
         at 0.25 s at least 18 of the 20 expected"
    );
    assert!(lookout.alive(), "the daemon survives a frozen bus");
    assert!(
        !lookout.stderr.matching("publish fail").is_empty(),
        "publish failures are logged: {:#?}",
        lookout.stderr.all()
    );
    assert!(
        !lookout.stderr.matching("breaker open").is_empty(),
        "the breaker opens: {:#?}",
        lookout.stderr.all()
    );

    // One PING per poll plus the start-up check: the ticker's n so far.
    let emitted = i64::try_from(pings(&watched)).unwrap() - 1;
    let all = wait_for("every tick after SIGCONT", Duration::from_secs(20), || {
        let all = unique(bus.stream(STREAM));
        (ticks(&all).into_iter().max()? >= emitted).then_some(all)
    });
    let ns = ticks(&all);
    assert!(
        no_gap(&ns),
        "every tick arrives once the bus thaws, in order, without a gap: {ns:?}"
    );

    let counts = stop(&mut lookout);
    assert_eq!(counts["lost"], 0, "{counts:?}");
    assert_eq!(counts["dropped"], 0, "{counts:?}");
}

/// The ticker beside the 17.5 MiB Python hit-ratio watcher, with an empty
/// compile cache so hit-ratio takes seconds to compile: the daemon polls
/// with the ticker as soon as it is ready, so the first tick reaches the
/// stream before hit-ratio's "loaded" envelope. Both "loaded" envelopes
/// appear and say how long the load took (`load_ms`, an integer).
#[test]
fn slow_compile_does_not_delay_the_first_poll() {
    let redis = Redis::start(&[]);
    let tmp = tempfile::tempdir().unwrap();
    let plugins = plugins_with(tmp.path(), &[], &["ticker"]);
    std::fs::copy(extra_watcher("hit-ratio"), plugins.join("hit-ratio.wasm")).unwrap();
    let config = config(
        tmp.path(),
        "[limits.watchers.hit-ratio]\nmax_wasm_mib = 18\n",
    );
    // A cache of its own, empty: the compile is cold.
    let cache = tmp.path().join("cache");
    std::fs::create_dir_all(&cache).unwrap();
    let mut lookout = run_lookout(
        &cache,
        &redis.url(),
        &plugins,
        &["--config", config.to_str().unwrap()],
    );

    // A cold compile of hit-ratio takes seconds alone, several times that
    // beside other tests on a small machine.
    let all = wait_for(
        "a tick and hit-ratio's loaded envelope",
        Duration::from_secs(120),
        || {
            let all = redis.stream(STREAM);
            (loaded(&all, "hit-ratio").is_some() && !ticks(&all).is_empty()).then_some(all)
        },
    );
    let (hit_ratio_at, hit_ratio) = loaded(&all, "hit-ratio").unwrap();
    let first_tick_at = all.iter().position(|e| e["target"] == "ticker").unwrap();
    assert!(
        first_tick_at < hit_ratio_at,
        "the first tick ({}) must come before hit-ratio's loaded envelope ({}): {:#?}",
        all[first_tick_at]["ts"],
        hit_ratio["ts"],
        all.iter()
            .map(|e| format!("{} {} {}", e["ts"], e["target"], e["msg"]))
            .collect::<Vec<_>>()
    );
    assert!(
        hit_ratio["fields"]["load_ms"].is_u64(),
        "hit-ratio's loaded envelope says how long it took: {hit_ratio}"
    );
    let (_, ticker) = loaded(&all, "ticker").expect("the ticker's loaded envelope");
    assert!(
        ticker["fields"]["load_ms"].is_u64(),
        "the ticker's loaded envelope says how long it took: {ticker}"
    );
    assert!(lookout.alive());
    assert!(lookout.terminate().success());
}

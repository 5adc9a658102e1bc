//! Outages of the bus and of the watched Redis: envelopes wait in the
//! outbox and arrive in order once the bus is back, a full outbox drops and
//! reports exactly what it dropped, a frozen or idle-closing bus does not
//! stall the poll loop, SIGTERM drains what is queued, and an unreachable
//! watched Redis is reported once per outage on a separate bus.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::{
    Redis, STREAM, bus_config, by_target, info_field, max_tick, no_gap, pings, start_ticker, stop,
    ticks, unique, wait_for,
};

/// A bus that keeps every acknowledged write across `kill -9` (append-only
/// file, fsync on every write), so that the stream can be checked end to
/// end across a restart: what the daemon was told is delivered stays there.
fn durable_bus() -> Redis {
    Redis::start(&["--appendonly", "yes", "--appendfsync", "always"])
}

/// Waits until the daemon has polled `watched` `n` more times.
fn wait_polls(watched: &Redis, n: u64, what: &str) {
    let target = pings(watched) + n;
    wait_for(what, Duration::from_secs(30), || {
        (pings(watched) >= target).then_some(())
    });
}

/// Kills `bus` right after a ticker envelope arrived, so that no publish is
/// in flight (the next one is a poll interval away) and nothing is both
/// stored by the bus and still queued by the daemon. Returns the newest
/// tick the bus got.
fn kill_between_polls(bus: &mut Redis) -> i64 {
    let last = max_tick(bus);
    let newest = wait_for("a fresh ticker envelope", Duration::from_secs(20), || {
        let newest = max_tick(bus);
        (newest > last).then_some(newest)
    });
    bus.kill();
    newest
}

/// The bus is killed (for about 5 s, a short outage to keep the suite fast;
/// well within the outbox) while the ticker emits, then restarted on the
/// same port: every ticker `n` from 1 to the latest arrives, in order of
/// `n` within the stream once duplicates of a cut batch are removed by id,
/// each `n` once; the stop line accounts for every envelope as delivered.
#[test]
fn bus_outage_replays_everything_in_order() {
    let watched = Redis::start(&[]);
    let mut bus = durable_bus();
    let tmp = tempfile::tempdir().unwrap();
    let config = bus_config(
        tmp.path(),
        &bus,
        "",
        "[breaker]\nfailures = 3\nrecovery_s = 0.5\n",
    );
    let mut lookout = start_ticker(tmp.path(), &watched, &config, "0.1");
    kill_between_polls(&mut bus);
    let killed = Instant::now();
    wait_polls(&watched, 30, "30 polls with the bus down");
    wait_for("about 5 s of outage", Duration::from_secs(10), || {
        (killed.elapsed() >= Duration::from_secs(5)).then_some(())
    });
    assert!(
        !lookout.stderr.matching("breaker open").is_empty(),
        "the breaker opened during the outage"
    );
    let emitted_before_restart = pings(&watched) - 1;
    bus.restart();
    let all = wait_for("every tick replayed", Duration::from_secs(20), || {
        let all = unique(bus.stream(STREAM));
        let ns = ticks(&all);
        (ns.len() > usize::try_from(emitted_before_restart).unwrap() + 5 && no_gap(&ns))
            .then_some(all)
    });
    assert!(lookout.alive());
    assert!(!lookout.stderr.matching("replaying").is_empty());
    for e in &all {
        crate::support::assert_envelope(e);
    }
    assert!(
        by_target(&all, "lookout")
            .iter()
            .all(|e| !e["msg"].as_str().unwrap().starts_with("dropped")),
        "nothing was dropped"
    );

    let counts = stop(&mut lookout);
    let all = unique(bus.stream(STREAM));
    assert!(no_gap(&ticks(&all)), "{:?}", ticks(&all));
    assert_eq!(counts["dropped"], 0);
    assert_eq!(counts["lost"], 0);
    assert_eq!(counts["emitted"], counts["delivered"]);
    assert_eq!(
        all.len() as u64,
        counts["delivered"],
        "every envelope is in the stream"
    );
}

/// An outage longer than the outbox (20 envelopes, drop_oldest): the
/// envelopes of the start of the outage are dropped as one contiguous run
/// of `n`, exactly the 20 newest are replayed in order, then one report
/// says how many were dropped (exactly the missing `n` count: only ticker
/// envelopes are emitted during the outage) and between which times; the
/// stop line keeps emitted = delivered + dropped + lost.
#[test]
fn full_outbox_drops_oldest_and_reports_exactly() {
    let watched = Redis::start(&[]);
    let mut bus = durable_bus();
    let tmp = tempfile::tempdir().unwrap();
    let config = bus_config(
        tmp.path(),
        &bus,
        "",
        "[buffer]\nmax_envelopes = 20\npolicy = 'drop_oldest'\n\
         [breaker]\nrecovery_s = 0.5\n",
    );
    let mut lookout = start_ticker(tmp.path(), &watched, &config, "0.1");
    kill_between_polls(&mut bus);
    wait_polls(&watched, 35, "35 polls with the bus down");
    bus.restart();
    let is_report =
        |e: &Value| e["target"] == "lookout" && e["msg"].as_str().unwrap().starts_with("dropped ");
    let (all, report) = wait_for("the drop report", Duration::from_secs(20), || {
        let all = unique(bus.stream(STREAM));
        let report = all.iter().find(|e| is_report(e))?.clone();
        Some((all, report))
    });

    // Before the report: the ticks delivered before the outage, then the
    // replayed outbox.
    let at = all.iter().position(is_report).unwrap();
    let ns = ticks(&all[..at]);
    assert!(
        ns.windows(2).all(|w| w[0] < w[1]),
        "delivered ticks keep their order: {ns:?}"
    );
    let gap = ns
        .windows(2)
        .position(|w| w[1] != w[0] + 1)
        .unwrap_or_else(|| panic!("a gap of dropped ticks: {ns:?}"));
    let (before, replayed) = ns.split_at(gap + 1);
    assert!(no_gap(before), "nothing dropped before the outage: {ns:?}");
    assert_eq!(
        replayed.len(),
        20,
        "the full outbox is replayed, no more: {ns:?}"
    );
    assert!(
        replayed.windows(2).all(|w| w[1] == w[0] + 1),
        "drop_oldest keeps the newest, without holes: {ns:?}"
    );
    let missing = replayed[0] - before[before.len() - 1] - 1;
    assert!(missing > 0);

    assert_eq!(report["level"], "warn", "{report}");
    let fields = &report["fields"];
    assert_eq!(
        fields["dropped"].as_i64().unwrap(),
        missing,
        "the report counts exactly the missing ticks: {report} {ns:?}"
    );
    assert!(
        report["msg"]
            .as_str()
            .unwrap()
            .starts_with(&format!("dropped {missing} envelopes between ")),
        "{report}"
    );
    assert_eq!(fields["policy"], "drop_oldest", "{report}");
    let ts_of = |n: i64| -> String {
        by_target(&all, "ticker")
            .iter()
            .find(|e| e["fields"]["n"] == n)
            .unwrap()["ts"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let (first, last) = (
        fields["first_ts"].as_str().unwrap(),
        fields["last_ts"].as_str().unwrap(),
    );
    assert!(
        ts_of(before[before.len() - 1]).as_str() <= first
            && first <= last
            && last <= ts_of(replayed[0]).as_str(),
        "the dropped run lies between the last delivered and the first replayed tick: {report}"
    );

    // Later ticks keep coming, in order, with no further gap.
    let newest = replayed[replayed.len() - 1];
    let all = wait_for("ticks after the replay", Duration::from_secs(20), || {
        let all = unique(bus.stream(STREAM));
        (ticks(&all).into_iter().max()? > newest + 3).then_some(all)
    });
    let after: Vec<i64> = ticks(&all).into_iter().filter(|n| *n > newest).collect();
    assert!(
        after.iter().zip(newest + 1..).all(|(n, i)| *n == i),
        "{after:?}"
    );

    let counts = stop(&mut lookout);
    assert_eq!(
        counts["emitted"],
        counts["delivered"] + counts["dropped"] + counts["lost"],
        "{counts:?}"
    );
    assert_eq!(
        counts["dropped"],
        u64::try_from(missing).unwrap(),
        "{counts:?}"
    );
    assert_eq!(counts["lost"], 0, "{counts:?}");
    assert_eq!(
        unique(bus.stream(STREAM)).len() as u64,
        counts["delivered"],
        "{counts:?}"
    );
}

/// A bus that closes idle connections after 1 s (`timeout 1`) while the
/// daemon publishes every 2.2 s: each publish finds its connection closed
/// and redials; after 5 polls every ticker `n` has arrived, with no gap and
/// without a failed publish. (Redis measures idle time in whole seconds, so
/// an interval of 1.5 s would see the connection closed only about every
/// other time; past 2 s it is closed every time.)
#[test]
fn idle_timeout_on_the_bus_loses_nothing() {
    let watched = Redis::start(&[]);
    let bus = Redis::start(&["--timeout", "1"]);
    let tmp = tempfile::tempdir().unwrap();
    let config = bus_config(tmp.path(), &bus, "", "");
    let mut lookout = start_ticker(tmp.path(), &watched, &config, "2.2");
    // Follow the polls on the watched Redis and count our own reads of the
    // bus, to tell the daemon's connections from ours.
    wait_polls(&watched, 5, "five polls");
    let mut reads = 0;
    let all = wait_for("five ticks", Duration::from_secs(10), || {
        reads += 1;
        let all = bus.stream(STREAM);
        (ticks(&all).len() >= 5).then_some(all)
    });
    let ns = ticks(&all);
    assert!(no_gap(&ns), "{ns:?}");
    assert_eq!(unique(all.clone()).len(), all.len(), "no duplicates");
    // Connections so far: the start-up PING, the daemon's, our stream reads
    // and this INFO.
    let received: u64 = info_field(&bus, "stats", "total_connections_received")
        .parse()
        .unwrap();
    let dials = received - 1 - reads - 1;
    assert!(
        dials >= 4,
        "the bus closed the idle publish connection and the daemon redialled \
         ({dials} connections from the daemon)"
    );
    let failures = lookout.stderr.matching("publish fail");
    assert!(failures.is_empty(), "{failures:#?}");
    let counts = stop(&mut lookout);
    assert_eq!(counts["emitted"], counts["delivered"], "{counts:?}");
}

/// The same idle timeout on the watched Redis: the probe connection closed
/// by the server between polls is redialled, not taken for an outage; no
/// "instance unreachable" envelope, no missed poll.
#[test]
fn idle_timeout_on_the_watched_redis_is_no_outage() {
    let watched = Redis::start(&["--timeout", "1"]);
    let bus = Redis::start(&[]);
    let tmp = tempfile::tempdir().unwrap();
    let config = bus_config(tmp.path(), &bus, "", "");
    let mut lookout = start_ticker(tmp.path(), &watched, &config, "2.2");
    let all = wait_for("four ticks", Duration::from_secs(20), || {
        let all = bus.stream(STREAM);
        (ticks(&all).len() >= 4).then_some(all)
    });
    let alarms: Vec<Value> = by_target(&all, "lookout")
        .into_iter()
        .filter(|e| e["msg"].as_str().unwrap().starts_with("instance "))
        .collect();
    assert!(alarms.is_empty(), "{alarms:#?}");
    let lost = lookout.stderr.matching("redis lost");
    assert!(lost.is_empty(), "{lost:#?}");
    assert!(no_gap(&ticks(&all)));
    stop(&mut lookout);
}

/// SIGTERM right after the bus comes back from an outage with envelopes
/// queued (at least 10 ticks): the daemon drains the outbox within
/// `shutdown_grace`, exits 0 and says lost=0; the stream then holds every
/// envelope it emitted, every ticker `n` from 1 to the last.
#[test]
fn sigterm_drains_the_outbox_once_the_bus_is_back() {
    let watched = Redis::start(&[]);
    let mut bus = durable_bus();
    let tmp = tempfile::tempdir().unwrap();
    let config = bus_config(
        tmp.path(),
        &bus,
        "shutdown_grace = 5.0",
        // A long recovery: the outbox is still full when SIGTERM comes.
        "[breaker]\nrecovery_s = 30.0\n",
    );
    let mut lookout = start_ticker(tmp.path(), &watched, &config, "0.1");
    // Ticks, not PINGs: a busy machine may poll before the ticker is ready.
    let ticks_at_kill = kill_between_polls(&mut bus);
    wait_polls(&watched, 12, "at least 10 ticks queued");
    assert!(!lookout.stderr.matching("breaker open").is_empty());
    bus.restart();
    let counts = stop(&mut lookout);
    assert_eq!(counts["lost"], 0, "{counts:?}");
    assert_eq!(counts["dropped"], 0, "{counts:?}");
    assert_eq!(counts["emitted"], counts["delivered"], "{counts:?}");
    let all = unique(bus.stream(STREAM));
    let ns = ticks(&all);
    assert!(no_gap(&ns), "{ns:?}");
    assert_eq!(
        all.len() as u64,
        counts["emitted"],
        "every envelope arrived"
    );
    assert!(
        ns.len() as i64 >= ticks_at_kill + 10,
        "the ticks queued during the outage were drained at shutdown: {ns:?}"
    );
}

/// The watched Redis is killed while the bus (another Redis) stays up: one
/// "instance unreachable" envelope reaches the bus during the outage, not
/// repeated while the daemon keeps retrying; after the watched Redis is
/// back, one "instance back" envelope with the outage length follows and
/// the ticker goes on without a gap.
#[test]
fn watched_outage_is_reported_once_on_a_separate_bus() {
    let mut watched = Redis::start(&[]);
    let bus = Redis::start(&[]);
    let tmp = tempfile::tempdir().unwrap();
    let config = bus_config(tmp.path(), &bus, "", "");
    let mut lookout = start_ticker(tmp.path(), &watched, &config, "0.2");
    wait_for("the first ticks", Duration::from_secs(20), || {
        (max_tick(&bus) >= 2).then_some(())
    });
    let instance = format!("127.0.0.1:{}", watched.port);
    let host = |msg: &str| {
        let all = by_target(&bus.stream(STREAM), "lookout");
        all.into_iter()
            .filter(|e| e["msg"].as_str().unwrap().starts_with(msg))
            .collect::<Vec<_>>()
    };
    watched.kill();
    let down = wait_for(
        "the unreachable envelope while Redis is down",
        Duration::from_secs(20),
        || host("instance unreachable").pop(),
    );
    let seen = Instant::now();
    assert_eq!(
        down["msg"],
        format!("instance unreachable: redis at {instance} does not answer"),
        "{down}"
    );
    assert_eq!(down["level"], "error", "{down}");
    let retries = lookout.stderr.matching("retrying in").len();
    wait_for("two more retries", Duration::from_secs(20), || {
        (lookout.stderr.matching("retrying in").len() >= retries + 2).then_some(())
    });
    assert_eq!(host("instance unreachable").len(), 1, "reported once");
    assert!(host("instance back").is_empty());

    watched.restart();
    let restarted = seen.elapsed();
    let back = wait_for("the back envelope", Duration::from_secs(20), || {
        host("instance back").pop()
    });
    assert!(
        back["msg"].as_str().unwrap().starts_with(&format!(
            "instance back: redis reachable again at {instance}"
        )),
        "{back}"
    );
    let outage_ms = back["fields"]["outage_ms"].as_u64().unwrap();
    assert!(
        outage_ms > 0 && u128::from(outage_ms) >= restarted.as_millis(),
        "outage_ms covers the time Redis was down ({restarted:?}): {back}"
    );
    let all = wait_for("ticks after the outage", Duration::from_secs(20), || {
        let all = bus.stream(STREAM);
        let back_at = all.iter().position(|e| e["id"] == back["id"])?;
        (by_target(&all[back_at..], "ticker").len() >= 2).then_some(all)
    });
    assert!(no_gap(&ticks(&all)), "{:?}", ticks(&all));
    assert_eq!(host("instance unreachable").len(), 1, "reported once");
    assert_eq!(host("instance back").len(), 1, "reported once");
    assert!(lookout.alive());
    stop(&mut lookout);
}

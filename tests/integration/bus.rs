//! A bus that answers some writes with an error reply: OOM (maxmemory with
//! noeviction), READONLY (a replica), MISCONF (a failed snapshot), NOPERM
//! (an ACL without XADD), WRONGTYPE (the stream key holds a string). The PUBLISH that went out is
//! never sent again, the refused XADD is retried until the bus takes it,
//! the log names the refusal and its fix, and the stop line counts it. A
//! bus that may evict the stream, or a stream that vanished, is reported
//! once each.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use serde_json::Value;

use crate::support::{
    Lookout, Redis, STREAM, bus_config, by_target, info_field, no_gap, plugins_with, run_lookout,
    start_ticker, stop, ticks, wait_for,
};

/// Every envelope published on `logs.redis.*` of a bus, in arrival order.
struct Subscriber {
    got: Arc<Mutex<Vec<Value>>>,
    done: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Subscriber {
    /// Subscribes to `bus` and waits until the subscription is in place.
    fn start(bus: &Redis) -> Self {
        let got = Arc::new(Mutex::new(Vec::new()));
        let done = Arc::new(AtomicBool::new(false));
        let mut conn = bus.conn();
        let thread = {
            let (got, done) = (got.clone(), done.clone());
            std::thread::spawn(move || {
                let mut pubsub = conn.as_pubsub();
                pubsub.psubscribe("logs.redis.*").unwrap();
                pubsub
                    .set_read_timeout(Some(Duration::from_millis(100)))
                    .unwrap();
                while !done.load(Ordering::Relaxed) {
                    if let Ok(msg) = pubsub.get_message() {
                        let payload: String = msg.get_payload().unwrap();
                        got.lock()
                            .unwrap()
                            .push(serde_json::from_str(&payload).unwrap());
                    }
                }
            })
        };
        wait_for("the subscription", Duration::from_secs(10), || {
            let n: i64 = redis::cmd("PUBSUB")
                .arg("NUMPAT")
                .query(&mut bus.conn())
                .unwrap();
            (n >= 1).then_some(())
        });
        Self {
            got,
            done,
            thread: Some(thread),
        }
    }

    fn all(&self) -> Vec<Value> {
        self.got.lock().unwrap().clone()
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        self.done.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Ids that occur more than once.
fn duplicates(envelopes: &[Value]) -> Vec<String> {
    let mut seen = HashSet::new();
    envelopes
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_owned())
        .filter(|id| !seen.insert(id.clone()))
        .collect()
}

fn cmd(redis: &Redis, args: &[&str]) -> redis::Value {
    let mut cmd = redis::cmd(args[0]);
    for arg in &args[1..] {
        cmd.arg(*arg);
    }
    cmd.query(&mut redis.conn()).unwrap()
}

/// The daemon publishing ticks to a bus that refuses every XADD with
/// `code` (`sub` subscribed before the daemon started): the PUBLISHes
/// arrive once each, the log names the refusal and
/// `fix`, nothing reaches the stream; once `repair` ran on the bus the
/// stream receives every tick once, in order, and no PUBLISH is repeated.
/// The stop line counts the refusals and delivers everything.
fn refused_then_repaired(
    bus: &Redis,
    sub: Subscriber,
    lookout: &mut Lookout,
    code: &str,
    fix: &str,
    repair: impl FnOnce(),
) {
    let line = wait_for(
        "the refusal in the log and ten ticks on pub/sub",
        Duration::from_secs(30),
        || {
            let line = lookout
                .stderr
                .matching(&format!("with {code}"))
                .into_iter()
                .find(|l| l.contains("refused XADD"))?;
            (ticks(&sub.all()).len() >= 10).then_some(line)
        },
    );
    assert!(line.contains(fix), "{line}");
    assert!(
        ticks(&bus.stream_or_empty()).is_empty(),
        "nothing on the stream yet"
    );

    repair();
    let published = ticks(&sub.all());
    let last = *published.last().unwrap();
    wait_for(
        "the refused ticks on the stream",
        Duration::from_secs(30),
        || {
            ticks(&bus.stream(STREAM))
                .contains(&(last + 5))
                .then_some(())
        },
    );
    let counts = stop(lookout);
    let stream = bus.stream(STREAM);
    let published = sub.all();
    drop(sub);
    assert_eq!(
        duplicates(&published),
        Vec::<String>::new(),
        "no id twice on pub/sub"
    );
    assert_eq!(
        duplicates(&stream),
        Vec::<String>::new(),
        "no id twice on the stream"
    );
    assert!(no_gap(&ticks(&stream)), "{:?}", ticks(&stream));
    assert!(no_gap(&ticks(&published)), "{:?}", ticks(&published));
    // What was published before the repair reached the stream once.
    let on_stream: HashSet<&str> = stream.iter().map(|e| e["id"].as_str().unwrap()).collect();
    for e in by_target(&published, "ticker")
        .iter()
        .filter(|e| e["fields"]["n"].as_i64().unwrap() <= last)
    {
        assert!(on_stream.contains(e["id"].as_str().unwrap()), "{e}");
    }
    assert!(counts["refused"] >= 10, "{counts:?}");
    assert_eq!(counts["emitted"], counts["delivered"], "{counts:?}");
    assert_eq!(counts["lost"], 0);
    let stopped = lookout.stderr.matching("lookout stopped").pop().unwrap();
    assert!(
        stopped.contains(&format!("refused_by={code}:")),
        "{stopped}"
    );
}

trait StreamOrEmpty {
    fn stream_or_empty(&self) -> Vec<Value>;
}

impl StreamOrEmpty for Redis {
    /// The stream, or nothing while the key is missing or not a stream.
    fn stream_or_empty(&self) -> Vec<Value> {
        let kind: String = redis::cmd("TYPE")
            .arg(STREAM)
            .query(&mut self.conn())
            .unwrap();
        if kind == "stream" {
            self.stream(STREAM)
        } else {
            Vec::new()
        }
    }
}

fn breaker_config(tmp: &std::path::Path, bus: &Redis) -> std::path::PathBuf {
    bus_config(tmp, bus, "", "[breaker]\nfailures = 3\nrecovery_s = 0.3\n")
}

/// maxmemory below what the bus uses, policy noeviction: every XADD is
/// refused with OOM while PUBLISH (which needs no memory) goes out.
#[test]
fn oom_refused_xadd_is_retried_alone_never_republished() {
    let watched = Redis::start(&[]);
    let bus = Redis::start(&["--maxmemory-policy", "noeviction"]);
    let filler = "x".repeat(2 << 20);
    let _: () = redis::cmd("SET")
        .arg("filler")
        .arg(&filler)
        .query(&mut bus.conn())
        .unwrap();
    let used: u64 = info_field(&bus, "memory", "used_memory").parse().unwrap();
    let max = (used - (512 << 10)).to_string();
    cmd(&bus, &["CONFIG", "SET", "maxmemory", &max]);
    let tmp = tempfile::tempdir().unwrap();
    let config = breaker_config(tmp.path(), &bus);
    let sub = Subscriber::start(&bus);
    let mut lookout = start_ticker(tmp.path(), &watched, &config, "0.1");
    refused_then_repaired(&bus, sub, &mut lookout, "OOM", "raise maxmemory", || {
        cmd(&bus, &["CONFIG", "SET", "maxmemory", "0"]);
    });
}

/// The stream key holds a string: every XADD is refused with WRONGTYPE.
#[test]
fn wrongtype_stream_key_is_named_and_retried() {
    let watched = Redis::start(&[]);
    let bus = Redis::start(&[]);
    cmd(&bus, &["SET", STREAM, "not a stream"]);
    let tmp = tempfile::tempdir().unwrap();
    let config = breaker_config(tmp.path(), &bus);
    let sub = Subscriber::start(&bus);
    let mut lookout = start_ticker(tmp.path(), &watched, &config, "0.1");
    refused_then_repaired(
        &bus,
        sub,
        &mut lookout,
        "WRONGTYPE",
        "set [publish] stream_key",
        || {
            cmd(&bus, &["DEL", STREAM]);
        },
    );
}

/// The bus is a replica (as after a failover): XADD is refused with
/// READONLY, PUBLISH is not; promoting it lets the stream catch up.
#[test]
fn readonly_replica_bus_is_named_and_retried() {
    let watched = Redis::start(&[]);
    let primary = Redis::start(&[]);
    let bus = Redis::start(&["--replicaof", "127.0.0.1", &primary.port.to_string()]);
    let tmp = tempfile::tempdir().unwrap();
    let config = breaker_config(tmp.path(), &bus);
    let sub = Subscriber::start(&bus);
    let mut lookout = start_ticker(tmp.path(), &watched, &config, "0.1");
    refused_then_repaired(
        &bus,
        sub,
        &mut lookout,
        "READONLY",
        "point [publish] url at the primary",
        || {
            cmd(&bus, &["REPLICAOF", "NO", "ONE"]);
        },
    );
}

/// The bus user may PUBLISH but not XADD: NOPERM, named without the
/// password; granting XADD lets the stream catch up.
#[test]
fn noperm_is_named_without_the_password_and_retried() {
    const PASSWORD: &str = "hunter2-not-in-logs";
    let watched = Redis::start(&[]);
    let bus = Redis::start(&[]);
    cmd(
        &bus,
        &[
            "ACL",
            "SETUSER",
            "lookout",
            "on",
            &format!(">{PASSWORD}"),
            "~*",
            "&*",
            "+@all",
            "-xadd",
        ],
    );
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("etc");
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("lookout.toml");
    std::fs::write(
        &config,
        format!(
            "[publish]\nurl = 'redis://lookout:{PASSWORD}@127.0.0.1:{}'\n\
             [breaker]\nfailures = 3\nrecovery_s = 0.3\n",
            bus.port
        ),
    )
    .unwrap();
    let sub = Subscriber::start(&bus);
    let mut lookout = start_ticker(tmp.path(), &watched, &config, "0.1");
    refused_then_repaired(&bus, sub, &mut lookout, "NOPERM", "grant it", || {
        cmd(&bus, &["ACL", "SETUSER", "lookout", "+xadd"]);
    });
    let logs = lookout.stderr.all().join("\n");
    assert!(!logs.contains(PASSWORD), "the password is never printed");
}

/// Publishing into the watched Redis when its maxmemory-policy evicts any
/// key: one warn envelope and one log line say the stream may be evicted
/// and how to avoid it. Then the watched Redis runs out of memory: the
/// host's own next command makes it evict the stream (counted in its
/// `evicted_keys`), and one more warning says the stream was evicted; its
/// XADDs are refused with OOM and named as such until memory is back.
/// Neither warning repeats, not even when the stream vanishes again.
#[test]
fn an_evicting_watched_bus_and_a_vanished_stream_are_reported_once() {
    let watched = Redis::start(&["--maxmemory-policy", "allkeys-lru"]);
    let tmp = tempfile::tempdir().unwrap();
    let plugins = plugins_with(tmp.path(), &[], &["ticker"]);
    let mut lookout = run_lookout(
        tmp.path(),
        &watched.url(),
        &plugins,
        &["--poll-interval", "0.1"],
    );
    lookout.wait_started();
    let is_policy = |e: &Value| {
        e["target"] == "lookout" && e["msg"].as_str().unwrap().contains("may evict the stream")
    };
    let warned = wait_for("the eviction warning", Duration::from_secs(20), || {
        watched.stream(STREAM).into_iter().find(|e| is_policy(e))
    });
    assert_eq!(warned["level"], "warn");
    assert_eq!(warned["fields"]["policy"], "allkeys-lru");
    assert_eq!(warned["fields"]["watched"], true);
    let msg = warned["msg"].as_str().unwrap();
    assert!(msg.contains("set [publish] url to another Redis"), "{msg}");
    assert!(msg.contains("evicted_keys"), "{msg}");

    // No memory left: the next command evicts every key, the stream too.
    let sub = Subscriber::start(&watched);
    cmd(&watched, &["CONFIG", "SET", "maxmemory", "1"]);
    let is_vanished =
        |e: &Value| e["target"] == "lookout" && e["msg"].as_str().unwrap().contains("vanished");
    let vanished = wait_for(
        "the vanished-stream warning on pub/sub",
        Duration::from_secs(20),
        || sub.all().into_iter().find(|e| is_vanished(e)),
    );
    let refused = wait_for("the OOM refusal", Duration::from_secs(20), || {
        lookout
            .stderr
            .matching("refused XADD")
            .into_iter()
            .find(|l| l.contains("with OOM"))
    });
    assert!(
        refused.contains("(allkeys-lru) found nothing more to evict"),
        "{refused}"
    );
    let evicted: u64 = info_field(&watched, "stats", "evicted_keys")
        .parse()
        .unwrap();
    assert!(evicted >= 1, "the stream was evicted");
    cmd(&watched, &["CONFIG", "SET", "maxmemory", "0"]);
    wait_for(
        "the warning on the new stream",
        Duration::from_secs(20),
        || {
            watched
                .stream_or_empty()
                .iter()
                .any(|e| e["id"] == vanished["id"])
                .then_some(())
        },
    );
    let msg = vanished["msg"].as_str().unwrap();
    assert!(
        msg.contains("evicted under maxmemory-policy allkeys-lru"),
        "{msg}"
    );
    // Once more: still no second warning of either kind.
    cmd(&watched, &["DEL", STREAM]);
    let after = wait_for(
        "ticks after the second loss",
        Duration::from_secs(20),
        || {
            let all = watched.stream_or_empty();
            (ticks(&all).len() >= 10).then_some(all)
        },
    );
    assert!(!after.iter().any(|e| is_vanished(e) || is_policy(e)));
    stop(&mut lookout);
    let logs = lookout.stderr.all();
    assert_eq!(
        logs.iter()
            .filter(|l| l.contains("may evict the stream"))
            .count(),
        1
    );
    assert_eq!(logs.iter().filter(|l| l.contains("vanished")).count(), 1);
}

/// The bus's last RDB snapshot failed (it saves into /proc) with
/// stop-writes-on-bgsave-error: every XADD is refused with MISCONF.
#[test]
fn misconf_bus_is_named_and_retried() {
    let watched = Redis::start(&[]);
    let bus = Redis::start(&["--enable-protected-configs", "yes"]);
    let dir = info_dir(&bus);
    cmd(&bus, &["CONFIG", "SET", "save", "3600 1"]);
    cmd(&bus, &["CONFIG", "SET", "dir", "/proc"]);
    cmd(&bus, &["BGSAVE"]);
    wait_for("the snapshot to fail", Duration::from_secs(10), || {
        (info_field(&bus, "persistence", "rdb_last_bgsave_status") == "err").then_some(())
    });
    let tmp = tempfile::tempdir().unwrap();
    let config = breaker_config(tmp.path(), &bus);
    let sub = Subscriber::start(&bus);
    let mut lookout = start_ticker(tmp.path(), &watched, &config, "0.1");
    refused_then_repaired(
        &bus,
        sub,
        &mut lookout,
        "MISCONF",
        "stop-writes-on-bgsave-error",
        || {
            cmd(&bus, &["CONFIG", "SET", "dir", &dir]);
            cmd(
                &bus,
                &["CONFIG", "SET", "stop-writes-on-bgsave-error", "no"],
            );
        },
    );
}

/// The bus's working folder.
fn info_dir(redis: &Redis) -> String {
    let reply: Vec<String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("dir")
        .query(&mut redis.conn())
        .unwrap();
    reply[1].clone()
}

/// The bus refuses XADD with OOM while the host spools, then the host is
/// killed -9 and restarted after the bus got memory back: the replay sends
/// only the XADDs of what was already PUBLISHed, so pub/sub sees each id
/// once across both runs (the batch in flight at the kill, executed by the
/// bus but its replies never read, is the one exception), and the stream
/// gets every tick of the first run once, in order.
#[test]
fn a_restart_after_refused_xadds_does_not_publish_again() {
    let watched = Redis::start(&[]);
    let bus = Redis::start(&["--maxmemory-policy", "noeviction"]);
    let _: () = redis::cmd("SET")
        .arg("filler")
        .arg("x".repeat(2 << 20))
        .query(&mut bus.conn())
        .unwrap();
    let used: u64 = info_field(&bus, "memory", "used_memory").parse().unwrap();
    cmd(
        &bus,
        &[
            "CONFIG",
            "SET",
            "maxmemory",
            &(used - (512 << 10)).to_string(),
        ],
    );
    let tmp = tempfile::tempdir().unwrap();
    let config = bus_config(
        tmp.path(),
        &bus,
        "",
        &format!(
            "[buffer]\ndir = '{}'\n[breaker]\nrecovery_s = 0.3\n",
            tmp.path().join("spool").display()
        ),
    );
    let sub = Subscriber::start(&bus);
    let first = start_ticker(tmp.path(), &watched, &config, "0.1");
    wait_for(
        "ten ticks on pub/sub, none on the stream",
        Duration::from_secs(30),
        || (ticks(&sub.all()).len() >= 10).then_some(()),
    );
    drop(first); // SIGKILL
    let first_run = sub.all();
    let first_ticks = ticks(&first_run);
    let last = *first_ticks.last().unwrap();
    cmd(&bus, &["CONFIG", "SET", "maxmemory", "0"]);

    let mut second = start_ticker(tmp.path(), &watched, &config, "0.1");
    let pid = first_run[0]["pid"].clone();
    wait_for(
        "the first run's ticks on the stream",
        Duration::from_secs(30),
        || {
            let all = bus.stream(STREAM);
            let mine: Vec<Value> = all.into_iter().filter(|e| e["pid"] == pid).collect();
            ticks(&mine).contains(&last).then_some(())
        },
    );
    stop(&mut second);
    let stream: Vec<Value> = bus
        .stream(STREAM)
        .into_iter()
        .filter(|e| e["pid"] == pid)
        .collect();
    let published = sub.all();
    drop(sub);
    let stream_ticks = ticks(&stream);
    assert!(no_gap(&stream_ticks), "{stream_ticks:?}");
    assert!(stream_ticks.len() as i64 >= last, "{stream_ticks:?}");
    assert_eq!(duplicates(&stream), Vec::<String>::new());
    let again: Vec<i64> = ticks(
        &published
            .iter()
            .filter(|e| duplicates(&published).contains(&e["id"].as_str().unwrap().to_owned()))
            .cloned()
            .collect::<Vec<_>>(),
    );
    // The PUBLISHes of the batch in flight at the kill (executed by the bus,
    // their replies never read) may go out again; nothing older may.
    let mut repeated: Vec<i64> = again;
    repeated.sort_unstable();
    repeated.dedup();
    if let (Some(first), Some(newest)) = (repeated.first(), repeated.last()) {
        assert!(
            *newest >= last && newest - first + 1 == repeated.len() as i64,
            "only the batch in flight at the kill may be published again \
             (newest tick seen before the kill: {last}): {repeated:?}"
        );
    }
}

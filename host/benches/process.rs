//! Whole-process rows of `make bench`: the real `lookout` binary against
//! real redis-servers, measured from outside through /proc, every thread
//! and idle time included; the Bash sidecar tick it replaces as an anchor;
//! and the poll cadence kept while the bus is frozen.
//!
//! CPU time comes from `/proc/PID/task/TID/schedstat` (nanoseconds run, per
//! thread), sampled every 50 ms so that a thread that exits mid-window
//! loses at most its last 50 ms. The process-wide `utime + stime` of
//! `/proc/PID/stat` (which keeps exited threads but is counted in 10 ms
//! clock ticks, too coarse for the idle rows) is printed beside it as a
//! cross-check. Polls are counted exactly on the watched Redis: each poll
//! sends one PING, read back as `cmdstat_ping:calls` of INFO commandstats.

use std::collections::HashMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::row;
use crate::support::{self, Redis, lookout_cmd, wait_for};

/// The whole-process rows, on the bench's watched Redis `redis` and on
/// redis-servers of their own.
pub fn rows(redis: &Redis) {
    let tmp = tempfile::tempdir().unwrap();
    let plugins = support::bundled(tmp.path());
    let cache = tmp.path().join("cache");
    warm_cache(redis, &cache, &plugins);
    cpu_per_poll(redis, &cache, &plugins, "three watchers");
    let all = all_watchers(redis, tmp.path());
    warm_cache(redis, &cache, &all);
    cpu_per_poll(redis, &cache, &all, "all nine watchers");
    let per_interval = cpu_per_interval(redis, &cache, &plugins);
    seed_tick(per_interval);
    frozen_bus(&cache);
}

/// A running `lookout`, killed on drop.
struct Running {
    child: Child,
    /// Its stderr: the log that says when it has started.
    log: tempfile::NamedTempFile,
}

impl Running {
    /// Spawns `lookout run ARGS...` watching `redis` with the compile cache
    /// `cache`, and waits until start-up is over: it has logged its start,
    /// polled once since, and its threads have gone quiet (under 10% of a
    /// core for 200 ms), whatever order it loads watchers and polls in.
    fn start(redis: &Redis, cache: &Path, args: &[&str]) -> Self {
        let log = tempfile::NamedTempFile::new().unwrap();
        let mut cmd = lookout_cmd(cache);
        cmd.args(["run", "--redis-url", &redis.url()])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log.reopen().unwrap());
        let mut running = Self {
            child: cmd.spawn().unwrap(),
            log,
        };
        wait_for("lookout to start", Duration::from_secs(30), || {
            if let Some(status) = running.child.try_wait().unwrap() {
                panic!("lookout exited ({status}): {}", running.log_text());
            }
            running.log_text().contains("lookout started").then_some(())
        });
        let mut conn = redis.conn();
        let after_start = pings(&mut conn);
        wait_for("the first poll", Duration::from_secs(30), || {
            (pings(&mut conn) > after_start).then_some(())
        });
        let pid = running.pid();
        let busy_ns = || thread_ns(pid).iter().map(|(_, ns)| ns).sum::<u64>();
        let mut before = busy_ns();
        wait_for("start-up work to end", Duration::from_secs(30), || {
            std::thread::sleep(Duration::from_millis(200));
            let now = busy_ns();
            let quiet = now.saturating_sub(before) < 20_000_000;
            before = now;
            quiet.then_some(())
        });
        running
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(self.log.path()).unwrap_or_default()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// PINGs `redis` has answered so far: one per poll of a daemon watching it.
pub(crate) fn pings(conn: &mut redis::Connection) -> u64 {
    let info: String = redis::cmd("INFO").arg("commandstats").query(conn).unwrap();
    info.lines()
        .find_map(|l| l.strip_prefix("cmdstat_ping:calls="))
        .map_or(0, |rest| rest.split(',').next().unwrap().parse().unwrap())
}

/// Nanoseconds run so far by each live thread of `pid`.
fn thread_ns(pid: u32) -> Vec<(u32, u64)> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .filter_map(|task| {
            let task = task.ok()?;
            let tid = task.file_name().to_str()?.parse().ok()?;
            // A thread may exit between the listing and the read.
            let stat = std::fs::read_to_string(task.path().join("schedstat")).ok()?;
            Some((tid, stat.split_whitespace().next()?.parse().ok()?))
        })
        .collect()
}

/// `utime + stime` of the whole process `pid` (all threads, exited ones
/// included), in clock ticks.
pub(crate) fn process_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the parenthesised name start at field 3 (state), so
    // utime (14) and stime (15) are the 12th and 13th.
    let after_name = &stat[stat.rfind(')').unwrap() + 1..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

/// Clock ticks per second (`getconf CLK_TCK`; 100 if that fails).
pub(crate) fn clock_ticks() -> u64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100)
}

/// What one measurement window saw.
struct Window {
    /// CPU nanoseconds of every thread, from schedstat.
    cpu_ns: u64,
    /// The same from `/proc/PID/stat`, in whole clock ticks.
    tick_ns: u64,
    /// PINGs the watched Redis answered: the daemon's polls.
    polls: u64,
    elapsed: Duration,
    /// Threads that ran in the window and had exited by its end: each may
    /// have run up to one sample period unseen. (Idle pool threads that
    /// time out are not counted: they lose nothing.)
    threads_gone: usize,
}

/// Measures the process `pid` for `length` while it polls `redis`.
fn measure(pid: u32, redis: &Redis, length: Duration) -> Window {
    let mut conn = redis.conn();
    let pings_before = pings(&mut conn);
    let ticks_before = process_ticks(pid);
    let base: HashMap<u32, u64> = thread_ns(pid).into_iter().collect();
    let mut last = base.clone();
    let start = Instant::now();
    loop {
        let left = length.saturating_sub(start.elapsed());
        if left.is_zero() {
            break;
        }
        std::thread::sleep(left.min(Duration::from_millis(50)));
        last.extend(thread_ns(pid));
    }
    let elapsed = start.elapsed();
    let live: Vec<u32> = thread_ns(pid).into_iter().map(|(tid, _)| tid).collect();
    let ticks = process_ticks(pid) - ticks_before;
    let polls = pings(&mut conn) - pings_before;
    // A thread born in the window counts from zero.
    let cpu_ns = last
        .iter()
        .map(|(tid, ns)| ns - base.get(tid).copied().unwrap_or(0))
        .sum();
    Window {
        cpu_ns,
        tick_ns: ticks * 1_000_000_000 / clock_ticks(),
        polls,
        elapsed,
        threads_gone: last
            .iter()
            .filter(|(tid, ns)| !live.contains(tid) && base.get(tid) != Some(ns))
            .count(),
    }
}

/// The polls of each window, and a warning row when threads exited
/// mid-window (their last moments are not counted).
fn window_rows(windows: &[Window], length: &str) {
    let each = |f: fn(&Window) -> String| windows.iter().map(f).collect::<Vec<_>>().join(" ");
    row(
        &format!("  median of 3 runs; polls (PINGs) in each {length}"),
        each(|w| w.polls.to_string()),
        "",
    );
    if windows.iter().any(|w| w.threads_gone > 0) {
        row(
            "  threads that ran, then exited (< 50 ms lost each)",
            each(|w| w.threads_gone.to_string()),
            "",
        );
    }
}

pub(crate) fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// One `--once` run so that the measured daemons start on a warm compile
/// cache.
pub(crate) fn warm_cache(redis: &Redis, cache: &Path, plugins: &Path) {
    let mut cmd = lookout_cmd(cache);
    cmd.args(["run", "--once", "--dry-run", "--redis-url", &redis.url()])
        .arg("--plugins")
        .arg(plugins);
    let (status, _, stderr) = support::run_to_end(cmd, Duration::from_secs(120));
    assert!(status.success(), "warming the compile cache: {stderr}");
}

/// Three daemons polling every `interval` seconds, each measured for
/// `length`.
fn three_windows(
    redis: &Redis,
    cache: &Path,
    plugins: &Path,
    interval: &str,
    length: Duration,
) -> Vec<Window> {
    (0..3)
        .map(|_| {
            let plugins = plugins.to_str().unwrap();
            let daemon = Running::start(
                redis,
                cache,
                &["--poll-interval", interval, "--plugins", plugins],
            );
            measure(daemon.pid(), redis, length)
        })
        .collect()
}

/// A plugins folder with every bundled watcher in `tmp`, with work to
/// do on `redis`: a stream with a consumer group for stream-lag, the 16
/// rules of rules.example.toml for rules.
fn all_watchers(redis: &Redis, tmp: &Path) -> std::path::PathBuf {
    let dir = tmp.join("all");
    std::fs::create_dir_all(&dir).unwrap();
    for name in support::ALL_WATCHERS {
        let wasm = format!("{name}.wasm");
        std::fs::copy(support::plugins_dir().join(&wasm), dir.join(&wasm)).unwrap();
    }
    std::fs::write(dir.join("stream-lag.toml"), "streams = 'bench:jobs'\n").unwrap();
    std::fs::copy(
        support::repo().join("plugins/rules/rules.example.toml"),
        dir.join("rules.toml"),
    )
    .unwrap();
    let mut conn = redis.conn();
    // Already there when the bench ran before on this server: fine.
    let _ = redis::cmd("XGROUP")
        .arg(&["CREATE", "bench:jobs", "workers", "$", "MKSTREAM"][..])
        .exec(&mut conn);
    dir
}

/// Microseconds of CPU per poll at a 20 ms cadence, whole process, median
/// of three daemons measured for 10 s each, with the watchers in `plugins`
/// (`label` says which).
fn cpu_per_poll(redis: &Redis, cache: &Path, plugins: &Path, label: &str) {
    let windows = three_windows(redis, cache, plugins, "0.02", Duration::from_secs(10));
    let per_poll = |ns: fn(&Window) -> u64| {
        median(
            windows
                .iter()
                .map(|w| ns(w) as f64 / 1e3 / w.polls.max(1) as f64)
                .collect(),
        )
    };
    let us = per_poll(|w| w.cpu_ns);
    row(
        &format!("CPU per poll at 20 ms cadence, whole process, {label}"),
        format!("{us:.0} us"),
        "<= 150 us",
    );
    row(
        "  same from /proc/PID/stat clock ticks",
        format!("{:.0} us", per_poll(|w| w.tick_ns)),
        "",
    );
    window_rows(&windows, "10 s");
}

/// Milliseconds of CPU per 5 s poll interval at the default cadence, idle
/// time included: three daemons, each measured for 30 s once start-up and
/// its first poll are over.
fn cpu_per_interval(redis: &Redis, cache: &Path, plugins: &Path) -> f64 {
    let windows = three_windows(redis, cache, plugins, "5", Duration::from_secs(30));
    let per_interval = |ns: fn(&Window) -> u64| {
        median(
            windows
                .iter()
                .map(|w| ns(w) as f64 / 1e6 * 5.0 / w.elapsed.as_secs_f64())
                .collect(),
        )
    };
    let ms = per_interval(|w| w.cpu_ns);
    row(
        "CPU per 5 s interval, one target, idle included",
        format!("{ms:.2} ms"),
        "<= 1 ms",
    );
    row(
        "  same from /proc/PID/stat clock ticks",
        format!("{:.2} ms", per_interval(|w| w.tick_ns)),
        "",
    );
    window_rows(&windows, "30 s");
    ms
}

/// CPU milliseconds (user + system, the script and every process it runs)
/// of one run of `seed-tick.sh`, from Bash's `time` (getrusage of the
/// children, printed to the millisecond).
pub(crate) fn tick_ms(redis: &Redis, python: &str, last_clients: &str) -> f64 {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/seed-tick.sh");
    let out = Command::new("bash")
        .args([
            "-c",
            r#"TIMEFORMAT="%3U %3S"; time bash "$1" >/dev/null"#,
            "tick",
        ])
        .arg(script)
        .env("REDIS_URL", redis.url())
        .env("PYTHON", python)
        .env("LAST_CLIENTS", last_clients)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "seed tick failed: {stderr}");
    stderr
        .lines()
        .last()
        .and_then(|l| {
            let (user, sys) = l.split_once(' ')?;
            Some(user.parse::<f64>().ok()? + sys.parse::<f64>().ok()?)
        })
        .unwrap_or_else(|| panic!("no `time` line: {stderr}"))
        * 1e3
}

/// The anchor: CPU of one tick of the Bash sidecar Lookout replaces,
/// quiet and emitting one event, median of 10 each, against `lookout_ms`
/// (Lookout's CPU per 5 s interval).
fn seed_tick(lookout_ms: f64) {
    let redis = Redis::start(&[]);
    let python = python();
    for _ in 0..2 {
        tick_ms(&redis, &python, "");
    }
    // No previous client count: nothing to report. A previous count of
    // 100 against about one client now: one client-delta event.
    let quiet = median((0..10).map(|_| tick_ms(&redis, &python, "")).collect());
    let event = median((0..10).map(|_| tick_ms(&redis, &python, "100")).collect());
    row(
        "seed Bash tick, quiet: PING INFO SLOWLOG python3",
        format!("{quiet:.1} ms"),
        "",
    );
    row(
        "seed Bash tick, one event: + PUBLISH, XADD",
        format!("{event:.1} ms"),
        "",
    );
    row(
        "seed tick / Lookout 5 s interval (quiet, one event)",
        format!(
            "{:.0}x, {:.0}x",
            quiet / lookout_ms.max(1e-3),
            event / lookout_ms.max(1e-3)
        ),
        "",
    );
}

/// SIGCONT on drop for a process stopped with SIGSTOP.
struct Stopped<'a>(&'a str);

impl Stopped<'_> {
    fn stop(pid: &str) -> Stopped<'_> {
        signal("-STOP", pid);
        Stopped(pid)
    }
}

impl Drop for Stopped<'_> {
    fn drop(&mut self) {
        // No assertion here: this may run while a panic unwinds.
        let _ = Command::new("kill").args(["-CONT", self.0]).status();
    }
}

fn signal(signal: &str, pid: &str) {
    let status = Command::new("kill").args([signal, pid]).status().unwrap();
    assert!(status.success(), "kill {signal} {pid}");
}

/// Polls during 5 s of a frozen bus (SIGSTOP: connections accepted by the
/// kernel, never answered) at a 0.25 s cadence, with 0.5 s connect and
/// response timeouts and the `ticker` fixture publishing on every poll.
fn frozen_bus(cache: &Path) {
    let watched = Redis::start(&[]);
    let bus = Redis::start(&[]);
    let tmp = tempfile::tempdir().unwrap();
    let plugins = support::plugins_with(tmp.path(), &[], &["ticker"]);
    // A folder of its own: the daemon's reload watcher sees nothing else.
    let etc = tmp.path().join("etc");
    std::fs::create_dir_all(&etc).unwrap();
    let config = etc.join("lookout.toml");
    std::fs::write(
        &config,
        format!(
            "connect_timeout = 0.5\nresponse_timeout = 0.5\n[publish]\nurl = '{}'\n",
            bus.url()
        ),
    )
    .unwrap();
    let _daemon = Running::start(
        &watched,
        cache,
        &[
            "--poll-interval",
            "0.25",
            "--plugins",
            plugins.to_str().unwrap(),
            "--config",
            config.to_str().unwrap(),
        ],
    );
    let mut bus_conn = bus.conn();
    wait_for("ticks on the bus", Duration::from_secs(20), || {
        let len: u64 = redis::cmd("XLEN")
            .arg("logs:stream:redis")
            .query(&mut bus_conn)
            .unwrap();
        (len >= 2).then_some(())
    });
    let info: String = redis::cmd("INFO")
        .arg("server")
        .query(&mut bus_conn)
        .unwrap();
    let pid = info
        .lines()
        .find_map(|l| l.strip_prefix("process_id:"))
        .unwrap()
        .trim()
        .to_owned();
    let mut conn = watched.conn();
    let (polls, elapsed) = {
        let _frozen = Stopped::stop(&pid);
        let start = Instant::now();
        let before = pings(&mut conn);
        std::thread::sleep(Duration::from_secs(5));
        let polls = pings(&mut conn) - before;
        (polls, start.elapsed())
    };
    row(
        "polls during a 5 s bus freeze at 0.25 s cadence",
        format!("{polls} in {:.2} s", elapsed.as_secs_f64()),
        ">= 18",
    );
}

/// The python3 interpreter itself, not a version manager's shim in front
/// of it: the seed tick runs it.
pub(crate) fn python() -> String {
    let python = Command::new("python3")
        .args(["-c", "import sys; print(sys.executable)"])
        .output()
        .expect("python3 is needed for the seed tick");
    String::from_utf8(python.stdout).unwrap().trim().to_owned()
}

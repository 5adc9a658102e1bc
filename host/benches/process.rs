//! Whole-process rows of `make bench`: the real `lookout` binary against
//! real redis-servers, measured from outside through /proc (see
//! `measure.rs`), every thread and idle time included; what its polls cost
//! the watched Redis; redis_exporter and the Bash sidecar tick Lookout
//! replaces as anchors in the same run; and the poll cadence kept while the
//! bus is frozen.
//!
//! Polls are counted exactly on the watched Redis: each poll sends one
//! PING, read back as `cmdstat_ping:calls` of INFO commandstats. The cost
//! on that Redis is the sum of the `usec` of every command in the same
//! INFO over the window (the bench's own reads left out).

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::exporter;
use crate::measure::{Bin, CommandStats, Cpu, CpuWindow, busy_ns, median, status_kib, verdict};
use crate::row;
use crate::support::{self, Redis, wait_for};

/// The whole-process rows of `bin`, on the bench's watched Redis `redis`
/// and on redis-servers of their own.
pub fn rows(redis: &Redis, bin: &Bin) {
    let tmp = tempfile::tempdir().unwrap();
    let plugins = support::bundled(tmp.path());
    let cache = tmp.path().join("cache");
    warm_cache(bin, redis, &cache, &plugins);
    let three = cpu_per_poll(bin, redis, &cache, &plugins, "three watchers", Some(150.0));
    let all = all_watchers(redis, tmp.path());
    warm_cache(bin, redis, &cache, &all);
    let every = format!("all {} bundled watchers", support::ALL_WATCHERS.len());
    let all_us = cpu_per_poll(bin, redis, &cache, &all, &every, None);
    let ratio = all_us / three;
    row(
        &format!("CPU per poll, {every} over three"),
        format!("{ratio:.2}x"),
        &verdict("<= 1.5x", ratio <= 1.5),
    );
    exporter_rows(redis, three);
    let per_interval = cpu_per_interval(bin, redis, &cache, &plugins);
    seed_tick(per_interval);
    frozen_bus(bin, &cache);
}

/// A running `lookout`, killed on drop.
struct Running {
    child: Child,
    /// Its stderr: the log that says when it has started.
    log: tempfile::NamedTempFile,
}

impl Running {
    /// Spawns `bin run ARGS...` watching `redis` with the compile cache
    /// `cache`, and waits until start-up is over: it has logged its start,
    /// polled once since, and its threads have gone quiet (under 10% of a
    /// core for 200 ms), whatever order it loads watchers and polls in.
    fn start(bin: &Bin, redis: &Redis, cache: &Path, args: &[&str]) -> Self {
        let log = tempfile::NamedTempFile::new().unwrap();
        let mut cmd = bin.command(cache);
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
        let mut before = busy_ns(pid);
        wait_for("start-up work to end", Duration::from_secs(30), || {
            std::thread::sleep(Duration::from_millis(200));
            let now = busy_ns(pid);
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
    CommandStats::read(conn).pings()
}

/// What one measurement window saw.
pub(crate) struct Window {
    pub cpu: Cpu,
    /// PINGs the watched Redis answered: the daemon's polls.
    pub polls: u64,
    /// Every command the watched Redis ran in the window.
    pub redis: CommandStats,
    pub elapsed: Duration,
    /// The daemon's RSS at the end of the window.
    pub rss_kib: u64,
}

impl Window {
    pub fn us_per_poll(&self) -> f64 {
        self.cpu.ns as f64 / 1e3 / self.polls.max(1) as f64
    }
}

/// Measures the process `pid` for `length` while it polls `redis`.
fn measure(pid: u32, redis: &Redis, length: Duration) -> Window {
    let mut conn = redis.conn();
    let before = CommandStats::start(&mut conn);
    let start = Instant::now();
    let mut cpu = CpuWindow::start(pid);
    cpu.run_for(length);
    let cpu = cpu.finish();
    let elapsed = start.elapsed();
    let redis = CommandStats::read(&mut conn).since(&before);
    Window {
        cpu,
        polls: redis.pings(),
        redis,
        elapsed,
        rss_kib: status_kib(&pid.to_string(), "VmRSS"),
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
    if windows.iter().any(|w| w.cpu.threads_gone > 0) {
        row(
            "  threads that ran, then exited (< 50 ms lost each)",
            each(|w| w.cpu.threads_gone.to_string()),
            "",
        );
    }
}

/// One `--once` run of `bin` so that the measured daemons start on a warm
/// compile cache.
pub(crate) fn warm_cache(bin: &Bin, redis: &Redis, cache: &Path, plugins: &Path) {
    let mut cmd = bin.command(cache);
    cmd.args(["run", "--once", "--dry-run", "--redis-url", &redis.url()])
        .arg("--plugins")
        .arg(plugins);
    let (status, _, stderr) = support::run_to_end(cmd, Duration::from_secs(120));
    assert!(status.success(), "warming the compile cache: {stderr}");
}

/// A daemon of `bin` polling every `interval` seconds with the watchers in
/// `plugins`, measured for `length`.
pub(crate) fn window(
    bin: &Bin,
    redis: &Redis,
    cache: &Path,
    plugins: &Path,
    interval: &str,
    length: Duration,
) -> Window {
    let plugins = plugins.to_str().unwrap();
    let daemon = Running::start(
        bin,
        redis,
        cache,
        &["--poll-interval", interval, "--plugins", plugins],
    );
    measure(daemon.pid(), redis, length)
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

/// The Redis rows of 20 ms windows: the median of the usec the watched
/// Redis spent per poll, and by command in the median window.
fn redis_rows(windows: &[Window]) {
    let per_poll: Vec<f64> = windows
        .iter()
        .map(|w| w.redis.usec() as f64 / w.polls.max(1) as f64)
        .collect();
    let us = median(per_poll.clone());
    row(
        "  on the watched Redis per poll (commandstats usec)",
        format!("{us:.1} us"),
        "",
    );
    let mid = windows
        .iter()
        .zip(&per_poll)
        .find(|(_, p)| **p == us)
        .map_or(&windows[0], |(w, _)| w);
    row(
        "  by command, us per poll",
        mid.redis.breakdown(mid.polls),
        "",
    );
}

/// Microseconds of CPU per poll at a 20 ms cadence, whole process, median
/// of three daemons measured for 10 s each, with the watchers in `plugins`
/// (`label` says which) and the target `target_us` if there is one.
fn cpu_per_poll(
    bin: &Bin,
    redis: &Redis,
    cache: &Path,
    plugins: &Path,
    label: &str,
    target_us: Option<f64>,
) -> f64 {
    let windows: Vec<Window> = (0..3)
        .map(|_| window(bin, redis, cache, plugins, "0.02", Duration::from_secs(10)))
        .collect();
    let per_poll = |ns: fn(&Window) -> u64| {
        median(
            windows
                .iter()
                .map(|w| ns(w) as f64 / 1e3 / w.polls.max(1) as f64)
                .collect(),
        )
    };
    let us = per_poll(|w| w.cpu.ns);
    row(
        &format!("CPU per poll at 20 ms cadence, whole process, {label}"),
        format!("{us:.0} us"),
        &target_us.map_or_else(String::new, |t| verdict(&format!("<= {t:.0} us"), us <= t)),
    );
    row(
        "  same from /proc/PID/stat clock ticks",
        format!("{:.0} us", per_poll(|w| w.cpu.tick_ns)),
        "",
    );
    redis_rows(&windows);
    window_rows(&windows, "10 s");
    us
}

/// redis_exporter on the same Redis, scraped every 20 ms: its CPU per
/// scrape beside `lookout_us` (CPU per poll, three watchers).
fn exporter_rows(redis: &Redis, lookout_us: f64) {
    let name = format!("redis_exporter {}", exporter::version().unwrap_or_default());
    let Some(windows) = exporter::windows(redis, Duration::from_secs(10)) else {
        row(
            &format!("{name}: CPU per scrape"),
            "not installed (make redis-exporter)".to_owned(),
            "",
        );
        return;
    };
    let (cpu_us, redis_us) = exporter::per_scrape(&windows);
    row(
        &format!("{name}: CPU per scrape every 20 ms, whole process (anchor)"),
        format!("{cpu_us:.0} us"),
        "",
    );
    row(
        "  on the watched Redis per scrape (commandstats usec)",
        format!("{redis_us:.1} us"),
        "",
    );
    let w = &windows[1];
    row(
        "  by command, us per scrape",
        w.redis.breakdown(w.scrapes),
        "",
    );
    row(
        "  median of 3 runs; scrapes in each 10 s",
        windows
            .iter()
            .map(|w| w.scrapes.to_string())
            .collect::<Vec<_>>()
            .join(" "),
        "",
    );
    row(
        "  Lookout poll (three watchers) against one scrape",
        format!("{:.2}x", lookout_us / cpu_us.max(1e-3)),
        "",
    );
}

/// Milliseconds of CPU per 5 s poll interval at the default cadence, idle
/// time included: three daemons, each measured for 30 s once start-up and
/// its first poll are over.
fn cpu_per_interval(bin: &Bin, redis: &Redis, cache: &Path, plugins: &Path) -> f64 {
    let windows: Vec<Window> = (0..3)
        .map(|_| window(bin, redis, cache, plugins, "5", Duration::from_secs(30)))
        .collect();
    let per_interval = |ns: fn(&Window) -> u64| {
        median(
            windows
                .iter()
                .map(|w| ns(w) as f64 / 1e6 * 5.0 / w.elapsed.as_secs_f64())
                .collect(),
        )
    };
    let ms = per_interval(|w| w.cpu.ns);
    row(
        "CPU per 5 s interval, one target, idle included",
        format!("{ms:.2} ms"),
        &verdict("<= 1 ms", ms <= 1.0),
    );
    row(
        "  same from /proc/PID/stat clock ticks",
        format!("{:.2} ms", per_interval(|w| w.cpu.tick_ns)),
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
fn frozen_bus(bin: &Bin, cache: &Path) {
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
        bin,
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
        &verdict(">= 18", polls >= 18),
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

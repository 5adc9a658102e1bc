//! `make bench-fleet`: one `lookout` process watching 1 to 10,000 Redis
//! targets spread over 100 real redis-servers, measured from outside
//! through /proc (every thread, see `measure.rs`), with what its polls cost
//! the watched servers (INFO commandstats), the seed's Bash tick and
//! redis_exporter as anchors in the same run; and, in this process, what
//! one watcher instance costs in memory. Each row is the median of
//! `FLEET_RUNS` runs, each with a daemon of its own.
//!
//! Environment (for quick runs): `FLEET_ROWS` (target counts, default
//! `1,100,1000,10000`), `FLEET_WINDOW_S` (measured seconds per run, default
//! 60), `FLEET_RUNS` (runs per row, default 3), `FLEET_SERVERS`
//! (redis-servers, default 100), `FLEET_INSTANCES` (in-process instances per
//! watcher, default 1000; 0 skips that part), `FLEET_LOG_DIR` (a folder to
//! keep each run's daemon log in), `LOOKOUT_BINS` (several binaries, each
//! measured on every row, runs interleaved; see `measure.rs`).
//! A measurement, not a test: nothing here asserts speed.

#[path = "../../tests/integration/support.rs"]
#[allow(dead_code)]
mod support;

#[allow(dead_code)]
mod exporter;
mod fleet_table;
#[allow(dead_code)]
mod measure;
#[allow(dead_code)]
mod process;

#[path = "../src/fdlimit.rs"]
#[allow(dead_code, unused_imports)]
mod fdlimit;

use std::fmt::Write as _;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fleet_table::{Anchors, Measured, print_runs, print_table, print_targets};
use lookout::Layout;
use lookout::load;
use lookout::{Engine, Instance};
use lookout::{Overrides, Settings};
use lookout::{Probes, Snapshot, parse_info};
use measure::{Bin, CommandStats, CpuWindow, median, status_kib};
use support::{BUNDLED, Redis, plugins_dir, wait_for};

/// Seconds between polls of every target, the default.
const INTERVAL_S: f64 = 5.0;

/// Used by `process.rs`; this bench prints its own tables.
fn row(what: &str, value: String, target: &str) {
    println!("| {what} | {value} | {target} |");
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

/// Memory mappings of a process: each linear memory and fiber stack adds
/// some, and `vm.max_map_count` (65,530 by default) caps them.
fn mappings(pid: &str) -> usize {
    std::fs::read_to_string(format!("/proc/{pid}/maps"))
        .map(|m| m.lines().count())
        .unwrap_or(0)
}

/// A quiet snapshot of `redis`: its full INFO, no new SLOWLOG entry.
fn quiet_snapshot(redis: &Redis) -> Snapshot {
    let mut conn = redis.conn();
    let info: String = redis::cmd("INFO").query(&mut conn).unwrap();
    Snapshot {
        taken_at_ms: 1_700_000_000_000,
        info: parse_info(&info),
        slowlog: Some(Vec::new()),
        probes: Probes {
            info: true,
            slowlog: true,
            asks: Vec::new(),
        },
        answers: Vec::new(),
        notices: Vec::new(),
    }
}

/// What one watcher instance costs, in this process: `per_watcher`
/// configured instances of each bundled watcher (as the daemon builds them
/// for every target), then one `observe` on each; RSS, virtual size and
/// mappings before and after, divided by the instances.
fn instance_memory(redis: &Redis, cache: &Path, per_watcher: usize) {
    let plugins = plugins_dir();
    let settings = Settings::load(
        None,
        Overrides {
            redis_urls: vec![redis.url()],
            plugins: Some(plugins.clone()),
            cache_dir: Some(cache.to_path_buf()),
            ..Overrides::default()
        },
    )
    .unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let engine = Engine::with_layout(Some(cache), Layout::Compact).unwrap();
    let snapshot = quiet_snapshot(redis);
    let specs: Vec<_> = BUNDLED
        .iter()
        .map(|name| {
            let path = plugins.join(format!("{name}.wasm"));
            rt.block_on(load(&engine, &path, &settings)).unwrap().spec
        })
        .collect();
    let me = "self";
    let sample = || {
        (
            status_kib(me, "VmRSS"),
            status_kib(me, "VmSize"),
            mappings(me),
        )
    };
    let before = sample();
    let start = Instant::now();
    let mut instances: Vec<(usize, Instance)> = Vec::with_capacity(per_watcher * specs.len());
    rt.block_on(async {
        for _ in 0..per_watcher {
            for (i, spec) in specs.iter().enumerate() {
                instances.push((i, spec.instantiate(&engine).await.unwrap()));
            }
        }
    });
    let built = start.elapsed();
    let configured = sample();
    let views: Vec<_> = specs
        .iter()
        .map(|s| s.view("127.0.0.1:6379", &snapshot))
        .collect();
    let start = Instant::now();
    rt.block_on(async {
        for (i, instance) in &mut instances {
            std::hint::black_box(instance.observe(&views[*i]).await.unwrap());
        }
    });
    let observed_in = start.elapsed();
    let observed = sample();
    let n = instances.len() as f64;
    let per = |after: (u64, u64, usize)| {
        (
            after.0.saturating_sub(before.0) as f64 / n,
            after.1.saturating_sub(before.1) as f64 / n,
            after.2.saturating_sub(before.2) as f64 / n,
        )
    };
    let (rss_c, virt_c, maps_c) = per(configured);
    let (rss_o, virt_o, maps_o) = per(observed);
    println!(
        "Watcher instances in one process: {} ({per_watcher} of each bundled watcher)\n",
        instances.len()
    );
    println!("| per instance | RSS KiB | virtual MiB | mappings | time |");
    println!("|---|---|---|---|---|");
    println!(
        "| instantiated + configured | {rss_c:.1} | {:.1} | {maps_c:.2} | {:.0} us to build |",
        virt_c / 1024.0,
        built.as_secs_f64() * 1e6 / n
    );
    println!(
        "| + one quiet observe | {rss_o:.1} | {:.1} | {maps_o:.2} | {:.1} us per observe |",
        virt_o / 1024.0,
        observed_in.as_secs_f64() * 1e6 / n
    );
    println!();
}

/// The watched redis-servers, each with 100 databases.
fn servers(count: usize) -> Vec<Redis> {
    (0..count)
        .map(|_| Redis::start(&["--databases", "100", "--maxclients", "1000"]))
        .collect()
}

/// INFO commandstats of all `servers`, summed; `start` as at the start of
/// a window (see [`CommandStats::start`]).
fn commandstats(servers: &[Redis], start: bool) -> CommandStats {
    let mut all = CommandStats::default();
    for server in servers {
        let mut conn = server.conn();
        let stats = if start {
            CommandStats::start(&mut conn)
        } else {
            CommandStats::read(&mut conn)
        };
        for (name, (calls, usec)) in stats.0 {
            let entry = all.0.entry(name).or_default();
            entry.0 += calls;
            entry.1 += usec;
        }
    }
    all
}

/// PINGs answered by all `servers`: one per poll of each target on them.
fn pings(servers: &[Redis]) -> u64 {
    commandstats(servers, false).pings()
}

/// Envelopes ever added to the bus stream (`entries-added` survives the
/// stream's MAXLEN trimming; 0 before the first one).
fn envelopes(bus: &Redis) -> u64 {
    let mut conn = bus.conn();
    let info: redis::Value = match redis::cmd("XINFO")
        .arg("STREAM")
        .arg("logs:stream:redis")
        .query(&mut conn)
    {
        Ok(v) => v,
        Err(_) => return 0,
    };
    let redis::Value::Array(items) = info else {
        return 0;
    };
    items
        .chunks(2)
        .find_map(|kv| match kv {
            [redis::Value::BulkString(k), redis::Value::Int(n)] if k == b"entries-added" => {
                u64::try_from(*n).ok()
            }
            _ => None,
        })
        .unwrap_or(0)
}

/// One run of one row of the fleet table.
pub(crate) struct Run {
    pub targets: usize,
    pub servers: usize,
    pub core_pct: f64,
    pub us_per_poll: f64,
    /// The same from `/proc/PID/stat` clock ticks.
    pub tick_us_per_poll: f64,
    /// Microseconds the watched servers spent per target-poll, every
    /// command Lookout sent (INFO commandstats).
    pub redis_us_per_poll: f64,
    /// The same by command: `info 21.4, slowlog|get 1.2, ping 0.4`.
    pub redis_by_command: String,
    pub polls: u64,
    pub rss_kib: u64,
    pub hwm_kib: u64,
    pub lateness: Option<(f64, f64, f64)>,
    pub envelopes_per_s: f64,
    pub startup_s: f64,
    pub mappings: usize,
    pub threads: usize,
    pub threads_gone: usize,
}

/// A `lookout.toml` with `targets` targets spread over `servers` (target
/// `i` on server `i % servers`, database `i / servers`).
fn config(dir: &Path, plugins: &Path, bus: &Redis, servers: &[Redis], targets: usize) -> String {
    let mut text = format!(
        "poll_interval = {INTERVAL_S}\nplugins = '{}'\nlog_format = 'json'\n\
         [publish]\nurl = '{}'\n",
        plugins.display(),
        bus.url()
    );
    for i in 0..targets {
        let server = &servers[i % servers.len()];
        let db = i / servers.len();
        let _ = write!(text, "[[targets]]\nurl = '{}/{db}'\n", server.url());
    }
    let path = dir.join("lookout.toml");
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_owned()
}

/// The `polling stopped` log line's lateness percentiles, if the daemon
/// writes one.
fn lateness(log: &str) -> Option<(f64, f64, f64)> {
    log.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["fields"]["message"] == "polling stopped")
        .and_then(|v| {
            let f = &v["fields"];
            Some((
                f["lateness_p50_ms"].as_f64()?,
                f["lateness_p99_ms"].as_f64()?,
                f["lateness_max_ms"].as_f64()?,
            ))
        })
}

/// A running daemon, killed on drop.
struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Mappings one watcher instance holds: its linear memory and the reserve
/// after it, its cached fiber stack and that stack's guard page (see
/// `small_instances` in `host/src/sandbox/engine.rs`).
const MAPPINGS_PER_INSTANCE: usize = 4;

/// The kernel's cap on one process's mappings, when it can be read.
fn max_map_count() -> Option<usize> {
    std::fs::read_to_string("/proc/sys/vm/max_map_count")
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Why a row of `targets` targets cannot run here, if it cannot: the
/// daemon would need more mappings than `vm.max_map_count` allows.
fn unfit(targets: usize) -> Option<String> {
    let needed = targets * BUNDLED.len() * MAPPINGS_PER_INSTANCE + 2_000;
    let cap = max_map_count()?;
    (needed > cap).then(|| {
        format!(
            "skipped: needs about {needed} memory mappings, vm.max_map_count is {cap} \
             (sysctl -w vm.max_map_count={})",
            needed.next_power_of_two()
        )
    })
}

/// Runs `bin` on `targets` targets for a warm-up (every target polled
/// once, then one more interval) and a measured `window`, then stops it
/// with SIGTERM.
fn measure(
    bin: &Bin,
    cache: &Path,
    plugins: &Path,
    bus: &Redis,
    all: &[Redis],
    targets: usize,
    window: Duration,
) -> Run {
    let servers = &all[..targets.min(all.len())];
    let tmp = tempfile::tempdir().unwrap();
    let config = config(tmp.path(), plugins, bus, servers, targets);
    let log_path = tmp.path().join("lookout.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let read_log = || std::fs::read_to_string(&log_path).unwrap_or_default();
    let pings_at_spawn = pings(servers);
    let spawned = Instant::now();
    let mut cmd = bin.command(cache);
    cmd.args(["run", "--config", &config])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log);
    let mut daemon = Daemon(cmd.spawn().unwrap());
    let pid = daemon.0.id().to_string();
    let startup = Duration::from_secs(120) + Duration::from_millis(20 * targets as u64);
    // Every target polled at least once (the first polls are spread over
    // one interval), counted on the servers.
    wait_for("every target's first poll", startup, || {
        if let Some(status) = daemon.0.try_wait().unwrap() {
            panic!("lookout exited ({status}): {}", read_log());
        }
        std::thread::sleep(Duration::from_millis(250));
        (pings(servers) - pings_at_spawn >= targets as u64).then_some(())
    });
    let startup_s = spawned.elapsed().as_secs_f64();
    std::thread::sleep(Duration::from_secs_f64(INTERVAL_S));

    let stats = commandstats(servers, true);
    let sent = envelopes(bus);
    let start = Instant::now();
    let mut cpu = CpuWindow::start(daemon.0.id());
    cpu.run_for(window);
    let cpu = cpu.finish();
    let elapsed = start.elapsed().as_secs_f64();
    let stats = commandstats(servers, false).since(&stats);
    let polls = stats.pings();
    let sent = envelopes(bus) - sent;
    let rss_kib = status_kib(&pid, "VmRSS");
    let hwm_kib = status_kib(&pid, "VmHWM");
    let maps = mappings(&pid);
    let threads = std::fs::read_dir(format!("/proc/{pid}/task"))
        .map(|d| d.count())
        .unwrap_or(0);

    let status = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(status.success(), "kill -TERM {pid}");
    wait_for("lookout to stop", Duration::from_secs(60), || {
        daemon.0.try_wait().unwrap()
    });
    // FLEET_LOG_DIR keeps each run's daemon log (JSON lines) for a look.
    if let Some(dir) = std::env::var_os("FLEET_LOG_DIR") {
        let kept = Path::new(&dir).join(format!("lookout-{}-{targets}-{}.log", bin.label, pid));
        std::fs::copy(&log_path, kept).unwrap();
    }
    let per_poll = |ns: u64| ns as f64 / 1e3 / polls.max(1) as f64;
    Run {
        targets,
        servers: servers.len(),
        core_pct: cpu.ns as f64 / 1e9 / elapsed * 100.0,
        us_per_poll: per_poll(cpu.ns),
        tick_us_per_poll: per_poll(cpu.tick_ns),
        redis_us_per_poll: stats.usec() as f64 / polls.max(1) as f64,
        redis_by_command: stats.breakdown(polls),
        polls,
        rss_kib,
        hwm_kib,
        lateness: lateness(&read_log()),
        envelopes_per_s: sent as f64 / elapsed,
        startup_s,
        mappings: maps,
        threads,
        threads_gone: cpu.threads_gone,
    }
}

/// CPU milliseconds of one quiet seed-style Bash tick on `redis`, median
/// of 10.
fn seed_tick_ms(redis: &Redis) -> f64 {
    let python = process::python();
    for _ in 0..2 {
        process::tick_ms(redis, &python, "");
    }
    median(
        (0..10)
            .map(|_| process::tick_ms(redis, &python, ""))
            .collect(),
    )
}

fn main() {
    // Children inherit the raised limit: 10,000 targets are 10,000 sockets
    // in the daemon and up to 100 clients per redis-server.
    let (before, after) = fdlimit::raise_nofile_limit().expect("raising RLIMIT_NOFILE");
    let rows: Vec<usize> = std::env::var("FLEET_ROWS")
        .unwrap_or_else(|_| "1,100,1000,10000".to_owned())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let window = Duration::from_secs_f64(env_or("FLEET_WINDOW_S", 60.0));
    let runs: usize = env_or("FLEET_RUNS", 3).max(1);
    let server_count: usize = env_or("FLEET_SERVERS", 100);
    let per_watcher: usize = env_or("FLEET_INSTANCES", 1000);
    let bins = measure::bins();
    let several = bins.len() > 1;
    measure::header(&format!(
        "`make bench-fleet`: one process, three watchers, every target polled every \
         {INTERVAL_S} s; rows {rows:?}, median of {runs} runs of {:.0} s each",
        window.as_secs_f64()
    ));
    println!("RLIMIT_NOFILE soft {before} -> {after}\n");

    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    let plugins = support::bundled(tmp.path());
    let bus = Redis::start(&[]);
    for bin in &bins {
        process::warm_cache(bin, &bus, &cache, &plugins);
    }
    if per_watcher > 0 {
        instance_memory(&bus, &cache, per_watcher);
    }

    let max = rows.iter().copied().max().unwrap_or(1);
    let all = servers(server_count.min(max).max(1));
    assert!(
        max <= all.len() * 100,
        "{max} targets need at least {} servers of 100 databases",
        max.div_ceil(100)
    );
    let anchors = Anchors {
        tick_ms: seed_tick_ms(&all[0]),
        exporter: exporter::windows(&all[0], Duration::from_secs(10))
            .map(|w| exporter::per_scrape(&w)),
    };
    let mut measured = Vec::new();
    let mut skipped = Vec::new();
    for &n in &rows {
        if let Some(why) = unfit(n) {
            skipped.push(format!("{n} targets: {why}"));
            continue;
        }
        let mut row: Vec<Measured> = bins
            .iter()
            .map(|bin| Measured {
                bin: bin.clone(),
                runs: Vec::new(),
            })
            .collect();
        for run in 0..runs {
            for m in &mut row {
                m.runs
                    .push(measure(&m.bin, &cache, &plugins, &bus, &all, n, window));
                eprintln!(
                    "fleet: {n} targets, {}, run {} measured",
                    m.bin.label,
                    run + 1
                );
            }
        }
        measured.extend(row);
    }
    print_table(&measured, &anchors, several);
    print_targets(&measured, several);
    print_runs(&measured, several);
    for line in skipped {
        println!("\n{line}");
    }
}

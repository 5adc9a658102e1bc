//! `make bench`: measures Lookout against a real local redis-server and
//! prints a table. A measurement, not a test: nothing here asserts speed.

#[path = "../../tests/integration/support.rs"]
#[allow(dead_code)]
mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use cpu_time::ThreadTime;
use lookout::config::{Overrides, Settings};
use lookout::plugin::Runtime;
use lookout::probe::{SlowEntry, Snapshot, parse_info};
use lookout::watcher::Watcher;
use lookout::{Daemon, RunMode};
use support::{Redis, lookout_cmd, plugins_dir};

const WATCHERS: [&str; 3] = ["slowlog", "client-delta", "memory-pressure"];

fn settings(redis: &Redis, cache: &Path) -> Settings {
    Settings::load(
        None,
        Overrides {
            redis_url: Some(redis.url()),
            plugins: Some(plugins_dir()),
            cache_dir: Some(cache.to_path_buf()),
            ..Overrides::default()
        },
    )
    .unwrap()
}

fn row(what: &str, value: String, target: &str) {
    println!("| {what:<52} | {value:>14} | {target:>10} |");
}

/// Mean microseconds of one `observe` call per watcher, on a snapshot made
/// from the real INFO of `redis` and ten slowlog entries.
fn observe_cost(redis: &Redis, cache: &Path) {
    let settings = settings(redis, cache);
    let runtime = Runtime::new(Some(cache)).unwrap();
    let mut conn = redis.conn();
    let info: String = redis::cmd("INFO").query(&mut conn).unwrap();
    let slowlog = (0..10)
        .map(|id| SlowEntry {
            id,
            started_at: 1_700_000_000,
            duration_us: 1200,
            args: vec!["HGETALL".into(), format!("user:{id}")],
            client_addr: "10.0.0.7:51234".into(),
            client_name: "api".into(),
        })
        .collect();
    let snapshot = Snapshot {
        taken_at_ms: 1_700_000_000_000,
        info: parse_info(&info),
        slowlog: Some(slowlog),
    };
    let fields = snapshot.info.len();
    for name in WATCHERS {
        let path = plugins_dir().join(format!("{name}.wasm"));
        let mut watcher = Watcher::load(&runtime, &path, &settings).unwrap();
        let n = 5_000u32;
        for _ in 0..200 {
            watcher.observe("127.0.0.1:6379", &snapshot).unwrap();
        }
        let start = Instant::now();
        for _ in 0..n {
            std::hint::black_box(watcher.observe("127.0.0.1:6379", &snapshot).unwrap());
        }
        let us = start.elapsed().as_secs_f64() * 1e6 / f64::from(n);
        row(
            &format!("observe() {name} ({fields} INFO fields offered)"),
            format!("{us:.2} us"),
            "",
        );
    }
}

/// Host CPU time per poll (PING + probes + three watchers + publish),
/// excluding time spent waiting on the network.
fn poll_cpu(redis: &Redis, cache: &Path) {
    let settings = settings(redis, cache);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut daemon = Daemon::start(settings, RunMode::default()).unwrap();
    rt.block_on(async {
        for _ in 0..100 {
            daemon.poll().await.unwrap();
        }
        let polls = 2_000u32;
        let cpu = ThreadTime::now();
        let wall = Instant::now();
        for _ in 0..polls {
            daemon.poll().await.unwrap();
        }
        let cpu_us = cpu.elapsed().as_secs_f64() * 1e6 / f64::from(polls);
        let wall_us = wall.elapsed().as_secs_f64() * 1e6 / f64::from(polls);
        row(
            "host CPU per poll, 3 watchers",
            format!("{cpu_us:.1} us"),
            "<= 100 us",
        );
        row(
            "wall time per poll incl. loopback round trips",
            format!("{wall_us:.1} us"),
            "",
        );
    });
}

fn startup(redis: &Redis, cache: &Path, label: &str) -> Duration {
    let mut cmd = lookout_cmd(cache);
    cmd.args(["run", "--once", "--dry-run", "--plugins"])
        .arg(plugins_dir())
        .arg("--cache-dir")
        .arg(cache)
        .env("REDIS_URL", redis.url())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let start = Instant::now();
    let status = cmd.status().unwrap();
    let took = start.elapsed();
    assert!(status.success(), "{label} start-up run failed");
    took
}

fn startup_times(redis: &Redis) {
    let cold_dir = tempfile::tempdir().unwrap();
    let cold = startup(redis, cold_dir.path(), "cold");
    let mut warm: Vec<Duration> = (0..5)
        .map(|_| startup(redis, cold_dir.path(), "warm"))
        .collect();
    warm.sort();
    row(
        "start-up to first poll done, cold cache",
        format!("{:.0} ms", cold.as_secs_f64() * 1e3),
        "",
    );
    row(
        "start-up to first poll done, warm cache (median of 5)",
        format!("{:.0} ms", warm[2].as_secs_f64() * 1e3),
        "<= 300 ms",
    );
}

fn rss_after_polls(redis: &Redis, cache: &Path) {
    let mut cmd = lookout_cmd(cache);
    cmd.args([
        "run",
        "--polls",
        "1000",
        "--poll-interval",
        "0.002",
        "--plugins",
    ])
    .arg(plugins_dir())
    .arg("--cache-dir")
    .arg(cache)
    .env("REDIS_URL", redis.url());
    let out = cmd.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let rss = stderr
        .lines()
        .find(|l| l.contains("lookout stopped"))
        .and_then(|l| l.split("rss_kib=").nth(1))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or_else(|| panic!("no rss in the stop line: {stderr}"));
    row(
        "RSS after 1,000 polls",
        format!("{:.1} MB", rss / 1024.0),
        "<= 40 MB",
    );
}

fn main() {
    // `cargo bench` passes `--bench`; nothing to filter.
    let redis = Redis::start(&[]);
    let cache = tempfile::tempdir().unwrap();
    println!("| {:<52} | {:>14} | {:>10} |", "measure", "value", "target");
    println!("|{:-<54}|{:-<16}|{:-<12}|", "", "", "");
    poll_cpu(&redis, cache.path());
    observe_cost(&redis, cache.path());
    startup_times(&redis);
    rss_after_polls(&redis, cache.path());
    for name in WATCHERS {
        let size = std::fs::metadata(plugins_dir().join(format!("{name}.wasm")))
            .unwrap()
            .len();
        row(
            &format!("{name}.wasm size"),
            format!("{:.1} KB", size as f64 / 1024.0),
            "<= 150 KB",
        );
    }
}

//! `make bench`: measures Lookout against a real local redis-server and
//! prints a table. A measurement, not a test: nothing here asserts speed.

#[path = "../../tests/integration/support.rs"]
#[allow(dead_code)]
mod support;

mod compare;
mod exporter;
mod measure;
mod process;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use cpu_time::ProcessTime;
use lookout::{Engine, Instance, wit};
use lookout::{Loaded, load};
use lookout::{Overrides, Settings};
use lookout::{Probes, SlowEntry, Snapshot, parse_info};
use support::{Redis, lookout_cmd, plugins_dir};

const WATCHERS: [&str; 3] = ["slowlog", "client-delta", "memory-pressure"];

/// A folder of the bundled watchers only, outside every compile cache
/// (wasmtime's cache cleanup deletes files it does not know).
fn bundled() -> &'static Path {
    static DIR: std::sync::OnceLock<(tempfile::TempDir, std::path::PathBuf)> =
        std::sync::OnceLock::new();
    let (_, dir) = DIR.get_or_init(|| {
        let tmp = tempfile::tempdir().unwrap();
        let dir = support::bundled(tmp.path());
        (tmp, dir)
    });
    dir
}

fn settings(redis: &Redis, cache: &Path) -> Settings {
    Settings::load(
        None,
        Overrides {
            redis_urls: vec![redis.url()],
            plugins: Some(bundled().to_path_buf()),
            cache_dir: Some(cache.to_path_buf()),
            ..Overrides::default()
        },
    )
    .unwrap()
}

fn row(what: &str, value: String, target: &str) {
    println!("| {what:<52} | {value:>14} | {target:>10} |");
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn load_watcher(
    rt: &tokio::runtime::Runtime,
    engine: &Engine,
    path: &Path,
    settings: &Settings,
) -> Loaded {
    rt.block_on(load(engine, path, settings)).unwrap()
}

/// Mean microseconds of one `observe` call per watcher, on a snapshot made
/// from the real INFO of `redis` and ten slowlog entries; each call runs
/// as in the daemon: fuel-metered, under its deadline.
fn observe_cost(redis: &Redis, cache: &Path) {
    let mut settings = settings(redis, cache);
    // The rules watcher with the 16 rules of its example file.
    let example = support::repo().join("plugins/rules/rules.example.toml");
    let rules: toml::Table = std::fs::read_to_string(example).unwrap().parse().unwrap();
    settings.watchers.insert("rules".to_owned(), rules);
    let rt = runtime();
    let engine = Engine::new(Some(cache)).unwrap();
    let snapshot = realistic_snapshot(redis);
    let fields = snapshot.info.len();
    let mut total = 0.0;
    for name in WATCHERS {
        let path = plugins_dir().join(format!("{name}.wasm"));
        let mut loaded = load_watcher(&rt, &engine, &path, &settings);
        let view = loaded.spec.view("127.0.0.1:6379", &snapshot);
        let us = mean_observe_us(&rt, &mut loaded.instance, &view);
        total += us;
        row(
            &format!("observe() {name} ({fields} INFO fields offered)"),
            format!("{us:.2} us"),
            "",
        );
    }
    row("3 observe calls per poll", format!("{total:.2} us"), "");
    // The watchers that read declared probes get none here (each reading
    // is `unavailable`): their cost on INFO alone.
    for name in &support::ALL_WATCHERS[WATCHERS.len()..] {
        let path = plugins_dir().join(format!("{name}.wasm"));
        let mut loaded = load_watcher(&rt, &engine, &path, &settings);
        let view = loaded.spec.view("127.0.0.1:6379", &snapshot);
        let us = mean_observe_us(&rt, &mut loaded.instance, &view);
        row(&format!("observe() {name}"), format!("{us:.2} us"), "");
    }
}

/// Time to rebuild a failed watcher: a fresh instance, configured.
fn recovery(redis: &Redis, cache: &Path) {
    let settings = settings(redis, cache);
    let rt = runtime();
    let engine = Engine::new(Some(cache)).unwrap();
    let loaded = load_watcher(&rt, &engine, &support::fixture("panicker"), &settings);
    let view = loaded.spec.view("i", &realistic_snapshot(redis));
    let mut instance = loaded.instance;
    let mut took = Vec::new();
    for _ in 0..50 {
        rt.block_on(instance.observe(&view)).unwrap();
        assert!(
            rt.block_on(instance.observe(&view)).is_err(),
            "the fixture traps on its 2nd call"
        );
        let start = Instant::now();
        instance = rt.block_on(loaded.spec.instantiate(&engine)).unwrap();
        took.push(start.elapsed());
    }
    took.sort();
    row(
        "recover a trapped watcher (new instance + configure), median",
        format!("{:.0} us", took[took.len() / 2].as_secs_f64() * 1e6),
        "",
    );
}

/// RSS of a daemon whose memory-bomb watcher hits its 16 MiB cap on every
/// poll (never quarantined) beside a healthy one.
fn rss_memory_bomb(redis: &Redis, cache: &Path) {
    let dir = tempfile::tempdir().unwrap();
    let plugins = dir.path().join("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    for f in ["memory-bomb", "ticker"] {
        std::fs::copy(support::fixture(f), plugins.join(format!("{f}.wasm"))).unwrap();
    }
    let config = dir.path().join("lookout.toml");
    std::fs::write(&config, "[limits]\nquarantine_after = 1000\n").unwrap();
    let rss = compare::stop_rss(
        &measure::bins()[0],
        redis,
        cache,
        &[
            "--polls",
            "300",
            "--poll-interval",
            "0.01",
            "--config",
            config.to_str().unwrap(),
            "--plugins",
            plugins.to_str().unwrap(),
        ],
    );
    row(
        "RSS after 300 polls with a memory bomb trapping each",
        format!("{:.1} MB", rss / 1024.0),
        "",
    );
}

fn realistic_snapshot(redis: &Redis) -> Snapshot {
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
    Snapshot {
        taken_at_ms: 1_700_000_000_000,
        info: parse_info(&info),
        slowlog: Some(slowlog),
        probes: Probes {
            info: true,
            slowlog: true,
            asks: Vec::new(),
        },
        answers: Vec::new(),
        notices: Vec::new(),
    }
}

fn mean_observe_us(
    rt: &tokio::runtime::Runtime,
    instance: &mut Instance,
    view: &wit::Snapshot,
) -> f64 {
    let n = 5_000u32;
    rt.block_on(async {
        for _ in 0..200 {
            instance.observe(view).await.unwrap();
        }
        let start = Instant::now();
        for _ in 0..n {
            std::hint::black_box(instance.observe(view).await.unwrap());
        }
        start.elapsed().as_secs_f64() * 1e6 / f64::from(n)
    })
}

/// Host CPU time per poll (PING + probes + three watchers + queueing),
/// in a tight loop in this process: the work of a poll without the cost
/// of waking up for it (the whole-process rows below have that).
fn poll_cpu(redis: &Redis, cache: &Path) {
    use lookout::Conn;
    use lookout::Origin;
    use lookout::Poller;
    use lookout::Prober;
    use lookout::{Publisher, Sink};
    let settings = settings(redis, cache);
    let rt = runtime();
    let engine = Engine::new(Some(cache)).unwrap();
    let timeout = Duration::from_secs(2);
    let conn = || Conn::new(&redis.url(), timeout, timeout).unwrap();
    let origin = Origin::new("redis", "bench");
    let publisher = Publisher::new(
        Sink::Redis {
            conn: Box::new(conn()),
            settings: Box::new(settings.publish.clone()),
        },
        settings.buffer,
        settings.breaker,
        origin.clone(),
    );
    let stop = tokio_util::sync::CancellationToken::new();
    let _context = rt.enter();
    let (outlet, publishing) = lookout::spawn_publisher(publisher, stop.clone(), timeout);
    let mut poller = Poller::new(
        Prober::new(conn(), settings.slowlog_count),
        engine.clone(),
        settings.poll_interval,
        origin,
        outlet,
    );
    for name in WATCHERS {
        let path = plugins_dir().join(format!("{name}.wasm"));
        let loaded = load_watcher(&rt, &engine, &path, &settings);
        poller.install(loaded.spec, Some(loaded.instance));
    }
    let (cpu_us, wall_us) = rt.block_on(async {
        for _ in 0..100 {
            poller.poll_now().await.unwrap();
        }
        let polls = 2_000u32;
        let cpu = ProcessTime::now();
        let wall = Instant::now();
        for _ in 0..polls {
            poller.poll_now().await.unwrap();
        }
        (
            cpu.elapsed().as_secs_f64() * 1e6 / f64::from(polls),
            wall.elapsed().as_secs_f64() * 1e6 / f64::from(polls),
        )
    });
    row(
        "host CPU per poll, 3 watchers, in-process tight loop",
        format!("{cpu_us:.1} us"),
        "",
    );
    row(
        "wall time per poll incl. loopback round trips",
        format!("{wall_us:.1} us"),
        "",
    );
    drop(poller);
    stop.cancel();
    let _ = rt.block_on(publishing);
}

fn startup(redis: &Redis, cache: &Path, label: &str) -> Duration {
    let mut cmd = lookout_cmd(cache);
    cmd.args(["run", "--once", "--dry-run", "--plugins"])
        .arg(bundled())
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
        &measure::verdict("<= 300 ms", warm[2] <= Duration::from_millis(300)),
    );
}

fn rss_after_polls(redis: &Redis, cache: &Path) {
    let plugins = bundled();
    let rss = compare::stop_rss(
        &measure::bins()[0],
        redis,
        cache,
        &[
            "--polls",
            "1000",
            "--poll-interval",
            "0.002",
            "--plugins",
            plugins.to_str().unwrap(),
        ],
    );
    row(
        "RSS after 1,000 polls",
        format!("{:.1} MB", rss / 1024.0),
        &measure::verdict("<= 40 MB", rss / 1024.0 <= 40.0),
    );
}

/// The Python hit-ratio watcher next to the Rust client-delta: size, cold
/// and warm load, one `observe`, and the daemon's RSS with it.
fn python_watcher(redis: &Redis) {
    let wasm = support::extra_watcher("hit-ratio");
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("lookout.toml");
    std::fs::copy(
        support::repo().join("plugins/hit-ratio/lookout.toml"),
        &config,
    )
    .unwrap();
    let cache = tmp.path().join("cache");
    let settings = Settings::load(
        Some(&config),
        Overrides {
            redis_urls: vec![redis.url()],
            cache_dir: Some(cache.clone()),
            ..Overrides::default()
        },
    )
    .unwrap();
    let snapshot = realistic_snapshot(redis);
    for (name, path) in [
        ("client-delta", plugins_dir().join("client-delta.wasm")),
        ("hit-ratio", wasm.clone()),
    ] {
        let rt = runtime();
        let engine = Engine::new(Some(&cache)).unwrap();
        let start = Instant::now();
        load_watcher(&rt, &engine, &path, &settings);
        let cold = start.elapsed();
        let engine = Engine::new(Some(&cache)).unwrap();
        let start = Instant::now();
        let mut loaded = load_watcher(&rt, &engine, &path, &settings);
        let warm = start.elapsed();
        let view = loaded.spec.view("127.0.0.1:6379", &snapshot);
        let us = mean_observe_us(&rt, &mut loaded.instance, &view);
        let size = std::fs::metadata(&path).unwrap().len() as f64;
        row(
            &format!("{name}: .wasm size"),
            format!("{:.1} KB", size / 1024.0),
            "",
        );
        row(
            &format!("{name}: load, cold / warm compile cache"),
            format!(
                "{:.0} / {:.1} ms",
                cold.as_secs_f64() * 1e3,
                warm.as_secs_f64() * 1e3
            ),
            "",
        );
        row(&format!("{name}: observe()"), format!("{us:.2} us"), "");
    }
    let plugins = support::bundled(tmp.path());
    std::fs::copy(&wasm, plugins.join("hit-ratio.wasm")).unwrap();
    let rss = compare::stop_rss(
        &measure::bins()[0],
        redis,
        &cache,
        &[
            "--polls",
            "1000",
            "--poll-interval",
            "0.002",
            "--config",
            config.to_str().unwrap(),
            "--plugins",
            plugins.to_str().unwrap(),
        ],
    );
    row(
        "RSS after 1,000 polls, bundled watchers + hit-ratio",
        format!("{:.1} MB", rss / 1024.0),
        "",
    );
}

fn sample_envelopes(n: usize) -> impl Iterator<Item = lookout::Envelope> {
    let origin = lookout::Origin::new("redis", "127.0.0.1:6379");
    (0..n).map(move |i| {
        origin.envelope(
            lookout::Level::Warn,
            "slowlog",
            format!("slow command HGETALL took {}us", 1000 + i),
            serde_json::json!({
                "id": i, "duration_us": 1000 + i, "command": "HGETALL",
                "args": format!("HGETALL user:{i}"), "client_addr": "10.0.0.7:51234",
                "client_name": "api", "started_at": 1_700_000_000,
            })
            .as_object()
            .cloned()
            .unwrap_or_default(),
        )
    })
}

/// Replay of a full outbox (PUBLISH + XADD per envelope, pipelined batches)
/// next to redis-benchmark's pipelined XADD on the same server.
fn replay_throughput(redis: &Redis) {
    use lookout::Caps;
    use lookout::{Publisher, Sink};
    let n = 50_000;
    let settings = settings(redis, Path::new("/nonexistent"));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let conn =
        lookout::Conn::new(&redis.url(), Duration::from_secs(2), Duration::from_secs(5)).unwrap();
    let sink = Sink::Redis {
        conn: Box::new(conn),
        settings: Box::new(settings.publish.clone()),
    };
    let caps = Caps {
        envelopes: n,
        bytes: usize::MAX,
        ..Caps::default()
    };
    let origin = lookout::Origin::new("redis", "127.0.0.1:6379");
    let mut publisher = Publisher::new(sink, caps, settings.breaker, origin);
    for e in sample_envelopes(n) {
        publisher.push(e);
    }
    let start = Instant::now();
    let sent = rt.block_on(publisher.flush()).unwrap();
    let rate = sent as f64 / start.elapsed().as_secs_f64();
    row(
        "outbox replay (PUBLISH + XADD each, batches of 500)",
        format!("{rate:.0} env/s"),
        "",
    );
    let out = Command::new("redis-benchmark")
        .args([
            "-p",
            &redis.port.to_string(),
            "-P",
            "500",
            "-n",
            "200000",
            "-q",
        ])
        .args([
            "XADD",
            "bench:stream",
            "MAXLEN",
            "~",
            "10000",
            "*",
            "v",
            "2",
            "msg",
            "slow command HGETALL",
        ])
        .output();
    match out {
        Ok(out) => {
            let text = String::from_utf8_lossy(&out.stdout);
            let rps = text
                .split(['\r', '\n'])
                .filter_map(|l| l.split(": ").nth(1))
                .filter_map(|v| v.split_whitespace().next())
                .filter_map(|v| v.parse::<f64>().ok())
                .next_back()
                .unwrap_or(0.0);
            row(
                "redis-benchmark XADD, pipeline 500",
                format!("{rps:.0} cmd/s"),
                "",
            );
        }
        Err(e) => row("redis-benchmark XADD", format!("unavailable: {e}"), ""),
    }
}

/// Memory held by the outbox per 10,000 typical envelopes.
fn outbox_memory() {
    use lookout::{Caps, Outbox};
    let before = lookout::rss_kib();
    let mut outbox = Outbox::new(Caps {
        envelopes: 100_000,
        bytes: usize::MAX,
        ..Caps::default()
    });
    for e in sample_envelopes(100_000) {
        outbox.push(e);
    }
    let after = lookout::rss_kib();
    row(
        "outbox memory per 10,000 envelopes (RSS growth / 10)",
        format!(
            "{:.1} MB",
            (after.saturating_sub(before)) as f64 / 10.0 / 1024.0
        ),
        "",
    );
    row(
        "  of which JSON payload bytes",
        format!("{:.1} MB", outbox.bytes() as f64 / 10.0 / (1 << 20) as f64),
        "",
    );
    std::hint::black_box(&outbox);
}

fn main() {
    // `cargo bench` passes `--bench`; nothing to filter.
    let redis = Redis::start(&[]);
    let cache = tempfile::tempdir().unwrap();
    let bins = measure::bins();
    if std::env::var_os("LOOKOUT_BINS").is_some() {
        let names: Vec<&str> = bins.iter().map(|b| b.label.as_str()).collect();
        measure::header(&format!(
            "`LOOKOUT_BINS` ({}): each binary, three runs interleaved",
            names.join(", ")
        ));
        table_head();
        compare::compare(&redis, &bins);
        return;
    }
    measure::header("`make bench`: one target, a loopback redis-server");
    table_head();
    poll_cpu(&redis, cache.path());
    observe_cost(&redis, cache.path());
    recovery(&redis, cache.path());
    startup_times(&redis);
    rss_after_polls(&redis, cache.path());
    rss_memory_bomb(&redis, cache.path());
    replay_throughput(&redis);
    outbox_memory();
    python_watcher(&redis);
    for name in WATCHERS {
        let size = std::fs::metadata(plugins_dir().join(format!("{name}.wasm")))
            .unwrap()
            .len();
        row(
            &format!("{name}.wasm size"),
            format!("{:.1} KB", size as f64 / 1024.0),
            &measure::verdict("<= 150 KB", size as f64 / 1024.0 <= 150.0),
        );
    }
    process::rows(&redis, &bins[0]);
}

fn table_head() {
    println!("| {:<52} | {:>14} | {:>10} |", "measure", "value", "target");
    println!("|{:-<54}|{:-<16}|{:-<12}|", "", "", "");
}

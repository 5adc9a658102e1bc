//! Test helpers: a real `redis-server` on a free port in a temp dir, the
//! real `lookout` binary as a child process, and deadline-bounded waits.

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

/// Repository root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The folder of built watchers; fails loudly when they were not built.
pub fn plugins_dir() -> PathBuf {
    let dir = repo().join("plugins");
    for name in ALL_WATCHERS {
        let wasm = dir.join(format!("{name}.wasm"));
        assert!(
            wasm.is_file(),
            "{} is missing: run `make plugins` (make test does) before the integration tests",
            wasm.display()
        );
    }
    dir
}

/// A watcher built by `make plugins-extra` (another language); fails loudly
/// when missing.
pub fn extra_watcher(name: &str) -> PathBuf {
    let wasm = repo().join("plugins").join(format!("{name}.wasm"));
    assert!(
        wasm.is_file(),
        "{} is missing: run `make plugins-extra` (make test does) before the integration tests",
        wasm.display()
    );
    wasm
}

/// A built test fixture component; fails loudly when missing.
pub fn fixture(name: &str) -> PathBuf {
    let wasm = repo().join("tests/fixtures").join(format!("{name}.wasm"));
    assert!(
        wasm.is_file(),
        "{} is missing: run `make fixtures` (make test does) before the integration tests",
        wasm.display()
    );
    wasm
}

/// The bundled watchers of the first release (INFO and SLOWLOG only).
pub const BUNDLED: [&str; 3] = ["slowlog", "client-delta", "memory-pressure"];

/// Every bundled watcher, those reading declared probes included.
pub const ALL_WATCHERS: [&str; 10] = [
    "slowlog",
    "client-delta",
    "memory-pressure",
    "stream-lag",
    "latency",
    "replication",
    "persistence",
    "evictions",
    "rules",
    "client-buffers",
];

/// A plugins folder in `tmp` holding copies of the bundled watchers only
/// (whatever else `plugins/` holds, such as `make plugins-extra` output).
pub fn bundled(tmp: &Path) -> PathBuf {
    plugins_with(tmp, &BUNDLED, &[])
}

/// A plugins folder in a temp dir holding copies of the named watchers.
pub fn plugins_with(tmp: &Path, watchers: &[&str], fixtures: &[&str]) -> PathBuf {
    let dir = tmp.join("plugins");
    std::fs::create_dir_all(&dir).unwrap();
    let src = plugins_dir();
    for w in watchers {
        std::fs::copy(src.join(format!("{w}.wasm")), dir.join(format!("{w}.wasm"))).unwrap();
    }
    for f in fixtures {
        std::fs::copy(fixture(f), dir.join(format!("{f}.wasm"))).unwrap();
    }
    dir
}

/// Waits until `check` returns `Some`, polling every 25 ms, or panics with
/// `what` after `deadline`.
pub fn wait_for<T>(what: &str, deadline: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(
            start.elapsed() < deadline,
            "timed out after {deadline:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// A free TCP port on loopback.
pub fn free_port() -> u16 {
    // Below the kernel's ephemeral range (32768 and up by default): a port
    // from there can be taken by another test's outgoing connection between
    // this check and the server's bind.
    loop {
        let port = rand::random_range(10_000..30_000);
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// A real redis-server, killed on drop.
pub struct Redis {
    /// Its port.
    pub port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
    extra: Vec<String>,
}

impl Redis {
    /// Starts a redis-server with extra `--key value` arguments.
    /// A server whose port (or any port among `extra`) was taken meanwhile
    /// exits at once; it is started again on other free ports.
    pub fn start(extra: &[&str]) -> Self {
        for _ in 0..4 {
            let mut redis = Self {
                port: free_port(),
                dir: tempfile::tempdir().unwrap(),
                child: None,
                extra: extra.iter().map(|s| (*s).to_owned()).collect(),
            };
            if redis.try_spawn() {
                return redis;
            }
        }
        panic!("redis-server {extra:?} exits at start on four free ports");
    }

    /// Starts the server; false when it exited before answering PING.
    fn try_spawn(&mut self) -> bool {
        self.launch();
        let url = self.url();
        let child = self.child.as_mut().unwrap();
        let up = wait_for(
            "redis-server to answer PING",
            Duration::from_secs(10),
            || {
                if child.try_wait().ok().flatten().is_some() {
                    return Some(false);
                }
                let client = redis::Client::open(url.as_str()).ok()?;
                let mut conn = client
                    .get_connection_with_timeout(Duration::from_millis(200))
                    .ok()?;
                redis::cmd("PING")
                    .query::<String>(&mut conn)
                    .ok()
                    .map(|_| true)
            },
        );
        if !up {
            self.child = None;
        }
        up
    }

    fn spawn(&mut self) {
        assert!(
            self.try_spawn(),
            "redis-server on port {} exited at start",
            self.port
        );
    }

    fn launch(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .arg("--dir")
            .arg(self.dir.path())
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .args(&self.extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server must be installed: run `make deps`");
        self.child = Some(child);
    }

    /// `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// A fresh client connection.
    pub fn conn(&self) -> redis::Connection {
        let client = redis::Client::open(self.url()).unwrap();
        let conn = client
            .get_connection_with_timeout(Duration::from_secs(2))
            .unwrap();
        conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        conn
    }

    /// Kills the server (SIGKILL) and waits for it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port (a new run_id).
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// Every envelope in the stream, parsed back from its string map.
    pub fn stream(&self, key: &str) -> Vec<Value> {
        let mut conn = self.conn();
        let entries: Vec<(String, Vec<String>)> = redis::cmd("XRANGE")
            .arg(key)
            .arg("-")
            .arg("+")
            .query(&mut conn)
            .unwrap();
        entries
            .iter()
            .map(|(_, kv)| {
                assert_eq!(kv.len() % 2, 0);
                let map = kv.chunks(2).map(|p| (p[0].clone(), p[1].clone())).collect();
                envelope_from_stream(&map)
            })
            .collect()
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Rebuilds an envelope from a stream entry's string map, checking that
/// every field is a string as the wire format promises.
pub fn envelope_from_stream(map: &std::collections::HashMap<String, String>) -> Value {
    let text = |key: &str| -> String {
        map.get(key)
            .unwrap_or_else(|| panic!("stream entry lacks `{key}`: {map:?}"))
            .clone()
    };
    let condition = map.get("condition").map(|c| {
        serde_json::from_str::<Value>(c)
            .unwrap_or_else(|e| panic!("`condition` is not a JSON object string ({e}): {map:?}"))
    });
    assert_eq!(
        map.len(),
        10 + usize::from(condition.is_some()),
        "stream entry has exactly the 10 envelope keys, and `condition` when it has one: {map:?}"
    );
    let mut env = serde_json::json!({
        "v": text("v").parse::<u64>().unwrap(),
        "id": text("id"),
        "ts": text("ts"),
        "service": text("service"),
        "host": text("host"),
        "level": text("level"),
        "pid": text("pid").parse::<u64>().unwrap(),
        "target": text("target"),
        "msg": text("msg"),
        "fields": serde_json::from_str::<Value>(&text("fields")).unwrap(),
    });
    if let Some(condition) = condition {
        env["condition"] = condition;
    }
    env
}

/// Asserts that `env` has the v2 envelope shape.
pub fn assert_envelope(env: &Value) {
    let obj = env
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {env}"));
    let keys: Vec<&str> = obj
        .keys()
        .map(String::as_str)
        .filter(|k| *k != "condition")
        .collect();
    let mut sorted = keys.clone();
    sorted.sort_unstable();
    assert_eq!(
        sorted,
        [
            "fields", "host", "id", "level", "msg", "pid", "service", "target", "ts", "v"
        ],
        "{env}"
    );
    assert_eq!(env["v"], 2, "{env}");
    assert_eq!(env["id"].as_str().unwrap().len(), 36, "{env}");
    let ts = env["ts"].as_str().unwrap();
    assert!(
        ts.len() == 24
            && ts.ends_with('Z')
            && ts.as_bytes()[10] == b'T'
            && ts.as_bytes()[19] == b'.',
        "ts is RFC 3339 UTC with milliseconds: {ts}"
    );
    assert!(
        ["debug", "info", "warn", "error"].contains(&env["level"].as_str().unwrap()),
        "{env}"
    );
    assert!(env["pid"].as_u64().unwrap() > 0);
    assert!(!env["target"].as_str().unwrap().is_empty());
    assert!(env["msg"].is_string());
    assert!(
        env["fields"]["instance"].as_str().unwrap().contains(':'),
        "{env}"
    );
    assert!(!env["host"].as_str().unwrap().is_empty());
}

/// Captured output lines of a child process.
#[derive(Clone, Default)]
pub struct Lines(Arc<Mutex<Vec<String>>>);

impl Lines {
    fn follow(&self, stream: impl std::io::Read + Send + 'static) -> std::thread::JoinHandle<()> {
        let lines = self.0.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                lines.lock().unwrap().push(line);
            }
        })
    }

    /// All lines so far.
    pub fn all(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }

    /// Lines containing `needle`.
    pub fn matching(&self, needle: &str) -> Vec<String> {
        self.all()
            .into_iter()
            .filter(|l| l.contains(needle))
            .collect()
    }
}

/// The real `lookout` binary as a child process, killed on drop.
pub struct Lookout {
    child: Option<Child>,
    /// Its stderr (logs).
    pub stderr: Lines,
    /// Its stdout (dry-run envelopes).
    pub stdout: Lines,
    readers: Vec<std::thread::JoinHandle<()>>,
}

/// A `lookout` command with a private cache folder and no inherited config.
pub fn lookout_cmd(cache: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_lookout"));
    lookout_env(&mut cmd, cache);
    cmd
}

/// The environment of [`lookout_cmd`], for a shell that runs `lookout`.
pub fn lookout_env(cmd: &mut Command, cache: &Path) {
    cmd.env_remove("REDIS_URL")
        .env_remove("POLL_INTERVAL")
        .env_remove("LOG_SIDECAR_DISABLED")
        .env_remove("LOOKOUT_CONFIG")
        .env_remove("LOOKOUT_SDK")
        .env("LOOKOUT_LOG", "info")
        .env("XDG_CACHE_HOME", cache);
}

/// Spawns `lookout run --poll-interval 0.2 --plugins PLUGINS ARGS...`
/// watching `redis_url` (later flags win).
pub fn run_lookout(cache: &Path, redis_url: &str, plugins: &Path, args: &[&str]) -> Lookout {
    let mut cmd = lookout_cmd(cache);
    cmd.args(["run", "--poll-interval", "0.2", "--plugins"])
        .arg(plugins)
        .args(args)
        .env("REDIS_URL", redis_url);
    Lookout::spawn(cmd)
}

/// Asserts that the `n` fields of `events` count 1, 2, 3... with no gap
/// (a watcher that ran on every poll) and returns them.
pub fn assert_counts_up(events: &[Value]) -> Vec<i64> {
    let ns: Vec<i64> = events
        .iter()
        .map(|e| e["fields"]["n"].as_i64().unwrap())
        .collect();
    let expected: Vec<i64> = (1..=i64::try_from(ns.len()).unwrap()).collect();
    assert_eq!(ns, expected, "one run per poll");
    ns
}

impl Lookout {
    /// Spawns `cmd` with captured output.
    pub fn spawn(mut cmd: Command) -> Self {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (stdout, stderr) = (Lines::default(), Lines::default());
        let readers = vec![
            stdout.follow(child.stdout.take().unwrap()),
            stderr.follow(child.stderr.take().unwrap()),
        ];
        Self {
            child: Some(child),
            stderr,
            stdout,
            readers,
        }
    }

    /// Sends SIGTERM and waits (with a deadline) for the exit status.
    pub fn terminate(&mut self) -> ExitStatus {
        self.terminate_within(Duration::from_secs(10))
    }

    /// Sends SIGTERM and waits at most `deadline` for the exit status.
    pub fn terminate_within(&mut self, deadline: Duration) -> ExitStatus {
        let child = self.child.as_mut().unwrap();
        let pid = child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        let status = wait_for("lookout to exit after SIGTERM", deadline, || {
            child.try_wait().unwrap()
        });
        self.child = None;
        self.read_to_end();
        status
    }

    /// After the exit: waits until its output has been read to the end,
    /// so `stdout` and `stderr` hold every line it wrote.
    fn read_to_end(&self) {
        wait_for(
            "its output read to the end",
            Duration::from_secs(10),
            || {
                self.readers
                    .iter()
                    .all(std::thread::JoinHandle::is_finished)
                    .then_some(())
            },
        );
    }

    /// Waits at most `deadline` for the process to exit (after a signal sent
    /// with [`Lookout::signal`]) and returns its status.
    pub fn wait_exit(&mut self, deadline: Duration) -> ExitStatus {
        let child = self.child.as_mut().unwrap();
        let status = wait_for("lookout to exit", deadline, || child.try_wait().unwrap());
        self.child = None;
        self.read_to_end();
        status
    }

    /// Waits until the daemon has loaded its start-up watchers (it polls
    /// from then on, if not already).
    pub fn wait_started(&self) {
        wait_for("lookout to start", Duration::from_secs(30), || {
            (!self.stderr.matching("watchers ready").is_empty()).then_some(())
        });
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    /// Resident set size of the process in KiB.
    pub fn rss_kib(&self) -> u64 {
        let pid = self.child.as_ref().unwrap().id();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    }

    /// Sends a signal (`-HUP`, `-TERM`...) to the process.
    pub fn signal(&self, signal: &str) {
        let pid = self.child.as_ref().unwrap().id().to_string();
        assert!(
            Command::new("kill")
                .args([signal, &pid])
                .status()
                .unwrap()
                .success()
        );
    }

    /// Whether the process still runs.
    pub fn alive(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| c.try_wait().unwrap().is_none())
    }
}

impl Drop for Lookout {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Runs `cmd` to completion with a deadline; returns (status, stdout, stderr).
pub fn run_to_end(cmd: Command, deadline: Duration) -> (ExitStatus, String, String) {
    let mut proc = Lookout::spawn(cmd);
    let child = proc.child.as_mut().unwrap();
    let status = wait_for("lookout to exit", deadline, || child.try_wait().unwrap());
    proc.child = None;
    // The pipes close when the process exits; the readers then finish.
    for reader in proc.readers.drain(..) {
        reader.join().unwrap();
    }
    (
        status,
        proc.stdout.all().join("\n"),
        proc.stderr.all().join("\n"),
    )
}

/// Envelopes in the stream whose target is `target`.
pub fn by_target(envelopes: &[Value], target: &str) -> Vec<Value> {
    envelopes
        .iter()
        .filter(|e| e["target"] == target)
        .cloned()
        .collect()
}

/// The stream the daemon publishes envelopes to.
pub const STREAM: &str = "logs:stream:redis";

/// Writes `lookout.toml` (in a folder of its own, so the daemon's reload
/// watcher sees nothing else) publishing to `bus`; `top` holds top-level
/// keys, `tables` further tables.
pub fn bus_config(tmp: &Path, bus: &Redis, top: &str, tables: &str) -> PathBuf {
    let dir = tmp.join("etc");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("lookout.toml");
    std::fs::write(
        &path,
        format!("{top}\n[publish]\nurl = '{}'\n{tables}\n", bus.url()),
    )
    .unwrap();
    path
}

/// Starts the daemon watching `watched` with only the `ticker` fixture,
/// polling every `poll` seconds, and waits until it runs.
pub fn start_ticker(tmp: &Path, watched: &Redis, config: &Path, poll: &str) -> Lookout {
    let plugins = plugins_with(tmp, &[], &["ticker"]);
    let lookout = run_lookout(
        tmp,
        &watched.url(),
        &plugins,
        &[
            "--config",
            config.to_str().unwrap(),
            "--poll-interval",
            poll,
        ],
    );
    lookout.wait_started();
    lookout
}

/// The stream's envelopes, each id once (the first occurrence: a batch cut
/// by an outage may be delivered twice).
pub fn unique(all: Vec<Value>) -> Vec<Value> {
    let mut seen = HashSet::new();
    all.into_iter()
        .filter(|e| seen.insert(e["id"].as_str().unwrap().to_owned()))
        .collect()
}

/// The ticker's `n` values in stream order.
pub fn ticks(envelopes: &[Value]) -> Vec<i64> {
    by_target(envelopes, "ticker")
        .iter()
        .map(|e| e["fields"]["n"].as_i64().unwrap())
        .collect()
}

/// Whether `ns` is exactly 1, 2, ..., len.
pub fn no_gap(ns: &[i64]) -> bool {
    ns.iter().zip(1..).all(|(n, i)| *n == i)
}

/// The highest ticker `n` in the stream of `bus` so far.
pub fn max_tick(bus: &Redis) -> i64 {
    ticks(&bus.stream(STREAM)).into_iter().max().unwrap_or(0)
}

/// How many PINGs `watched` has answered: one per poll of the daemon (plus
/// one from the start-up check), so the daemon's polls can be followed
/// while the bus is unreachable.
pub fn pings(watched: &Redis) -> u64 {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query(&mut watched.conn())
        .unwrap();
    info.lines()
        .find_map(|l| l.strip_prefix("cmdstat_ping:calls="))
        .map_or(0, |rest| rest.split(',').next().unwrap().parse().unwrap())
}

/// An `INFO` field of `redis`.
pub fn info_field(redis: &Redis, section: &str, key: &str) -> String {
    let info: String = redis::cmd("INFO")
        .arg(section)
        .query(&mut redis.conn())
        .unwrap();
    info.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}:")))
        .unwrap_or_else(|| panic!("no {key} in INFO {section}"))
        .trim()
        .to_owned()
}

/// Sends `signal` (`-STOP`, `-CONT`) to the process `pid`.
pub fn signal_pid(signal: &str, pid: &str) {
    assert!(
        Command::new("kill")
            .args([signal, pid])
            .status()
            .unwrap()
            .success()
    );
}

/// SIGTERM; asserts exit 0 and returns the `key=value` counts of the
/// "lookout stopped" line.
pub fn stop(lookout: &mut Lookout) -> HashMap<String, u64> {
    assert!(lookout.terminate().success(), "SIGTERM exits 0");
    let line = wait_for("the stop line", Duration::from_secs(5), || {
        lookout.stderr.matching("lookout stopped").pop()
    });
    let counts: HashMap<String, u64> = line
        .split_whitespace()
        .filter_map(|kv| kv.split_once('='))
        .filter_map(|(k, v)| Some((k.to_owned(), v.parse().ok()?)))
        .collect();
    for key in ["emitted", "delivered", "dropped", "lost"] {
        assert!(counts.contains_key(key), "{key} in {line}");
    }
    counts
}

/// Writes `text` as `lookout.toml` in a folder of its own under `tmp` (so
/// the daemon's reload watcher sees nothing else there).
pub fn config_file(tmp: &Path, text: &str) -> PathBuf {
    let dir = tmp.join("etc");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("lookout.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// `lookout run` of `config` (no `REDIS_URL`: its targets) every 0.2 s
/// with `plugins` and `args`.
pub fn run_config(
    tmp: &std::path::Path,
    plugins: &std::path::Path,
    config: &std::path::Path,
    args: &[&str],
) -> Lookout {
    let mut cmd = lookout_cmd(tmp);
    cmd.args(["run", "--poll-interval", "0.2", "--plugins"])
        .arg(plugins)
        .arg("--config")
        .arg(config)
        .args(args);
    Lookout::spawn(cmd)
}

/// The daemon watching `watched` every 0.2 s with the watchers in
/// `plugins`, publishing to `bus` with the watcher settings `tables` (see
/// [`bus_config`]); waits until it runs.
pub fn daemon_with_plugins(
    tmp: &Path,
    watched: &Redis,
    bus: &Redis,
    plugins: &Path,
    tables: &str,
) -> Lookout {
    let config = bus_config(tmp, bus, "", tables);
    let lookout = run_lookout(
        tmp,
        &watched.url(),
        plugins,
        &["--config", config.to_str().unwrap()],
    );
    lookout.wait_started();
    lookout
}

/// [`daemon_with_plugins`] with every bundled watcher ([`ALL_WATCHERS`]).
pub fn daemon_with_all_watchers(tmp: &Path, watched: &Redis, bus: &Redis, tables: &str) -> Lookout {
    let plugins = plugins_with(tmp, &ALL_WATCHERS, &[]);
    daemon_with_plugins(tmp, watched, bus, &plugins, tables)
}

/// The events of `target` on `bus` so far, in stream order.
pub fn events_of(bus: &Redis, target: &str) -> Vec<Value> {
    by_target(&bus.stream(STREAM), target)
}

/// The first event of `target` on `bus` that `matches`, waited for (30 s,
/// then a panic naming `what`).
pub fn wait_event(
    bus: &Redis,
    target: &str,
    what: &str,
    matches: impl Fn(&Value) -> bool,
) -> Value {
    wait_for(what, Duration::from_secs(30), || {
        events_of(bus, target).into_iter().find(|e| matches(e))
    })
}

/// Waits until the daemon has polled `watched` `polls` more times (one
/// PING per poll, see [`pings`]).
pub fn polls_pass(watched: &Redis, polls: u64) {
    let start = pings(watched);
    wait_for(
        &format!("{polls} more polls"),
        Duration::from_secs(30),
        || (pings(watched) >= start + polls).then_some(()),
    );
}

/// Runs one command, `args[0]` with the rest as its arguments, on `redis`;
/// panics on an error reply.
pub fn redis_cmd(redis: &Redis, args: &[&str]) {
    let mut cmd = redis::cmd(args[0]);
    for arg in &args[1..] {
        cmd.arg(*arg);
    }
    cmd.exec(&mut redis.conn()).unwrap();
}

/// The `state` field of an event (`entered`, `left`...), empty when it
/// has none.
pub fn event_state(event: &Value) -> &str {
    event["fields"]["state"].as_str().unwrap_or_default()
}

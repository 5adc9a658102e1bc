//! What the benches measure with, shared by `make bench` and `make
//! bench-fleet`: a process's CPU read from `/proc`, the watched Redis's own
//! accounting of the commands it ran (`INFO commandstats`), the `lookout`
//! binaries to run, and the header that says on what machine the numbers
//! were taken.
//!
//! CPU time comes from `/proc/PID/task/TID/schedstat` (nanoseconds run, per
//! thread), sampled every 50 ms so that a thread that exits mid-window
//! loses at most its last 50 ms. The process-wide `utime + stime` of
//! `/proc/PID/stat` (which keeps exited threads but is counted in 10 ms
//! clock ticks) is kept beside it as a cross-check.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::support;

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

/// Nanoseconds run so far by all live threads of `pid`.
pub fn busy_ns(pid: u32) -> u64 {
    thread_ns(pid).iter().map(|(_, ns)| ns).sum()
}

/// `utime + stime` of the whole process `pid` (all threads, exited ones
/// included), in clock ticks.
pub fn process_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the parenthesised name start at field 3 (state), so
    // utime (14) and stime (15) are the 12th and 13th.
    let after_name = &stat[stat.rfind(')').unwrap() + 1..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

/// Clock ticks per second (`getconf CLK_TCK`; 100 if that fails).
pub fn clock_ticks() -> u64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100)
}

/// A field of `/proc/PID/status` in KiB (`VmRSS`, `VmHWM`, `VmSize`);
/// `pid` may be `self`.
pub fn status_kib(pid: &str, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// The CPU one process spent in a window.
#[derive(Clone, Copy, Debug, Default)]
pub struct Cpu {
    /// Nanoseconds of every thread, from schedstat.
    pub ns: u64,
    /// The same from `/proc/PID/stat`, in whole clock ticks.
    pub tick_ns: u64,
    /// Threads that ran in the window and had exited by its end: each may
    /// have run up to one sample period unseen. (Idle pool threads that
    /// time out are not counted: they lose nothing.)
    pub threads_gone: usize,
}

/// A CPU measurement of one process under way.
pub struct CpuWindow {
    pid: u32,
    ticks_before: u64,
    base: HashMap<u32, u64>,
    last: HashMap<u32, u64>,
}

impl CpuWindow {
    pub fn start(pid: u32) -> Self {
        let base: HashMap<u32, u64> = thread_ns(pid).into_iter().collect();
        Self {
            pid,
            ticks_before: process_ticks(pid),
            last: base.clone(),
            base,
        }
    }

    /// Samples every thread; call at least every 50 ms.
    pub fn sample(&mut self) {
        self.last.extend(thread_ns(self.pid));
    }

    /// Sleeps for `length`, sampling every 50 ms.
    pub fn run_for(&mut self, length: Duration) {
        let start = Instant::now();
        loop {
            let left = length.saturating_sub(start.elapsed());
            if left.is_zero() {
                break;
            }
            std::thread::sleep(left.min(Duration::from_millis(50)));
            self.sample();
        }
    }

    pub fn finish(mut self) -> Cpu {
        self.sample();
        let live: Vec<u32> = thread_ns(self.pid).into_iter().map(|(t, _)| t).collect();
        let ticks = process_ticks(self.pid) - self.ticks_before;
        // A thread born in the window counts from zero.
        let ns = self
            .last
            .iter()
            .map(|(tid, ns)| ns - self.base.get(tid).copied().unwrap_or(0))
            .sum();
        Cpu {
            ns,
            tick_ns: ticks * 1_000_000_000 / clock_ticks(),
            threads_gone: self
                .last
                .iter()
                .filter(|(tid, ns)| !live.contains(tid) && self.base.get(tid) != Some(*ns))
                .count(),
        }
    }
}

/// `INFO commandstats` of a Redis: calls and microseconds per command
/// (subcommands as Redis names them: `slowlog|get`).
#[derive(Clone, Debug, Default)]
pub struct CommandStats(pub BTreeMap<String, (u64, u64)>);

impl CommandStats {
    pub fn read(conn: &mut redis::Connection) -> Self {
        let info: String = redis::cmd("INFO").arg("commandstats").query(conn).unwrap();
        Self(
            info.lines()
                .filter_map(|l| {
                    let (name, rest) = l.strip_prefix("cmdstat_")?.split_once(':')?;
                    let field = |key: &str| -> Option<u64> {
                        rest.split(',')
                            .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))?
                            .parse()
                            .ok()
                    };
                    Some((name.to_owned(), (field("calls")?, field("usec")?)))
                })
                .collect(),
        )
    }

    /// The stats at the start of a window, the cost of this read itself
    /// counted as already spent: a later [`read`](Self::read) then holds
    /// only the commands others sent in between. (Redis adds a command's
    /// time once it has answered, so the start read would otherwise land
    /// in the window: about as dear as a poll's INFO, which matters when a
    /// window holds few polls.) Its cost is the least of two reads just
    /// before it, the same command (a poll's INFO landing between two of
    /// them makes that pair's cost the mean of the calls).
    pub fn start(conn: &mut redis::Connection) -> Self {
        let info = |stats: &Self| stats.0.get("info").copied().unwrap_or_default();
        let reads = [Self::read(conn), Self::read(conn), Self::read(conn)];
        let own = reads
            .windows(2)
            .map(|pair| {
                let ((c0, u0), (c1, u1)) = (info(&pair[0]), info(&pair[1]));
                u1.saturating_sub(u0) / c1.saturating_sub(c0).max(1)
            })
            .min()
            .unwrap_or(0);
        let [.., mut last] = reads;
        let (calls, usec) = info(&last);
        last.0.insert("info".to_owned(), (calls + 1, usec + own));
        last
    }

    /// What ran between `before` and `self`.
    pub fn since(&self, before: &Self) -> Self {
        Self(
            self.0
                .iter()
                .map(|(name, (calls, usec))| {
                    let (c, u) = before.0.get(name).copied().unwrap_or_default();
                    (
                        name.clone(),
                        (calls.saturating_sub(c), usec.saturating_sub(u)),
                    )
                })
                .filter(|(_, (calls, _))| *calls > 0)
                .collect(),
        )
    }

    pub fn pings(&self) -> u64 {
        self.0.get("ping").map_or(0, |(calls, _)| *calls)
    }

    pub fn usec(&self) -> u64 {
        self.0.values().map(|(_, usec)| usec).sum()
    }

    /// Microseconds per `per` (a poll, a scrape) by command, dearest
    /// first: `info 21.4, slowlog|get 1.2, ping 0.4`.
    pub fn breakdown(&self, per: u64) -> String {
        let mut by: Vec<(&String, f64)> = self
            .0
            .iter()
            .map(|(name, (_, usec))| (name, *usec as f64 / per.max(1) as f64))
            .collect();
        by.sort_by(|a, b| b.1.total_cmp(&a.1));
        by.iter()
            .filter(|(_, us)| *us >= 0.05)
            .map(|(name, us)| format!("{name} {us:.1}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// A `lookout` binary to measure.
#[derive(Clone, Debug)]
pub struct Bin {
    /// How the rows name it when there are several.
    pub label: String,
    pub path: PathBuf,
}

impl Bin {
    /// `lookout` with the environment of the tests' `lookout_cmd`.
    pub fn command(&self, cache: &Path) -> Command {
        let mut cmd = Command::new(&self.path);
        support::lookout_env(&mut cmd, cache);
        cmd
    }
}

/// The binaries to measure: `LOOKOUT_BINS=label=path,label=path` (each path
/// an executable taking `lookout`'s arguments, such as a copy of another
/// build or a script that sets an environment and `exec`s one), else the
/// release binary cargo built for this bench.
pub fn bins() -> Vec<Bin> {
    let Ok(list) = std::env::var("LOOKOUT_BINS") else {
        return vec![Bin {
            label: "lookout".to_owned(),
            path: PathBuf::from(env!("CARGO_BIN_EXE_lookout")),
        }];
    };
    let bins: Vec<Bin> = list
        .split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|spec| {
            let (label, path) = spec.split_once('=').unwrap_or_else(|| {
                panic!("LOOKOUT_BINS entry {spec:?}: expected label=path to an executable")
            });
            let path = PathBuf::from(path.trim());
            assert!(
                path.is_file(),
                "LOOKOUT_BINS entry {spec:?}: no file at {}",
                path.display()
            );
            Bin {
                label: label.trim().to_owned(),
                path,
            }
        })
        .collect();
    assert!(!bins.is_empty(), "LOOKOUT_BINS names no binary");
    bins
}

pub fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// Whether a target held: `held` or `MISSED`.
pub fn held(ok: bool) -> &'static str {
    if ok { "held" } else { "MISSED" }
}

/// A row's target and whether it held: `<= 150 us: held`.
pub fn verdict(target: &str, ok: bool) -> String {
    format!("{target}: {}", held(ok))
}

fn first_line(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .output()
        .ok()
        .and_then(|out| {
            let text = String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr);
            text.lines().next().map(str::to_owned)
        })
        .unwrap_or_else(|| format!("{program}: not found"))
}

/// The machine and versions the numbers were taken on, as Markdown lines
/// to paste above the table: date, kernel (`uname -r`), CPU model and
/// count, memory, redis-server and redis_exporter versions, the commit
/// measured, and the load when the run started (others' work skews it).
pub fn header(title: &str) {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name")?.split_once(':'))
        .map_or("unknown CPU", |(_, m)| m.trim())
        .to_owned();
    let cpus = cpuinfo
        .lines()
        .filter(|l| l.starts_with("processor"))
        .count();
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_gib = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .map_or(0.0, |kib| kib / (1 << 20) as f64);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .unwrap_or_default()
        .trim()
        .to_owned();
    let load = std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ");
    let redis = first_line("redis-server", &["--version"]);
    let redis = redis
        .split_whitespace()
        .find_map(|w| w.strip_prefix("v="))
        .unwrap_or(&redis)
        .to_owned();
    let exporter = exporter_version().unwrap_or_else(|| "not installed".to_owned());
    let repo = support::repo();
    let repo = repo.to_str().unwrap();
    let commit = first_line("git", &["-C", repo, "rev-parse", "--short", "HEAD"]);
    let dirty = Command::new("git")
        .args(["-C", repo, "status", "--porcelain", "--untracked-files=no"])
        .output()
        .is_ok_and(|out| !out.stdout.is_empty());
    println!("{title}\n");
    println!(
        "- measured {}",
        first_line("date", &["-u", "+%Y-%m-%d %H:%M UTC"])
    );
    println!("- machine: Linux {kernel}, {cpus} x {model}, {mem_gib:.1} GiB of memory");
    println!("- redis-server {redis}; redis_exporter {exporter}");
    println!(
        "- lookout at {commit}{}; load average at the start {load}",
        if dirty {
            " with uncommitted changes"
        } else {
            ""
        }
    );
    println!();
}

/// redis_exporter's program: Debian names it `prometheus-redis-exporter`,
/// upstream `redis_exporter`.
pub fn exporter_program() -> Option<PathBuf> {
    ["prometheus-redis-exporter", "redis_exporter"]
        .iter()
        .find_map(|name| {
            let out = Command::new("sh")
                .args(["-c", &format!("command -v {name}")])
                .output()
                .ok()?;
            let path = String::from_utf8(out.stdout).ok()?.trim().to_owned();
            (!path.is_empty()).then(|| PathBuf::from(path))
        })
}

/// Its version, as `-version` prints it (`1.45.0-2+b4`).
pub fn exporter_version() -> Option<String> {
    let out = Command::new(exporter_program()?)
        .arg("-version")
        .output()
        .ok()?;
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    let after = text.split("Exporter ").nth(1)?;
    Some(
        after
            .split_whitespace()
            .next()?
            .trim_matches('"')
            .to_owned(),
    )
}

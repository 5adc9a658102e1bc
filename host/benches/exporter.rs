//! The redis_exporter anchor of `make bench` and `make bench-fleet`:
//! Prometheus's usual Redis exporter (Debian's `prometheus-redis-exporter`,
//! installed by `make redis-exporter`) scraping the same kind of
//! redis-server, its whole process measured from `/proc` exactly as
//! `lookout` is, with a plain HTTP GET of /metrics (a connection of its
//! own each) every 20 ms.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::measure::{CommandStats, Cpu, CpuWindow, median};
pub use crate::measure::{exporter_program as program, exporter_version as version};
use crate::support::{Redis, free_port, wait_for};

/// A running exporter, killed on drop.
struct Exporter {
    child: Child,
    addr: SocketAddr,
}

impl Drop for Exporter {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Exporter {
    /// Starts one on `redis` and waits for a scrape that reached it.
    fn start(program: &PathBuf, redis: &Redis) -> Self {
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let child = Command::new(program)
            .arg(format!("-redis.addr={}", redis.url()))
            .arg(format!("-web.listen-address={addr}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let exporter = Self { child, addr };
        wait_for("redis_exporter to answer", Duration::from_secs(20), || {
            scrape(addr)
                .filter(|body| body.contains("redis_up 1"))
                .map(|_| ())
        });
        exporter
    }
}

/// GET /metrics on `addr`, one connection; the body of a 200.
fn scrape(addr: SocketAddr) -> Option<String> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .ok()?;
    let mut reply = Vec::new();
    stream.read_to_end(&mut reply).ok()?;
    let reply = String::from_utf8_lossy(&reply);
    reply
        .starts_with("HTTP/1.1 200")
        .then(|| reply.into_owned())
}

/// A thread scraping `addr` every `every` (at once when a scrape ran
/// late), counting the scrapes that succeeded, until dropped.
struct Scraper {
    done: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Scraper {
    fn start(addr: SocketAddr, every: Duration) -> Self {
        let done = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (done, stop) = (done.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut next = Instant::now();
                while !stop.load(Ordering::Relaxed) {
                    if scrape(addr).is_some() {
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                    next += every;
                    match next.checked_duration_since(Instant::now()) {
                        Some(wait) => std::thread::sleep(wait),
                        None => next = Instant::now(),
                    }
                }
            })
        };
        Self {
            done,
            stop,
            thread: Some(thread),
        }
    }

    fn scrapes(&self) -> u64 {
        self.done.load(Ordering::Relaxed)
    }
}

impl Drop for Scraper {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// One exporter scraped every 20 ms, measured for `length`.
pub struct Window {
    pub cpu: Cpu,
    pub scrapes: u64,
    /// What the scrapes ran on the Redis.
    pub redis: CommandStats,
}

/// Three exporters on `redis`, one after the other, each scraped every
/// 20 ms and measured for `length` once its first scrapes are over; `None`
/// when no exporter is installed.
pub fn windows(redis: &Redis, length: Duration) -> Option<Vec<Window>> {
    let program = program()?;
    Some(
        (0..3)
            .map(|_| {
                let exporter = Exporter::start(&program, redis);
                let pid = exporter.child.id();
                let scraper = Scraper::start(exporter.addr, Duration::from_millis(20));
                std::thread::sleep(Duration::from_secs(1));
                let mut conn = redis.conn();
                let stats = CommandStats::start(&mut conn);
                let scrapes = scraper.scrapes();
                let mut cpu = CpuWindow::start(pid);
                cpu.run_for(length);
                let cpu = cpu.finish();
                let scrapes = scraper.scrapes() - scrapes;
                let redis = CommandStats::read(&mut conn).since(&stats);
                drop(scraper);
                Window {
                    cpu,
                    scrapes,
                    redis,
                }
            })
            .collect(),
    )
}

/// Median microseconds of exporter CPU per scrape, and of Redis time per
/// scrape.
pub fn per_scrape(windows: &[Window]) -> (f64, f64) {
    let per = |f: &dyn Fn(&Window) -> f64| {
        median(
            windows
                .iter()
                .map(|w| f(w) / w.scrapes.max(1) as f64)
                .collect(),
        )
    };
    (
        per(&|w| w.cpu.ns as f64 / 1e3),
        per(&|w| w.redis.usec() as f64),
    )
}

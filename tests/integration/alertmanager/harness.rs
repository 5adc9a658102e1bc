//! A real Alertmanager (Debian package prometheus-alertmanager) on a free
//! port with its storage in a temp dir and no gossip port, routing every
//! alert to its own group (group_wait and group_interval 1 s) and on to a
//! webhook receiver served here, with send_resolved. Std only, so the
//! host crate's own tests use it too.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The Alertmanager binary on `PATH`: `alertmanager`, or Debian's
/// `prometheus-alertmanager`.
pub fn binary() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    for dir in std::env::split_paths(&path) {
        for name in ["alertmanager", "prometheus-alertmanager"] {
            let candidate = dir.join(name);
            if candidate.is_file() {
                return Some(candidate);
            }
        }
    }
    None
}

/// A port free right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One webhook notification: when it arrived and its body.
#[derive(Debug, Clone)]
pub struct Notification {
    /// When it was read.
    pub at: Instant,
    /// Alertmanager's webhook payload.
    pub body: Value,
}

/// The webhook receiver: takes every POST, answers 200.
pub struct Webhook {
    /// Its port on 127.0.0.1.
    pub port: u16,
    received: Arc<Mutex<Vec<Notification>>>,
}

impl Webhook {
    /// Listens on a free port, a thread per connection.
    pub fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let received = Arc::new(Mutex::new(Vec::new()));
        let sink = received.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let sink = sink.clone();
                std::thread::spawn(move || serve(stream, &sink));
            }
        });
        Self { port, received }
    }

    /// Every notification so far.
    pub fn notifications(&self) -> Vec<Notification> {
        self.received.lock().unwrap().clone()
    }

    /// When the first notification after `since` arrived that holds an
    /// alert named `alertname` (and, with `label`, that label) in `status`
    /// (`firing` or `resolved`); waits up to `deadline`, then panics with
    /// what arrived.
    pub fn wait(
        &self,
        since: Instant,
        alertname: &str,
        label: Option<(&str, &str)>,
        status: &str,
        deadline: Duration,
    ) -> Instant {
        let start = Instant::now();
        loop {
            let found = self.notifications().into_iter().find(|n| {
                n.at >= since
                    && n.body["alerts"].as_array().is_some_and(|alerts| {
                        alerts.iter().any(|a| {
                            a["labels"]["alertname"] == alertname
                                && a["status"] == status
                                && label.is_none_or(|(k, v)| a["labels"][k] == v)
                        })
                    })
            });
            if let Some(n) = found {
                return n.at;
            }
            if start.elapsed() > deadline {
                let seen: Vec<String> = self
                    .notifications()
                    .iter()
                    .map(|n| n.body.to_string())
                    .collect();
                panic!(
                    "no {status} webhook for {alertname} within {deadline:?}; received: {seen:#?}"
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Reads HTTP/1.1 requests off `stream` (Alertmanager keeps connections
/// alive) and records each body.
fn serve(stream: TcpStream, sink: &Mutex<Vec<Notification>>) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut writer = stream;
    loop {
        let mut length = 0usize;
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        loop {
            line.clear();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            let header = line.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                length = value.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        if let Ok(body) = serde_json::from_slice(&body) {
            sink.lock().unwrap().push(Notification {
                at: Instant::now(),
                body,
            });
        }
        let reply = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
        if writer.write_all(reply.as_bytes()).is_err() {
            return;
        }
    }
}

/// A running Alertmanager.
pub struct Alertmanager {
    child: Child,
    /// Its API port on 127.0.0.1.
    pub port: u16,
    _dir: tempfile::TempDir,
}

impl Alertmanager {
    /// Starts one on a free port sending to `hook`, and waits until ready.
    pub fn start(hook: &Webhook) -> Self {
        Self::start_on(free_port(), hook)
    }

    /// Starts one on `port` with empty storage, and waits until ready.
    pub fn start_on(port: u16, hook: &Webhook) -> Self {
        let binary = binary().expect(
            "no alertmanager binary: run `make alertmanager` (Debian package \
             prometheus-alertmanager; make deps installs it)",
        );
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("alertmanager.yml");
        std::fs::write(
            &config,
            format!(
                "route:\n  receiver: hook\n  group_by: ['...']\n  group_wait: 1s\n  \
                 group_interval: 1s\n  repeat_interval: 4h\nreceivers:\n  - name: hook\n    \
                 webhook_configs:\n      - url: http://127.0.0.1:{}/\n        \
                 send_resolved: true\n",
                hook.port
            ),
        )
        .unwrap();
        let child = Command::new(binary)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--cluster.listen-address=")
            .arg("--log.level=warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting alertmanager");
        let am = Self {
            child,
            port,
            _dir: dir,
        };
        let start = Instant::now();
        while am.get("/-/ready").is_none_or(|(status, _)| status != 200) {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "alertmanager on port {port} not ready within 30 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        am
    }

    /// Its base URL.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Stops it at once (SIGKILL), its storage gone with it.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Freezes it (SIGSTOP): connections are taken by the kernel, nothing
    /// answers.
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// Thaws it (SIGCONT).
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, signal: &str) {
        let pid = self.child.id().to_string();
        let status = Command::new("kill").args([signal, &pid]).status().unwrap();
        assert!(status.success(), "kill {signal} {pid}");
    }

    /// `GET path`: the status and body, `None` when it does not answer.
    pub fn get(&self, path: &str) -> Option<(u16, String)> {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        let request =
            format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).ok()?;
        let mut text = String::new();
        stream.read_to_string(&mut text).ok()?;
        let status = text.split(' ').nth(1)?.parse().ok()?;
        let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_owned())?;
        Some((status, body))
    }
}

impl Drop for Alertmanager {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(Some(_))) {
            return;
        }
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-CONT", &pid]).status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

//! `lookout record`: snapshots of a real Redis as JSON lines, with every
//! INFO field and the new SLOWLOG entries, optionally redacted; and reading
//! them back for `lookout test`.

use std::io::{BufRead, Write};
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::redis::conn::Conn;
use crate::redis::probe::{InfoField, Prober, Probes, SlowEntry, Snapshot};

/// One recorded snapshot: everything any watcher could ask for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Recorded {
    /// The instance, `host:port`.
    pub instance: String,
    /// Unix milliseconds.
    pub taken_at_ms: i64,
    /// INFO fields as `[section, name, value]`.
    pub info: Vec<(String, String, String)>,
    /// New SLOWLOG entries since the previous snapshot.
    pub slowlog: Vec<SlowEntry>,
}

impl Recorded {
    fn from_snapshot(instance: &str, s: &Snapshot, redact: bool) -> Self {
        Self {
            instance: instance.to_owned(),
            taken_at_ms: s.taken_at_ms,
            info: s
                .info
                .iter()
                .map(|f| {
                    let value = if redact {
                        redact_info(&f.name, &f.value)
                    } else {
                        f.value.clone()
                    };
                    (f.section.to_string(), f.name.clone(), value)
                })
                .collect(),
            slowlog: s
                .slowlog
                .iter()
                .flatten()
                .map(|e| {
                    let mut e = e.clone();
                    if redact {
                        e.args = redact_args(&e.args);
                        e.client_addr.clear();
                        e.client_name.clear();
                    }
                    e
                })
                .collect(),
        }
    }

    /// The snapshot the daemon would hand over.
    pub fn to_snapshot(&self) -> Snapshot {
        Snapshot {
            taken_at_ms: self.taken_at_ms,
            info: self
                .info
                .iter()
                .map(|(section, name, value)| InfoField {
                    section: Arc::from(section.as_str()),
                    name: name.clone(),
                    value: value.clone(),
                })
                .collect(),
            slowlog: Some(self.slowlog.clone()),
            notices: Vec::new(),
            probes: Probes {
                info: true,
                slowlog: true,
            },
        }
    }
}

/// Keeps the command name, hides every argument.
fn redact_args(args: &[String]) -> Vec<String> {
    args.iter()
        .enumerate()
        .map(|(i, a)| if i == 0 { a.clone() } else { "?".to_owned() })
        .collect()
}

/// INFO fields `--redact` replaces whole: replication peers' addresses and
/// file paths.
const REDACTED_FIELDS: [&str; 5] = [
    "master_host",
    "master_port",
    "slave_announced_ip",
    "executable",
    "config_file",
];

/// Parts of `key=value,...` INFO values `--redact` replaces: a replica's
/// (`slaveN:ip=...,port=...`), a Sentinel master's `address`, a module's
/// `path`.
const REDACTED_PARTS: [&str; 6] = ["ip", "port", "addr", "address", "host", "path"];

/// What `--redact` keeps of an INFO value: replication peers' addresses and
/// file paths become `?`, everything else (counters, states, ids) stays.
fn redact_info(name: &str, value: &str) -> String {
    if REDACTED_FIELDS.contains(&name) || value.starts_with('/') {
        return "?".to_owned();
    }
    if !value.contains('=') {
        return value.to_owned();
    }
    value
        .split(',')
        .map(|part| match part.split_once('=') {
            Some((k, v)) if REDACTED_PARTS.contains(&k) || v.starts_with('/') => format!("{k}=?"),
            _ => part.to_owned(),
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// Records `polls` snapshots of `url`, `every` apart, as JSON lines.
///
/// # Errors
/// Redis is unreachable or a probe fails, or the output cannot be written.
pub async fn record(
    url: &str,
    polls: u64,
    every: std::time::Duration,
    redact: bool,
    out: &mut impl Write,
) -> Result<()> {
    let conn = Conn::new(
        url,
        std::time::Duration::from_secs(2),
        std::time::Duration::from_secs(2),
    )?;
    let instance = conn.instance.clone();
    let mut prober = Prober::new(conn, 128);
    let all = Probes {
        info: true,
        slowlog: true,
    };
    for i in 0..polls {
        if i > 0 {
            tokio::time::sleep(every).await;
        }
        let snapshot = prober.poll(all).await?;
        let line = serde_json::to_string(&Recorded::from_snapshot(&instance, &snapshot, redact))?;
        writeln!(out, "{line}").context("writing snapshots")?;
    }
    out.flush().context("writing snapshots")?;
    Ok(())
}

/// Reads recorded snapshots.
///
/// # Errors
/// The file cannot be read or a line is not a recorded snapshot; the
/// message names the line.
pub fn read_snapshots(path: &Path) -> Result<Vec<Recorded>> {
    read_lines(path)
}

pub(crate) fn read_lines<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Vec<T>> {
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut out = Vec::new();
    for (n, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.with_context(|| format!("reading {}", path.display()))?;
        if line.trim().is_empty() {
            continue;
        }
        out.push(
            serde_json::from_str(&line)
                .with_context(|| format!("{} line {}", path.display(), n + 1))?,
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redaction_keeps_only_the_command() {
        assert_eq!(
            redact_args(&["SET".into(), "k".into(), "secret".into()]),
            ["SET", "?", "?"]
        );
    }

    #[test]
    fn redaction_hides_names_peers_and_paths() {
        let field = |section: &str, name: &str, value: &str| InfoField {
            section: Arc::from(section),
            name: name.to_owned(),
            value: value.to_owned(),
        };
        let snapshot = Snapshot {
            taken_at_ms: 1,
            info: vec![
                field("server", "executable", "/usr/bin/redis-server"),
                field("server", "config_file", "/etc/redis/redis.conf"),
                field("server", "run_id", "abc"),
                field("replication", "master_host", "10.1.2.3"),
                field("replication", "master_port", "6380"),
                field(
                    "replication",
                    "slave0",
                    "ip=10.9.8.7,port=6381,state=online,offset=42,lag=0",
                ),
                field("modules", "module", "name=m,ver=1,path=/opt/m.so"),
                field("clients", "connected_clients", "3"),
            ],
            slowlog: Some(vec![SlowEntry {
                id: 1,
                started_at: 2,
                duration_us: 3,
                args: vec!["AUTH".into(), "hunter2".into()],
                client_addr: "10.0.0.5:5000".into(),
                client_name: "billing-api".into(),
            }]),
            ..Snapshot::default()
        };
        let line =
            serde_json::to_string(&Recorded::from_snapshot("db:6379", &snapshot, true)).unwrap();
        for secret in [
            "/usr/bin",
            "/etc/redis",
            "10.1.2.3",
            "6380",
            "10.9.8.7",
            "6381",
            "/opt/m.so",
            "hunter2",
            "10.0.0.5",
            "billing-api",
        ] {
            assert!(!line.contains(secret), "{secret} in {line}");
        }
        for kept in [
            "abc",
            "state=online,offset=42,lag=0",
            "name=m,ver=1",
            "AUTH",
        ] {
            assert!(line.contains(kept), "{kept} missing from {line}");
        }
        let plain =
            serde_json::to_string(&Recorded::from_snapshot("db:6379", &snapshot, false)).unwrap();
        assert!(plain.contains("billing-api") && plain.contains("10.9.8.7"));
    }
}

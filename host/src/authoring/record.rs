//! `lookout record`: snapshots of a real Redis as JSON lines, with every
//! INFO field (or only those some watchers declare), the new SLOWLOG
//! entries and the probes those watchers declare, optionally redacted; and
//! reading them back for `lookout test`.

use std::collections::HashSet;
use std::io::{BufRead, Write};
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::config::Settings;
use crate::redis::conn::Conn;
use crate::redis::declared::{Answer, Ask};
use crate::redis::probe::{InfoField, Prober, Probes, SlowEntry, Snapshot};
use crate::sandbox::Engine;
use crate::watchers::load::load;

/// One recorded snapshot: everything any watcher could ask for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Recorded {
    /// The instance, `host:port`.
    pub instance: String,
    /// Unix milliseconds.
    pub taken_at_ms: i64,
    /// INFO fields as `[section, name, value]`.
    pub info: Vec<(String, String, String)>,
    /// New SLOWLOG entries since the previous snapshot.
    pub slowlog: Vec<SlowEntry>,
    /// Declared probes and what they read (absent from recordings made
    /// without `--watcher`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub probes: Vec<(Ask, Answer)>,
}

/// What `lookout record` asks for besides INFO and SLOWLOG, and what it
/// keeps of INFO.
#[derive(Debug, Clone, Default)]
pub(crate) struct Plan {
    /// Declared probes to run.
    pub asks: Vec<Ask>,
    /// Keep only these INFO fields and sections (and `run_id`); `None`
    /// keeps every field.
    pub keep: Option<(HashSet<String>, HashSet<String>)>,
}

impl Plan {
    /// The plan for `watchers`: the probes they declare and, with
    /// `only_declared`, only the INFO fields and sections they read.
    ///
    /// # Errors
    /// A watcher cannot be loaded or configured (its `NAME.toml` beside it
    /// and `[watchers.NAME]` in `settings` apply).
    pub(crate) async fn for_watchers(
        watchers: &[std::path::PathBuf],
        settings: &Settings,
        only_declared: bool,
    ) -> Result<Self> {
        let engine = Engine::new(settings.cache_dir.as_deref())?;
        let mut probes = Probes::default();
        let (mut fields, mut sections) = (HashSet::new(), HashSet::new());
        for path in watchers {
            let loaded = load(&engine, path, settings).await?;
            probes.merge(loaded.spec.probes());
            let needs = &loaded.spec.manifest.needs;
            fields.extend(needs.info_fields.iter().cloned());
            sections.extend(needs.info_sections.iter().map(|s| s.to_ascii_lowercase()));
        }
        Ok(Self {
            asks: probes.asks,
            keep: only_declared.then_some((fields, sections)),
        })
    }

    fn keeps(&self, field: &InfoField) -> bool {
        self.keep.as_ref().is_none_or(|(fields, sections)| {
            field.name == "run_id"
                || fields.contains(&field.name)
                || sections.contains(&*field.section)
        })
    }
}

impl Recorded {
    fn from_snapshot(instance: &str, s: &Snapshot, redact: bool, plan: &Plan) -> Self {
        Self {
            instance: instance.to_owned(),
            taken_at_ms: s.taken_at_ms,
            info: s
                .info
                .iter()
                .filter(|f| plan.keeps(f))
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
            probes: s
                .answers
                .iter()
                .map(|(ask, answer)| {
                    let answer = match answer {
                        Answer::Clients(lines) if redact => {
                            Answer::Clients(lines.iter().map(|l| redact_client(l)).collect())
                        }
                        other => other.clone(),
                    };
                    (ask.clone(), answer)
                })
                .collect(),
        }
    }

    /// The snapshot the daemon would hand over.
    pub(crate) fn to_snapshot(&self) -> Snapshot {
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
                asks: self.probes.iter().map(|(ask, _)| ask.clone()).collect(),
            },
            answers: self.probes.clone(),
        }
    }
}

/// `--redact` of a `CLIENT LIST` line: addresses and names become `?`.
fn redact_client(line: &[(String, String)]) -> Vec<(String, String)> {
    line.iter()
        .map(|(k, v)| {
            let hidden = matches!(k.as_str(), "addr" | "laddr" | "name" | "user");
            (k.clone(), if hidden { "?".to_owned() } else { v.clone() })
        })
        .collect()
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
pub(crate) async fn record(
    url: &str,
    polls: u64,
    every: std::time::Duration,
    redact: bool,
    plan: &Plan,
    out: &mut impl Write,
) -> Result<()> {
    let conn = Conn::new(
        url,
        std::time::Duration::from_secs(2),
        std::time::Duration::from_secs(2),
    )?;
    let instance = conn.instance.clone();
    let mut prober = Prober::new(conn, 128);
    let mut asks = plan.asks.clone();
    asks.sort();
    asks.dedup();
    let all = Probes {
        info: true,
        slowlog: true,
        asks,
    };
    for i in 0..polls {
        if i > 0 {
            tokio::time::sleep(every).await;
        }
        let snapshot = prober.poll(all.clone()).await?;
        let line =
            serde_json::to_string(&Recorded::from_snapshot(&instance, &snapshot, redact, plan))?;
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
pub(crate) fn read_snapshots(path: &Path) -> Result<Vec<Recorded>> {
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
        let plan = Plan::default();
        let line =
            serde_json::to_string(&Recorded::from_snapshot("db:6379", &snapshot, true, &plan))
                .unwrap();
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
            serde_json::to_string(&Recorded::from_snapshot("db:6379", &snapshot, false, &plan))
                .unwrap();
        assert!(plain.contains("billing-api") && plain.contains("10.9.8.7"));
    }
}

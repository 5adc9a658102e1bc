//! Recorded snapshots and events as JSON lines: `lookout record` writes
//! snapshots of a real Redis, `lookout test` runs a watcher over them, in
//! the daemon's sandbox, and compares its events with expected ones.

use std::io::{BufRead, Write};
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::config::Settings;
use crate::plugin::Runtime;
use crate::probe::{Conn, InfoField, Prober, Probes, SlowEntry, Snapshot};
use crate::watcher::Watcher;

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
                .map(|f| (f.section.to_string(), f.name.clone(), f.value.clone()))
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

fn read_lines<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Vec<T>> {
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

/// An event as `lookout test` prints and compares it (no timestamp).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestEvent {
    /// Index of the snapshot that produced it (0-based).
    pub snapshot: usize,
    /// Level.
    pub level: String,
    /// Target (the watcher's name, or `lookout` for host notices).
    pub target: String,
    /// Message.
    pub msg: String,
    /// Fields, without `instance`.
    pub fields: Map<String, Value>,
}

/// Runs the watcher at `wasm` over `snapshots` in order, in the daemon's
/// sandbox with the daemon's supervision (a trap is reported as a host
/// event, then the watcher is rebuilt).
///
/// # Errors
/// The watcher cannot be loaded or configured.
pub fn run_watcher(
    wasm: &Path,
    settings: &Settings,
    snapshots: &[Recorded],
) -> Result<Vec<TestEvent>> {
    let runtime = Runtime::new(settings.cache_dir.as_deref())?;
    let watcher = Watcher::load(&runtime, wasm, settings)?;
    let mut supervisor =
        crate::supervisor::Supervisor::new(runtime, vec![watcher], settings.poll_interval);
    let mut events = Vec::new();
    for (i, recorded) in snapshots.iter().enumerate() {
        let snapshot = recorded.to_snapshot();
        let poll = u64::try_from(i).unwrap_or(u64::MAX) + 1;
        let (emitted, _) = supervisor.poll(poll, &recorded.instance, &snapshot);
        events.extend(emitted.into_iter().map(|e| TestEvent {
            snapshot: i,
            level: e.level.as_str().to_owned(),
            target: e.target,
            msg: e.msg,
            fields: e.fields,
        }));
    }
    Ok(events)
}

/// Compares `actual` events with the expected file; returns a readable
/// diff, or `None` when they match.
///
/// # Errors
/// The expected file cannot be read or parsed.
pub fn compare(actual: &[TestEvent], expected: &Path) -> Result<Option<String>> {
    let expected: Vec<TestEvent> = read_lines(expected)?;
    if expected == actual {
        return Ok(None);
    }
    let mut diff = String::new();
    let show = |e: &TestEvent| serde_json::to_string(e).unwrap_or_default();
    for i in 0..expected.len().max(actual.len()) {
        match (expected.get(i), actual.get(i)) {
            (Some(e), Some(a)) if e == a => {}
            (Some(e), Some(a)) => {
                diff.push_str(&format!("event {}:\n- {}\n+ {}\n", i + 1, show(e), show(a)));
            }
            (Some(e), None) => diff.push_str(&format!("event {}: missing\n- {}\n", i + 1, show(e))),
            (None, Some(a)) => {
                diff.push_str(&format!("event {}: unexpected\n+ {}\n", i + 1, show(a)))
            }
            (None, None) => {}
        }
    }
    Ok(Some(diff))
}

/// Parses `--set key=value` into a TOML table (values parsed as TOML,
/// falling back to strings).
///
/// # Errors
/// An argument without `=`.
pub fn parse_sets(sets: &[String]) -> Result<toml::Table> {
    let mut table = toml::Table::new();
    for set in sets {
        let Some((key, raw)) = set.split_once('=') else {
            bail!("--set {set}: expected key=value");
        };
        let value = format!("v = {raw}")
            .parse::<toml::Table>()
            .ok()
            .and_then(|mut t| t.remove("v"))
            .unwrap_or_else(|| toml::Value::String(raw.to_owned()));
        table.insert(key.trim().to_owned(), value);
    }
    Ok(table)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sets_parse_as_toml_values() {
        let t = parse_sets(&[
            "threshold=7".into(),
            "label=hello".into(),
            "ratio=0.5".into(),
        ])
        .unwrap();
        assert_eq!(t["threshold"].as_integer(), Some(7));
        assert_eq!(t["label"].as_str(), Some("hello"));
        assert_eq!(t["ratio"].as_float(), Some(0.5));
        assert!(parse_sets(&["nope".into()]).is_err());
    }

    #[test]
    fn redaction_keeps_only_the_command() {
        assert_eq!(
            redact_args(&["SET".into(), "k".into(), "secret".into()]),
            ["SET", "?", "?"]
        );
    }
}

//! `lookout test`: a watcher run over recorded snapshots in the daemon's
//! sandbox and supervisor, its events printed or compared with expected
//! ones.

use std::path::Path;

use anyhow::{Result, bail};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::record::{Recorded, read_lines};
use crate::config::Settings;
use crate::redis::probe::Snapshot;
use crate::sandbox::Engine;
use crate::watchers::load::load;
use crate::watchers::supervisor::Supervisor;

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
/// event, then the watcher is rebuilt). Recordings made by several
/// `lookout record` runs each start with the resident SLOWLOG ring; the
/// replay hands each entry over once per Redis run (`run_id`), as one
/// daemon running through all of them would.
///
/// # Errors
/// The watcher cannot be loaded or configured.
pub async fn run_watcher(
    wasm: &Path,
    settings: &Settings,
    snapshots: &[Recorded],
) -> Result<Vec<TestEvent>> {
    let engine = Engine::new(settings.cache_dir.as_deref())?;
    let loaded = load(&engine, wasm, settings).await?;
    let mut supervisor = Supervisor::new(engine, settings.poll_interval);
    supervisor.install(loaded.spec, Some(loaded.instance));
    let mut events = Vec::new();
    let mut cursor: Option<(String, u64)> = None;
    for (i, recorded) in snapshots.iter().enumerate() {
        let mut snapshot = recorded.to_snapshot();
        once_per_run(&mut snapshot, &mut cursor);
        let poll = u64::try_from(i).unwrap_or(u64::MAX) + 1;
        let (emitted, _) = supervisor.poll(poll, &recorded.instance, &snapshot).await;
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

/// Drops the SLOWLOG entries already handed over in this Redis run and
/// moves `cursor` (run_id, highest id) past the rest.
fn once_per_run(snapshot: &mut Snapshot, cursor: &mut Option<(String, u64)>) {
    let Some(run_id) = snapshot
        .info
        .iter()
        .find(|f| f.name == "run_id")
        .map(|f| f.value.clone())
    else {
        return;
    };
    let Some(entries) = snapshot.slowlog.as_mut() else {
        return;
    };
    let last = match cursor {
        Some((seen, last)) if *seen == run_id => Some(*last),
        _ => None,
    };
    entries.retain(|e| last.is_none_or(|last| e.id > last));
    if let Some(top) = entries.iter().map(|e| e.id).max() {
        *cursor = Some((run_id, top));
    } else if last.is_none() {
        *cursor = None;
    }
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
}

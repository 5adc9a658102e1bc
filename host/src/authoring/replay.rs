//! `lookout test`: a watcher run over recorded snapshots in the daemon's
//! sandbox and supervisor, its events printed or compared with expected
//! ones.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Result, bail};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::record::{Recorded, read_lines};
use crate::config::Settings;
use crate::delivery::envelope::{Condition, ConditionState};
use crate::redis::declared::{Answer, Ask};
use crate::redis::probe::Snapshot;
use crate::sandbox::Engine;
use crate::watchers::load::load_with;
use crate::watchers::settings::Layer;
use crate::watchers::supervisor::Supervisor;

/// An event as `lookout test` prints and compares it (no timestamp).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TestEvent {
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
    /// The condition the event starts or ends, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub condition: Option<TestCondition>,
}

/// A condition as `lookout test` prints and compares it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TestCondition {
    /// Its kind.
    pub kind: String,
    /// Its key.
    pub key: String,
    /// `firing` or `resolved`.
    pub state: ConditionState,
    /// Its runbook URL, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runbook: Option<String>,
}

impl From<Condition> for TestCondition {
    fn from(c: Condition) -> Self {
        Self {
            kind: c.kind,
            key: c.key,
            state: c.state,
            runbook: c.runbook,
        }
    }
}

/// Runs the watcher at `wasm` over `snapshots` in order, in the daemon's
/// sandbox with the daemon's supervision (a trap is reported as a host
/// event, then the watcher is rebuilt). Recordings made by several
/// `lookout record` runs each start with the resident SLOWLOG ring; the
/// replay hands each entry over once per Redis run (`run_id`), as one
/// daemon running through all of them would. `own`: its settings given on
/// the command line, over all others.
///
/// # Errors
/// The watcher cannot be loaded or configured.
pub(crate) async fn run_watcher(
    wasm: &Path,
    settings: &Settings,
    own: Option<&Layer<'_>>,
    snapshots: &[Recorded],
) -> Result<Vec<TestEvent>> {
    let engine = Engine::new(settings.cache_dir.as_deref())?;
    let loaded = load_with(&engine, wasm, settings, own).await?;
    let needs = loaded.spec.probes().asks.clone();
    let mut supervisor = Supervisor::new(engine, settings.poll_interval);
    supervisor.install(loaded.spec, Some(loaded.instance));
    let mut events = Vec::new();
    let mut cursor: Option<(String, u64)> = None;
    for (i, recorded) in snapshots.iter().enumerate() {
        let mut snapshot = recorded.to_snapshot();
        not_recorded(&mut snapshot, &needs, wasm);
        once_per_run(&mut snapshot, &mut cursor);
        let poll = u64::try_from(i).unwrap_or(u64::MAX) + 1;
        let (emitted, _) = supervisor.poll(poll, &recorded.instance, &snapshot).await;
        events.extend(emitted.into_iter().map(|e| TestEvent {
            snapshot: i,
            level: e.level.as_str().to_owned(),
            target: e.target,
            msg: e.msg,
            fields: e.fields,
            condition: e.condition.map(Into::into),
        }));
    }
    Ok(events)
}

/// Declared probes a recording lacks reach the watcher as unavailable,
/// saying how to record them.
fn not_recorded(snapshot: &mut Snapshot, needs: &[Ask], wasm: &Path) {
    for ask in needs {
        if !snapshot.probes.asks.contains(ask) {
            snapshot.probes.asks.push(ask.clone());
            snapshot.answers.push((
                ask.clone(),
                Answer::Unavailable(format!(
                    "{} is not in the recording; record with `lookout record --watcher {}`",
                    ask.command(),
                    wasm.display()
                )),
            ));
        }
    }
    snapshot.probes.asks.sort();
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
/// diff (see [`diff`]), or `None` when they match.
///
/// # Errors
/// The expected file cannot be read or parsed.
pub(crate) fn compare(actual: &[TestEvent], expected: &Path) -> Result<Option<String>> {
    let expected: Vec<TestEvent> = read_lines(expected)?;
    Ok(diff(&expected, actual))
}

/// One difference between expected and actual events.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Change<'a> {
    /// Expected, not produced.
    Missing(&'a TestEvent),
    /// Produced, not expected.
    Extra(&'a TestEvent),
    /// Expected and produced at the same place with the same snapshot,
    /// target and level, but a different message or fields.
    Changed(&'a TestEvent, &'a TestEvent),
}

impl Change<'_> {
    fn snapshot(&self) -> usize {
        match self {
            Change::Missing(e) | Change::Extra(e) | Change::Changed(e, _) => e.snapshot,
        }
    }
}

/// Whether `a` and `b` are the same event with a different message or
/// fields, so they are shown as one changed event.
fn same_slot(a: &TestEvent, b: &TestEvent) -> bool {
    a.snapshot == b.snapshot && a.target == b.target && a.level == b.level
}

/// Aligns `expected` with `actual` on whole-event equality (longest common
/// subsequence; on ties an expected event is dropped before an actual one)
/// and lists the differences in order. Within each run of unmatched
/// events, an expected event is paired with the next unmatched actual one
/// in the same snapshot with the same target and level as `Changed`.
fn changes<'a>(expected: &'a [TestEvent], actual: &'a [TestEvent]) -> Vec<Change<'a>> {
    // The common prefix and suffix match; the table covers only the middle.
    let head = expected
        .iter()
        .zip(actual)
        .take_while(|(e, a)| e == a)
        .count();
    let tail = expected[head..]
        .iter()
        .rev()
        .zip(actual[head..].iter().rev())
        .take_while(|(e, a)| e == a)
        .count();
    let exp = &expected[head..expected.len() - tail];
    let act = &actual[head..actual.len() - tail];
    let (n, m) = (exp.len(), act.len());
    // lcs[i * (m + 1) + j]: length of the LCS of exp[i..] and act[j..].
    let width = m + 1;
    let mut lcs = vec![0u32; (n + 1) * width];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            lcs[i * width + j] = if exp[i] == act[j] {
                lcs[(i + 1) * width + j + 1] + 1
            } else {
                lcs[(i + 1) * width + j].max(lcs[i * width + j + 1])
            };
        }
    }
    let mut out = Vec::new();
    let (mut gap_exp, mut gap_act) = (Vec::new(), Vec::new());
    let (mut i, mut j) = (0, 0);
    while i < n || j < m {
        if i < n && j < m && exp[i] == act[j] {
            flush_gap(&mut gap_exp, &mut gap_act, &mut out);
            i += 1;
            j += 1;
        } else if i < n && (j == m || lcs[(i + 1) * width + j] >= lcs[i * width + j + 1]) {
            gap_exp.push(&exp[i]);
            i += 1;
        } else {
            gap_act.push(&act[j]);
            j += 1;
        }
    }
    flush_gap(&mut gap_exp, &mut gap_act, &mut out);
    out
}

/// Turns one run of unmatched events into changes: pairs of the same slot
/// (in order on both sides) become `Changed`, the rest `Missing` or
/// `Extra`; listed by snapshot, expected before actual within one.
fn flush_gap<'a>(
    gap_exp: &mut Vec<&'a TestEvent>,
    gap_act: &mut Vec<&'a TestEvent>,
    out: &mut Vec<Change<'a>>,
) {
    let mut paired = vec![false; gap_act.len()];
    let mut next = 0;
    let mut found = Vec::new();
    for e in gap_exp.drain(..) {
        match (next..gap_act.len()).find(|&k| same_slot(e, gap_act[k])) {
            Some(k) => {
                paired[k] = true;
                next = k + 1;
                found.push((0, Change::Changed(e, gap_act[k])));
            }
            None => found.push((0, Change::Missing(e))),
        }
    }
    for (k, a) in gap_act.drain(..).enumerate() {
        if !paired[k] {
            found.push((1, Change::Extra(a)));
        }
    }
    // Stable: within a snapshot, expected-side changes keep their order
    // and come before extra ones.
    found.sort_by_key(|(side, c)| (c.snapshot(), *side));
    out.extend(found.into_iter().map(|(_, c)| c));
}

/// `count` and `noun`, with an `s` unless `count` is 1.
fn counted(count: usize, noun: &str) -> String {
    if count == 1 {
        format!("{count} {noun}")
    } else {
        format!("{count} {noun}s")
    }
}

/// The differences between `expected` and `actual`, or `None` when they
/// are equal. A first line counts them (`2 missing, 1 extra, 1 changed of
/// 14 expected events`); then, in order, one entry per difference: a
/// heading naming it and its snapshot, `- ` before the expected event's
/// JSON and `+ ` before the actual one's:
///
/// ```text
/// missing at snapshot 3:
/// - {"snapshot":3,...}
/// extra at snapshot 5:
/// + {"snapshot":5,...}
/// changed at snapshot 7 (msg, fields.delta):
/// - {"snapshot":7,...}
/// + {"snapshot":7,...}
/// ```
#[must_use]
pub(crate) fn diff(expected: &[TestEvent], actual: &[TestEvent]) -> Option<String> {
    if expected == actual {
        return None;
    }
    let changes = changes(expected, actual);
    let count = |f: fn(&Change<'_>) -> bool| changes.iter().filter(|c| f(c)).count();
    let mut out = format!(
        "{} missing, {} extra, {} changed of {}\n",
        count(|c| matches!(c, Change::Missing(_))),
        count(|c| matches!(c, Change::Extra(_))),
        count(|c| matches!(c, Change::Changed(..))),
        counted(expected.len(), "expected event"),
    );
    let show = |e: &TestEvent| serde_json::to_string(e).unwrap_or_default();
    for change in &changes {
        let at = change.snapshot();
        // Writing to a String cannot fail.
        let _ = match change {
            Change::Missing(e) => writeln!(out, "missing at snapshot {at}:\n- {}", show(e)),
            Change::Extra(a) => writeln!(out, "extra at snapshot {at}:\n+ {}", show(a)),
            Change::Changed(e, a) => writeln!(
                out,
                "changed at snapshot {at} ({}):\n- {}\n+ {}",
                differing(e, a).join(", "),
                show(e),
                show(a)
            ),
        };
    }
    Some(out)
}

/// What differs between two events of the same slot: `msg`,
/// `condition` and each differing field as `fields.NAME`, in name order.
fn differing(e: &TestEvent, a: &TestEvent) -> Vec<String> {
    let mut parts = Vec::new();
    if e.msg != a.msg {
        parts.push("msg".to_owned());
    }
    if e.condition != a.condition {
        parts.push("condition".to_owned());
    }
    let mut names: Vec<&String> = e.fields.keys().chain(a.fields.keys()).collect();
    names.sort();
    names.dedup();
    parts.extend(
        names
            .into_iter()
            .filter(|k| e.fields.get(*k) != a.fields.get(*k))
            .map(|k| format!("fields.{k}")),
    );
    parts
}

/// Parses `--set key=value` into a TOML table (values parsed as TOML,
/// falling back to strings).
///
/// # Errors
/// An argument without `=`.
pub(crate) fn parse_sets(sets: &[String]) -> Result<toml::Table> {
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

    fn event(snapshot: usize, msg: &str, delta: i64) -> TestEvent {
        let mut fields = Map::new();
        fields.insert("delta".into(), Value::from(delta));
        TestEvent {
            snapshot,
            level: "info".into(),
            target: "client-delta".into(),
            msg: msg.into(),
            fields,
            condition: None,
        }
    }

    fn json(e: &TestEvent) -> String {
        serde_json::to_string(e).unwrap()
    }

    fn five() -> Vec<TestEvent> {
        (0..5)
            .map(|i| event(i, &format!("event {i}"), i64::try_from(i).unwrap()))
            .collect()
    }

    #[test]
    fn identical_events_have_no_diff() {
        assert_eq!(diff(&five(), &five()), None);
        assert_eq!(diff(&[], &[]), None);
    }

    #[test]
    fn one_missing_in_the_middle_is_the_only_difference() {
        let expected = five();
        let mut actual = five();
        actual.remove(2);
        let out = diff(&expected, &actual).unwrap();
        assert_eq!(
            out,
            format!(
                "1 missing, 0 extra, 0 changed of 5 expected events\n\
                 missing at snapshot 2:\n- {}\n",
                json(&expected[2])
            )
        );
    }

    #[test]
    fn one_extra_is_the_only_difference() {
        let expected = five();
        let mut actual = five();
        let surplus = event(3, "surplus", 9);
        actual.insert(3, surplus.clone());
        let out = diff(&expected, &actual).unwrap();
        assert_eq!(
            out,
            format!(
                "0 missing, 1 extra, 0 changed of 5 expected events\n\
                 extra at snapshot 3:\n+ {}\n",
                json(&surplus)
            )
        );
    }

    #[test]
    fn a_changed_field_is_one_changed_event() {
        let expected = five();
        let mut actual = five();
        actual[1].fields.insert("delta".into(), Value::from(42));
        let out = diff(&expected, &actual).unwrap();
        assert_eq!(
            out,
            format!(
                "0 missing, 0 extra, 1 changed of 5 expected events\n\
                 changed at snapshot 1 (fields.delta):\n- {}\n+ {}\n",
                json(&expected[1]),
                json(&actual[1])
            )
        );
        // A different level is not the same event: missing and extra.
        let mut actual = five();
        actual[1].level = "warn".into();
        let out = diff(&expected, &actual).unwrap();
        assert!(
            out.starts_with("1 missing, 1 extra, 0 changed of 5 expected events\n"),
            "{out}"
        );
    }

    #[test]
    fn a_changed_message_and_a_new_field_are_named() {
        let expected = vec![event(0, "a", 1)];
        let mut actual = expected.clone();
        actual[0].msg = "b".into();
        actual[0].fields.insert("extra".into(), Value::from(true));
        let out = diff(&expected, &actual).unwrap();
        assert!(
            out.starts_with(
                "0 missing, 0 extra, 1 changed of 1 expected event\n\
                 changed at snapshot 0 (msg, fields.extra):\n"
            ),
            "{out}"
        );
    }

    /// A condition prints as an object beside the fields, reads back, and
    /// a changed one is named.
    #[test]
    fn a_changed_condition_is_named() {
        let mut expected = vec![event(0, "a", 1)];
        expected[0].condition = Some(TestCondition {
            kind: "over-max-lag".into(),
            key: "jobs/workers".into(),
            state: ConditionState::Firing,
            runbook: None,
        });
        let line = json(&expected[0]);
        assert!(
            line.ends_with(
                r#""condition":{"kind":"over-max-lag","key":"jobs/workers","state":"firing"}}"#
            ),
            "{line}"
        );
        let back: TestEvent = serde_json::from_str(&line).unwrap();
        assert_eq!(back, expected[0]);
        let mut actual = expected.clone();
        actual[0].condition.as_mut().unwrap().state = ConditionState::Resolved;
        let out = diff(&expected, &actual).unwrap();
        assert!(
            out.contains("changed at snapshot 0 (condition):\n"),
            "{out}"
        );
        assert!(!json(&event(0, "a", 1)).contains("condition"));
    }

    #[test]
    fn reordered_events_are_one_missing_and_one_extra() {
        let expected = vec![
            event(0, "first", 1),
            event(0, "second", 2),
            event(1, "third", 3),
        ];
        let actual = vec![
            expected[1].clone(),
            expected[0].clone(),
            expected[2].clone(),
        ];
        let out = diff(&expected, &actual).unwrap();
        assert_eq!(
            out,
            format!(
                "1 missing, 1 extra, 0 changed of 3 expected events\n\
                 missing at snapshot 0:\n- {}\n\
                 extra at snapshot 0:\n+ {}\n",
                json(&expected[0]),
                json(&expected[0])
            )
        );
    }

    #[test]
    fn differences_are_listed_in_order_and_all_counted() {
        let expected = five();
        let mut actual = five();
        actual.remove(4);
        actual[2].msg = "other".into();
        actual.remove(0);
        actual.push(event(6, "late", 6));
        let out = diff(&expected, &actual).unwrap();
        let headings: Vec<&str> = out.lines().filter(|l| !l.starts_with(['-', '+'])).collect();
        assert_eq!(
            headings,
            [
                "2 missing, 1 extra, 1 changed of 5 expected events",
                "missing at snapshot 0:",
                "changed at snapshot 2 (msg):",
                "missing at snapshot 4:",
                "extra at snapshot 6:",
            ]
        );
    }
}

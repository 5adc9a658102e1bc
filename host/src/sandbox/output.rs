//! What a watcher returns, made safe to publish: events, messages, fields
//! and text values cut to the watcher's caps, field names and conditions
//! checked, with counts of what was cut. An event that starts or ends a
//! condition is never dropped by the caps: the others go first, and only
//! its message and fields are cut. The caps in bytes of JSON are applied where the
//! events are encoded ([`crate::delivery::envelope::Origin::wrap_all`]),
//! with the caps each event carries from here.

use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::{Map, Value};

use super::limits::WatcherLimits;
use super::wit;
use crate::delivery::envelope::{CallCaps, Condition, ConditionState, Emitted, HOST_FIELDS, Level};

/// Longest field name, bytes.
pub(crate) const MAX_FIELD_NAME_BYTES: usize = 64;
/// Longest condition kind, bytes.
pub(crate) const MAX_CONDITION_KIND_BYTES: usize = 64;
/// Longest condition key, bytes.
pub(crate) const MAX_CONDITION_KEY_BYTES: usize = 256;
/// Longest runbook URL, bytes.
pub(crate) const MAX_RUNBOOK_BYTES: usize = 1024;

/// How much of one call's output was over the caps.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Cut {
    /// Events beyond `max_events`, dropped.
    pub events: usize,
    /// Messages cut to `max_msg_bytes`.
    pub msgs: usize,
    /// Fields beyond `max_fields`, dropped.
    pub fields: usize,
    /// Text values cut to `max_field_bytes`.
    pub values: usize,
    /// Fields dropped for their names: not a field name
    /// ([`is_field_name`]), one the host sets ([`HOST_FIELDS`]), or one
    /// the event already has.
    pub names: usize,
    /// Conditions dropped from their events as invalid ([`condition`]).
    pub conditions: usize,
}

impl Cut {
    /// Whether anything was cut.
    pub(crate) fn any(&self) -> bool {
        *self != Self::default()
    }
}

/// Whether `name` may name a field: 1 to [`MAX_FIELD_NAME_BYTES`] ASCII
/// letters, digits, `_`, `-` or `.`.
pub(crate) fn is_field_name(name: &str) -> bool {
    (1..=MAX_FIELD_NAME_BYTES).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

/// The condition a watcher's event names, if it is valid: a kind of 1 to
/// [`MAX_CONDITION_KIND_BYTES`] lower-case ASCII letters, digits, `-`, `_`
/// or `.`, a key of at most [`MAX_CONDITION_KEY_BYTES`], a runbook (if
/// any) an `http://` or `https://` URL of at most [`MAX_RUNBOOK_BYTES`]
/// without spaces or control characters.
pub(crate) fn condition(c: wit::Condition) -> Option<Condition> {
    let kind_ok = (1..=MAX_CONDITION_KIND_BYTES).contains(&c.kind.len())
        && c.kind.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'_' | b'.')
        });
    let runbook_ok = c.runbook.as_deref().is_none_or(|url| {
        url.len() <= MAX_RUNBOOK_BYTES
            && (url.starts_with("http://") || url.starts_with("https://"))
            && !url.chars().any(|ch| ch.is_whitespace() || ch.is_control())
    });
    if !kind_ok || c.key.len() > MAX_CONDITION_KEY_BYTES || !runbook_ok {
        return None;
    }
    Some(Condition {
        kind: c.kind,
        key: c.key,
        state: match c.state {
            wit::ConditionState::Firing => ConditionState::Firing,
            wit::ConditionState::Resolved => ConditionState::Resolved,
        },
        runbook: c.runbook,
    })
}

/// Keeps at most `max` of `events`, in their order: every event with a
/// condition, then as many of the others as there is room for, first
/// first. Returns how many were dropped.
fn keep_at_most(events: &mut Vec<wit::Event>, max: usize) -> usize {
    if events.len() <= max {
        return 0;
    }
    let with = events.iter().filter(|e| e.condition.is_some()).count();
    let mut room = max.saturating_sub(with);
    let before = events.len();
    events.retain(|e| {
        if e.condition.is_some() {
            return true;
        }
        let keep = room > 0;
        room = room.saturating_sub(1);
        keep
    });
    before - events.len()
}

/// Numbers the calls, so that the envelopes of one can be told from the
/// next one's.
static CALLS: AtomicU64 = AtomicU64::new(0);

/// Applies the caps of `limits` to `events` of one call of the watcher
/// deployed as `target` (its file name), whose manifest names it
/// `watcher`: when the two differ, every event says so in
/// `fields.watcher`.
pub(crate) fn cap(
    target: &str,
    watcher: &str,
    mut events: Vec<wit::Event>,
    limits: &WatcherLimits,
) -> (Vec<Emitted>, Cut) {
    let mut cut = Cut::default();
    let call = CallCaps {
        call: CALLS.fetch_add(1, Ordering::Relaxed),
        max_envelope_bytes: limits.max_envelope_bytes,
        max_call_bytes: limits.max_call_bytes,
    };
    cut.events = keep_at_most(&mut events, limits.max_events);
    let emitted = events
        .into_iter()
        .map(|mut event| {
            let condition = event.condition.take().and_then(|c| {
                let valid = condition(c);
                cut.conditions += usize::from(valid.is_none());
                valid
            });
            if truncate(&mut event.msg, limits.max_msg_bytes) {
                cut.msgs += 1;
            }
            if event.fields.len() > limits.max_fields {
                cut.fields += event.fields.len() - limits.max_fields;
                event.fields.truncate(limits.max_fields);
            }
            let mut fields = Map::new();
            for f in event.fields {
                if !is_field_name(&f.name)
                    || HOST_FIELDS.contains(&f.name.as_str())
                    || fields.contains_key(&f.name)
                {
                    cut.names += 1;
                    continue;
                }
                let value = match f.value {
                    wit::Value::Text(mut s) => {
                        if truncate(&mut s, limits.max_field_bytes) {
                            cut.values += 1;
                        }
                        Value::from(s)
                    }
                    wit::Value::Integer(n) => Value::from(n),
                    wit::Value::Float(x) => Value::from(x),
                    wit::Value::Boolean(b) => Value::from(b),
                };
                fields.insert(f.name, value);
            }
            if watcher != target {
                fields.insert("watcher".to_owned(), Value::from(watcher));
            }
            Emitted {
                level: level_of(event.level),
                target: target.to_owned(),
                msg: event.msg,
                fields,
                call: Some(call),
                condition,
            }
        })
        .collect();
    (emitted, cut)
}

/// Cuts `text` to at most `max` bytes on a char boundary, marking the cut
/// with an ellipsis; returns whether it was cut.
fn truncate(text: &mut String, max: usize) -> bool {
    if text.len() <= max {
        return false;
    }
    let mut end = max.saturating_sub('…'.len_utf8());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
    text.shrink_to_fit();
    if max >= '…'.len_utf8() {
        text.push('…');
    }
    true
}

fn level_of(level: wit::Level) -> Level {
    match level {
        wit::Level::Debug => Level::Debug,
        wit::Level::Info => Level::Info,
        wit::Level::Warn => Level::Warn,
        wit::Level::Error => Level::Error,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(msg: &str, fields: usize) -> wit::Event {
        wit::Event {
            level: wit::Level::Warn,
            msg: msg.to_owned(),
            fields: (0..fields)
                .map(|i| wit::Field {
                    name: format!("f{i}"),
                    value: wit::Value::Text("é".repeat(100)),
                })
                .collect(),
            condition: None,
        }
    }

    fn firing(kind: &str, key: &str, runbook: Option<&str>) -> wit::Condition {
        wit::Condition {
            kind: kind.to_owned(),
            key: key.to_owned(),
            state: wit::ConditionState::Firing,
            runbook: runbook.map(str::to_owned),
        }
    }

    /// Events with a condition survive `max_events`, the others are cut
    /// first; their messages are still cut to `max_msg_bytes`.
    #[test]
    fn events_with_a_condition_are_never_dropped() {
        let limits = WatcherLimits {
            max_events: 2,
            max_msg_bytes: 10,
            ..WatcherLimits::default()
        };
        let mut events: Vec<wit::Event> = (0..5).map(|i| event(&format!("plain {i}"), 0)).collect();
        for at in [1, 3, 4] {
            events[at].condition = Some(firing("over", &format!("k{at}"), None));
        }
        events[4].msg = "x".repeat(50);
        let (out, cut) = cap("w", "w", events, &limits);
        let keys: Vec<&str> = out
            .iter()
            .map(|e| e.condition.as_ref().map_or("-", |c| c.key.as_str()))
            .collect();
        assert_eq!(keys, ["k1", "k3", "k4"]);
        assert_eq!((cut.events, cut.msgs, cut.conditions), (2, 1, 0));
        assert!(out[2].msg.len() <= 10);
        // Room left after them goes to the first of the others.
        let limits = WatcherLimits {
            max_events: 3,
            ..limits
        };
        let mut events: Vec<wit::Event> = (0..4).map(|i| event(&format!("p{i}"), 0)).collect();
        events[3].condition = Some(firing("over", "", None));
        let (out, cut) = cap("w", "w", events, &limits);
        let msgs: Vec<&str> = out.iter().map(|e| e.msg.as_str()).collect();
        assert_eq!(msgs, ["p0", "p1", "p3"]);
        assert_eq!(cut.events, 1);
    }

    /// A condition with a bad kind, key or runbook is dropped from its
    /// event, which stays, and counted.
    #[test]
    fn invalid_conditions_are_dropped_and_counted() {
        let long_kind = "k".repeat(MAX_CONDITION_KIND_BYTES);
        let long_key = "k".repeat(MAX_CONDITION_KEY_BYTES);
        let long_url = format!("https://x/{}", "a".repeat(MAX_RUNBOOK_BYTES - 10));
        let valid = [
            firing("over-max-lag", "jobs/workers", Some("https://runbooks/lag")),
            firing("a.b_c-9", "", None),
            firing(&long_kind, &long_key, Some(&long_url)),
            firing("x", "é any text", Some("http://h/p")),
        ];
        for c in valid {
            let shown = format!("{c:?}");
            let kept = condition(c).unwrap_or_else(|| panic!("refused {shown}"));
            assert_eq!(kept.state, ConditionState::Firing);
        }
        let invalid = [
            firing("", "k", None),
            firing("Over", "k", None),
            firing("over lag", "k", None),
            firing(&format!("{long_kind}k"), "k", None),
            firing("over", &format!("{long_key}k"), None),
            firing("over", "k", Some("ftp://h/p")),
            firing("over", "k", Some("javascript:alert(1)")),
            firing("over", "k", Some("https://h/a b")),
            firing("over", "k", Some(&format!("{long_url}a"))),
        ];
        let events: Vec<wit::Event> = invalid
            .into_iter()
            .map(|c| wit::Event {
                condition: Some(c),
                ..event("m", 0)
            })
            .collect();
        let (out, cut) = cap("w", "w", events, &WatcherLimits::default());
        assert_eq!(out.len(), 9);
        assert!(out.iter().all(|e| e.condition.is_none()));
        assert_eq!(cut.conditions, 9);
        assert!(cut.any());
        let resolved = wit::Condition {
            state: wit::ConditionState::Resolved,
            ..firing("over", "k", None)
        };
        let kept = condition(resolved).unwrap();
        assert_eq!(
            (kept.state, kept.kind.as_str()),
            (ConditionState::Resolved, "over")
        );
    }

    #[test]
    fn output_is_cut_to_the_caps() {
        let limits = WatcherLimits {
            max_events: 2,
            max_msg_bytes: 10,
            max_fields: 3,
            max_field_bytes: 9,
            ..WatcherLimits::default()
        };
        let events = vec![
            event("short", 1),
            event(&"x".repeat(50), 5),
            event("gone", 0),
        ];
        let (out, cut) = cap("w", "w", events, &limits);
        assert_eq!(out.len(), 2);
        assert_eq!(
            cut,
            Cut {
                events: 1,
                msgs: 1,
                fields: 2,
                values: 4,
                names: 0,
                conditions: 0,
            }
        );
        assert!(out[1].msg.len() <= 10 && out[1].msg.ends_with('…'));
        let v = out[1].fields["f0"].as_str().unwrap();
        assert!(v.len() <= 9, "{v}");
        assert_eq!(out[0].msg, "short");
        assert_eq!(out[0].level, Level::Warn);
    }

    #[test]
    fn field_names_are_identifiers_the_host_does_not_set() {
        let long = "n".repeat(MAX_FIELD_NAME_BYTES);
        let names = [
            "ok",
            "a.b-c_9",
            &long, // kept
            "",
            "sp ace",
            "é",
            "new\nline",
            "quo\"te", // not field names
            "instance",
            "labels",
            "watcher", // the host's
            "ok",      // twice
        ];
        let too_long = format!("{long}n");
        let event = wit::Event {
            level: wit::Level::Info,
            msg: "m".to_owned(),
            fields: names
                .iter()
                .copied()
                .chain([too_long.as_str()])
                .map(|name| wit::Field {
                    name: name.to_owned(),
                    value: wit::Value::Integer(1),
                })
                .collect(),
            condition: None,
        };
        let (out, cut) = cap("w", "w", vec![event], &WatcherLimits::default());
        let kept: Vec<&str> = out[0].fields.keys().map(String::as_str).collect();
        assert_eq!(kept.len(), 3, "{kept:?}");
        for name in ["ok", "a.b-c_9", long.as_str()] {
            assert!(kept.contains(&name), "{kept:?}");
        }
        assert_eq!(cut.names, 10);
        assert!(cut.any());
    }

    #[test]
    fn a_renamed_watcher_says_its_manifest_name_and_its_caps_travel() {
        let limits = WatcherLimits {
            max_envelope_bytes: 5000,
            max_call_bytes: 9000,
            ..WatcherLimits::default()
        };
        let (renamed, _) = cap("evil", "slowlog", vec![event("m", 1)], &limits);
        assert_eq!(renamed[0].target, "evil");
        assert_eq!(renamed[0].fields["watcher"], "slowlog");
        let call = renamed[0].call.unwrap();
        assert_eq!((call.max_envelope_bytes, call.max_call_bytes), (5000, 9000));
        let (same, cut) = cap(
            "slowlog",
            "slowlog",
            vec![event("m", 1), event("n", 0)],
            &limits,
        );
        assert_eq!(same[0].target, "slowlog");
        assert!(!same[0].fields.contains_key("watcher"));
        assert!(!cut.any());
        // One call's events share a call number; the next call has its own.
        assert_eq!(same[0].call, same[1].call);
        assert_ne!(same[0].call.unwrap().call, call.call);
    }
}

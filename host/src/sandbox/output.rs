//! What a watcher returns, made safe to publish: events, messages, fields
//! and text values cut to the watcher's caps, field names checked, with
//! counts of what was cut. The caps in bytes of JSON are applied where the
//! events are encoded ([`crate::delivery::envelope::Origin::wrap_all`]),
//! with the caps each event carries from here.

use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::{Map, Value};

use super::limits::WatcherLimits;
use super::wit;
use crate::delivery::envelope::{CallCaps, Emitted, HOST_FIELDS, Level};

/// Longest field name, bytes.
pub(crate) const MAX_FIELD_NAME_BYTES: usize = 64;

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
    if events.len() > limits.max_events {
        cut.events = events.len() - limits.max_events;
        events.truncate(limits.max_events);
    }
    let emitted = events
        .into_iter()
        .map(|mut event| {
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
                condition: None,
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
        }
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

//! What a watcher returns, made safe to publish: events, messages, fields
//! and text values cut to the watcher's caps, with counts of what was cut.

use serde_json::Value;

use super::limits::WatcherLimits;
use super::wit;
use crate::delivery::envelope::{Emitted, Level};

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
}

impl Cut {
    /// Whether anything was cut.
    pub fn any(&self) -> bool {
        *self != Self::default()
    }
}

/// Applies the caps of `limits` to `events` from the watcher `target`.
pub(crate) fn cap(
    target: &str,
    mut events: Vec<wit::Event>,
    limits: &WatcherLimits,
) -> (Vec<Emitted>, Cut) {
    let mut cut = Cut::default();
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
            let fields = event
                .fields
                .into_iter()
                .map(|f| {
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
                    let mut name = f.name;
                    truncate(&mut name, limits.max_field_bytes);
                    (name, value)
                })
                .collect();
            Emitted {
                level: level_of(event.level),
                target: target.to_owned(),
                msg: event.msg,
                fields,
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
        let (out, cut) = cap("w", events, &limits);
        assert_eq!(out.len(), 2);
        assert_eq!(
            cut,
            Cut {
                events: 1,
                msgs: 1,
                fields: 2,
                values: 4
            }
        );
        assert!(out[1].msg.len() <= 10 && out[1].msg.ends_with('…'));
        let v = out[1].fields["f0"].as_str().unwrap();
        assert!(v.len() <= 9, "{v}");
        assert_eq!(out[0].msg, "short");
        assert_eq!(out[0].level, Level::Warn);
    }
}

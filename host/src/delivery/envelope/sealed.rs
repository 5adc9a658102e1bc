//! A final envelope and its wire bytes, written once: [`Sealed`]. Its JSON
//! payload is what PUBLISH sends, the outbox counts, the spool file and
//! `--dry-run` write; the stream entry's `fields` and `condition` are
//! slices of it (the compact JSON of a nested object is the same text on
//! its own), and its other values are the envelope's own strings.

use std::ops::Range;

use serde::Serialize;

use super::Envelope;

/// An envelope whose JSON is written, and never written again: nothing
/// changes it once sealed.
#[derive(Debug, Clone, PartialEq)]
pub struct Sealed {
    envelope: Envelope,
    wire: Wire,
}

impl Sealed {
    /// Seals `envelope` as it is: its JSON is written here, once.
    pub fn new(envelope: Envelope) -> Self {
        let wire = Wire::of(&envelope);
        Self { envelope, wire }
    }

    /// Seals `envelope` shortened to at most `max` bytes of JSON (see
    /// [`Envelope::fit`]): one writing when it fits, the shortening's
    /// measures and a second writing only when it does not.
    pub(crate) fn fitted(envelope: Envelope, max: usize) -> Self {
        let sealed = Self::new(envelope);
        let len = sealed.json().len();
        if len <= max {
            return sealed;
        }
        let mut envelope = sealed.envelope;
        envelope.fit_from(len, max);
        Self::new(envelope)
    }

    /// The envelope.
    pub fn envelope(&self) -> &Envelope {
        &self.envelope
    }

    /// Its JSON payload, byte for byte what [`Envelope::to_json`] gives.
    pub fn json(&self) -> &str {
        &self.wire.json
    }

    /// The envelope, its bytes let go.
    pub fn into_envelope(self) -> Envelope {
        self.envelope
    }

    /// The stream entry: one field per envelope key, in the envelope's
    /// order, scalars as strings, `fields` and (only when present)
    /// `condition` as JSON object strings. Nothing is written anew.
    pub fn stream_fields(&self) -> impl Iterator<Item = (&'static str, &str)> {
        self.wire.stream_fields(&self.envelope)
    }
}

impl From<Envelope> for Sealed {
    /// [`Sealed::new`]: the envelope is taken as final (its caps applied).
    fn from(envelope: Envelope) -> Self {
        Self::new(envelope)
    }
}

/// An envelope's JSON and where in it the values the stream entry takes
/// as they are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Wire {
    json: Box<str>,
    v: Range<usize>,
    pid: Range<usize>,
    fields: Range<usize>,
    condition: Option<Range<usize>>,
}

impl Wire {
    /// Writes `envelope`'s JSON: its keys in declaration order, as its
    /// derived `Serialize` does (a test holds the two to the same bytes),
    /// each value written by serde_json.
    pub(super) fn of(envelope: &Envelope) -> Self {
        super::count_pass();
        let e = envelope;
        let mut out = Vec::with_capacity(256 + e.msg.len());
        out.extend_from_slice(b"{\"v\":");
        let v = put(&mut out, &e.v);
        out.extend_from_slice(b",\"id\":");
        put(&mut out, &e.id);
        out.extend_from_slice(b",\"ts\":");
        put(&mut out, &e.ts);
        out.extend_from_slice(b",\"service\":");
        put(&mut out, &e.service);
        out.extend_from_slice(b",\"host\":");
        put(&mut out, &e.host);
        out.extend_from_slice(b",\"level\":");
        put(&mut out, &e.level);
        out.extend_from_slice(b",\"pid\":");
        let pid = put(&mut out, &e.pid);
        out.extend_from_slice(b",\"target\":");
        put(&mut out, &e.target);
        out.extend_from_slice(b",\"msg\":");
        put(&mut out, &e.msg);
        out.extend_from_slice(b",\"fields\":");
        let fields = put(&mut out, &e.fields);
        let condition = e.condition.as_ref().map(|c| {
            out.extend_from_slice(b",\"condition\":");
            put(&mut out, c)
        });
        out.push(b'}');
        let json = String::from_utf8(out)
            .expect("serde_json writes UTF-8")
            .into_boxed_str();
        Self {
            json,
            v,
            pid,
            fields,
            condition,
        }
    }

    /// [`Sealed::stream_fields`] of `envelope`, whose JSON this is.
    pub(super) fn stream_fields<'a>(
        &'a self,
        envelope: &'a Envelope,
    ) -> impl Iterator<Item = (&'static str, &'a str)> {
        let e = envelope;
        let at = |range: &Range<usize>| &self.json[range.clone()];
        [
            Some(("v", at(&self.v))),
            Some(("id", e.id.as_str())),
            Some(("ts", e.ts.as_str())),
            Some(("service", e.service.as_str())),
            Some(("host", e.host.as_str())),
            Some(("level", e.level.as_str())),
            Some(("pid", at(&self.pid))),
            Some(("target", e.target.as_str())),
            Some(("msg", e.msg.as_str())),
            Some(("fields", at(&self.fields))),
            self.condition.as_ref().map(|c| ("condition", at(c))),
        ]
        .into_iter()
        .flatten()
    }
}

/// Appends `value`'s JSON to `out`; returns where it is.
fn put(out: &mut Vec<u8>, value: &impl Serialize) -> Range<usize> {
    let start = out.len();
    serde_json::to_writer(&mut *out, value).expect("an envelope's values always serialise");
    start..out.len()
}

#[cfg(test)]
mod tests {
    use serde_json::{Map, Value, json};

    use super::*;
    use crate::delivery::envelope::{
        CallCaps, Condition, ConditionState, Emitted, Level, Origin, fields, passes,
        stream_fields_anew,
    };

    fn condition(runbook: Option<&str>) -> Condition {
        Condition {
            kind: "over-\"max\"-lag".to_owned(),
            key: "jobs/\u{1}workers\u{2028}".to_owned(),
            state: ConditionState::Resolved,
            runbook: runbook.map(str::to_owned),
        }
    }

    /// Envelopes of every shape: plain, with a condition with and without
    /// a runbook, and text that JSON escapes (quotes, backslashes, control
    /// characters, U+2028, non-ASCII) in every string, keys included.
    fn shapes() -> Vec<Envelope> {
        let origin = Origin {
            service: "svc \"quoted\"\\".to_owned(),
            host: "höst\u{7f}".to_owned(),
            ..Origin::new("redis", "h:1")
        };
        let hostile = "a\"b\\c\u{0}\u{1f}\n\t\u{8}\u{c}\r é 😀 \u{2028}</script>";
        let mut nested: Map<String, Value> = fields! {
            "n" => 1.5, "big" => u64::MAX, "neg" => -7, "t" => true,
            "nothing" => Value::Null, hostile => hostile,
        };
        nested.insert(
            "deep".to_owned(),
            json!({"list": [1, "x", {"y": [null, 0.1, 1e300]}], "empty": {}}),
        );
        let mut events = vec![
            Emitted::host(Level::Info, "plain", Map::new()),
            Emitted::host(Level::Error, hostile, nested.clone()),
        ];
        for runbook in [None, Some("https://runbooks.example/\"x\"")] {
            let mut event = Emitted::host(Level::Warn, hostile, nested.clone());
            event.target = hostile.to_owned();
            event.condition = Some(condition(runbook));
            events.push(event);
        }
        let labels = json!({"role": hostile});
        origin.wrap_all("h:1", "h:1", Some(&labels), events)
    }

    #[test]
    fn sealed_bytes_are_the_derived_json_and_the_stream_entry_as_before() {
        for envelope in shapes() {
            let sealed = Sealed::new(envelope.clone());
            assert_eq!(sealed.json(), serde_json::to_string(&envelope).unwrap());
            let entry: Vec<(&str, String)> = sealed
                .stream_fields()
                .map(|(k, v)| (k, v.to_owned()))
                .collect();
            assert_eq!(entry, stream_fields_anew(&envelope));
            assert_eq!(envelope.stream_fields(), entry);
            let back: Envelope = serde_json::from_str(sealed.json()).unwrap();
            assert_eq!(back, envelope);
        }
    }

    /// An envelope under its caps is written once, when sealed, and its
    /// length read from those bytes; one over its cap is shortened as
    /// [`Origin::wrap_all`] shortens it, and written once more.
    #[test]
    fn under_its_caps_an_envelope_is_written_once() {
        let origin = Origin::new("redis", "h:1");
        let caps = CallCaps {
            call: 1,
            max_envelope_bytes: 4096,
            max_call_bytes: 1 << 20,
        };
        let event = |i: usize, pad: usize| Emitted {
            condition: None,
            level: Level::Info,
            target: "w".to_owned(),
            msg: format!("m{i}{}", "x".repeat(pad)),
            fields: fields! {"i" => i},
            call: Some(caps),
        };
        let before = passes();
        let sealed = origin.seal_all("h:1", "h:1", None, (0..10).map(|i| event(i, 0)).collect());
        assert_eq!(passes() - before, 10, "one writing each");
        assert_eq!(sealed.len(), 10);
        let before = passes();
        let wrapped = origin.wrap_all("h:1", "h:1", None, (0..10).map(|i| event(i, 0)).collect());
        assert_eq!(passes() - before, 10, "one measure each");
        let before = passes();
        let host = origin.seal("h:1", Emitted::host(Level::Warn, "m", Map::new()));
        assert_eq!(passes() - before, 1);
        assert_eq!(host.envelope().fields["instance"], "h:1");
        // Over its cap: the same cut as an envelope fitted unsealed.
        let big = origin.seal_all("h:1", "h:1", None, vec![event(0, 10_000)]);
        let fitted = origin.wrap_all("h:1", "h:1", None, vec![event(0, 10_000)]);
        assert_eq!(big[0].envelope().msg, fitted[0].msg);
        assert!(big[0].json().len() <= 4096);
        assert_eq!(big[0].json(), big[0].envelope().to_json());
        assert_eq!(wrapped.len(), sealed.len());
    }

    /// Sealed or not, a call's caps keep and cut the same envelopes and
    /// the cut report counts the same.
    #[test]
    fn sealing_cuts_a_call_as_wrapping_does() {
        let origin = Origin::new("redis", "h:1");
        let caps = CallCaps {
            call: 3,
            max_envelope_bytes: 2048,
            max_call_bytes: 16 << 10,
        };
        let events = || -> Vec<Emitted> {
            (0..40)
                .map(|i| Emitted {
                    condition: (i % 7 == 3).then(|| Condition {
                        kind: "k".to_owned(),
                        key: format!("{i}"),
                        state: ConditionState::Firing,
                        runbook: None,
                    }),
                    level: Level::Warn,
                    target: "w".to_owned(),
                    msg: "\u{1}".repeat(100 * i),
                    fields: fields! {"i" => i, "pad" => "é".repeat(30 * i)},
                    call: Some(caps),
                })
                .collect()
        };
        let labels = json!({"role": "master"});
        let shape = |e: &Envelope| {
            (
                e.level,
                e.target.clone(),
                e.msg.clone(),
                e.fields.clone(),
                e.condition.clone(),
            )
        };
        let wrapped: Vec<_> = origin
            .wrap_all("h:1", "h:1", Some(&labels), events())
            .iter()
            .map(shape)
            .collect();
        let sealed = origin.seal_all("h:1", "h:1", Some(&labels), events());
        assert!(sealed.iter().all(|s| s.json() == s.envelope().to_json()));
        let sealed: Vec<_> = sealed.iter().map(|s| shape(s.envelope())).collect();
        assert_eq!(sealed, wrapped);
        assert_eq!(wrapped.last().unwrap().3["key"], "max_call_bytes");
    }
}

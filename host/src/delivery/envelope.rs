//! The wire format: one JSON envelope per event, shared by pub/sub payloads
//! and stream entries (see `host/schema/envelope.schema.json`), and its
//! caps in bytes of JSON: per envelope and per watcher call. A final
//! envelope is sealed ([`Sealed`]): its JSON is written once, and every
//! write after it (outbox, PUBLISH, XADD, spool, stdout) takes those bytes;
//! [`Origin::seal_all`] applies the caps to the bytes it seals, so an
//! envelope under its caps is written once and measured on that writing.

use std::fmt::Write as _;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

mod sealed;

pub(crate) use sealed::Sealed;

/// Envelope schema version, the `v` field.
pub(crate) const SCHEMA_VERSION: u32 = 2;

/// `target` of the host's own envelopes.
pub(crate) const HOST_TARGET: &str = "lookout";

/// Default of the most bytes of JSON of one envelope
/// (`limits.max_envelope_bytes`).
pub(crate) const MAX_ENVELOPE_BYTES: usize = 64 << 10;

/// Field names the host sets in `fields`, which a watcher's event may not
/// carry: the watched `host:port`, the target's labels, and the watcher's
/// own name when it differs from its file name.
pub(crate) const HOST_FIELDS: [&str; 3] = ["instance", "labels", "watcher"];

/// Event severity; picks the channel `<prefix>.<level>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// Diagnostic detail.
    Debug,
    /// Notable, expected.
    Info,
    /// Worth an operator's look.
    Warn,
    /// Something is broken.
    Error,
}

impl Level {
    /// Lower-case name used in channels and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Debug => "debug",
            Self::Info => "info",
            Self::Warn => "warn",
            Self::Error => "error",
        }
    }
}

/// One event as it travels on the bus.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    /// Schema version.
    pub v: u32,
    /// Unique id (UUIDv7, time-ordered): delivery is at-least-once, so
    /// consumers de-duplicate on it.
    pub id: String,
    /// RFC 3339 UTC timestamp with milliseconds.
    pub ts: String,
    /// Service name, `redis` by default.
    pub service: String,
    /// Host name of the machine running Lookout.
    pub host: String,
    /// Severity.
    pub level: Level,
    /// Process id of the Lookout host.
    pub pid: u32,
    /// The watcher's file name (its stem, as deployed), or `lookout` for
    /// the host's own events.
    pub target: String,
    /// Human-readable message.
    pub msg: String,
    /// Structured detail; always holds `instance`.
    pub fields: Map<String, Value>,
    /// The condition this event starts or ends, if any; absent from the
    /// JSON otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub condition: Option<EnvelopeCondition>,
}

/// Whether an event starts or ends a condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ConditionState {
    /// The condition holds from now on.
    Firing,
    /// The condition no longer holds.
    Resolved,
}

impl ConditionState {
    /// Lower-case name used in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Firing => "firing",
            Self::Resolved => "resolved",
        }
    }
}

/// What an event says about a condition: a watcher's (ABI 0.4.0) or the
/// host's own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Condition {
    /// A stable name of what holds, `over-max-lag`.
    pub kind: String,
    /// What it is about within the watcher and target, `jobs/workers`.
    pub key: String,
    /// Starts or ends.
    pub state: ConditionState,
    /// Where an operator reads what to do, an http(s) URL.
    pub runbook: Option<String>,
}

/// The envelope's top-level `condition` object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvelopeCondition {
    /// [`Condition::kind`].
    pub kind: String,
    /// [`Condition::key`].
    pub key: String,
    /// Starts or ends.
    pub state: ConditionState,
    /// [`fingerprint`] of the target, watcher, kind and key: the same for
    /// every envelope of one condition, across restarts and processes.
    pub fingerprint: String,
    /// [`Condition::runbook`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runbook_url: Option<String>,
}

/// The identity of a condition: 16 lower-case hex digits of the MD5 of the
/// target's key (`Target::key`), the watcher (the envelope `target`), the
/// kind and the key, joined by NUL bytes.
pub(crate) fn fingerprint(target_key: &str, watcher: &str, kind: &str, key: &str) -> String {
    use md5::{Digest, Md5};
    let mut hash = Md5::new();
    for (i, part) in [target_key, watcher, kind, key].into_iter().enumerate() {
        if i > 0 {
            hash.update([0u8]);
        }
        hash.update(part.as_bytes());
    }
    hash.finalize()[..8]
        .iter()
        .fold(String::with_capacity(16), |mut hex, b| {
            let _ = write!(hex, "{b:02x}");
            hex
        })
}

/// An event ready to be wrapped in an envelope: a watcher's (cut to its
/// caps) or the host's own.
#[derive(Debug, Clone, PartialEq)]
pub struct Emitted {
    /// Severity.
    pub level: Level,
    /// Envelope `target`.
    pub target: String,
    /// Message.
    pub msg: String,
    /// Fields (without `instance`, which the envelope adds).
    pub fields: Map<String, Value>,
    /// The caps of the watcher call it came from; `None` for the host's
    /// own events, which get the host's `max_envelope_bytes`.
    pub call: Option<CallCaps>,
    /// The condition it starts or ends, if any.
    pub condition: Option<Condition>,
}

/// The byte caps of one watcher call, carried by each of its events to
/// where they are encoded ([`Origin::wrap_all`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallCaps {
    /// Tells one call's events from another's.
    pub call: u64,
    /// Most bytes of one envelope's JSON (`limits.max_envelope_bytes`).
    pub max_envelope_bytes: usize,
    /// Most bytes of JSON of the call's envelopes together
    /// (`limits.max_call_bytes`).
    pub max_call_bytes: usize,
}

impl Emitted {
    /// One of the host's own events (target [`HOST_TARGET`]): the one
    /// constructor for them all.
    pub fn host(level: Level, msg: impl Into<String>, fields: Map<String, Value>) -> Self {
        Self {
            level,
            target: HOST_TARGET.to_owned(),
            msg: msg.into(),
            fields,
            call: None,
            condition: None,
        }
    }
}

/// What every envelope of this process shares.
#[derive(Debug, Clone)]
pub struct Origin {
    /// `service` field.
    pub service: String,
    /// `host` field.
    pub host: String,
    /// `pid` field.
    pub pid: u32,
    /// `fields.instance` of the process's own events that concern no
    /// particular target: the first watched `host:port`.
    pub instance: String,
    /// Most bytes of JSON of one of the host's own envelopes
    /// (`limits.max_envelope_bytes`).
    pub max_envelope_bytes: usize,
}

impl Origin {
    /// The origin for this process watching `instance`.
    pub fn new(service: &str, instance: &str) -> Self {
        let host = hostname::get()
            .ok()
            .and_then(|h| h.into_string().ok())
            .unwrap_or_else(|| "unknown".to_owned());
        Self {
            service: service.to_owned(),
            host,
            pid: std::process::id(),
            instance: instance.to_owned(),
            max_envelope_bytes: MAX_ENVELOPE_BYTES,
        }
    }

    /// Caps the host's own envelopes at `max` bytes of JSON.
    #[must_use]
    pub fn with_max_envelope_bytes(mut self, max: usize) -> Self {
        self.max_envelope_bytes = max;
        self
    }

    /// Wraps `event`, about the Redis at `instance`, in an envelope
    /// stamped now, fitted to its `max_envelope_bytes` (see
    /// [`Envelope::fit`]); a condition on it is the process's own (its
    /// fingerprint names this host).
    pub fn wrap(&self, instance: &str, event: Emitted) -> Envelope {
        self.wrap_keyed::<Envelope>(instance, &self.host, event).0
    }

    /// [`Self::wrap`], sealed: its JSON written once (twice when it had to
    /// be shortened).
    pub fn seal(&self, instance: &str, event: Emitted) -> Sealed {
        self.wrap_keyed::<Sealed>(instance, &self.host, event).0
    }

    /// [`Self::wrap`] of an event about the target whose key
    /// (`Target::key`) is `target_key`, with its bytes of JSON.
    fn wrap_keyed<T: Fitted>(
        &self,
        instance: &str,
        target_key: &str,
        event: Emitted,
    ) -> (T, usize) {
        let max = event
            .call
            .map_or(self.max_envelope_bytes, |c| c.max_envelope_bytes);
        T::fitted(self.stamp_event(instance, target_key, event), max)
    }

    /// Wraps `events`, about the Redis at `instance` (the target whose key
    /// is `target_key`, which conditions' fingerprints name), each with
    /// `labels` in `fields.labels`, fitted to its `max_envelope_bytes`. The
    /// envelopes of one watcher call (consecutive events with the same
    /// [`CallCaps::call`]) hold at most its `max_call_bytes` of JSON
    /// together, a cut report included: once the next one would not fit,
    /// it and the rest of the call are replaced by one warn envelope from
    /// the host naming the watcher, how many events and bytes were cut
    /// (each counted as its JSON fitted to `max_envelope_bytes` would take,
    /// at most) and the key.
    pub fn wrap_all(
        &self,
        instance: &str,
        target_key: &str,
        labels: Option<&Value>,
        events: Vec<Emitted>,
    ) -> Vec<Envelope> {
        self.fit_all(instance, target_key, labels, events)
    }

    /// [`Self::wrap_all`], sealed: each envelope kept is written once
    /// (twice when it had to be shortened), its bytes counted from that
    /// writing.
    pub fn seal_all(
        &self,
        instance: &str,
        target_key: &str,
        labels: Option<&Value>,
        events: Vec<Emitted>,
    ) -> Vec<Sealed> {
        self.fit_all(instance, target_key, labels, events)
    }

    /// [`Self::wrap_all`] into envelopes of kind `T`.
    fn fit_all<T: Fitted>(
        &self,
        instance: &str,
        target_key: &str,
        labels: Option<&Value>,
        events: Vec<Emitted>,
    ) -> Vec<T> {
        let mut out = Vec::with_capacity(events.len());
        let mut tally: Option<Tally> = None;
        for mut event in events {
            let call = event.call;
            if let Some(t) = tally.take_if(|t| Some(t.caps) != call) {
                out.extend(self.close(instance, labels, &t));
            }
            if let Some(labels) = labels {
                event.fields.insert("labels".to_owned(), labels.clone());
            }
            let Some(caps) = call else {
                out.push(self.wrap_keyed(instance, target_key, event).0);
                continue;
            };
            let t = tally.get_or_insert_with(|| Tally {
                caps,
                watcher: event.target.clone(),
                kept: Vec::new(),
                used: 0,
                events: 0,
                bytes: 0,
            });
            let envelope = self.stamp_event(instance, target_key, event);
            if envelope.condition.is_some() {
                // A condition change is never cut: kept, its bytes counted,
                // the others kept before it cut to make room.
                let (envelope, len) = T::fitted(envelope, caps.max_envelope_bytes);
                t.used += len;
                if t.events > 0 || t.used > caps.max_call_bytes {
                    self.make_room(instance, labels, t, &mut out);
                }
                out.push(envelope);
                continue;
            }
            if t.events > 0 {
                // The rest of a cut call: counted as the bytes it would
                // have taken, without the work of shortening it.
                t.events += 1;
                t.bytes += envelope.json_len().min(caps.max_envelope_bytes);
                continue;
            }
            let (envelope, len) = T::fitted(envelope, caps.max_envelope_bytes);
            if t.used + len <= caps.max_call_bytes {
                t.used += len;
                t.kept.push((out.len(), len));
                out.push(envelope);
                continue;
            }
            // The first cut.
            t.events += 1;
            t.bytes += len;
            self.make_room(instance, labels, t, &mut out);
        }
        if let Some(t) = tally {
            out.extend(self.close(instance, labels, &t));
        }
        out
    }

    /// Cuts the envelopes of a cut call kept so far, last first, from
    /// `out` until the call's bytes leave room for its report, whatever
    /// its counts will be.
    fn make_room<T>(
        &self,
        instance: &str,
        labels: Option<&Value>,
        t: &mut Tally,
        out: &mut Vec<T>,
    ) {
        let room = self
            .cut_report::<Envelope>(
                instance,
                labels,
                &Tally {
                    events: usize::MAX,
                    bytes: usize::MAX,
                    ..t.clone()
                },
            )
            .map_or(0, |(_, len)| len);
        // Kept in output order: the last one is the furthest in `out`, so
        // removing it leaves the others where they are.
        while t.used + room > t.caps.max_call_bytes
            && let Some((at, last)) = t.kept.pop()
        {
            out.remove(at);
            t.used -= last;
            t.events += 1;
            t.bytes += last;
        }
    }

    /// The end of a call's envelopes: its cut report, logged, if any were
    /// cut.
    fn close<T: Fitted>(&self, instance: &str, labels: Option<&Value>, t: &Tally) -> Option<T> {
        let (report, _) = self.cut_report(instance, labels, t)?;
        tracing::warn!(
            watcher = %t.watcher,
            events = t.events,
            bytes = t.bytes,
            "watcher call over max_call_bytes ({}); the rest of its envelopes were cut",
            t.caps.max_call_bytes
        );
        Some(report)
    }

    /// The host's report of the envelopes cut from one call, if any were,
    /// with its bytes of JSON.
    fn cut_report<T: Fitted>(
        &self,
        instance: &str,
        labels: Option<&Value>,
        t: &Tally,
    ) -> Option<(T, usize)> {
        if t.events == 0 {
            return None;
        }
        let (name, max) = (&t.watcher, t.caps.max_call_bytes);
        let mut fields = fields! {
            "watcher" => name.clone(),
            "events_cut" => t.events,
            "bytes_cut" => t.bytes,
            "key" => "max_call_bytes",
            "max_call_bytes" => max,
        };
        if let Some(labels) = labels {
            fields.insert("labels".to_owned(), labels.clone());
        }
        let msg = format!(
            "watcher {name} output over max_call_bytes ({max} bytes of JSON per call): the last {} \
             events of the call ({} bytes) were cut; raise limits.max_call_bytes or \
             limits.watchers.{name}.max_call_bytes to keep them",
            t.events, t.bytes
        );
        let event = Emitted::host(Level::Warn, msg, fields);
        Some(self.wrap_keyed(instance, &self.host, event))
    }

    /// Wraps an event about the process's first instance in an envelope
    /// stamped now.
    pub fn envelope(
        &self,
        level: Level,
        target: &str,
        msg: impl Into<String>,
        fields: Map<String, Value>,
    ) -> Envelope {
        let mut envelope = self.stamp(&self.instance, level, target, msg, fields);
        envelope.fit(self.max_envelope_bytes);
        envelope
    }

    /// [`Self::stamp`] of a watcher's or the host's event, with its
    /// condition's fingerprint taken over `target_key`.
    fn stamp_event(&self, instance: &str, target_key: &str, event: Emitted) -> Envelope {
        let condition = event.condition.map(|c| EnvelopeCondition {
            fingerprint: fingerprint(target_key, &event.target, &c.kind, &c.key),
            kind: c.kind,
            key: c.key,
            state: c.state,
            runbook_url: c.runbook,
        });
        let mut envelope = self.stamp(
            instance,
            event.level,
            &event.target,
            event.msg,
            event.fields,
        );
        envelope.condition = condition;
        envelope
    }

    fn stamp(
        &self,
        instance: &str,
        level: Level,
        target: &str,
        msg: impl Into<String>,
        mut fields: Map<String, Value>,
    ) -> Envelope {
        fields.insert("instance".to_owned(), Value::from(instance));
        Envelope {
            v: SCHEMA_VERSION,
            id: uuid::Uuid::now_v7().to_string(),
            ts: humantime::format_rfc3339_millis(SystemTime::now()).to_string(),
            service: self.service.clone(),
            host: self.host.clone(),
            level,
            pid: self.pid,
            target: target.to_owned(),
            msg: msg.into(),
            fields,
            condition: None,
        }
    }
}

/// What the caps make of an envelope: the envelope shortened to its cap
/// ([`Envelope`]) or that, sealed ([`Sealed`]).
trait Fitted: Sized {
    /// `envelope` shortened to at most `max` bytes of JSON, and its bytes
    /// of JSON after.
    fn fitted(envelope: Envelope, max: usize) -> (Self, usize);
}

impl Fitted for Envelope {
    /// Measured without being written.
    fn fitted(mut envelope: Envelope, max: usize) -> (Self, usize) {
        let len = envelope.fit_to(max);
        (envelope, len)
    }
}

impl Fitted for Sealed {
    /// Written, and measured on what was written.
    fn fitted(envelope: Envelope, max: usize) -> (Self, usize) {
        let sealed = Sealed::fitted(envelope, max);
        let len = sealed.json().len();
        (sealed, len)
    }
}

/// What [`Origin::wrap_all`] counts of one call.
#[derive(Debug, Clone)]
struct Tally {
    caps: CallCaps,
    /// The watcher's file name.
    watcher: String,
    /// Where in the output each envelope of the call kept so far is, and
    /// its bytes; the envelopes with a condition, never cut, are not here.
    kept: Vec<(usize, usize)>,
    /// Bytes kept.
    used: usize,
    /// Events cut.
    events: usize,
    /// Bytes of JSON cut.
    bytes: usize,
}

/// Counts the bytes written to it.
struct Counter(usize);

impl std::io::Write for Counter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len();
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

// Counts the envelopes this thread wrote or measured whole as JSON, for
// the tests that prove an envelope is written once.
#[cfg(test)]
thread_local! {
    static PASSES: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// One more envelope written or measured whole (counted in tests only).
fn count_pass() {
    #[cfg(test)]
    PASSES.with(|p| p.set(p.get() + 1));
}

/// How many envelopes this thread wrote or measured whole so far.
#[cfg(test)]
pub(crate) fn passes() -> usize {
    PASSES.with(std::cell::Cell::get)
}

/// The stream entry as it was built before envelopes were sealed: each
/// scalar as its string, `fields` and `condition` serialised on their own;
/// what the sealed entry is held to.
#[cfg(test)]
pub(crate) fn stream_fields_anew(e: &Envelope) -> Vec<(&'static str, String)> {
    let mut out = vec![
        ("v", e.v.to_string()),
        ("id", e.id.clone()),
        ("ts", e.ts.clone()),
        ("service", e.service.clone()),
        ("host", e.host.clone()),
        ("level", e.level.as_str().to_owned()),
        ("pid", e.pid.to_string()),
        ("target", e.target.clone()),
        ("msg", e.msg.clone()),
        (
            "fields",
            serde_json::to_string(&e.fields).expect("a map serialises"),
        ),
    ];
    if let Some(c) = &e.condition {
        let condition = serde_json::to_string(c).expect("a condition serialises");
        out.push(("condition", condition));
    }
    out
}

/// Bytes of `value`'s JSON.
fn json_len(value: &impl Serialize) -> usize {
    let mut counter = Counter(0);
    serde_json::to_writer(&mut counter, value).expect("JSON always serialises");
    counter.0
}

/// Bytes of `c` in a JSON string: a control character takes six
/// (`\u0001`), a quote or backslash two.
fn char_json_len(c: char) -> usize {
    match c {
        '"' | '\\' | '\n' | '\r' | '\t' | '\u{8}' | '\u{c}' => 2,
        '\0'..='\u{1f}' => 6,
        _ => c.len_utf8(),
    }
}

/// Bytes of `text` as a JSON string, quotes included.
fn text_json_len(text: &str) -> usize {
    2 + text.chars().map(char_json_len).sum::<usize>()
}

/// The shortest a shortened text gets, as JSON: its quotes and the marker
/// `... (N bytes cut)` with the longest N.
const SHORTEST: usize = 2 + "... ( bytes cut)".len() + 20;

/// Cuts `text` so that its JSON takes at most `budget` bytes (at least
/// [`SHORTEST`]), marking the cut with `... (N bytes cut)`.
fn shorten(text: &mut String, budget: usize) {
    let digits = text.len().to_string().len();
    let room = budget.saturating_sub(2 + "... ( bytes cut)".len() + digits);
    let (mut used, mut end) = (0, 0);
    for (i, c) in text.char_indices() {
        used += char_json_len(c);
        if used > room {
            break;
        }
        end = i + c.len_utf8();
    }
    let cut = text.len() - end;
    text.truncate(end);
    let _ = write!(text, "... ({cut} bytes cut)");
}

/// The largest JSON length `level` (at least [`SHORTEST`]) such that
/// cutting every text longer than it to it saves at least `excess` bytes;
/// [`SHORTEST`] when even that does not.
fn level_for(lens: &[usize], excess: usize) -> usize {
    let saved = |level: usize| -> usize { lens.iter().map(|&n| n.saturating_sub(level)).sum() };
    let (mut lo, mut hi) = (SHORTEST, lens.iter().copied().max().unwrap_or(0));
    if hi <= lo || saved(lo) < excess {
        return lo;
    }
    while lo < hi {
        let mid = lo + (hi - lo).div_ceil(2);
        if saved(mid) >= excess {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    lo
}

/// Collects the strings in `value`, nested ones included.
fn texts_in<'a>(value: &'a mut Value, out: &mut Vec<&'a mut String>) {
    match value {
        Value::String(s) => out.push(s),
        Value::Array(items) => items.iter_mut().for_each(|v| texts_in(v, out)),
        Value::Object(map) => map.values_mut().for_each(|v| texts_in(v, out)),
        _ => {}
    }
}

/// Fields an envelope always keeps whole: they say what it is about.
fn kept_whole(key: &str) -> bool {
    key == "instance" || key == "watcher"
}

impl Envelope {
    /// The JSON payload published on the channel.
    pub fn to_json(&self) -> String {
        count_pass();
        serde_json::to_string(self).expect("an envelope always serialises")
    }

    /// Bytes of [`Self::to_json`], measured without writing them.
    pub fn json_len(&self) -> usize {
        count_pass();
        json_len(self)
    }

    /// Shortens the envelope until its JSON takes at most `max` bytes, and
    /// returns how many bytes that cut. The message and text values
    /// (labels included) longer than a common length are cut to it, each
    /// marked `... (N bytes cut)`, the longest first; only if that is not
    /// enough are whole fields dropped, the largest first, which the
    /// message then says (`(N fields cut)`). `instance`, `watcher` and the
    /// fixed keys are never cut, so an envelope whose fixed keys alone
    /// exceed `max` stays over it.
    pub fn fit(&mut self, max: usize) -> usize {
        let before = self.json_len();
        before.saturating_sub(self.fit_from(before, max))
    }

    /// [`Self::fit`], returning the bytes of its JSON after.
    fn fit_to(&mut self, max: usize) -> usize {
        let before = self.json_len();
        self.fit_from(before, max)
    }

    /// [`Self::fit`] of an envelope whose JSON takes `before` bytes;
    /// returns the bytes it takes after.
    fn fit_from(&mut self, before: usize, max: usize) -> usize {
        if before <= max {
            return before;
        }
        {
            let mut texts: Vec<&mut String> = vec![&mut self.msg];
            for (key, value) in &mut self.fields {
                if !kept_whole(key) {
                    texts_in(value, &mut texts);
                }
            }
            let lens: Vec<usize> = texts.iter().map(|t| text_json_len(t)).collect();
            let level = level_for(&lens, before - max);
            for (text, len) in texts.into_iter().zip(lens) {
                if len > level {
                    shorten(text, level);
                }
            }
        }
        let mut now = self.json_len();
        let msg = self.msg.clone();
        let mut dropped = 0usize;
        while now > max {
            let largest = self
                .fields
                .iter()
                .filter(|(key, _)| !kept_whole(key))
                .max_by_key(|(key, value)| key.len() + json_len(value))
                .map(|(key, _)| key.clone());
            let Some(key) = largest else { break };
            self.fields.remove(&key);
            dropped += 1;
            self.msg = format!("{msg} ({dropped} fields cut)");
            now = self.json_len();
        }
        now
    }

    /// Stream entry fields: one per envelope key, scalars as strings,
    /// `fields` and (only when present) `condition` as JSON object
    /// strings; what [`Sealed::stream_fields`] borrows from a sealed one.
    pub fn stream_fields(&self) -> Vec<(&'static str, String)> {
        sealed::Wire::of(self)
            .stream_fields(self)
            .map(|(key, value)| (key, value.to_owned()))
            .collect()
    }
}

/// Builds a `fields` map from pairs.
macro_rules! fields {
    ($($key:expr => $value:expr),* $(,)?) => {{
        #[allow(unused_mut)]
        let mut map = ::serde_json::Map::new();
        $( map.insert(($key).to_string(), ::serde_json::Value::from($value)); )*
        map
    }};
}
pub(crate) use fields;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_has_the_wire_shape() {
        let origin = Origin::new("redis", "127.0.0.1:6379");
        let env = origin.envelope(Level::Warn, "slowlog", "slow", fields! {"id" => 3});
        let json: Value = serde_json::from_str(&env.to_json()).unwrap();
        let keys: Vec<_> = json.as_object().unwrap().keys().cloned().collect();
        for key in [
            "v", "id", "ts", "service", "host", "level", "pid", "target", "msg", "fields",
        ] {
            assert!(keys.contains(&key.to_owned()), "missing {key}");
        }
        assert_eq!(json["level"], "warn");
        assert_eq!(json["fields"]["instance"], "127.0.0.1:6379");
        assert_eq!(json["fields"]["id"], 3);
        let ts = json["ts"].as_str().unwrap();
        assert!(ts.ends_with('Z') && ts.len() == 24, "{ts}");
    }

    #[test]
    fn stream_fields_are_strings() {
        let origin = Origin::new("svc", "h:1");
        let env = origin.envelope(Level::Info, "x", "m", fields! {"n" => 1.5});
        let map: std::collections::HashMap<_, _> = env.stream_fields().into_iter().collect();
        assert_eq!(map["level"], "info");
        assert_eq!(map["v"], "2");
        assert_eq!(map["id"].len(), 36);
        let fields: Value = serde_json::from_str(&map["fields"]).unwrap();
        assert_eq!(fields["n"], 1.5);
    }

    #[test]
    fn a_condition_gets_its_fingerprint_and_a_stream_field() {
        let origin = Origin::new("redis", "h:1");
        let mut event = Emitted::host(Level::Error, "down", fields! {});
        event.condition = Some(Condition {
            kind: "target-unreachable".to_owned(),
            key: "cache".to_owned(),
            state: ConditionState::Firing,
            runbook: Some("https://runbooks.example/down".to_owned()),
        });
        let out = origin.wrap_all("h:1", "cache", None, vec![event]);
        let c = out[0].condition.as_ref().unwrap();
        assert_eq!(
            c.fingerprint,
            fingerprint("cache", HOST_TARGET, "target-unreachable", "cache")
        );
        let json: Value = serde_json::from_str(&out[0].to_json()).unwrap();
        assert_eq!(json["condition"]["state"], "firing");
        assert_eq!(
            json["condition"]["runbook_url"],
            "https://runbooks.example/down"
        );
        let map: std::collections::HashMap<_, _> = out[0].stream_fields().into_iter().collect();
        let back: EnvelopeCondition = serde_json::from_str(&map["condition"]).unwrap();
        assert_eq!(&back, c);
        let plain = origin.envelope(Level::Info, "x", "m", fields! {});
        assert!(plain.stream_fields().iter().all(|(k, _)| *k != "condition"));
        assert!(!plain.to_json().contains("condition"));
    }

    #[test]
    fn schema_file_lists_every_key() {
        let schema: Value =
            serde_json::from_str(include_str!("../../schema/envelope.schema.json")).unwrap();
        let required: Vec<&str> = schema["required"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert_eq!(
            required,
            [
                "v", "id", "ts", "service", "host", "level", "pid", "target", "msg", "fields"
            ]
        );
    }

    /// A watcher's event at every default cap, in control characters: a
    /// 4 KiB message and 32 fields with 64-byte names and 1 KiB values.
    fn at_every_cap(call: u64, max_envelope: usize, max_call: usize) -> Emitted {
        let ctl = |n: usize| "\u{1}".repeat(n);
        Emitted {
            condition: None,
            level: Level::Warn,
            target: "encoder".to_owned(),
            msg: ctl(4096),
            fields: (0..32)
                .map(|i| (format!("{i:064}"), Value::from(ctl(1024))))
                .collect(),
            call: Some(CallCaps {
                call,
                max_envelope_bytes: max_envelope,
                max_call_bytes: max_call,
            }),
        }
    }

    #[test]
    fn an_envelope_is_shortened_to_its_cap_in_bytes_of_json() {
        let origin = Origin::new("redis", "127.0.0.1:6379");
        let raw = origin.stamp(
            "127.0.0.1:6379",
            Level::Warn,
            "encoder",
            "\u{1}".repeat(4096),
            at_every_cap(0, 0, 0).fields,
        );
        assert!(raw.json_len() > 200 << 10, "{}", raw.json_len());
        let env = origin.wrap("127.0.0.1:6379", at_every_cap(0, 64 << 10, 1 << 20));
        let json = env.to_json();
        assert!(json.len() <= 64 << 10, "{}", json.len());
        // Most of the room is used: cut, not dropped.
        assert!(json.len() > 60 << 10, "{}", json.len());
        assert_eq!(env.fields.len(), 33, "every field kept");
        assert!(
            env.msg.ends_with(" bytes cut)"),
            "{}",
            &env.msg[env.msg.len() - 30..]
        );
        for (key, value) in &env.fields {
            let text = value.as_str().unwrap();
            if key != "instance" {
                assert!(text.ends_with(" bytes cut)"), "{key}");
            }
        }
        assert_eq!(env.fields["instance"], "127.0.0.1:6379");
        let back: Envelope = serde_json::from_str(&json).unwrap();
        assert_eq!(back, env);
    }

    #[test]
    fn shortening_keeps_short_texts_and_counts_what_it_cut() {
        let mut env = Origin::new("svc", "h:1").stamp(
            "h:1",
            Level::Info,
            "w",
            "short message",
            fields! {"big" => "é\"\\".repeat(3000), "small" => "keep me", "n" => 7},
        );
        let before = env.json_len();
        let cut = env.fit(4096);
        assert_eq!(cut, before - env.json_len());
        assert!(env.json_len() <= 4096);
        assert_eq!(env.msg, "short message");
        assert_eq!(env.fields["small"], "keep me");
        assert_eq!(env.fields["n"], 7);
        let big = env.fields["big"].as_str().unwrap();
        // Cut on a character boundary, with the raw bytes it lost.
        assert!(big.starts_with("é\"\\é"), "{big:.20}");
        let lost: usize = big
            .rsplit_once("... (")
            .and_then(|(_, n)| n.strip_suffix(" bytes cut)"))
            .and_then(|n| n.parse().ok())
            .unwrap();
        assert_eq!(
            lost + big.len() - format!("... ({lost} bytes cut)").len(),
            4 * 3000
        );
        assert_eq!(env.fit(4096), 0, "fits now");
    }

    #[test]
    fn fields_are_dropped_only_when_shortening_is_not_enough() {
        // 200 numbers under 64-byte names: nothing to shorten.
        let fields: Map<String, Value> = (0..200)
            .map(|i| (format!("{i:064}"), Value::from(i)))
            .collect();
        let mut env = Origin::new("svc", "h:1").stamp("h:1", Level::Info, "w", "m", fields);
        env.fit(4096);
        assert!(env.json_len() <= 4096, "{}", env.json_len());
        assert!(
            env.msg.starts_with("m (") && env.msg.ends_with(" fields cut)"),
            "{}",
            env.msg
        );
        assert_eq!(env.fields["instance"], "h:1");
    }

    #[test]
    fn host_envelopes_obey_the_cap_too() {
        let origin = Origin::new("redis", "h:1").with_max_envelope_bytes(4096);
        let env = origin.envelope(
            Level::Error,
            HOST_TARGET,
            "\u{0}".repeat(10_000),
            fields! {"reason" => "\u{7}".repeat(10_000)},
        );
        assert!(env.json_len() <= 4096);
        let env = origin.wrap(
            "h:2",
            Emitted::host(Level::Warn, "x".repeat(9000), Map::new()),
        );
        assert!(env.json_len() <= 4096);
        assert_eq!(env.fields["instance"], "h:2");
    }

    #[test]
    fn one_call_is_cut_at_its_cap_in_bytes_and_says_so() {
        let origin = Origin::new("redis", "h:1");
        let labels = serde_json::json!({"role": "master"});
        let (max_env, max_call) = (64 << 10, 1 << 20);
        let mut events: Vec<Emitted> = (0..100)
            .map(|_| at_every_cap(7, max_env, max_call))
            .collect();
        events.push(Emitted::host(Level::Warn, "after", Map::new()));
        // The next call has a budget of its own.
        events.extend((0..2).map(|_| at_every_cap(8, max_env, max_call)));
        let out = origin.wrap_all("h:1", "h:1", Some(&labels), events);
        let first: Vec<&Envelope> = out.iter().take_while(|e| e.target == "encoder").collect();
        let report = &out[first.len()];
        let call_bytes: usize =
            first.iter().map(|e| e.json_len()).sum::<usize>() + report.json_len();
        assert!(call_bytes <= max_call, "{call_bytes}");
        assert!(
            call_bytes > max_call - max_env - 1024,
            "{call_bytes}: the room is used"
        );
        assert!(
            first
                .iter()
                .all(|e| e.json_len() <= max_env && e.fields["labels"] == labels)
        );
        assert_eq!(report.target, HOST_TARGET);
        assert_eq!(report.level, Level::Warn);
        assert_eq!(report.fields["watcher"], "encoder");
        assert_eq!(report.fields["key"], "max_call_bytes");
        assert_eq!(report.fields["labels"], labels);
        let cut = report.fields["events_cut"].as_u64().unwrap();
        assert_eq!(cut as usize + first.len(), 100);
        assert!(report.fields["bytes_cut"].as_u64().unwrap() > cut * 60_000);
        assert!(report.msg.contains("max_call_bytes"), "{}", report.msg);
        let rest: Vec<&str> = out[first.len() + 1..]
            .iter()
            .map(|e| e.target.as_str())
            .collect();
        assert_eq!(rest, [HOST_TARGET, "encoder", "encoder"]);
        assert_eq!(out[first.len() + 1].msg, "after");
    }

    #[test]
    fn fingerprints_are_stable_and_tell_parts_apart() {
        let f = fingerprint("orders", "stream-lag", "over-max-lag", "jobs/workers");
        assert_eq!(f.len(), 16);
        assert!(
            f.bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        );
        assert_eq!(
            f,
            fingerprint("orders", "stream-lag", "over-max-lag", "jobs/workers")
        );
        assert_ne!(
            f,
            fingerprint("orders", "stream-lag", "over-max-lagj", "obs/workers")
        );
        let env = Origin::new("redis", "h:1").envelope(Level::Warn, "w", "m", fields! {});
        assert!(!env.to_json().contains("condition"), "absent unless set");
    }

    /// Envelopes with a condition are never what `max_call_bytes` cuts:
    /// the others before and after them are, and the report says so.
    #[test]
    fn a_condition_is_never_cut_from_a_call() {
        let origin = Origin::new("redis", "h:1");
        let (max_env, max_call) = (64 << 10, 256 << 10);
        let mut events: Vec<Emitted> = (0..20)
            .map(|_| at_every_cap(9, max_env, max_call))
            .collect();
        for (i, at) in [2, 8, 15].into_iter().enumerate() {
            events[at].condition = Some(Condition {
                kind: "over".to_owned(),
                key: format!("k{i}"),
                state: ConditionState::Firing,
                runbook: None,
            });
        }
        let out = origin.wrap_all("h:1", "h:1", None, events);
        let keys: Vec<&str> = out
            .iter()
            .filter_map(|e| e.condition.as_ref().map(|c| c.key.as_str()))
            .collect();
        assert_eq!(keys, ["k0", "k1", "k2"]);
        let report = out.last().unwrap();
        assert_eq!(report.target, HOST_TARGET);
        let plain = out.iter().filter(|e| e.target == "encoder").count();
        let cut = report.fields["events_cut"].as_u64().unwrap() as usize;
        assert_eq!(plain + cut, 20);
        assert!(out.iter().all(|e| e.json_len() <= max_env));
        let bytes: usize = out.iter().map(Envelope::json_len).sum();
        assert!(bytes <= max_call, "{bytes}");
    }

    #[test]
    fn a_call_within_its_cap_is_untouched() {
        let origin = Origin::new("redis", "h:1");
        let events: Vec<Emitted> = (0..3)
            .map(|i| Emitted {
                condition: None,
                level: Level::Info,
                target: "w".to_owned(),
                msg: format!("m{i}"),
                fields: fields! {"i" => i},
                call: Some(CallCaps {
                    call: 1,
                    max_envelope_bytes: 4096,
                    max_call_bytes: 4096,
                }),
            })
            .collect();
        let out = origin.wrap_all("h:1", "h:1", None, events);
        let msgs: Vec<&str> = out.iter().map(|e| e.msg.as_str()).collect();
        assert_eq!(msgs, ["m0", "m1", "m2"]);
        assert!(!out[0].fields.contains_key("labels"));
    }
}

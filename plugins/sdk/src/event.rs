//! Conveniences on the generated types: `Value` conversions and accessors,
//! an `Event` builder (conditions included), and a `Manifest` builder with constructors for its
//! parts.

use crate::{
    Cadence, Condition, ConditionState, ConfigKey, Event, Field, Level, Manifest, Needs, Probe,
    Value, ValueKind,
};

impl From<i64> for Value {
    fn from(v: i64) -> Self {
        Value::Integer(v)
    }
}

impl From<i32> for Value {
    fn from(v: i32) -> Self {
        Value::Integer(v.into())
    }
}

impl From<u32> for Value {
    fn from(v: u32) -> Self {
        Value::Integer(v.into())
    }
}

/// Saturates at `i64::MAX`: WIT integers are signed 64-bit.
impl From<u64> for Value {
    fn from(v: u64) -> Self {
        Value::Integer(i64::try_from(v).unwrap_or(i64::MAX))
    }
}

/// Saturates at `i64::MAX`: WIT integers are signed 64-bit.
impl From<usize> for Value {
    fn from(v: usize) -> Self {
        Value::Integer(i64::try_from(v).unwrap_or(i64::MAX))
    }
}

impl From<f64> for Value {
    fn from(v: f64) -> Self {
        Value::Float(v)
    }
}

impl From<bool> for Value {
    fn from(v: bool) -> Self {
        Value::Boolean(v)
    }
}

impl From<&str> for Value {
    fn from(v: &str) -> Self {
        Value::Text(v.to_string())
    }
}

impl From<String> for Value {
    fn from(v: String) -> Self {
        Value::Text(v)
    }
}

impl From<&String> for Value {
    fn from(v: &String) -> Self {
        Value::Text(v.clone())
    }
}

impl Value {
    /// The kind of this value.
    pub fn kind(&self) -> ValueKind {
        match self {
            Value::Text(_) => ValueKind::Text,
            Value::Integer(_) => ValueKind::Integer,
            Value::Float(_) => ValueKind::Float,
            Value::Boolean(_) => ValueKind::Boolean,
        }
    }

    /// The text, if this is a `text` value.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Text(s) => Some(s),
            _ => None,
        }
    }

    /// The integer, if this is an `integer` value.
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Value::Integer(i) => Some(*i),
            _ => None,
        }
    }

    /// The number, if this is a `float` value or an `integer` (widened).
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Float(f) => Some(*f),
            Value::Integer(i) => Some(*i as f64),
            _ => None,
        }
    }

    /// The flag, if this is a `boolean` value.
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Boolean(b) => Some(*b),
            _ => None,
        }
    }
}

impl ValueKind {
    /// The kind with an article, for messages: "an integer", "a float".
    pub fn describe(self) -> &'static str {
        match self {
            ValueKind::Text => "a text",
            ValueKind::Integer => "an integer",
            ValueKind::Float => "a float",
            ValueKind::Boolean => "a boolean",
        }
    }
}

impl Level {
    /// The level's name as the host spells it: `debug`, `info`, `warn`,
    /// `error`.
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Debug => "debug",
            Level::Info => "info",
            Level::Warn => "warn",
            Level::Error => "error",
        }
    }
}

impl Field {
    /// A field named `name` holding `value`.
    pub fn new(name: &str, value: impl Into<Value>) -> Self {
        Field {
            name: name.to_string(),
            value: value.into(),
        }
    }
}

impl Event {
    /// An event with no fields yet, about no condition.
    pub fn new(level: Level, msg: impl Into<String>) -> Self {
        Event {
            level,
            msg: msg.into(),
            fields: Vec::new(),
            condition: None,
        }
    }

    /// Makes the event start the condition `kind` (a stable name, 1 to 64
    /// bytes of `[a-z0-9-_.]`, `over-max-lag`) about `key` (what it is
    /// about within the watcher and target, at most 256 bytes,
    /// `jobs/workers`; empty when there is one thing). Sent again while the
    /// condition holds, it only updates the message. The host drops a
    /// condition with a bad kind, key or runbook from the event and counts
    /// it in its cut report; it never drops an event with a condition for
    /// the output caps.
    ///
    /// ```
    /// use lookout_watcher::{ConditionState, Event, Level};
    ///
    /// let e = Event::new(Level::Warn, "jobs/workers is 600 entries behind")
    ///     .firing("over-max-lag", "jobs/workers")
    ///     .runbook("https://runbooks.example/stream-lag");
    /// let c = e.condition.as_ref().unwrap();
    /// assert_eq!((c.kind.as_str(), c.state), ("over-max-lag", ConditionState::Firing));
    /// ```
    #[must_use]
    pub fn firing(self, kind: &str, key: &str) -> Self {
        self.with_condition(kind, key, ConditionState::Firing)
    }

    /// Makes the event end the condition `kind` about `key` (see
    /// [`firing`](Self::firing)).
    #[must_use]
    pub fn resolved(self, kind: &str, key: &str) -> Self {
        self.with_condition(kind, key, ConditionState::Resolved)
    }

    /// Puts `url` (an `http://` or `https://` URL of at most 1024 bytes:
    /// where an operator reads what to do) on the event's condition. Call
    /// it after [`firing`](Self::firing) or [`resolved`](Self::resolved);
    /// on an event about no condition it does nothing.
    #[must_use]
    pub fn runbook(mut self, url: &str) -> Self {
        if let Some(c) = &mut self.condition {
            c.runbook = Some(url.to_string());
        }
        self
    }

    fn with_condition(mut self, kind: &str, key: &str, state: ConditionState) -> Self {
        let runbook = self.condition.take().and_then(|c| c.runbook);
        self.condition = Some(Condition {
            kind: kind.to_string(),
            key: key.to_string(),
            state,
            runbook,
        });
        self
    }

    /// Appends a field; fields keep the order they were added in.
    #[must_use]
    pub fn field(mut self, name: &str, value: impl Into<Value>) -> Self {
        self.fields.push(Field::new(name, value));
        self
    }

    /// The value of the first field named `name`.
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.fields
            .iter()
            .find(|f| f.name == name)
            .map(|f| &f.value)
    }
}

impl ConfigKey {
    /// A config key whose kind is that of its `default`.
    pub fn new(name: &str, default: impl Into<Value>, description: &str) -> Self {
        let default = default.into();
        ConfigKey {
            name: name.to_string(),
            kind: default.kind(),
            default,
            description: description.to_string(),
        }
    }
}

impl Needs {
    /// Needs the named INFO fields, no whole sections, no SLOWLOG.
    pub fn info(fields: &[&str]) -> Self {
        Needs {
            info_fields: fields.iter().map(|f| f.to_string()).collect(),
            info_sections: Vec::new(),
            slowlog: false,
            probes: Vec::new(),
        }
    }

    /// Also needs `probe` (ABI 0.3): `Needs::info(&[]).with_probe(Probe::LatencyLatest)`.
    /// Its reading arrives in `Snapshot::probes`; see [`Snapshot::latency`]
    /// and the other accessors.
    ///
    /// [`Snapshot::latency`]: crate::Snapshot::latency
    #[must_use]
    pub fn with_probe(mut self, probe: Probe) -> Self {
        self.probes.push(probe);
        self
    }

    /// Also needs the named whole INFO sections.
    #[must_use]
    pub fn with_sections(mut self, sections: &[&str]) -> Self {
        self.info_sections
            .extend(sections.iter().map(|s| s.to_string()));
        self
    }

    /// Also needs SLOWLOG entries.
    #[must_use]
    pub fn with_slowlog(mut self) -> Self {
        self.slowlog = true;
        self
    }
}

/// Every poll, the cadence a watcher runs at unless it declares another.
impl Default for Cadence {
    fn default() -> Self {
        Cadence::EveryPoll
    }
}

impl Manifest {
    /// A manifest with no config keys, no needs, that runs every poll
    /// ([`Cadence::EveryPoll`]); add the rest with the `with_` methods.
    pub fn new(name: &str, version: &str, description: &str) -> Self {
        Manifest {
            name: name.to_string(),
            version: version.to_string(),
            description: description.to_string(),
            config: Vec::new(),
            needs: Needs::info(&[]),
            cadence: Cadence::default(),
        }
    }

    /// Also accepts these settings.
    #[must_use]
    pub fn with_config(mut self, keys: Vec<ConfigKey>) -> Self {
        self.config.extend(keys);
        self
    }

    /// Reads this data (replaces the needs set so far).
    #[must_use]
    pub fn with_needs(mut self, needs: Needs) -> Self {
        self.needs = needs;
        self
    }

    /// Runs at this cadence instead of every poll.
    #[must_use]
    pub fn with_cadence(mut self, cadence: Cadence) -> Self {
        self.cadence = cadence;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_convert_from_rust_types() {
        assert_eq!(Value::from(3i64), Value::Integer(3));
        assert_eq!(Value::from(3u64), Value::Integer(3));
        assert_eq!(Value::from(u64::MAX), Value::Integer(i64::MAX));
        assert_eq!(Value::from(1.5), Value::Float(1.5));
        assert_eq!(Value::from(true), Value::Boolean(true));
        assert_eq!(Value::from("a"), Value::Text("a".into()));
        assert_eq!(Value::from(String::from("b")), Value::Text("b".into()));
    }

    #[test]
    fn event_builder_keeps_field_order() {
        let e = Event::new(Level::Warn, "m")
            .field("x", 3i64)
            .field("y", "z");
        assert_eq!(e.level, Level::Warn);
        assert_eq!(e.msg, "m");
        let names: Vec<_> = e.fields.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["x", "y"]);
        assert_eq!(e.get("x").and_then(Value::as_i64), Some(3));
        assert_eq!(e.get("y").and_then(Value::as_str), Some("z"));
        assert_eq!(e.get("nope"), None);
    }

    #[test]
    fn config_key_kind_follows_default() {
        assert_eq!(ConfigKey::new("a", 5i64, "d").kind, ValueKind::Integer);
        assert_eq!(ConfigKey::new("a", 0.9, "d").kind, ValueKind::Float);
        assert_eq!(ConfigKey::new("a", "x", "d").kind, ValueKind::Text);
        assert_eq!(ConfigKey::new("a", false, "d").kind, ValueKind::Boolean);
    }

    #[test]
    fn manifest_builder_defaults_to_every_poll() {
        let m = Manifest::new("w", "1.0.0", "d");
        assert_eq!(m.name, "w");
        assert_eq!(m.version, "1.0.0");
        assert_eq!(m.description, "d");
        assert!(m.config.is_empty());
        assert_eq!(m.needs, Needs::info(&[]));
        assert_eq!(m.cadence, Cadence::EveryPoll);
        assert_eq!(Cadence::default(), Cadence::EveryPoll);
    }

    #[test]
    fn manifest_builder_sets_every_part() {
        let m = Manifest::new("w", "1.0.0", "d")
            .with_config(vec![ConfigKey::new("a", 1i64, "first")])
            .with_config(vec![ConfigKey::new("b", true, "second")])
            .with_needs(Needs::info(&["run_id"]).with_slowlog())
            .with_cadence(Cadence::IntervalMs(60_000));
        let keys: Vec<_> = m.config.iter().map(|k| k.name.as_str()).collect();
        assert_eq!(keys, ["a", "b"]);
        assert_eq!(m.needs.info_fields, ["run_id"]);
        assert!(m.needs.slowlog);
        assert_eq!(m.cadence, Cadence::IntervalMs(60_000));
        let m = m.with_cadence(Cadence::EveryPolls(3));
        assert_eq!(m.cadence, Cadence::EveryPolls(3));
    }

    #[test]
    fn needs_builder() {
        let n = Needs::info(&["run_id"])
            .with_slowlog()
            .with_sections(&["memory"]);
        assert_eq!(n.info_fields, ["run_id"]);
        assert_eq!(n.info_sections, ["memory"]);
        assert!(n.slowlog);
    }
}

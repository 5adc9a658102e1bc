//! The wire format: one JSON envelope per event, shared by pub/sub payloads
//! and stream entries (see `host/schema/envelope.schema.json`).

use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Envelope schema version, the `v` field.
pub const SCHEMA_VERSION: u32 = 2;

/// `target` of the host's own envelopes.
pub const HOST_TARGET: &str = "lookout";

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
    /// Watcher name, or `lookout` for the host's own events.
    pub target: String,
    /// Human-readable message.
    pub msg: String,
    /// Structured detail; always holds `instance`.
    pub fields: Map<String, Value>,
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
        }
    }

    /// Wraps `event`, about the Redis at `instance`, in an envelope
    /// stamped now.
    pub fn wrap(&self, instance: &str, event: Emitted) -> Envelope {
        self.stamp(
            instance,
            event.level,
            &event.target,
            event.msg,
            event.fields,
        )
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
        self.stamp(&self.instance, level, target, msg, fields)
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
        }
    }
}

impl Envelope {
    /// The JSON payload published on the channel.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("an envelope always serialises")
    }

    /// Stream entry fields: one per envelope key, scalars as strings and
    /// `fields` as a JSON object string.
    pub fn stream_fields(&self) -> [(&'static str, String); 10] {
        [
            ("v", self.v.to_string()),
            ("id", self.id.clone()),
            ("ts", self.ts.clone()),
            ("service", self.service.clone()),
            ("host", self.host.clone()),
            ("level", self.level.as_str().to_owned()),
            ("pid", self.pid.to_string()),
            ("target", self.target.clone()),
            ("msg", self.msg.clone()),
            (
                "fields",
                serde_json::to_string(&self.fields).expect("a JSON map always serialises"),
            ),
        ]
    }
}

/// Builds a `fields` map from pairs.
#[macro_export]
macro_rules! fields {
    ($($key:expr => $value:expr),* $(,)?) => {{
        #[allow(unused_mut)]
        let mut map = ::serde_json::Map::new();
        $( map.insert(($key).to_string(), ::serde_json::Value::from($value)); )*
        map
    }};
}

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
}

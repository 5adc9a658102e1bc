//! What the bus's refusals and state mean to an operator: each error
//! reply named with its fix, a `maxmemory-policy` that can evict the
//! stream, a stream that vanished.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::delivery::envelope::fields;
use crate::redis::error::ServerKind;

/// One write the bus refused with an error reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// `PUBLISH` or `XADD`.
    pub command: &'static str,
    /// What the error reply said: `OOM`, `READONLY`, `NOPERM`...
    pub kind: ServerKind,
    /// The rest of the error line.
    pub detail: String,
}

impl Refusal {
    /// The refusal of `command` that the error reply `error` says.
    pub(super) fn of(command: &'static str, error: &redis::ServerError) -> Self {
        Self {
            command,
            kind: ServerKind::from(error),
            detail: error.details().unwrap_or_default().to_owned(),
        }
    }
}

/// What the publisher's messages say of the bus.
pub(super) struct Diagnosis<'a> {
    /// The bus's `host:port`, or "the bus".
    pub bus: &'a str,
    /// Whether the bus is the watched Redis: its fixes then include
    /// moving the bus elsewhere.
    pub watched: bool,
    /// The stream written to, or "the stream".
    pub stream_key: &'a str,
    /// The bus's `maxmemory_policy`, when known.
    pub policy: Option<&'a str>,
}

/// A warning's message and the fields of its envelope.
pub(super) type Warning = (String, Map<String, Value>);

impl Diagnosis<'_> {
    /// One line naming what the bus refused and how to fix it.
    pub(super) fn refusals(&self, refusals: &[Refusal]) -> String {
        let bus = self.bus;
        let mut groups: BTreeMap<(&str, &str), (usize, &str, &ServerKind)> = BTreeMap::new();
        for r in refusals {
            groups
                .entry((r.command, r.kind.code()))
                .or_insert((0, r.detail.as_str(), &r.kind))
                .0 += 1;
        }
        let parts: Vec<String> = groups
            .into_iter()
            .map(|((command, code), (count, detail, kind))| {
                let detail = detail.trim();
                let detail = if detail.is_empty() {
                    String::new()
                } else {
                    format!(" ({detail})")
                };
                format!(
                    "bus {bus} refused {command} of {count} envelope{} with {code}{detail}: {}",
                    if count == 1 { "" } else { "s" },
                    advice(kind, command, self.stream_key, self.watched, self.policy)
                )
            })
            .collect();
        parts.join("; ")
    }

    /// The bus's policy when it can evict the stream.
    fn evicting(&self) -> Option<&str> {
        self.policy.filter(|p| p.starts_with("allkeys-"))
    }

    /// How to keep the stream from being evicted.
    fn fix(&self) -> &'static str {
        if self.watched {
            "; set [publish] url to another Redis"
        } else {
            "; give the bus a maxmemory-policy that does not evict it (noeviction or volatile-*), or set [publish] url to another Redis"
        }
    }

    /// The warning that the bus's policy can evict the stream, when it can.
    pub(super) fn eviction(&self) -> Option<Warning> {
        let policy = self.evicting()?;
        let (bus, key) = (self.bus, self.stream_key);
        let fix = self.fix();
        let also = if self.watched {
            " The bus is the watched Redis: Lookout's own writes use its memory, may evict its keys and count in its evicted_keys."
        } else {
            ""
        };
        let msg = format!(
            "the bus {bus} may evict the stream {key} (maxmemory-policy {policy}){fix}.{also}"
        );
        let fields = fields! {
            "bus" => bus,
            "stream_key" => key,
            "policy" => policy,
            "watched" => self.watched,
        };
        Some((msg, fields))
    }

    /// The warning that the stream vanished since the last write to it.
    pub(super) fn vanished(&self) -> Warning {
        let (bus, key) = (self.bus, self.stream_key);
        let evicting = self.evicting();
        let cause = match evicting {
            Some(policy) => format!("evicted under maxmemory-policy {policy}"),
            None => "deleted, expired, or lost in a restart without persistence".to_owned(),
        };
        let fix = if evicting.is_some() { self.fix() } else { "" };
        let msg = format!(
            "the stream {key} on {bus} vanished since Lookout last wrote to it: {cause}{fix}"
        );
        let fields = fields! {
            "bus" => bus,
            "stream_key" => key,
            "policy" => self.policy.unwrap_or_default(),
            "watched" => self.watched,
        };
        (msg, fields)
    }
}

/// What to do about an error reply of `kind` to `command`.
fn advice(
    kind: &ServerKind,
    command: &str,
    stream_key: &str,
    watched: bool,
    policy: Option<&str>,
) -> String {
    let elsewhere = if watched {
        " or set [publish] url to another Redis (the bus is the watched Redis)"
    } else {
        ""
    };
    match kind {
        ServerKind::Oom => match policy {
            Some(policy) if policy != "noeviction" => format!(
                "the bus reached maxmemory and its maxmemory-policy ({policy}) found nothing more to evict; raise maxmemory{elsewhere}; retrying with the breaker's backoff"
            ),
            _ => format!(
                "the bus reached maxmemory and its maxmemory-policy (noeviction) refuses writes; raise maxmemory{elsewhere}; retrying with the breaker's backoff"
            ),
        },
        ServerKind::ReadOnly => "the bus is a read-only replica (after a failover the primary moved); point [publish] url at the primary; retrying with the breaker's backoff".to_owned(),
        ServerKind::MisConf => "the bus refuses writes because its last RDB snapshot failed (stop-writes-on-bgsave-error); fix its disk or its save settings; retrying with the breaker's backoff".to_owned(),
        ServerKind::NoPerm => format!(
            "the ACL user of [publish] url may not run {command} there; grant it (+publish and the channel pattern, +xadd and the key {stream_key}) or use another user; retrying with the breaker's backoff"
        ),
        ServerKind::WrongType => format!(
            "the key {stream_key} holds something other than a stream; delete or rename it, or set [publish] stream_key; retrying with the breaker's backoff"
        ),
        ServerKind::NoAuth | ServerKind::WrongPass => "authentication failed; check the user and password in [publish] url; retrying with the breaker's backoff".to_owned(),
        ServerKind::Loading => "the bus is loading its data set; retrying with the breaker's backoff".to_owned(),
        ServerKind::MasterDown => "the bus is a replica that lost its primary; retrying with the breaker's backoff".to_owned(),
        ServerKind::Busy => "a script is running on the bus; retrying with the breaker's backoff".to_owned(),
        _ => "retrying with the breaker's backoff".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_refusal_names_its_fix() {
        for (code, fix) in [
            ("OOM", "raise maxmemory"),
            ("READONLY", "point [publish] url at the primary"),
            ("MISCONF", "stop-writes-on-bgsave-error"),
            ("NOPERM", "grant it"),
            ("WRONGTYPE", "set [publish] stream_key"),
            ("SOMETHING", "retrying"),
        ] {
            let kind = ServerKind::from_code(code, None);
            let advice = advice(&kind, "XADD", "logs:stream:redis", true, None);
            assert!(advice.contains(fix), "{code}: {advice}");
            assert!(advice.contains("retrying"), "{code}: {advice}");
        }
        let oom = &ServerKind::Oom;
        assert!(advice(oom, "XADD", "k", true, None).contains("[publish] url"));
        assert!(!advice(oom, "XADD", "k", false, None).contains("[publish] url"));
        let lru = advice(oom, "XADD", "k", false, Some("allkeys-lru"));
        assert!(
            lru.contains("(allkeys-lru) found nothing more to evict"),
            "{lru}"
        );
    }
}

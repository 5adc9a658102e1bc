//! Declared probes (ABI 0.3): the allow-listed read-only commands a
//! watcher may ask for beyond INFO and SLOWLOG, the commands each adds to a
//! poll's pipeline, and what their replies become. A probe the server
//! refuses or does not know becomes [`Answer::Unavailable`] with the
//! reason, never a failed poll.

use std::collections::HashMap;

use redis::Value;
use serde::{Deserialize, Serialize};

use super::conn::text;
use super::error::{ServerKind, reply_line};

/// INFO sections outside the default INFO that a watcher may declare.
pub(crate) const INFO_SECTIONS: [&str; 3] = ["commandstats", "errorstats", "latencystats"];

/// One probe to run on a target: a declared probe with its stream key
/// resolved. Run at most once per poll, whichever watchers declared it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "probe", content = "key")]
pub enum Ask {
    /// `LATENCY LATEST` (with `CONFIG GET latency-monitor-threshold`).
    LatencyLatest,
    /// `INFO <section>`, one of [`INFO_SECTIONS`].
    InfoSection(String),
    /// `XINFO GROUPS <key>`.
    XinfoGroups(String),
    /// `XINFO STREAM <key>`: without FULL, so the reply's size does not
    /// grow with the stream, its groups or their consumers (only the
    /// first and last entries come with it).
    XinfoStream(String),
    /// `CLIENT LIST`.
    ClientList,
    /// `CLUSTER INFO`.
    ClusterInfo,
}

/// One `LATENCY LATEST` line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Spike {
    /// Event name.
    pub event: String,
    /// Unix seconds of the latest spike.
    pub latest_at: i64,
    /// Its duration, ms.
    pub latest_ms: u64,
    /// The worst so far, ms.
    pub max_ms: u64,
}

/// One `XINFO GROUPS` group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Group {
    /// Group name.
    pub name: String,
    /// Consumers.
    pub consumers: u64,
    /// Delivered, not acknowledged.
    pub pending: u64,
    /// Last delivered id.
    pub last_delivered_id: String,
    /// Entries read (Redis 7).
    pub entries_read: Option<u64>,
    /// Undelivered entries (Redis 7, when known).
    pub lag: Option<u64>,
}

/// `XINFO STREAM`, the parts a watcher uses.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Stream {
    /// Entries.
    pub length: u64,
    /// Consumer groups.
    pub groups: u64,
    /// Last id ever added.
    pub last_generated_id: String,
    /// Oldest entry's id.
    pub first_entry_id: Option<String>,
    /// Newest entry's id.
    pub last_entry_id: Option<String>,
    /// Entries ever added (Redis 7).
    pub entries_added: Option<u64>,
}

/// What a probe read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Answer {
    /// Refused, unknown or failed: the reason.
    Unavailable(String),
    /// The key is served by another node of a Redis Cluster (MOVED or
    /// ASK): no reading here; the node that serves it reads it.
    Elsewhere(String),
    /// `LATENCY LATEST`.
    Latency(Vec<Spike>),
    /// An INFO section's fields, `(name, value)`.
    Info(Vec<(String, String)>),
    /// `XINFO GROUPS`.
    StreamGroups(Vec<Group>),
    /// `XINFO STREAM`.
    StreamInfo(Stream),
    /// `CLIENT LIST`: each line's `key=value` pairs.
    Clients(Vec<Vec<(String, String)>>),
    /// `CLUSTER INFO` pairs.
    Cluster(Vec<(String, String)>),
}

impl Ask {
    /// Adds the probe's commands to `pipe`; returns how many. `config`:
    /// LATENCY LATEST also reads `latency-monitor-threshold` (CONFIG GET).
    pub fn add_to(&self, pipe: &mut redis::Pipeline, config: bool) -> usize {
        match self {
            Ask::LatencyLatest => {
                pipe.cmd("LATENCY").arg("LATEST");
                if config {
                    pipe.cmd("CONFIG")
                        .arg("GET")
                        .arg("latency-monitor-threshold");
                }
                1 + usize::from(config)
            }
            Ask::InfoSection(section) => {
                pipe.cmd("INFO").arg(section);
                1
            }
            Ask::XinfoGroups(key) => {
                pipe.cmd("XINFO").arg("GROUPS").arg(key);
                1
            }
            Ask::XinfoStream(key) => {
                pipe.cmd("XINFO").arg("STREAM").arg(key);
                1
            }
            Ask::ClientList => {
                pipe.cmd("CLIENT").arg("LIST");
                1
            }
            Ask::ClusterInfo => {
                pipe.cmd("CLUSTER").arg("INFO");
                1
            }
        }
    }

    /// The command as an operator would type it, for messages.
    pub fn command(&self) -> String {
        match self {
            Ask::LatencyLatest => "LATENCY LATEST".to_owned(),
            Ask::InfoSection(s) => format!("INFO {s}"),
            Ask::XinfoGroups(k) => format!("XINFO GROUPS {k}"),
            Ask::XinfoStream(k) => format!("XINFO STREAM {k}"),
            Ask::ClientList => "CLIENT LIST".to_owned(),
            Ask::ClusterInfo => "CLUSTER INFO".to_owned(),
        }
    }

    /// The stream key, for XINFO probes.
    pub fn key(&self) -> &str {
        match self {
            Ask::XinfoGroups(k) | Ask::XinfoStream(k) => k,
            _ => "",
        }
    }

    /// Reads the probe's replies (as many as [`Ask::add_to`] added).
    pub fn answer(&self, replies: &[Value]) -> Answer {
        let first = replies.first();
        if let Some(Value::ServerError(e)) = first {
            return match ServerKind::from(e) {
                ServerKind::Moved | ServerKind::Ask => Answer::Elsewhere(refused(self, e)),
                _ => Answer::Unavailable(refused(self, e)),
            };
        }
        let Some(first) = first else {
            return Answer::Unavailable("no reply".to_owned());
        };
        let parsed = match self {
            Ask::LatencyLatest => latency(first).map(|spikes| {
                if spikes.is_empty() && threshold(replies.get(1)) == Some(0) {
                    Answer::Unavailable(
                        "latency-monitor-threshold is 0, so the server records no latency \
                         events; CONFIG SET latency-monitor-threshold 100 (ms) turns it on"
                            .to_owned(),
                    )
                } else {
                    Answer::Latency(spikes)
                }
            }),
            Ask::InfoSection(section) => text(Some(first)).map(|t| {
                if t.trim().is_empty() {
                    Answer::Unavailable(format!("this server has no INFO section `{section}`"))
                } else {
                    Answer::Info(lines(&t))
                }
            }),
            Ask::XinfoGroups(_) => groups(first).map(Answer::StreamGroups),
            Ask::XinfoStream(_) => stream(first).map(Answer::StreamInfo),
            Ask::ClientList => text(Some(first)).map(|t| {
                Answer::Clients(
                    t.lines()
                        .filter(|l| !l.trim().is_empty())
                        .map(|l| {
                            l.split_whitespace()
                                .filter_map(|kv| kv.split_once('='))
                                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                                .collect()
                        })
                        .collect(),
                )
            }),
            Ask::ClusterInfo => text(Some(first)).map(|t| Answer::Cluster(lines(&t))),
        };
        parsed.unwrap_or_else(|e| {
            Answer::Unavailable(format!("{}: unexpected reply: {e:#}", self.command()))
        })
    }
}

/// Whether a reply refuses the command for this user (ACL `NOPERM`): the
/// host then stops asking for a while rather than add an error to the
/// server's error counters every poll.
pub(crate) fn is_noperm(reply: Option<&Value>) -> bool {
    ServerKind::of_reply(reply) == Some(ServerKind::NoPerm)
}

/// The reason for a refused probe, with the fix when it is an ACL one.
fn refused(ask: &Ask, e: &redis::ServerError) -> String {
    let message = reply_line(e);
    if ServerKind::from(e) == ServerKind::NoPerm {
        format!(
            "{} refused: {message}; grant it to this user (docs/tls.md: ACL rules)",
            ask.command()
        )
    } else {
        format!("{}: {message}", ask.command())
    }
}

/// `name:value` lines, headers and blank lines skipped.
fn lines(text: &str) -> Vec<(String, String)> {
    text.lines()
        .map(|l| l.trim_end_matches('\r'))
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

fn uint(value: Option<&Value>) -> anyhow::Result<u64> {
    match value {
        Some(Value::Int(n)) => Ok(u64::try_from(*n)?),
        Some(v) => Ok(text(Some(v))?.trim().parse()?),
        None => anyhow::bail!("missing number"),
    }
}

fn optional_uint(value: Option<&Value>) -> Option<u64> {
    match value {
        None | Some(Value::Nil) => None,
        v => uint(v).ok(),
    }
}

fn items(value: &Value) -> anyhow::Result<&[Value]> {
    match value {
        Value::Array(items) | Value::Set(items) => Ok(items),
        other => anyhow::bail!(
            "expected an array, got {}",
            crate::untrusted::clip(&format!("{other:?}"))
        ),
    }
}

/// A RESP2 flat `[k, v, k, v...]` array or a RESP3 map, by key.
fn pairs(value: &Value) -> anyhow::Result<HashMap<String, &Value>> {
    match value {
        Value::Map(map) => map.iter().map(|(k, v)| Ok((text(Some(k))?, v))).collect(),
        other => items(other)?
            .chunks(2)
            .map(|kv| Ok((text(kv.first())?, kv.get(1).unwrap_or(&Value::Nil))))
            .collect(),
    }
}

fn latency(value: &Value) -> anyhow::Result<Vec<Spike>> {
    items(value)?
        .iter()
        .map(|line| {
            let parts = items(line)?;
            Ok(Spike {
                event: text(parts.first())?,
                latest_at: i64::try_from(uint(parts.get(1))?)?,
                latest_ms: uint(parts.get(2))?,
                max_ms: uint(parts.get(3))?,
            })
        })
        .collect()
}

/// `latency-monitor-threshold` from a CONFIG GET reply, if readable.
fn threshold(value: Option<&Value>) -> Option<u64> {
    let map = pairs(value?).ok()?;
    uint(map.get("latency-monitor-threshold").copied()).ok()
}

/// Most consumer groups of one stream handed to watchers (in the order
/// XINFO GROUPS lists them, by name).
pub(crate) const MAX_GROUPS: usize = 1_000;

fn groups(value: &Value) -> anyhow::Result<Vec<Group>> {
    items(value)?
        .iter()
        .take(MAX_GROUPS)
        .map(|group| {
            let g = pairs(group)?;
            Ok(Group {
                name: text(g.get("name").copied())?,
                consumers: uint(g.get("consumers").copied())?,
                pending: uint(g.get("pending").copied())?,
                last_delivered_id: text(g.get("last-delivered-id").copied())?,
                entries_read: optional_uint(g.get("entries-read").copied()),
                lag: optional_uint(g.get("lag").copied()),
            })
        })
        .collect()
}

fn entry_id(value: Option<&&Value>) -> Option<String> {
    match value {
        Some(Value::Array(entry)) => text(entry.first()).ok(),
        _ => None,
    }
}

fn stream(value: &Value) -> anyhow::Result<Stream> {
    let s = pairs(value)?;
    Ok(Stream {
        length: uint(s.get("length").copied())?,
        groups: uint(s.get("groups").copied())?,
        last_generated_id: text(s.get("last-generated-id").copied())?,
        first_entry_id: entry_id(s.get("first-entry")),
        last_entry_id: entry_id(s.get("last-entry")),
        entries_added: optional_uint(s.get("entries-added").copied()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    #[test]
    fn groups_parse_with_and_without_lag() {
        let reply = Value::Array(vec![Value::Array(vec![
            bulk("name"),
            bulk("workers"),
            bulk("consumers"),
            Value::Int(2),
            bulk("pending"),
            Value::Int(5),
            bulk("last-delivered-id"),
            bulk("1-0"),
            bulk("entries-read"),
            Value::Int(9),
            bulk("lag"),
            Value::Nil,
        ])]);
        let Answer::StreamGroups(g) = Ask::XinfoGroups("s".into()).answer(&[reply]) else {
            panic!("groups")
        };
        assert_eq!(g[0].pending, 5);
        assert_eq!(g[0].entries_read, Some(9));
        assert_eq!(g[0].lag, None);
    }

    #[test]
    fn refusals_and_missing_sections_are_unavailable() {
        let err = redis::parse_redis_value(b"-ERR This instance has cluster support disabled\r\n")
            .unwrap();
        assert!(!is_noperm(Some(&err)));
        let moved = redis::parse_redis_value(b"-MOVED 3999 127.0.0.1:7002\r\n").unwrap();
        assert!(matches!(
            Ask::XinfoGroups("jobs".into()).answer(&[moved]),
            Answer::Elsewhere(_)
        ));
        let Answer::Unavailable(why) = Ask::ClusterInfo.answer(&[err]) else {
            panic!("unavailable")
        };
        assert!(why.starts_with("CLUSTER INFO: "), "{why}");
        assert_eq!(
            Ask::InfoSection("latencystats".into()).answer(&[bulk("")]),
            Answer::Unavailable("this server has no INFO section `latencystats`".into())
        );
        assert_eq!(
            Ask::InfoSection("errorstats".into())
                .answer(&[bulk("# Errorstats\r\nerrorstat_ERR:count=2\r\n")]),
            Answer::Info(vec![("errorstat_ERR".into(), "count=2".into())])
        );
    }

    #[test]
    fn latency_off_is_unavailable_unless_spikes_remain() {
        let off = Value::Array(vec![bulk("latency-monitor-threshold"), bulk("0")]);
        let Answer::Unavailable(why) =
            Ask::LatencyLatest.answer(&[Value::Array(vec![]), off.clone()])
        else {
            panic!("unavailable")
        };
        assert!(why.starts_with("latency-monitor-threshold is 0"), "{why}");
        let spike = Value::Array(vec![Value::Array(vec![
            bulk("command"),
            Value::Int(1_700_000_000),
            Value::Int(250),
            Value::Int(300),
        ])]);
        let Answer::Latency(s) = Ask::LatencyLatest.answer(&[spike, off]) else {
            panic!("latency")
        };
        assert_eq!((s[0].latest_ms, s[0].max_ms), (250, 300));
    }
}

//! Discovery: the nodes of a Redis Cluster (asked of seed nodes) or of a
//! Sentinel-managed master and its replicas (asked of sentinels), and the
//! URL to watch each of them with.
//!
//! Each call dials a fresh connection per seed or sentinel and drops it
//! when done: discovery is rare next to polling, and a kept connection
//! would only be one more thing to redial.

mod cluster;
mod sentinel;

use std::collections::HashSet;

use anyhow::{Context, Result, anyhow, bail};
use redis::Value;

pub use cluster::cluster;
pub(crate) use cluster::cluster_at;
pub use sentinel::sentinel;
pub(crate) use sentinel::sentinel_at;

use crate::redis::allow::Allow;
use crate::redis::conn::text;
use crate::redis::redact::redact_url;
use crate::untrusted::clip;

/// A node a discover entry found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// Host name or IP address as the cluster or sentinel announces it
    /// (IPv6 without brackets).
    pub host: String,
    /// TCP port of its Redis.
    pub port: u16,
    /// Whether it is a master or a replica at the time of asking.
    pub role: Role,
    /// The host name it announces beside an address (CLUSTER SHARDS
    /// `hostname`): the name its TLS certificate is checked against.
    pub tls_name: Option<String>,
}

impl Node {
    /// `host:port`, IPv6 bracketed, escaped for messages.
    #[must_use]
    pub fn address(&self) -> String {
        if self.host.contains(':') {
            clip(&format!("[{}]:{}", self.host, self.port))
        } else {
            clip(&format!("{}:{}", self.host, self.port))
        }
    }
}

/// What one cluster or sentinel answered.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Discovered {
    /// The nodes, masters first, then by host and port.
    pub nodes: Vec<Node>,
    /// Announced nodes left out because they cannot be watched as
    /// announced (a TLS-only node asked over plain TCP, a port out of
    /// range), each with why; escaped.
    pub skipped: Vec<String>,
}

/// The nodes of one answer an entry may watch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Screened {
    /// Nodes inside `allow`, at most `max_nodes`: masters first, then by
    /// address.
    pub kept: Vec<Node>,
    /// Nodes outside `allow`, never contacted.
    pub refused: Vec<Node>,
    /// Nodes inside `allow` beyond `max_nodes`.
    pub cut: usize,
}

/// Splits `nodes` by `allow`, then keeps the first `max_nodes` of those
/// allowed (masters first, then by address: `nodes` come sorted so).
#[must_use]
pub(crate) fn screen(nodes: Vec<Node>, allow: &Allow, max_nodes: usize) -> Screened {
    let (mut kept, refused): (Vec<Node>, Vec<Node>) =
        nodes.into_iter().partition(|n| allow.host(&n.host));
    let cut = kept.len().saturating_sub(max_nodes);
    kept.truncate(max_nodes);
    Screened { kept, refused, cut }
}

/// What a found node is at the time of asking.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// Serves writes (a cluster shard's primary, or the sentinel's master).
    Master,
    /// Replicates a master.
    Replica,
}

impl Role {
    /// `"master"` or `"replica"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Master => "master",
            Self::Replica => "replica",
        }
    }
}

/// URL of a found node: `seed` with its host and port replaced; the scheme,
/// user info (credentials), database path and query (TLS options) are
/// kept. An IPv6 host is bracketed.
///
/// # Errors
/// `seed` is not a URL with a host (a Unix socket, for example), or the
/// node's host cannot stand in a URL.
pub fn node_url(seed: &str, node: &Node) -> Result<String> {
    node_url_with(seed, node, true)
}

/// [`node_url`] without the seed's user and password when
/// `credentials` is false (a sentinel's are not the nodes').
///
/// # Errors
/// As [`node_url`].
pub(crate) fn node_url_with(seed: &str, node: &Node, credentials: bool) -> Result<String> {
    let mut url =
        url::Url::parse(seed).map_err(|e| anyhow!("bad seed URL `{}`: {e}", redact_url(seed)))?;
    if !credentials {
        // A URL with a host always takes these.
        let _ = url.set_password(None);
        let _ = url.set_username("");
    }
    if url.host().is_none() {
        bail!(
            "seed URL `{}` has no host to replace with a found node's",
            redact_url(seed)
        );
    }
    let host = if node.host.contains(':') && !node.host.starts_with('[') {
        format!("[{}]", node.host)
    } else {
        node.host.clone()
    };
    url.set_host(Some(&host))
        .with_context(|| format!("node host `{}` does not fit in a URL", clip(&node.host)))?;
    url.set_port(Some(node.port))
        .map_err(|()| anyhow!("seed URL `{}` cannot take a port", redact_url(seed)))?;
    Ok(url.to_string())
}

/// The failures of asking each URL in turn, for the error when none
/// answered.
struct Failures(Vec<String>);

impl Failures {
    fn new() -> Self {
        Self(Vec::new())
    }

    /// Notes that `url` (shown with its password hidden) failed with `e`.
    fn push(&mut self, url: &str, e: &anyhow::Error) {
        let text = crate::redis::redact::redact_text(&format!("{e:#}"), url);
        // Each reply in it is cut already; room for a fallback's too.
        let text = crate::untrusted::clip_to(&text, 4 * crate::untrusted::MAX_SHOWN);
        self.0.push(format!("{}: {text}", redact_url(url)));
    }

    /// The error naming every URL tried and why it failed, or saying there
    /// was none to ask.
    fn into_error(self, what: &str) -> anyhow::Error {
        if self.0.is_empty() {
            anyhow!("no {what} to ask")
        } else {
            anyhow!("no {what} answered: {}", self.0.join("; "))
        }
    }
}

/// Sorted by role (masters first), host, then port, each address once:
/// an address listed under both roles (mid-failover) keeps the first.
fn tidy(mut nodes: Vec<Node>) -> Vec<Node> {
    nodes.sort_by(|a, b| (a.role, &a.host, a.port).cmp(&(b.role, &b.host, b.port)));
    let mut seen = HashSet::new();
    nodes.retain(|n| seen.insert((n.host.clone(), n.port)));
    nodes
}

/// The key/value pairs of a RESP2 flat array (`k1 v1 k2 v2 ...`) or a
/// RESP3 map, keys as text.
fn pairs(value: &Value) -> Result<Vec<(String, &Value)>> {
    match value {
        Value::Array(items) => {
            if items.len() % 2 != 0 {
                bail!("expected key/value pairs, got {} items", items.len());
            }
            items
                .chunks(2)
                .map(|kv| Ok((text(Some(&kv[0]))?, &kv[1])))
                .collect()
        }
        Value::Map(entries) => entries
            .iter()
            .map(|(k, v)| Ok((text(Some(k))?, v)))
            .collect(),
        other => bail!("expected key/value pairs, got {}", shown(other)),
    }
}

/// A reply for a message: escaped, at most 1 KiB.
fn shown(value: &Value) -> String {
    clip(&format!("{value:?}"))
}

/// The value of `key` among `pairs`.
fn field<'a>(pairs: &[(String, &'a Value)], key: &str) -> Option<&'a Value> {
    pairs.iter().find(|(k, _)| k == key).map(|(_, v)| *v)
}

/// A port sent as an integer or as text.
fn port(value: Option<&Value>) -> Result<u16> {
    let n = match value {
        Some(Value::Int(n)) => *n,
        other => text(other)?
            .parse::<i64>()
            .context("port is not a number")?,
    };
    u16::try_from(n).map_err(|_| anyhow!("port {n} is out of range"))
}

/// A node, for tests.
#[cfg(test)]
pub(crate) fn node(host: &str, port: u16, role: Role) -> Node {
    Node {
        host: host.to_owned(),
        port,
        role,
        tls_name: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_url_keeps_all_but_the_address() {
        let n = node("10.0.0.7", 7002, Role::Replica);
        assert_eq!(
            node_url("redis://ops:s3cret@10.0.0.1:7000/0", &n).unwrap(),
            "redis://ops:s3cret@10.0.0.7:7002/0"
        );
        assert_eq!(
            node_url("rediss://:pw@seed.example:7000?insecure=true", &n).unwrap(),
            "rediss://:pw@10.0.0.7:7002?insecure=true"
        );
        assert_eq!(
            node_url(
                "redis://seed",
                &node("cache-3.internal", 6380, Role::Master)
            )
            .unwrap(),
            "redis://cache-3.internal:6380"
        );
    }

    #[test]
    fn node_url_brackets_ipv6() {
        let n = node("fd00::7", 7002, Role::Master);
        assert_eq!(
            node_url("redis://[::1]:7000", &n).unwrap(),
            "redis://[fd00::7]:7002"
        );
        assert_eq!(
            node_url("redis://u:p@127.0.0.1:7000/2", &n).unwrap(),
            "redis://u:p@[fd00::7]:7002/2"
        );
    }

    #[test]
    fn node_url_needs_a_host() {
        let n = node("10.0.0.7", 7002, Role::Master);
        let e = node_url("unix:///run/redis.sock?pass=secret", &n).unwrap_err();
        assert!(e.to_string().contains("no host"), "{e}");
        assert!(!e.to_string().contains("secret"), "{e}");
        assert!(node_url("not a url", &n).is_err());
    }

    #[test]
    fn tidy_sorts_and_dedupes() {
        let nodes = vec![
            node("b", 2, Role::Replica),
            node("a", 9, Role::Replica),
            node("b", 1, Role::Master),
            node("a", 9, Role::Master),
            node("b", 1, Role::Master),
        ];
        assert_eq!(
            tidy(nodes),
            [
                node("a", 9, Role::Master),
                node("b", 1, Role::Master),
                node("b", 2, Role::Replica),
            ]
        );
    }

    #[test]
    fn role_names() {
        assert_eq!(Role::Master.as_str(), "master");
        assert_eq!(Role::Replica.as_str(), "replica");
    }

    #[test]
    fn failures_name_every_url_tried() {
        let mut failures = Failures::new();
        failures.push("redis://:pw@a:1", &anyhow!("a:1 down"));
        failures.push("redis://b:2", &anyhow!("b:2 down").context("connecting"));
        assert_eq!(
            failures.into_error("seed").to_string(),
            "no seed answered: redis://:***@a:1: a:1 down; redis://b:2: connecting: b:2 down"
        );
        assert_eq!(
            Failures::new().into_error("seed").to_string(),
            "no seed to ask"
        );
    }

    /// The futures can be boxed as `Send` by a caller generic over the
    /// arguments' lifetimes, as a spawned task needs.
    #[test]
    fn futures_are_send() {
        type Found<'a> = std::pin::Pin<Box<dyn Future<Output = Result<Vec<Node>>> + Send + 'a>>;
        fn boxed_cluster<'a>(seeds: &'a [String]) -> Found<'a> {
            let t = std::time::Duration::from_secs(1);
            Box::pin(cluster(seeds, t, t))
        }
        fn boxed_sentinel<'a>(sentinels: &'a [String], master: &'a str) -> Found<'a> {
            let t = std::time::Duration::from_secs(1);
            Box::pin(sentinel(sentinels, master, t, t))
        }
        drop(boxed_cluster(&[]));
        drop(boxed_sentinel(&[], "m"));
    }
}

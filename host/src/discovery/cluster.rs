//! The masters and replicas of a Redis Cluster, from CLUSTER SHARDS
//! (Redis 7 and later) or CLUSTER NODES (any cluster).

use std::time::Duration;

use anyhow::{Context, Result, bail};
use redis::Value;

use super::{Failures, Node, Role, field, pairs, port, tidy};
use crate::redis::conn::Conn;
use crate::redis::conn::text;
use crate::redis::tls::Tls;

/// Every master and replica of the cluster, asked of the first of `seeds`
/// that answers. A seed is a full Redis URL
/// (`redis://user:pass@10.0.0.1:7000`); its credentials and TLS options
/// are the ones used to ask it.
///
/// Asks CLUSTER SHARDS, and CLUSTER NODES when the seed refuses that
/// (Redis before 7). Nodes the cluster has marked failed are left out, and
/// with CLUSTER NODES also nodes in handshake or without an address; a
/// node only suspected by the seed (`fail?`) or still loading is kept.
/// The list is sorted by role (masters first), host and port.
///
/// # Errors
/// No seed answered: the message names each seed tried (password hidden)
/// and its error.
pub async fn cluster(
    seeds: &[String],
    connect_timeout: Duration,
    response_timeout: Duration,
) -> Result<Vec<Node>> {
    cluster_with_tls(seeds, &Tls::default(), connect_timeout, response_timeout).await
}

/// [`cluster`], connecting to `rediss://` seeds with `tls`.
///
/// # Errors
/// As [`cluster`].
pub async fn cluster_with_tls(
    seeds: &[String],
    tls: &Tls,
    connect_timeout: Duration,
    response_timeout: Duration,
) -> Result<Vec<Node>> {
    let mut failures = Failures::new();
    for seed in seeds {
        match ask(seed, tls, connect_timeout, response_timeout).await {
            Ok(nodes) => return Ok(nodes),
            Err(e) => failures.push(seed, &e),
        }
    }
    Err(failures.into_error("cluster seed"))
}

async fn ask(
    seed: &str,
    tls: &Tls,
    connect_timeout: Duration,
    response_timeout: Duration,
) -> Result<Vec<Node>> {
    let mut conn = Conn::with_tls(seed, tls, connect_timeout, response_timeout)?;
    let mut shards = redis::pipe();
    // An error reply comes back as a value, keeping the connection for the
    // fallback.
    shards.ignore_errors();
    shards.cmd("CLUSTER").arg("SHARDS");
    let replies = conn.query(&shards).await?;
    let nodes = match replies.first() {
        Some(Value::ServerError(refused)) => {
            let mut nodes = redis::pipe();
            nodes.cmd("CLUSTER").arg("NODES");
            let replies = conn
                .query(&nodes)
                .await
                .with_context(|| format!("CLUSTER SHARDS: {refused}; CLUSTER NODES"))?;
            parse_nodes(&text(replies.first())?).context("CLUSTER NODES")?
        }
        Some(reply) => parse_shards(reply).context("CLUSTER SHARDS")?,
        None => bail!("CLUSTER SHARDS: no reply"),
    };
    if nodes.is_empty() {
        bail!("the cluster lists no reachable node");
    }
    Ok(nodes)
}

/// The nodes of a CLUSTER SHARDS reply: an array of shards, each a
/// key/value list whose `nodes` is an array of key/value lists (`id`,
/// `port`, `tls-port`, `ip`, `endpoint`, `hostname`, `role`,
/// `replication-offset`, `health`). RESP3 maps are read the same way.
///
/// A node's host is its `endpoint` (what the cluster tells clients to use:
/// `cluster-preferred-endpoint-type`), or its `ip` when the endpoint is
/// unknown (`?` or empty). Its port is `port`, falling back to `tls-port`
/// when `port` is 0 (a TLS-only node). Nodes whose `health` is `fail`
/// (Redis 7.0) or `failed` (as documented) are left out, and so are nodes
/// with neither address nor port.
///
/// # Errors
/// The reply does not have that shape.
pub(crate) fn parse_shards(reply: &Value) -> Result<Vec<Node>> {
    let Value::Array(shards) = reply else {
        bail!("expected an array of shards, got {reply:?}");
    };
    let mut found = Vec::new();
    for shard in shards {
        let shard = pairs(shard).context("shard")?;
        let Some(Value::Array(nodes)) = field(&shard, "nodes") else {
            bail!("shard without a `nodes` array: {shard:?}");
        };
        for node in nodes {
            let node = pairs(node).context("shard node")?;
            let get = |key: &str| field(&node, key);
            let health = get("health").map(|v| text(Some(v))).transpose()?;
            if matches!(health.as_deref(), Some("fail" | "failed")) {
                continue;
            }
            let role = match text(get("role"))?.as_str() {
                "master" => Role::Master,
                "replica" | "slave" => Role::Replica,
                other => bail!("unknown role `{other}`"),
            };
            let endpoint = get("endpoint").map(|v| text(Some(v))).transpose()?;
            let host = match endpoint {
                Some(e) if !e.is_empty() && e != "?" => e,
                _ => text(get("ip"))?,
            };
            let mut node_port = port(get("port"))?;
            if node_port == 0 && get("tls-port").is_some() {
                node_port = port(get("tls-port"))?;
            }
            if host.is_empty() || node_port == 0 {
                continue;
            }
            found.push(Node {
                host,
                port: node_port,
                role,
            });
        }
    }
    Ok(tidy(found))
}

/// The nodes of a CLUSTER NODES reply, one line per node:
/// `<id> <ip:port@cport[,hostname]> <flags> <master> <ping> <pong> <epoch>
/// <link> <slot>...`. The host is the IP (a hostname, Redis 7 only, is
/// what CLUSTER SHARDS reports as the endpoint when preferred).
///
/// Nodes flagged `fail`, `handshake` or `noaddr`, with neither `master`
/// nor `slave` among their flags, or without an address are left out;
/// `fail?` (suspected by this node only) is kept.
///
/// # Errors
/// A line does not have that shape.
pub(crate) fn parse_nodes(reply: &str) -> Result<Vec<Node>> {
    let mut found = Vec::new();
    for line in reply.lines().filter(|l| !l.trim().is_empty()) {
        let mut words = line.split_ascii_whitespace();
        let (Some(_id), Some(addr), Some(flags)) = (words.next(), words.next(), words.next())
        else {
            bail!("short CLUSTER NODES line `{line}`");
        };
        let flags: Vec<&str> = flags.split(',').collect();
        if flags
            .iter()
            .any(|f| matches!(*f, "fail" | "handshake" | "noaddr"))
        {
            continue;
        }
        let role = if flags.contains(&"master") {
            Role::Master
        } else if flags.contains(&"slave") {
            Role::Replica
        } else {
            continue;
        };
        let addr = addr.split_once(',').map_or(addr, |(a, _hostname)| a);
        let addr = addr.split_once('@').map_or(addr, |(a, _bus_port)| a);
        let Some((host, node_port)) = addr.rsplit_once(':') else {
            bail!("no port in address `{addr}` of line `{line}`");
        };
        let node_port: u16 = node_port
            .parse()
            .with_context(|| format!("bad port in address `{addr}` of line `{line}`"))?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() || node_port == 0 {
            continue;
        }
        found.push(Node {
            host: host.to_owned(),
            port: node_port,
            role,
        });
    }
    Ok(tidy(found))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::discovery::node;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    /// A RESP2 shard node as Redis 7.0 sends it: `port` an integer, the
    /// rest bulk strings.
    fn shard_node(port: i64, ip: &str, endpoint: &str, role: &str, health: &str) -> Value {
        Value::Array(vec![
            bulk("id"),
            bulk("6142f31d5aa4d8fc700972f6b474d7bdef632045"),
            bulk("port"),
            Value::Int(port),
            bulk("ip"),
            bulk(ip),
            bulk("endpoint"),
            bulk(endpoint),
            bulk("role"),
            bulk(role),
            bulk("replication-offset"),
            Value::Int(0),
            bulk("health"),
            bulk(health),
        ])
    }

    fn shard(slots: &[i64], nodes: Vec<Value>) -> Value {
        Value::Array(vec![
            bulk("slots"),
            Value::Array(slots.iter().copied().map(Value::Int).collect()),
            bulk("nodes"),
            Value::Array(nodes),
        ])
    }

    #[test]
    fn shards_give_masters_and_replicas_sorted() {
        let reply = Value::Array(vec![
            shard(
                &[5461, 10922],
                vec![
                    shard_node(7002, "10.0.0.2", "10.0.0.2", "master", "online"),
                    shard_node(7005, "10.0.0.5", "10.0.0.5", "replica", "loading"),
                ],
            ),
            shard(
                &[0, 5460],
                vec![
                    shard_node(7004, "10.0.0.4", "10.0.0.4", "replica", "online"),
                    shard_node(7001, "10.0.0.1", "10.0.0.1", "master", "online"),
                ],
            ),
        ]);
        assert_eq!(
            parse_shards(&reply).unwrap(),
            [
                node("10.0.0.1", 7001, Role::Master),
                node("10.0.0.2", 7002, Role::Master),
                node("10.0.0.4", 7004, Role::Replica),
                node("10.0.0.5", 7005, Role::Replica),
            ]
        );
    }

    #[test]
    fn shards_skip_failed_nodes() {
        let reply = Value::Array(vec![shard(
            &[0, 16383],
            vec![
                shard_node(7001, "10.0.0.1", "10.0.0.1", "master", "online"),
                shard_node(7004, "10.0.0.4", "10.0.0.4", "replica", "fail"),
                shard_node(7005, "10.0.0.5", "10.0.0.5", "replica", "failed"),
            ],
        )]);
        assert_eq!(
            parse_shards(&reply).unwrap(),
            [node("10.0.0.1", 7001, Role::Master)]
        );
    }

    #[test]
    fn shard_host_is_the_endpoint_unless_unknown() {
        let reply = Value::Array(vec![shard(
            &[],
            vec![
                shard_node(7001, "10.0.0.1", "cache-1.internal", "master", "online"),
                shard_node(7002, "10.0.0.2", "?", "replica", "online"),
                shard_node(7003, "10.0.0.3", "", "replica", "online"),
                shard_node(7006, "", "?", "replica", "online"),
            ],
        )]);
        assert_eq!(
            parse_shards(&reply).unwrap(),
            [
                node("cache-1.internal", 7001, Role::Master),
                node("10.0.0.2", 7002, Role::Replica),
                node("10.0.0.3", 7003, Role::Replica),
            ]
        );
    }

    #[test]
    fn shards_in_resp3_and_tls_only_ports() {
        let key = |k: &str| Value::SimpleString(k.to_owned());
        let tls_node = Value::Map(vec![
            (key("id"), bulk("abc")),
            (key("port"), Value::Int(0)),
            (key("tls-port"), Value::Int(7443)),
            (key("ip"), bulk("fd00::1")),
            (key("endpoint"), bulk("fd00::1")),
            (key("hostname"), bulk("")),
            (key("role"), bulk("master")),
            (key("replication-offset"), Value::Int(12)),
            (key("health"), bulk("online")),
        ]);
        let reply = Value::Array(vec![Value::Map(vec![
            (key("slots"), Value::Array(vec![])),
            (key("nodes"), Value::Array(vec![tls_node])),
        ])]);
        assert_eq!(
            parse_shards(&reply).unwrap(),
            [node("fd00::1", 7443, Role::Master)]
        );
    }

    #[test]
    fn malformed_shards_are_errors() {
        assert!(parse_shards(&bulk("x")).is_err());
        assert!(parse_shards(&Value::Array(vec![Value::Array(vec![bulk("slots")])])).is_err());
        let no_role = Value::Array(vec![shard(
            &[],
            vec![Value::Array(vec![bulk("port"), Value::Int(1)])],
        )]);
        assert!(parse_shards(&no_role).is_err());
        let bad_port = Value::Array(vec![shard(
            &[],
            vec![shard_node(70000, "h", "h", "master", "online")],
        )]);
        assert!(parse_shards(&bad_port).is_err());
        assert!(parse_shards(&Value::Array(vec![])).unwrap().is_empty());
    }

    const NODES: &str = "\
6142f31d5aa4d8fc700972f6b474d7bdef632045 127.0.0.1:17006@27006 slave a0f9ced66f6e988ec6701bd5bbe8d169c847164d 0 1795449072257 1 connected
697258a21faf3a618008f21fc780b53e2fffaffa 127.0.0.1:17002@27002 master - 0 1795449072458 2 connected 5461-10922
365ffdb21ef2166c019d2b59fb1d7cc6873e6c80 127.0.0.1:17003@27003,cache-3 master - 0 1795449072458 3 connected 10923-16383
a0f9ced66f6e988ec6701bd5bbe8d169c847164d 127.0.0.1:17001@27001 myself,master - 0 1795449072000 1 connected 0-5460
1726fb64dcee01fadb20a461a6437e981b165c93 127.0.0.1:17005@27005 slave,fail 365ffdb21ef2166c019d2b59fb1d7cc6873e6c80 1795449074570 1795449074067 3 disconnected
521e8270b37d2804d612bc8e30ce7461b476feeb 127.0.0.1:17004@27004 slave,fail? 697258a21faf3a618008f21fc780b53e2fffaffa 0 1795449072257 2 connected
";

    #[test]
    fn nodes_skip_failed_and_keep_suspected() {
        assert_eq!(
            parse_nodes(NODES).unwrap(),
            [
                node("127.0.0.1", 17001, Role::Master),
                node("127.0.0.1", 17002, Role::Master),
                node("127.0.0.1", 17003, Role::Master),
                node("127.0.0.1", 17004, Role::Replica),
                node("127.0.0.1", 17006, Role::Replica),
            ]
        );
    }

    #[test]
    fn nodes_skip_handshake_and_noaddr() {
        let reply = "\
a1 :0@0 master,noaddr - 0 0 1 disconnected
a2 10.0.0.9:7009@17009 handshake - 0 0 0 connected
a3 10.0.0.8:7008@17008 noflags - 0 0 0 connected
a4 ::1:7001@17001 myself,master - 0 0 1 connected 0-16383
a5 10.0.0.2:7002 slave a4 0 0 1 connected
";
        assert_eq!(
            parse_nodes(reply).unwrap(),
            [
                node("::1", 7001, Role::Master),
                node("10.0.0.2", 7002, Role::Replica),
            ]
        );
    }

    #[test]
    fn malformed_nodes_are_errors() {
        assert!(parse_nodes("a1 127.0.0.1:7000@17000").is_err());
        assert!(parse_nodes("a1 nowhere master - 0 0 1 connected").is_err());
        assert!(parse_nodes("a1 h:port@1 master - 0 0 1 connected").is_err());
        assert!(parse_nodes("").unwrap().is_empty());
    }
}

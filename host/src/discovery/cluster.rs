//! The masters and replicas of a Redis Cluster, from CLUSTER SHARDS
//! (Redis 7 and later) or CLUSTER NODES (any cluster).

use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use redis::Value;

use super::{Discovered, Failures, Node, Role, field, pairs, port, shown, tidy};
use crate::redis::conn::Conn;
use crate::redis::conn::text;
use crate::redis::endpoint::Endpoint;
use crate::redis::tls::Tls;
use crate::untrusted::clip;

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
pub(crate) async fn cluster_with_tls(
    seeds: &[String],
    tls: &Tls,
    connect_timeout: Duration,
    response_timeout: Duration,
) -> Result<Vec<Node>> {
    let seeds: Vec<Endpoint> = seeds.iter().map(|s| Endpoint::with_tls(s, tls)).collect();
    Ok(cluster_at(&seeds, connect_timeout, response_timeout)
        .await?
        .nodes)
}

/// [`cluster`] asked of `seeds` dialled as they say (TLS, credentials
/// beside the URL, the addresses a node found before may resolve to), with
/// the nodes that cannot be watched as announced.
///
/// # Errors
/// As [`cluster`].
pub(crate) async fn cluster_at(
    seeds: &[Endpoint],
    connect_timeout: Duration,
    response_timeout: Duration,
) -> Result<Discovered> {
    let mut failures = Failures::new();
    for seed in seeds {
        match ask(seed, connect_timeout, response_timeout).await {
            Ok(found) => return Ok(found),
            Err(e) => failures.push(&seed.url, &e),
        }
    }
    Err(failures.into_error("cluster seed"))
}

async fn ask(
    seed: &Endpoint,
    connect_timeout: Duration,
    response_timeout: Duration,
) -> Result<Discovered> {
    let mut conn = Conn::open(seed, connect_timeout, response_timeout)?;
    let mut shards = redis::pipe();
    // An error reply comes back as a value, keeping the connection for the
    // fallback.
    shards.ignore_errors();
    shards.cmd("CLUSTER").arg("SHARDS");
    let replies = conn.query(&shards).await?;
    let found = match replies.first() {
        Some(Value::ServerError(refused)) => {
            let refused = clip(&format!("{refused}"));
            let mut nodes = redis::pipe();
            nodes.cmd("CLUSTER").arg("NODES");
            let replies = conn
                .query(&nodes)
                .await
                .with_context(|| format!("CLUSTER SHARDS: {refused}; CLUSTER NODES"))?;
            parse_nodes(&text(replies.first())?).context("CLUSTER NODES")?
        }
        Some(reply) => {
            parse_shards(reply, seed.url.starts_with("rediss:")).context("CLUSTER SHARDS")?
        }
        None => bail!("CLUSTER SHARDS: no reply"),
    };
    if found.nodes.is_empty() {
        bail!("the cluster lists no reachable node");
    }
    Ok(found)
}

/// The nodes of a CLUSTER SHARDS reply: an array of shards, each a
/// key/value list whose `nodes` is an array of key/value lists (`id`,
/// `port`, `tls-port`, `ip`, `endpoint`, `hostname`, `role`,
/// `replication-offset`, `health`). RESP3 maps are read the same way.
///
/// A node's host is its `endpoint` (what the cluster tells clients to use:
/// `cluster-preferred-endpoint-type`), or its `ip` when the endpoint is
/// unknown (`?` or empty); a `hostname` beside an address is the name its
/// certificate is checked against. Asked over TLS (`tls`), its port is
/// `tls-port`, or `port` when it has none; asked over plain TCP, `port`,
/// and a node with only a `tls-port` (`port` 0 or absent) is skipped with
/// why. Nodes whose `health` is `fail` (Redis 7.0) or `failed` (as
/// documented) are left out, and so are nodes with neither address nor
/// port; a node of another shape is skipped with why, the others kept.
///
/// # Errors
/// The reply is not an array of shards with `nodes`.
pub(crate) fn parse_shards(reply: &Value, tls: bool) -> Result<Discovered> {
    let Value::Array(shards) = reply else {
        bail!("expected an array of shards, got {}", shown(reply));
    };
    let mut found = Vec::new();
    let mut skipped = Vec::new();
    for shard in shards {
        let shard = pairs(shard).context("shard")?;
        let Some(Value::Array(nodes)) = field(&shard, "nodes") else {
            bail!("shard without a `nodes` array");
        };
        for node in nodes {
            match shard_node(node, tls) {
                Ok(Some(node)) => found.push(node),
                Ok(None) => {}
                Err(e) => skipped.push(clip(&format!("{e:#}"))),
            }
        }
    }
    Ok(Discovered {
        nodes: tidy(found),
        skipped,
    })
}

/// One node of a CLUSTER SHARDS shard; `None` when failed or without
/// an address.
fn shard_node(node: &Value, tls: bool) -> Result<Option<Node>> {
    let node = pairs(node).context("shard node")?;
    let get = |key: &str| field(&node, key);
    let opt_text = |key: &str| get(key).map(|v| text(Some(v))).transpose();
    let health = opt_text("health")?;
    if matches!(health.as_deref(), Some("fail" | "failed")) {
        return Ok(None);
    }
    let endpoint = opt_text("endpoint")?;
    let ip = opt_text("ip")?.unwrap_or_default();
    let host = match endpoint {
        Some(e) if !e.is_empty() && e != "?" => e,
        _ => ip,
    };
    let plain = get("port").map(|p| port(Some(p))).transpose()?.unwrap_or(0);
    let secure = get("tls-port")
        .map(|p| port(Some(p)))
        .transpose()?
        .unwrap_or(0);
    let role = match text(get("role"))?.as_str() {
        "master" => Role::Master,
        "replica" | "slave" => Role::Replica,
        other => bail!("node {} has an unknown role `{}`", clip(&host), clip(other)),
    };
    let node_port = match (tls, plain, secure) {
        (true, _, p) if p != 0 => p,
        (_, p, _) if p != 0 => p,
        (false, 0, p) if p != 0 => {
            return Err(anyhow!(
                "node {}:{p} serves only TLS (tls-port {p}, no port); discover this cluster \
                 with a rediss:// seed",
                clip(&host)
            ));
        }
        _ => 0,
    };
    if host.is_empty() || node_port == 0 {
        return Ok(None);
    }
    let hostname = opt_text("hostname")?.filter(|h| !h.is_empty() && *h != host);
    let tls_name = hostname.filter(|_| host.parse::<std::net::IpAddr>().is_ok());
    Ok(Some(Node {
        host,
        port: node_port,
        role,
        tls_name,
    }))
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
pub(crate) fn parse_nodes(reply: &str) -> Result<Discovered> {
    let mut found = Vec::new();
    let mut skipped = Vec::new();
    for line in reply.lines().filter(|l| !l.trim().is_empty()) {
        match node_line(line) {
            Ok(Some(node)) => found.push(node),
            Ok(None) => {}
            Err(e) => skipped.push(clip(&format!("{e:#}"))),
        }
    }
    if found.is_empty() && !skipped.is_empty() {
        bail!("no line of the reply is a node: {}", skipped.join("; "));
    }
    Ok(Discovered {
        nodes: tidy(found),
        skipped,
    })
}

/// One line of CLUSTER NODES; `None` for a node left out.
fn node_line(line: &str) -> Result<Option<Node>> {
    let line = clip(line);
    let mut words = line.split_ascii_whitespace();
    let (Some(_id), Some(addr), Some(flags)) = (words.next(), words.next(), words.next()) else {
        bail!("short CLUSTER NODES line `{line}`");
    };
    let flags: Vec<&str> = flags.split(',').collect();
    if flags
        .iter()
        .any(|f| matches!(*f, "fail" | "handshake" | "noaddr"))
    {
        return Ok(None);
    }
    let role = if flags.contains(&"master") {
        Role::Master
    } else if flags.contains(&"slave") {
        Role::Replica
    } else {
        return Ok(None);
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
        return Ok(None);
    }
    Ok(Some(Node {
        host: host.to_owned(),
        port: node_port,
        role,
        tls_name: None,
    }))
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
            parse_shards(&reply, false).unwrap().nodes,
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
            parse_shards(&reply, false).unwrap().nodes,
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
            parse_shards(&reply, false).unwrap().nodes,
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
            parse_shards(&reply, true).unwrap().nodes,
            [node("fd00::1", 7443, Role::Master)]
        );
        // Asked over plain TCP, a TLS-only node is skipped, with why.
        let plain = parse_shards(&reply, false).unwrap();
        assert!(plain.nodes.is_empty());
        assert!(plain.skipped[0].contains("only TLS"), "{plain:?}");
    }

    /// A TLS-only node of Redis 7.0 has no `port` at all; a mixed node
    /// serves both, and the seed's scheme picks; a host name beside an
    /// address is the certificate's name.
    #[test]
    fn tls_ports_follow_the_seed_and_hostnames_name_certificates() {
        let tls_only = Value::Array(vec![
            bulk("id"),
            bulk("a"),
            bulk("tls-port"),
            Value::Int(7443),
            bulk("ip"),
            bulk("10.0.0.1"),
            bulk("endpoint"),
            bulk("10.0.0.1"),
            bulk("hostname"),
            bulk("cache-1.redis.internal"),
            bulk("role"),
            bulk("master"),
            bulk("health"),
            bulk("online"),
        ]);
        let mixed = Value::Array(vec![
            bulk("id"),
            bulk("b"),
            bulk("port"),
            Value::Int(7002),
            bulk("tls-port"),
            Value::Int(7444),
            bulk("ip"),
            bulk("10.0.0.2"),
            bulk("endpoint"),
            bulk("10.0.0.2"),
            bulk("role"),
            bulk("replica"),
            bulk("health"),
            bulk("online"),
        ]);
        let bad_host = shard_node(7003, "fe80::1%eth0", "fe80::1%eth0", "replica", "online");
        let reply = Value::Array(vec![shard(&[], vec![tls_only, mixed, bad_host])]);
        let over_tls = parse_shards(&reply, true).unwrap();
        let mut named = node("10.0.0.1", 7443, Role::Master);
        named.tls_name = Some("cache-1.redis.internal".to_owned());
        assert_eq!(over_tls.nodes[0], named);
        assert_eq!(over_tls.nodes[1], node("10.0.0.2", 7444, Role::Replica));
        let plain = parse_shards(&reply, false).unwrap();
        assert_eq!(plain.nodes[0], node("10.0.0.2", 7002, Role::Replica));
        assert_eq!(plain.skipped.len(), 1, "{plain:?}");
    }

    #[test]
    fn malformed_shards_are_errors() {
        assert!(parse_shards(&bulk("x"), false).is_err());
        assert!(
            parse_shards(
                &Value::Array(vec![Value::Array(vec![bulk("slots")])]),
                false
            )
            .is_err()
        );
        let no_role = Value::Array(vec![shard(
            &[],
            vec![Value::Array(vec![bulk("port"), Value::Int(1)])],
        )]);
        let found = parse_shards(&no_role, false).unwrap();
        assert!(
            found.nodes.is_empty() && found.skipped.len() == 1,
            "{found:?}"
        );
        let bad_port = Value::Array(vec![shard(
            &[],
            vec![shard_node(70000, "h", "h", "master", "online")],
        )]);
        let found = parse_shards(&bad_port, false).unwrap();
        assert!(found.skipped[0].contains("70000"), "{found:?}");
        assert!(
            parse_shards(&Value::Array(vec![]), false)
                .unwrap()
                .nodes
                .is_empty()
        );
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
            parse_nodes(NODES).unwrap().nodes,
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
            parse_nodes(reply).unwrap().nodes,
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
        assert!(parse_nodes("").unwrap().nodes.is_empty());
    }
}

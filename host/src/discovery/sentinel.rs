//! A Sentinel-managed master and its replicas, asked of a sentinel.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use redis::Value;

use super::{Discovered, Failures, Node, Role, field, pairs, port, shown, tidy};
use crate::redis::conn::Conn;
use crate::redis::conn::text;
use crate::redis::endpoint::Endpoint;
use crate::redis::tls::Tls;
use crate::untrusted::clip;

/// Replica flags that mean a sentinel cannot reach the replica.
const UNREACHABLE: [&str; 3] = ["s_down", "o_down", "disconnected"];

/// The master called `master` and its replicas, asked of the first of
/// `sentinels` (Redis URLs of sentinels) that answers and knows that name:
/// SENTINEL GET-MASTER-ADDR-BY-NAME for the master, SENTINEL REPLICAS
/// (SENTINEL SLAVES before Redis 5) for the replicas. Replicas the
/// sentinel flags `s_down`, `o_down` or `disconnected` are left out. The
/// master comes first, then the replicas by host and port.
///
/// # Errors
/// No sentinel answered or none knows a master called `master`: the
/// message names the master and each sentinel tried (password hidden) with
/// its error.
pub async fn sentinel(
    sentinels: &[String],
    master: &str,
    connect_timeout: Duration,
    response_timeout: Duration,
) -> Result<Vec<Node>> {
    sentinel_with_tls(
        sentinels,
        master,
        &Tls::default(),
        connect_timeout,
        response_timeout,
    )
    .await
}

/// [`sentinel`], connecting to `rediss://` sentinels with `tls`.
///
/// # Errors
/// As [`sentinel`].
pub(crate) async fn sentinel_with_tls(
    sentinels: &[String],
    master: &str,
    tls: &Tls,
    connect_timeout: Duration,
    response_timeout: Duration,
) -> Result<Vec<Node>> {
    let sentinels: Vec<Endpoint> = sentinels
        .iter()
        .map(|s| Endpoint::with_tls(s, tls))
        .collect();
    Ok(
        sentinel_at(&sentinels, master, connect_timeout, response_timeout)
            .await?
            .nodes,
    )
}

/// [`sentinel`] asked of `sentinels` dialled as they say (TLS,
/// credentials beside the URL).
///
/// # Errors
/// As [`sentinel`].
pub(crate) async fn sentinel_at(
    sentinels: &[Endpoint],
    master: &str,
    connect_timeout: Duration,
    response_timeout: Duration,
) -> Result<Discovered> {
    let mut failures = Failures::new();
    for sentinel in sentinels {
        match ask(sentinel, master, connect_timeout, response_timeout).await {
            Ok(nodes) => {
                return Ok(Discovered {
                    nodes,
                    skipped: Vec::new(),
                });
            }
            Err(e) => failures.push(&sentinel.url, &e),
        }
    }
    Err(failures.into_error(&format!("sentinel for master `{master}`")))
}

async fn ask(
    sentinel: &Endpoint,
    master: &str,
    connect_timeout: Duration,
    response_timeout: Duration,
) -> Result<Vec<Node>> {
    let mut conn = Conn::open(sentinel, connect_timeout, response_timeout)?;
    let mut pipe = redis::pipe();
    // Error replies come back as values, keeping the connection for the
    // SENTINEL SLAVES fallback.
    pipe.ignore_errors();
    pipe.cmd("SENTINEL")
        .arg("GET-MASTER-ADDR-BY-NAME")
        .arg(master);
    pipe.cmd("SENTINEL").arg("REPLICAS").arg(master);
    let replies = conn.query(&pipe).await?;
    let Some(found) =
        parse_master_addr(replies.first()).context("SENTINEL GET-MASTER-ADDR-BY-NAME")?
    else {
        bail!("knows no master called `{master}`");
    };
    let replicas = match replies.get(1) {
        Some(Value::ServerError(refused)) => {
            let refused = clip(&format!("{refused}"));
            let mut slaves = redis::pipe();
            slaves.cmd("SENTINEL").arg("SLAVES").arg(master);
            let replies = conn
                .query(&slaves)
                .await
                .with_context(|| format!("SENTINEL REPLICAS: {refused}; SENTINEL SLAVES"))?;
            parse_replicas(replies.first().unwrap_or(&Value::Nil)).context("SENTINEL SLAVES")?
        }
        Some(reply) => parse_replicas(reply).context("SENTINEL REPLICAS")?,
        None => bail!("SENTINEL REPLICAS: no reply"),
    };
    let mut nodes = vec![found];
    nodes.extend(replicas);
    Ok(tidy(nodes))
}

/// The master of a GET-MASTER-ADDR-BY-NAME reply (`[ip, port]`), or `None`
/// when the sentinel knows no master by that name (a nil reply).
///
/// # Errors
/// An error reply, or a reply of another shape.
fn parse_master_addr(reply: Option<&Value>) -> Result<Option<Node>> {
    match reply {
        Some(Value::Nil) => Ok(None),
        Some(Value::Array(addr)) if addr.len() == 2 => Ok(Some(Node {
            host: text(addr.first())?,
            port: port(addr.get(1))?,
            role: Role::Master,
            tls_name: None,
        })),
        Some(Value::ServerError(e)) => bail!("{}", clip(&e.to_string())),
        Some(other) => bail!("expected [ip, port], got {}", shown(other)),
        None => bail!("no reply"),
    }
}

/// The reachable replicas of a SENTINEL REPLICAS reply: an array of
/// key/value lists (RESP2) or maps (RESP3) with `ip`, `port` and `flags`
/// among other keys. A replica flagged `s_down`, `o_down` or
/// `disconnected` is left out.
///
/// # Errors
/// An error reply, or a reply of another shape.
pub(crate) fn parse_replicas(reply: &Value) -> Result<Vec<Node>> {
    let replicas = match reply {
        Value::Array(replicas) => replicas,
        Value::ServerError(e) => bail!("{}", clip(&e.to_string())),
        other => bail!("expected an array of replicas, got {}", shown(other)),
    };
    let mut found = Vec::new();
    for replica in replicas {
        let replica = pairs(replica).context("replica")?;
        let flags = text(field(&replica, "flags")).context("replica `flags`")?;
        if flags.split(',').any(|f| UNREACHABLE.contains(&f)) {
            continue;
        }
        found.push(Node {
            host: text(field(&replica, "ip")).context("replica `ip`")?,
            port: port(field(&replica, "port")).context("replica `port`")?,
            role: Role::Replica,
            tls_name: None,
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

    /// A SENTINEL REPLICAS entry as Redis 7.0 sends it (all bulk strings),
    /// shortened.
    fn replica(ip: &str, port: &str, flags: &str) -> Value {
        Value::Array(
            [
                "name",
                &format!("{ip}:{port}"),
                "ip",
                ip,
                "port",
                port,
                "runid",
                "0f2666a48ea436588c8342f088cfaa0d5f748e6e",
                "flags",
                flags,
                "link-pending-commands",
                "0",
                "master-link-status",
                "ok",
                "master-host",
                "127.0.0.1",
                "master-port",
                "17101",
                "slave-priority",
                "100",
            ]
            .iter()
            .map(|s| bulk(s))
            .collect(),
        )
    }

    #[test]
    fn replicas_skip_unreachable_ones() {
        let reply = Value::Array(vec![
            replica("10.0.0.3", "6379", "slave"),
            replica("10.0.0.2", "6379", "slave"),
            replica("10.0.0.4", "6379", "s_down,slave"),
            replica("10.0.0.5", "6379", "slave,o_down"),
            replica("10.0.0.6", "6379", "s_down,slave,disconnected"),
            replica("10.0.0.7", "6379", "slave,disconnected"),
            replica("10.0.0.8", "6380", "slave,promoted"),
        ]);
        assert_eq!(
            parse_replicas(&reply).unwrap(),
            [
                node("10.0.0.2", 6379, Role::Replica),
                node("10.0.0.3", 6379, Role::Replica),
                node("10.0.0.8", 6380, Role::Replica),
            ]
        );
    }

    #[test]
    fn replicas_in_resp3() {
        let key = |k: &str| Value::SimpleString(k.to_owned());
        let reply = Value::Array(vec![Value::Map(vec![
            (key("ip"), bulk("fd00::2")),
            (key("port"), Value::Int(6380)),
            (key("flags"), bulk("slave")),
        ])]);
        assert_eq!(
            parse_replicas(&reply).unwrap(),
            [node("fd00::2", 6380, Role::Replica)]
        );
        assert!(parse_replicas(&Value::Array(vec![])).unwrap().is_empty());
    }

    #[test]
    fn malformed_replicas_are_errors() {
        assert!(parse_replicas(&Value::Nil).is_err());
        let no_port = Value::Array(vec![Value::Array(vec![
            bulk("ip"),
            bulk("h"),
            bulk("flags"),
            bulk("slave"),
        ])]);
        let e = parse_replicas(&no_port).unwrap_err();
        assert!(format!("{e:#}").contains("port"), "{e:#}");
        assert!(parse_replicas(&Value::Array(vec![replica("h", "http", "slave")])).is_err());
    }

    #[test]
    fn master_addr() {
        let reply = Value::Array(vec![bulk("10.0.0.1"), bulk("6379")]);
        assert_eq!(
            parse_master_addr(Some(&reply)).unwrap(),
            Some(node("10.0.0.1", 6379, Role::Master))
        );
        assert_eq!(parse_master_addr(Some(&Value::Nil)).unwrap(), None);
        assert!(parse_master_addr(Some(&Value::Array(vec![bulk("h")]))).is_err());
        assert!(parse_master_addr(None).is_err());
    }
}

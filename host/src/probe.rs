//! Talking to Redis: named connections with explicit timeouts, and the
//! per-poll probes (PING, INFO, incremental SLOWLOG) that build a snapshot.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, anyhow, bail};
use redis::Value;
use redis::aio::MultiplexedConnection;

use crate::redact::{instance_of, redact_text};

/// Client name of every Lookout connection, so watchers can skip the host's
/// own commands in SLOWLOG.
pub const CLIENT_NAME: &str = "lookout";

/// A lazily (re)connected, named connection with connect and reply timeouts.
pub struct Conn {
    client: redis::Client,
    url: String,
    config: redis::AsyncConnectionConfig,
    /// Upper bound for connecting plus the handshake.
    connect_budget: Duration,
    conn: Option<MultiplexedConnection>,
    /// `host:port`, for messages.
    pub instance: String,
}

impl Conn {
    /// Prepares a connection to `url`; nothing is dialled yet.
    ///
    /// # Errors
    /// The URL does not parse.
    pub fn new(url: &str, connect_timeout: Duration, response_timeout: Duration) -> Result<Self> {
        let info = redis::IntoConnectionInfo::into_connection_info(url)
            .map_err(|e| anyhow!("bad Redis URL: {}", redact_text(&e.to_string(), url)))?;
        // Skip CLIENT SETINFO: it would run before CLIENT SETNAME and show up
        // in SLOWLOG as an anonymous client.
        let redis_settings = info.redis_settings().clone().set_skip_set_lib_name();
        let info = info.set_redis_settings(redis_settings);
        let client = redis::Client::open(info)?;
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(connect_timeout))
            .set_response_timeout(Some(response_timeout));
        Ok(Self {
            client,
            url: url.to_owned(),
            config,
            connect_budget: connect_timeout + response_timeout * 2,
            conn: None,
            instance: instance_of(url),
        })
    }

    /// The open connection, dialling and naming it first when needed.
    ///
    /// # Errors
    /// Connecting, authenticating or naming failed or timed out.
    pub async fn get(&mut self) -> Result<&mut MultiplexedConnection, QueryError> {
        if self.conn.is_none() {
            let dial = async {
                let mut conn = self
                    .client
                    .get_multiplexed_async_connection_with_config(&self.config)
                    .await?;
                redis::cmd("CLIENT")
                    .arg("SETNAME")
                    .arg(CLIENT_NAME)
                    .exec_async(&mut conn)
                    .await?;
                Ok::<_, redis::RedisError>(conn)
            };
            let conn = tokio::time::timeout(self.connect_budget, dial)
                .await
                .map_err(|_| QueryError {
                    link_down: true,
                    message: format!("connect to {} timed out", self.instance),
                })?
                .map_err(|e| QueryError {
                    link_down: true,
                    message: redact_text(&e.to_string(), &self.url),
                })?;
            self.conn = Some(conn);
        }
        Ok(self.conn.as_mut().expect("connected above"))
    }

    /// Whether a connection is open (it may still have been closed by the
    /// server since).
    pub fn is_connected(&self) -> bool {
        self.conn.is_some()
    }

    /// Forgets the connection after an error; the next call redials.
    pub fn reset(&mut self) {
        self.conn = None;
    }

    /// Runs a pipeline, dropping the connection when it fails.
    ///
    /// # Errors
    /// Connecting or the pipeline failed; the message has no password.
    pub async fn query(&mut self, pipe: &redis::Pipeline) -> Result<Vec<Value>, QueryError> {
        let conn = self.get().await?;
        match pipe.query_async::<Vec<Value>>(conn).await {
            Ok(values) => Ok(values),
            Err(e) => {
                let link_down = e.is_io_error()
                    || e.is_timeout()
                    || e.is_connection_dropped()
                    || e.is_connection_refusal();
                self.reset();
                Err(QueryError {
                    link_down,
                    message: redact_text(&e.to_string(), &self.url),
                })
            }
        }
    }
}

/// A failed Redis call.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct QueryError {
    /// The connection failed or timed out (as opposed to an error reply).
    pub link_down: bool,
    /// What happened, without any password.
    pub message: String,
}

/// One INFO field with its section.
#[derive(Debug, Clone, PartialEq)]
pub struct InfoField {
    /// Lower-case section name, shared by the fields of a section.
    pub section: std::sync::Arc<str>,
    /// Field name.
    pub name: String,
    /// Raw value.
    pub value: String,
}

/// One SLOWLOG entry (also a line's entry in `lookout record` output).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlowEntry {
    /// Entry id.
    pub id: u64,
    /// Start, Unix seconds.
    pub started_at: i64,
    /// Duration, microseconds.
    pub duration_us: u64,
    /// Command and arguments.
    pub args: Vec<String>,
    /// Client `ip:port`.
    pub client_addr: String,
    /// Client name.
    pub client_name: String,
}

/// What one poll saw.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// Unix milliseconds.
    pub taken_at_ms: i64,
    /// INFO fields, empty when no watcher reads INFO.
    pub info: Vec<InfoField>,
    /// New SLOWLOG entries, oldest first; `None` when no watcher reads them.
    pub slowlog: Option<Vec<SlowEntry>>,
    /// The probes that ran.
    pub probes: Probes,
}

/// Which probes a poll runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Probes {
    /// Run INFO.
    pub info: bool,
    /// Run SLOWLOG (implies INFO, for `run_id`).
    pub slowlog: bool,
}

/// Why a poll failed; decides between backoff and a short retry.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// PING failed: Redis is down or unreachable.
    #[error("redis unreachable: {0:#}")]
    Unreachable(anyhow::Error),
    /// PING answered but a later probe failed.
    #[error("probe failed: {0:#}")]
    Failed(anyhow::Error),
}

/// Runs the probes against the watched Redis and keeps the SLOWLOG
/// high-water mark so each entry is handed over once.
pub struct Prober {
    /// The watched connection.
    pub conn: Conn,
    slowlog_count: u32,
    run_id: Option<String>,
    last_slowlog_id: Option<u64>,
}

impl Prober {
    /// A prober over `conn` fetching at most `slowlog_count` entries a call.
    pub fn new(conn: Conn, slowlog_count: u32) -> Self {
        Self {
            conn,
            slowlog_count,
            run_id: None,
            last_slowlog_id: None,
        }
    }

    /// PINGs and runs the requested INFO and SLOWLOG GET 1 in one
    /// pipeline, then fetches new SLOWLOG entries if there are any.
    ///
    /// # Errors
    /// [`ProbeError::Unreachable`] when the connection fails or times out,
    /// [`ProbeError::Failed`] when Redis answers with an error or garbage.
    pub async fn poll(&mut self, probes: Probes) -> Result<Snapshot, ProbeError> {
        let probes = Probes {
            info: probes.info || probes.slowlog,
            slowlog: probes.slowlog,
        };
        let mut pipe = redis::pipe();
        pipe.cmd("PING");
        if probes.info {
            pipe.cmd("INFO");
        }
        if probes.slowlog {
            pipe.cmd("SLOWLOG").arg("GET").arg(1);
        }
        let was_connected = self.conn.is_connected();
        let replies = match self.conn.query(&pipe).await {
            // A connection the server closed while idle (`timeout` in
            // redis.conf): redial once before calling Redis unreachable.
            Err(e) if e.link_down && was_connected => self.conn.query(&pipe).await,
            other => other,
        };
        let replies = replies.map_err(|e| {
            if e.link_down {
                ProbeError::Unreachable(e.into())
            } else {
                ProbeError::Failed(e.into())
            }
        })?;
        let taken_at_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
        let mut snapshot = Snapshot {
            taken_at_ms,
            probes,
            ..Snapshot::default()
        };
        if probes.info {
            self.probe(probes, &replies, &mut snapshot)
                .await
                .map_err(ProbeError::Failed)?;
        }
        Ok(snapshot)
    }

    async fn probe(
        &mut self,
        probes: Probes,
        replies: &[Value],
        snapshot: &mut Snapshot,
    ) -> Result<()> {
        let info_text = text(replies.get(1)).context("INFO reply")?;
        snapshot.info = parse_info(&info_text);
        if !probes.slowlog {
            return Ok(());
        }
        let run_id = snapshot
            .info
            .iter()
            .find(|f| f.name == "run_id")
            .map(|f| f.value.clone());
        if run_id != self.run_id {
            // First poll, or Redis restarted: ids start again.
            self.last_slowlog_id = None;
            self.run_id = run_id;
        }
        let newest = parse_slowlog(replies.get(2).context("SLOWLOG GET 1 reply")?)?
            .first()
            .map(|e| e.id);
        let want = match (newest, self.last_slowlog_id) {
            (None, _) => 0,
            (Some(newest), Some(last)) if newest <= last => 0,
            (Some(newest), Some(last)) => u32::try_from(newest - last)
                .map_or(self.slowlog_count, |n| n.min(self.slowlog_count)),
            (Some(_), None) => self.slowlog_count,
        };
        let mut entries = if want == 0 {
            Vec::new()
        } else {
            let mut get = redis::pipe();
            get.cmd("SLOWLOG").arg("GET").arg(want);
            let replies = self.conn.query(&get).await.context("SLOWLOG GET")?;
            parse_slowlog(replies.first().context("SLOWLOG GET reply")?)?
        };
        if let Some(last) = self.last_slowlog_id {
            entries.retain(|e| e.id > last);
        }
        entries.sort_by_key(|e| e.id);
        if let Some(max) = entries.last().map(|e| e.id) {
            self.last_slowlog_id = Some(max);
        } else if self.last_slowlog_id.is_none() {
            self.last_slowlog_id = newest;
        }
        snapshot.slowlog = Some(entries);
        Ok(())
    }
}

/// Parses INFO text into fields tagged with their section.
pub fn parse_info(text: &str) -> Vec<InfoField> {
    let mut section: std::sync::Arc<str> = std::sync::Arc::from("");
    let mut fields = Vec::with_capacity(256);
    for line in text.lines() {
        let line = line.trim_end_matches('\r');
        if let Some(name) = line.strip_prefix("# ") {
            section = std::sync::Arc::from(name.trim().to_ascii_lowercase());
        } else if let Some((name, value)) = line.split_once(':') {
            fields.push(InfoField {
                section: section.clone(),
                name: name.to_owned(),
                value: value.to_owned(),
            });
        }
    }
    fields
}

fn text(value: Option<&Value>) -> Result<String> {
    match value {
        Some(Value::BulkString(bytes)) => Ok(String::from_utf8_lossy(bytes).into_owned()),
        Some(Value::SimpleString(s)) => Ok(s.clone()),
        Some(Value::VerbatimString { text, .. }) => Ok(text.clone()),
        Some(Value::ServerError(e)) => bail!("server error: {e:?}"),
        other => bail!("expected text, got {other:?}"),
    }
}

fn int(value: Option<&Value>) -> Result<i64> {
    match value {
        Some(Value::Int(n)) => Ok(*n),
        other => bail!("expected an integer, got {other:?}"),
    }
}

/// Parses a SLOWLOG GET reply.
///
/// # Errors
/// The reply is not the documented array of entries.
pub fn parse_slowlog(value: &Value) -> Result<Vec<SlowEntry>> {
    let Value::Array(items) = value else {
        bail!("SLOWLOG GET: expected an array, got {value:?}");
    };
    items
        .iter()
        .map(|item| {
            let Value::Array(parts) = item else {
                bail!("SLOWLOG entry: expected an array, got {item:?}");
            };
            let args = match parts.get(3) {
                Some(Value::Array(args)) => args
                    .iter()
                    .map(|a| text(Some(a)))
                    .collect::<Result<Vec<_>>>()?,
                other => bail!("SLOWLOG entry args: expected an array, got {other:?}"),
            };
            Ok(SlowEntry {
                id: u64::try_from(int(parts.first())?)?,
                started_at: int(parts.get(1))?,
                duration_us: u64::try_from(int(parts.get(2))?)?,
                args,
                client_addr: parts
                    .get(4)
                    .map(|v| text(Some(v)))
                    .transpose()?
                    .unwrap_or_default(),
                client_name: parts
                    .get(5)
                    .map(|v| text(Some(v)))
                    .transpose()?
                    .unwrap_or_default(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_sections_and_fields() {
        let text = "# Server\r\nredis_version:7.0.15\r\nrun_id:abc\r\n\r\n# Clients\r\nconnected_clients:3\r\n";
        let f = parse_info(text);
        assert_eq!(f.len(), 3);
        assert_eq!(&*f[0].section, "server");
        assert_eq!(&*f[2].section, "clients");
        assert_eq!(f[2].name, "connected_clients");
        assert_eq!(f[2].value, "3");
    }

    #[test]
    fn slowlog_reply_parses() {
        let bulk = |s: &str| Value::BulkString(s.as_bytes().to_vec());
        let reply = Value::Array(vec![Value::Array(vec![
            Value::Int(7),
            Value::Int(1_700_000_000),
            Value::Int(1500),
            Value::Array(vec![bulk("GET"), bulk("k")]),
            bulk("127.0.0.1:5000"),
            bulk("app"),
        ])]);
        let e = &parse_slowlog(&reply).unwrap()[0];
        assert_eq!(e.id, 7);
        assert_eq!(e.duration_us, 1500);
        assert_eq!(e.args, ["GET", "k"]);
        assert_eq!(e.client_name, "app");
        assert!(parse_slowlog(&Value::Int(1)).is_err());
    }
}

//! Connections to Redis, watched or bus: dialled lazily, named, with
//! connect and reply timeouts, redialled once when the server closed an
//! idle connection, and errors that never carry a password.

use std::time::Duration;

use anyhow::{Result, anyhow};
use redis::Value;
use redis::aio::MultiplexedConnection;

use super::redact::{instance_of, redact_text};

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
    async fn get(&mut self) -> Result<&mut MultiplexedConnection, QueryError> {
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
    fn reset(&mut self) {
        self.conn = None;
    }

    /// Runs a pipeline, dropping the connection when it fails. When a
    /// connection that was open fails at the link level (the server closed
    /// it while idle, `timeout` in redis.conf), it is redialled and the
    /// pipeline sent once more before the failure counts.
    ///
    /// # Errors
    /// Connecting or the pipeline failed; the message has no password.
    pub async fn query(&mut self, pipe: &redis::Pipeline) -> Result<Vec<Value>, QueryError> {
        let was_connected = self.is_connected();
        match self.query_once(pipe).await {
            Err(e) if e.link_down && was_connected => self.query_once(pipe).await,
            other => other,
        }
    }

    async fn query_once(&mut self, pipe: &redis::Pipeline) -> Result<Vec<Value>, QueryError> {
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

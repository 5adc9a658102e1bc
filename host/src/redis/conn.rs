//! Connections to Redis, watched or bus: dialled lazily, named, with
//! connect and reply timeouts, redialled once when the server closed an
//! idle connection, and errors that never carry a password. Each
//! connection learns the address the server sees it from (CLIENT INFO),
//! so the host's own commands can be told apart in SLOWLOG without
//! trusting a client name anyone can set.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;

use anyhow::Result;
use redis::Value;
use redis::aio::MultiplexedConnection;

use super::redact::{instance_of, redact_text};
use super::tls::Tls;

/// Client name of every Lookout connection, shown in CLIENT LIST.
pub const CLIENT_NAME: &str = "lookout";

/// How many of this process's recent connections are remembered.
const OWN_REMEMBERED: usize = 256;

/// Client addresses (as the servers see them) of this process's recent
/// connections, watched and bus alike.
static OWN: Mutex<VecDeque<String>> = Mutex::new(VecDeque::new());

/// Whether a SLOWLOG entry from `client_addr` named `client_name` came from
/// one of this process's connections. The address of a TCP connection is
/// unique while it is open; a Unix socket's is shared by all its clients,
/// so there the name must match too.
pub fn is_own(client_addr: &str, client_name: &str) -> bool {
    if client_name != CLIENT_NAME {
        return false;
    }
    let own = OWN
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    own.iter().any(|a| a == client_addr)
}

fn remember_own(addr: String) {
    let mut own = OWN
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if own.iter().any(|a| *a == addr) {
        return;
    }
    if own.len() == OWN_REMEMBERED {
        own.pop_front();
    }
    own.push_back(addr);
}

/// The `addr=` field of a CLIENT INFO line.
fn client_addr(info: &str) -> Option<&str> {
    info.split_ascii_whitespace()
        .find_map(|kv| kv.strip_prefix("addr="))
}

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
    /// The server refused CLIENT INFO once; said once.
    unidentified: bool,
    /// TLS without certificate verification: said on every connect.
    insecure: bool,
}

impl Conn {
    /// Prepares a connection to `url`; nothing is dialled yet.
    ///
    /// # Errors
    /// The URL does not parse.
    pub fn new(url: &str, connect_timeout: Duration, response_timeout: Duration) -> Result<Self> {
        Self::with_tls(url, &Tls::default(), connect_timeout, response_timeout)
    }

    /// Prepares a connection to `url` with `tls` (for a `rediss://` URL);
    /// nothing is dialled yet.
    ///
    /// # Errors
    /// The URL does not parse, or a TLS file cannot be read; the message
    /// names the key and the file.
    pub fn with_tls(
        url: &str,
        tls: &Tls,
        connect_timeout: Duration,
        response_timeout: Duration,
    ) -> Result<Self> {
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(connect_timeout))
            .set_response_timeout(Some(response_timeout));
        let (client, config) = tls.client(url, config)?;
        Ok(Self {
            client,
            url: url.to_owned(),
            config,
            connect_budget: connect_timeout + response_timeout * 2,
            conn: None,
            instance: instance_of(url),
            unidentified: false,
            insecure: url.starts_with("rediss:") && tls.insecure(),
        })
    }

    /// The open connection, dialling, naming and identifying it first when
    /// needed.
    ///
    /// # Errors
    /// Connecting or authenticating failed or timed out.
    async fn get(&mut self) -> Result<&mut MultiplexedConnection, QueryError> {
        if self.conn.is_none() {
            let dial = async {
                let mut conn = self
                    .client
                    .get_multiplexed_async_connection_with_config(&self.config)
                    .await?;
                let mut hello = redis::pipe();
                hello.ignore_errors();
                hello.cmd("CLIENT").arg("SETNAME").arg(CLIENT_NAME);
                hello.cmd("CLIENT").arg("INFO");
                let replies: Vec<Value> = hello.query_async(&mut conn).await?;
                Ok::<_, redis::RedisError>((conn, replies))
            };
            let (conn, replies) = tokio::time::timeout(self.connect_budget, dial)
                .await
                .map_err(|_| QueryError {
                    link_down: true,
                    code: None,
                    message: format!("connect to {} timed out", self.instance),
                })?
                .map_err(|e| self.error(&e))?;
            for reply in &replies {
                if let Value::ServerError(e) = reply
                    && matches!(e.code(), "NOAUTH" | "WRONGPASS")
                {
                    return Err(QueryError {
                        link_down: false,
                        code: Some(e.code().to_owned()),
                        message: redact_text(&format!("{e:?}"), &self.url),
                    });
                }
            }
            let info = text(replies.get(1)).ok();
            match (info.as_deref().and_then(client_addr), replies.get(1)) {
                (Some(addr), _) => remember_own(addr.to_owned()),
                (None, other) if !self.unidentified => {
                    self.unidentified = true;
                    tracing::warn!(
                        "redis at {} refused CLIENT SETNAME/CLIENT INFO ({}): its own commands \
                         cannot be told apart in SLOWLOG; allow +client|setname +client|info",
                        self.instance,
                        other.map_or_else(|| "no reply".to_owned(), |v| format!("{v:?}"))
                    );
                }
                _ => {}
            }
            if self.insecure {
                tracing::warn!(
                    "connected to {} over TLS without verifying its certificate (tls.insecure)",
                    self.instance
                );
            }
            self.conn = Some(conn);
        }
        Ok(self.conn.as_mut().expect("connected above"))
    }

    /// A failed call as a [`QueryError`]; dropping the connection is the
    /// caller's business.
    fn error(&self, e: &redis::RedisError) -> QueryError {
        let code = if e.kind() == redis::ErrorKind::AuthenticationFailed {
            Some("WRONGPASS".to_owned())
        } else {
            e.code().map(str::to_owned)
        };
        let mut message = redact_text(&e.to_string(), &self.url);
        if let Some(hint) = super::tls::hint(&message) {
            message = format!("TLS: {message}; {hint}");
        }
        QueryError {
            link_down: code.is_none()
                && (e.is_io_error()
                    || e.is_timeout()
                    || e.is_connection_dropped()
                    || e.is_connection_refusal()),
            code,
            message,
        }
    }

    /// The URL with its password hidden, for messages.
    pub fn redacted_url(&self) -> String {
        super::redact::redact_url(&self.url)
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
                let error = self.error(&e);
                self.reset();
                Err(error)
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
    /// The server's error code (`NOPERM`, `OOM`...), `WRONGPASS` for any
    /// refused authentication.
    pub code: Option<String>,
    /// What happened, without any password.
    pub message: String,
}

impl QueryError {
    /// The server refused the credentials or the command for this user:
    /// a configuration error, not an outage.
    pub fn is_refusal(&self) -> bool {
        matches!(
            self.code.as_deref(),
            Some("WRONGPASS" | "NOAUTH" | "NOPERM")
        )
    }
}

/// The text of a reply (bulk, simple or verbatim string).
pub(crate) fn text(value: Option<&Value>) -> anyhow::Result<String> {
    match value {
        Some(Value::BulkString(bytes)) => Ok(String::from_utf8_lossy(bytes).into_owned()),
        Some(Value::SimpleString(s)) => Ok(s.clone()),
        Some(Value::VerbatimString { text, .. }) => Ok(text.clone()),
        Some(Value::ServerError(e)) => anyhow::bail!("server error: {e:?}"),
        other => anyhow::bail!("expected text, got {other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_info_addr() {
        let line = "id=7 addr=127.0.0.1:50312 laddr=127.0.0.1:6379 fd=8 name=lookout age=0";
        assert_eq!(client_addr(line), Some("127.0.0.1:50312"));
        assert_eq!(client_addr("id=7 laddr=x"), None);
    }

    #[test]
    fn own_connections_need_address_and_name() {
        remember_own("10.0.0.9:41000".to_owned());
        assert!(is_own("10.0.0.9:41000", CLIENT_NAME));
        assert!(!is_own("10.0.0.9:41000", "app"), "another name");
        assert!(
            !is_own("10.0.0.9:41001", CLIENT_NAME),
            "a client calling itself lookout"
        );
    }
}

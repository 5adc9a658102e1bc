//! Connections to Redis, watched or bus: dialled lazily, named, with
//! connect and reply timeouts, redialled once when the server closed an
//! idle connection, and errors that never carry a password. Each
//! connection learns its client id and the address the server sees it
//! from (CLIENT INFO), so the host's own commands can be told apart in
//! SLOWLOG, and its own connections left out of CLIENT LIST, without
//! trusting a client name anyone can set. A connection's reads and writes
//! run inside the calls that use it, on the caller's task: no task of its
//! own, no hop between tasks for a reply.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use anyhow::Result;
use redis::Value;

use super::endpoint::Endpoint;
use super::error::{ServerKind, io_kind, tls_error};
use super::link::Link;
use super::redact::{instance_of, redact_text};
use super::tls::TlsFault;

/// Client name of every Lookout connection, shown in CLIENT LIST.
pub(crate) const CLIENT_NAME: &str = "lookout";

/// How many recent connections are remembered per server.
const OWN_PER_SERVER: usize = 4096;

/// One of this process's connections as a server sees it (CLIENT INFO).
#[derive(Debug, PartialEq, Eq)]
struct Own {
    /// `addr=`: the client address.
    addr: String,
    /// `id=`: the client id, unique while the server runs.
    id: Option<u64>,
}

/// This process's recent connections, watched and bus alike, by the
/// server's own address (CLIENT INFO `laddr`).
static OWN: Mutex<Option<HashMap<String, VecDeque<Own>>>> = Mutex::new(None);

/// Whether a SLOWLOG entry of `server` from `client_addr` named
/// `client_name` came from one of this process's connections. The address
/// of a TCP connection is unique while it is open; a Unix socket's is
/// shared by all its clients, so there the name must match too.
pub(crate) fn is_own(server: &str, client_addr: &str, client_name: &str) -> bool {
    if client_name != CLIENT_NAME {
        return false;
    }
    let own = OWN
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    own.as_ref()
        .and_then(|m| m.get(server))
        .is_some_and(|conns| conns.iter().any(|c| c.addr == client_addr))
}

/// Whether the client `id` at `client_addr` of a CLIENT LIST of `server`
/// (its `laddr`) is one of this process's connections. The id tells it
/// apart from any other client, whatever its name, even on a Unix socket;
/// the address too guards against an id of a server since restarted.
pub(crate) fn is_own_client(server: &str, id: u64, client_addr: &str) -> bool {
    let own = OWN
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    own.as_ref()
        .and_then(|m| m.get(server))
        .is_some_and(|conns| {
            conns
                .iter()
                .any(|c| c.id == Some(id) && c.addr == client_addr)
        })
}

/// Remembers a connection to `server` (its `laddr`) from `addr` with
/// client `id`; the oldest of that server is forgotten beyond
/// [`OWN_PER_SERVER`].
pub(super) fn remember_own(server: &str, addr: &str, id: Option<u64>) {
    let mut own = OWN
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let conns = own
        .get_or_insert_with(HashMap::new)
        .entry(server.to_owned())
        .or_default();
    if conns.iter().any(|c| c.addr == addr && c.id == id) {
        return;
    }
    if conns.len() == OWN_PER_SERVER {
        conns.pop_front();
    }
    conns.push_back(Own {
        addr: addr.to_owned(),
        id,
    });
}

/// A connection as a CLIENT INFO line describes it.
#[derive(Debug, PartialEq, Eq)]
struct Identity<'a> {
    /// `id=`.
    id: Option<u64>,
    /// `addr=`: the client's address as the server sees it.
    addr: Option<&'a str>,
    /// `laddr=`: the server's own address for this connection.
    laddr: Option<&'a str>,
}

/// The `id=`, `addr=` and `laddr=` fields of a CLIENT INFO line.
fn identity(info: &str) -> Identity<'_> {
    let field = |key: &str| {
        info.split_ascii_whitespace()
            .find_map(|kv| kv.strip_prefix(key))
    };
    Identity {
        id: field("id=").and_then(|id| id.parse().ok()),
        addr: field("addr="),
        laddr: field("laddr="),
    }
}

/// A lazily (re)connected, named connection with connect and reply timeouts.
pub struct Conn {
    endpoint: Endpoint,
    /// Upper bound for the dial (TCP and TLS).
    connect_timeout: Duration,
    /// Upper bound for a call's replies.
    response_timeout: Duration,
    /// Upper bound for connecting plus the handshake.
    connect_budget: Duration,
    conn: Option<Link>,
    /// `host:port`, for messages.
    pub instance: String,
    /// The server's address as it sees itself (CLIENT INFO `laddr`), once
    /// known: the key of this process's own connections to it.
    server: Option<String>,
    /// The server refused CLIENT INFO once; said once.
    unidentified: bool,
    /// TLS without certificate verification: said on every connect.
    insecure: bool,
    /// Whether the last dial presented a client certificate.
    client_cert: bool,
}

impl Conn {
    /// Prepares a connection to `url`; nothing is dialled yet.
    ///
    /// # Errors
    /// The URL does not parse.
    pub fn new(url: &str, connect_timeout: Duration, response_timeout: Duration) -> Result<Self> {
        Self::open(&Endpoint::url(url), connect_timeout, response_timeout)
    }

    /// Prepares a connection to `endpoint`; nothing is dialled yet. Its
    /// files (certificates, key, password) are read now to check them,
    /// and again at every dial.
    ///
    /// # Errors
    /// The URL does not parse, or a file cannot be read; the message
    /// names the key and the file.
    pub fn open(
        endpoint: &Endpoint,
        connect_timeout: Duration,
        response_timeout: Duration,
    ) -> Result<Self> {
        endpoint.dialer()?;
        let url = &endpoint.url;
        let insecure =
            url.starts_with("rediss:") && (endpoint.tls.insecure() || url.ends_with("#insecure"));
        Ok(Self {
            endpoint: endpoint.clone(),
            connect_timeout,
            response_timeout,
            connect_budget: connect_timeout + response_timeout * 2,
            conn: None,
            instance: instance_of(url),
            server: None,
            unidentified: false,
            insecure,
            client_cert: false,
        })
    }

    /// The open connection, dialling, naming and identifying it first when
    /// needed. The client is built anew for each dial, so certificate,
    /// key and password files changed since are read.
    ///
    /// # Errors
    /// Connecting or authenticating failed or timed out.
    async fn get(&mut self) -> Result<&mut Link, QueryError> {
        if self.conn.is_none() {
            let dialer = self.endpoint.dialer().map_err(|e| {
                QueryError::down(redact_text(&format!("{e:#}"), &self.endpoint.url))
            })?;
            self.client_cert = dialer.client_cert;
            let mut hello = redis::pipe();
            hello.cmd("CLIENT").arg("SETNAME").arg(CLIENT_NAME);
            hello.cmd("CLIENT").arg("INFO");
            let dial = async {
                let stream = tokio::time::timeout(self.connect_timeout, dialer.dial())
                    .await
                    .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))??;
                Link::open(
                    stream,
                    dialer.info.redis_settings(),
                    self.response_timeout,
                    &hello,
                )
                .await
            };
            let (conn, replies) = tokio::time::timeout(self.connect_budget, dial)
                .await
                .map_err(|_| QueryError::down(format!("connect to {} timed out", self.instance)))?
                .map_err(|e| self.dial_error(&e))?;
            for reply in &replies {
                if let Value::ServerError(e) = reply {
                    let kind = ServerKind::from(e);
                    if kind.is_auth() {
                        return Err(QueryError::reply(Some(kind), self.shown(&format!("{e:?}"))));
                    }
                }
            }
            let info = text(replies.get(1)).ok();
            let seen = info.as_deref().map(identity);
            match (seen, replies.get(1)) {
                (
                    Some(Identity {
                        id,
                        addr: Some(addr),
                        laddr,
                    }),
                    _,
                ) => {
                    let server = laddr.unwrap_or(&self.instance).to_owned();
                    remember_own(&server, addr, id);
                    self.server = Some(server);
                }
                (_, other) if !self.unidentified => {
                    self.unidentified = true;
                    tracing::warn!(
                        "redis at {} refused CLIENT SETNAME/CLIENT INFO ({}): its own commands \
                         cannot be told apart in SLOWLOG; allow +client|setname +client|info",
                        self.instance,
                        other.map_or_else(
                            || "no reply".to_owned(),
                            |v| crate::untrusted::clip(&format!("{v:?}"))
                        )
                    );
                }
                _ => {}
            }
            if self.insecure {
                tracing::warn!(
                    "connected to {} over TLS without verifying its certificate (tls.insecure or \
                     #insecure in the URL)",
                    self.instance
                );
            }
            self.conn = Some(conn);
        }
        Ok(self.conn.as_mut().expect("connected above"))
    }

    /// Whether a SLOWLOG entry of the server this connection reaches,
    /// from `client_addr` named `client_name`, came from one of this
    /// process's connections to that server.
    pub fn is_own(&self, client_addr: &str, client_name: &str) -> bool {
        let server = self.server.as_deref().unwrap_or(&self.instance);
        is_own(server, client_addr, client_name)
    }

    /// Server-controlled text for a message: passwords of this URL
    /// hidden, escaped, at most 1 KiB.
    fn shown(&self, text: &str) -> String {
        crate::untrusted::clip(&redact_text(text, &self.endpoint.url))
    }

    /// A failed dial: as [`Self::error`], and when a TLS server closed the
    /// connection during or right after the handshake while no client
    /// certificate was presented, a hint that it may want one.
    fn dial_error(&self, e: &redis::RedisError) -> QueryError {
        let mut error = self.error(e);
        // A peer that went away: a closed pipe or socket, or a TLS stream
        // ended without its close_notify.
        let closed = matches!(
            io_kind(e),
            Some(
                std::io::ErrorKind::BrokenPipe
                    | std::io::ErrorKind::ConnectionReset
                    | std::io::ErrorKind::ConnectionAborted
                    | std::io::ErrorKind::UnexpectedEof
            )
        );
        let tls = self.endpoint.url.starts_with("rediss:");
        if !tls && closed && error.link_down {
            error.message = format!(
                "{}; the server closed the connection: if it serves only TLS, write rediss://",
                error.message
            );
        }
        if tls && !self.client_cert && closed && error.tls.is_none() {
            let fault = TlsFault::ClosedWithoutClientCert;
            error.message = format!("{}; {}", error.message, fault.hint());
            error.tls = Some(fault);
        }
        error
    }

    /// A failed call as a [`QueryError`]; dropping the connection is the
    /// caller's business.
    fn error(&self, e: &redis::RedisError) -> QueryError {
        let kind = ServerKind::of_error(e);
        let tls = tls_error(e).and_then(TlsFault::of);
        let mut message = self.shown(&e.to_string());
        if let Some(fault) = tls {
            message = format!("TLS: {message}; {}", fault.hint());
        }
        QueryError {
            link_down: kind.is_none()
                && (e.is_io_error()
                    || e.is_timeout()
                    || e.is_connection_dropped()
                    || e.is_connection_refusal()),
            kind,
            tls,
            message,
        }
    }

    /// The URL with its password hidden, for messages.
    pub fn redacted_url(&self) -> String {
        super::redact::redact_url(&self.endpoint.url)
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
        let link = self.get().await?;
        match pipe.query_async::<Vec<Value>>(link).await {
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
    /// What the server's error reply said (`NOPERM`, `OOM`...);
    /// [`ServerKind::WrongPass`] for any refused authentication.
    pub kind: Option<ServerKind>,
    /// The TLS problem behind a failed connection, when a `tls.*` key
    /// fixes it (the message names the key).
    pub tls: Option<TlsFault>,
    /// What happened, without any password.
    pub message: String,
}

impl QueryError {
    /// The connection failed: `message` says how.
    #[must_use]
    pub fn down(message: String) -> Self {
        Self {
            link_down: true,
            kind: None,
            tls: None,
            message,
        }
    }

    /// The server answered, with an error reply of `kind` or with one
    /// that makes no sense: `message` says which.
    #[must_use]
    pub fn reply(kind: Option<ServerKind>, message: String) -> Self {
        Self {
            link_down: false,
            kind,
            tls: None,
            message,
        }
    }

    /// The server refused the credentials or the command for this user:
    /// a configuration error, not an outage.
    pub fn is_refusal(&self) -> bool {
        self.kind.as_ref().is_some_and(ServerKind::is_refusal)
    }
}

/// The text of a reply (bulk, simple or verbatim string).
pub(crate) fn text(value: Option<&Value>) -> anyhow::Result<String> {
    match value {
        Some(Value::BulkString(bytes)) => Ok(String::from_utf8_lossy(bytes).into_owned()),
        Some(Value::SimpleString(s)) => Ok(s.clone()),
        Some(Value::VerbatimString { text, .. }) => Ok(text.clone()),
        Some(Value::ServerError(e)) => {
            anyhow::bail!(
                "server error: {}",
                crate::untrusted::clip(&format!("{e:?}"))
            )
        }
        other => anyhow::bail!(
            "expected text, got {}",
            crate::untrusted::clip(&format!("{other:?}"))
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_info_identity() {
        let line = "id=7 addr=127.0.0.1:50312 laddr=127.0.0.1:6379 fd=8 name=lookout age=0";
        assert_eq!(
            identity(line),
            Identity {
                id: Some(7),
                addr: Some("127.0.0.1:50312"),
                laddr: Some("127.0.0.1:6379")
            }
        );
        assert_eq!(
            identity("id=x y=z"),
            Identity {
                id: None,
                addr: None,
                laddr: None
            }
        );
    }

    #[test]
    fn own_connections_need_server_address_and_name() {
        remember_own("10.0.0.1:6379", "10.0.0.9:41000", Some(3));
        assert!(is_own("10.0.0.1:6379", "10.0.0.9:41000", CLIENT_NAME));
        assert!(
            !is_own("10.0.0.1:6379", "10.0.0.9:41000", "app"),
            "another name"
        );
        assert!(
            !is_own("10.0.0.1:6379", "10.0.0.9:41001", CLIENT_NAME),
            "a client calling itself lookout"
        );
        assert!(
            !is_own("10.0.0.2:6379", "10.0.0.9:41000", CLIENT_NAME),
            "another server"
        );
    }

    fn conn(url: &str) -> Conn {
        Conn::new(url, Duration::from_secs(1), Duration::from_secs(1)).unwrap()
    }

    /// A TLS stream failed with `e`, as tokio-rustls and redis-rs report it.
    fn tls_failed(e: rustls::Error) -> redis::RedisError {
        std::io::Error::new(std::io::ErrorKind::InvalidData, e).into()
    }

    #[test]
    fn tls_failures_are_hinted_by_their_type() {
        let tls = conn("rediss://127.0.0.1:1");
        let unknown = rustls::CertificateError::UnknownIssuer;
        let e = tls.dial_error(&tls_failed(unknown.into()));
        assert_eq!(e.tls, Some(TlsFault::UnknownIssuer));
        assert_eq!(
            e.message,
            "TLS: invalid peer certificate: UnknownIssuer; the server's certificate is not \
             signed by a trusted CA: set tls.ca_file to its CA"
        );
        assert!(e.link_down && e.kind.is_none());
        let wanted = rustls::AlertDescription::CertificateRequired;
        let e = tls.error(&tls_failed(rustls::Error::AlertReceived(wanted)));
        assert_eq!(e.tls, Some(TlsFault::ClientCertWanted));
        assert_eq!(
            e.message,
            "TLS: received fatal alert: CertificateRequired; the server asks for a client \
             certificate: set tls.cert_file and tls.key_file"
        );

        let closed = redis::RedisError::from(std::io::Error::from(std::io::ErrorKind::BrokenPipe));
        let e = tls.dial_error(&closed);
        assert_eq!(e.tls, Some(TlsFault::ClosedWithoutClientCert));
        assert_eq!(
            e.message,
            "broken pipe; the server closed the TLS connection: it may require a client \
             certificate (set tls.cert_file and tls.key_file)"
        );
        let e = conn("redis://127.0.0.1:1").dial_error(&closed);
        assert_eq!(e.tls, None);
        assert_eq!(
            e.message,
            "broken pipe; the server closed the connection: if it serves only TLS, write rediss://"
        );
        let refused =
            redis::RedisError::from(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        let e = tls.dial_error(&refused);
        assert_eq!((e.tls, e.link_down), (None, true), "{}", e.message);

        // A reply's words are not a TLS failure.
        let reply = redis::parse_redis_value(b"-ERR client certificate required alert\r\n")
            .unwrap()
            .extract_error()
            .unwrap_err();
        let e = tls.dial_error(&reply);
        assert_eq!(
            (e.tls, e.kind, e.link_down),
            (None, Some(ServerKind::Err), false)
        );
        assert!(!e.message.starts_with("TLS"), "{}", e.message);
    }

    #[test]
    fn refusals_are_known_by_their_kind() {
        let tls = conn("redis://127.0.0.1:1");
        let auth = redis::RedisError::from((
            redis::ErrorKind::AuthenticationFailed,
            "Password authentication failed",
        ));
        let e = tls.error(&auth);
        assert_eq!(e.kind, Some(ServerKind::WrongPass));
        assert!(e.is_refusal() && !e.link_down);
        let oom = redis::parse_redis_value(b"-OOM full\r\n")
            .unwrap()
            .extract_error()
            .unwrap_err();
        let e = tls.error(&oom);
        assert_eq!(e.kind, Some(ServerKind::Oom));
        assert!(!e.is_refusal());
    }

    #[test]
    fn thousands_of_servers_are_all_remembered() {
        for i in 0..10_000 {
            remember_own(
                &format!("10.1.{}.{}:6379", i / 250, i % 250),
                "10.9.9.9:5000",
                Some(i),
            );
        }
        assert!(is_own("10.1.0.0:6379", "10.9.9.9:5000", CLIENT_NAME));
        assert!(is_own("10.1.39.249:6379", "10.9.9.9:5000", CLIENT_NAME));
        assert!(is_own_client("10.1.39.249:6379", 9_999, "10.9.9.9:5000"));
    }

    /// In CLIENT LIST, this process's connections are known by id and
    /// address on their server; on a Unix socket, where every client has
    /// the same address, by id. Only the newest are remembered.
    #[test]
    fn own_clients_are_known_by_id_per_server() {
        let server = "10.0.0.3:6379";
        remember_own(server, "10.0.0.9:41000", Some(11));
        assert!(is_own_client(server, 11, "10.0.0.9:41000"));
        assert!(!is_own_client(server, 12, "10.0.0.9:41000"), "another id");
        assert!(
            !is_own_client(server, 11, "10.0.0.9:41001"),
            "the id of a server since restarted, from another address"
        );
        assert!(!is_own_client("10.0.0.4:6379", 11, "10.0.0.9:41000"));

        let socket = "/run/redis-own-test.sock";
        for id in 1..=3 {
            remember_own(socket, "/run/redis-own-test.sock:0", Some(id));
        }
        for id in 1..=3 {
            assert!(is_own_client(socket, id, "/run/redis-own-test.sock:0"));
        }
        assert!(!is_own_client(socket, 4, "/run/redis-own-test.sock:0"));

        let busy = "10.0.0.5:6379";
        let count = u64::try_from(OWN_PER_SERVER).unwrap() + 1;
        for id in 1..=count {
            remember_own(busy, "10.0.0.9:41000", Some(id));
        }
        assert!(!is_own_client(busy, 1, "10.0.0.9:41000"), "forgotten");
        assert!(is_own_client(busy, 2, "10.0.0.9:41000"));
        assert!(is_own_client(busy, count, "10.0.0.9:41000"));
    }
}

//! Redis errors, typed: the kind of an error reply, read once from its
//! code (redis-rs's own kinds and the codes it leaves as extensions), the
//! one table of errors that come only as `ERR <message>`, and the I/O and
//! TLS errors under a failed connection. This is the only place that
//! reads an error's text for what it means.

use std::error::Error;
use std::sync::Arc;

use redis::{ErrorKind, RedisError, ServerError, ServerErrorKind, Value};

/// What an error reply says, by its code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerKind {
    /// `NOAUTH`: the server wants a password.
    NoAuth,
    /// `WRONGPASS`, or any authentication the server refused.
    WrongPass,
    /// `NOPERM`: the ACL user may not run the command or touch the key.
    NoPerm,
    /// `OOM`: maxmemory reached and nothing (more) to evict.
    Oom,
    /// `READONLY`: a replica refusing a write.
    ReadOnly,
    /// `LOADING`: the server is loading its data set.
    Loading,
    /// `BUSY`: a script or function is running.
    Busy,
    /// `MISCONF`: writes refused after a failed RDB snapshot.
    MisConf,
    /// `MASTERDOWN`: a replica that lost its primary.
    MasterDown,
    /// `MOVED`: the key's slot is served by another cluster node.
    Moved,
    /// `ASK`: the key's slot is moving to another cluster node.
    Ask,
    /// `TRYAGAIN`: a cluster slot in the middle of a move.
    TryAgain,
    /// `CLUSTERDOWN`: the cluster cannot serve the slot.
    ClusterDown,
    /// `CROSSSLOT`: keys of one command in several slots.
    CrossSlot,
    /// `WRONGTYPE`: the key holds another type.
    WrongType,
    /// `NOGROUP`: no such stream or consumer group.
    NoGroup,
    /// `BUSYGROUP`: the consumer group exists already.
    BusyGroup,
    /// `NOSCRIPT`: no script with that digest.
    NoScript,
    /// `EXECABORT`: a transaction discarded.
    ExecAbort,
    /// `ERR no such key`.
    NoSuchKey,
    /// `ERR This instance has cluster support disabled`.
    ClusterDisabled,
    /// `ERR unknown command` or `ERR unknown subcommand`.
    UnknownCommand,
    /// Any other `ERR`.
    Err,
    /// Any other code, as the server sent it.
    Other(String),
}

/// Errors that come only as `ERR <message>`: words of Redis's message
/// (compared without regard to case) and the kind they mean.
const ERR_MESSAGES: [(&str, ServerKind); 4] = [
    ("no such key", ServerKind::NoSuchKey),
    ("cluster support disabled", ServerKind::ClusterDisabled),
    ("unknown command", ServerKind::UnknownCommand),
    ("unknown subcommand", ServerKind::UnknownCommand),
];

impl ServerKind {
    /// The kind of an error reply with `code` and the rest of its line,
    /// `detail`.
    #[must_use]
    pub fn from_code(code: &str, detail: Option<&str>) -> Self {
        match code {
            "ERR" => Self::of_err(detail),
            "NOAUTH" => Self::NoAuth,
            "WRONGPASS" => Self::WrongPass,
            "NOPERM" => Self::NoPerm,
            "OOM" => Self::Oom,
            "READONLY" => Self::ReadOnly,
            "LOADING" => Self::Loading,
            "BUSY" => Self::Busy,
            "MISCONF" => Self::MisConf,
            "MASTERDOWN" => Self::MasterDown,
            "MOVED" => Self::Moved,
            "ASK" => Self::Ask,
            "TRYAGAIN" => Self::TryAgain,
            "CLUSTERDOWN" => Self::ClusterDown,
            "CROSSSLOT" => Self::CrossSlot,
            "WRONGTYPE" => Self::WrongType,
            "NOGROUP" => Self::NoGroup,
            "BUSYGROUP" => Self::BusyGroup,
            "NOSCRIPT" => Self::NoScript,
            "EXECABORT" => Self::ExecAbort,
            other => Self::Other(other.to_owned()),
        }
    }

    /// An `ERR` reply, by its message: the one table above.
    fn of_err(detail: Option<&str>) -> Self {
        let detail = detail.unwrap_or_default().to_ascii_lowercase();
        ERR_MESSAGES
            .iter()
            .find(|(words, _)| detail.contains(words))
            .map_or(Self::Err, |(_, kind)| kind.clone())
    }

    /// A kind redis-rs knows, the reply's `code` and `detail` beside it.
    fn known(kind: ServerErrorKind, code: &str, detail: Option<&str>) -> Self {
        match kind {
            ServerErrorKind::ResponseError => Self::of_err(detail),
            ServerErrorKind::BusyLoading => Self::Loading,
            ServerErrorKind::NoPerm => Self::NoPerm,
            ServerErrorKind::ReadOnly => Self::ReadOnly,
            ServerErrorKind::MasterDown => Self::MasterDown,
            ServerErrorKind::Moved => Self::Moved,
            ServerErrorKind::Ask => Self::Ask,
            ServerErrorKind::TryAgain => Self::TryAgain,
            ServerErrorKind::ClusterDown => Self::ClusterDown,
            ServerErrorKind::CrossSlot => Self::CrossSlot,
            ServerErrorKind::NoScript => Self::NoScript,
            ServerErrorKind::ExecAbort => Self::ExecAbort,
            _ => Self::from_code(code, detail),
        }
    }

    /// The kind of a failed call, when the server answered it with an
    /// error (a refused authentication is [`ServerKind::WrongPass`]);
    /// `None` for a failure of the link or the client.
    #[must_use]
    pub fn of_error(e: &RedisError) -> Option<Self> {
        match e.kind() {
            ErrorKind::AuthenticationFailed => Some(Self::WrongPass),
            ErrorKind::Server(kind) => {
                Some(Self::known(kind, e.code().unwrap_or("ERR"), e.detail()))
            }
            _ => e.code().map(|code| Self::from_code(code, e.detail())),
        }
    }

    /// The kind of a reply, when it is an error reply.
    #[must_use]
    pub fn of_reply(reply: Option<&Value>) -> Option<Self> {
        match reply {
            Some(Value::ServerError(e)) => Some(Self::from(e)),
            _ => None,
        }
    }

    /// The code as the server sends it (`ERR` for the kinds of the `ERR`
    /// table).
    #[must_use]
    pub fn code(&self) -> &str {
        match self {
            Self::NoAuth => "NOAUTH",
            Self::WrongPass => "WRONGPASS",
            Self::NoPerm => "NOPERM",
            Self::Oom => "OOM",
            Self::ReadOnly => "READONLY",
            Self::Loading => "LOADING",
            Self::Busy => "BUSY",
            Self::MisConf => "MISCONF",
            Self::MasterDown => "MASTERDOWN",
            Self::Moved => "MOVED",
            Self::Ask => "ASK",
            Self::TryAgain => "TRYAGAIN",
            Self::ClusterDown => "CLUSTERDOWN",
            Self::CrossSlot => "CROSSSLOT",
            Self::WrongType => "WRONGTYPE",
            Self::NoGroup => "NOGROUP",
            Self::BusyGroup => "BUSYGROUP",
            Self::NoScript => "NOSCRIPT",
            Self::ExecAbort => "EXECABORT",
            Self::NoSuchKey | Self::ClusterDisabled | Self::UnknownCommand | Self::Err => "ERR",
            Self::Other(code) => code,
        }
    }

    /// The server refused the credentials (`NOAUTH`, `WRONGPASS`).
    #[must_use]
    pub fn is_auth(&self) -> bool {
        matches!(self, Self::NoAuth | Self::WrongPass)
    }

    /// The server refused the credentials or the command for this user:
    /// a configuration error, not an outage.
    #[must_use]
    pub fn is_refusal(&self) -> bool {
        self.is_auth() || *self == Self::NoPerm
    }
}

impl From<&ServerError> for ServerKind {
    fn from(e: &ServerError) -> Self {
        match e.kind() {
            Some(kind) => Self::known(kind, e.code(), e.details()),
            None => Self::from_code(e.code(), e.details()),
        }
    }
}

/// An error reply's line, code and detail, escaped and at most 1 KiB.
pub(crate) fn reply_line(e: &ServerError) -> String {
    crate::untrusted::clip(
        &e.details()
            .map_or_else(|| e.code().to_owned(), |d| format!("{} {d}", e.code())),
    )
}

/// The errors under `e`, outermost first: its sources, looking into the
/// shared box redis-rs keeps an I/O or TLS error in, and into an
/// `io::Error`'s own inner error (which its `source()` skips).
fn causes<'a>(e: &'a (dyn Error + 'static)) -> impl Iterator<Item = &'a (dyn Error + 'static)> {
    std::iter::successors(Some(e), |&e| {
        if let Some(shared) = e.downcast_ref::<Arc<dyn Error + Send + Sync>>() {
            let inner: &(dyn Error + 'static) = &**shared;
            Some(inner)
        } else if let Some(io) = e.downcast_ref::<std::io::Error>() {
            io.get_ref().map(|inner| inner as &(dyn Error + 'static))
        } else {
            e.source()
        }
    })
    .take(16)
}

/// The kind of the I/O error under a failed call, if it is one.
pub(crate) fn io_kind(e: &RedisError) -> Option<std::io::ErrorKind> {
    causes(e)
        .find_map(|c| c.downcast_ref::<std::io::Error>())
        .map(std::io::Error::kind)
}

/// The TLS error under a failed call, if it is one.
pub(crate) fn tls_error(e: &RedisError) -> Option<&rustls::Error> {
    causes(e).find_map(|c| c.downcast_ref::<rustls::Error>())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The error reply `line` as redis-rs parses it.
    fn reply(line: &str) -> Value {
        redis::parse_redis_value(format!("-{line}\r\n").as_bytes()).unwrap()
    }

    /// A call failed with the error reply `line`, as redis-rs returns it.
    fn failed(line: &str) -> RedisError {
        reply(line).extract_error().unwrap_err()
    }

    #[test]
    fn every_code_has_its_kind_from_a_reply_and_from_a_failed_call() {
        for (line, kind) in [
            ("NOAUTH Authentication required.", ServerKind::NoAuth),
            (
                "WRONGPASS invalid username-password pair or user is disabled.",
                ServerKind::WrongPass,
            ),
            (
                "NOPERM User u has no permissions to run the 'slowlog|get' command",
                ServerKind::NoPerm,
            ),
            (
                "OOM command not allowed when used memory > 'maxmemory'.",
                ServerKind::Oom,
            ),
            (
                "READONLY You can't write against a read only replica.",
                ServerKind::ReadOnly,
            ),
            (
                "LOADING Redis is loading the dataset in memory",
                ServerKind::Loading,
            ),
            (
                "BUSY Redis is busy running a script. You can only call SCRIPT KILL or \
                 SHUTDOWN NOSAVE.",
                ServerKind::Busy,
            ),
            (
                "MISCONF Redis is configured to save RDB snapshots, but it's currently \
                 unable to persist to disk.",
                ServerKind::MisConf,
            ),
            (
                "MASTERDOWN Link with MASTER is down and replica-serve-stale-data is set to 'no'.",
                ServerKind::MasterDown,
            ),
            ("MOVED 3999 127.0.0.1:7002", ServerKind::Moved),
            ("ASK 3999 127.0.0.1:7002", ServerKind::Ask),
            (
                "TRYAGAIN Multiple keys request during rehashing of slot",
                ServerKind::TryAgain,
            ),
            ("CLUSTERDOWN Hash slot not served", ServerKind::ClusterDown),
            (
                "CROSSSLOT Keys in request don't hash to the same slot",
                ServerKind::CrossSlot,
            ),
            (
                "WRONGTYPE Operation against a key holding the wrong kind of value",
                ServerKind::WrongType,
            ),
            (
                "NOGROUP No such key 'logs' or consumer group 'g' in XREADGROUP with GROUP option",
                ServerKind::NoGroup,
            ),
            (
                "BUSYGROUP Consumer Group name already exists",
                ServerKind::BusyGroup,
            ),
            (
                "NOSCRIPT No matching script. Please use EVAL.",
                ServerKind::NoScript,
            ),
            (
                "EXECABORT Transaction discarded because of previous errors.",
                ServerKind::ExecAbort,
            ),
            ("ERR no such key", ServerKind::NoSuchKey),
            (
                "ERR This instance has cluster support disabled",
                ServerKind::ClusterDisabled,
            ),
            (
                "ERR unknown command 'LATENCY', with args beginning with: 'LATEST' ",
                ServerKind::UnknownCommand,
            ),
            (
                "ERR unknown subcommand 'SHARDS'. Try CLUSTER HELP.",
                ServerKind::UnknownCommand,
            ),
            (
                "ERR wrong number of arguments for 'xadd' command",
                ServerKind::Err,
            ),
            ("ERR", ServerKind::Err),
            (
                "NOTBUSY No scripts in execution right now.",
                ServerKind::Other("NOTBUSY".into()),
            ),
            ("WEIRD thing", ServerKind::Other("WEIRD".into())),
        ] {
            assert_eq!(ServerKind::of_reply(Some(&reply(line))), Some(kind.clone()));
            assert_eq!(
                ServerKind::of_error(&failed(line)),
                Some(kind.clone()),
                "{line}"
            );
            assert_eq!(
                kind.code(),
                line.split(' ').next().unwrap(),
                "the code as sent"
            );
        }
        assert_eq!(ServerKind::of_reply(Some(&Value::Okay)), None);
        assert_eq!(ServerKind::of_reply(None), None);
    }

    #[test]
    fn refused_credentials_and_acl_refusals_are_told_apart() {
        let auth = RedisError::from((
            ErrorKind::AuthenticationFailed,
            "Password authentication failed",
        ));
        assert_eq!(ServerKind::of_error(&auth), Some(ServerKind::WrongPass));
        for (kind, is_auth, is_refusal) in [
            (ServerKind::NoAuth, true, true),
            (ServerKind::WrongPass, true, true),
            (ServerKind::NoPerm, false, true),
            (ServerKind::Oom, false, false),
            (ServerKind::Other("NOAUTHX".into()), false, false),
        ] {
            assert_eq!((kind.is_auth(), kind.is_refusal()), (is_auth, is_refusal));
        }
    }

    #[test]
    fn link_and_client_failures_have_no_server_kind() {
        let io = RedisError::from(std::io::Error::from(std::io::ErrorKind::BrokenPipe));
        assert_eq!(ServerKind::of_error(&io), None);
        assert_eq!(io_kind(&io), Some(std::io::ErrorKind::BrokenPipe));
        let client = RedisError::from((ErrorKind::Client, "empty command"));
        assert_eq!(ServerKind::of_error(&client), None);
        assert_eq!(io_kind(&client), None);
        assert_eq!(io_kind(&failed("OOM full")), None);
    }

    #[test]
    fn the_tls_error_is_found_under_the_io_error() {
        let bad = rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer);
        let wrapped = RedisError::from(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            bad.clone(),
        ));
        assert_eq!(tls_error(&wrapped), Some(&bad));
        assert_eq!(io_kind(&wrapped), Some(std::io::ErrorKind::InvalidData));
        let direct = RedisError::from(bad.clone());
        assert_eq!(tls_error(&direct), Some(&bad));
        let plain = RedisError::from(std::io::Error::from(std::io::ErrorKind::ConnectionReset));
        assert_eq!(tls_error(&plain), None);
    }

    #[test]
    fn a_reply_line_is_its_code_and_detail() {
        let Value::ServerError(e) = reply("NOPERM no") else {
            panic!("an error reply")
        };
        assert_eq!(reply_line(&e), "NOPERM no");
        let Value::ServerError(e) = reply("ERR") else {
            panic!("an error reply")
        };
        assert_eq!(reply_line(&e), "ERR");
    }
}

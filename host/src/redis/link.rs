//! One connection, read and written on the task of the call that uses it:
//! a pipeline is one write, its replies are parsed by redis-rs's parser
//! straight off the stream, and nothing else runs in between (no task of
//! the connection's own, no channel, no wake-up besides the socket's).
//! Calls take turns (`&mut self`), which is how every caller uses a
//! connection. A call that fails, times out or is dropped half way leaves
//! the connection unusable; the next call says so without sending, and
//! the caller dials again.

use std::time::Duration;

use combine::parser::combinator::AnySendSyncPartialState;
use combine::stream::{Decoder, PointerOffset};
use redis::{ErrorKind, RedisError, RedisResult, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::dial::Stream;

/// Most bytes one call reads from a server: far above any honest reply
/// (a whole SLOWLOG ring is at most 512 KiB, CLIENT LIST is skipped over
/// `max_clients_listed`), so a server that sends without end breaks its
/// connection instead of filling the host's memory.
pub(crate) const MAX_REPLY_BYTES: u64 = 64 << 20;

/// The first command of a handshake.
enum Setup {
    /// AUTH, or HELLO 3 with AUTH.
    Auth,
    /// HELLO 3 without credentials.
    Resp3,
}

/// An open connection to one Redis.
pub(crate) struct Link {
    stream: Stream,
    /// Bytes read and not yet parsed, and a reply parsed half way.
    decoder: Decoder<AnySendSyncPartialState, PointerOffset<[u8]>>,
    /// The longest a call waits for its replies.
    response_timeout: Duration,
    /// The database selected at the handshake.
    db: i64,
    /// A call started and did not finish: what the stream holds next is
    /// unknown.
    broken: bool,
}

impl Link {
    /// Takes `stream` (dialled, TLS done) and runs the handshake in one
    /// round trip: HELLO 3 or AUTH as `settings` ask, SELECT when the
    /// database is not 0, then `hello`'s commands, whose replies are
    /// returned (errors among them as values).
    ///
    /// # Errors
    /// The server refused the credentials (`AuthenticationFailed`, as
    /// redis-rs says it) or the database, or the stream failed.
    pub(crate) async fn open(
        stream: Stream,
        settings: &redis::RedisConnectionInfo,
        response_timeout: Duration,
        hello: &redis::Pipeline,
    ) -> RedisResult<(Self, Vec<Value>)> {
        let mut link = Self {
            stream,
            decoder: Decoder::default(),
            response_timeout,
            db: settings.db(),
            broken: false,
        };
        let mut setup = redis::pipe();
        // What the first setup reply answers, if any.
        let first_reply = if settings.protocol().supports_resp3() {
            let hello3 = setup.cmd("HELLO").arg(3);
            if let Some(password) = settings.password() {
                hello3
                    .arg("AUTH")
                    .arg(settings.username().unwrap_or("default"))
                    .arg(password);
                Some(Setup::Auth)
            } else {
                Some(Setup::Resp3)
            }
        } else if let Some(password) = settings.password() {
            let auth = setup.cmd("AUTH");
            if let Some(user) = settings.username() {
                auth.arg(user);
            }
            auth.arg(password);
            Some(Setup::Auth)
        } else {
            None
        };
        if settings.db() != 0 {
            setup.cmd("SELECT").arg(settings.db());
        }
        let first = setup.len();
        let mut packed = setup.get_packed_pipeline();
        packed.extend_from_slice(&hello.get_packed_pipeline());
        let mut replies = link.exchange(&packed, 0, first + hello.len()).await?;
        let hello_replies = replies.split_off(first);
        let mut setup_replies = replies.into_iter();
        if let Some(step) = first_reply
            && let Some(Value::ServerError(e)) = setup_replies.next()
        {
            return Err(match step {
                // As redis-rs says it: the server's words may echo the user.
                Setup::Auth => RedisError::from((
                    ErrorKind::AuthenticationFailed,
                    "Password authentication failed",
                )),
                Setup::Resp3 => RedisError::from((
                    ErrorKind::Server(redis::ServerErrorKind::ResponseError),
                    "Redis server refused HELLO 3 (protocol=resp3 in the URL)",
                    e.details().unwrap_or_default().to_owned(),
                )),
            });
        }
        if let Some(Value::ServerError(e)) = setup_replies.next() {
            // NOAUTH, NOPERM...: the server's own error, so its kind is
            // known; otherwise what failed.
            return Err(match Value::ServerError(e.clone()).extract_error() {
                Err(own) if e.code() != "ERR" => own,
                _ => RedisError::from((
                    ErrorKind::Server(redis::ServerErrorKind::ResponseError),
                    "Redis server refused to switch database",
                    e.details().unwrap_or_default().to_owned(),
                )),
            });
        }
        Ok((link, hello_replies))
    }

    /// Writes `packed` and reads `offset + count` replies, keeping the
    /// last `count`; within the response timeout.
    async fn exchange(
        &mut self,
        packed: &[u8],
        offset: usize,
        count: usize,
    ) -> RedisResult<Vec<Value>> {
        if self.broken {
            return Err(std::io::Error::new(
                std::io::ErrorKind::ConnectionReset,
                "the connection broke during an earlier call",
            )
            .into());
        }
        self.broken = true;
        let round_trip = async {
            self.stream.write_all(packed).await?;
            self.stream.flush().await?;
            let mut replies = Vec::with_capacity(count);
            let mut capped = (&mut self.stream).take(MAX_REPLY_BYTES);
            for n in 0..offset + count {
                let value = redis::parse_redis_value_async(&mut self.decoder, &mut capped)
                    .await
                    .map_err(|e| if capped.limit() == 0 { too_long() } else { e })?;
                if n >= offset {
                    replies.push(value);
                }
            }
            Ok::<_, RedisError>(replies)
        };
        let replies = tokio::time::timeout(self.response_timeout, round_trip)
            .await
            .map_err(|_| RedisError::from(std::io::Error::from(std::io::ErrorKind::TimedOut)))??;
        self.broken = false;
        Ok(replies)
    }
}

/// A read cut at [`MAX_REPLY_BYTES`].
fn too_long() -> RedisError {
    std::io::Error::new(
        std::io::ErrorKind::InvalidData,
        format!(
            "the server sent more than {} MiB for one call; connection dropped",
            MAX_REPLY_BYTES >> 20
        ),
    )
    .into()
}

impl redis::aio::ConnectionLike for Link {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a redis::Cmd) -> redis::RedisFuture<'a, Value> {
        Box::pin(async move {
            let mut replies = self.exchange(&cmd.get_packed_command(), 0, 1).await?;
            Ok(replies.pop().unwrap_or(Value::Nil))
        })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> redis::RedisFuture<'a, Vec<Value>> {
        Box::pin(async move {
            self.exchange(&pipeline.get_packed_pipeline(), offset, count)
                .await
        })
    }

    fn get_db(&self) -> i64 {
        self.db
    }
}

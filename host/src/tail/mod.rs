//! `lookout tail`: follows the envelope stream on the bus (XREAD BLOCK, or
//! XREADGROUP in a consumer group, acknowledging what it handled) and
//! prints each envelope as a line, riding out bus outages with backoff.
//! The bus is dialled as `lookout run` dials it: TLS settings and
//! credentials beside the URL apply.

pub(crate) mod render;

use std::future::Future;
use std::io::Write;
use std::time::Duration;

use anyhow::{Context as _, Result, anyhow, bail};
use redis::Value;

use crate::redis::backoff::Backoff;
use crate::redis::conn::{Conn, QueryError, text};
use crate::redis::endpoint::Endpoint;
use crate::redis::error::ServerKind;
use crate::redis::tls::TlsFault;
use render::{Filter, Format, Printer, envelope_from_entry};

/// How long one XREAD waits for new entries before it is sent again.
const BLOCK: Duration = Duration::from_secs(5);

/// Entries asked for per read, at most.
const BATCH: u64 = 100;

/// What to follow and how to print it.
#[derive(Debug, Clone)]
pub(crate) struct Options {
    /// The bus: its URL (may hold a password: shown redacted), TLS
    /// settings and credentials.
    pub endpoint: Endpoint,
    /// The stream key.
    pub stream_key: String,
    /// Start at the stream's oldest entry rather than after its newest
    /// (for a group: where a group created now starts).
    pub from_start: bool,
    /// Read as this consumer of this group, acknowledging every entry read.
    pub group: Option<Group>,
    /// Which envelopes are printed.
    pub filter: Filter,
    /// How they are printed.
    pub format: Format,
    /// Exit after printing this many.
    pub count: Option<u64>,
    /// Connect timeout of the bus connection.
    pub connect_timeout: Duration,
    /// Reply timeout, on top of the time a read blocks.
    pub response_timeout: Duration,
}

/// A consumer group membership.
#[derive(Debug, Clone)]
pub(crate) struct Group {
    /// Group name, created (with the stream) when missing.
    pub name: String,
    /// Consumer name within it.
    pub consumer: String,
}

/// The default consumer name: `HOST-PID`.
pub(crate) fn default_consumer() -> String {
    let host = hostname::get()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "unknown".to_owned());
    format!("{host}-{}", std::process::id())
}

/// Follows the stream, writing a line per envelope that passes the filter
/// to `out`, until `shutdown` completes, `count` envelopes are printed or
/// `out` is closed. While the bus does not answer it retries with backoff,
/// saying so on stderr once per outage.
///
/// # Errors
/// The bus refused a command (authentication, ACL, a key of another type),
/// its TLS settings do not fit it (a certificate not verified, a client
/// certificate asked for: retrying cannot fix that), or writing to `out`
/// failed.
pub(crate) async fn tail(
    options: &Options,
    out: &mut impl Write,
    shutdown: impl Future<Output = ()>,
) -> Result<()> {
    let mut reader = Reader::new(options)?;
    let mut printer = Printer::new(options.format);
    let mut printed = 0u64;
    let mut backoff = Backoff::new(Duration::from_millis(250), Duration::from_secs(10));
    let mut down = false;
    tokio::pin!(shutdown);
    loop {
        let remaining = options.count.map_or(BATCH, |n| n - printed);
        if remaining == 0 {
            break;
        }
        let read = tokio::select! {
            () = &mut shutdown => break,
            read = reader.next(remaining.min(BATCH)) => read,
        };
        let entries = match read {
            Ok(entries) => entries,
            Err(e) if e.link_down && tls_misfit(&e, reader.answered) => {
                return Err(anyhow!(e)).with_context(|| {
                    format!("connecting to the bus {}", reader.conn.redacted_url())
                });
            }
            Err(e) if e.link_down => {
                if !down {
                    down = true;
                    eprintln!(
                        "lookout tail: the bus {} does not answer ({e}); retrying until it does",
                        reader.conn.redacted_url()
                    );
                }
                tokio::select! {
                    () = &mut shutdown => break,
                    () = tokio::time::sleep(backoff.next_wait()) => continue,
                }
            }
            Err(e) => {
                return Err(anyhow!(e)).with_context(|| {
                    format!(
                        "reading the stream {} on {}",
                        options.stream_key,
                        reader.conn.redacted_url()
                    )
                });
            }
        };
        if down {
            down = false;
            eprintln!(
                "lookout tail: the bus {} answers again",
                reader.conn.redacted_url()
            );
        }
        backoff.reset();
        reader.answered = true;
        for (id, pairs) in &entries {
            match envelope_from_entry(pairs) {
                Ok(env) if options.filter.matches(&env) => {
                    if !write_line(out, &printer.line(&env))? {
                        return Ok(());
                    }
                    printed += 1;
                }
                Ok(_) => {}
                Err(e) => eprintln!(
                    "lookout tail: entry {id} of {} is not an envelope: {e}",
                    options.stream_key
                ),
            }
        }
        if !flush(out)? {
            return Ok(());
        }
        reader.handled(entries.into_iter().map(|(id, _)| id));
    }
    // Acknowledge what was printed before leaving, within the timeouts.
    if let Err(e) = reader.ack().await {
        eprintln!("lookout tail: could not acknowledge the last entries: {e}");
    }
    Ok(())
}

/// Writes `line`; `false` when the reader has gone (a closed pipe).
fn write_line(out: &mut impl Write, line: &str) -> Result<bool> {
    match writeln!(out, "{line}") {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(false),
        Err(e) => Err(e).context("writing to stdout"),
    }
}

/// Flushes `out`; `false` when the reader has gone.
fn flush(out: &mut impl Write) -> Result<bool> {
    match out.flush() {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(false),
        Err(e) => Err(e).context("writing to stdout"),
    }
}

/// Whether a failed dial is a TLS configuration error rather than an
/// outage: the server's certificate was not verified, or the server asked
/// for a client certificate (both explained with the `tls.*` key to set).
/// A server that closed the TLS connection while no client certificate was
/// presented probably wants one, unless the bus has answered before with
/// the same settings (then it is more likely restarting).
fn tls_misfit(e: &QueryError, answered: bool) -> bool {
    match e.tls {
        Some(TlsFault::ClosedWithoutClientCert) => !answered,
        Some(_) => true,
        None => false,
    }
}

/// A stream entry: its id and field-value pairs.
type Entry = (String, Vec<(String, String)>);

/// Reads the stream from where it left off, across reconnections.
struct Reader<'a> {
    options: &'a Options,
    conn: Conn,
    /// The id after which to read; `None` until the start is resolved.
    last_id: Option<String>,
    /// The group exists (as far as this reader knows).
    group_ready: bool,
    /// Ids read in the group but not yet acknowledged.
    unacked: Vec<String>,
    /// The bus has answered a read since tail started.
    answered: bool,
}

impl<'a> Reader<'a> {
    fn new(options: &'a Options) -> Result<Self> {
        let conn = Conn::open(
            &options.endpoint,
            options.connect_timeout,
            BLOCK + options.response_timeout,
        )
        .with_context(|| {
            format!(
                "the bus {}",
                crate::redis::redact::redact_url(&options.endpoint.url)
            )
        })?;
        Ok(Self {
            options,
            conn,
            last_id: None,
            group_ready: false,
            unacked: Vec::new(),
            answered: false,
        })
    }

    /// The next entries, at most `count`; none when nothing arrived while
    /// the read blocked.
    async fn next(&mut self, count: u64) -> Result<Vec<Entry>, QueryError> {
        let key = &self.options.stream_key;
        let block = BLOCK.as_millis().to_string();
        let Some(group) = &self.options.group else {
            let last_id = match &self.last_id {
                Some(id) => id.clone(),
                None => {
                    let id = self.start_id().await?;
                    self.last_id = Some(id.clone());
                    id
                }
            };
            let mut pipe = redis::pipe();
            pipe.cmd("XREAD")
                .arg("COUNT")
                .arg(count)
                .arg("BLOCK")
                .arg(&block)
                .arg("STREAMS")
                .arg(key)
                .arg(&last_id);
            let reply = self.query(&mut pipe).await?;
            let entries = parse_read(Some(&reply)).map_err(bad_reply)?;
            if let Some((id, _)) = entries.last() {
                self.last_id = Some(id.clone());
            }
            return Ok(entries);
        };
        loop {
            if !self.group_ready {
                self.create_group(group).await?;
            }
            let mut pipe = redis::pipe();
            let acks = !self.unacked.is_empty();
            if acks {
                pipe.cmd("XACK")
                    .arg(key)
                    .arg(&group.name)
                    .arg(&self.unacked)
                    .ignore();
            }
            pipe.cmd("XREADGROUP")
                .arg("GROUP")
                .arg(&group.name)
                .arg(&group.consumer)
                .arg("COUNT")
                .arg(count)
                .arg("BLOCK")
                .arg(&block)
                .arg("STREAMS")
                .arg(key)
                .arg(">");
            match self.query(&mut pipe).await {
                Ok(reply) => {
                    self.unacked.clear();
                    return parse_read(Some(&reply)).map_err(bad_reply);
                }
                // The group went away (a bus restarted without its data):
                // create it again; what it had pending is gone with it.
                Err(e) if e.kind == Some(ServerKind::NoGroup) => {
                    self.group_ready = false;
                    self.unacked.clear();
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// The id after the stream's newest entry, or `0` for its start.
    async fn start_id(&mut self) -> Result<String, QueryError> {
        if self.options.from_start {
            return Ok("0".to_owned());
        }
        let mut pipe = redis::pipe();
        pipe.cmd("XREVRANGE")
            .arg(&self.options.stream_key)
            .arg("+")
            .arg("-")
            .arg("COUNT")
            .arg(1);
        let reply = self.query(&mut pipe).await?;
        let newest = match reply {
            Value::Array(entries) => entries.first().and_then(|e| match e {
                Value::Array(parts) => text(parts.first()).ok(),
                _ => None,
            }),
            _ => None,
        };
        Ok(newest.unwrap_or_else(|| "0".to_owned()))
    }

    /// XGROUP CREATE ... MKSTREAM; a group that exists already is kept.
    async fn create_group(&mut self, group: &Group) -> Result<(), QueryError> {
        let mut pipe = redis::pipe();
        pipe.cmd("XGROUP")
            .arg("CREATE")
            .arg(&self.options.stream_key)
            .arg(&group.name)
            .arg(if self.options.from_start { "0" } else { "$" })
            .arg("MKSTREAM");
        match self.query(&mut pipe).await {
            Ok(_) => {}
            Err(e) if e.kind == Some(ServerKind::BusyGroup) => {}
            Err(e) => return Err(e),
        }
        self.group_ready = true;
        Ok(())
    }

    /// Runs `pipe` and returns the reply of its one command not ignored;
    /// an error reply becomes a [`QueryError`] of its kind.
    async fn query(&mut self, pipe: &mut redis::Pipeline) -> Result<Value, QueryError> {
        pipe.ignore_errors();
        let reply = self.conn.query(pipe).await?.into_iter().next();
        match reply {
            Some(Value::ServerError(e)) => Err(QueryError::reply(
                Some(ServerKind::from(&e)),
                format!("{} {}", e.code(), e.details().unwrap_or_default()),
            )),
            other => Ok(other.unwrap_or(Value::Nil)),
        }
    }

    /// Notes entries handled (printed, filtered out or unreadable), to be
    /// acknowledged in a group.
    fn handled(&mut self, ids: impl Iterator<Item = String>) {
        if self.options.group.is_some() {
            self.unacked.extend(ids);
        }
    }

    /// Acknowledges the handled entries now.
    async fn ack(&mut self) -> Result<(), QueryError> {
        let Some(group) = &self.options.group else {
            return Ok(());
        };
        if self.unacked.is_empty() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        pipe.cmd("XACK")
            .arg(&self.options.stream_key)
            .arg(&group.name)
            .arg(&self.unacked);
        self.query(&mut pipe).await?;
        self.unacked.clear();
        Ok(())
    }
}

/// A reply of an unexpected shape, as an error that ends `tail`.
fn bad_reply(e: anyhow::Error) -> QueryError {
    QueryError::reply(None, format!("unexpected reply: {e:#}"))
}

/// The entries of an XREAD or XREADGROUP reply for one stream: nil when
/// the read timed out, else `[[key, [[id, [field, value, ...]], ...]]]`
/// (a map from key to entries in RESP3).
fn parse_read(reply: Option<&Value>) -> Result<Vec<Entry>> {
    let streams: Vec<&Value> = match reply {
        None | Some(Value::Nil) => return Ok(Vec::new()),
        Some(Value::Array(streams)) => streams
            .iter()
            .map(|s| match s {
                Value::Array(parts) if parts.len() == 2 => Ok(&parts[1]),
                other => Err(anyhow!("stream {other:?}")),
            })
            .collect::<Result<_>>()?,
        Some(Value::Map(streams)) => streams.iter().map(|(_, v)| v).collect(),
        Some(other) => bail!("{other:?}"),
    };
    let mut out = Vec::new();
    for entries in streams {
        let Value::Array(entries) = entries else {
            bail!("entries {entries:?}");
        };
        for entry in entries {
            let Value::Array(parts) = entry else {
                bail!("entry {entry:?}");
            };
            let id = text(parts.first())?;
            // A pending entry deleted since it was read has nil fields.
            let flat = match parts.get(1) {
                Some(Value::Array(flat)) => flat
                    .iter()
                    .map(|v| text(Some(v)))
                    .collect::<Result<Vec<_>>>()?,
                Some(Value::Map(pairs)) => pairs
                    .iter()
                    .flat_map(|(k, v)| [text(Some(k)), text(Some(v))])
                    .collect::<Result<Vec<_>>>()?,
                _ => Vec::new(),
            };
            let pairs = flat
                .chunks_exact(2)
                .map(|kv| (kv[0].clone(), kv[1].clone()))
                .collect();
            out.push((id, pairs));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    #[test]
    fn reads_parse_in_both_protocols() {
        assert!(parse_read(Some(&Value::Nil)).unwrap().is_empty());
        let entries = Value::Array(vec![Value::Array(vec![
            bulk("1-0"),
            Value::Array(vec![bulk("v"), bulk("2"), bulk("msg"), bulk("hi")]),
        ])]);
        let resp2 = Value::Array(vec![Value::Array(vec![bulk("k"), entries.clone()])]);
        let resp3 = Value::Map(vec![(bulk("k"), entries)]);
        for reply in [resp2, resp3] {
            let parsed = parse_read(Some(&reply)).unwrap();
            assert_eq!(parsed.len(), 1);
            assert_eq!(parsed[0].0, "1-0");
            assert_eq!(
                parsed[0].1,
                [("v".into(), "2".into()), ("msg".into(), "hi".into())]
            );
        }
        assert!(parse_read(Some(&bulk("x"))).is_err());
    }

    #[test]
    fn tls_misfits_are_told_from_outages() {
        let error = |tls: Option<TlsFault>, message: &str| QueryError {
            tls,
            ..QueryError::down(message.to_owned())
        };
        for fault in [
            TlsFault::UnknownIssuer,
            TlsFault::WrongName,
            TlsFault::ClientCertWanted,
            TlsFault::Refused,
        ] {
            let misfit = error(Some(fault), "TLS: invalid peer certificate");
            assert!(tls_misfit(&misfit, false) && tls_misfit(&misfit, true));
        }
        let closed = error(
            Some(TlsFault::ClosedWithoutClientCert),
            "Broken pipe; the server closed the TLS connection: it may require a client \
             certificate (set tls.cert_file and tls.key_file)",
        );
        assert!(tls_misfit(&closed, false));
        assert!(
            !tls_misfit(&closed, true),
            "a bus that answered before restarts"
        );
        for outage in [
            "Connection refused (os error 111)",
            "connect to h:1 timed out",
        ] {
            assert!(!tls_misfit(&error(None, outage), false), "{outage}");
        }
    }
}

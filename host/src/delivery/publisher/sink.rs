//! The buses the daemon publishes to ([`Sink`]): a Redis, one pipeline
//! per batch (PUBLISH on `<prefix>.<level>` and XADD to the stream, after
//! `INFO memory` on a fresh connection for the bus's `maxmemory_policy` and
//! `EXISTS` on the stream once written), or JSON lines on stdout for
//! `--dry-run`.

use std::io::Write;

use anyhow::{Context, Result};

use super::bus::{Bus, Queued, Replies};
use super::diagnose::Refusal;
use crate::delivery::settings::PublishSettings;
use crate::redis::conn::Conn;
use crate::redis::probe::parse_info;

/// Where envelopes go.
pub enum Sink {
    /// JSON lines on stdout.
    Stdout,
    /// A Redis bus.
    Redis {
        /// Bus connection.
        conn: Box<Conn>,
        /// Channel prefix, stream key, maxlen.
        settings: Box<PublishSettings>,
    },
}

impl Bus for Sink {
    async fn send(&mut self, batch: &[Queued<'_>], check_stream: bool) -> Result<Replies> {
        match self {
            Sink::Stdout => stdout(batch),
            Sink::Redis { conn, settings } => pipeline(conn, settings, batch, check_stream).await,
        }
    }

    fn instance(&self) -> Option<&str> {
        match self {
            Sink::Stdout => None,
            Sink::Redis { conn, .. } => Some(&conn.instance),
        }
    }

    fn stream_key(&self) -> Option<&str> {
        match self {
            Sink::Stdout => None,
            Sink::Redis { settings, .. } => Some(&settings.stream_key),
        }
    }
}

/// Writes `batch` as JSON lines on stdout: every write confirmed.
fn stdout(batch: &[Queued<'_>]) -> Result<Replies> {
    let mut out = std::io::stdout().lock();
    for queued in batch {
        writeln!(out, "{}", queued.json).context("writing to stdout")?;
    }
    out.flush().context("writing to stdout")?;
    Ok(Replies {
        confirmed: vec![(true, true); batch.len()],
        ..Replies::default()
    })
}

/// Sends `batch` to the bus on `conn` in one pipeline and reads each reply
/// on its own.
///
/// # Errors
/// The pipeline failed or its replies do not match its commands.
async fn pipeline(
    conn: &mut Conn,
    settings: &PublishSettings,
    batch: &[Queued<'_>],
    check_stream: bool,
) -> Result<Replies> {
    let mut replies = Replies::to(batch);
    let mut pipe = redis::pipe();
    pipe.ignore_errors();
    let info = !conn.is_connected();
    if info {
        pipe.cmd("INFO").arg("memory");
    }
    if check_stream {
        pipe.cmd("EXISTS").arg(&settings.stream_key);
    }
    // Per command after the probes: (envelope, is XADD).
    let mut plan = Vec::new();
    for (i, queued) in batch.iter().enumerate() {
        let envelope = queued.envelope;
        if !queued.published {
            let channel = format!("{}.{}", settings.channel_prefix, envelope.level.as_str());
            pipe.cmd("PUBLISH").arg(channel).arg(queued.json);
            plan.push((i, false));
        }
        if !queued.streamed {
            let xadd = pipe
                .cmd("XADD")
                .arg(&settings.stream_key)
                .arg("MAXLEN")
                .arg("~")
                .arg(settings.stream_maxlen)
                .arg("*");
            for (key, value) in envelope.stream_fields() {
                xadd.arg(key).arg(value);
            }
            plan.push((i, true));
        }
    }
    let values = conn
        .query(&pipe)
        .await
        .with_context(|| format!("publishing to {}", conn.instance))?;
    let expected = plan.len() + usize::from(info) + usize::from(check_stream);
    if values.len() != expected {
        anyhow::bail!(
            "publishing to {}: {} replies to {expected} commands",
            conn.instance,
            values.len()
        );
    }
    let mut values = values.into_iter();
    if info && let Some(value) = values.next() {
        replies.policy = text(&value).and_then(|t| policy(&t));
    }
    if check_stream && let Some(value) = values.next() {
        replies.stream_vanished = matches!(value, redis::Value::Int(0));
    }
    for ((i, xadd), value) in plan.into_iter().zip(values) {
        let command = if xadd { "XADD" } else { "PUBLISH" };
        if let redis::Value::ServerError(e) = &value {
            replies.refusals.push(Refusal::of(command, e));
        } else if xadd {
            replies.confirmed[i].1 = true;
            replies.streamed = true;
        } else {
            replies.confirmed[i].0 = true;
        }
    }
    Ok(replies)
}

/// The text of a bulk, simple or verbatim string reply.
fn text(value: &redis::Value) -> Option<String> {
    match value {
        redis::Value::BulkString(bytes) => Some(String::from_utf8_lossy(bytes).into_owned()),
        redis::Value::SimpleString(s) | redis::Value::VerbatimString { text: s, .. } => {
            Some(s.clone())
        }
        _ => None,
    }
}

/// The `maxmemory_policy` of an INFO reply.
fn policy(info: &str) -> Option<String> {
    parse_info(info)
        .into_iter()
        .find(|field| field.name == "maxmemory_policy")
        .map(|field| field.value.trim().to_owned())
}

//! The buses the daemon publishes to ([`Sink`]): a Redis, one pipeline
//! per batch (PUBLISH on `<prefix>.<level>` and XADD to the stream, after
//! `INFO memory` on a fresh connection for the bus's `maxmemory_policy` and
//! `EXISTS` on the stream once written), or JSON lines on stdout for
//! `--dry-run`. Every command takes the envelope's sealed bytes: nothing
//! is serialised here.

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
        writeln!(out, "{}", queued.sealed.json()).context("writing to stdout")?;
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
    let info = !conn.is_connected();
    let (pipe, plan) = commands(settings, batch, info, check_stream);
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

/// The pipeline of `batch`: `INFO memory` when `info`, `EXISTS` on the
/// stream when `check_stream`, then per envelope its PUBLISH and XADD not
/// yet confirmed; and per command after those probes, which envelope it
/// writes and whether it is the XADD.
fn commands(
    settings: &PublishSettings,
    batch: &[Queued<'_>],
    info: bool,
    check_stream: bool,
) -> (redis::Pipeline, Vec<(usize, bool)>) {
    let mut pipe = redis::pipe();
    pipe.ignore_errors();
    if info {
        pipe.cmd("INFO").arg("memory");
    }
    if check_stream {
        pipe.cmd("EXISTS").arg(&settings.stream_key);
    }
    let mut plan = Vec::new();
    for (i, queued) in batch.iter().enumerate() {
        let sealed = queued.sealed;
        if !queued.published {
            let level = sealed.envelope().level.as_str();
            let channel = format!("{}.{level}", settings.channel_prefix);
            pipe.cmd("PUBLISH").arg(channel).arg(sealed.json());
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
            for (key, value) in sealed.stream_fields() {
                xadd.arg(key).arg(value);
            }
            plan.push((i, true));
        }
    }
    (pipe, plan)
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

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use super::*;
    use crate::delivery::breaker::BreakerSettings;
    use crate::delivery::envelope::{
        CallCaps, Emitted, Envelope, Level, Origin, fields, passes, stream_fields_anew,
    };
    use crate::delivery::outbox::Caps;
    use crate::delivery::publisher::Publisher;
    use crate::delivery::publisher::memory::MemoryBus;

    fn settings() -> PublishSettings {
        PublishSettings {
            url: "redis://bus:1".to_owned(),
            channel_prefix: "logs.redis".to_owned(),
            stream_key: "logs:stream:redis".to_owned(),
            stream_maxlen: 10_000,
            tls: Default::default(),
            auth: Default::default(),
        }
    }

    /// The pipeline of `batch` as it was built before envelopes were
    /// sealed: each envelope serialised anew for PUBLISH, its `fields` and
    /// `condition` again for XADD.
    fn commands_anew(settings: &PublishSettings, batch: &[(Envelope, bool, bool)]) -> Vec<u8> {
        let mut pipe = redis::pipe();
        pipe.ignore_errors();
        pipe.cmd("INFO").arg("memory");
        pipe.cmd("EXISTS").arg(&settings.stream_key);
        for (envelope, published, streamed) in batch {
            if !published {
                let channel = format!("{}.{}", settings.channel_prefix, envelope.level.as_str());
                pipe.cmd("PUBLISH")
                    .arg(channel)
                    .arg(serde_json::to_string(envelope).unwrap());
            }
            if !streamed {
                let xadd = pipe
                    .cmd("XADD")
                    .arg(&settings.stream_key)
                    .arg("MAXLEN")
                    .arg("~")
                    .arg(settings.stream_maxlen)
                    .arg("*");
                for (key, value) in stream_fields_anew(envelope) {
                    xadd.arg(key).arg(value);
                }
            }
        }
        pipe.get_packed_pipeline()
    }

    /// An envelope under its caps is written once on its whole way: sealed
    /// by the caps, then counted by the outbox, spooled, PUBLISHed and
    /// XADDed (again after a failed batch) from those bytes; read back
    /// from the spool by a restart, it is sealed once more and nothing
    /// else. The pipeline is byte for byte the one built by serialising
    /// each envelope anew.
    #[test]
    fn an_envelope_is_written_once_from_its_caps_to_the_bus() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let origin = Origin::new("redis", "h:1");
        let caps = CallCaps {
            call: 1,
            max_envelope_bytes: 4096,
            max_call_bytes: 1 << 20,
        };
        let events: Vec<Emitted> = (0..20)
            .map(|i| Emitted {
                condition: None,
                level: if i % 2 == 0 { Level::Info } else { Level::Warn },
                target: "w".to_owned(),
                msg: format!("m{i} \"quoted\"\u{1}"),
                fields: fields! {"i" => i, "text" => "é\n"},
                call: Some(caps),
            })
            .collect();
        let breaker = BreakerSettings {
            failures: 100,
            recovery: Duration::ZERO,
        };
        let bus = Arc::new(Mutex::new(MemoryBus::default()));
        let mut publisher = Publisher::new(bus.clone(), Caps::default(), breaker, origin.clone());
        publisher.with_spool(dir.path()).unwrap();

        let before = passes();
        let sealed = origin.seal_all("h:1", "h:1", None, events);
        assert_eq!(passes() - before, 20, "sealed by the caps");
        sealed.into_iter().for_each(|s| publisher.push(s));
        // The bus is down: the batch fails and the outbox is spooled.
        assert!(rt.block_on(publisher.flush()).is_err());
        assert_eq!(publisher.spool_pending(), 20);
        for _ in 0..2 {
            let batch: Vec<Queued<'_>> = publisher
                .outbox
                .front(usize::MAX)
                .enumerate()
                .map(|(i, item)| Queued {
                    sealed: &item.sealed,
                    published: i % 3 == 0,
                    streamed: false,
                })
                .collect();
            let writings = passes();
            let (pipe, plan) = commands(&settings(), &batch, true, true);
            assert_eq!(passes(), writings, "PUBLISH and XADD write nothing anew");
            assert_eq!(plan.len(), 20 + 13);
            let anew: Vec<(Envelope, bool, bool)> = batch
                .iter()
                .map(|q| (q.sealed.envelope().clone(), q.published, q.streamed))
                .collect();
            assert!(pipe.get_packed_pipeline() == commands_anew(&settings(), &anew));
        }
        assert_eq!(passes() - before, 20, "nothing written again");
        drop(publisher);

        // A restart reads the spool back: one writing each, then delivered.
        let before = passes();
        let mut publisher = Publisher::new(bus.clone(), Caps::default(), breaker, origin);
        assert_eq!(
            publisher.with_spool(dir.path()).unwrap().envelopes.len(),
            20
        );
        bus.lock().unwrap().up = true;
        assert_eq!(rt.block_on(publisher.flush()).unwrap(), 20);
        assert_eq!(passes() - before, 20, "sealed once when read back");
        assert_eq!(bus.lock().unwrap().streamed.len(), 20);
    }
}

//! Publishing envelopes: PUBLISH on `<prefix>.<level>` and XADD to the
//! stream, one pipeline per flush; or JSON lines on stdout for `--dry-run`.
//! Envelopes that could not be sent wait in a bounded queue for the next
//! flush.

use std::collections::VecDeque;
use std::io::Write;

use anyhow::{Context, Result};

use crate::config::PublishSettings;
use crate::envelope::Envelope;
use crate::probe::Conn;

/// Envelopes kept while the bus is unreachable; the oldest go first.
pub const QUEUE_CAP: usize = 10_000;

/// Where envelopes go.
pub enum Sink {
    /// JSON lines on stdout.
    Stdout,
    /// A Redis bus.
    Redis {
        /// Bus connection.
        conn: Box<Conn>,
        /// Channel prefix, stream key, maxlen.
        settings: PublishSettings,
    },
}

/// Queues envelopes and sends them to the sink.
pub struct Publisher {
    sink: Sink,
    pending: VecDeque<Envelope>,
    /// Envelopes dropped because the queue was full.
    pub dropped: u64,
    /// Envelopes handed to the sink.
    pub delivered: u64,
}

impl Publisher {
    /// A publisher over `sink` with an empty queue.
    pub fn new(sink: Sink) -> Self {
        Self {
            sink,
            pending: VecDeque::new(),
            dropped: 0,
            delivered: 0,
        }
    }

    /// Queues an envelope for the next flush, dropping the oldest one when
    /// the queue is full.
    pub fn push(&mut self, envelope: Envelope) {
        if self.pending.len() >= QUEUE_CAP {
            self.pending.pop_front();
            self.dropped += 1;
        }
        self.pending.push_back(envelope);
    }

    /// Envelopes waiting to be sent.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Sends every queued envelope in one pipeline.
    ///
    /// # Errors
    /// The bus is unreachable or refused the pipeline; the envelopes stay
    /// queued (a pipeline cut midway may deliver some twice).
    pub async fn flush(&mut self) -> Result<usize> {
        if self.pending.is_empty() {
            return Ok(0);
        }
        let sent = self.pending.len();
        match &mut self.sink {
            Sink::Stdout => {
                let mut out = std::io::stdout().lock();
                for envelope in &self.pending {
                    writeln!(out, "{}", envelope.to_json()).context("writing to stdout")?;
                }
                out.flush().context("writing to stdout")?;
            }
            Sink::Redis { conn, settings } => {
                let mut pipe = redis::pipe();
                for envelope in &self.pending {
                    let channel =
                        format!("{}.{}", settings.channel_prefix, envelope.level.as_str());
                    pipe.cmd("PUBLISH")
                        .arg(channel)
                        .arg(envelope.to_json())
                        .ignore();
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
                    xadd.ignore();
                }
                conn.query(&pipe)
                    .await
                    .with_context(|| format!("publishing to {}", conn.instance))?;
            }
        }
        self.pending.clear();
        self.delivered += sent as u64;
        Ok(sent)
    }
}

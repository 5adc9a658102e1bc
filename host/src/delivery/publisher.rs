//! The publisher's state: PUBLISH on `<prefix>.<level>` and XADD to the
//! stream, in pipelined batches, oldest first; or JSON lines on stdout for
//! `--dry-run`. Envelopes wait in the bounded [`Outbox`] while the bus is
//! unreachable and a circuit breaker keeps failing sends from piling up;
//! on recovery the outbox is replayed in order before anything newer.

use std::io::Write;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use super::breaker::{Breaker, BreakerSettings};
use super::envelope::{Emitted, Envelope, Level, Origin};
use super::outbox::{Caps, Counts, Item, Outbox};
use super::spool::{Replay, Spool};
use crate::config::PublishSettings;
use crate::fields;
use crate::redis::conn::Conn;

/// Envelopes per pipelined batch.
pub const BATCH: usize = 500;

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
    /// An in-memory bus for model tests.
    #[cfg(test)]
    Memory(std::sync::Arc<std::sync::Mutex<MemoryBus>>),
}

/// A scriptable in-memory bus: up or down, optionally cutting the next
/// batch after some envelopes (a pipeline cut midway).
#[cfg(test)]
#[derive(Debug, Default)]
pub struct MemoryBus {
    /// Whether sends succeed.
    pub up: bool,
    /// Cut the next batch after this many envelopes, then fail it.
    pub cut_after: Option<usize>,
    /// Ids received, in order (duplicates included).
    pub received: Vec<String>,
}

/// Buffers envelopes and sends them to the sink through the breaker.
pub struct Publisher {
    sink: Sink,
    outbox: Outbox,
    breaker: Breaker,
    origin: Origin,
    spool: Option<Spool>,
}

impl Publisher {
    /// A publisher over `sink`; `origin` stamps its own drop reports.
    pub fn new(sink: Sink, caps: Caps, breaker: BreakerSettings, origin: Origin) -> Self {
        Self {
            sink,
            outbox: Outbox::new(caps),
            breaker: Breaker::new(breaker),
            origin,
            spool: None,
        }
    }

    /// Uses a durable spool in `dir`: replays what an earlier run left there
    /// into the outbox, ahead of anything new. Returns the replay counts.
    ///
    /// # Errors
    /// The folder cannot be created or the file cannot be read.
    pub fn with_spool(&mut self, dir: &std::path::Path) -> Result<Replay> {
        // The file may hold a little more than the memory caps: envelopes
        // dropped from memory stay on disk until the outbox drains.
        let cap = (self.outbox.caps().bytes as u64).saturating_mul(2);
        let spool = Spool::open(dir, cap)?;
        let replay = spool.replay()?;
        for envelope in &replay.envelopes {
            self.outbox.push(envelope.clone());
        }
        self.outbox.mark_spooled(self.outbox.len());
        self.spool = Some(spool);
        Ok(replay)
    }

    /// Writes what is not yet in the spool (no-op without a spool); returns
    /// how many envelopes the spool now covers.
    pub fn spool_pending(&mut self) -> usize {
        let Some(spool) = self.spool.as_mut() else {
            return 0;
        };
        match spool.append(self.outbox.unspooled()) {
            Ok(n) => self.outbox.mark_spooled(n),
            Err(e) => tracing::error!("spool write failed: {e:#}"),
        }
        self.outbox.spooled()
    }

    /// Queues an envelope behind every older one.
    pub fn push(&mut self, envelope: Envelope) {
        self.outbox.push(envelope);
    }

    /// Envelopes waiting to be sent.
    pub fn pending(&self) -> usize {
        self.outbox.len()
    }

    /// Bytes waiting to be sent.
    pub fn pending_bytes(&self) -> usize {
        self.outbox.bytes()
    }

    /// Emitted, delivered and dropped so far.
    pub fn counts(&self) -> Counts {
        self.outbox.counts()
    }

    /// When an open breaker allows the next attempt.
    pub fn retry_at(&self) -> Option<Instant> {
        self.breaker.retry_at()
    }

    /// Sends the outbox, oldest first, in batches, unless the breaker is
    /// open. After drops, one envelope reporting them follows the replay.
    ///
    /// # Errors
    /// A batch failed; it and everything after it stay queued, in order (a
    /// batch cut midway may be delivered twice).
    pub async fn flush(&mut self) -> Result<usize> {
        if self.outbox.is_empty() {
            return Ok(0);
        }
        if !self.breaker.allow(Instant::now()) {
            self.spool_pending();
            return Ok(0);
        }
        let mut sent = 0;
        while !self.outbox.is_empty() {
            let n = self.outbox.len().min(BATCH);
            match self.send(n).await {
                Ok(()) => {
                    self.outbox.delivered(n);
                    sent += n;
                    if self.breaker.success() {
                        tracing::info!(
                            buffered = self.outbox.len(),
                            "bus reachable again; replaying"
                        );
                    }
                    self.report_drops();
                }
                Err(e) => {
                    self.spool_pending();
                    if self.breaker.failure(Instant::now()) {
                        tracing::warn!(
                            buffered = self.outbox.len(),
                            "publish failing; breaker open, buffering: {e:#}"
                        );
                    }
                    return Err(e);
                }
            }
        }
        if let Some(spool) = self.spool.as_mut()
            && let Err(e) = spool.clear()
        {
            tracing::error!("spool cleanup failed: {e:#}");
        }
        Ok(sent)
    }

    /// Shutdown: keeps trying to send the outbox, ignoring the breaker,
    /// until it is empty or `grace` is over. Returns what is left.
    pub async fn drain(&mut self, grace: Duration) -> usize {
        let deadline = Instant::now() + grace;
        while !self.outbox.is_empty() && Instant::now() < deadline {
            self.breaker.success();
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, self.flush()).await {
                Ok(Ok(_)) => {}
                Ok(Err(_)) => {
                    let pause = Duration::from_millis(100).min(left);
                    tokio::time::sleep(pause).await;
                }
                Err(_) => break,
            }
        }
        self.outbox.len()
    }

    fn report_drops(&mut self) {
        if let Some(report) = self.outbox.take_drop_report() {
            let caps = self.outbox.caps();
            let msg = format!(
                "dropped {} envelopes between {} and {} ({}, buffer full at {} envelopes / {} bytes)",
                report.count,
                report.first_ts,
                report.last_ts,
                caps.policy.as_str(),
                caps.envelopes,
                caps.bytes
            );
            tracing::warn!("{msg}");
            let event = Emitted::host(
                Level::Warn,
                msg,
                fields! {
                    "dropped" => report.count,
                    "first_ts" => report.first_ts,
                    "last_ts" => report.last_ts,
                    "policy" => caps.policy.as_str(),
                },
            );
            let envelope = self.origin.wrap(&self.origin.instance, event);
            self.outbox.push(envelope);
        }
    }

    /// The breaker's state, for tests and status.
    pub fn breaker_state(&self) -> super::breaker::State {
        self.breaker.state()
    }

    async fn send(&mut self, n: usize) -> Result<()> {
        let items: Vec<&Item> = self.outbox.front(n).collect();
        match &mut self.sink {
            Sink::Stdout => {
                let mut out = std::io::stdout().lock();
                for item in items {
                    writeln!(out, "{}", item.json).context("writing to stdout")?;
                }
                out.flush().context("writing to stdout")?;
            }
            Sink::Redis { conn, settings } => {
                let mut pipe = redis::pipe();
                for item in items {
                    let envelope = &item.envelope;
                    let channel =
                        format!("{}.{}", settings.channel_prefix, envelope.level.as_str());
                    pipe.cmd("PUBLISH").arg(channel).arg(&item.json).ignore();
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
            #[cfg(test)]
            Sink::Memory(bus) => {
                let mut bus = bus.lock().expect("test bus");
                if !bus.up {
                    anyhow::bail!("bus down");
                }
                if let Some(k) = bus.cut_after.take() {
                    for item in items.iter().take(k) {
                        bus.received.push(item.envelope.id.clone());
                    }
                    if k < items.len() {
                        anyhow::bail!("pipeline cut after {k}");
                    }
                } else {
                    for item in items {
                        bus.received.push(item.envelope.id.clone());
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
#[path = "model_tests.rs"]
mod model_tests;

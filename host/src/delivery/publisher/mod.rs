//! The publisher: envelopes to the bus, PUBLISH on `<prefix>.<level>` and
//! XADD to the stream, in pipelined batches, oldest first; or JSON lines
//! on stdout for `--dry-run`. Envelopes wait in the bounded [`Outbox`]
//! while the bus is unreachable and a circuit breaker keeps failing sends
//! from piling up; on recovery the outbox is replayed in order before
//! anything newer.
//!
//! Each reply of a batch is read on its own: a write the bus confirmed is
//! never sent again, so an error reply to one command (an XADD refused with
//! OOM, READONLY, MISCONF, NOPERM, WRONGTYPE...) never makes an envelope go
//! out twice. Refusals are named with their fix, counted by error code, and
//! count as failures for the breaker.
//!
//! On a fresh connection the publisher reads the bus's `maxmemory_policy`,
//! and before each batch it checks that the stream it wrote to still
//! exists: a policy that can evict the stream, or a stream that vanished,
//! is reported once each, with an envelope and a log line.
//!
//! Each envelope is sealed once ([`Sealed`]) and its JSON reused by every
//! write: the outbox's byte count, PUBLISH, the stream entry (whose
//! `fields` and `condition` are slices of it), the spool and stdout.
//!
//! Here the outbox, breaker and spool are driven; what a bus must do is
//! [`Bus`] (bus.rs), the Redis bus and stdout are [`Sink`] (sink.rs), and
//! what the bus's refusals and warnings say is diagnose.rs.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Result, anyhow};

use super::breaker::{Breaker, BreakerSettings};
use super::envelope::{Emitted, Level, Origin, Sealed};
use super::outbox::{Caps, Counts, Outbox};
use super::spool::{COMPACT_FLOOR, HEADER, Note, Replay, Spool};
use crate::delivery::envelope::fields;
use diagnose::{Diagnosis, Warning};

mod bus;
mod diagnose;
#[cfg(test)]
mod memory;
#[cfg(test)]
mod model_tests;
mod sink;

pub(crate) use bus::{Bus, Queued, Replies};
pub use sink::Sink;

/// Envelopes per pipelined batch.
pub(crate) const BATCH: usize = 500;

/// Buffers envelopes and sends them to the bus through the breaker.
pub struct Publisher<B = Sink> {
    bus: B,
    outbox: Outbox,
    breaker: Breaker,
    origin: Origin,
    spool: Option<Spool>,
    /// Refused writes by error code.
    refused: BTreeMap<String, u64>,
    /// Spool writes that failed.
    spool_failures: u64,
    /// An XADD succeeded and the stream has not vanished since.
    stream_written: bool,
    /// The bus's `maxmemory_policy`, when known.
    policy: Option<String>,
    warned_policy: bool,
    warned_vanished: bool,
}

impl<B: Bus> Publisher<B> {
    /// A publisher over `bus`; `origin` stamps its own drop reports.
    pub fn new(bus: B, caps: Caps, breaker: BreakerSettings, origin: Origin) -> Self {
        Self {
            bus,
            outbox: Outbox::new(caps),
            breaker: Breaker::new(breaker),
            origin,
            spool: None,
            refused: BTreeMap::new(),
            spool_failures: 0,
            stream_written: false,
            policy: None,
            warned_policy: false,
            warned_vanished: false,
        }
    }

    /// Uses a durable spool in `dir`, locked for this process while the
    /// publisher lives: replays what an earlier run left there into the
    /// outbox, ahead of anything new (without what that run delivered or
    /// dropped, and without PUBLISHing again what it published), and takes
    /// over the drops it did not report. Returns the replay counts.
    ///
    /// # Errors
    /// The folder cannot be created, another process holds its lock (named
    /// with its pid), a spool file is a symbolic link or the file cannot be
    /// read.
    pub fn with_spool(&mut self, dir: &std::path::Path) -> Result<Replay> {
        let mut spool = Spool::open_locked(dir, COMPACT_FLOOR)?;
        let replay = spool.replay()?;
        for envelope in &replay.envelopes {
            let published = replay.published.contains(&envelope.id);
            self.outbox.push_replayed(envelope.clone(), published);
        }
        if let Some(drops) = &replay.drops {
            self.outbox.carry_drops(drops);
        }
        self.spool = Some(spool);
        Ok(replay)
    }

    /// Brings the spool file up to date with the outbox (no-op without a
    /// spool): appends what is not in it yet and notes what left the
    /// outbox or was published, or rewrites it with just the outbox when
    /// it grew past twice that. Returns how many envelopes the spool now
    /// covers.
    pub fn spool_pending(&mut self) -> usize {
        let Some(spool) = self.spool.as_mut() else {
            return 0;
        };
        let record = |json: &str| (HEADER + json.len()) as u64;
        let live: u64 = self.outbox.all().map(|i| record(i.json())).sum();
        let notes = self.outbox.notes();
        let more: u64 = self.outbox.unspooled().map(record).sum::<u64>()
            + 40 * (notes.settled.len() + notes.published.len()) as u64;
        let drops = self.outbox.unreported().cloned();
        let result = if spool.wants_rewrite(live, more) {
            spool.rewrite(
                self.outbox
                    .all()
                    .map(|i| (i.envelope().id.as_str(), i.json(), i.published)),
                drops.as_ref(),
            )
        } else {
            // Envelopes spooled now whose PUBLISH already went out say so.
            let published = notes.published.iter().cloned().chain(
                self.outbox
                    .all()
                    .filter(|i| !i.spooled && i.published)
                    .map(|i| i.envelope().id.clone()),
            );
            let note = Note {
                settled: notes.settled.clone(),
                published: published.collect(),
                drops: None,
            };
            spool.append(self.outbox.unspooled(), &note, drops.as_ref())
        };
        match result {
            Ok(()) => self.outbox.mark_spooled(),
            Err(e) => {
                self.spool_failures += 1;
                tracing::error!(
                    unspooled = self.outbox.len() - self.outbox.spooled(),
                    "spool write failed; envelopes not in the spool are lost if the host dies: {e:#}"
                );
            }
        }
        self.outbox.spooled()
    }

    /// Queues an envelope behind every older one; an [`Envelope`] is taken
    /// as final and sealed here (see [`Outbox::push`]).
    ///
    /// [`Envelope`]: super::envelope::Envelope
    pub fn push(&mut self, envelope: impl Into<Sealed>) {
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

    /// Writes the bus refused, by error code.
    pub fn refused(&self) -> &BTreeMap<String, u64> {
        &self.refused
    }

    /// Spool writes that failed.
    pub fn spool_failures(&self) -> u64 {
        self.spool_failures
    }

    /// When an open breaker allows the next attempt.
    pub fn retry_at(&self) -> Option<Instant> {
        self.breaker.retry_at()
    }

    /// Sends the outbox, oldest first, in batches, unless the breaker is
    /// open. After drops, one envelope reporting them follows the replay.
    ///
    /// # Errors
    /// A batch failed or the bus refused some of its writes. Writes the
    /// bus confirmed are never sent again; the rest stays queued, in order
    /// (a batch cut midway by a broken connection may be delivered twice).
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
            let replies = match self.send(n).await {
                Ok(replies) => replies,
                Err(e) => {
                    self.failed();
                    return Err(e);
                }
            };
            for (i, (published, streamed)) in replies.confirmed.iter().enumerate() {
                self.outbox.confirm(i, *published, *streamed);
            }
            let done = self.outbox.settle(n);
            sent += done;
            self.notice(&replies);
            if replies.refusals.is_empty() && done < n {
                // Every write answered without error, yet not all confirmed:
                // never loop on it.
                let e = anyhow!("the bus confirmed {done} of {n} envelopes");
                self.failed();
                return Err(e);
            }
            if !replies.refusals.is_empty() {
                for refusal in &replies.refusals {
                    *self
                        .refused
                        .entry(refusal.kind.code().to_owned())
                        .or_default() += 1;
                }
                let e = anyhow!(self.diagnosis().refusals(&replies.refusals));
                self.failed();
                return Err(e);
            }
            if self.breaker.success() {
                tracing::info!(
                    buffered = self.outbox.len(),
                    "bus reachable again; replaying"
                );
            }
            self.report_drops();
        }
        if let Some(spool) = self.spool.as_mut() {
            match spool.clear() {
                Ok(()) => self.outbox.mark_unspooled(),
                Err(e) => tracing::error!("spool cleanup failed: {e:#}"),
            }
        }
        Ok(sent)
    }

    /// A failed send: spools and tells the breaker (the caller logs the
    /// error of every failed attempt).
    fn failed(&mut self) {
        self.spool_pending();
        if self.breaker.failure(Instant::now()) {
            tracing::warn!(
                buffered = self.outbox.len(),
                "publish failing; breaker open, buffering"
            );
        }
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
            let event = Emitted::host(
                Level::Warn,
                msg.clone(),
                fields! {
                    "dropped" => report.count,
                    "first_ts" => report.first_ts,
                    "last_ts" => report.last_ts,
                    "policy" => caps.policy.as_str(),
                },
            );
            let envelope = self.origin.seal(&self.origin.instance, event);
            self.outbox.push(envelope);
            // Before the report goes out (or is logged), the spool forgets
            // the dropped envelopes and holds the report instead of the
            // count: a crash from here on neither replays them nor reports
            // them twice.
            if self.spool.as_ref().is_some_and(|s| s.size() > 0) {
                self.spool_pending();
            }
            tracing::warn!("{msg}");
        }
    }

    /// The breaker's state, for tests and status.
    pub fn breaker_state(&self) -> super::breaker::State {
        self.breaker.state()
    }

    /// What the messages say of the bus.
    fn diagnosis(&self) -> Diagnosis<'_> {
        let instance = self.bus.instance();
        Diagnosis {
            bus: instance.unwrap_or("the bus"),
            watched: instance == Some(self.origin.instance.as_str()),
            stream_key: self.bus.stream_key().unwrap_or("the stream"),
            policy: self.policy.as_deref(),
        }
    }

    /// Warns once each about a bus policy that can evict the stream and
    /// about a stream that vanished.
    fn notice(&mut self, replies: &Replies) {
        if let Some(policy) = &replies.policy {
            self.policy = Some(policy.clone());
        }
        if replies.stream_vanished {
            self.stream_written = false;
        }
        if replies.streamed {
            self.stream_written = true;
        }
        let eviction = if self.warned_policy {
            None
        } else {
            self.diagnosis().eviction()
        };
        let vanished =
            (replies.stream_vanished && !self.warned_vanished).then(|| self.diagnosis().vanished());
        self.warned_policy |= eviction.is_some();
        self.warned_vanished |= vanished.is_some();
        for warning in eviction.into_iter().chain(vanished) {
            self.warn(warning);
        }
    }

    /// One of the publisher's own warnings: a log line and an envelope.
    fn warn(&mut self, (msg, fields): Warning) {
        tracing::warn!("{msg}");
        let event = Emitted::host(Level::Warn, msg, fields);
        let envelope = self.origin.seal(&self.origin.instance, event);
        self.outbox.push(envelope);
    }

    /// Sends the oldest `n` envelopes as one batch.
    async fn send(&mut self, n: usize) -> Result<Replies> {
        let batch: Vec<Queued<'_>> = self
            .outbox
            .front(n)
            .map(|item| Queued {
                sealed: &item.sealed,
                published: item.published,
                streamed: item.streamed,
            })
            .collect();
        self.bus.send(&batch, self.stream_written).await
    }
}

//! The publisher's state: PUBLISH on `<prefix>.<level>` and XADD to the
//! stream, in pipelined batches, oldest first; or JSON lines on stdout for
//! `--dry-run`. Envelopes wait in the bounded [`Outbox`] while the bus is
//! unreachable and a circuit breaker keeps failing sends from piling up;
//! on recovery the outbox is replayed in order before anything newer.
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

use std::collections::BTreeMap;
use std::io::Write;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow};

use super::breaker::{Breaker, BreakerSettings};
use super::envelope::{Emitted, Envelope, Level, Origin};
use super::outbox::{Caps, Counts, Item, Outbox};
use super::settings::PublishSettings;
use super::spool::{COMPACT_FLOOR, HEADER, Note, Replay, Spool};
use crate::fields;
use crate::redis::conn::Conn;
use crate::redis::error::ServerKind;

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
        settings: Box<PublishSettings>,
    },
    /// An in-memory bus for model tests.
    #[cfg(test)]
    Memory(std::sync::Arc<std::sync::Mutex<MemoryBus>>),
}

/// A scriptable in-memory bus: up or down, optionally cutting the next
/// batch after some envelopes (a pipeline cut midway), optionally refusing
/// every PUBLISH or every XADD with an error reply.
#[cfg(test)]
#[derive(Debug, Default)]
pub struct MemoryBus {
    /// Whether sends succeed.
    pub up: bool,
    /// Cut the next batch after this many envelopes, then fail it.
    pub cut_after: Option<usize>,
    /// Ids PUBLISHed, in order (duplicates included).
    pub received: Vec<String>,
    /// Ids XADDed, in order (duplicates included).
    pub streamed: Vec<String>,
    /// Error code every PUBLISH is refused with.
    pub refuse_publish: Option<String>,
    /// Error code every XADD is refused with.
    pub refuse_xadd: Option<String>,
    /// Sum of the counts of the drop reports XADDed.
    pub reported_drops: u64,
}

/// One write the bus refused with an error reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// `PUBLISH` or `XADD`.
    pub command: &'static str,
    /// What the error reply said: `OOM`, `READONLY`, `NOPERM`...
    pub kind: ServerKind,
    /// The rest of the error line.
    pub detail: String,
}

/// What the bus said to one batch.
#[derive(Debug, Default)]
struct Replies {
    /// Per envelope of the batch, oldest first: whether its PUBLISH and its
    /// XADD are now confirmed (sent in this batch or an earlier one).
    confirmed: Vec<(bool, bool)>,
    /// Writes refused with an error reply.
    refusals: Vec<Refusal>,
    /// The bus's `maxmemory_policy`, read on a fresh connection.
    policy: Option<String>,
    /// The stream was missing before this batch although an XADD to it
    /// had succeeded.
    stream_vanished: bool,
    /// An XADD of this batch succeeded.
    streamed: bool,
}

/// Buffers envelopes and sends them to the sink through the breaker.
pub struct Publisher {
    sink: Sink,
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

impl Publisher {
    /// A publisher over `sink`; `origin` stamps its own drop reports.
    pub fn new(sink: Sink, caps: Caps, breaker: BreakerSettings, origin: Origin) -> Self {
        Self {
            sink,
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
        let live: u64 = self.outbox.all().map(|i| record(&i.json)).sum();
        let notes = self.outbox.notes();
        let more: u64 = self.outbox.unspooled().map(record).sum::<u64>()
            + 40 * (notes.settled.len() + notes.published.len()) as u64;
        let drops = self.outbox.unreported().cloned();
        let result = if spool.wants_rewrite(live, more) {
            spool.rewrite(
                self.outbox
                    .all()
                    .map(|i| (i.envelope.id.as_str(), i.json.as_str(), i.published)),
                drops.as_ref(),
            )
        } else {
            // Envelopes spooled now whose PUBLISH already went out say so.
            let published = notes.published.iter().cloned().chain(
                self.outbox
                    .all()
                    .filter(|i| !i.spooled && i.published)
                    .map(|i| i.envelope.id.clone()),
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
                let e = anyhow!(self.describe(&replies.refusals));
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
            let envelope = self.origin.wrap(&self.origin.instance, event);
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

    /// The bus's `host:port`, and whether it is the watched Redis.
    fn bus(&self) -> (String, bool) {
        match &self.sink {
            Sink::Redis { conn, .. } => {
                (conn.instance.clone(), conn.instance == self.origin.instance)
            }
            _ => ("the bus".to_owned(), false),
        }
    }

    fn stream_key(&self) -> String {
        match &self.sink {
            Sink::Redis { settings, .. } => settings.stream_key.clone(),
            _ => "the stream".to_owned(),
        }
    }

    /// One line naming what the bus refused and how to fix it.
    fn describe(&self, refusals: &[Refusal]) -> String {
        let (bus, watched) = self.bus();
        let key = self.stream_key();
        let mut groups: BTreeMap<(&str, &str), (usize, &str, &ServerKind)> = BTreeMap::new();
        for r in refusals {
            groups
                .entry((r.command, r.kind.code()))
                .or_insert((0, r.detail.as_str(), &r.kind))
                .0 += 1;
        }
        let parts: Vec<String> = groups
            .into_iter()
            .map(|((command, code), (count, detail, kind))| {
                let detail = detail.trim();
                let detail = if detail.is_empty() {
                    String::new()
                } else {
                    format!(" ({detail})")
                };
                format!(
                    "bus {bus} refused {command} of {count} envelope{} with {code}{detail}: {}",
                    if count == 1 { "" } else { "s" },
                    advice(kind, command, &key, watched, self.policy.as_deref())
                )
            })
            .collect();
        parts.join("; ")
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
        let (bus, watched) = self.bus();
        let key = self.stream_key();
        let evicting = self
            .policy
            .as_deref()
            .filter(|p| p.starts_with("allkeys-"))
            .map(str::to_owned);
        let fix = if watched {
            "; set [publish] url to another Redis"
        } else {
            "; give the bus a maxmemory-policy that does not evict it (noeviction or volatile-*), or set [publish] url to another Redis"
        };
        if let Some(policy) = &evicting
            && !self.warned_policy
        {
            self.warned_policy = true;
            let also = if watched {
                " The bus is the watched Redis: Lookout's own writes use its memory, may evict its keys and count in its evicted_keys."
            } else {
                ""
            };
            let msg = format!(
                "the bus {bus} may evict the stream {key} (maxmemory-policy {policy}){fix}.{also}"
            );
            self.warn(
                msg,
                fields! {"bus" => bus.clone(), "stream_key" => key.clone(), "policy" => policy.clone(), "watched" => watched},
            );
        }
        if replies.stream_vanished && !self.warned_vanished {
            self.warned_vanished = true;
            let cause = match &evicting {
                Some(policy) => format!("evicted under maxmemory-policy {policy}"),
                None => "deleted, expired, or lost in a restart without persistence".to_owned(),
            };
            let fix = if evicting.is_some() { fix } else { "" };
            let msg = format!(
                "the stream {key} on {bus} vanished since Lookout last wrote to it: {cause}{fix}"
            );
            self.warn(
                msg,
                fields! {
                    "bus" => bus,
                    "stream_key" => key,
                    "policy" => self.policy.clone().unwrap_or_default(),
                    "watched" => watched,
                },
            );
        }
    }

    /// One of the publisher's own warnings: a log line and an envelope.
    fn warn(&mut self, msg: String, fields: serde_json::Map<String, serde_json::Value>) {
        tracing::warn!("{msg}");
        let event = Emitted::host(Level::Warn, msg, fields);
        let envelope = self.origin.wrap(&self.origin.instance, event);
        self.outbox.push(envelope);
    }

    async fn send(&mut self, n: usize) -> Result<Replies> {
        let items: Vec<&Item> = self.outbox.front(n).collect();
        let mut replies = Replies {
            confirmed: items.iter().map(|i| (i.published, i.streamed)).collect(),
            ..Replies::default()
        };
        match &mut self.sink {
            Sink::Stdout => {
                let mut out = std::io::stdout().lock();
                for item in &items {
                    writeln!(out, "{}", item.json).context("writing to stdout")?;
                }
                out.flush().context("writing to stdout")?;
                replies.confirmed.fill((true, true));
            }
            Sink::Redis { conn, settings } => {
                let mut pipe = redis::pipe();
                pipe.ignore_errors();
                let info = !conn.is_connected();
                if info {
                    pipe.cmd("INFO").arg("memory");
                }
                let exists = self.stream_written;
                if exists {
                    pipe.cmd("EXISTS").arg(&settings.stream_key);
                }
                // Per command after the probes: (envelope, is XADD).
                let mut plan = Vec::new();
                for (i, item) in items.iter().enumerate() {
                    let envelope = &item.envelope;
                    if !item.published {
                        let channel =
                            format!("{}.{}", settings.channel_prefix, envelope.level.as_str());
                        pipe.cmd("PUBLISH").arg(channel).arg(&item.json);
                        plan.push((i, false));
                    }
                    if !item.streamed {
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
                let expected = plan.len() + usize::from(info) + usize::from(exists);
                if values.len() != expected {
                    anyhow::bail!(
                        "publishing to {}: {} replies to {expected} commands",
                        conn.instance,
                        values.len()
                    );
                }
                let mut values = values.into_iter();
                if info && let Some(value) = values.next() {
                    replies.policy = text(&value).and_then(|t| info_field(&t, "maxmemory_policy"));
                }
                if exists && let Some(value) = values.next() {
                    replies.stream_vanished = matches!(value, redis::Value::Int(0));
                }
                for ((i, xadd), value) in plan.into_iter().zip(values) {
                    let command = if xadd { "XADD" } else { "PUBLISH" };
                    if let redis::Value::ServerError(e) = &value {
                        replies.refusals.push(Refusal {
                            command,
                            kind: ServerKind::from(e),
                            detail: e.details().unwrap_or_default().to_owned(),
                        });
                    } else if xadd {
                        replies.confirmed[i].1 = true;
                        replies.streamed = true;
                    } else {
                        replies.confirmed[i].0 = true;
                    }
                }
            }
            #[cfg(test)]
            Sink::Memory(bus) => {
                let mut bus = bus.lock().expect("test bus");
                if !bus.up {
                    anyhow::bail!("bus down");
                }
                let cut = bus.cut_after.take();
                for (i, item) in items.iter().enumerate() {
                    if cut.is_some_and(|k| i >= k) {
                        anyhow::bail!("pipeline cut after {}", cut.unwrap_or_default());
                    }
                    let id = &item.envelope.id;
                    if !item.published {
                        match bus.refuse_publish.clone() {
                            Some(code) => replies.refusals.push(Refusal {
                                command: "PUBLISH",
                                kind: ServerKind::from_code(&code, None),
                                detail: String::new(),
                            }),
                            None => {
                                bus.received.push(id.clone());
                                replies.confirmed[i].0 = true;
                            }
                        }
                    }
                    if !item.streamed {
                        match bus.refuse_xadd.clone() {
                            Some(code) => replies.refusals.push(Refusal {
                                command: "XADD",
                                kind: ServerKind::from_code(&code, None),
                                detail: String::new(),
                            }),
                            None => {
                                bus.streamed.push(id.clone());
                                replies.confirmed[i].1 = true;
                                let envelope = &item.envelope;
                                if envelope.target == super::envelope::HOST_TARGET
                                    && envelope.msg.starts_with("dropped ")
                                {
                                    bus.reported_drops +=
                                        envelope.fields["dropped"].as_u64().unwrap_or(0);
                                }
                            }
                        }
                    }
                }
            }
        }
        Ok(replies)
    }
}

/// What to do about an error reply of `kind` to `command`.
fn advice(
    kind: &ServerKind,
    command: &str,
    stream_key: &str,
    watched: bool,
    policy: Option<&str>,
) -> String {
    let elsewhere = if watched {
        " or set [publish] url to another Redis (the bus is the watched Redis)"
    } else {
        ""
    };
    match kind {
        ServerKind::Oom => match policy {
            Some(policy) if policy != "noeviction" => format!(
                "the bus reached maxmemory and its maxmemory-policy ({policy}) found nothing more to evict; raise maxmemory{elsewhere}; retrying with the breaker's backoff"
            ),
            _ => format!(
                "the bus reached maxmemory and its maxmemory-policy (noeviction) refuses writes; raise maxmemory{elsewhere}; retrying with the breaker's backoff"
            ),
        },
        ServerKind::ReadOnly => "the bus is a read-only replica (after a failover the primary moved); point [publish] url at the primary; retrying with the breaker's backoff".to_owned(),
        ServerKind::MisConf => "the bus refuses writes because its last RDB snapshot failed (stop-writes-on-bgsave-error); fix its disk or its save settings; retrying with the breaker's backoff".to_owned(),
        ServerKind::NoPerm => format!(
            "the ACL user of [publish] url may not run {command} there; grant it (+publish and the channel pattern, +xadd and the key {stream_key}) or use another user; retrying with the breaker's backoff"
        ),
        ServerKind::WrongType => format!(
            "the key {stream_key} holds something other than a stream; delete or rename it, or set [publish] stream_key; retrying with the breaker's backoff"
        ),
        ServerKind::NoAuth | ServerKind::WrongPass => "authentication failed; check the user and password in [publish] url; retrying with the breaker's backoff".to_owned(),
        ServerKind::Loading => "the bus is loading its data set; retrying with the breaker's backoff".to_owned(),
        ServerKind::MasterDown => "the bus is a replica that lost its primary; retrying with the breaker's backoff".to_owned(),
        ServerKind::Busy => "a script is running on the bus; retrying with the breaker's backoff".to_owned(),
        _ => "retrying with the breaker's backoff".to_owned(),
    }
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

/// The value of `key` in an INFO reply.
fn info_field(info: &str, key: &str) -> Option<String> {
    info.lines().find_map(|line| {
        let (k, v) = line.split_once(':')?;
        (k == key).then(|| v.trim().to_owned())
    })
}

#[cfg(test)]
#[path = "model_tests.rs"]
mod model_tests;

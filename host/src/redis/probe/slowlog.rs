//! The incremental SLOWLOG read: the cursor, the reads of one poll, and
//! the reply's parser.
//!
//! SLOWLOG is read exactly: the ring holds a contiguous range of ids, so a
//! read that reaches back to the id after the last one seen has every new
//! entry. The first read rides in the poll's pipeline, sized from how many
//! new ids the recent polls brought, so a steady load costs no round trip
//! of its own; only when its answer does not reach back (a burst) does the
//! poll read again, once at most, asking for what the first answer's newest
//! id says plus a little more (entries logged between the two commands).
//! What the ring no longer holds, more than `slowlog_count` can fetch, or
//! what the re-read still misses is reported as a gap with its ids. A
//! server is not trusted to be a Redis: repeated ids are read once and
//! reported, ids going back are never followed, and
//! [`super::Prober::poll_within`] bounds a whole poll's reads in time.

use anyhow::{Result, bail};
use redis::Value;

use super::snapshot::{Gap, InfoField, Notice, SlowEntry};
use crate::redis::conn::text;

/// Entries a re-read asks for beyond what the first answer's newest id
/// says, for entries logged between the two SLOWLOG reads.
const SLACK: u64 = 32;

/// SLOWLOG reads one poll makes at most after the one in its pipeline,
/// when a read does not reach back to the last id read (a burst beyond
/// what the first read asked for). Past it what is missing is a gap: a
/// server whose answers never reach back costs a poll this many more
/// reads, never a loop.
pub(crate) const SLOWLOG_REREADS: u32 = 1;

/// Arguments of one SLOWLOG entry kept, the last one saying how many more
/// there were (Redis itself logs at most 32).
const ENTRY_ARGS: usize = 32;
/// Bytes of one argument kept (Redis itself logs at most 128, then says
/// how many more); a longer one is cut to [`ARG_KEPT`] the same way.
const ARG_BYTES: usize = 192;
/// What a cut argument keeps.
const ARG_KEPT: usize = 128;
/// Bytes of an entry's client address or name kept.
const CLIENT_BYTES: usize = 256;

/// Where the SLOWLOG cursor stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cursor {
    /// Nothing read yet from this server: the whole ring is new.
    Unknown,
    /// Nothing read yet but an empty ring: whatever it holds now is new,
    /// and few are expected.
    Empty,
    /// The server restarted: its ids start again at 0.
    FromStart,
    /// Every id up to this one was read.
    After(u64),
}

/// The SLOWLOG of one watched server as read so far, so each entry is
/// handed over once.
#[derive(Debug)]
pub(super) struct Slowlog {
    /// Most entries one read fetches (`slowlog_count`).
    pub(super) count: u32,
    /// The server's `run_id` when last read: a new one means a restart.
    run_id: Option<String>,
    cursor: Cursor,
    /// New ids a poll brought lately: sizes the read in the pipeline.
    rate: Rate,
}

impl Slowlog {
    /// Nothing read yet; at most `count` entries a read.
    pub(super) fn new(count: u32) -> Self {
        Self {
            count,
            run_id: None,
            cursor: Cursor::Unknown,
            rate: Rate::default(),
        }
    }

    /// Entries the SLOWLOG GET in this poll's pipeline asks for: the whole
    /// ring (up to `count`) from a server not read yet, otherwise what the
    /// recent polls brought with a margin, 1 on a quiet server.
    pub(super) fn first_ask(&self) -> u64 {
        let max = u64::from(self.count);
        match self.cursor {
            Cursor::Unknown => max.max(1),
            Cursor::Empty | Cursor::FromStart | Cursor::After(_) => self.rate.ask(max),
        }
    }

    /// Takes the server's `run_id` from this poll's INFO; whether it
    /// replaced another one: Redis restarted, its ids start again at 0.
    pub(super) fn restarted(&mut self, info: &[InfoField]) -> bool {
        let run_id = info
            .iter()
            .find(|f| f.name == "run_id")
            .map(|f| f.value.clone());
        let mut restarted = false;
        if run_id != self.run_id {
            if self.run_id.is_some() {
                // Redis restarted: ids start again at 0.
                self.cursor = Cursor::FromStart;
                restarted = true;
            }
            self.run_id = run_id;
        }
        restarted
    }

    /// The new SLOWLOG entries, oldest first, given `first`, the answer to
    /// the pipeline's `SLOWLOG GET ask` ([`Self::first_ask`]), once
    /// [`Self::restarted`] has seen the same pipeline's INFO. When that
    /// answer does not reach back to the id after the last one read,
    /// reads again from `source`, at most [`SLOWLOG_REREADS`] times;
    /// records gaps in `notices`.
    ///
    /// # Errors
    /// A re-read failed.
    pub(super) async fn read(
        &mut self,
        ask: u64,
        first: Vec<SlowEntry>,
        notices: &mut Vec<Notice>,
        source: &mut impl Reread,
    ) -> Result<Vec<SlowEntry>> {
        let max = u64::from(self.count);
        let from = match self.cursor {
            Cursor::Unknown | Cursor::Empty => None,
            Cursor::FromStart => Some(0),
            Cursor::After(last) => Some(last + 1),
        };
        let (mut entries, mut read) = Read::of(first, ask, max, 0);
        let Some(newest) = entries.last().map(|e| e.id) else {
            // An empty ring: nothing new (SLOWLOG RESET keeps the ids going).
            if self.cursor == Cursor::Unknown {
                self.cursor = Cursor::Empty;
            }
            self.rate.observe(0);
            return Ok(Vec::new());
        };
        if from.is_some_and(|from| newest < from) {
            // Nothing new, or ids going back without a restart (not a
            // Redis ring): never followed.
            self.rate.observe(0);
            return Ok(Vec::new());
        }
        loop {
            match read.next(from, &entries) {
                Next::Done => break,
                Next::Gap { first, last, cause } => {
                    notices.push(Notice::Gap { first, last, cause });
                    break;
                }
                Next::Again(more) => {
                    let ask = more.saturating_add(SLACK).min(max);
                    (entries, read) = Read::of(source.get(ask).await?, ask, max, read.rereads + 1);
                }
            }
        }
        let top = entries.last().map(|e| e.id);
        let seen = top.unwrap_or(newest).max(newest);
        let brought = match self.cursor {
            Cursor::Unknown => None,
            Cursor::Empty => Some(u64::try_from(entries.len()).unwrap_or(u64::MAX)),
            Cursor::FromStart => Some(seen.saturating_add(1)),
            Cursor::After(last) => Some(seen - last),
        };
        if let Some(brought) = brought {
            self.rate.observe(brought.min(max));
        }
        if top.is_some() {
            self.cursor = Cursor::After(seen);
        }
        if let Some(from) = from {
            entries.retain(|e| e.id >= from);
        }
        Ok(entries)
    }
}

/// Where a poll's SLOWLOG re-reads come from: the watched connection (or a
/// test's ring).
pub(super) trait Reread {
    /// The answer to `SLOWLOG GET n`.
    async fn get(&mut self, n: u64) -> Result<Vec<SlowEntry>>;
}

/// How many new ids a poll brings, learned from the recent polls, to size
/// the read in the next poll's pipeline.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Rate(u64);

impl Rate {
    /// Takes the new ids one poll brought: a rise at once (a load that
    /// rose tends to stay), a fall half the way each poll (after a burst
    /// the first reads shrink back within a few polls).
    fn observe(&mut self, brought: u64) {
        self.0 = if brought >= self.0 {
            brought
        } else {
            self.0 - (self.0 - brought).div_ceil(2)
        };
    }

    /// Entries the first read asks for, at most `max`: the rate, half
    /// again for a poll that brings more than the recent ones, and one
    /// more; 1 on a quiet server.
    fn ask(self, max: u64) -> u64 {
        self.0
            .saturating_add(self.0 / 2)
            .saturating_add(1)
            .min(max)
            .max(1)
    }
}

/// One SLOWLOG read, to judge whether it has every new entry.
#[derive(Debug, Clone, Copy)]
struct Read {
    /// Entries asked for.
    ask: u64,
    /// Most entries one read fetches (`slowlog_count`).
    max: u64,
    /// Entries the answer held, repeated ids included.
    got: u64,
    /// Whether the answer repeated an id (a ring never does).
    repeated: bool,
    /// Re-reads made so far in this poll.
    rereads: u32,
}

/// What follows one SLOWLOG read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Next {
    /// It has every new entry (or nothing was read before: all are new).
    Done,
    /// Done; ids `first..=last` could not be read.
    Gap { first: u64, last: u64, cause: Gap },
    /// Read again, this many entries (the answer did not reach back: a
    /// burst, or entries logged between two reads).
    Again(u64),
}

impl Read {
    /// A read of `ask` entries (at most `max` a read) answered `entries`,
    /// the `rereads`th re-read of its poll: the entries sorted by id with
    /// repeats removed, and what [`Read::next`] judges them by.
    fn of(mut entries: Vec<SlowEntry>, ask: u64, max: u64, rereads: u32) -> (Vec<SlowEntry>, Self) {
        entries.sort_by_key(|e| e.id);
        let raw = entries.len();
        entries.dedup_by_key(|e| e.id);
        let read = Self {
            ask,
            max,
            got: u64::try_from(raw).unwrap_or(u64::MAX),
            repeated: entries.len() < raw,
            rereads,
        };
        (entries, read)
    }

    /// Given the first new id `from` (`None`: every entry in the ring is
    /// new) and the entries read, sorted by id with repeats removed:
    /// complete when they reach back to `from`, or with `from` unknown
    /// when the ring held fewer than asked or `max` were read; read again
    /// at most [`SLOWLOG_REREADS`] times when more entries may be there;
    /// otherwise the ids missed.
    fn next(self, from: Option<u64>, entries: &[SlowEntry]) -> Next {
        let (Some(oldest), Some(top)) =
            (entries.first().map(|e| e.id), entries.last().map(|e| e.id))
        else {
            return Next::Done;
        };
        let more_reads = self.rereads < SLOWLOG_REREADS;
        let Some(from) = from else {
            // Nothing read before: all are new, as many as one read holds.
            let full = self.got >= self.ask && self.ask < self.max;
            return if full && more_reads {
                Next::Again(self.max)
            } else {
                Next::Done
            };
        };
        if oldest <= from {
            return Next::Done;
        }
        let gap = |cause| Next::Gap {
            first: from,
            last: oldest - 1,
            cause,
        };
        if self.repeated {
            gap(Gap::Repeated)
        } else if self.got < self.ask || self.ask >= self.max {
            // The ring no longer holds them, or one read cannot reach.
            gap(Gap::Ring)
        } else if !more_reads {
            gap(Gap::Rereads)
        } else {
            Next::Again(top - from + 1)
        }
    }
}

fn int(value: Option<&Value>) -> Result<i64> {
    match value {
        Some(Value::Int(n)) => Ok(*n),
        other => bail!(
            "expected an integer, got {}",
            crate::untrusted::clip(&format!("{other:?}"))
        ),
    }
}

/// Parses a SLOWLOG GET reply.
///
/// # Errors
/// The reply is not the documented array of entries.
pub(crate) fn parse_slowlog(value: &Value) -> Result<Vec<SlowEntry>> {
    let Value::Array(items) = value else {
        bail!(
            "SLOWLOG GET: expected an array, got {}",
            crate::untrusted::clip(&format!("{value:?}"))
        );
    };
    items
        .iter()
        .map(|item| {
            let Value::Array(parts) = item else {
                bail!(
                    "SLOWLOG entry: expected an array, got {}",
                    crate::untrusted::clip(&format!("{item:?}"))
                );
            };
            let args = match parts.get(3) {
                Some(Value::Array(args)) => {
                    let mut kept = args
                        .iter()
                        .take(ENTRY_ARGS)
                        .map(|a| Ok(cut(text(Some(a))?, ARG_BYTES, ARG_KEPT)))
                        .collect::<Result<Vec<_>>>()?;
                    if args.len() > ENTRY_ARGS {
                        // As Redis says it: the last kept one names the rest.
                        let more = args.len() - (ENTRY_ARGS - 1);
                        kept.truncate(ENTRY_ARGS - 1);
                        kept.push(format!("... ({more} more arguments)"));
                    }
                    kept
                }
                other => bail!(
                    "SLOWLOG entry args: expected an array, got {}",
                    crate::untrusted::clip(&format!("{other:?}"))
                ),
            };
            // The client's address and name: optional, cut to CLIENT_BYTES.
            let client = |at: usize| -> Result<String> {
                Ok(parts
                    .get(at)
                    .map(|v| text(Some(v)))
                    .transpose()?
                    .map(|t| cut(t, CLIENT_BYTES, CLIENT_BYTES))
                    .unwrap_or_default())
            };
            Ok(SlowEntry {
                id: u64::try_from(int(parts.first())?)?,
                started_at: int(parts.get(1))?,
                duration_us: u64::try_from(int(parts.get(2))?)?,
                args,
                client_addr: client(4)?,
                client_name: client(5)?,
            })
        })
        .collect()
}

/// `text` when at most `max` bytes; otherwise its first `kept` bytes (at
/// a character boundary) and how many more there were, as Redis cuts a
/// SLOWLOG argument.
fn cut(mut text: String, max: usize, kept: usize) -> String {
    if text.len() <= max {
        return text;
    }
    let mut end = kept.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let more = text.len() - end;
    text.truncate(end);
    text.push_str(&format!("... ({more} more bytes)"));
    text
}

#[cfg(test)]
mod tests;

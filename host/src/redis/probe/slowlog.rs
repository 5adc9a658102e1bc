//! The incremental SLOWLOG read: the cursor, the reads of one poll, and
//! the reply's parser.
//!
//! SLOWLOG is read exactly: the ring holds a contiguous range of ids, so a
//! read that reaches back to the id after the last one seen has every new
//! entry. Reads ask for a little more than the newest id says (entries
//! logged between two commands), and ask again when the answer does not
//! reach back, once per poll at most; what the ring no longer holds, more
//! than `slowlog_count` can fetch, or what the re-read still misses is
//! reported as a gap with its ids. A server is not trusted to be a Redis:
//! repeated ids are read once and reported, ids going back are never
//! followed, and [`super::Prober::poll_within`] bounds a whole poll's reads in
//! time.

use anyhow::{Context, Result, bail};
use redis::Value;

use super::snapshot::{Gap, InfoField, Notice, SlowEntry};
use crate::redis::conn::{Conn, text};

/// Entries asked for beyond what the newest id says, for entries logged
/// between the two SLOWLOG reads.
const SLACK: u64 = 32;

/// SLOWLOG re-reads one poll makes at most, when a read does not reach
/// back to the last id read (more entries were logged between two
/// commands than the slack covers). Past it what is missing is a gap: a
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
}

impl Slowlog {
    /// Nothing read yet; at most `count` entries a read.
    pub(super) fn new(count: u32) -> Self {
        Self {
            count,
            run_id: None,
            cursor: Cursor::Unknown,
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

    /// The new SLOWLOG entries on `conn`, oldest first, without the
    /// host's own commands, given the newest id now in the ring; records
    /// gaps in `notices`. `reading(n)` is told before each SLOWLOG GET n.
    pub(super) async fn read(
        &mut self,
        conn: &mut Conn,
        newest: Option<u64>,
        notices: &mut Vec<Notice>,
        mut reading: impl FnMut(u64),
    ) -> Result<Vec<SlowEntry>> {
        let Some(newest) = newest else {
            // An empty ring: nothing new (SLOWLOG RESET keeps the ids going).
            return Ok(Vec::new());
        };
        let from = match self.cursor {
            Cursor::Unknown => None,
            Cursor::FromStart => Some(0),
            Cursor::After(last) => Some(last + 1),
        };
        let max = u64::from(self.count);
        let mut need = match from {
            None => max,
            // Nothing new, or ids going back without a restart (not a
            // Redis ring): never followed.
            Some(from) if newest < from => return Ok(Vec::new()),
            Some(from) => newest - from + 1,
        };
        let mut rereads = 0;
        let mut entries = loop {
            let ask = (need + SLACK).min(max);
            let mut get = redis::pipe();
            get.cmd("SLOWLOG").arg("GET").arg(ask);
            reading(ask);
            let replies = conn.query(&get).await.context("SLOWLOG GET")?;
            let mut entries = parse_slowlog(replies.first().context("SLOWLOG GET reply")?)?;
            entries.sort_by_key(|e| e.id);
            let raw = entries.len();
            entries.dedup_by_key(|e| e.id);
            let read = Read {
                ask,
                max,
                got: u64::try_from(raw).unwrap_or(u64::MAX),
                repeated: entries.len() < raw,
                rereads,
            };
            match read.next(from, &entries) {
                Next::Done => break entries,
                Next::Gap { first, last, cause } => {
                    notices.push(Notice::Gap { first, last, cause });
                    break entries;
                }
                Next::Again(more) => {
                    rereads += 1;
                    need = more;
                }
            }
        };
        if let Some(top) = entries.last().map(|e| e.id) {
            self.cursor = Cursor::After(top.max(newest));
        }
        if let Some(from) = from {
            entries.retain(|e| e.id >= from);
        }
        entries.retain(|e| !conn.is_own(&e.client_addr, &e.client_name));
        Ok(entries)
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
    /// Read again, this many entries (more were logged since the first).
    Again(u64),
}

impl Read {
    /// Given the first new id `from` (`None`: nothing read before) and the
    /// entries read, sorted by id with repeats removed: complete when they
    /// reach back to `from`; read again at most [`SLOWLOG_REREADS`] times
    /// when more entries may have arrived; otherwise the ids missed.
    fn next(self, from: Option<u64>, entries: &[SlowEntry]) -> Next {
        let (Some(from), Some(oldest), Some(top)) = (
            from,
            entries.first().map(|e| e.id),
            entries.last().map(|e| e.id),
        ) else {
            return Next::Done;
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
        } else if self.rereads >= SLOWLOG_REREADS {
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
mod tests {
    use super::*;

    #[test]
    fn slowlog_reply_parses() {
        let bulk = |s: &str| Value::BulkString(s.as_bytes().to_vec());
        let reply = Value::Array(vec![Value::Array(vec![
            Value::Int(7),
            Value::Int(1_700_000_000),
            Value::Int(1500),
            Value::Array(vec![bulk("GET"), bulk("k")]),
            bulk("127.0.0.1:5000"),
            bulk("app"),
        ])]);
        let e = &parse_slowlog(&reply).unwrap()[0];
        assert_eq!(e.id, 7);
        assert_eq!(e.duration_us, 1500);
        assert_eq!(e.args, ["GET", "k"]);
        assert_eq!(e.client_name, "app");
        assert!(parse_slowlog(&Value::Int(1)).is_err());
    }

    fn entries(ids: impl IntoIterator<Item = u64>) -> Vec<SlowEntry> {
        ids.into_iter()
            .map(|id| SlowEntry {
                id,
                ..SlowEntry::default()
            })
            .collect()
    }

    /// A read that does not reach back is repeated once, then the rest is
    /// a gap; repeated ids (no ring has them) are a gap at once; a read
    /// that reaches back, or the first read of a server, is complete.
    #[test]
    fn a_slowlog_read_is_repeated_at_most_once() {
        let first = Read {
            ask: 42,
            max: 128,
            got: 42,
            repeated: false,
            rereads: 0,
        };
        // Ids 11 and on are new; the read holds 20..=61.
        let read = entries(20..62);
        assert_eq!(first.next(Some(11), &read), Next::Again(51));
        let again = Read {
            rereads: SLOWLOG_REREADS,
            ..first
        };
        assert_eq!(
            again.next(Some(11), &read),
            Next::Gap {
                first: 11,
                last: 19,
                cause: Gap::Rereads
            }
        );
        assert_eq!(again.next(Some(11), &entries(5..50)), Next::Done);
        assert_eq!(first.next(None, &read), Next::Done, "first read");
        assert_eq!(first.next(Some(11), &[]), Next::Done, "empty ring");
        // 42 copies of id 30, read once each.
        let liar = Read {
            repeated: true,
            ..first
        };
        assert_eq!(
            liar.next(Some(11), &entries([30])),
            Next::Gap {
                first: 11,
                last: 29,
                cause: Gap::Repeated
            }
        );
        let short = Read { got: 10, ..first };
        assert_eq!(
            short.next(Some(11), &entries(20..30)),
            Next::Gap {
                first: 11,
                last: 19,
                cause: Gap::Ring
            }
        );
        let full = Read {
            ask: 128,
            got: 128,
            ..first
        };
        assert!(matches!(
            full.next(Some(11), &entries(200..328)),
            Next::Gap {
                cause: Gap::Ring,
                ..
            }
        ));
    }

    /// Entries are kept at Redis's own bounds: 32 arguments of 128 bytes,
    /// the last saying how many more; client address and name 256 bytes.
    #[test]
    fn slowlog_entries_are_cut_as_redis_cuts_them() {
        let bulk = |s: &str| Value::BulkString(s.as_bytes().to_vec());
        let long = "é".repeat(500);
        let mut args = vec![bulk(&long)];
        args.extend((0..99).map(|i| bulk(&i.to_string())));
        let reply = Value::Array(vec![Value::Array(vec![
            Value::Int(1),
            Value::Int(0),
            Value::Int(1),
            Value::Array(args),
            bulk(&"a".repeat(100_000)),
            bulk("app"),
        ])]);
        let e = &parse_slowlog(&reply).unwrap()[0];
        assert_eq!(e.args.len(), 32);
        assert_eq!(e.args[31], "... (69 more arguments)");
        assert_eq!(e.args[0], format!("{}... (872 more bytes)", "é".repeat(64)));
        assert_eq!(e.args[1], "0");
        assert!(e.client_addr.len() < 300, "{}", e.client_addr.len());
        assert_eq!(e.client_name, "app");
        let redis_cut = format!("{}... (4000 more bytes)", "x".repeat(128));
        assert_eq!(cut(redis_cut.clone(), ARG_BYTES, ARG_KEPT), redis_cut);
    }
}

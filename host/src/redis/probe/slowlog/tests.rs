//! Unit tests of the SLOWLOG reader: the reply parser, the judgement of
//! one read, the rate that sizes the first read, and whole polls of a
//! simulated ring.

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
    // Nothing read before: all are new; a full answer smaller than one
    // read can be is read again at its largest, once.
    assert_eq!(first.next(None, &read), Next::Again(128), "full");
    assert_eq!(again.next(None, &read), Next::Done, "read again");
    let short = Read { got: 41, ..first };
    assert_eq!(short.next(None, &entries(20..61)), Next::Done, "the ring");
    let whole = Read {
        ask: 128,
        got: 128,
        ..first
    };
    assert_eq!(whole.next(None, &entries(0..128)), Next::Done, "max");
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

/// The estimate rises at once, falls half the way a poll, and sizes
/// the first read with a margin: 1 on a quiet server, never more than
/// one read can fetch.
#[test]
fn the_rate_sizes_the_first_read() {
    let mut rate = Rate::default();
    assert_eq!(rate.ask(128), 1, "quiet");
    for brought in [20, 18, 22, 19, 21] {
        rate.observe(brought);
        assert!(rate.ask(128) >= 22, "each poll of this load fits: {rate:?}");
    }
    assert_eq!(rate, Rate(21), "half the way from 22 to 19, then up to 21");
    assert_eq!(rate.ask(128), 32);
    rate.observe(300);
    assert_eq!(rate.ask(128), 128, "at most one read");
    let mut after = Vec::new();
    for _ in 0..10 {
        rate.observe(0);
        after.push(rate.0);
    }
    assert_eq!(after, [150, 75, 37, 18, 9, 4, 2, 1, 0, 0]);
    assert_eq!(rate.ask(128), 1, "quiet again");
    assert_eq!(Rate(u64::MAX).ask(7), 7);
}

/// A SLOWLOG ring as Redis keeps it, counting the re-reads asked of it.
struct Ring {
    /// Ids held, oldest first.
    ids: std::collections::VecDeque<u64>,
    next: u64,
    len: usize,
    rereads: Vec<u64>,
}

impl Ring {
    fn new(len: usize) -> Self {
        Self {
            ids: std::collections::VecDeque::new(),
            next: 0,
            len,
            rereads: Vec::new(),
        }
    }

    fn log(&mut self, n: u64) {
        for _ in 0..n {
            self.ids.push_back(self.next);
            self.next += 1;
            if self.ids.len() > self.len {
                self.ids.pop_front();
            }
        }
    }

    /// `SLOWLOG GET n`: the newest `n`, newest first.
    fn answer(&self, n: u64) -> Vec<SlowEntry> {
        let n = usize::try_from(n).unwrap();
        entries(self.ids.iter().rev().take(n).copied())
    }
}

impl Reread for Ring {
    async fn get(&mut self, n: u64) -> Result<Vec<SlowEntry>> {
        self.rereads.push(n);
        Ok(self.answer(n))
    }
}

/// One poll of `ring`: the pipeline's read, then what `read` asks.
fn poll(log: &mut Slowlog, ring: &mut Ring, notices: &mut Vec<Notice>) -> Vec<u64> {
    let ask = log.first_ask();
    let first = ring.answer(ask);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    runtime
        .block_on(log.read(ask, first, notices, ring))
        .unwrap()
        .iter()
        .map(|e| e.id)
        .collect()
}

fn run_id(id: &str) -> Vec<InfoField> {
    vec![InfoField {
        section: "server".into(),
        name: "run_id".into(),
        value: id.into(),
    }]
}

/// A steady load is read in the poll's pipeline after one poll that
/// learns its rate; a burst beyond it takes one re-read; every id is
/// handed over once, oldest first, and a quiet server is asked for 1.
#[test]
fn a_steady_load_is_read_in_one_round_trip() {
    let (mut log, mut ring, mut notices) = (Slowlog::new(128), Ring::new(1000), Vec::new());
    ring.log(50);
    let mut handed = poll(&mut log, &mut ring, &mut notices);
    assert_eq!(
        ring.rereads,
        [] as [u64; 0],
        "the first poll reads the ring"
    );
    for _ in 0..20 {
        ring.log(20);
        handed.extend(poll(&mut log, &mut ring, &mut notices));
    }
    assert_eq!(
        ring.rereads,
        [20 + SLACK],
        "the second poll learns the rate"
    );
    assert_eq!(log.first_ask(), 31);
    ring.log(100);
    handed.extend(poll(&mut log, &mut ring, &mut notices));
    assert_eq!(
        ring.rereads[1..],
        [128],
        "a burst, with slack up to one read"
    );
    for _ in 0..12 {
        ring.log(1);
        handed.extend(poll(&mut log, &mut ring, &mut notices));
    }
    assert_eq!(ring.rereads.len(), 2);
    assert_eq!(log.first_ask(), 2, "quiet: one a poll");
    for _ in 0..3 {
        handed.extend(poll(&mut log, &mut ring, &mut notices));
    }
    assert_eq!(log.first_ask(), 1, "nothing new");
    assert_eq!(handed, (0..ring.next).collect::<Vec<_>>());
    assert!(notices.is_empty(), "{notices:?}");
}

/// The first read's guarantees hold when it rides in the pipeline: a
/// ring that dropped entries is a gap without a re-read, a restart
/// (this poll's INFO) starts at id 0, ids going back are not
/// followed, and entries logged into a ring first seen empty are all
/// read.
#[test]
fn the_first_read_keeps_the_cursor_exact() {
    let (mut log, mut ring, mut notices) = (Slowlog::new(128), Ring::new(16), Vec::new());
    assert!(!log.restarted(&run_id("a")));
    assert!(poll(&mut log, &mut ring, &mut notices).is_empty());
    assert_eq!(log.first_ask(), 1, "an empty ring");
    ring.log(12);
    assert_eq!(
        poll(&mut log, &mut ring, &mut notices),
        (0..12).collect::<Vec<_>>()
    );
    assert_eq!(ring.rereads, [128], "all new, more than asked");
    assert_eq!(log.first_ask(), 19);
    ring.log(40);
    let got = poll(&mut log, &mut ring, &mut notices);
    assert_eq!(got, (36..52).collect::<Vec<_>>());
    assert_eq!(ring.rereads.len(), 1, "the ring is shorter than asked");
    assert_eq!(
        notices.pop(),
        Some(Notice::Gap {
            first: 12,
            last: 35,
            cause: Gap::Ring
        })
    );

    // Restarted: ids from 0 again, seen in the same pipeline's INFO.
    let mut restarted = Ring::new(16);
    restarted.log(3);
    assert!(log.restarted(&run_id("b")));
    assert_eq!(poll(&mut log, &mut restarted, &mut notices), [0, 1, 2]);
    // The same server's ids going back: not followed.
    let mut back = Ring::new(16);
    back.log(2);
    assert!(!log.restarted(&run_id("b")));
    assert!(poll(&mut log, &mut back, &mut notices).is_empty());
    restarted.log(2);
    assert_eq!(poll(&mut log, &mut restarted, &mut notices), [3, 4]);
    assert!(notices.is_empty(), "{notices:?}");
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

//! Model-based tests of the outbox and breaker behind the publisher.
//!
//! A property test runs random sequences of emits, bus outages, pipeline
//! cuts, error replies to every PUBLISH or every XADD, flushes, recovery
//! waits and a shutdown against a publisher on the in-memory bus, and after
//! every step compares it with a plain model: a queue of expected envelopes
//! with the same caps and drop policy and which of their two writes the bus
//! confirmed, the emitted/delivered/dropped counters, the breaker state and
//! the exact sequences of ids the bus must have received on pub/sub and on
//! the stream. Only a cut pipeline may duplicate an id; an error reply
//! never does. A second property test adds a spool and crashes (restarts
//! on the same spool file): every envelope ever created reaches the stream
//! once or is counted in exactly one drop report. Plain tests pin a few
//! scenarios down.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use proptest::prelude::*;
use proptest::test_runner::Config;

use super::memory::MemoryBus;
use super::{BATCH, Publisher};
use crate::delivery::breaker::{BreakerSettings, State};
use crate::delivery::envelope::fields;
use crate::delivery::envelope::{Envelope, HOST_TARGET, Level, Origin};
use crate::delivery::outbox::{Caps, DropPolicy};
use crate::delivery::spool::Spool;

/// Recovery time after which an open breaker probes at once.
const NOW: Duration = Duration::ZERO;
/// Recovery time that a `WaitRecovery` step sleeps through.
const SHORT: Duration = Duration::from_millis(1);
/// Recovery time no test outlasts: an open breaker stays open.
const LONG: Duration = Duration::from_secs(3600);
/// Grace of a shutdown step: one attempt, then give up.
const GRACE: Duration = Duration::from_millis(10);
/// Longest padding of an emitted message.
const MAX_PAD: usize = 120;
/// A timestamp of the length every envelope `ts` has.
const TS: &str = "1970-01-01T00:00:00.000Z";

/// The publisher under test: over the in-memory bus.
type Tested = Publisher<Arc<Mutex<MemoryBus>>>;

fn origin() -> Origin {
    Origin {
        service: "redis".to_owned(),
        host: "model-host".to_owned(),
        pid: 4242,
        instance: "127.0.0.1:6379".to_owned(),
        ..Origin::new("redis", "127.0.0.1:6379")
    }
}

fn event(origin: &Origin, seq: usize, pad: usize) -> Envelope {
    origin.envelope(
        Level::Info,
        "model",
        format!("event {seq:08}{}", "x".repeat(pad)),
        fields! {"seq" => format!("{seq:08}")},
    )
}

/// JSON size of the publisher's drop report for `count` drops under `caps`
/// (every `ts` has the same length, so placeholders give the exact size).
fn report_size(origin: &Origin, caps: Caps, count: u64) -> usize {
    let policy = caps.policy.as_str();
    let msg = format!(
        "dropped {count} envelopes between {TS} and {TS} ({policy}, buffer full at {} envelopes / {} bytes)",
        caps.envelopes, caps.bytes
    );
    let fields = fields! {
        "dropped" => count,
        "first_ts" => TS,
        "last_ts" => TS,
        "policy" => policy,
    };
    origin
        .envelope(Level::Warn, HOST_TARGET, msg, fields)
        .to_json()
        .len()
}

/// JSON size of an event without padding (the same for every `seq`).
fn event_size() -> usize {
    event(&origin(), 0, 0).to_json().len()
}

/// Smallest byte cap generated: every event and every drop report fits an
/// empty outbox, so the model never meets an envelope larger than the cap.
fn byte_floor() -> usize {
    let origin = origin();
    let caps = Caps {
        envelopes: 40,
        bytes: usize::MAX,
        policy: DropPolicy::DropNewest,
    };
    let report = report_size(&origin, caps, 10_000_000);
    report.max(event_size() + MAX_PAD)
}

/// The breaker state, without the open breaker's deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Breaker {
    Closed(u32),
    Open,
    HalfOpen,
}

impl Breaker {
    fn of(state: State) -> Self {
        match state {
            State::Closed { failures } => Self::Closed(failures),
            State::Open { .. } => Self::Open,
            State::HalfOpen => Self::HalfOpen,
        }
    }
}

/// What an emission index stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// An envelope the test pushed.
    Event,
    /// The publisher's report of this many drops.
    Report(u64),
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    seq: usize,
    size: usize,
    published: bool,
    streamed: bool,
}

/// What both the publisher and the model expose, compared to tell how many
/// attempts a time-bounded drain made.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Snapshot {
    breaker: Breaker,
    pending: usize,
    received: usize,
    streamed: usize,
    cut: Option<usize>,
    counts: (u64, u64, u64),
}

/// The reference model: the outbox as a queue of emission indices.
#[derive(Debug, Clone)]
struct Model {
    caps: Caps,
    failures: u32,
    origin: Origin,
    /// Kind of every emission index, test events and reports alike.
    kinds: Vec<Kind>,
    queue: VecDeque<Entry>,
    bytes: usize,
    emitted: u64,
    delivered: u64,
    dropped: u64,
    /// Drops not reported yet.
    unreported: u64,
    breaker: Breaker,
    up: bool,
    cut: Option<usize>,
    refuse_publish: bool,
    refuse_xadd: bool,
    /// Emission indices the bus must have PUBLISHed, in order.
    received: Vec<usize>,
    /// Emission indices the bus must have XADDed, in order.
    streamed: Vec<usize>,
    /// Batches cut partway (the only source of duplicates).
    cuts: usize,
}

impl Model {
    fn new(caps: Caps, breaker: BreakerSettings, up: bool) -> Self {
        Self {
            caps,
            failures: breaker.failures,
            origin: origin(),
            kinds: Vec::new(),
            queue: VecDeque::new(),
            bytes: 0,
            emitted: 0,
            delivered: 0,
            dropped: 0,
            unreported: 0,
            breaker: Breaker::Closed(0),
            up,
            cut: None,
            refuse_publish: false,
            refuse_xadd: false,
            received: Vec::new(),
            streamed: Vec::new(),
            cuts: 0,
        }
    }

    fn push(&mut self, kind: Kind, size: usize) -> usize {
        let seq = self.kinds.len();
        self.kinds.push(kind);
        self.emitted += 1;
        let fits = |m: &Self| m.queue.len() < m.caps.envelopes && m.bytes + size <= m.caps.bytes;
        match self.caps.policy {
            DropPolicy::DropNewest => {
                if !fits(self) {
                    self.dropped += 1;
                    self.unreported += 1;
                    return seq;
                }
            }
            DropPolicy::DropOldest => {
                while !fits(self) {
                    let old = self
                        .queue
                        .pop_front()
                        .expect("generated envelopes fit an empty outbox");
                    self.bytes -= old.size;
                    self.dropped += 1;
                    self.unreported += 1;
                }
            }
        }
        self.bytes += size;
        self.queue.push_back(Entry {
            seq,
            size,
            published: false,
            streamed: false,
        });
        seq
    }

    /// One `flush`; `allowed` is whether the breaker lets it send.
    fn flush(&mut self, allowed: bool) -> Result<usize, ()> {
        if self.queue.is_empty() || !allowed {
            return Ok(0);
        }
        if self.breaker == Breaker::Open {
            self.breaker = Breaker::HalfOpen;
        }
        let mut sent = 0;
        while !self.queue.is_empty() {
            let n = self.queue.len().min(BATCH);
            // The writes the bus executes, and whether the replies come
            // back (a cut loses them all).
            let cut = self
                .up
                .then(|| self.cut.take())
                .flatten()
                .filter(|k| *k < n);
            let executed = match (self.up, cut) {
                (false, _) => 0,
                (true, Some(k)) => k,
                (true, None) => n,
            };
            let mut refused = false;
            let mut batch: Vec<Entry> = self.queue.iter().take(n).copied().collect();
            for entry in batch.iter_mut().take(executed) {
                if !entry.published {
                    if self.refuse_publish {
                        refused = true;
                    } else {
                        self.received.push(entry.seq);
                        entry.published = true;
                    }
                }
                if !entry.streamed {
                    if self.refuse_xadd {
                        refused = true;
                    } else {
                        self.streamed.push(entry.seq);
                        entry.streamed = true;
                    }
                }
            }
            if cut.is_some() {
                self.cuts += 1;
            }
            let replied = self.up && cut.is_none();
            if replied {
                // Confirmed writes are kept; delivered envelopes leave.
                let rest: Vec<Entry> = self.queue.drain(..n).collect();
                let mut kept = Vec::new();
                for entry in batch {
                    if entry.published && entry.streamed {
                        self.bytes -= entry.size;
                        self.delivered += 1;
                        sent += 1;
                    } else {
                        kept.push(entry);
                    }
                }
                drop(rest);
                for entry in kept.into_iter().rev() {
                    self.queue.push_front(entry);
                }
            }
            if !replied || refused {
                self.breaker = match self.breaker {
                    Breaker::Closed(f) if f + 1 < self.failures => Breaker::Closed(f + 1),
                    _ => Breaker::Open,
                };
                return Err(());
            }
            self.breaker = Breaker::Closed(0);
            if self.unreported > 0 {
                let count = std::mem::take(&mut self.unreported);
                let size = report_size(&self.origin, self.caps, count);
                self.push(Kind::Report(count), size);
            }
        }
        Ok(sent)
    }

    /// One attempt of `drain`: the breaker is forced closed, then a flush.
    fn drain_once(&mut self) {
        if self.queue.is_empty() {
            return;
        }
        self.breaker = Breaker::Closed(0);
        let _ = self.flush(true);
    }

    fn snapshot(&self) -> Snapshot {
        Snapshot {
            breaker: self.breaker,
            pending: self.queue.len(),
            received: self.received.len(),
            streamed: self.streamed.len(),
            cut: self.cut,
            counts: (self.emitted, self.delivered, self.dropped),
        }
    }
}

#[derive(Debug, Clone)]
enum Op {
    Emit {
        count: usize,
        pad: usize,
    },
    BusUp,
    BusDown,
    CutNext(usize),
    /// Every PUBLISH (false) or every XADD (true) refused with this code,
    /// or accepted again (None).
    Refuse(bool, Option<&'static str>),
    Flush,
    WaitRecovery,
    Shutdown,
}

#[derive(Debug, Clone, Copy)]
struct Setup {
    caps: Caps,
    breaker: BreakerSettings,
    up: bool,
}

fn setup() -> impl Strategy<Value = Setup> {
    let floor = byte_floor();
    let size = event_size();
    (
        1usize..=40,
        prop_oneof![
            Just(usize::MAX),
            floor..floor * 4,
            // Exactly full with unpadded events.
            (floor.div_ceil(size)..floor * 4 / size).prop_map(move |n| n * size),
        ],
        prop_oneof![Just(DropPolicy::DropOldest), Just(DropPolicy::DropNewest)],
        1u32..=3,
        prop_oneof![Just(NOW), Just(SHORT), Just(LONG)],
        any::<bool>(),
    )
        .prop_map(|(envelopes, bytes, policy, failures, recovery, up)| Setup {
            caps: Caps {
                envelopes,
                bytes,
                policy,
            },
            breaker: BreakerSettings { failures, recovery },
            up,
        })
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        12 => (1usize..30, prop_oneof![Just(0), 1..=MAX_PAD])
            .prop_map(|(count, pad)| Op::Emit { count, pad }),
        6 => Just(Op::BusUp),
        4 => Just(Op::BusDown),
        6 => (0usize..12).prop_map(Op::CutNext),
        5 => (
            any::<bool>(),
            prop_oneof![
                Just(None),
                Just(Some("OOM")),
                Just(Some("READONLY")),
                Just(Some("NOPERM")),
                Just(Some("WRONGTYPE")),
            ],
        )
            .prop_map(|(xadd, code)| Op::Refuse(xadd, code)),
        12 => Just(Op::Flush),
        3 => Just(Op::WaitRecovery),
        // Ends the run; rare enough that most runs are long.
        1 => Just(Op::Shutdown),
    ]
}

/// The publisher under test, its bus and the model it is held to.
struct Harness {
    setup: Setup,
    model: Model,
    publisher: Tested,
    bus: Arc<Mutex<MemoryBus>>,
    rt: tokio::runtime::Runtime,
    /// Id of every emission index, once known (reports: once seen).
    ids: Vec<Option<String>>,
    seq_of: HashMap<String, usize>,
    /// Received ids already checked.
    checked: usize,
    /// Ids received so far, and the emission index of the newest first one.
    seen: HashSet<String>,
    last_first: Option<usize>,
    /// The same for the stream.
    stream_checked: usize,
    stream_seen: HashSet<String>,
    stream_last_first: Option<usize>,
}

impl Harness {
    fn new(setup: Setup) -> Self {
        let bus = Arc::new(Mutex::new(MemoryBus {
            up: setup.up,
            ..MemoryBus::default()
        }));
        let publisher = Publisher::new(bus.clone(), setup.caps, setup.breaker, origin());
        Self {
            setup,
            model: Model::new(setup.caps, setup.breaker, setup.up),
            publisher,
            bus,
            rt: runtime(),
            ids: Vec::new(),
            seq_of: HashMap::new(),
            checked: 0,
            seen: HashSet::new(),
            last_first: None,
            stream_checked: 0,
            stream_seen: HashSet::new(),
            stream_last_first: None,
        }
    }

    fn bus(&self) -> MutexGuard<'_, MemoryBus> {
        self.bus.lock().expect("test bus")
    }

    /// Runs one step; true when the run ends there.
    fn apply(&mut self, op: &Op) -> bool {
        match *op {
            Op::Emit { count, pad } => {
                for _ in 0..count {
                    let seq = self.model.kinds.len();
                    let envelope = event(&self.model.origin, seq, pad);
                    let size = envelope.to_json().len();
                    assert!(size <= self.setup.caps.bytes, "event larger than the cap");
                    self.bind(seq, &envelope.id);
                    assert_eq!(self.model.push(Kind::Event, size), seq);
                    self.publisher.push(envelope);
                }
            }
            Op::BusUp | Op::BusDown => {
                let up = matches!(op, Op::BusUp);
                self.bus().up = up;
                self.model.up = up;
            }
            Op::CutNext(k) => {
                self.bus().cut_after = Some(k);
                self.model.cut = Some(k);
            }
            Op::Refuse(xadd, code) => {
                let on = code.is_some();
                let code = code.map(str::to_owned);
                if xadd {
                    self.bus().refuse_xadd = code;
                    self.model.refuse_xadd = on;
                } else {
                    self.bus().refuse_publish = code;
                    self.model.refuse_publish = on;
                }
            }
            Op::Flush => self.flush(),
            Op::WaitRecovery => {
                if self.setup.breaker.recovery == SHORT && self.model.breaker == Breaker::Open {
                    std::thread::sleep(SHORT * 2);
                }
            }
            Op::Shutdown => {
                let left = self.rt.block_on(self.publisher.drain(GRACE));
                self.settle_drain();
                assert_eq!(
                    left,
                    self.model.queue.len(),
                    "drain's count of what is left"
                );
                return true;
            }
        }
        false
    }

    /// A flush, with the breaker's decision predicted where the clock
    /// allows it and read off the breaker where it does not.
    fn flush(&mut self) {
        let before = self.publisher.breaker_state();
        let expected = match before {
            State::Open { until } if Instant::now() >= until => Some(true),
            State::Open { .. } if self.setup.breaker.recovery == LONG => Some(false),
            State::Open { .. } => None,
            _ => Some(true),
        };
        let result = self.rt.block_on(self.publisher.flush());
        let allowed = expected.unwrap_or_else(|| self.publisher.breaker_state() != before);
        let predicted = self.model.flush(allowed);
        match (&result, predicted) {
            (Ok(sent), Ok(want)) => assert_eq!(*sent, want, "envelopes sent by flush"),
            (Err(_), Err(())) => {}
            _ => panic!("flush returned {result:?}, the model expected {predicted:?}"),
        }
    }

    /// A drain bounded by time made zero or more attempts: take the model
    /// through as many as the publisher shows.
    fn settle_drain(&mut self) {
        let seen = self.observe();
        let mut model = self.model.clone();
        for _ in 0..4 {
            if model.snapshot() == seen {
                break;
            }
            model.drain_once();
        }
        assert_eq!(
            model.snapshot(),
            seen,
            "drain left a state no number of attempts explains"
        );
        self.model = model;
    }

    fn observe(&self) -> Snapshot {
        let counts = self.publisher.counts();
        let bus = self.bus();
        Snapshot {
            breaker: Breaker::of(self.publisher.breaker_state()),
            pending: self.publisher.pending(),
            received: bus.received.len(),
            streamed: bus.streamed.len(),
            cut: bus.cut_after,
            counts: (counts.emitted, counts.delivered, counts.dropped),
        }
    }

    /// Records (or checks) the id of an emission index.
    fn bind(&mut self, seq: usize, id: &str) {
        if self.ids.len() <= seq {
            self.ids.resize(seq + 1, None);
        }
        match &self.ids[seq] {
            Some(known) => assert_eq!(known, id, "envelope #{seq} has another id"),
            None => {
                assert!(
                    !self.seq_of.contains_key(id),
                    "id {id} of #{} reused for #{seq}",
                    self.seq_of[id]
                );
                self.ids[seq] = Some(id.to_owned());
                self.seq_of.insert(id.to_owned(), seq);
            }
        }
    }

    /// Compares the publisher with the model.
    fn check(&mut self) {
        let caps = self.setup.caps;

        // Conservation, exactly, and the counters themselves.
        let counts = self.publisher.counts();
        let pending = self.publisher.pending();
        assert_eq!(
            counts.emitted,
            counts.delivered + pending as u64 + counts.dropped,
            "emitted = delivered + pending + dropped"
        );
        assert_eq!(
            (counts.emitted, counts.delivered, counts.dropped),
            (self.model.emitted, self.model.delivered, self.model.dropped),
            "(emitted, delivered, dropped)"
        );

        // Caps.
        assert!(pending <= caps.envelopes, "{pending} pending > cap");
        let bytes = self.publisher.pending_bytes();
        assert!(bytes <= caps.bytes, "{bytes} pending bytes > cap");

        // The outbox holds exactly what the model holds, in order: with
        // drop_newest the newest were refused, with drop_oldest the oldest
        // were evicted.
        let items: Vec<(Envelope, usize)> = self
            .publisher
            .outbox
            .front(usize::MAX)
            .map(|item| (item.envelope().clone(), item.json().len()))
            .collect();
        let flags: Vec<(bool, bool)> = self
            .publisher
            .outbox
            .front(usize::MAX)
            .map(|item| (item.published, item.streamed))
            .collect();
        let want_flags: Vec<(bool, bool)> = self
            .model
            .queue
            .iter()
            .map(|e| (e.published, e.streamed))
            .collect();
        assert_eq!(flags, want_flags, "confirmed writes of pending envelopes");
        assert_eq!(items.len(), pending);
        assert_eq!(items.iter().map(|(_, size)| size).sum::<usize>(), bytes);
        let want: Vec<Entry> = self.model.queue.iter().copied().collect();
        let have: Vec<&str> = items.iter().map(|(e, _)| e.id.as_str()).collect();
        assert_eq!(
            have.len(),
            want.len(),
            "pending envelopes {have:?}, model {want:?}"
        );
        for ((envelope, size), entry) in items.iter().zip(&want) {
            self.bind(entry.seq, &envelope.id);
            if let Kind::Report(count) = self.model.kinds[entry.seq] {
                check_report(envelope, caps, count);
            } else {
                assert_eq!(*size, entry.size);
            }
        }
        assert_eq!(bytes, self.model.bytes, "pending bytes");

        // The breaker.
        assert_eq!(
            Breaker::of(self.publisher.breaker_state()),
            self.model.breaker,
            "breaker state"
        );

        // The bus: exactly the expected ids, on pub/sub and on the stream;
        // without duplicates, emission order; every id one that was
        // emitted; duplicates only after cuts.
        let (received, streamed, cut) = {
            let bus = self.bus();
            (
                bus.received[self.checked..].to_vec(),
                bus.streamed[self.stream_checked..].to_vec(),
                bus.cut_after,
            )
        };
        assert_eq!(cut, self.model.cut, "pending pipeline cut");
        assert_eq!(
            self.checked + received.len(),
            self.model.received.len(),
            "ids received"
        );
        assert_eq!(
            self.stream_checked + streamed.len(),
            self.model.streamed.len(),
            "ids streamed"
        );
        for (i, id) in received.iter().enumerate() {
            let seq = self.model.received[self.checked + i];
            self.bind(seq, id);
        }
        for (i, id) in streamed.iter().enumerate() {
            let seq = self.model.streamed[self.stream_checked + i];
            self.bind(seq, id);
        }
        let cuts = self.model.cuts;
        let seq_of = &self.seq_of;
        let first_in_order =
            |ids: &[String], seen: &mut HashSet<String>, last: &mut Option<usize>| {
                for id in ids {
                    let seq = *seq_of.get(id).expect("a received id was emitted");
                    if seen.insert(id.clone()) {
                        assert!(
                            last.is_none_or(|l| seq > l),
                            "#{seq} first received after #{last:?}"
                        );
                        *last = Some(seq);
                    } else {
                        assert!(cuts > 0, "duplicate #{seq} without a cut");
                    }
                }
            };
        first_in_order(&received, &mut self.seen, &mut self.last_first);
        first_in_order(
            &streamed,
            &mut self.stream_seen,
            &mut self.stream_last_first,
        );
        self.checked += received.len();
        self.stream_checked += streamed.len();
    }

    /// Brings the bus back for good and checks that everything pending is
    /// delivered in order, followed by one drop report when drops are
    /// unreported.
    fn recover(&mut self) {
        {
            let mut bus = self.bus();
            bus.up = true;
            bus.cut_after = None;
            bus.refuse_publish = None;
            bus.refuse_xadd = None;
        }
        self.model.up = true;
        self.model.cut = None;
        self.model.refuse_publish = false;
        self.model.refuse_xadd = false;
        let unpublished: Vec<usize> = self
            .model
            .queue
            .iter()
            .filter(|e| !e.published)
            .map(|e| e.seq)
            .collect();
        let unstreamed: Vec<usize> = self
            .model
            .queue
            .iter()
            .filter(|e| !e.streamed)
            .map(|e| e.seq)
            .collect();
        let due = self.model.unreported;
        let start = self.model.received.len();
        let stream_start = self.model.streamed.len();
        if self.model.breaker == Breaker::Open && self.setup.breaker.recovery == LONG {
            // Only a drain gets past a breaker open for an hour.
            let left = self
                .rt
                .block_on(self.publisher.drain(Duration::from_secs(1)));
            self.settle_drain();
            assert_eq!(left, 0);
        } else {
            if self.model.breaker == Breaker::Open {
                std::thread::sleep(self.setup.breaker.recovery * 2);
            }
            self.flush();
        }
        self.check();
        assert_eq!(self.publisher.pending(), 0, "everything delivered");
        let counts = self.publisher.counts();
        assert_eq!(counts.emitted, counts.delivered + counts.dropped);

        let (last_published, last_streamed) = {
            let bus = self.bus();
            (bus.received.last().cloned(), bus.streamed.last().cloned())
        };
        for (start, pending, tail, last) in [
            (start, &unpublished, &self.model.received, last_published),
            (
                stream_start,
                &unstreamed,
                &self.model.streamed,
                last_streamed,
            ),
        ] {
            let tail = &tail[start..];
            assert_eq!(&tail[..pending.len()], pending, "replay in order");
            if due > 0 {
                assert_eq!(tail.len(), pending.len() + 1, "one drop report");
                let report = tail[pending.len()];
                assert_eq!(self.model.kinds[report], Kind::Report(due));
                let id = self.ids[report].as_deref().expect("report received");
                assert_eq!(last.as_deref(), Some(id));
            } else {
                assert_eq!(tail.len(), pending.len(), "no drop report");
            }
        }

        // Nothing is left to send.
        let received = self.bus().received.len();
        assert_eq!(self.rt.block_on(self.publisher.flush()).unwrap(), 0);
        assert_eq!(self.bus().received.len(), received);
    }
}

fn check_report(envelope: &Envelope, caps: Caps, count: u64) {
    assert_eq!(envelope.target, HOST_TARGET);
    assert_eq!(envelope.level, Level::Warn);
    assert!(
        envelope
            .msg
            .starts_with(&format!("dropped {count} envelopes ")),
        "{}",
        envelope.msg
    );
    assert_eq!(envelope.fields["dropped"], count);
    assert_eq!(envelope.fields["policy"], caps.policy.as_str());
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime")
}

proptest! {
    #![proptest_config(Config {
        cases: 256,
        failure_persistence: None,
        ..Config::default()
    })]

    #[test]
    fn publisher_follows_the_outbox_model(
        setup in setup(),
        ops in proptest::collection::vec(op(), 1..60),
    ) {
        let mut harness = Harness::new(setup);
        harness.check();
        for op in &ops {
            let done = harness.apply(op);
            harness.check();
            if done {
                break;
            }
        }
        harness.recover();
    }
}

fn publisher(caps: Caps, breaker: BreakerSettings) -> (Tested, Arc<Mutex<MemoryBus>>) {
    let bus = Arc::new(Mutex::new(MemoryBus::default()));
    let publisher = Publisher::new(bus.clone(), caps, breaker, origin());
    (publisher, bus)
}

fn emit(publisher: &mut Tested, n: usize) -> Vec<Envelope> {
    let origin = origin();
    (0..n)
        .map(|seq| {
            let envelope = event(&origin, seq, 0);
            publisher.push(envelope.clone());
            envelope
        })
        .collect()
}

fn ids(envelopes: &[Envelope]) -> Vec<String> {
    envelopes.iter().map(|e| e.id.clone()).collect()
}

fn received(bus: &Mutex<MemoryBus>) -> Vec<String> {
    bus.lock().expect("test bus").received.clone()
}

#[test]
fn a_cut_pipeline_is_sent_again_whole_and_in_order() {
    let rt = runtime();
    let (mut p, bus) = publisher(Caps::default(), BreakerSettings::default());
    bus.lock().unwrap().up = true;
    let sent = ids(&emit(&mut p, 6));

    bus.lock().unwrap().cut_after = Some(2);
    assert!(rt.block_on(p.flush()).is_err());
    assert_eq!(received(&bus), sent[..2]);
    assert_eq!(p.pending(), 6, "a cut batch stays queued whole");
    assert_eq!(p.counts().delivered, 0);
    assert_eq!(p.breaker_state(), State::Closed { failures: 1 });

    assert_eq!(rt.block_on(p.flush()).unwrap(), 6);
    let got = received(&bus);
    assert_eq!(got[..2], sent[..2]);
    assert_eq!(got[2..], sent[..], "resent from the start of the batch");
    let mut seen = HashSet::new();
    let first: Vec<&String> = got.iter().filter(|id| seen.insert(*id)).collect();
    assert_eq!(first, sent.iter().collect::<Vec<_>>(), "no reordering");
    assert_eq!(p.counts().delivered, 6);
    assert_eq!(p.pending(), 0);
    assert_eq!(p.breaker_state(), State::Closed { failures: 0 });
}

#[test]
fn the_breaker_opens_after_consecutive_failures_and_an_open_breaker_sends_nothing() {
    let rt = runtime();
    let settings = BreakerSettings {
        failures: 3,
        recovery: LONG,
    };
    let (mut p, bus) = publisher(Caps::default(), settings);
    let mut sent = ids(&emit(&mut p, 4));
    for failures in 1..3 {
        assert!(rt.block_on(p.flush()).is_err());
        assert_eq!(p.breaker_state(), State::Closed { failures });
    }
    let start = Instant::now();
    assert!(rt.block_on(p.flush()).is_err());
    let State::Open { until } = p.breaker_state() else {
        panic!("third failure in a row opens: {:?}", p.breaker_state());
    };
    assert!(until >= start + LONG);
    assert_eq!(p.retry_at(), Some(until));

    bus.lock().unwrap().up = true;
    assert_eq!(rt.block_on(p.flush()).unwrap(), 0);
    let late = origin().envelope(Level::Info, "model", "late", Default::default());
    sent.push(late.id.clone());
    p.push(late);
    assert_eq!(rt.block_on(p.flush()).unwrap(), 0);
    assert!(received(&bus).is_empty(), "nothing sent while open");
    assert_eq!(p.pending(), 5);
    assert_eq!(p.breaker_state(), State::Open { until });

    // Shutdown gets past the breaker.
    assert_eq!(rt.block_on(p.drain(Duration::from_secs(5))), 0);
    assert_eq!(received(&bus), sent);
    assert_eq!(p.breaker_state(), State::Closed { failures: 0 });
}

#[test]
fn drain_delivers_the_outbox_then_one_drop_report() {
    let rt = runtime();
    let caps = Caps {
        envelopes: 3,
        bytes: usize::MAX,
        policy: DropPolicy::DropOldest,
    };
    let (mut p, bus) = publisher(caps, BreakerSettings::default());
    let sent = ids(&emit(&mut p, 5));
    assert_eq!(rt.block_on(p.drain(GRACE)), 3, "bus down: nothing leaves");
    assert!(received(&bus).is_empty());

    bus.lock().unwrap().up = true;
    assert_eq!(rt.block_on(p.drain(Duration::from_secs(5))), 0);
    let got = received(&bus);
    assert_eq!(got.len(), 4);
    assert_eq!(got[..3], sent[2..], "the oldest two were dropped");
    assert!(!sent.contains(&got[3]), "then the publisher's report");
    let counts = p.counts();
    assert_eq!(
        (counts.emitted, counts.delivered, counts.dropped),
        (6, 4, 2)
    );
    assert_eq!(p.pending(), 0);
}

#[test]
fn the_drop_report_names_count_span_and_policy() {
    let caps = Caps {
        envelopes: 2,
        bytes: usize::MAX,
        policy: DropPolicy::DropNewest,
    };
    let (mut p, _bus) = publisher(caps, BreakerSettings::default());
    let sent = emit(&mut p, 4);
    // As after a successful batch: room, then the report.
    p.outbox.delivered(2);
    p.report_drops();
    let report = p
        .outbox
        .front(1)
        .next()
        .expect("report queued")
        .envelope()
        .clone();
    check_report(&report, caps, 2);
    assert_eq!(report.fields["first_ts"], sent[2].ts.as_str());
    assert_eq!(report.fields["last_ts"], sent[3].ts.as_str());
    assert!(report.msg.contains("drop_newest"), "{}", report.msg);
    assert!(report.msg.contains("2 envelopes / "), "{}", report.msg);
    let counts = p.counts();
    assert_eq!(
        (counts.emitted, counts.delivered, counts.dropped),
        (5, 2, 2)
    );
}

#[test]
fn a_refused_xadd_never_publishes_twice() {
    let rt = runtime();
    let (mut p, bus) = publisher(Caps::default(), BreakerSettings::default());
    {
        let mut bus = bus.lock().unwrap();
        bus.up = true;
        bus.refuse_xadd = Some("OOM".to_owned());
    }
    let sent = ids(&emit(&mut p, 6));
    for _ in 0..2 {
        let e = rt.block_on(p.flush()).unwrap_err().to_string();
        assert!(e.contains("refused XADD of 6 envelopes with OOM"), "{e}");
        assert!(e.contains("raise maxmemory"), "{e}");
    }
    assert_eq!(received(&bus), sent, "each PUBLISH once");
    assert!(bus.lock().unwrap().streamed.is_empty());
    assert_eq!(p.pending(), 6, "not delivered until the XADD succeeds");
    assert_eq!(p.counts().delivered, 0);
    assert_eq!(p.refused().get("OOM"), Some(&12));
    assert_eq!(p.breaker_state(), State::Closed { failures: 2 });

    bus.lock().unwrap().refuse_xadd = None;
    assert_eq!(rt.block_on(p.flush()).unwrap(), 6);
    assert_eq!(received(&bus), sent, "no PUBLISH again");
    assert_eq!(bus.lock().unwrap().streamed, sent, "the stream, in order");
    assert_eq!(p.counts().delivered, 6);
}

#[test]
fn a_refused_publish_is_retried_alone() {
    let rt = runtime();
    let (mut p, bus) = publisher(Caps::default(), BreakerSettings::default());
    {
        let mut bus = bus.lock().unwrap();
        bus.up = true;
        bus.refuse_publish = Some("NOPERM".to_owned());
    }
    let sent = ids(&emit(&mut p, 3));
    let e = rt.block_on(p.flush()).unwrap_err().to_string();
    assert!(
        e.contains("refused PUBLISH of 3 envelopes with NOPERM"),
        "{e}"
    );
    assert_eq!(bus.lock().unwrap().streamed, sent);
    bus.lock().unwrap().refuse_publish = None;
    assert_eq!(rt.block_on(p.flush()).unwrap(), 3);
    assert_eq!(received(&bus), sent);
    assert_eq!(bus.lock().unwrap().streamed, sent, "no XADD again");
}

/// A publisher with a spool in `dir`, as after a restart.
fn spooled_publisher(
    dir: &std::path::Path,
    caps: Caps,
) -> (Tested, Arc<Mutex<MemoryBus>>, super::Replay) {
    let (mut p, bus) = publisher(caps, BreakerSettings::default());
    let replay = p.with_spool(dir).unwrap();
    (p, bus, replay)
}

#[test]
fn the_spool_keeps_the_newest_and_never_replays_what_was_dropped() {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let caps = Caps {
        envelopes: 4,
        bytes: usize::MAX,
        policy: DropPolicy::DropOldest,
    };
    let (mut p, _down, _) = spooled_publisher(dir.path(), caps);
    let origin = origin();
    let mut sent = Vec::new();
    for seq in 0..10 {
        let envelope = event(&origin, seq, 0);
        sent.push(envelope.id.clone());
        p.push(envelope);
        // Fails (bus down), or spools only (breaker open).
        let _ = rt.block_on(p.flush());
    }
    assert_eq!(p.counts().dropped, 6);
    // The host dies here: no drain, no report. A new run replays the spool.
    drop(p);
    let (mut p, bus, replay) = spooled_publisher(dir.path(), caps);
    let replayed: Vec<String> = replay.envelopes.iter().map(|e| e.id.clone()).collect();
    assert_eq!(replayed, sent[6..], "the newest four, in order");
    assert_eq!(replay.drops.as_ref().map(|d| d.count), Some(6));
    bus.lock().unwrap().up = true;
    assert_eq!(rt.block_on(p.flush()).unwrap(), 5);
    let got = received(&bus);
    assert_eq!(got[..4], sent[6..]);
    let report = p.counts();
    assert_eq!(
        (report.emitted, report.delivered, report.replayed),
        (5, 5, 4)
    );
    assert!(!dir.path().join("spool.log").exists(), "delivered: removed");
    // The report of the earlier run's drops went out once, after them.
    assert_eq!(got.len(), 5);
    assert!(!sent.contains(&got[4]));
}

#[test]
fn a_report_sent_is_not_reported_again_after_a_crash() {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let caps = Caps {
        envelopes: 2,
        bytes: usize::MAX,
        policy: DropPolicy::DropOldest,
    };
    let (mut p, _bus, _) = spooled_publisher(dir.path(), caps);
    emit(&mut p, 5);
    assert!(rt.block_on(p.flush()).is_err());
    let before = Spool::open(dir.path(), 0).unwrap().replay().unwrap();
    assert_eq!(before.drops.map(|d| d.count), Some(3));
    // As after a successful batch: the two kept envelopes delivered, then
    // the report queued. The host dies before the report is sent.
    p.outbox.delivered(2);
    p.report_drops();
    drop(p);
    let (_, _, replay) = spooled_publisher(dir.path(), caps);
    let reports: Vec<&Envelope> = replay
        .envelopes
        .iter()
        .filter(|e| e.msg.starts_with("dropped 3 envelopes"))
        .collect();
    assert_eq!(reports.len(), 1, "the report itself is spooled");
    assert_eq!(
        replay.envelopes.len(),
        1,
        "nor delivered nor dropped replayed"
    );
    assert_eq!(replay.drops, None, "and the count is not carried twice");
}

#[test]
fn a_spooled_envelope_whose_publish_went_out_is_not_published_again() {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let (mut p, bus, _) = spooled_publisher(dir.path(), Caps::default());
    {
        let mut bus = bus.lock().unwrap();
        bus.up = true;
        bus.refuse_xadd = Some("READONLY".to_owned());
    }
    let sent = ids(&emit(&mut p, 3));
    assert!(rt.block_on(p.flush()).is_err());
    assert_eq!(received(&bus), sent);
    drop(p);
    let (mut p, bus, replay) = spooled_publisher(dir.path(), Caps::default());
    assert_eq!(replay.published.len(), 3);
    bus.lock().unwrap().up = true;
    assert_eq!(rt.block_on(p.flush()).unwrap(), 3);
    assert!(
        received(&bus).is_empty(),
        "no PUBLISH again after a restart"
    );
    assert_eq!(bus.lock().unwrap().streamed, sent);
}

#[derive(Debug, Clone)]
enum CrashOp {
    Emit(usize),
    Flush,
    Bus(Option<bool>, Option<&'static str>),
    /// A flush attempt (which spools when it fails), then `kill -9` and a
    /// restart on the same spool.
    Crash,
}

fn crash_op() -> impl Strategy<Value = CrashOp> {
    prop_oneof![
        6 => (1usize..12).prop_map(CrashOp::Emit),
        5 => Just(CrashOp::Flush),
        4 => (
            prop_oneof![Just(None), Just(Some(true)), Just(Some(false))],
            prop_oneof![Just(None), Just(Some("OOM")), Just(Some("READONLY"))],
        )
            .prop_map(|(up, refuse)| CrashOp::Bus(up, refuse)),
        2 => Just(CrashOp::Crash),
    ]
}

proptest! {
    #![proptest_config(Config {
        cases: 128,
        failure_persistence: None,
        ..Config::default()
    })]

    /// With a spool, across any number of crashes: every envelope ever
    /// created reaches the stream once or is counted in exactly one drop
    /// report, and no id reaches pub/sub or the stream twice.
    #[test]
    fn the_spool_accounts_for_every_envelope_across_crashes(
        envelopes in 1usize..15,
        newest in any::<bool>(),
        failures in 1u32..=3,
        ops in proptest::collection::vec(crash_op(), 1..40),
    ) {
        let rt = runtime();
        let dir = tempfile::tempdir().unwrap();
        let caps = Caps {
            envelopes,
            bytes: usize::MAX,
            policy: if newest { DropPolicy::DropNewest } else { DropPolicy::DropOldest },
        };
        let breaker = BreakerSettings { failures, recovery: NOW };
        let bus = Arc::new(Mutex::new(MemoryBus::default()));
        let open = |bus: &Arc<Mutex<MemoryBus>>| {
            let mut p = Publisher::new(bus.clone(), caps, breaker, origin());
            p.with_spool(dir.path()).unwrap();
            p
        };
        let mut p = open(&bus);
        let mut pushed = 0u64;
        // Envelopes each finished run created itself (drop reports).
        let mut created = 0u64;
        let mut run_pushed = 0u64;
        let origin = origin();
        for op in &ops {
            match *op {
                CrashOp::Emit(k) => {
                    for _ in 0..k {
                        p.push(event(&origin, pushed as usize, 0));
                        pushed += 1;
                        run_pushed += 1;
                    }
                }
                CrashOp::Flush => {
                    let _ = rt.block_on(p.flush());
                }
                CrashOp::Bus(up, refuse) => {
                    let mut bus = bus.lock().unwrap();
                    if let Some(up) = up {
                        bus.up = up;
                    }
                    bus.refuse_xadd = refuse.map(str::to_owned);
                }
                CrashOp::Crash => {
                    let _ = rt.block_on(p.flush());
                    let counts = p.counts();
                    created += counts.emitted - counts.replayed - run_pushed;
                    drop(p);
                    p = open(&bus);
                    run_pushed = 0;
                }
            }
        }
        {
            let mut bus = bus.lock().unwrap();
            bus.up = true;
            bus.refuse_xadd = None;
        }
        prop_assert_eq!(rt.block_on(p.drain(Duration::from_secs(5))), 0);
        let counts = p.counts();
        created += counts.emitted - counts.replayed - run_pushed;

        let bus = bus.lock().unwrap();
        let streamed: HashSet<&String> = bus.streamed.iter().collect();
        prop_assert_eq!(streamed.len(), bus.streamed.len(), "no id twice on the stream");
        let published: HashSet<&String> = bus.received.iter().collect();
        prop_assert_eq!(published.len(), bus.received.len(), "no id twice on pub/sub");
        // An envelope dropped after its PUBLISH went out is on pub/sub only.
        prop_assert!(streamed.is_subset(&published), "both writes of every delivered one");
        prop_assert_eq!(
            pushed + created,
            bus.streamed.len() as u64 + bus.reported_drops,
            "created = delivered + reported dropped"
        );
        prop_assert!(!dir.path().join("spool.log").exists());
    }
}

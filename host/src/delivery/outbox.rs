//! The outbox: envelopes waiting for the bus, in emission order, bounded by
//! count and bytes. When full, the configured policy drops the oldest or
//! the newest envelope and counts it, so that at every moment
//! `emitted = delivered + buffered + dropped` holds exactly.
//!
//! Envelopes are held sealed ([`Sealed`]): their JSON, written once, is
//! what the byte cap counts, PUBLISH sends and the spool file holds.
//!
//! Each envelope is written twice (PUBLISH and XADD); the outbox remembers
//! which of the two the bus confirmed, so a retry redoes only the other,
//! and an envelope counts as delivered once both are confirmed. It also
//! remembers which envelopes are in the spool file, and which of those
//! left the outbox (delivered or dropped) or were published since the file
//! was last written, so the spool can record it.

use std::collections::VecDeque;

use serde::Deserialize;

use crate::delivery::envelope::{Envelope, Sealed};

/// What to drop when the outbox is full.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DropPolicy {
    /// Drop the oldest buffered envelope: the freshest state survives an
    /// outage longer than the buffer (the default).
    #[default]
    DropOldest,
    /// Refuse the new envelope: the start of the outage survives.
    DropNewest,
}

impl DropPolicy {
    /// The policy's config name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::DropOldest => "drop_oldest",
            Self::DropNewest => "drop_newest",
        }
    }
}

/// Caps of the outbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caps {
    /// Most envelopes held.
    pub envelopes: usize,
    /// Most bytes (of JSON) held.
    pub bytes: usize,
    /// Full-buffer policy.
    pub policy: DropPolicy,
}

impl Default for Caps {
    fn default() -> Self {
        Self {
            envelopes: 10_000,
            bytes: 16 << 20,
            policy: DropPolicy::default(),
        }
    }
}

/// Counters of the conservation identity.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Envelopes pushed (replayed from the spool included).
    pub emitted: u64,
    /// Envelopes confirmed sent: both PUBLISH and XADD succeeded.
    pub delivered: u64,
    /// Envelopes dropped by the policy.
    pub dropped: u64,
    /// Of `emitted`, envelopes replayed from the spool of an earlier run.
    pub replayed: u64,
}

/// Drops not yet reported: how many, and between which envelope times.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, Deserialize)]
pub struct DropReport {
    /// Envelopes dropped.
    pub count: u64,
    /// `ts` of the first dropped envelope.
    pub first_ts: String,
    /// `ts` of the last dropped envelope.
    pub last_ts: String,
}

impl DropReport {
    /// Adds `other` (drops of an earlier span or run) to this report.
    pub fn merge(&mut self, other: &Self) {
        self.count += other.count;
        if other.first_ts < self.first_ts {
            self.first_ts.clone_from(&other.first_ts);
        }
        if other.last_ts > self.last_ts {
            self.last_ts.clone_from(&other.last_ts);
        }
    }
}

/// One sealed envelope, and which of its writes the bus confirmed.
#[derive(Debug, Clone)]
pub(crate) struct Item {
    /// The envelope and its JSON payload.
    pub sealed: Sealed,
    /// PUBLISH confirmed: never sent again.
    pub published: bool,
    /// XADD confirmed: never sent again.
    pub streamed: bool,
    /// Written to the spool file.
    pub spooled: bool,
}

impl Item {
    /// The envelope.
    pub(crate) fn envelope(&self) -> &Envelope {
        self.sealed.envelope()
    }

    /// Its JSON payload.
    pub(crate) fn json(&self) -> &str {
        self.sealed.json()
    }

    /// Both writes confirmed.
    pub(crate) fn done(&self) -> bool {
        self.published && self.streamed
    }
}

/// What the spool file must learn at its next write.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SpoolNotes {
    /// Ids of spooled envelopes that left the outbox (delivered or
    /// dropped): never to be replayed.
    pub settled: Vec<String>,
    /// Ids of spooled envelopes whose PUBLISH was confirmed: a replay sends
    /// only their XADD.
    pub published: Vec<String>,
}

/// The bounded, ordered outbox.
#[derive(Debug, Default)]
pub struct Outbox {
    items: VecDeque<Item>,
    bytes: usize,
    caps: Caps,
    counts: Counts,
    unreported: Option<DropReport>,
    /// How many items are in the spool file.
    spooled: usize,
    /// Changes the spool file has not recorded yet.
    notes: SpoolNotes,
}

impl Outbox {
    /// An empty outbox with `caps`.
    pub fn new(caps: Caps) -> Self {
        Self {
            caps,
            ..Self::default()
        }
    }

    /// Adds an envelope at the end, applying the drop policy when full.
    /// An [`Envelope`] is taken as final and sealed here; a [`Sealed`]
    /// one is kept as it is.
    pub fn push(&mut self, envelope: impl Into<Sealed>) {
        self.push_item(envelope.into(), false);
    }

    /// Adds an envelope replayed from the spool: it is in the spool file
    /// already, and its PUBLISH may have been confirmed by an earlier run.
    pub fn push_replayed(&mut self, envelope: Envelope, published: bool) {
        self.counts.replayed += 1;
        let id = envelope.id.clone();
        if self.push_item(Sealed::new(envelope), published) {
            let item = self.items.back_mut().expect("just pushed");
            item.spooled = true;
            self.spooled += 1;
        } else {
            // Refused at once: it is in the file, which must forget it.
            self.notes.settled.push(id);
        }
    }

    /// Pushes; returns whether the envelope was kept.
    fn push_item(&mut self, sealed: Sealed, published: bool) -> bool {
        self.counts.emitted += 1;
        let size = sealed.json().len();
        let fits = |s: &Self| s.items.len() < s.caps.envelopes && s.bytes + size <= s.caps.bytes;
        match self.caps.policy {
            DropPolicy::DropNewest => {
                if !fits(self) {
                    self.note_drop(&sealed.envelope().ts);
                    return false;
                }
            }
            DropPolicy::DropOldest => {
                if size > self.caps.bytes {
                    // Larger than the whole buffer: evicting others would not help.
                    self.note_drop(&sealed.envelope().ts);
                    return false;
                }
                while !fits(self) {
                    let Some(old) = self.items.pop_front() else {
                        // Larger than the whole buffer: it cannot be kept.
                        self.note_drop(&sealed.envelope().ts);
                        return false;
                    };
                    self.bytes -= old.json().len();
                    self.note_drop(&old.envelope().ts);
                    self.left(old);
                }
            }
        }
        self.bytes += size;
        self.items.push_back(Item {
            sealed,
            published,
            streamed: false,
            spooled: false,
        });
        true
    }

    /// Bookkeeping of an item that left the outbox.
    fn left(&mut self, item: Item) {
        if item.spooled {
            self.spooled -= 1;
            self.notes.settled.push(item.sealed.into_envelope().id);
        }
    }

    fn note_drop(&mut self, ts: &str) {
        self.counts.dropped += 1;
        match &mut self.unreported {
            Some(r) => {
                r.count += 1;
                if ts < r.first_ts.as_str() {
                    r.first_ts = ts.to_owned();
                }
                if ts > r.last_ts.as_str() {
                    r.last_ts = ts.to_owned();
                }
            }
            None => {
                self.unreported = Some(DropReport {
                    count: 1,
                    first_ts: ts.to_owned(),
                    last_ts: ts.to_owned(),
                });
            }
        }
    }

    /// The oldest `n` envelopes (fewer when fewer are held).
    pub(crate) fn front(&self, n: usize) -> impl Iterator<Item = &Item> {
        self.items.iter().take(n)
    }

    /// Records that the bus confirmed the PUBLISH (`publish`) and/or the
    /// XADD (`stream`) of the `i`-th oldest envelope.
    pub(crate) fn confirm(&mut self, i: usize, publish: bool, stream: bool) {
        let Some(item) = self.items.get_mut(i) else {
            return;
        };
        if publish && !item.published {
            item.published = true;
            if item.spooled {
                self.notes.published.push(item.envelope().id.clone());
            }
        }
        item.streamed |= stream;
    }

    /// Removes the envelopes among the oldest `n` whose two writes are
    /// confirmed, counting them delivered; returns how many.
    pub(crate) fn settle(&mut self, n: usize) -> usize {
        let n = n.min(self.items.len());
        let front: Vec<Item> = self.items.drain(..n).collect();
        let mut kept = Vec::new();
        let mut settled = 0;
        for item in front {
            if item.done() {
                self.bytes -= item.json().len();
                self.counts.delivered += 1;
                settled += 1;
                self.left(item);
            } else {
                kept.push(item);
            }
        }
        for item in kept.into_iter().rev() {
            self.items.push_front(item);
        }
        settled
    }

    /// Marks the oldest `n` envelopes as delivered, both writes confirmed.
    pub fn delivered(&mut self, n: usize) {
        let n = n.min(self.items.len());
        for i in 0..n {
            self.confirm(i, true, true);
        }
        self.settle(n);
    }

    /// JSON of the envelopes not yet in the spool file, oldest first.
    pub fn unspooled(&self) -> impl Iterator<Item = &str> {
        self.items.iter().filter(|i| !i.spooled).map(Item::json)
    }

    /// Every envelope held, oldest first, with whether its PUBLISH was
    /// confirmed: what a rewritten spool file holds.
    pub(crate) fn all(&self) -> impl Iterator<Item = &Item> {
        self.items.iter()
    }

    /// Records that every envelope held is in the spool file, and that the
    /// file has recorded every change so far.
    pub fn mark_spooled(&mut self) {
        for item in &mut self.items {
            item.spooled = true;
        }
        self.spooled = self.items.len();
        self.notes = SpoolNotes::default();
    }

    /// Records that the spool file was removed: nothing held is in it.
    pub fn mark_unspooled(&mut self) {
        for item in &mut self.items {
            item.spooled = false;
        }
        self.spooled = 0;
        self.notes = SpoolNotes::default();
    }

    /// The changes the spool file has not recorded yet.
    pub fn notes(&self) -> &SpoolNotes {
        &self.notes
    }

    /// Envelopes held that are also in the spool file.
    pub fn spooled(&self) -> usize {
        self.spooled
    }

    /// Takes the drops not reported yet.
    pub(crate) fn take_drop_report(&mut self) -> Option<DropReport> {
        self.unreported.take()
    }

    /// The drops not reported yet.
    pub fn unreported(&self) -> Option<&DropReport> {
        self.unreported.as_ref()
    }

    /// Adds drops an earlier run counted but did not report.
    pub fn carry_drops(&mut self, earlier: &DropReport) {
        match &mut self.unreported {
            Some(r) => r.merge(earlier),
            None => self.unreported = Some(earlier.clone()),
        }
    }

    /// Envelopes held.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// The counters; `emitted == delivered + len() + dropped` always.
    pub fn counts(&self) -> Counts {
        self.counts
    }

    /// The caps.
    pub fn caps(&self) -> Caps {
        self.caps
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::delivery::envelope::{Level, Origin};

    fn env(n: usize) -> Envelope {
        Origin::new("redis", "h:1").envelope(Level::Info, "t", format!("m{n}"), Default::default())
    }

    fn identity(o: &Outbox) {
        let c = o.counts();
        assert_eq!(c.emitted, c.delivered + o.len() as u64 + c.dropped);
    }

    #[test]
    fn drop_oldest_keeps_the_newest() {
        let mut o = Outbox::new(Caps {
            envelopes: 3,
            bytes: usize::MAX,
            policy: DropPolicy::DropOldest,
        });
        for n in 0..5 {
            o.push(env(n));
            identity(&o);
        }
        let msgs: Vec<_> = o.front(10).map(|i| i.envelope().msg.clone()).collect();
        assert_eq!(msgs, ["m2", "m3", "m4"]);
        assert_eq!(o.take_drop_report().unwrap().count, 2);
        assert!(o.take_drop_report().is_none());
        o.delivered(2);
        identity(&o);
        assert_eq!(o.len(), 1);
    }

    #[test]
    fn confirmed_writes_are_kept_and_spooled_departures_noted() {
        let mut o = Outbox::new(Caps {
            envelopes: 3,
            bytes: usize::MAX,
            policy: DropPolicy::DropOldest,
        });
        for n in 0..3 {
            o.push(env(n));
        }
        o.mark_spooled();
        let ids: Vec<String> = o.front(3).map(|i| i.envelope().id.clone()).collect();
        // The bus took every PUBLISH and the XADD of the second only.
        for i in 0..3 {
            o.confirm(i, true, i == 1);
        }
        assert_eq!(o.settle(3), 1);
        identity(&o);
        let left: Vec<(String, bool, bool)> = o
            .front(3)
            .map(|i| (i.envelope().msg.clone(), i.published, i.streamed))
            .collect();
        assert_eq!(
            left,
            [
                ("m0".to_owned(), true, false),
                ("m2".to_owned(), true, false)
            ]
        );
        assert_eq!(
            o.notes().published,
            [ids[0].clone(), ids[1].clone(), ids[2].clone()]
        );
        assert_eq!(o.notes().settled, [ids[1].clone()]);
        // Two more: the oldest (published, not streamed) is dropped.
        o.push(env(3));
        o.push(env(4));
        identity(&o);
        assert_eq!(o.counts().dropped, 1);
        assert_eq!(o.notes().settled, [ids[1].clone(), ids[0].clone()]);
        assert_eq!(o.unspooled().count(), 2);
        assert_eq!(o.spooled(), 1);
        o.mark_spooled();
        assert_eq!(o.notes(), &SpoolNotes::default());
    }

    #[test]
    fn drop_newest_keeps_the_oldest_and_bytes_are_capped() {
        let one = env(0).to_json().len();
        let mut o = Outbox::new(Caps {
            envelopes: 100,
            bytes: one * 2,
            policy: DropPolicy::DropNewest,
        });
        for n in 0..5 {
            o.push(env(n));
            identity(&o);
        }
        let msgs: Vec<_> = o.front(10).map(|i| i.envelope().msg.clone()).collect();
        assert_eq!(msgs, ["m0", "m1"]);
        assert!(o.bytes() <= one * 2);
        assert_eq!(o.counts().dropped, 3);
    }
}

//! The outbox: envelopes waiting for the bus, in emission order, bounded by
//! count and bytes. When full, the configured policy drops the oldest or
//! the newest envelope and counts it, so that at every moment
//! `emitted = delivered + buffered + dropped` holds exactly.

use std::collections::VecDeque;

use serde::Deserialize;

use crate::delivery::envelope::Envelope;

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
    /// Envelopes pushed.
    pub emitted: u64,
    /// Envelopes confirmed sent.
    pub delivered: u64,
    /// Envelopes dropped by the policy.
    pub dropped: u64,
}

/// Drops not yet reported: how many, and between which envelope times.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DropReport {
    /// Envelopes dropped.
    pub count: u64,
    /// `ts` of the first dropped envelope.
    pub first_ts: String,
    /// `ts` of the last dropped envelope.
    pub last_ts: String,
}

/// One envelope with its serialized JSON, computed once.
#[derive(Debug, Clone)]
pub(crate) struct Item {
    /// The envelope.
    pub envelope: Envelope,
    /// Its JSON payload.
    pub json: String,
}

/// The bounded, ordered outbox.
#[derive(Debug, Default)]
pub struct Outbox {
    items: VecDeque<Item>,
    bytes: usize,
    caps: Caps,
    counts: Counts,
    unreported: Option<DropReport>,
    /// How many items at the front are already in the spool file.
    spooled: usize,
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
    pub fn push(&mut self, envelope: Envelope) {
        let json = envelope.to_json();
        self.counts.emitted += 1;
        let size = json.len();
        let fits = |s: &Self| s.items.len() < s.caps.envelopes && s.bytes + size <= s.caps.bytes;
        match self.caps.policy {
            DropPolicy::DropNewest => {
                if !fits(self) {
                    self.note_drop(&envelope.ts);
                    return;
                }
            }
            DropPolicy::DropOldest => {
                if size > self.caps.bytes {
                    // Larger than the whole buffer: evicting others would not help.
                    self.note_drop(&envelope.ts);
                    return;
                }
                while !fits(self) {
                    let Some(old) = self.items.pop_front() else {
                        // Larger than the whole buffer: it cannot be kept.
                        self.note_drop(&envelope.ts);
                        return;
                    };
                    self.spooled = self.spooled.saturating_sub(1);
                    self.bytes -= old.json.len();
                    self.note_drop(&old.envelope.ts);
                }
            }
        }
        self.bytes += size;
        self.items.push_back(Item { envelope, json });
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

    /// JSON of the envelopes not yet in the spool file, oldest first.
    pub fn unspooled(&self) -> impl Iterator<Item = &str> {
        self.items
            .iter()
            .skip(self.spooled)
            .map(|i| i.json.as_str())
    }

    /// Records that the next `n` unspooled envelopes were written to the
    /// spool file.
    pub fn mark_spooled(&mut self, n: usize) {
        self.spooled = (self.spooled + n).min(self.items.len());
    }

    /// Envelopes held that are also in the spool file.
    pub fn spooled(&self) -> usize {
        self.spooled
    }

    /// Marks the oldest `n` envelopes as delivered.
    pub fn delivered(&mut self, n: usize) {
        self.spooled = self.spooled.saturating_sub(n);
        for item in self.items.drain(..n.min(self.items.len())) {
            self.bytes -= item.json.len();
            self.counts.delivered += 1;
        }
    }

    /// Takes the drops not reported yet.
    pub(crate) fn take_drop_report(&mut self) -> Option<DropReport> {
        self.unreported.take()
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
        let msgs: Vec<_> = o.front(10).map(|i| i.envelope.msg.clone()).collect();
        assert_eq!(msgs, ["m2", "m3", "m4"]);
        assert_eq!(o.take_drop_report().unwrap().count, 2);
        assert!(o.take_drop_report().is_none());
        o.delivered(2);
        identity(&o);
        assert_eq!(o.len(), 1);
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
        let msgs: Vec<_> = o.front(10).map(|i| i.envelope.msg.clone()).collect();
        assert_eq!(msgs, ["m0", "m1"]);
        assert!(o.bytes() <= one * 2);
        assert_eq!(o.counts().dropped, 3);
    }
}

//! What one poll saw (INFO fields, new SLOWLOG entries, declared probes'
//! answers, notices) and which probes a poll runs.

use crate::redis::declared::{Answer, Ask};

/// One INFO field with its section.
#[derive(Debug, Clone, PartialEq)]
pub struct InfoField {
    /// Lower-case section name, shared by the fields of a section.
    pub section: std::sync::Arc<str>,
    /// Field name.
    pub name: String,
    /// Raw value.
    pub value: String,
}

/// One SLOWLOG entry (also a line's entry in `lookout record` output).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlowEntry {
    /// Entry id.
    pub id: u64,
    /// Start, Unix seconds.
    pub started_at: i64,
    /// Duration, microseconds.
    pub duration_us: u64,
    /// Command and arguments.
    pub args: Vec<String>,
    /// Client `ip:port`.
    pub client_addr: String,
    /// Client name.
    pub client_name: String,
}

/// What one poll saw.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// Unix milliseconds.
    pub taken_at_ms: i64,
    /// INFO fields, empty when no watcher reads INFO.
    pub info: Vec<InfoField>,
    /// New SLOWLOG entries, oldest first, without the host's own commands;
    /// `None` when no watcher reads them.
    pub slowlog: Option<Vec<SlowEntry>>,
    /// The probes that ran.
    pub probes: Probes,
    /// What each declared probe in `probes.asks` read, in the same order.
    pub answers: Vec<(Ask, Answer)>,
    /// What the host should say about this poll's probes.
    pub notices: Vec<Notice>,
}

impl Snapshot {
    /// About how many bytes of memory this snapshot holds: the text it
    /// read plus a fixed cost per item, enough to budget snapshots that
    /// wait for a watcher call across a fleet.
    #[must_use]
    pub fn approx_bytes(&self) -> usize {
        const ITEM: usize = 48;
        let pairs = |p: &[(String, String)]| -> usize {
            p.iter().map(|(k, v)| k.len() + v.len() + ITEM).sum()
        };
        let info: usize = self
            .info
            .iter()
            .map(|f| f.name.len() + f.value.len() + ITEM)
            .sum();
        let slowlog: usize = self
            .slowlog
            .iter()
            .flatten()
            .map(|e| {
                e.args.iter().map(|a| a.len() + 24).sum::<usize>()
                    + e.client_addr.len()
                    + e.client_name.len()
                    + 2 * ITEM
            })
            .sum();
        let answers: usize = self
            .answers
            .iter()
            .map(|(ask, answer)| {
                ask.key().len()
                    + ITEM
                    + match answer {
                        Answer::Unavailable(t) | Answer::Elsewhere(t) => t.len(),
                        Answer::Latency(spikes) => {
                            spikes.iter().map(|s| s.event.len() + ITEM).sum()
                        }
                        Answer::Info(p) | Answer::Cluster(p) => pairs(p),
                        Answer::StreamGroups(groups) => groups
                            .iter()
                            .map(|g| g.name.len() + g.last_delivered_id.len() + 2 * ITEM)
                            .sum(),
                        Answer::StreamInfo(_) => 4 * ITEM,
                        Answer::Clients(clients) => clients.iter().map(|c| pairs(c) + ITEM).sum(),
                    }
            })
            .sum();
        std::mem::size_of::<Self>() + info + slowlog + answers
    }
}

/// Something a poll's SLOWLOG reads met that the operator should hear
/// about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// SLOWLOG entries `first..=last` were logged but could not be read.
    Gap {
        /// First missed id.
        first: u64,
        /// Last missed id.
        last: u64,
        /// Why they could not be read.
        cause: Gap,
    },
    /// SLOWLOG was refused for this user; switched off for a while.
    Refused(String),
    /// SLOWLOG is allowed again.
    Allowed,
}

/// Why SLOWLOG entries could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gap {
    /// The ring had dropped them, or more arrived than one read fetches
    /// (`slowlog_count`).
    Ring,
    /// More were logged during the poll's reads than its re-read
    /// ([`SLOWLOG_REREADS`](super::SLOWLOG_REREADS)) caught up with.
    Rereads,
    /// The server's answer repeats ids (a proxy merging several servers'
    /// logs, or not a Redis): its entries cannot be read exactly.
    Repeated,
}

/// Which probes a poll runs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Probes {
    /// Run INFO.
    pub info: bool,
    /// Run SLOWLOG (implies INFO, for `run_id`).
    pub slowlog: bool,
    /// Declared probes, sorted, each once.
    pub asks: Vec<Ask>,
}

impl Probes {
    /// Adds what `other` runs.
    pub fn merge(&mut self, other: &Probes) {
        self.info |= other.info;
        self.slowlog |= other.slowlog;
        for ask in &other.asks {
            if let Err(at) = self.asks.binary_search(ask) {
                self.asks.insert(at, ask.clone());
            }
        }
    }

    /// Whether everything `needs` runs is run here.
    pub fn covers(&self, needs: &Probes) -> bool {
        (self.info || !needs.info)
            && (self.slowlog || !needs.slowlog)
            && needs
                .asks
                .iter()
                .all(|a| self.asks.binary_search(a).is_ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::redis::probe::info::parse_info;

    #[test]
    fn snapshot_size_grows_with_what_it_holds() {
        let empty = Snapshot::default().approx_bytes();
        let mut big = Snapshot {
            info: parse_info("# Clients\r\nconnected_clients:3\r\n"),
            ..Snapshot::default()
        };
        big.answers.push((
            Ask::ClientList,
            Answer::Clients(vec![vec![("addr".into(), "x".repeat(1000))]; 100]),
        ));
        let size = big.approx_bytes();
        assert!(size > empty + 100 * 1000, "{size}");
        assert!(size < empty + 100 * 1200, "{size}");
    }
}

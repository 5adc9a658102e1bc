//! What a watcher sees: the part of a poll's snapshot it declared, as the
//! WIT types its `observe` takes.

use super::load::Spec;
use crate::redis::declared::{Answer, Ask};
use crate::redis::probe::{SlowEntry, Snapshot};
use crate::sandbox::wit;

impl Spec {
    /// The part of `snapshot` this watcher declared, for `instance`.
    pub fn view(&self, instance: &str, snapshot: &Snapshot) -> wit::Snapshot {
        self.view_with(
            instance,
            snapshot,
            snapshot.slowlog.as_deref().map(<[SlowEntry]>::iter),
        )
    }

    /// The part of `snapshot` this watcher declared, for `instance`, with
    /// `slowlog` as its SLOWLOG entries (those not yet handed to it).
    pub fn view_with<'a>(
        &self,
        instance: &str,
        snapshot: &Snapshot,
        slowlog: Option<impl Iterator<Item = &'a SlowEntry>>,
    ) -> wit::Snapshot {
        let info = snapshot
            .info
            .iter()
            .filter(|f| {
                self.info_fields.contains(&f.name) || self.info_sections.contains(&*f.section)
            })
            .map(|f| wit::InfoField {
                section: f.section.to_string(),
                name: f.name.clone(),
                value: f.value.clone(),
            })
            .collect();
        let slowlog = if self.manifest.needs.slowlog {
            slowlog.map(|entries| {
                entries
                    .map(|e| wit::SlowlogEntry {
                        id: e.id,
                        started_at: e.started_at,
                        duration_us: e.duration_us,
                        args: e.args.clone(),
                        client_addr: e.client_addr.clone(),
                        client_name: e.client_name.clone(),
                    })
                    .collect()
            })
        } else {
            None
        };
        wit::Snapshot {
            instance: instance.to_owned(),
            taken_at_ms: snapshot.taken_at_ms,
            info,
            slowlog,
            probes: self.readings(snapshot),
        }
    }

    /// One reading per declared probe and key, in the order declared.
    fn readings(&self, snapshot: &Snapshot) -> Vec<wit::ProbeReading> {
        self.declared
            .iter()
            .flat_map(|(probe, asks)| {
                asks.iter().filter_map(move |ask| {
                    let answer = snapshot.answers.iter().find(|(a, _)| a == ask);
                    let reading = match answer {
                        // A key another cluster node serves: no reading here.
                        Some((_, Answer::Elsewhere(_))) => return None,
                        Some((ask, answer)) => reading(ask, answer),
                        None => wit::Reading::Unavailable(format!("{} did not run", ask.command())),
                    };
                    Some(wit::ProbeReading {
                        probe: probe.clone(),
                        key: ask.key().to_owned(),
                        reading,
                    })
                })
            })
            .collect()
    }
}

/// An answer as the WIT's reading.
fn reading(ask: &Ask, answer: &Answer) -> wit::Reading {
    match answer {
        Answer::Unavailable(why) | Answer::Elsewhere(why) => wit::Reading::Unavailable(why.clone()),
        Answer::Latency(spikes) => wit::Reading::Latency(
            spikes
                .iter()
                .map(|s| wit::LatencySpike {
                    event: s.event.clone(),
                    latest_at: s.latest_at,
                    latest_ms: s.latest_ms,
                    max_ms: s.max_ms,
                })
                .collect(),
        ),
        Answer::Info(fields) => {
            let section = match ask {
                Ask::InfoSection(s) => s.as_str(),
                _ => "",
            };
            wit::Reading::Info(
                fields
                    .iter()
                    .map(|(name, value)| wit::InfoField {
                        section: section.to_owned(),
                        name: name.clone(),
                        value: value.clone(),
                    })
                    .collect(),
            )
        }
        Answer::StreamGroups(groups) => wit::Reading::StreamGroups(
            groups
                .iter()
                .map(|g| wit::StreamGroup {
                    name: g.name.clone(),
                    consumers: g.consumers,
                    pending: g.pending,
                    last_delivered_id: g.last_delivered_id.clone(),
                    entries_read: g.entries_read,
                    lag: g.lag,
                })
                .collect(),
        ),
        Answer::StreamInfo(s) => wit::Reading::StreamInfo(wit::StreamInfo {
            length: s.length,
            groups: s.groups,
            last_generated_id: s.last_generated_id.clone(),
            first_entry_id: s.first_entry_id.clone(),
            last_entry_id: s.last_entry_id.clone(),
            entries_added: s.entries_added,
        }),
        Answer::Clients(lines) => wit::Reading::Clients(lines.iter().map(|l| client(l)).collect()),
        Answer::Cluster(pairs) => wit::Reading::Cluster(pairs.clone()),
    }
}

/// A `CLIENT LIST` line's pairs as the WIT's client.
fn client(pairs: &[(String, String)]) -> wit::Client {
    let get = |name: &str| {
        pairs
            .iter()
            .find(|(k, _)| k == name)
            .map_or("", |(_, v)| v.as_str())
    };
    let number = |name: &str| get(name).parse().unwrap_or(0);
    wit::Client {
        id: number("id"),
        addr: get("addr").to_owned(),
        name: get("name").to_owned(),
        age_s: number("age"),
        idle_s: number("idle"),
        flags: get("flags").to_owned(),
        cmd: get("cmd").to_owned(),
        fields: pairs.to_vec(),
    }
}

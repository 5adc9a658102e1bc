//! Reading declared probes (ABI 0.3: LATENCY LATEST, extra INFO sections,
//! XINFO GROUPS and STREAM, CLIENT LIST, CLUSTER INFO) out of a `Snapshot`.
//!
//! Each accessor returns the probe's data, or the reason it is unavailable:
//! the server refused or does not know the command, the key is missing or
//! of another type, or the watcher did not declare the probe in `needs`.

use crate::{
    Client, InfoField, LatencySpike, Probe, ProbeReading, Reading, Snapshot, StreamGroup,
    StreamInfo,
};

/// Why a probe has no data when the watcher did not declare it.
pub const NOT_DECLARED: &str = "probe not declared in the watcher's needs";

/// The stream keys listed in a setting: separated by commas or whitespace,
/// empty parts skipped, in order. The host reads the setting named by an
/// `xinfo-groups` or `xinfo-stream` probe the same way.
///
/// ```
/// assert_eq!(lookout_watcher::stream_keys(" jobs, logs:stream:redis  mail"), ["jobs", "logs:stream:redis", "mail"]);
/// ```
pub fn stream_keys(setting: &str) -> Vec<String> {
    setting
        .split(|c: char| c == ',' || c.is_whitespace())
        .filter(|k| !k.is_empty())
        .map(str::to_string)
        .collect()
}

impl Snapshot {
    /// Every reading of probes of the same kind as `probe` (XINFO probes:
    /// one per key), in the order the host ran them.
    pub fn readings<'a>(&'a self, probe: &'a Probe) -> impl Iterator<Item = &'a ProbeReading> {
        self.probes
            .iter()
            .filter(move |r| same_kind(&r.probe, probe))
    }

    fn reading(&self, probe: &Probe) -> Result<&Reading, &'static str> {
        self.probes
            .iter()
            .find(|r| same_kind(&r.probe, probe))
            .map(|r| &r.reading)
            .ok_or(NOT_DECLARED)
    }

    /// `LATENCY LATEST`: one spike per latency event (none when nothing
    /// crossed `latency-monitor-threshold`, or the threshold is 0).
    pub fn latency(&self) -> Result<&[LatencySpike], &str> {
        match self.reading(&Probe::LatencyLatest)? {
            Reading::Latency(spikes) => Ok(spikes),
            other => Err(unavailable(other)),
        }
    }

    /// The fields of INFO `section` read by an `info-section` probe
    /// (`commandstats`, `errorstats`, `latencystats`).
    pub fn info_section(&self, section: &str) -> Result<&[InfoField], &str> {
        let reading = self
            .probes
            .iter()
            .find(|r| matches!(&r.probe, Probe::InfoSection(s) if s.eq_ignore_ascii_case(section)))
            .map(|r| &r.reading)
            .ok_or(NOT_DECLARED)?;
        match reading {
            Reading::Info(fields) => Ok(fields),
            other => Err(unavailable(other)),
        }
    }

    /// `XINFO GROUPS` per stream key: `(key, groups or why not)`. On a
    /// Redis Cluster node, keys another node serves are left out.
    pub fn stream_groups(&self) -> impl Iterator<Item = (&str, Result<&[StreamGroup], &str>)> {
        self.probes
            .iter()
            .filter(|r| matches!(r.probe, Probe::XinfoGroups(_)))
            .map(|r| {
                let groups = match &r.reading {
                    Reading::StreamGroups(groups) => Ok(groups.as_slice()),
                    other => Err(unavailable(other)),
                };
                (r.key.as_str(), groups)
            })
    }

    /// `XINFO STREAM` per stream key: `(key, stream or why not)`.
    pub fn streams(&self) -> impl Iterator<Item = (&str, Result<&StreamInfo, &str>)> {
        self.probes
            .iter()
            .filter(|r| matches!(r.probe, Probe::XinfoStream(_)))
            .map(|r| {
                let stream = match &r.reading {
                    Reading::StreamInfo(stream) => Ok(stream),
                    other => Err(unavailable(other)),
                };
                (r.key.as_str(), stream)
            })
    }

    /// `CLIENT LIST`: every connection, the host's own included.
    pub fn clients(&self) -> Result<&[Client], &str> {
        match self.reading(&Probe::ClientList)? {
            Reading::Clients(clients) => Ok(clients),
            other => Err(unavailable(other)),
        }
    }

    /// `CLUSTER INFO` as `(name, value)` pairs.
    pub fn cluster_info(&self) -> Result<&[(String, String)], &str> {
        match self.reading(&Probe::ClusterInfo)? {
            Reading::Cluster(pairs) => Ok(pairs),
            other => Err(unavailable(other)),
        }
    }

    /// One `CLUSTER INFO` field (`cluster_state`), if it was read.
    pub fn cluster_field(&self, name: &str) -> Option<&str> {
        self.cluster_info()
            .ok()?
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

impl Client {
    /// A field of the `CLIENT LIST` line by name (`omem`, `user`).
    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

fn same_kind(a: &Probe, b: &Probe) -> bool {
    std::mem::discriminant(a) == std::mem::discriminant(b)
}

fn unavailable(reading: &Reading) -> &str {
    match reading {
        Reading::Unavailable(reason) => reason,
        _ => "the host returned another kind of reading",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::SnapshotBuilder;

    #[test]
    fn readings_by_kind_and_key() {
        let snap = SnapshotBuilder::new()
            .latency(vec![LatencySpike::new("command", 1_700_000_000, 250, 300)])
            .stream_groups("jobs", vec![StreamGroup::new("workers", 3, Some(7))])
            .unavailable(
                Probe::XinfoGroups("streams".into()),
                "gone",
                "ERR no such key",
            )
            .unavailable(
                Probe::ClusterInfo,
                "",
                "ERR This instance has cluster support disabled",
            )
            .build();
        assert_eq!(snap.latency().unwrap()[0].max_ms, 300);
        let groups: Vec<_> = snap.stream_groups().collect();
        assert_eq!(groups.len(), 2);
        assert_eq!(groups[0].0, "jobs");
        assert_eq!(groups[0].1.unwrap()[0].lag, Some(7));
        assert_eq!(groups[1], ("gone", Err("ERR no such key")));
        assert!(
            snap.cluster_info()
                .unwrap_err()
                .contains("cluster support disabled")
        );
        assert_eq!(snap.clients().unwrap_err(), NOT_DECLARED);
        assert_eq!(snap.info_section("errorstats").unwrap_err(), NOT_DECLARED);
        assert_eq!(snap.cluster_field("cluster_state"), None);
    }

    #[test]
    fn extra_info_sections_and_clusters() {
        let snap = SnapshotBuilder::new()
            .probe(
                Probe::InfoSection("errorstats".into()),
                "",
                Reading::Info(vec![InfoField {
                    section: "errorstats".into(),
                    name: "errorstat_ERR".into(),
                    value: "count=2".into(),
                }]),
            )
            .probe(
                Probe::ClusterInfo,
                "",
                Reading::Cluster(vec![("cluster_state".into(), "fail".into())]),
            )
            .build();
        assert_eq!(snap.info_section("ErrorStats").unwrap()[0].value, "count=2");
        assert_eq!(snap.cluster_field("cluster_state"), Some("fail"));
    }

    #[test]
    fn keys_from_a_setting() {
        assert_eq!(stream_keys("a,b c\td,,"), ["a", "b", "c", "d"]);
        assert!(stream_keys(" , ").is_empty());
    }
}

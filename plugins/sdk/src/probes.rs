//! Reading declared probes (ABI 0.3: LATENCY LATEST, extra INFO sections,
//! XINFO GROUPS and STREAM, CLIENT LIST, CLUSTER INFO) out of a `Snapshot`.
//!
//! Each accessor returns the probe's data, or the reason it is unavailable:
//! the server refused or does not know the command, the key is missing or
//! of another type, or the watcher did not declare the probe in `needs`.
//! Fields kept as text (a `CLIENT LIST` line's, `CLUSTER INFO`'s) are read
//! as numbers with `field_u64` and `cluster_u64`, whose [`FieldError`] names
//! the field.

use std::fmt;

use crate::{
    Client, InfoField, LatencySpike, Probe, ProbeReading, Reading, Snapshot, StreamGroup,
    StreamInfo,
};

/// Why a probe has no data when the watcher did not declare it.
pub(crate) const NOT_DECLARED: &str = "probe not declared in the watcher's needs";

/// Why a field of a probe reading could not be read as a number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FieldError {
    /// The reading has no field of that name (an older Redis does not print
    /// it, or the probe was not declared or is unavailable).
    Missing {
        /// The reading: `CLIENT LIST`, `CLUSTER INFO`.
        reading: &'static str,
        /// The field asked for.
        field: String,
    },
    /// The field is there but its text is not of the expected type.
    Invalid {
        /// The reading: `CLIENT LIST`, `CLUSTER INFO`.
        reading: &'static str,
        /// The field asked for.
        field: String,
        /// Its raw text.
        value: String,
        /// What was expected, with an article: "an unsigned integer".
        expected: &'static str,
    },
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FieldError::Missing { reading, field } => {
                write!(f, "{reading} field `{field}` is missing")
            }
            FieldError::Invalid {
                reading,
                field,
                value,
                expected,
            } => write!(f, "{reading} field `{field}` is not {expected}: `{value}`"),
        }
    }
}

impl std::error::Error for FieldError {}

/// `raw` (the text of field `field` of `reading`, if present) as a `u64`.
fn parse_u64(reading: &'static str, field: &str, raw: Option<&str>) -> Result<u64, FieldError> {
    let raw = raw.map(str::trim).ok_or_else(|| FieldError::Missing {
        reading,
        field: field.to_string(),
    })?;
    raw.parse().map_err(|_| FieldError::Invalid {
        reading,
        field: field.to_string(),
        value: raw.to_string(),
        expected: "an unsigned integer",
    })
}

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

    /// `CLIENT LIST`: one [`Client`] per connection, the reading process's
    /// own connections left out (the daemon's, or `lookout record`'s).
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

    /// `CLUSTER INFO` field `name` as an unsigned integer
    /// (`cluster_slots_fail`, `cluster_known_nodes`).
    ///
    /// # Errors
    /// [`FieldError::Missing`] when CLUSTER INFO was not read or has no such
    /// field, [`FieldError::Invalid`] when its text is not a number.
    pub fn cluster_u64(&self, name: &str) -> Result<u64, FieldError> {
        parse_u64("CLUSTER INFO", name, self.cluster_field(name))
    }
}

impl Client {
    /// The text of field `name` of the `CLIENT LIST` line (`omem`, `user`),
    /// if Redis printed it.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Field `name` of the `CLIENT LIST` line as an unsigned integer
    /// (`omem`, `qbuf`, `tot-mem`, `sub`).
    ///
    /// # Errors
    /// [`FieldError::Missing`] when the line has no such field (an older
    /// Redis), [`FieldError::Invalid`] when its text is not a number.
    pub fn field_u64(&self, name: &str) -> Result<u64, FieldError> {
        parse_u64("CLIENT LIST", name, self.get(name))
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
    fn numeric_fields_and_errors_that_name_them() {
        let snap = SnapshotBuilder::new()
            .cluster_info(&[("cluster_slots_fail", "3"), ("cluster_state", "ok")])
            .build();
        assert_eq!(snap.cluster_u64("cluster_slots_fail"), Ok(3));
        assert_eq!(
            snap.cluster_u64("cluster_state").unwrap_err().to_string(),
            "CLUSTER INFO field `cluster_state` is not an unsigned integer: `ok`"
        );
        assert_eq!(
            SnapshotBuilder::new()
                .build()
                .cluster_u64("cluster_size")
                .unwrap_err()
                .to_string(),
            "CLUSTER INFO field `cluster_size` is missing"
        );
        let c = Client::new(7, "10.0.0.1:5000")
            .field("omem", 3_212_032)
            .field("user", "app");
        assert_eq!(c.field_u64("omem"), Ok(3_212_032));
        assert_eq!(c.get("user"), Some("app"));
        assert_eq!(
            c.field_u64("user").unwrap_err().to_string(),
            "CLIENT LIST field `user` is not an unsigned integer: `app`"
        );
        assert_eq!(
            c.field_u64("lib-name").unwrap_err(),
            FieldError::Missing {
                reading: "CLIENT LIST",
                field: "lib-name".into()
            }
        );
    }

    #[test]
    fn keys_from_a_setting() {
        assert_eq!(stream_keys("a,b c\td,,"), ["a", "b", "c", "d"]);
        assert!(stream_keys(" , ").is_empty());
    }
}

//! Reading INFO fields out of a `Snapshot` by name.

use std::fmt;

use crate::Snapshot;

/// Why an INFO field could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InfoError {
    /// The snapshot has no field of that name (not declared in `needs`, or
    /// this Redis does not print it).
    Missing {
        /// The field asked for.
        field: String,
    },
    /// The field is there but its text is not of the expected type.
    Invalid {
        /// The field asked for.
        field: String,
        /// Its raw text.
        value: String,
        /// What was expected, with an article: "an unsigned integer".
        expected: &'static str,
    },
}

impl fmt::Display for InfoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InfoError::Missing { field } => write!(f, "INFO field `{field}` is missing"),
            InfoError::Invalid {
                field,
                value,
                expected,
            } => write!(f, "INFO field `{field}` is not {expected}: `{value}`"),
        }
    }
}

impl std::error::Error for InfoError {}

impl Snapshot {
    /// The raw text of the first INFO field named `name`, if present.
    pub fn info(&self, name: &str) -> Option<&str> {
        self.info
            .iter()
            .find(|f| f.name == name)
            .map(|f| f.value.as_str())
    }

    /// The raw text of INFO field `name`, trimmed.
    pub fn info_str(&self, name: &str) -> Result<&str, InfoError> {
        self.info(name)
            .map(str::trim)
            .ok_or_else(|| InfoError::Missing {
                field: name.to_string(),
            })
    }

    /// INFO field `name` as an unsigned integer (`used_memory_rss`).
    pub fn info_u64(&self, name: &str) -> Result<u64, InfoError> {
        self.parse_info(name, "an unsigned integer")
    }

    /// INFO field `name` as a signed integer.
    pub fn info_i64(&self, name: &str) -> Result<i64, InfoError> {
        self.parse_info(name, "an integer")
    }

    /// INFO field `name` as a float (`mem_fragmentation_ratio`).
    pub fn info_f64(&self, name: &str) -> Result<f64, InfoError> {
        self.parse_info(name, "a number")
    }

    /// INFO field `name` as a flag: `1`/`yes`/`ok`/`up` are true,
    /// `0`/`no`/`err`/`down` false (`loading`, `aof_enabled`,
    /// `master_link_status`).
    pub fn info_bool(&self, name: &str) -> Result<bool, InfoError> {
        let raw = self.info_str(name)?;
        match raw {
            "1" | "yes" | "ok" | "up" => Ok(true),
            "0" | "no" | "err" | "down" => Ok(false),
            _ => Err(InfoError::Invalid {
                field: name.to_string(),
                value: raw.to_string(),
                expected: "a flag (1/0, yes/no, ok/err, up/down)",
            }),
        }
    }

    fn parse_info<T: std::str::FromStr>(
        &self,
        name: &str,
        expected: &'static str,
    ) -> Result<T, InfoError> {
        let raw = self.info_str(name)?;
        raw.parse().map_err(|_| InfoError::Invalid {
            field: name.to_string(),
            value: raw.to_string(),
            expected,
        })
    }

    /// The `keyspace` section parsed: one [`Keyspace`] per `dbN` line, in
    /// the order Redis printed them. Declare the section in `needs`
    /// (`Needs::info(&[]).with_sections(&["keyspace"])`); an empty Redis
    /// prints no lines, so the list is empty.
    pub fn keyspace(&self) -> Result<Vec<Keyspace>, InfoError> {
        self.info
            .iter()
            .filter(|f| f.section == "keyspace")
            .map(|f| Keyspace::parse(&f.name, &f.value))
            .collect()
    }

    /// Keys in all databases, summed from [`Snapshot::keyspace`].
    pub fn total_keys(&self) -> Result<u64, InfoError> {
        Ok(self.keyspace()?.iter().map(|k| k.keys).sum())
    }
}

/// One line of INFO keyspace: `db0:keys=12,expires=3,avg_ttl=5000`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Keyspace {
    /// The database number (`0` for `db0`).
    pub db: u32,
    /// Keys in it.
    pub keys: u64,
    /// Keys with an expiry.
    pub expires: u64,
    /// Average remaining time to live of the keys with an expiry, ms.
    pub avg_ttl_ms: u64,
}

impl Keyspace {
    fn parse(name: &str, value: &str) -> Result<Self, InfoError> {
        let invalid = || InfoError::Invalid {
            field: name.to_string(),
            value: value.to_string(),
            expected: "a keyspace line (`keys=N,expires=N,avg_ttl=N`)",
        };
        let db = name
            .strip_prefix("db")
            .and_then(|n| n.parse().ok())
            .ok_or_else(invalid)?;
        let mut line = Keyspace {
            db,
            keys: 0,
            expires: 0,
            avg_ttl_ms: 0,
        };
        let mut seen_keys = false;
        for part in value.trim().split(',') {
            let (key, n) = part.split_once('=').ok_or_else(invalid)?;
            let slot = match key {
                "keys" => {
                    seen_keys = true;
                    &mut line.keys
                }
                "expires" => &mut line.expires,
                "avg_ttl" => &mut line.avg_ttl_ms,
                // Newer Redis versions add counters (subexpiry=...).
                _ => continue,
            };
            *slot = n.parse().map_err(|_| invalid())?;
        }
        if seen_keys { Ok(line) } else { Err(invalid()) }
    }
}

#[cfg(test)]
mod tests {
    use crate::testing::SnapshotBuilder;

    fn snap() -> crate::Snapshot {
        SnapshotBuilder::new()
            .info("clients", "connected_clients", "12")
            .info("memory", "mem_fragmentation_ratio", " 1.25 ")
            .info("server", "run_id", "abc")
            .info("stats", "delta", "-4")
            .build()
    }

    #[test]
    fn reads_by_name() {
        let s = snap();
        assert_eq!(s.info("run_id"), Some("abc"));
        assert_eq!(s.info_str("run_id"), Ok("abc"));
        assert_eq!(s.info_u64("connected_clients"), Ok(12));
        assert_eq!(s.info_i64("delta"), Ok(-4));
        assert_eq!(s.info_f64("mem_fragmentation_ratio"), Ok(1.25));
        assert_eq!(s.info_f64("connected_clients"), Ok(12.0));
    }

    #[test]
    fn flags() {
        let s = SnapshotBuilder::new()
            .info("persistence", "loading", "0")
            .info("persistence", "aof_enabled", "1")
            .info("replication", "master_link_status", "up")
            .info("server", "mode", "standalone")
            .build();
        assert_eq!(s.info_bool("loading"), Ok(false));
        assert_eq!(s.info_bool("aof_enabled"), Ok(true));
        assert_eq!(s.info_bool("master_link_status"), Ok(true));
        assert!(
            s.info_bool("mode")
                .unwrap_err()
                .to_string()
                .contains("is not a flag")
        );
    }

    #[test]
    fn keyspace_lines() {
        let s = SnapshotBuilder::new()
            .info("keyspace", "db0", "keys=12,expires=3,avg_ttl=5000")
            .info("keyspace", "db3", "keys=1,expires=0,avg_ttl=0,subexpiry=0")
            .info("memory", "used_memory", "1")
            .build();
        let ks = s.keyspace().unwrap();
        assert_eq!(
            ks,
            [
                crate::Keyspace {
                    db: 0,
                    keys: 12,
                    expires: 3,
                    avg_ttl_ms: 5000
                },
                crate::Keyspace {
                    db: 3,
                    keys: 1,
                    expires: 0,
                    avg_ttl_ms: 0
                },
            ]
        );
        assert_eq!(s.total_keys(), Ok(13));
        assert_eq!(SnapshotBuilder::new().build().total_keys(), Ok(0));
        let bad = SnapshotBuilder::new()
            .info("keyspace", "db0", "keys=x")
            .build();
        assert_eq!(
            bad.keyspace().unwrap_err().to_string(),
            "INFO field `db0` is not a keyspace line (`keys=N,expires=N,avg_ttl=N`): `keys=x`"
        );
    }

    #[test]
    fn errors_name_the_field() {
        let s = snap();
        assert_eq!(
            s.info_u64("maxmemory").unwrap_err().to_string(),
            "INFO field `maxmemory` is missing"
        );
        assert_eq!(
            s.info_u64("run_id").unwrap_err().to_string(),
            "INFO field `run_id` is not an unsigned integer: `abc`"
        );
        assert_eq!(
            s.info_u64("delta").unwrap_err().to_string(),
            "INFO field `delta` is not an unsigned integer: `-4`"
        );
        assert_eq!(
            s.info_f64("run_id").unwrap_err().to_string(),
            "INFO field `run_id` is not a number: `abc`"
        );
    }
}

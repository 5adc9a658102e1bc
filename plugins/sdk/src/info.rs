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

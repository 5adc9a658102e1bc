//! `lookout record`: snapshots of a real Redis as JSON lines, with every
//! INFO field and the new SLOWLOG entries, optionally redacted; and reading
//! them back for `lookout test`.

use std::io::{BufRead, Write};
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::redis::conn::Conn;
use crate::redis::probe::{InfoField, Prober, Probes, SlowEntry, Snapshot};

/// One recorded snapshot: everything any watcher could ask for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Recorded {
    /// The instance, `host:port`.
    pub instance: String,
    /// Unix milliseconds.
    pub taken_at_ms: i64,
    /// INFO fields as `[section, name, value]`.
    pub info: Vec<(String, String, String)>,
    /// New SLOWLOG entries since the previous snapshot.
    pub slowlog: Vec<SlowEntry>,
}

impl Recorded {
    fn from_snapshot(instance: &str, s: &Snapshot, redact: bool) -> Self {
        Self {
            instance: instance.to_owned(),
            taken_at_ms: s.taken_at_ms,
            info: s
                .info
                .iter()
                .map(|f| (f.section.to_string(), f.name.clone(), f.value.clone()))
                .collect(),
            slowlog: s
                .slowlog
                .iter()
                .flatten()
                .map(|e| {
                    let mut e = e.clone();
                    if redact {
                        e.args = redact_args(&e.args);
                        e.client_addr.clear();
                    }
                    e
                })
                .collect(),
        }
    }

    /// The snapshot the daemon would hand over.
    pub fn to_snapshot(&self) -> Snapshot {
        Snapshot {
            taken_at_ms: self.taken_at_ms,
            info: self
                .info
                .iter()
                .map(|(section, name, value)| InfoField {
                    section: Arc::from(section.as_str()),
                    name: name.clone(),
                    value: value.clone(),
                })
                .collect(),
            slowlog: Some(self.slowlog.clone()),
            notices: Vec::new(),
            probes: Probes {
                info: true,
                slowlog: true,
            },
        }
    }
}

/// Keeps the command name, hides every argument.
fn redact_args(args: &[String]) -> Vec<String> {
    args.iter()
        .enumerate()
        .map(|(i, a)| if i == 0 { a.clone() } else { "?".to_owned() })
        .collect()
}

/// Records `polls` snapshots of `url`, `every` apart, as JSON lines.
///
/// # Errors
/// Redis is unreachable or a probe fails, or the output cannot be written.
pub async fn record(
    url: &str,
    polls: u64,
    every: std::time::Duration,
    redact: bool,
    out: &mut impl Write,
) -> Result<()> {
    let conn = Conn::new(
        url,
        std::time::Duration::from_secs(2),
        std::time::Duration::from_secs(2),
    )?;
    let instance = conn.instance.clone();
    let mut prober = Prober::new(conn, 128);
    let all = Probes {
        info: true,
        slowlog: true,
    };
    for i in 0..polls {
        if i > 0 {
            tokio::time::sleep(every).await;
        }
        let snapshot = prober.poll(all).await?;
        let line = serde_json::to_string(&Recorded::from_snapshot(&instance, &snapshot, redact))?;
        writeln!(out, "{line}").context("writing snapshots")?;
    }
    out.flush().context("writing snapshots")?;
    Ok(())
}

/// Reads recorded snapshots.
///
/// # Errors
/// The file cannot be read or a line is not a recorded snapshot; the
/// message names the line.
pub fn read_snapshots(path: &Path) -> Result<Vec<Recorded>> {
    read_lines(path)
}

pub(crate) fn read_lines<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Vec<T>> {
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut out = Vec::new();
    for (n, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.with_context(|| format!("reading {}", path.display()))?;
        if line.trim().is_empty() {
            continue;
        }
        out.push(
            serde_json::from_str(&line)
                .with_context(|| format!("{} line {}", path.display(), n + 1))?,
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redaction_keeps_only_the_command() {
        assert_eq!(
            redact_args(&["SET".into(), "k".into(), "secret".into()]),
            ["SET", "?", "?"]
        );
    }
}

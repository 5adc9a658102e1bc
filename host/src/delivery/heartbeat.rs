//! The heartbeat key: `PREFIX:HOST:PID` on the bus, refreshed every poll
//! interval with `EX 90`, so a janitor or an alert can tell which Lookout
//! processes are alive and what each watches. It has a connection of its
//! own, so a busy outbox never delays it; it is deleted on a clean stop
//! and expires within 90 s of a crash.

use std::time::Duration;

use serde::Serialize;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::redis::conn::Conn;

/// Seconds the key lives without a refresh.
pub(crate) const TTL_S: u64 = 90;
/// The key is refreshed every poll interval, but at least this often (so
/// two missed refreshes do not let it expire)...
const MOST_APART: Duration = Duration::from_secs(30);
/// ...and at most this often.
const LEAST_APART: Duration = Duration::from_secs(1);

/// What the key holds, as JSON.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct Beat {
    /// Lookout's version.
    pub version: &'static str,
    /// The watcher ABI it speaks (`lookout:watcher@0.2.0`).
    pub abi: String,
    /// Host name and process id, as in the key.
    pub host: String,
    /// Process id.
    pub pid: u32,
    /// When the process started (RFC 3339).
    pub started_at: String,
    /// Targets polled now.
    pub targets: usize,
    /// Watchers loaded now.
    pub watchers: usize,
    /// `I/N`.
    pub shard: String,
    /// Seconds between polls.
    pub poll_interval_s: f64,
}

/// The key for this process: `PREFIX:HOST:PID`.
#[must_use]
pub(crate) fn key(prefix: &str, host: &str, pid: u32) -> String {
    format!("{prefix}:{host}:{pid}")
}

/// The heartbeat task: writes `beats`' latest value under `key` every
/// `interval` (within 1 to 30 s) until `stop` is cancelled, then deletes
/// it.
pub(crate) async fn run(
    mut conn: Conn,
    key: String,
    interval: Duration,
    mut beats: watch::Receiver<Beat>,
    stop: CancellationToken,
) {
    let every = interval.clamp(LEAST_APART, MOST_APART);
    let mut failing: Option<String> = None;
    loop {
        let value = serde_json::to_string(&*beats.borrow_and_update()).unwrap_or_default();
        let mut set = redis::pipe();
        set.cmd("SET").arg(&key).arg(value).arg("EX").arg(TTL_S);
        let written = tokio::select! {
            () = stop.cancelled() => break,
            written = conn.query(&set) => written,
        };
        match (written, &failing) {
            (Ok(_), Some(_)) => {
                info!(key = %key, "heartbeat written again");
                failing = None;
            }
            (Ok(_), None) => {}
            (Err(e), _) => {
                let text = e.to_string();
                if failing.as_deref() != Some(text.as_str()) {
                    warn!(key = %key, "heartbeat not written: {text}; retrying every {}s", every.as_secs_f64());
                    failing = Some(text);
                }
            }
        }
        tokio::select! {
            () = stop.cancelled() => break,
            () = tokio::time::sleep(every) => {}
        }
    }
    let mut del = redis::pipe();
    del.cmd("DEL").arg(&key);
    let _ = tokio::time::timeout(Duration::from_secs(1), conn.query(&del)).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_and_value() {
        assert_eq!(
            key("lookout:heartbeat", "web-1", 42),
            "lookout:heartbeat:web-1:42"
        );
        let beat = Beat {
            version: "0.1.0",
            abi: "lookout:watcher@0.2.0".to_owned(),
            host: "web-1".to_owned(),
            pid: 42,
            started_at: "2026-11-23T16:00:00.000Z".to_owned(),
            targets: 3,
            watchers: 4,
            shard: "0/1".to_owned(),
            poll_interval_s: 5.0,
        };
        let json: serde_json::Value = serde_json::to_value(&beat).unwrap();
        assert_eq!(json["targets"], 3);
        assert_eq!(json["abi"], "lookout:watcher@0.2.0");
        assert!(serde_json::to_string(&beat).unwrap().len() < 300, "small");
    }
}

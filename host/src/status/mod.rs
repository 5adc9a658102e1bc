//! What Lookout watches and what is wrong now, at a glance: the model the
//! status page (`GET /`, [`page`]) and `GET /api/v1/status` serve, both on
//! `metrics_addr`. It is gathered at each request from what the daemon
//! already keeps: the pollers' reports in the metrics, the active
//! conditions on the alerts' board, the publisher's last state, the
//! Alertmanager sender's, and the per-minute rings of [`history`].
//!
//! Targets come troubled first (down, refused, a watcher quarantined or a
//! condition active), then by key, a page at a time (`?page=N&per_page=M`),
//! so 10,000 targets stay a small answer; conditions come all of them,
//! newest first.

pub(crate) mod history;
pub(crate) mod page;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use serde::Serialize;

use self::history::{History, Minutes};
use crate::alerts::Alert;
use crate::alerts::Board;
use crate::alerts::active::kinds;
use crate::alerts::alertmanager::{Delivered, PeerState};
use crate::delivery::envelope::{HOST_TARGET, Level, Sealed};
use crate::delivery::task::{Observer, Snapshot};
use crate::metrics::serve::Pages;
use crate::metrics::{Metrics, PublisherSeen, TargetSeen};

/// Targets per page unless `per_page` says otherwise.
pub(crate) const PER_PAGE: usize = 100;
/// Most targets per page.
pub(crate) const MAX_PER_PAGE: usize = 1000;

/// The bus as configured: what the publisher's reports do not say.
#[derive(Debug, Clone)]
pub(crate) struct BusInfo {
    /// Its `host:port`.
    pub instance: String,
    /// The outbox's cap in envelopes.
    pub outbox_max: usize,
    /// The spool folder, when there is one.
    pub spool_dir: Option<PathBuf>,
}

/// The sources of the status of a running daemon.
pub(crate) struct Status {
    metrics: Arc<Metrics>,
    board: Arc<Board>,
    history: Arc<History>,
    /// The Alertmanager sender's state, when it runs.
    delivered: Option<Arc<Delivered>>,
    bus: BusInfo,
    started_at: SystemTime,
}

impl Status {
    /// The status read from these sources; the daemon started now.
    pub(crate) fn new(
        metrics: Arc<Metrics>,
        board: Arc<Board>,
        history: Arc<History>,
        delivered: Option<Arc<Delivered>>,
        bus: BusInfo,
    ) -> Self {
        Self {
            metrics,
            board,
            history,
            delivered,
            bus,
            started_at: SystemTime::now(),
        }
    }

    /// The status now, the page of targets `query` asks for.
    pub(crate) fn report(&self, query: Option<&str>) -> Report {
        let inputs = Inputs {
            targets: self.metrics.targets_seen(),
            alerts: self.board.snapshot(),
            publisher: self.metrics.publisher_seen(),
            peers: self
                .delivered
                .as_ref()
                .map(|d| d.peers())
                .unwrap_or_default(),
            minutes: self.history.minutes(),
            spool_bytes: self.bus.spool_dir.as_deref().map_or(0, spool_bytes),
        };
        build(
            inputs,
            &self.bus,
            self.started_at,
            SystemTime::now(),
            Paging::parse(query),
        )
    }
}

impl Pages for Status {
    fn get(&self, path: &str, query: Option<&str>) -> Option<(&'static str, String)> {
        match path {
            "/" => Some((
                "text/html; charset=utf-8",
                page::render(&self.report(query)),
            )),
            "/api/v1/status" => {
                let json = serde_json::to_string(&self.report(query)).unwrap_or_default();
                Some(("application/json", json + "\n"))
            }
            _ => None,
        }
    }
}

/// The publisher task's observer: the metrics, and the events counted per
/// minute.
pub(crate) struct Observed {
    pub metrics: Arc<Metrics>,
    pub history: Arc<History>,
}

impl Observer for Observed {
    fn publisher(&self, snapshot: &Snapshot) {
        self.metrics.publisher(snapshot);
    }

    fn spooled(&self, envelopes: usize) {
        self.metrics.spooled(envelopes);
    }

    fn queued(&self, envelopes: &[Sealed]) {
        self.history.queued(envelopes);
    }
}

/// Bytes of the files in the spool folder (and one level below).
fn spool_bytes(dir: &Path) -> u64 {
    fn walk(dir: &Path, depth: u8) -> u64 {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return 0;
        };
        entries
            .flatten()
            .map(|e| match e.metadata() {
                Ok(m) if m.is_file() => m.len(),
                Ok(m) if m.is_dir() && depth > 0 => walk(&e.path(), depth - 1),
                _ => 0,
            })
            .sum()
    }
    walk(dir, 1)
}

/// Which targets a request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Paging {
    /// 1-based.
    pub page: usize,
    pub per_page: usize,
}

impl Paging {
    /// `page` and `per_page` from a query string; anything missing or
    /// unreadable takes its default, `per_page` is held to 1..=1000.
    pub(crate) fn parse(query: Option<&str>) -> Self {
        let mut paging = Self {
            page: 1,
            per_page: PER_PAGE,
        };
        for pair in query.unwrap_or("").split('&') {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            let Ok(n) = value.parse::<usize>() else {
                continue;
            };
            match name {
                "page" => paging.page = n.max(1),
                "per_page" => paging.per_page = n.clamp(1, MAX_PER_PAGE),
                _ => {}
            }
        }
        paging
    }
}

/// What the model is built from (a request's reads of the sources).
#[derive(Debug, Clone)]
struct Inputs {
    targets: Vec<TargetSeen>,
    alerts: Vec<Alert>,
    publisher: PublisherSeen,
    peers: Vec<PeerState>,
    minutes: Minutes,
    spool_bytes: u64,
}

/// The answer of `/api/v1/status`, which the page shows.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Report {
    pub version: &'static str,
    pub started_at: String,
    pub now: String,
    pub summary: Summary,
    pub page: usize,
    pub pages: usize,
    pub per_page: usize,
    pub targets: Vec<TargetRow>,
    pub conditions: Vec<ConditionRow>,
    pub bus: Bus,
    pub alertmanager: Vec<AlertmanagerRow>,
    pub events_per_minute: EventsPerMinute,
    pub lateness_per_minute_ms: Vec<u64>,
}

/// Counts over every target, not one page.
#[derive(Debug, Clone, Copy, Serialize)]
pub(crate) struct Summary {
    /// Targets this process polls.
    pub targets: usize,
    /// Of those, the ones with a watcher running (loaded, not
    /// quarantined).
    pub watched: usize,
    /// Of those, the ones down or refusing lookout.
    pub down: usize,
    /// Active conditions.
    pub conditions: usize,
    /// Watchers quarantined, over every target.
    pub quarantined: usize,
}

/// One target.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct TargetRow {
    pub key: String,
    pub instance: String,
    pub labels: BTreeMap<String, String>,
    /// `up`, `down`, `refused` or `starting`.
    pub state: &'static str,
    pub last_poll: Option<String>,
    pub lateness_ms: u64,
    pub watchers: Vec<WatcherRow>,
}

/// One watcher on one target.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct WatcherRow {
    pub name: String,
    pub restarts: u64,
    pub quarantined: bool,
}

/// One active condition.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct ConditionRow {
    pub fingerprint: String,
    pub watcher: String,
    pub kind: String,
    pub key: String,
    /// `error`, `warn` or `info` (Alertmanager's severity read back).
    pub level: &'static str,
    pub message: String,
    pub target: String,
    pub instance: String,
    pub labels: BTreeMap<String, String>,
    pub started_at: String,
    pub age_s: u64,
    pub runbook_url: Option<String>,
}

/// The bus and the publisher's state.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Bus {
    pub instance: String,
    /// `closed`, `open` or `half-open`.
    pub breaker: &'static str,
    pub outbox: u64,
    pub outbox_max: usize,
    pub spool_bytes: u64,
    pub dropped: u64,
}

/// One Alertmanager.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct AlertmanagerRow {
    pub url: String,
    /// `ok`, `down` or `never-sent`.
    pub state: &'static str,
    pub last_sent: Option<String>,
    pub pending_resolutions: usize,
}

/// Events queued per minute over the last hour, by level, oldest first.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct EventsPerMinute {
    pub minutes: usize,
    pub debug: Vec<u64>,
    pub info: Vec<u64>,
    pub warn: Vec<u64>,
    pub error: Vec<u64>,
}

/// RFC 3339 UTC with milliseconds.
fn rfc3339(at: SystemTime) -> String {
    humantime::format_rfc3339_millis(at).to_string()
}

/// The labels an alert carries besides the target's own.
const ALERT_LABELS: [&str; 6] = [
    "alertname",
    "condition",
    "instance",
    "target",
    "severity",
    "service",
];

/// An active alert of the board as a condition row.
fn condition(alert: &Alert, now: SystemTime) -> ConditionRow {
    let label = |name: &str| alert.labels.get(name).cloned().unwrap_or_default();
    let alertname = label("alertname");
    // Watcher names are file stems: the first `/` ends them.
    let (watcher, kind) = alertname
        .split_once('/')
        .map_or((alertname.clone(), String::new()), |(w, k)| {
            (w.to_owned(), k.to_owned())
        });
    let level = match alert.labels.get("severity").map(String::as_str) {
        Some("critical") => Level::Error,
        Some("warning") => Level::Warn,
        _ => Level::Info,
    };
    ConditionRow {
        fingerprint: alert.fingerprint.clone(),
        watcher,
        kind,
        key: label("condition"),
        level: level.as_str(),
        message: alert.summary.clone(),
        target: label("target"),
        instance: label("instance"),
        labels: alert
            .labels
            .iter()
            .filter(|(name, _)| !ALERT_LABELS.contains(&name.as_str()))
            .map(|(name, value)| (name.clone(), value.clone()))
            .collect(),
        started_at: rfc3339(alert.starts_at),
        age_s: now
            .duration_since(alert.starts_at)
            .map_or(0, |d| d.as_secs()),
        runbook_url: alert.runbook_url.clone(),
    }
}

/// The model from `inputs` at `now`, the page `paging` asks for.
fn build(
    inputs: Inputs,
    bus: &BusInfo,
    started_at: SystemTime,
    now: SystemTime,
    paging: Paging,
) -> Report {
    let Inputs {
        targets,
        alerts,
        publisher,
        peers,
        minutes,
        spool_bytes,
    } = inputs;
    let mut active: Vec<&Alert> = alerts.iter().filter(|a| a.ends_at.is_none()).collect();
    active.sort_by(|a, b| {
        b.starts_at
            .cmp(&a.starts_at)
            .then_with(|| a.fingerprint.cmp(&b.fingerprint))
    });
    let conditions: Vec<ConditionRow> = active.iter().map(|a| condition(a, now)).collect();
    // Per target key: how many conditions, and which host kinds fire.
    let mut held: HashMap<&str, (usize, bool, bool)> = HashMap::new();
    for c in &conditions {
        let entry = held.entry(c.target.as_str()).or_default();
        entry.0 += 1;
        if c.watcher == HOST_TARGET {
            entry.1 |= c.kind == kinds::CONFIGURATION_REFUSED;
            entry.2 |= c.kind == kinds::TARGET_UNREACHABLE;
        }
    }
    let mut rows: Vec<(bool, TargetRow)> = targets
        .into_iter()
        .map(|t| {
            let (count, refused, unreachable) =
                held.get(t.key.as_str()).copied().unwrap_or_default();
            let state = if refused {
                "refused"
            } else if t.up == Some(false) || unreachable {
                "down"
            } else if t.up.is_none() {
                "starting"
            } else {
                "up"
            };
            let quarantined = t.watchers.iter().any(|w| w.2);
            let troubled = matches!(state, "down" | "refused") || quarantined || count > 0;
            let row = TargetRow {
                key: t.key,
                instance: t.instance,
                labels: t.labels,
                state,
                last_poll: t.last_poll.map(rfc3339),
                lateness_ms: t.lateness_ms,
                watchers: t
                    .watchers
                    .into_iter()
                    .map(|(name, restarts, quarantined)| WatcherRow {
                        name,
                        restarts,
                        quarantined,
                    })
                    .collect(),
            };
            (troubled, row)
        })
        .collect();
    let summary = Summary {
        targets: rows.len(),
        watched: rows
            .iter()
            .filter(|(_, r)| r.watchers.iter().any(|w| !w.quarantined))
            .count(),
        down: rows
            .iter()
            .filter(|(_, r)| matches!(r.state, "down" | "refused"))
            .count(),
        conditions: conditions.len(),
        quarantined: rows
            .iter()
            .flat_map(|(_, r)| &r.watchers)
            .filter(|w| w.quarantined)
            .count(),
    };
    rows.sort_by(|(ta, a), (tb, b)| tb.cmp(ta).then_with(|| a.key.cmp(&b.key)));
    let per_page = paging.per_page.clamp(1, MAX_PER_PAGE);
    let pages = rows.len().div_ceil(per_page).max(1);
    let page = paging.page.clamp(1, pages);
    let targets: Vec<TargetRow> = rows
        .into_iter()
        .skip((page - 1) * per_page)
        .take(per_page)
        .map(|(_, r)| r)
        .collect();
    let alertmanager = peers
        .into_iter()
        .map(|p| AlertmanagerRow {
            state: if p.down {
                "down"
            } else if p.last_sent.is_some() {
                "ok"
            } else {
                "never-sent"
            },
            url: p.url,
            last_sent: p.last_sent.map(rfc3339),
            pending_resolutions: p.pending_resolutions,
        })
        .collect();
    let [debug, info, warn, error] = minutes.events;
    Report {
        version: env!("CARGO_PKG_VERSION"),
        started_at: rfc3339(started_at),
        now: rfc3339(now),
        summary,
        page,
        pages,
        per_page,
        targets,
        conditions,
        bus: Bus {
            instance: bus.instance.clone(),
            breaker: publisher.breaker,
            outbox: publisher.outbox,
            outbox_max: bus.outbox_max,
            spool_bytes,
            dropped: publisher.dropped,
        },
        alertmanager,
        events_per_minute: EventsPerMinute {
            minutes: history::MINUTES,
            debug,
            info,
            warn,
            error,
        },
        lateness_per_minute_ms: minutes.lateness_ms,
    }
}

#[cfg(test)]
pub(crate) mod tests;

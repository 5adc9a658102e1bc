//! Delivery to Alertmanager: a task that reads the [`Board`] whenever it
//! changes and every `resend_s`, and POSTs its alerts to each configured
//! Alertmanager's `/api/v2/alerts`. An active alert is sent with an
//! `endsAt` four re-sends ahead (so one missed send does not resolve it),
//! a resolved one with its resolution time until that Alertmanager took
//! it. An Alertmanager that does not answer is retried with backoff and
//! sent everything active when it answers again; a 400 is logged, not
//! retried. The settings are in [`settings`], one POST in [`client`].

pub(crate) mod client;
pub(crate) mod settings;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashSet};
use std::future::Future;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::pin::{Pin, pin};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::Poll;
use std::time::{Duration, SystemTime};

use anyhow::Result;
use bytes::Bytes;
use serde_json::{Value, json};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use self::client::{Client, Reply};
use self::settings::AlertmanagerSettings;
use super::{Alert, Board};
use crate::redis::backoff::Backoff;

pub(crate) use self::settings::AlertmanagerFile;
pub(crate) use self::settings::shown;

/// How many re-send intervals ahead an active alert's `endsAt` lies.
const ENDS_AFTER_RESENDS: u32 = 4;

/// The `alertname` of the always-firing alert.
pub(crate) const WATCHDOG: &str = "Watchdog";

/// How each Alertmanager is doing, as the sender last saw it (the status
/// page reads it): one entry per configured URL, in their order.
#[derive(Debug, Default)]
pub(crate) struct Delivered {
    peers: Mutex<Vec<PeerState>>,
}

/// One Alertmanager as the sender last saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PeerState {
    pub url: String,
    /// When it last took a send.
    pub last_sent: Option<SystemTime>,
    /// Its last send failed; it is being retried.
    pub down: bool,
    /// Resolutions it has not taken yet.
    pub pending_resolutions: usize,
}

impl Delivered {
    /// Each Alertmanager's state, in the configured order.
    pub(crate) fn peers(&self) -> Vec<PeerState> {
        self.peers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn record(&self, peers: &[Peer], alerts: &[Alert]) {
        let states = peers
            .iter()
            .map(|p| PeerState {
                url: p.url.to_string(),
                last_sent: p.last_sent,
                down: p.retry_at.is_some(),
                pending_resolutions: alerts
                    .iter()
                    .filter(|a| {
                        a.ends_at
                            .is_some_and(|at| !p.resolved.contains(&(a.fingerprint.clone(), at)))
                    })
                    .count(),
            })
            .collect();
        *self.peers.lock().unwrap_or_else(PoisonError::into_inner) = states;
    }
}

/// One Alertmanager and what it has been given.
struct Peer {
    url: url::Url,
    backoff: Backoff,
    /// When the next attempt is due after a failure; `None` while it
    /// answers.
    retry_at: Option<Instant>,
    /// Resolutions it accepted, by fingerprint and resolution time.
    resolved: HashSet<(String, SystemTime)>,
    /// Digests of the alerts it took since the last full send: a change
    /// sends only what differs from these.
    sent: HashSet<u64>,
    /// When it last took a send.
    last_sent: Option<SystemTime>,
}

/// What one send to one Alertmanager came to.
enum Outcome {
    /// 2xx: everything sent is delivered.
    Accepted,
    /// 400 (or 422): the alerts it could read are taken; not retried.
    Rejected(Reply),
    /// No answer, or an answer that a later attempt may change.
    Failed(String),
}

/// [`reporting`] without keeping the Alertmanagers' state.
///
/// # Errors
/// The TLS configuration cannot be built (an unreadable or bad file).
#[cfg(test)]
pub(crate) fn sender(
    settings: AlertmanagerSettings,
    service: String,
    board: Arc<Board>,
    shutdown: CancellationToken,
) -> Result<impl Future<Output = ()> + Send + 'static> {
    reporting(settings, service, board, shutdown, Arc::default())
}

/// The sender: reads `board` and delivers it to every Alertmanager of
/// `settings` until `shutdown`, keeping each one's state in `delivered`
/// (the status page reads it). The watchdog alert carries `service`.
///
/// # Errors
/// The TLS configuration cannot be built (an unreadable or bad file).
pub(crate) fn reporting(
    settings: AlertmanagerSettings,
    service: String,
    board: Arc<Board>,
    shutdown: CancellationToken,
    delivered: Arc<Delivered>,
) -> Result<impl Future<Output = ()> + Send + 'static> {
    let client = Client::new(&settings)?;
    if settings.tls.insecure() {
        warn!(
            "alertmanager.tls.insecure: Alertmanager's certificate is not checked; anyone on \
             the path can read and drop the alerts"
        );
    }
    Ok(run(settings, client, service, board, shutdown, delivered))
}

async fn run(
    settings: AlertmanagerSettings,
    client: Client,
    service: String,
    board: Arc<Board>,
    shutdown: CancellationToken,
    delivered: Arc<Delivered>,
) {
    let mut peers: Vec<Peer> = settings
        .urls
        .iter()
        .map(|url| Peer {
            url: url.clone(),
            backoff: Backoff::new(
                Duration::from_secs(1),
                settings.resend.max(Duration::from_secs(1)),
            ),
            retry_at: None,
            resolved: HashSet::new(),
            sent: HashSet::new(),
            last_sent: None,
        })
        .collect();
    delivered.record(&peers, &[]);
    let watchdog_since = SystemTime::now();
    let urls: Vec<&str> = settings.urls.iter().map(url::Url::as_str).collect();
    info!(
        urls = ?urls,
        resend_s = settings.resend.as_secs_f64(),
        watchdog = settings.watchdog,
        "sending alerts to Alertmanager"
    );
    let mut next_resend = Instant::now();
    loop {
        // Armed before the snapshot: a change while sending wakes the
        // next wait.
        let mut changed = pin!(board.changed());
        let _ = poll_once(changed.as_mut()).await;
        let now = Instant::now();
        let resend_due = now >= next_resend;
        if resend_due {
            next_resend = now + settings.resend;
        }
        let due: Vec<usize> = (0..peers.len())
            .filter(|&i| match peers[i].retry_at {
                Some(at) => at <= now,
                None => true,
            })
            .collect();
        let mut alerts = board.snapshot();
        if settings.watchdog {
            alerts.push(watchdog(&service, watchdog_since));
        }
        let sending = deliver(&settings, &client, &mut peers, &due, &alerts, resend_due);
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = sending => {}
        }
        forget_delivered(&board, &mut peers, &alerts);
        delivered.record(&peers, &alerts);
        let retry = peers.iter().filter_map(|p| p.retry_at).min();
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = &mut changed => {}
            () = tokio::time::sleep_until(next_resend) => {}
            () = sleep_until_some(retry) => {}
        }
    }
}

/// Polls `future` once, so a `Notify` future inside it is registered.
async fn poll_once<F: Future>(mut future: Pin<&mut F>) -> bool {
    std::future::poll_fn(|cx| Poll::Ready(future.as_mut().poll(cx).is_ready())).await
}

async fn sleep_until_some(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Sends `alerts` to the peers at `due` at once, each what it still needs
/// (on a re-send, or to a peer answering again: every active alert; on a
/// change: those that differ from what it took; and the resolutions it
/// has not taken), and records the outcomes.
async fn deliver(
    settings: &AlertmanagerSettings,
    client: &Client,
    peers: &mut [Peer],
    due: &[usize],
    alerts: &[Alert],
    resend: bool,
) {
    let now = SystemTime::now();
    let ends_at = now + settings.resend * ENDS_AFTER_RESENDS;
    let mut sends = JoinSet::new();
    for &i in due {
        let peer = &peers[i];
        let full = resend || peer.retry_at.is_some();
        let batch: Vec<&Alert> = alerts
            .iter()
            .filter(|a| match a.ends_at {
                None => full || !peer.sent.contains(&digest(a)),
                Some(at) => !peer.resolved.contains(&(a.fingerprint.clone(), at)),
            })
            .collect();
        if batch.is_empty() {
            continue;
        }
        let body = Value::Array(
            batch
                .iter()
                .map(|a| wire(a, ends_at, settings.external_url.as_deref()))
                .collect(),
        );
        let body = Bytes::from(body.to_string());
        let resolved: Vec<(String, SystemTime)> = batch
            .iter()
            .filter_map(|a| a.ends_at.map(|at| (a.fingerprint.clone(), at)))
            .collect();
        let digests: Vec<u64> = batch.iter().map(|a| digest(a)).collect();
        let (client, url) = (client.clone(), peer.url.clone());
        sends.spawn(async move {
            let outcome = match client.post(&url, body).await {
                Ok(reply) if (200..300).contains(&reply.status) => Outcome::Accepted,
                Ok(reply) if matches!(reply.status, 400 | 422) => Outcome::Rejected(reply),
                Ok(reply) => Outcome::Failed(format!(
                    "HTTP {}: {}",
                    reply.status,
                    crate::untrusted::clip_to(reply.body.trim(), 256)
                )),
                Err(e) => Outcome::Failed(format!("{e:#}")),
            };
            (i, outcome, resolved, digests, full)
        });
    }
    while let Some(joined) = sends.join_next().await {
        let Ok((i, outcome, resolved, digests, full)) = joined else {
            continue;
        };
        let peer = &mut peers[i];
        match outcome {
            Outcome::Accepted | Outcome::Rejected(_) => {
                if let Outcome::Rejected(reply) = &outcome {
                    warn!(
                        url = %peer.url,
                        status = reply.status,
                        reply = %crate::untrusted::clip(reply.body.trim()),
                        "Alertmanager refused alerts; they are not sent again until they change"
                    );
                }
                if peer.retry_at.take().is_some() {
                    info!(url = %peer.url, "Alertmanager answers again; every active alert sent");
                }
                peer.backoff.reset();
                peer.last_sent = Some(SystemTime::now());
                peer.resolved.extend(resolved);
                if full {
                    peer.sent.clear();
                }
                peer.sent.extend(digests);
            }
            Outcome::Failed(why) => {
                let wait = peer.backoff.next_wait();
                warn!(
                    url = %peer.url,
                    error = %why,
                    retry_in_s = wait.as_secs_f64(),
                    "Alertmanager did not take the alerts; retrying"
                );
                peer.retry_at = Some(Instant::now() + wait);
            }
        }
    }
}

/// Takes off the board the resolutions every peer has taken (a
/// fingerprint's all of them: it may have resolved under two sets of
/// labels).
fn forget_delivered(board: &Board, peers: &mut [Peer], alerts: &[Alert]) {
    let mut everywhere: BTreeMap<&str, bool> = BTreeMap::new();
    for alert in alerts {
        let Some(at) = alert.ends_at else { continue };
        let key = (alert.fingerprint.clone(), at);
        let taken = peers.iter().all(|p| p.resolved.contains(&key));
        *everywhere.entry(&alert.fingerprint).or_insert(true) &= taken;
    }
    for (fingerprint, taken) in everywhere {
        if taken {
            board.forget_resolved(fingerprint);
            for peer in peers.iter_mut() {
                peer.resolved.retain(|(fp, _)| fp != fingerprint);
            }
        }
    }
}

/// What tells one state of an alert from another.
fn digest(alert: &Alert) -> u64 {
    let mut hasher = DefaultHasher::new();
    alert.fingerprint.hash(&mut hasher);
    alert.labels.hash(&mut hasher);
    alert.summary.hash(&mut hasher);
    alert.description.hash(&mut hasher);
    alert.runbook_url.hash(&mut hasher);
    alert.starts_at.hash(&mut hasher);
    alert.ends_at.hash(&mut hasher);
    hasher.finish()
}

/// `alert` as Alertmanager's API v2 takes it (`postableAlert`): active
/// ones end at `ends_at`, resolved ones when they resolved.
fn wire(alert: &Alert, ends_at: SystemTime, generator: Option<&str>) -> Value {
    let time = |t: SystemTime| humantime::format_rfc3339_millis(t).to_string();
    let mut annotations = BTreeMap::new();
    annotations.insert("summary", alert.summary.as_str());
    annotations.insert("description", alert.description.as_str());
    if let Some(url) = &alert.runbook_url {
        annotations.insert("runbook_url", url.as_str());
    }
    let mut value = json!({
        "labels": alert.labels,
        "annotations": annotations,
        "startsAt": time(alert.starts_at),
        "endsAt": time(alert.ends_at.unwrap_or(ends_at)),
    });
    if let Some(url) = generator {
        value["generatorURL"] = json!(url);
    }
    value
}

/// The always-firing alert: its arrival proves the path from this
/// process to the receivers, its absence pages (a dead man's switch).
fn watchdog(service: &str, since: SystemTime) -> Alert {
    let labels = BTreeMap::from([
        ("alertname".to_owned(), WATCHDOG.to_owned()),
        ("severity".to_owned(), "none".to_owned()),
        ("service".to_owned(), service.to_owned()),
    ]);
    Alert {
        fingerprint: format!("watchdog/{service}"),
        labels,
        summary: "Lookout is running and reaches Alertmanager".to_owned(),
        description: "Always firing while Lookout runs: route it to a dead man's switch, which \
                      pages when it stops arriving."
            .to_owned(),
        runbook_url: None,
        starts_at: since,
        ends_at: None,
    }
}

//! One poll: PING, INFO, a SLOWLOG GET sized for the new entries and the
//! declared probes in one pipeline, then a second SLOWLOG read only after
//! a burst, within the poll's deadline; a refused credential or probe
//! becomes an error or a notice with its fix.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use redis::Value;

use super::asks::{Asks, REFUSED_RETRY, Sent};
use super::info::{Sections, parse_info, parse_info_kept};
use super::slowlog::{Reread, Slowlog, parse_slowlog};
use super::snapshot::{Notice, Probes, SlowEntry, Snapshot};
use crate::redis::conn::{Conn, QueryError, text};
use crate::redis::declared::Ask;
use crate::redis::endpoint::Endpoint;
use crate::redis::error::{ServerKind, reply_line};

/// Why a poll failed; decides between backoff and a short retry.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// PING failed: Redis is down or unreachable.
    #[error("redis unreachable: {0:#}")]
    Unreachable(anyhow::Error),
    /// PING answered but a later probe failed.
    #[error("probe failed: {0:#}")]
    Failed(anyhow::Error),
    /// The server refused the credentials or a probe for this user
    /// (WRONGPASS, NOAUTH, NOPERM): a configuration error, not an outage.
    #[error("{reason}")]
    Refused {
        /// Which refusal.
        kind: ServerKind,
        /// What was refused, by which server, and the fix.
        reason: String,
    },
    /// PING answered but the rest of the poll's reads did not finish
    /// within the poll's deadline (its interval); says what was waited for.
    #[error("{0}")]
    Overdue(String),
}

/// What a poll is waiting for, to say why when it takes too long.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Waiting {
    /// Connecting, or the first pipeline (PING first): the server does not
    /// answer.
    Pipeline(String),
    /// A SLOWLOG read after the pipeline (PING) answered.
    Slowlog(u64),
}

/// Runs the probes against the watched Redis and keeps the
/// SLOWLOG cursor so each entry is handed over once.
pub struct Prober {
    /// The watched connection.
    pub conn: Conn,
    /// How to dial a fresh connection when a poll is cut off mid-reply
    /// (the old one may still owe replies): the endpoint and the connect
    /// and response timeouts.
    redial: Option<(Endpoint, Duration, Duration)>,
    /// What the poll in progress waits for.
    waiting: Waiting,
    /// Where the SLOWLOG was read up to.
    slowlog: Slowlog,
    /// Which INFO sections a poll asks for.
    sections: Sections,
    /// SLOWLOG was refused; not asked again before then.
    slowlog_refused_until: Option<Instant>,
    /// What the declared probes hold back between polls.
    asks: Asks,
}

impl Prober {
    /// A prober over `conn` fetching at most `slowlog_count` entries a call.
    pub fn new(conn: Conn, slowlog_count: u32) -> Self {
        Self {
            conn,
            redial: None,
            waiting: Waiting::Pipeline(String::new()),
            slowlog: Slowlog::new(slowlog_count),
            sections: Sections::default(),
            slowlog_refused_until: None,
            asks: Asks::default(),
        }
    }

    /// CLIENT LIST is skipped while the server has more than `max`
    /// clients connected (`limits.max_clients_listed`).
    #[must_use]
    pub fn with_max_clients_listed(mut self, max: u64) -> Self {
        self.asks.max_clients_listed = max;
        self
    }

    /// Dials `endpoint` afresh (with these timeouts) after a poll cut off by
    /// [`Self::poll_within`], so no late reply is taken for a new one.
    #[must_use]
    pub fn with_redial(
        mut self,
        endpoint: Endpoint,
        connect_timeout: Duration,
        response_timeout: Duration,
    ) -> Self {
        self.redial = Some((endpoint, connect_timeout, response_timeout));
        self
    }

    /// Most SLOWLOG entries one read fetches (`slowlog_count`).
    pub fn slowlog_count(&self) -> u32 {
        self.slowlog.count
    }

    /// [`Self::poll`] within `budget` (the poll interval): a server that
    /// answers too slowly, or not at all, or keeps a read going, fails the
    /// poll when the budget is spent, saying what the poll was waiting
    /// for, and the connection is dialled afresh for the next poll.
    ///
    /// # Errors
    /// As [`Self::poll`]; past the budget [`ProbeError::Unreachable`] when
    /// the server had not answered the first pipeline (PING), otherwise
    /// [`ProbeError::Overdue`].
    pub async fn poll_within(
        &mut self,
        probes: Probes,
        budget: Duration,
    ) -> Result<Snapshot, ProbeError> {
        self.waiting = Waiting::Pipeline(String::new());
        let Ok(done) = tokio::time::timeout(budget, self.poll(probes)).await else {
            self.fresh_connection();
            let took = format!(
                "poll took longer than the interval ({}s)",
                budget.as_secs_f64()
            );
            return Err(match &self.waiting {
                Waiting::Pipeline(what) => {
                    ProbeError::Unreachable(anyhow::anyhow!("{took}: {what}"))
                }
                Waiting::Slowlog(ask) => ProbeError::Overdue(format!(
                    "{took}: PING answered but SLOWLOG GET {ask} got no reply within it"
                )),
            });
        };
        done
    }

    /// Replaces the connection with one not dialled yet: a reply the old
    /// one still owes would otherwise answer the next poll's command.
    fn fresh_connection(&mut self) {
        let Some((endpoint, connect, response)) = &self.redial else {
            return;
        };
        match Conn::open(endpoint, *connect, *response) {
            Ok(conn) => self.conn = conn,
            Err(e) => tracing::warn!(
                "redis at {}: cannot prepare a fresh connection after a poll was cut off ({e:#}); the old one is kept",
                self.conn.instance
            ),
        }
    }

    /// The INFO fields and sections the watchers read; INFO is cut down to
    /// the sections that hold them once they are located.
    pub fn read_info(
        &mut self,
        fields: impl IntoIterator<Item = String>,
        sections: impl IntoIterator<Item = String>,
    ) {
        self.sections
            .want(fields.into_iter().collect(), sections.into_iter().collect());
    }

    /// PINGs and runs the requested INFO and a SLOWLOG GET sized from the
    /// recent polls in one pipeline; reads SLOWLOG again only when that
    /// answer does not reach back to the last entry read (a burst).
    ///
    /// # Errors
    /// [`ProbeError::Unreachable`] when the connection fails or times out,
    /// [`ProbeError::Refused`] when the server refuses the credentials or
    /// PING or INFO for this user, [`ProbeError::Failed`] when Redis
    /// answers with another error or garbage.
    pub async fn poll(&mut self, probes: Probes) -> Result<Snapshot, ProbeError> {
        let mut notices = Vec::new();
        let refused = self
            .slowlog_refused_until
            .is_some_and(|until| Instant::now() < until);
        // `cluster_enabled` (INFO cluster) tells whether CLUSTER INFO can
        // answer at all.
        let cluster = probes.asks.contains(&Ask::ClusterInfo);
        // `connected_clients` (INFO clients) tells whether CLIENT LIST is
        // small enough to read.
        let clients = probes.asks.contains(&Ask::ClientList);
        let probes = Probes {
            info: probes.info || probes.slowlog || cluster || clients,
            slowlog: probes.slowlog && !refused,
            asks: probes.asks,
        };
        let mut pipe = redis::pipe();
        pipe.ignore_errors();
        pipe.cmd("PING");
        let sections = probes
            .info
            .then(|| self.sections.plan(probes.slowlog, cluster, clients))
            .flatten();
        if probes.info {
            let info = pipe.cmd("INFO");
            for section in sections.iter().copied().flatten() {
                info.arg(section);
            }
        }
        // Whether INFO is cut down to the sections the watchers read.
        let cut = sections.is_some();
        // The new SLOWLOG entries in this round trip, as many as the recent
        // polls brought (and some more).
        let slowlog_ask = self.slowlog.first_ask();
        if probes.slowlog {
            pipe.cmd("SLOWLOG").arg("GET").arg(slowlog_ask);
        }
        let round = self.asks.round(Instant::now());
        let asked: Vec<Sent> = probes
            .asks
            .iter()
            .map(|ask| self.asks.send(ask, &mut pipe, round))
            .collect();
        self.waiting = Waiting::Pipeline(if self.conn.is_connected() {
            "no reply to PING within it".to_owned()
        } else {
            "not connected within it".to_owned()
        });
        let mut replies = self
            .conn
            .query(&pipe)
            .await
            .map_err(|e| self.query_error(e, "the connection"))?;
        if let Some(Value::ServerError(e)) = replies.first() {
            return Err(self.server_error(e, "PING"));
        }
        let taken_at_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
        let mut at = 1 + usize::from(probes.info) + usize::from(probes.slowlog);
        let answers = probes
            .asks
            .iter()
            .zip(&asked)
            .map(|(ask, sent)| {
                let n = sent.replies();
                let replies = replies.get(at..at + n).unwrap_or_default();
                at += n;
                (ask.clone(), self.asks.read(ask, *sent, replies, round))
            })
            .collect();
        let mut snapshot = Snapshot {
            taken_at_ms,
            probes,
            answers,
            ..Snapshot::default()
        };
        if snapshot.probes.info {
            if let Some(Value::ServerError(e)) = replies.get(1) {
                if cut {
                    // Refused, perhaps by an older server after a restart:
                    // the whole INFO next time.
                    self.sections.forget();
                }
                return Err(self.server_error(e, "INFO"));
            }
            // The reply's own bytes, not a copy of them.
            let reply = replies.get_mut(1).map(|v| std::mem::replace(v, Value::Nil));
            let info_text = owned_text(reply)
                .context("INFO reply")
                .map_err(ProbeError::Failed)?;
            if cut {
                // INFO cut down to the sections read: keep only what the
                // watchers declared (and `run_id`), not every field.
                let wanted = &self.sections;
                snapshot.info = parse_info_kept(
                    &info_text,
                    |section| wanted.sections.contains(section),
                    |name| {
                        name == "run_id"
                            || name == "cluster_enabled"
                            || name == "connected_clients"
                            || wanted.fields.contains(name)
                    },
                );
            } else {
                snapshot.info = parse_info(&info_text);
                self.sections.learn(&snapshot.info);
            }
        }
        self.asks.learn(&snapshot.info);
        if snapshot.probes.slowlog {
            match replies.get(2) {
                Some(Value::ServerError(e)) if ServerKind::from(e) == ServerKind::NoPerm => {
                    let first = self
                        .slowlog_refused_until
                        .replace(Instant::now() + REFUSED_RETRY)
                        .is_none();
                    snapshot.probes.slowlog = false;
                    if first {
                        notices.push(Notice::Refused(refusal(
                            &self.conn.redacted_url(),
                            "SLOWLOG GET",
                            &ServerKind::NoPerm,
                            &format!("NOPERM {}", e.details().unwrap_or_default()),
                        )));
                    }
                }
                reply => {
                    if self.slowlog_refused_until.take().is_some() {
                        notices.push(Notice::Allowed);
                    }
                    let first = reply
                        .with_context(|| format!("SLOWLOG GET {slowlog_ask} reply"))
                        .and_then(parse_slowlog)
                        .map_err(ProbeError::Failed)?;
                    // This pipeline's INFO says whether the ids started again.
                    if self.slowlog.restarted(&snapshot.info) {
                        self.sections.forget();
                    }
                    let mut source = Rereads {
                        conn: &mut self.conn,
                        waiting: &mut self.waiting,
                    };
                    let mut entries = self
                        .slowlog
                        .read(slowlog_ask, first, &mut notices, &mut source)
                        .await
                        .map_err(ProbeError::Failed)?;
                    entries.retain(|e| !self.conn.is_own(&e.client_addr, &e.client_name));
                    snapshot.slowlog = Some(entries);
                }
            }
        }
        snapshot.notices = notices;
        Ok(snapshot)
    }

    fn query_error(&mut self, e: QueryError, what: &str) -> ProbeError {
        match e.kind.clone() {
            _ if e.link_down => ProbeError::Unreachable(e.into()),
            Some(kind) if kind.is_refusal() => {
                // Wording only: the code is named once, in front when the
                // message does not show it already.
                let code = kind.code();
                let message = if e.message.contains(code) {
                    e.message
                } else {
                    format!("{code} ({})", e.message)
                };
                self.refused(what, kind, &message)
            }
            _ => ProbeError::Failed(e.into()),
        }
    }

    fn server_error(&self, e: &redis::ServerError, what: &str) -> ProbeError {
        let message = reply_line(e);
        match ServerKind::from(e) {
            kind if kind.is_refusal() => self.refused(what, kind, &message),
            _ => ProbeError::Failed(anyhow::anyhow!("{what}: server error: {message}")),
        }
    }

    /// `what` refused with `kind`: [`ProbeError::Refused`] with the fix.
    fn refused(&self, what: &str, kind: ServerKind, message: &str) -> ProbeError {
        ProbeError::Refused {
            reason: refusal(&self.conn.redacted_url(), what, &kind, message),
            kind,
        }
    }
}

/// A poll's SLOWLOG re-reads on the watched connection, each said in
/// `waiting` first so an overdue poll names it.
struct Rereads<'a> {
    conn: &'a mut Conn,
    waiting: &'a mut Waiting,
}

impl Reread for Rereads<'_> {
    async fn get(&mut self, n: u64) -> anyhow::Result<Vec<SlowEntry>> {
        *self.waiting = Waiting::Slowlog(n);
        let mut get = redis::pipe();
        get.cmd("SLOWLOG").arg("GET").arg(n);
        let replies = self.conn.query(&get).await.context("SLOWLOG GET")?;
        parse_slowlog(replies.first().context("SLOWLOG GET reply")?)
    }
}

/// A text reply as a string, taking its bytes rather than copying them
/// when they are UTF-8.
fn owned_text(value: Option<Value>) -> anyhow::Result<String> {
    match value {
        Some(Value::BulkString(bytes)) => Ok(String::from_utf8(bytes)
            .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())),
        other => text(other.as_ref()),
    }
}

/// Why `what` was refused (`kind`, said in `message`), and the fix.
fn refusal(url: &str, what: &str, kind: &ServerKind, message: &str) -> String {
    let fix = if kind.is_auth() {
        "check the user and password in the URL"
    } else {
        "grant the command to this user (docs/tls.md: ACL rules)"
    };
    format!("redis at {url} refused {what}: {message}; {fix}")
}

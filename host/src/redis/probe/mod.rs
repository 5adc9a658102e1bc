//! The per-poll probes (PING, INFO, incremental SLOWLOG) that build a
//! snapshot of the watched Redis.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use redis::Value;

use super::conn::{Conn, QueryError, text};
use super::declared::{Answer, Ask, is_noperm};
use super::error::{ServerKind, reply_line};

mod info;
mod slowlog;
mod snapshot;

pub use info::parse_info;
use info::{Sections, parse_info_kept};
use slowlog::Slowlog;
pub use slowlog::{SLOWLOG_REREADS, parse_slowlog};
pub use snapshot::{Gap, InfoField, Notice, Probes, SlowEntry, Snapshot};

/// How long a refused SLOWLOG stays switched off before it is tried again.
const REFUSED_RETRY: Duration = Duration::from_secs(60);

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
    /// A SLOWLOG read after PING answered.
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
    redial: Option<(super::endpoint::Endpoint, Duration, Duration)>,
    /// What the poll in progress waits for.
    waiting: Waiting,
    /// Where the SLOWLOG was read up to.
    slowlog: Slowlog,
    sections: Sections,
    /// SLOWLOG was refused; not asked again before then.
    slowlog_refused_until: Option<Instant>,
    /// Declared probes refused for this user (NOPERM): answered with the
    /// refusal, not asked again before the instant.
    held: std::collections::HashMap<Ask, (Instant, Answer)>,
    /// CONFIG GET (for latency-monitor-threshold) refused; not asked again
    /// before then.
    config_refused_until: Option<Instant>,
    /// `cluster_enabled` from the last INFO that showed it: CLUSTER INFO is
    /// not sent to a server without cluster support (its error reply would
    /// count in the server's error statistics every poll).
    cluster_enabled: Option<bool>,
    /// XINFO probes whose key did not exist or held another type, with that
    /// answer: TYPE is sent instead (it cannot fail on a missing key, so
    /// the server's error statistics do not grow every poll) until the key
    /// holds a stream.
    absent: std::collections::HashMap<Ask, Answer>,
    /// TYPE was refused; XINFO is sent every poll before then.
    type_refused_until: Option<Instant>,
    /// `connected_clients` from the last INFO that showed it: CLIENT LIST
    /// is not sent while it is over `max_clients_listed`.
    connected_clients: Option<u64>,
    /// Most clients a CLIENT LIST may list (`limits.max_clients_listed`).
    max_clients_listed: u64,
    /// A CLIENT LIST listed more than `max_clients_listed` although INFO
    /// said fewer: not sent again before then.
    client_list_over_until: Option<Instant>,
}

/// Default of `limits.max_clients_listed`.
pub const MAX_CLIENTS_LISTED: u64 = 10_000;

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
            held: std::collections::HashMap::new(),
            config_refused_until: None,
            cluster_enabled: None,
            absent: std::collections::HashMap::new(),
            type_refused_until: None,
            connected_clients: None,
            max_clients_listed: MAX_CLIENTS_LISTED,
            client_list_over_until: None,
        }
    }

    /// CLIENT LIST is skipped while the server has more than `max`
    /// clients connected (`limits.max_clients_listed`).
    #[must_use]
    pub fn with_max_clients_listed(mut self, max: u64) -> Self {
        self.max_clients_listed = max;
        self
    }

    /// Why CLIENT LIST is not sent this poll, if it is not.
    fn client_list_skipped(&self, now: Instant) -> Option<String> {
        let max = self.max_clients_listed;
        if let Some(n) = self.connected_clients.filter(|&n| n > max) {
            return Some(format!(
                "CLIENT LIST skipped: {n} clients connected, over limits.max_clients_listed \
                 ({max}); raise it to read them"
            ));
        }
        self.client_list_over_until
            .is_some_and(|until| now < until)
            .then(|| {
                format!(
                    "CLIENT LIST skipped: it listed more than limits.max_clients_listed ({max}) \
                     clients; asked again in a minute"
                )
            })
    }

    /// Dials `endpoint` afresh (with these timeouts) after a poll cut off by
    /// [`Self::poll_within`], so no late reply is taken for a new one.
    #[must_use]
    pub fn with_redial(
        mut self,
        endpoint: super::endpoint::Endpoint,
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
                "redis at {}: cannot prepare a fresh connection after a poll was cut off                  ({e:#}); the old one is kept",
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
        self.sections.fields = fields.into_iter().collect();
        self.sections.sections = sections.into_iter().collect();
    }

    /// PINGs and runs the requested INFO and SLOWLOG GET 1 in one
    /// pipeline, then fetches new SLOWLOG entries if there are any.
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
            for section in sections.iter().flatten() {
                info.arg(section);
            }
        }
        if probes.slowlog {
            pipe.cmd("SLOWLOG").arg("GET").arg(1);
        }
        let now = Instant::now();
        self.held.retain(|_, (until, _)| now < *until);
        let config = self.config_refused_until.is_none_or(|until| now >= until);
        let typed = self.type_refused_until.is_none_or(|until| now >= until);
        let asked: Vec<Sent> = probes
            .asks
            .iter()
            .map(|ask| {
                let skip = self.held.contains_key(ask)
                    || (*ask == Ask::ClusterInfo && self.cluster_enabled == Some(false))
                    || (*ask == Ask::ClientList && self.client_list_skipped(now).is_some());
                if skip {
                    Sent::Nothing
                } else if typed && self.absent.contains_key(ask) {
                    pipe.cmd("TYPE").arg(ask.key());
                    Sent::Type
                } else {
                    Sent::Probe(ask.add_to(&mut pipe, config))
                }
            })
            .collect();
        self.waiting = Waiting::Pipeline(if self.conn.is_connected() {
            "no reply to PING within it".to_owned()
        } else {
            "not connected within it".to_owned()
        });
        let replies = self
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
                let answer = if *sent == Sent::Type {
                    self.typed(ask, replies.first(), now)
                } else {
                    self.answer(ask, replies, config, now)
                };
                (ask.clone(), answer)
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
                if sections.is_some() {
                    // Refused, perhaps by an older server after a restart:
                    // the whole INFO next time.
                    self.sections.forget();
                }
                return Err(self.server_error(e, "INFO"));
            }
            let info_text = text(replies.get(1))
                .context("INFO reply")
                .map_err(ProbeError::Failed)?;
            if sections.is_none() {
                snapshot.info = parse_info(&info_text);
                self.sections.learn(&snapshot.info);
            } else {
                // INFO cut down to the sections read: keep only what the
                // watchers declared (and `run_id`), not every field.
                let wanted = &self.sections;
                snapshot.info = parse_info_kept(&info_text, |section, name| {
                    name == "run_id"
                        || name == "cluster_enabled"
                        || name == "connected_clients"
                        || wanted.sections.contains(section)
                        || wanted.fields.contains(name)
                });
            }
        }
        if let Some(enabled) = snapshot.info.iter().find(|f| f.name == "cluster_enabled") {
            self.cluster_enabled = Some(enabled.value.trim() == "1");
        }
        if let Some(n) = snapshot.info.iter().find(|f| f.name == "connected_clients") {
            self.connected_clients = n.value.trim().parse().ok();
        }
        if snapshot.probes.slowlog {
            match replies.get(2) {
                Some(Value::ServerError(e)) if ServerKind::from(e) == ServerKind::NoPerm => {
                    let first = self
                        .slowlog_refused_until
                        .replace(Instant::now() + REFUSED_RETRY)
                        .is_none();
                    snapshot.probes.slowlog = false;
                    if first {
                        notices.push(Notice::SlowlogRefused(refusal(
                            &self.conn.redacted_url(),
                            "SLOWLOG GET",
                            &ServerKind::NoPerm,
                            &format!("NOPERM {}", e.details().unwrap_or_default()),
                        )));
                    }
                }
                reply => {
                    if self.slowlog_refused_until.take().is_some() {
                        notices.push(Notice::SlowlogAllowed);
                    }
                    let newest = parse_slowlog(
                        reply
                            .context("SLOWLOG GET 1 reply")
                            .map_err(ProbeError::Failed)?,
                    )
                    .map_err(ProbeError::Failed)?
                    .first()
                    .map(|e| e.id);
                    if self.slowlog.restarted(&snapshot.info) {
                        self.sections.forget();
                    }
                    let waiting = &mut self.waiting;
                    let entries = self
                        .slowlog
                        .read(&mut self.conn, newest, &mut notices, |ask| {
                            *waiting = Waiting::Slowlog(ask);
                        })
                        .await
                        .map_err(ProbeError::Failed)?;
                    snapshot.slowlog = Some(entries);
                }
            }
        }
        snapshot.notices = notices;
        Ok(snapshot)
    }

    /// What a declared probe read: its replies, or the held refusal or
    /// the cluster-less server when it was not sent.
    fn answer(&mut self, ask: &Ask, replies: &[Value], config: bool, now: Instant) -> Answer {
        if replies.is_empty() {
            if let Some((_, answer)) = self.held.get(ask) {
                return answer.clone();
            }
            if *ask == Ask::ClusterInfo {
                return Answer::Unavailable(
                    "cluster support is disabled on this server (cluster_enabled:0)".to_owned(),
                );
            }
            if let Some(why) = self
                .client_list_skipped(now)
                .filter(|_| *ask == Ask::ClientList)
            {
                return Answer::Unavailable(why);
            }
            return Answer::Unavailable(format!("{}: no reply", ask.command()));
        }
        if config && *ask == Ask::LatencyLatest && is_noperm(replies.get(1)) {
            self.config_refused_until = Some(now + REFUSED_RETRY);
        }
        let mut answer = ask.answer(replies);
        if let Answer::Clients(listed) = &answer
            && u64::try_from(listed.len()).unwrap_or(u64::MAX) > self.max_clients_listed
        {
            // The reading is dropped. When the last INFO said fewer (a server
            // that lies, or a crowd come at once), the list is not asked for a
            // while; otherwise INFO, read in this poll, decides the next one.
            if self
                .connected_clients
                .is_some_and(|n| n <= self.max_clients_listed)
            {
                self.client_list_over_until = Some(now + REFUSED_RETRY);
            }
            answer = Answer::Unavailable(format!(
                "CLIENT LIST listed {} clients, over limits.max_clients_listed ({}); raise it \
                 to read them",
                listed.len(),
                self.max_clients_listed
            ));
        }
        if is_noperm(replies.first()) {
            self.held
                .insert(ask.clone(), (now + REFUSED_RETRY, answer.clone()));
        } else if is_absent(ask, replies.first()) {
            self.absent.insert(ask.clone(), answer.clone());
        }
        answer
    }

    /// What a held-back XINFO probe reads from the TYPE of its key: still
    /// the held answer while the key is missing or not a stream (a new
    /// answer when it changed type), and the held answer one last time when
    /// it holds a stream again (XINFO reads it from the next poll on).
    fn typed(&mut self, ask: &Ask, reply: Option<&Value>, now: Instant) -> Answer {
        let Some(held) = self.absent.get(ask).cloned() else {
            return Answer::Unavailable(format!("{}: no reply", ask.command()));
        };
        if is_noperm(reply) {
            self.type_refused_until = Some(now + REFUSED_RETRY);
        }
        match reply.map(|r| text(Some(r))) {
            Some(Ok(kind)) if kind == "none" => {
                let answer = Answer::Unavailable(format!("{}: ERR no such key", ask.command()));
                self.absent.insert(ask.clone(), answer.clone());
                answer
            }
            Some(Ok(kind)) if kind != "stream" => {
                // Redis's own words, as XINFO would have said.
                let answer = Answer::Unavailable(format!(
                    "{}: WRONGTYPE Operation against a key holding the wrong kind of value",
                    ask.command()
                ));
                self.absent.insert(ask.clone(), answer.clone());
                answer
            }
            _ => {
                // A stream now, or TYPE failed: XINFO again next poll.
                self.absent.remove(ask);
                held
            }
        }
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

/// What was sent for one declared probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sent {
    /// Nothing: a held refusal, or CLUSTER INFO to a server without cluster.
    Nothing,
    /// The probe's commands, so many replies.
    Probe(usize),
    /// TYPE of a key that was missing or not a stream.
    Type,
}

impl Sent {
    fn replies(self) -> usize {
        match self {
            Sent::Nothing => 0,
            Sent::Probe(n) => n,
            Sent::Type => 1,
        }
    }
}

/// Whether an XINFO probe failed because its key is missing or holds
/// another type: an answer the key's TYPE can keep up to date.
fn is_absent(ask: &Ask, reply: Option<&Value>) -> bool {
    matches!(ask, Ask::XinfoGroups(_) | Ask::XinfoStream(_))
        && matches!(
            ServerKind::of_reply(reply),
            Some(ServerKind::WrongType | ServerKind::NoSuchKey)
        )
}

/// Why `what` was refused (`kind`, said in `message`), and the fix.
fn refusal(url: &str, what: &str, kind: &ServerKind, message: &str) -> String {
    let fix = if kind.is_auth() {
        "check the user and password in the URL"
    } else {
        "grant the command to this user (README: ACL rules)"
    };
    format!("redis at {url} refused {what}: {message}; {fix}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_missing_or_mistyped_stream_key_is_held_for_type() {
        let error = |text: &str| redis::parse_redis_value(text.as_bytes()).unwrap();
        let groups = Ask::XinfoGroups("jobs".into());
        assert!(is_absent(&groups, Some(&error("-ERR no such key\r\n"))));
        assert!(is_absent(
            &Ask::XinfoStream("jobs".into()),
            Some(&error("-WRONGTYPE Operation against a key\r\n"))
        ));
        assert!(!is_absent(&groups, Some(&error("-NOPERM no\r\n"))));
        assert!(!is_absent(
            &groups,
            Some(&error("-MOVED 1 127.0.0.1:7000\r\n"))
        ));
        assert!(!is_absent(
            &groups,
            Some(&error("-ERR unknown command\r\n"))
        ));
        assert!(!is_absent(
            &Ask::ClientList,
            Some(&error("-ERR no such key\r\n"))
        ));
        assert_eq!(
            [Sent::Nothing, Sent::Probe(2), Sent::Type].map(Sent::replies),
            [0, 2, 1]
        );
    }
}

//! The declared probes within a poll: what is sent for each (its
//! commands, TYPE of a key that was missing, or nothing while it is held
//! back) and what each read (CLIENT LIST without this process's own
//! connections), with what the prober keeps between polls (refusals,
//! missing keys, CLIENT LIST over its limit).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use redis::Value;

use super::snapshot::InfoField;
use crate::redis::conn::{is_own_client, text};
use crate::redis::declared::{Answer, Ask, is_noperm};
use crate::redis::error::ServerKind;

/// How long a refused probe (SLOWLOG, a declared probe, the CONFIG GET of
/// LATENCY LATEST, TYPE) stays switched off before it is tried again.
pub(super) const REFUSED_RETRY: Duration = Duration::from_secs(60);

/// Default of `limits.max_clients_listed`.
pub(crate) const MAX_CLIENTS_LISTED: u64 = 10_000;

/// What the declared probes hold back between polls of one server.
pub(super) struct Asks {
    /// Declared probes refused for this user (NOPERM): answered with the
    /// refusal, not asked again before the instant.
    held: HashMap<Ask, (Instant, Answer)>,
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
    absent: HashMap<Ask, Answer>,
    /// TYPE was refused; XINFO is sent every poll before then.
    type_refused_until: Option<Instant>,
    /// `connected_clients` from the last INFO that showed it: CLIENT LIST
    /// is not sent while it is over `max_clients_listed`.
    connected_clients: Option<u64>,
    /// Most clients a CLIENT LIST may list (`limits.max_clients_listed`).
    pub(super) max_clients_listed: u64,
    /// A CLIENT LIST listed more than `max_clients_listed` although INFO
    /// said fewer: not sent again before then.
    client_list_over_until: Option<Instant>,
}

impl Default for Asks {
    fn default() -> Self {
        Self {
            held: HashMap::new(),
            config_refused_until: None,
            cluster_enabled: None,
            absent: HashMap::new(),
            type_refused_until: None,
            connected_clients: None,
            max_clients_listed: MAX_CLIENTS_LISTED,
            client_list_over_until: None,
        }
    }
}

/// One poll's view of what is held back: its instant, and whether
/// CONFIG GET and TYPE may be sent.
#[derive(Debug, Clone, Copy)]
pub(super) struct Round {
    now: Instant,
    config: bool,
    typed: bool,
}

impl Asks {
    /// Starts a poll at `now`: refusals held past their time are dropped.
    pub(super) fn round(&mut self, now: Instant) -> Round {
        self.held.retain(|_, (until, _)| now < *until);
        Round {
            now,
            config: self.config_refused_until.is_none_or(|until| now >= until),
            typed: self.type_refused_until.is_none_or(|until| now >= until),
        }
    }

    /// Takes `cluster_enabled` and `connected_clients` from this poll's
    /// INFO, for the next poll's CLUSTER INFO and CLIENT LIST.
    pub(super) fn learn(&mut self, info: &[InfoField]) {
        if let Some(enabled) = info.iter().find(|f| f.name == "cluster_enabled") {
            self.cluster_enabled = Some(enabled.value.trim() == "1");
        }
        if let Some(n) = info.iter().find(|f| f.name == "connected_clients") {
            self.connected_clients = n.value.trim().parse().ok();
        }
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

    /// Adds to `pipe` what `ask` sends this poll: nothing while it is held
    /// back (a refusal, CLUSTER INFO to a server without cluster, CLIENT
    /// LIST over its limit), TYPE of its key while that key was missing or
    /// not a stream (unless TYPE is refused), otherwise its own commands
    /// (CONFIG GET among them unless refused).
    pub(super) fn send(&self, ask: &Ask, pipe: &mut redis::Pipeline, round: Round) -> Sent {
        let skip = self.held.contains_key(ask)
            || (*ask == Ask::ClusterInfo && self.cluster_enabled == Some(false))
            || (*ask == Ask::ClientList && self.client_list_skipped(round.now).is_some());
        if skip {
            Sent::Nothing
        } else if round.typed && self.absent.contains_key(ask) {
            pipe.cmd("TYPE").arg(ask.key());
            Sent::Type
        } else {
            Sent::Probe(ask.add_to(pipe, round.config))
        }
    }

    /// What a declared probe read, given what was [`Self::send`] for it and
    /// its `replies`.
    pub(super) fn read(
        &mut self,
        ask: &Ask,
        sent: Sent,
        replies: &[Value],
        round: Round,
    ) -> Answer {
        if sent == Sent::Type {
            self.typed(ask, replies.first(), round.now)
        } else {
            self.answer(ask, replies, round.config, round.now)
        }
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
        if let Answer::Clients(listed) = &mut answer {
            listed.retain(|client| !is_ours(client));
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
}

/// What was sent for one declared probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Sent {
    /// Nothing: a held refusal, or CLUSTER INFO to a server without cluster.
    Nothing,
    /// The probe's commands, so many replies.
    Probe(usize),
    /// TYPE of a key that was missing or not a stream.
    Type,
}

impl Sent {
    pub(super) fn replies(self) -> usize {
        match self {
            Sent::Nothing => 0,
            Sent::Probe(n) => n,
            Sent::Type => 1,
        }
    }
}

/// Whether a CLIENT LIST line is one of this process's own connections
/// (watched or bus): its `id` and `addr` are those its CLIENT INFO gave on
/// the server it reached (`laddr`). Left out of the reading, so no watcher
/// reports the daemon itself; a client that only names itself `lookout` is
/// an ordinary client.
fn is_ours(client: &[(String, String)]) -> bool {
    let field = |key: &str| {
        client
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    };
    match (
        field("id").and_then(|id| id.parse().ok()),
        field("addr"),
        field("laddr"),
    ) {
        (Some(id), Some(addr), Some(laddr)) => is_own_client(laddr, id, addr),
        _ => false,
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

#[cfg(test)]
mod tests {
    use super::*;

    /// CLIENT LIST hands watchers every client but this process's own
    /// connections, known by id and address on their server; another
    /// client named `lookout` stays.
    #[test]
    fn own_connections_are_left_out_of_client_list() {
        crate::redis::conn::remember_own("10.7.0.1:6379", "10.7.0.9:50000", Some(41));
        let list = "id=41 addr=10.7.0.9:50000 laddr=10.7.0.1:6379 name=lookout cmd=client|list\n\
                    id=42 addr=10.7.0.8:50001 laddr=10.7.0.1:6379 name=lookout cmd=get\n\
                    id=41 addr=10.7.0.9:50000 laddr=10.7.0.2:6379 name=lookout cmd=get\n\
                    id=43 addr=10.7.0.7:50002 laddr=10.7.0.1:6379 name=app cmd=set\n";
        let replies = [Value::BulkString(list.as_bytes().to_vec())];
        let mut asks = Asks::default();
        let answer = asks.answer(&Ask::ClientList, &replies, false, Instant::now());
        let Answer::Clients(clients) = answer else {
            panic!("{answer:?}");
        };
        let ids: Vec<(&str, &str)> = clients
            .iter()
            .map(|c| {
                let get = |k: &str| c.iter().find(|(key, _)| key == k).unwrap().1.as_str();
                (get("id"), get("laddr"))
            })
            .collect();
        assert_eq!(
            ids,
            [
                ("42", "10.7.0.1:6379"),
                ("41", "10.7.0.2:6379"),
                ("43", "10.7.0.1:6379")
            ]
        );
    }

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

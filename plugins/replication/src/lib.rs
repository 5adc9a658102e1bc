//! The `replication` watcher: INFO replication, on masters and replicas.
//!
//! It reports, each once when it starts and once when it ends:
//!
//! - **master link down** (a replica whose `master_link_status` is not
//!   `up`): error on entering, with how long the link has been down
//!   (`master_link_down_since_seconds`, when Redis prints it) and the
//!   master's address; info when the link is up again (or the instance is no
//!   longer a replica), with the outage length;
//! - **connected replicas dropping** (`connected_slaves` lower than at the
//!   previous poll): warn with the counts and the replica addresses that went
//!   (from the `slaveN` lines); a further drop while still below warns again
//!   (state `changed`); info once `connected_slaves` is back to the count
//!   before the first drop;
//! - **too few replicas** (`min_replicas` > 0, on a master, and
//!   `connected_slaves` below it): warn / info;
//! - **replica behind** (on a master, an online replica whose `offset` is
//!   more than `max_offset_lag` bytes behind `master_repl_offset`): warn /
//!   info per replica `ip:port`; a replica that disconnects while behind
//!   ends its condition too.
//!
//! And once per change, **role changes** (master to replica or back, a
//! failover, or a replica following another master): warn, state
//! `changed`.
//!
//! The first poll only sets the baselines of the comparisons (role, replica
//! count); the conditions are judged on every poll, the first included. A
//! restart (a new `run_id`) resets the replica-count baseline without
//! reporting a drop; a drop still open then ends with an info. Missing or
//! unparseable fields (older Redis) disable the checks that need them for
//! that poll, without events.
//!
//! The event starting each condition fires it and the one ending it
//! resolves it: `master-link-down` (key `master_link_status`),
//! `replicas-dropped` (key `connected_slaves`; a further drop, state
//! `changed`, carries no condition), `too-few-replicas` (key
//! `min_replicas`) and `replica-behind` (key: the replica's `ip:port`).
//! Role changes carry none.

use lookout_watcher::format::bytes;
use lookout_watcher::{
    Cadence, Conditions, ConfigKey, Event, Level, Manifest, Needs, Restarts, Setting, Settings,
    Snapshot, Watch, invalid,
};

lookout_watcher::export!(Replication);

/// The watcher's name, the envelopes' `target`.
pub const NAME: &str = "replication";
/// Default of `max_offset_lag`, bytes (1 MiB).
pub const DEFAULT_MAX_OFFSET_LAG: i64 = 1_048_576;
/// Default of `min_replicas`: 0, the check is off.
pub const DEFAULT_MIN_REPLICAS: i64 = 0;
/// The INFO section read whole.
pub const SECTION: &str = "replication";

/// Validated settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    /// A replica more than this many bytes behind `master_repl_offset` is
    /// behind.
    pub max_offset_lag: u64,
    /// A master with fewer connected replicas than this is reported; 0 for
    /// no check.
    pub min_replicas: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_offset_lag: DEFAULT_MAX_OFFSET_LAG as u64,
            min_replicas: DEFAULT_MIN_REPLICAS as u64,
        }
    }
}

impl Config {
    /// Reads and checks the settings handed to `configure`; the error names
    /// the offending key.
    pub fn from_settings(settings: &[Setting]) -> Result<Self, String> {
        let s = Settings::new(settings);
        let max_offset_lag = s.integer("max_offset_lag", DEFAULT_MAX_OFFSET_LAG)?;
        let max_offset_lag = u64::try_from(max_offset_lag)
            .map_err(|_| invalid("max_offset_lag", ">= 0", max_offset_lag))?;
        let min_replicas = s.integer("min_replicas", DEFAULT_MIN_REPLICAS)?;
        let min_replicas = u64::try_from(min_replicas)
            .map_err(|_| invalid("min_replicas", ">= 0", min_replicas))?;
        Ok(Config {
            max_offset_lag,
            min_replicas,
        })
    }
}

/// One `slaveN` line of a master's INFO replication:
/// `ip=10.0.0.7,port=6379,state=online,offset=1234,lag=0`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaLine {
    /// `ip:port` (`[ip]:port` for IPv6).
    pub addr: String,
    /// `state`: `online`, `wait_bgsave`, `send_bulk`...; empty when absent.
    pub state: String,
    /// `offset`, the replication offset the replica acknowledged.
    pub offset: Option<u64>,
    /// `lag`, seconds since the replica's last acknowledgement.
    pub lag_s: Option<u64>,
}

impl ReplicaLine {
    /// Parses a `slaveN` value; `None` without `ip` and `port`.
    pub fn parse(value: &str) -> Option<Self> {
        let (mut ip, mut port, mut state, mut offset, mut lag_s) = (None, None, "", None, None);
        for part in value.trim().split(',') {
            let Some((key, v)) = part.split_once('=') else {
                continue;
            };
            match key.trim() {
                "ip" => ip = Some(v.trim()),
                "port" => port = Some(v.trim()),
                "state" => state = v.trim(),
                "offset" => offset = v.trim().parse().ok(),
                "lag" => lag_s = v.trim().parse().ok(),
                _ => {}
            }
        }
        let (ip, port) = (ip?, port?);
        Some(ReplicaLine {
            addr: host_port(ip, port),
            state: state.to_string(),
            offset,
            lag_s,
        })
    }
}

/// The `slaveN` lines of `snapshot`, in INFO order; malformed ones skipped.
pub fn replica_lines(snapshot: &Snapshot) -> Vec<ReplicaLine> {
    snapshot
        .info
        .iter()
        .filter(|f| f.section == SECTION && is_slave_line(&f.name))
        .filter_map(|f| ReplicaLine::parse(&f.value))
        .collect()
}

/// `slave0`, `slave12`: yes; `slave_repl_offset`, `slave_priority`: no.
fn is_slave_line(name: &str) -> bool {
    name.strip_prefix("slave")
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// `10.0.0.5:6379`, or `[::1]:6379` for an IPv6 host.
fn host_port(host: &str, port: &str) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// The role and, on a replica, its master's address.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Role {
    /// `role` as INFO prints it: `master` or `slave`.
    name: String,
    /// `master_host:master_port` on a replica; `None` on a master or when
    /// the fields are missing.
    master: Option<String>,
}

impl Role {
    fn read(snapshot: &Snapshot) -> Option<Self> {
        let name = snapshot.info_str("role").ok()?.to_string();
        if name.is_empty() {
            return None;
        }
        let master = if name == "master" {
            None
        } else {
            match (
                snapshot.info_str("master_host"),
                snapshot.info_str("master_port"),
            ) {
                (Ok(host), Ok(port)) => Some(host_port(host, port)),
                _ => None,
            }
        };
        Some(Role { name, master })
    }

    fn is_master(&self) -> bool {
        self.name == "master"
    }

    fn is_replica(&self) -> bool {
        self.name == "slave"
    }

    /// "master", "replica of 10.0.0.5:6379", "replica".
    fn describe(&self) -> String {
        match (self.is_replica(), &self.master) {
            (true, Some(m)) => format!("replica of {m}"),
            (true, None) => "replica".to_string(),
            (false, _) => self.name.clone(),
        }
    }
}

/// An open master-link outage.
#[derive(Debug, Clone, PartialEq, Eq)]
struct LinkDown {
    /// `taken_at_ms` of the poll that first saw it.
    seen_at_ms: i64,
    /// Seconds it had been down by then, when Redis said.
    down_before_s: Option<u64>,
}

/// An open replica-count drop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Drop {
    /// `connected_slaves` before the first drop: the count to get back to.
    from: u64,
    /// `taken_at_ms` of the poll that saw the first drop.
    since_ms: i64,
}

/// The watcher's logic and state.
#[derive(Debug, Clone)]
pub struct Replication {
    config: Config,
    /// Tells a restart (a new `run_id`).
    restarts: Restarts,
    /// Role at the previous poll that had one.
    role: Option<Role>,
    /// `connected_slaves` and the replica addresses at the previous poll.
    replicas: Option<(u64, Vec<String>)>,
    link_down: Option<LinkDown>,
    drop: Option<Drop>,
    /// Since when (`taken_at_ms`) the master has had too few replicas.
    too_few_since: Option<i64>,
    /// Replicas behind, `ip:port` and since when, in the order they fell
    /// behind.
    behind: Vec<(String, i64)>,
    /// The conditions fired and resolved with the events above.
    conditions: Kinds,
}

/// One condition tracker per kind.
#[derive(Debug, Clone)]
struct Kinds {
    /// Keyed by `master_link_status`.
    link_down: Conditions<&'static str>,
    /// Keyed by `connected_slaves`.
    dropped: Conditions<&'static str>,
    /// Keyed by `min_replicas`.
    too_few: Conditions<&'static str>,
    /// Keyed by the replica's `ip:port`.
    behind: Conditions<String>,
}

/// Whole seconds from `from_ms` to `to_ms`, 0 when the clock went back.
fn seconds_between(from_ms: i64, to_ms: i64) -> u64 {
    u64::try_from(to_ms.saturating_sub(from_ms) / 1000).unwrap_or(0)
}

impl Replication {
    /// A watcher with no baselines yet.
    pub fn new(config: Config) -> Self {
        Replication {
            config,
            restarts: Restarts::new(),
            role: None,
            replicas: None,
            link_down: None,
            drop: None,
            too_few_since: None,
            behind: Vec::new(),
            conditions: Kinds {
                link_down: Conditions::new("master-link-down"),
                dropped: Conditions::new("replicas-dropped"),
                too_few: Conditions::new("too-few-replicas"),
                behind: Conditions::new("replica-behind"),
            },
        }
    }

    /// Whether a master-link outage is open.
    pub fn link_is_down(&self) -> bool {
        self.link_down.is_some()
    }

    /// Whether a replica-count drop is open.
    pub fn replicas_dropped(&self) -> bool {
        self.drop.is_some()
    }

    /// Whether the master has had fewer replicas than `min_replicas`.
    pub fn too_few_replicas(&self) -> bool {
        self.too_few_since.is_some()
    }

    /// The replicas currently reported behind, `ip:port`, in the order
    /// they fell behind.
    pub fn replicas_behind(&self) -> Vec<&str> {
        self.behind.iter().map(|(a, _)| a.as_str()).collect()
    }

    fn observe_role(&mut self, role: Option<&Role>, events: &mut Vec<Event>) {
        let Some(role) = role else {
            return;
        };
        let mut role = role.clone();
        if let Some(old) = &self.role
            && role.master.is_none()
            && old.name == role.name
        {
            // The address fields are missing this poll: not a change.
            role.master.clone_from(&old.master);
        }
        let Some(old) = self.role.replace(role.clone()) else {
            return;
        };
        if old == role {
            return;
        }
        let msg = if old.name == role.name {
            format!(
                "replica now follows master {} (was {})",
                role.master.as_deref().unwrap_or("unknown"),
                old.master.as_deref().unwrap_or("unknown")
            )
        } else {
            format!(
                "role changed from {} to {} (failover)",
                old.describe(),
                role.describe()
            )
        };
        let mut e = Event::new(Level::Warn, msg)
            .field("old_role", old.name.as_str())
            .field("new_role", role.name.as_str());
        if let Some(m) = &old.master {
            e = e.field("old_master", m.as_str());
        }
        if let Some(m) = &role.master {
            e = e.field("new_master", m.as_str());
        }
        events.push(e.field("state", "changed"));
    }

    fn observe_link(&mut self, snapshot: &Snapshot, role: Option<&Role>, events: &mut Vec<Event>) {
        let now = snapshot.taken_at_ms;
        let master = role
            .and_then(|r| r.master.clone())
            .unwrap_or_else(|| "unknown master".to_string());
        // Only a replica has a link; a missing status says nothing.
        let down = match role {
            Some(r) if r.is_replica() => match snapshot.info_str("master_link_status") {
                Ok(status) => Some(status != "up"),
                Err(_) => None,
            },
            Some(_) => Some(false),
            None => None,
        };
        match (self.link_down.as_ref(), down) {
            (None, Some(true)) => {
                // -1: the link was never up since the replica started.
                let down_before_s = snapshot
                    .info_i64("master_link_down_since_seconds")
                    .ok()
                    .and_then(|s| u64::try_from(s).ok());
                let syncing = snapshot.info_u64("master_sync_in_progress").ok() == Some(1);
                let status = snapshot.info_str("master_link_status").unwrap_or("down");
                let mut msg = match down_before_s {
                    Some(s) => format!("replica link to {master} down for {s} s"),
                    None => format!("replica link to {master} down"),
                };
                if syncing {
                    msg.push_str(" (sync with the master in progress)");
                }
                let mut e = Event::new(Level::Error, msg).field("master", master.as_str());
                if let Some(s) = down_before_s {
                    e = e.field("down_for_s", s);
                }
                let e = e
                    .field("master_link_status", status)
                    .field("sync_in_progress", syncing)
                    .field("state", "entered");
                events.extend(
                    self.conditions
                        .link_down
                        .observe("master_link_status", true, |_| e),
                );
                self.link_down = Some(LinkDown {
                    seen_at_ms: now,
                    down_before_s,
                });
            }
            (Some(open), Some(false)) => {
                let down_for_s = open
                    .down_before_s
                    .unwrap_or(0)
                    .saturating_add(seconds_between(open.seen_at_ms, now));
                let msg = if role.is_some_and(Role::is_replica) {
                    format!("replica link to {master} up again after {down_for_s} s")
                } else {
                    format!(
                        "replica link no longer down: the instance is now a master, after {down_for_s} s"
                    )
                };
                let e = Event::new(Level::Info, msg)
                    .field("master", master.as_str())
                    .field("down_for_s", down_for_s)
                    .field("state", "left");
                events.extend(self.conditions.link_down.observe(
                    "master_link_status",
                    false,
                    |_| e,
                ));
                self.link_down = None;
            }
            _ => {}
        }
    }

    fn observe_count(
        &mut self,
        snapshot: &Snapshot,
        restarted: bool,
        lines: &[ReplicaLine],
        events: &mut Vec<Event>,
    ) {
        let Ok(count) = snapshot.info_u64("connected_slaves") else {
            return;
        };
        let now = snapshot.taken_at_ms;
        let addrs: Vec<String> = lines.iter().map(|l| l.addr.clone()).collect();
        let previous = self.replicas.replace((count, addrs.clone()));
        if restarted {
            // A new baseline: connections are gone after a restart, which
            // is not a drop.
            if let Some(open) = self.drop.take() {
                let msg = format!(
                    "connected replicas watch reset: the server restarted, {count} connected now (was {} before the drop)",
                    open.from
                );
                let e = Event::new(Level::Info, msg)
                    .field("previous", open.from)
                    .field("current", count)
                    .field("duration_s", seconds_between(open.since_ms, now))
                    .field("restarted", true)
                    .field("state", "left");
                events.extend(
                    self.conditions
                        .dropped
                        .observe("connected_slaves", false, |_| e),
                );
            }
            return;
        }
        let Some((before, before_addrs)) = previous else {
            return;
        };
        if count < before {
            let lost: Vec<&str> = before_addrs
                .iter()
                .filter(|a| !addrs.contains(a))
                .map(String::as_str)
                .collect();
            let gone = if lost.is_empty() {
                String::new()
            } else {
                format!(": {} gone", lost.join(", "))
            };
            let state = if self.drop.is_some() {
                "changed"
            } else {
                self.drop = Some(Drop {
                    from: before,
                    since_ms: now,
                });
                "entered"
            };
            let msg = format!("connected replicas dropped from {before} to {count}{gone}");
            let e = Event::new(Level::Warn, msg)
                .field("previous", before)
                .field("current", count)
                .field("lost", lost.join(","))
                .field("state", state);
            if state == "entered" {
                events.extend(
                    self.conditions
                        .dropped
                        .observe("connected_slaves", true, |_| e),
                );
            } else {
                events.push(e);
            }
        } else if let Some(open) = self.drop
            && count >= open.from
        {
            let duration_s = seconds_between(open.since_ms, now);
            let msg =
                format!("connected replicas back to {count} (from {before}) after {duration_s} s");
            let e = Event::new(Level::Info, msg)
                .field("previous", before)
                .field("current", count)
                .field("duration_s", duration_s)
                .field("restarted", false)
                .field("state", "left");
            events.extend(
                self.conditions
                    .dropped
                    .observe("connected_slaves", false, |_| e),
            );
            self.drop = None;
        }
    }

    fn observe_min(&mut self, snapshot: &Snapshot, role: Option<&Role>, events: &mut Vec<Event>) {
        let min = self.config.min_replicas;
        let now = snapshot.taken_at_ms;
        let count = snapshot.info_u64("connected_slaves").ok();
        // Judged on masters only; a replica or a check turned off ends it.
        let too_few = match (role, count) {
            (Some(r), _) if !r.is_master() => Some(false),
            (_, _) if min == 0 => Some(false),
            (Some(_), Some(n)) => Some(n < min),
            _ => None,
        };
        match (self.too_few_since, too_few) {
            (None, Some(true)) => {
                let n = count.unwrap_or(0);
                let msg = format!(
                    "master has {}, fewer than {min}",
                    lookout_watcher::format::count(n, "connected replica")
                );
                let e = Event::new(Level::Warn, msg)
                    .field("connected_slaves", n)
                    .field("min_replicas", min)
                    .field("state", "entered");
                events.extend(self.conditions.too_few.observe("min_replicas", true, |_| e));
                self.too_few_since = Some(now);
            }
            (Some(since), Some(false)) => {
                let duration_s = seconds_between(since, now);
                let msg = match (role.is_some_and(Role::is_master), count) {
                    (true, Some(n)) => format!(
                        "master has {} again (at least {min}) after {duration_s} s",
                        lookout_watcher::format::count(n, "connected replica")
                    ),
                    _ => format!(
                        "too few replicas no longer checked: the instance is not a master, after {duration_s} s"
                    ),
                };
                let mut e = Event::new(Level::Info, msg);
                if let Some(n) = count {
                    e = e.field("connected_slaves", n);
                }
                let e = e
                    .field("min_replicas", min)
                    .field("duration_s", duration_s)
                    .field("state", "left");
                events.extend(
                    self.conditions
                        .too_few
                        .observe("min_replicas", false, |_| e),
                );
                self.too_few_since = None;
            }
            _ => {}
        }
    }

    fn observe_lag(
        &mut self,
        snapshot: &Snapshot,
        role: Option<&Role>,
        lines: &[ReplicaLine],
        events: &mut Vec<Event>,
    ) {
        let now = snapshot.taken_at_ms;
        let max = self.config.max_offset_lag;
        let master_offset = snapshot.info_u64("master_repl_offset").ok();
        let is_master = match role {
            Some(r) => r.is_master(),
            None => return,
        };
        if is_master && master_offset.is_none() {
            return;
        }
        // Bytes behind per online replica with an offset.
        let mut lags: Vec<(&str, u64, u64)> = Vec::new();
        if let (true, Some(master_offset)) = (is_master, master_offset) {
            for line in lines.iter().filter(|l| l.state == "online") {
                if let Some(offset) = line.offset {
                    lags.push((&line.addr, offset, master_offset.saturating_sub(offset)));
                }
            }
        }
        let lag_of = |addr: &str| lags.iter().find(|l| l.0 == addr).map(|l| l.2);
        for &(addr, offset, lag) in &lags {
            if lag > max && !self.behind.iter().any(|(a, _)| a == addr) {
                let msg = format!(
                    "replica {addr} is {} behind the master (limit {})",
                    bytes(lag),
                    bytes(max)
                );
                let e = Event::new(Level::Warn, msg)
                    .field("replica", addr)
                    .field("lag_bytes", lag)
                    .field("offset", offset)
                    .field("master_repl_offset", master_offset.unwrap_or(0))
                    .field("max_offset_lag", max)
                    .field("state", "entered");
                events.extend(
                    self.conditions
                        .behind
                        .observe(addr.to_string(), true, |_| e),
                );
                self.behind.push((addr.to_string(), now));
            }
        }
        let (ended, still): (Vec<_>, Vec<_>) = std::mem::take(&mut self.behind)
            .into_iter()
            .partition(|(a, _)| lag_of(a).is_none_or(|lag| lag <= max));
        self.behind = still;
        for (addr, since) in ended {
            let duration_s = seconds_between(since, now);
            let mut e = match lag_of(&addr) {
                Some(lag) => Event::new(
                    Level::Info,
                    format!(
                        "replica {addr} caught up: {} behind after {duration_s} s",
                        bytes(lag)
                    ),
                )
                .field("replica", addr.as_str())
                .field("lag_bytes", lag),
                None if !is_master => Event::new(
                    Level::Info,
                    format!(
                        "replica {addr} no longer checked: the instance is not a master, after {duration_s} s behind"
                    ),
                )
                .field("replica", addr.as_str()),
                None => Event::new(
                    Level::Info,
                    format!(
                        "replica {addr} no longer online, after {duration_s} s behind the master"
                    ),
                )
                .field("replica", addr.as_str()),
            };
            e = e
                .field("max_offset_lag", max)
                .field("duration_s", duration_s)
                .field("state", "left");
            events.extend(self.conditions.behind.observe(addr, false, |_| e));
        }
    }
}

impl Watch for Replication {
    fn manifest() -> Manifest {
        Manifest {
            name: NAME.to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            description: "reports master link outages, role changes (failovers), replicas \
                          disconnecting or falling behind, and too few replicas"
                .to_string(),
            config: vec![
                ConfigKey::new(
                    "max_offset_lag",
                    DEFAULT_MAX_OFFSET_LAG,
                    "a replica more than this many bytes behind master_repl_offset is reported; at least 0",
                ),
                ConfigKey::new(
                    "min_replicas",
                    DEFAULT_MIN_REPLICAS,
                    "report a master with fewer connected replicas than this; 0 turns the check off, at least 0",
                ),
            ],
            needs: Needs::info(&["run_id"]).with_sections(&[SECTION]),
            cadence: Cadence::EveryPoll,
        }
    }

    fn from_settings(settings: &[Setting]) -> Result<Self, String> {
        Config::from_settings(settings).map(Replication::new)
    }

    fn observe(&mut self, snapshot: &Snapshot) -> Vec<Event> {
        let restarted = self.restarts.observe(snapshot);
        let role = Role::read(snapshot);
        let lines = replica_lines(snapshot);
        let mut events = Vec::new();
        self.observe_role(role.as_ref(), &mut events);
        self.observe_link(snapshot, role.as_ref(), &mut events);
        self.observe_count(snapshot, restarted, &lines, &mut events);
        self.observe_min(snapshot, role.as_ref(), &mut events);
        self.observe_lag(snapshot, role.as_ref(), &lines, &mut events);
        events
    }
}

#[cfg(test)]
mod tests;

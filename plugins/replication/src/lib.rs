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

use lookout_watcher::format::bytes;
use lookout_watcher::{
    Cadence, ConfigKey, Event, Level, Manifest, Needs, Setting, Settings, Snapshot, Watch, invalid,
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
    /// `run_id` of the previous poll; empty when Redis did not print it.
    run_id: Option<String>,
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
            run_id: None,
            role: None,
            replicas: None,
            link_down: None,
            drop: None,
            too_few_since: None,
            behind: Vec::new(),
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
                events.push(
                    e.field("master_link_status", status)
                        .field("sync_in_progress", syncing)
                        .field("state", "entered"),
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
                events.push(
                    Event::new(Level::Info, msg)
                        .field("master", master.as_str())
                        .field("down_for_s", down_for_s)
                        .field("state", "left"),
                );
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
                events.push(
                    Event::new(Level::Info, msg)
                        .field("previous", open.from)
                        .field("current", count)
                        .field("duration_s", seconds_between(open.since_ms, now))
                        .field("restarted", true)
                        .field("state", "left"),
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
            events.push(
                Event::new(Level::Warn, msg)
                    .field("previous", before)
                    .field("current", count)
                    .field("lost", lost.join(","))
                    .field("state", state),
            );
        } else if let Some(open) = self.drop
            && count >= open.from
        {
            let duration_s = seconds_between(open.since_ms, now);
            let msg =
                format!("connected replicas back to {count} (from {before}) after {duration_s} s");
            events.push(
                Event::new(Level::Info, msg)
                    .field("previous", before)
                    .field("current", count)
                    .field("duration_s", duration_s)
                    .field("restarted", false)
                    .field("state", "left"),
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
                let msg = format!("master has {n} connected replicas, fewer than {min}");
                events.push(
                    Event::new(Level::Warn, msg)
                        .field("connected_slaves", n)
                        .field("min_replicas", min)
                        .field("state", "entered"),
                );
                self.too_few_since = Some(now);
            }
            (Some(since), Some(false)) => {
                let duration_s = seconds_between(since, now);
                let msg = match (role.is_some_and(Role::is_master), count) {
                    (true, Some(n)) => format!(
                        "master has {n} connected replicas again (at least {min}) after {duration_s} s"
                    ),
                    _ => format!(
                        "too few replicas no longer checked: the instance is not a master, after {duration_s} s"
                    ),
                };
                let mut e = Event::new(Level::Info, msg);
                if let Some(n) = count {
                    e = e.field("connected_slaves", n);
                }
                events.push(
                    e.field("min_replicas", min)
                        .field("duration_s", duration_s)
                        .field("state", "left"),
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
                events.push(
                    Event::new(Level::Warn, msg)
                        .field("replica", addr)
                        .field("lag_bytes", lag)
                        .field("offset", offset)
                        .field("master_repl_offset", master_offset.unwrap_or(0))
                        .field("max_offset_lag", max)
                        .field("state", "entered"),
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
            events.push(e);
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
        let run_id = snapshot
            .info("run_id")
            .unwrap_or_default()
            .trim()
            .to_string();
        let restarted = self
            .run_id
            .replace(run_id.clone())
            .is_some_and(|old| old != run_id);
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
mod tests {
    use lookout_watcher::testing::{SnapshotBuilder, fields, setting};
    use lookout_watcher::{Guest, Value};

    use super::*;

    /// INFO replication of a redis-server 7.0.15 master with one replica
    /// online (the offsets and `connected_slaves` are replaced by `master`).
    const MASTER: &str = "\
# Replication
role:master
connected_slaves:1
slave0:ip=127.0.0.1,port=21380,state=online,offset=0,lag=1
master_failover_state:no-failover
master_replid:e73a1a4a66efe419a2b91c5b32ce0c05dc326956
master_replid2:0000000000000000000000000000000000000000
master_repl_offset:50
second_repl_offset:-1
repl_backlog_active:1
repl_backlog_size:1048576
repl_backlog_first_byte_offset:1
repl_backlog_histlen:50";

    /// INFO replication of a redis-server 7.0.15 replica, link up.
    const REPLICA_UP: &str = "\
# Replication
role:slave
master_host:127.0.0.1
master_port:21379
master_link_status:up
master_last_io_seconds_ago:0
master_sync_in_progress:0
slave_read_repl_offset:50
slave_repl_offset:50
slave_priority:100
slave_read_only:1
replica_announced:1
connected_slaves:0
master_failover_state:no-failover
master_replid:e73a1a4a66efe419a2b91c5b32ce0c05dc326956
master_replid2:0000000000000000000000000000000000000000
master_repl_offset:50
second_repl_offset:-1
repl_backlog_active:1
repl_backlog_size:1048576
repl_backlog_first_byte_offset:1
repl_backlog_histlen:50";

    /// The same replica 3 s after its master shut down.
    const REPLICA_DOWN: &str = "\
# Replication
role:slave
master_host:127.0.0.1
master_port:21379
master_link_status:down
master_last_io_seconds_ago:-1
master_sync_in_progress:0
slave_read_repl_offset:50
slave_repl_offset:50
master_link_down_since_seconds:3
slave_priority:100
slave_read_only:1
replica_announced:1
connected_slaves:0
master_failover_state:no-failover
master_replid:e73a1a4a66efe419a2b91c5b32ce0c05dc326956
master_replid2:0000000000000000000000000000000000000000
master_repl_offset:50
second_repl_offset:-1
repl_backlog_active:1
repl_backlog_size:1048576
repl_backlog_first_byte_offset:1
repl_backlog_histlen:50";

    /// A replica just started, before its first sync completed: the link
    /// was never up, so `master_link_down_since_seconds` is -1.
    const REPLICA_STARTING: &str = "\
# Replication
role:slave
master_host:127.0.0.1
master_port:21379
master_link_status:down
master_last_io_seconds_ago:-1
master_sync_in_progress:1
slave_read_repl_offset:1
slave_repl_offset:1
master_link_down_since_seconds:-1
slave_priority:100
slave_read_only:1
replica_announced:1
connected_slaves:0
master_failover_state:no-failover
master_replid:9f482196aa7e7853ccda5f7f2d9804672d54d7e3
master_replid2:0000000000000000000000000000000000000000
master_repl_offset:0
second_repl_offset:-1
repl_backlog_active:0
repl_backlog_size:1048576
repl_backlog_first_byte_offset:0
repl_backlog_histlen:0";

    const RUN: &str = "f25dec7567c01cd4b4760449ff395a0bee1cad92";

    /// A snapshot from INFO text (`# Section` headers, `name:value` lines),
    /// with `run_id` in the server section.
    fn info(run_id: &str, at_ms: i64, text: &str) -> Snapshot {
        let mut b = SnapshotBuilder::new()
            .taken_at_ms(at_ms)
            .info("server", "run_id", run_id);
        let mut section = String::new();
        for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
            if let Some(name) = line.strip_prefix('#') {
                section = name.trim().to_ascii_lowercase();
            } else if let Some((name, value)) = line.split_once(':') {
                b = b.info(&section, name, value);
            }
        }
        b.build()
    }

    /// The real master text with `connected_slaves`, `master_repl_offset`
    /// and the `slaveN` lines replaced: `(ip, port, state, offset)`.
    fn master(at_ms: i64, offset: u64, replicas: &[(&str, u16, &str, u64)]) -> Snapshot {
        master_run(RUN, at_ms, offset, replicas)
    }

    fn master_run(
        run_id: &str,
        at_ms: i64,
        offset: u64,
        replicas: &[(&str, u16, &str, u64)],
    ) -> Snapshot {
        let mut text = String::new();
        for line in MASTER.lines() {
            if line.starts_with("slave0:") {
                for (i, (ip, port, state, off)) in replicas.iter().enumerate() {
                    text.push_str(&format!(
                        "slave{i}:ip={ip},port={port},state={state},offset={off},lag=0\n"
                    ));
                }
            } else if line.starts_with("connected_slaves:") {
                text.push_str(&format!("connected_slaves:{}\n", replicas.len()));
            } else if line.starts_with("master_repl_offset:") {
                text.push_str(&format!("master_repl_offset:{offset}\n"));
            } else {
                text.push_str(line);
                text.push('\n');
            }
        }
        info(run_id, at_ms, &text)
    }

    fn watcher(max_offset_lag: u64, min_replicas: u64) -> Replication {
        Replication::new(Config {
            max_offset_lag,
            min_replicas,
        })
    }

    fn state(e: &Event) -> &str {
        e.get("state").and_then(Value::as_str).unwrap()
    }

    fn text(v: &str) -> Value {
        Value::Text(v.to_string())
    }

    const A: (&str, u16, &str, u64) = ("10.0.0.7", 6379, "online", 1000);
    const B: (&str, u16, &str, u64) = ("10.0.0.8", 6379, "online", 1000);
    const C: (&str, u16, &str, u64) = ("10.0.0.9", 6380, "online", 1000);

    #[test]
    fn manifest_declares_needs_and_config() {
        let m = Replication::manifest();
        assert_eq!(m.name, "replication");
        assert_eq!(m.version, "0.1.0");
        assert_eq!(m.cadence, Cadence::EveryPoll);
        assert_eq!(m.needs.info_fields, ["run_id"]);
        assert_eq!(m.needs.info_sections, ["replication"]);
        assert!(m.needs.probes.is_empty());
        assert!(!m.needs.slowlog);
        let keys: Vec<_> = m.config.iter().map(|k| k.name.as_str()).collect();
        assert_eq!(keys, ["max_offset_lag", "min_replicas"]);
        assert_eq!(m.config[0].default, Value::Integer(1_048_576));
        assert_eq!(m.config[1].default, Value::Integer(0));
    }

    #[test]
    fn configure_defaults_and_rejections() {
        assert_eq!(Config::from_settings(&[]).unwrap(), Config::default());
        assert_eq!(
            Config::default(),
            Config {
                max_offset_lag: 1_048_576,
                min_replicas: 0
            }
        );
        let ok = Config::from_settings(&[
            setting("max_offset_lag", 0i64),
            setting("min_replicas", 2i64),
        ])
        .unwrap();
        assert_eq!((ok.max_offset_lag, ok.min_replicas), (0, 2));
        assert_eq!(
            Config::from_settings(&[setting("max_offset_lag", -1i64)]).unwrap_err(),
            "key `max_offset_lag` must be >= 0, got -1"
        );
        assert_eq!(
            Config::from_settings(&[setting("min_replicas", -2i64)]).unwrap_err(),
            "key `min_replicas` must be >= 0, got -2"
        );
        assert_eq!(
            Config::from_settings(&[setting("max_offset_lag", "1mb")]).unwrap_err(),
            "key `max_offset_lag` must be an integer, got a text \"1mb\""
        );
        assert_eq!(
            Config::from_settings(&[setting("min_replicas", 1.5)]).unwrap_err(),
            "key `min_replicas` must be an integer, got a float 1.5"
        );
    }

    #[test]
    fn replica_lines_are_parsed() {
        let s = info(RUN, 0, MASTER);
        assert_eq!(
            replica_lines(&s),
            [ReplicaLine {
                addr: "127.0.0.1:21380".to_string(),
                state: "online".to_string(),
                offset: Some(0),
                lag_s: Some(1),
            }]
        );
        // A replica's own slave_* fields are not replica lines.
        assert!(replica_lines(&info(RUN, 0, REPLICA_UP)).is_empty());
        assert_eq!(
            ReplicaLine::parse("ip=::1,port=6380,state=wait_bgsave,offset=0,lag=0")
                .unwrap()
                .addr,
            "[::1]:6380"
        );
        // Older Redis: no lag; unknown keys are skipped.
        let old =
            ReplicaLine::parse("ip=10.0.0.7,port=6379,state=online,offset=12,x=y,junk").unwrap();
        assert_eq!((old.offset, old.lag_s), (Some(12), None));
        assert_eq!(ReplicaLine::parse("ip=10.0.0.7,state=online"), None);
        assert_eq!(ReplicaLine::parse(""), None);
        let bad = ReplicaLine::parse("ip=a,port=1,offset=lots").unwrap();
        assert_eq!((bad.state.as_str(), bad.offset), ("", None));
        assert!(is_slave_line("slave12"));
        for no in [
            "slave",
            "slave_repl_offset",
            "slave_read_only",
            "slave1x",
            "slaves",
        ] {
            assert!(!is_slave_line(no), "{no}");
        }
    }

    #[test]
    fn healthy_master_and_replica_report_nothing() {
        let mut m = watcher(1024, 1);
        let mut r = watcher(1024, 1);
        for at in 0..5 {
            assert!(m.observe(&info(RUN, at * 1000, MASTER)).is_empty());
            assert!(r.observe(&info("other", at * 1000, REPLICA_UP)).is_empty());
        }
    }

    #[test]
    fn master_link_down_is_reported_once_and_its_end_with_the_outage() {
        let mut w = watcher(1024, 0);
        assert!(w.observe(&info(RUN, 0, REPLICA_UP)).is_empty());
        let events = w.observe(&info(RUN, 10_000, REPLICA_DOWN));
        assert_eq!(events.len(), 1);
        let e = &events[0];
        assert_eq!(e.level, Level::Error);
        assert_eq!(e.msg, "replica link to 127.0.0.1:21379 down for 3 s");
        assert_eq!(
            fields(e),
            [
                ("master", &text("127.0.0.1:21379")),
                ("down_for_s", &Value::Integer(3)),
                ("master_link_status", &text("down")),
                ("sync_in_progress", &Value::Boolean(false)),
                ("state", &text("entered")),
            ]
        );
        assert!(w.link_is_down());
        for at in [20_000, 30_000] {
            assert!(w.observe(&info(RUN, at, REPLICA_DOWN)).is_empty());
        }
        let events = w.observe(&info(RUN, 52_500, REPLICA_UP));
        assert_eq!(events.len(), 1);
        let e = &events[0];
        assert_eq!(e.level, Level::Info);
        // 3 s before the first poll that saw it, 42 s since.
        assert_eq!(e.msg, "replica link to 127.0.0.1:21379 up again after 45 s");
        assert_eq!(
            fields(e),
            [
                ("master", &text("127.0.0.1:21379")),
                ("down_for_s", &Value::Integer(45)),
                ("state", &text("left")),
            ]
        );
        assert!(!w.link_is_down());
        assert!(w.observe(&info(RUN, 60_000, REPLICA_UP)).is_empty());
    }

    #[test]
    fn a_link_down_at_the_first_poll_is_reported() {
        let mut w = watcher(1024, 0);
        let events = w.observe(&info(RUN, 0, REPLICA_DOWN));
        assert_eq!(events.len(), 1);
        assert_eq!(state(&events[0]), "entered");
    }

    #[test]
    fn a_link_never_up_has_no_down_time() {
        let mut w = watcher(1024, 0);
        let events = w.observe(&info(RUN, 0, REPLICA_STARTING));
        assert_eq!(events.len(), 1);
        let e = &events[0];
        assert_eq!(
            e.msg,
            "replica link to 127.0.0.1:21379 down (sync with the master in progress)"
        );
        assert_eq!(e.get("down_for_s"), None);
        assert_eq!(e.get("sync_in_progress"), Some(&Value::Boolean(true)));
        let left = w.observe(&info(RUN, 7_900, REPLICA_UP));
        assert_eq!(
            left[0].msg,
            "replica link to 127.0.0.1:21379 up again after 7 s"
        );
    }

    #[test]
    fn failover_is_a_role_change() {
        let mut w = watcher(1024, 0);
        assert!(w.observe(&info(RUN, 0, REPLICA_UP)).is_empty());
        // REPLICAOF NO ONE: the replica is promoted.
        let events = w.observe(&master(1_000, 50, &[]));
        assert_eq!(events.len(), 1);
        let e = &events[0];
        assert_eq!(e.level, Level::Warn);
        assert_eq!(
            e.msg,
            "role changed from replica of 127.0.0.1:21379 to master (failover)"
        );
        assert_eq!(
            fields(e),
            [
                ("old_role", &text("slave")),
                ("new_role", &text("master")),
                ("old_master", &text("127.0.0.1:21379")),
                ("state", &text("changed")),
            ]
        );
        assert!(w.observe(&master(2_000, 50, &[])).is_empty());
        // And demoted again.
        let events = w.observe(&info(RUN, 3_000, REPLICA_UP));
        assert_eq!(events.len(), 1);
        assert_eq!(
            events[0].msg,
            "role changed from master to replica of 127.0.0.1:21379 (failover)"
        );
        assert_eq!(
            fields(&events[0]),
            [
                ("old_role", &text("master")),
                ("new_role", &text("slave")),
                ("new_master", &text("127.0.0.1:21379")),
                ("state", &text("changed")),
            ]
        );
    }

    #[test]
    fn a_new_master_address_is_a_change() {
        let mut w = watcher(1024, 0);
        w.observe(&info(RUN, 0, REPLICA_UP));
        let moved = REPLICA_UP.replace("master_host:127.0.0.1", "master_host:10.0.0.5");
        let events = w.observe(&info(RUN, 1_000, &moved));
        assert_eq!(events.len(), 1);
        assert_eq!(
            events[0].msg,
            "replica now follows master 10.0.0.5:21379 (was 127.0.0.1:21379)"
        );
        assert_eq!(events[0].get("old_master"), Some(&text("127.0.0.1:21379")));
        assert_eq!(events[0].get("new_master"), Some(&text("10.0.0.5:21379")));
        assert_eq!(state(&events[0]), "changed");
        let moved = moved.replace("master_port:21379", "master_port:6380");
        assert_eq!(
            w.observe(&info(RUN, 2_000, &moved))[0].msg,
            "replica now follows master 10.0.0.5:6380 (was 10.0.0.5:21379)"
        );
        assert!(w.observe(&info(RUN, 3_000, &moved)).is_empty());
    }

    #[test]
    fn promotion_ends_a_link_outage() {
        let mut w = watcher(1024, 0);
        w.observe(&info(RUN, 0, REPLICA_DOWN));
        let events = w.observe(&master(20_000, 50, &[]));
        assert_eq!(events.len(), 2);
        assert_eq!(state(&events[0]), "changed");
        let e = &events[1];
        assert_eq!(e.level, Level::Info);
        assert_eq!(
            e.msg,
            "replica link no longer down: the instance is now a master, after 23 s"
        );
        assert_eq!(state(e), "left");
        assert!(!w.link_is_down());
    }

    #[test]
    fn replicas_dropping_warn_with_the_ones_gone_and_recover_once() {
        let mut w = watcher(u64::MAX, 0);
        assert!(w.observe(&master(0, 1000, &[A, B, C])).is_empty());
        let events = w.observe(&master(10_000, 1000, &[B]));
        assert_eq!(events.len(), 1);
        let e = &events[0];
        assert_eq!(e.level, Level::Warn);
        assert_eq!(
            e.msg,
            "connected replicas dropped from 3 to 1: 10.0.0.7:6379, 10.0.0.9:6380 gone"
        );
        assert_eq!(
            fields(e),
            [
                ("previous", &Value::Integer(3)),
                ("current", &Value::Integer(1)),
                ("lost", &text("10.0.0.7:6379,10.0.0.9:6380")),
                ("state", &text("entered")),
            ]
        );
        assert!(w.replicas_dropped());
        assert!(w.observe(&master(20_000, 1000, &[B])).is_empty());
        // Partly back: nothing yet.
        assert!(w.observe(&master(30_000, 1000, &[B, A])).is_empty());
        // Down again while still below: a further warn.
        let events = w.observe(&master(40_000, 1000, &[]));
        assert_eq!(
            events[0].msg,
            "connected replicas dropped from 2 to 0: 10.0.0.8:6379, 10.0.0.7:6379 gone"
        );
        assert_eq!(state(&events[0]), "changed");
        let events = w.observe(&master(70_000, 1000, &[A, B, C]));
        assert_eq!(events.len(), 1);
        let e = &events[0];
        assert_eq!(e.level, Level::Info);
        assert_eq!(e.msg, "connected replicas back to 3 (from 0) after 60 s");
        assert_eq!(
            fields(e),
            [
                ("previous", &Value::Integer(0)),
                ("current", &Value::Integer(3)),
                ("duration_s", &Value::Integer(60)),
                ("restarted", &Value::Boolean(false)),
                ("state", &text("left")),
            ]
        );
        assert!(!w.replicas_dropped());
        assert!(w.observe(&master(80_000, 1000, &[A, B, C])).is_empty());
    }

    #[test]
    fn a_drop_without_replica_lines_names_none() {
        let mut w = watcher(1024, 0);
        let snap = |n: &str| {
            SnapshotBuilder::new()
                .info("replication", "role", "master")
                .info("replication", "connected_slaves", n)
                .build()
        };
        w.observe(&snap("2"));
        let events = w.observe(&snap("1"));
        assert_eq!(events[0].msg, "connected replicas dropped from 2 to 1");
        assert_eq!(events[0].get("lost"), Some(&text("")));
    }

    #[test]
    fn a_restart_resets_the_count_without_a_drop() {
        let mut w = watcher(u64::MAX, 0);
        w.observe(&master(0, 1000, &[A, B]));
        assert!(w.observe(&master_run("new-run", 5_000, 0, &[])).is_empty());
        assert!(!w.replicas_dropped());
        // The new baseline is 0: one replica back is no drop, nor a recovery.
        assert!(w.observe(&master_run("new-run", 6_000, 0, &[A])).is_empty());
        // A drop open across a restart ends there.
        w.observe(&master_run("new-run", 7_000, 0, &[]));
        assert!(w.replicas_dropped());
        let events = w.observe(&master_run("third", 9_000, 0, &[]));
        assert_eq!(events.len(), 1);
        let e = &events[0];
        assert_eq!(e.level, Level::Info);
        assert_eq!(
            e.msg,
            "connected replicas watch reset: the server restarted, 0 connected now (was 1 before the drop)"
        );
        assert_eq!(e.get("restarted"), Some(&Value::Boolean(true)));
        assert_eq!(e.get("duration_s"), Some(&Value::Integer(2)));
        assert_eq!(state(e), "left");
        assert!(!w.replicas_dropped());
    }

    #[test]
    fn min_replicas_is_off_by_default() {
        let mut w = Replication::from_settings(&[]).unwrap();
        assert!(w.observe(&master(0, 0, &[])).is_empty());
        assert!(!w.too_few_replicas());
    }

    #[test]
    fn too_few_replicas_warns_once_and_recovers_once() {
        let mut w = watcher(u64::MAX, 2);
        let events = w.observe(&master(0, 1000, &[A]));
        assert_eq!(events.len(), 1);
        let e = &events[0];
        assert_eq!(e.level, Level::Warn);
        assert_eq!(e.msg, "master has 1 connected replicas, fewer than 2");
        assert_eq!(
            fields(e),
            [
                ("connected_slaves", &Value::Integer(1)),
                ("min_replicas", &Value::Integer(2)),
                ("state", &text("entered")),
            ]
        );
        assert!(w.observe(&master(1_000, 1000, &[A])).is_empty());
        let events = w.observe(&master(31_000, 1000, &[A, B]));
        assert_eq!(events.len(), 1);
        let e = &events[0];
        assert_eq!(e.level, Level::Info);
        assert_eq!(
            e.msg,
            "master has 2 connected replicas again (at least 2) after 31 s"
        );
        assert_eq!(
            fields(e),
            [
                ("connected_slaves", &Value::Integer(2)),
                ("min_replicas", &Value::Integer(2)),
                ("duration_s", &Value::Integer(31)),
                ("state", &text("left")),
            ]
        );
        assert!(w.observe(&master(40_000, 1000, &[A, B])).is_empty());
    }

    #[test]
    fn min_replicas_applies_to_masters_only() {
        let mut w = watcher(u64::MAX, 1);
        assert!(w.observe(&info(RUN, 0, REPLICA_UP)).is_empty());
        let events = w.observe(&master(1_000, 0, &[]));
        assert_eq!(events.len(), 2, "{events:?}");
        assert_eq!(state(&events[0]), "changed");
        assert_eq!(state(&events[1]), "entered");
        let events = w.observe(&info(RUN, 4_000, REPLICA_UP));
        assert_eq!(events.len(), 2, "{events:?}");
        assert_eq!(
            events[1].msg,
            "too few replicas no longer checked: the instance is not a master, after 3 s"
        );
        assert_eq!(state(&events[1]), "left");
    }

    #[test]
    fn a_replica_behind_is_reported_once_per_replica() {
        let mut w = watcher(1024, 0);
        assert!(
            w.observe(&master(0, 5000, &[("10.0.0.7", 6379, "online", 4500)]))
                .is_empty()
        );
        let events = w.observe(&master(
            1_000,
            10_000,
            &[
                ("10.0.0.7", 6379, "online", 8000),
                ("10.0.0.8", 6379, "online", 9990),
            ],
        ));
        assert_eq!(events.len(), 1);
        let e = &events[0];
        assert_eq!(e.level, Level::Warn);
        assert_eq!(
            e.msg,
            "replica 10.0.0.7:6379 is 2.0KiB behind the master (limit 1.0KiB)"
        );
        assert_eq!(
            fields(e),
            [
                ("replica", &text("10.0.0.7:6379")),
                ("lag_bytes", &Value::Integer(2000)),
                ("offset", &Value::Integer(8000)),
                ("master_repl_offset", &Value::Integer(10_000)),
                ("max_offset_lag", &Value::Integer(1024)),
                ("state", &text("entered")),
            ]
        );
        assert_eq!(w.replicas_behind(), ["10.0.0.7:6379"]);
        // Still behind, and the second one falls behind too.
        let events = w.observe(&master(
            2_000,
            20_000,
            &[
                ("10.0.0.7", 6379, "online", 9000),
                ("10.0.0.8", 6379, "online", 9000),
            ],
        ));
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].get("replica"), Some(&text("10.0.0.8:6379")));
        assert_eq!(w.replicas_behind(), ["10.0.0.7:6379", "10.0.0.8:6379"]);
        let events = w.observe(&master(
            11_000,
            20_000,
            &[
                ("10.0.0.7", 6379, "online", 20_000),
                ("10.0.0.8", 6379, "online", 9000),
            ],
        ));
        assert_eq!(events.len(), 1);
        let e = &events[0];
        assert_eq!(e.level, Level::Info);
        assert_eq!(
            e.msg,
            "replica 10.0.0.7:6379 caught up: 0B behind after 10 s"
        );
        assert_eq!(
            fields(e),
            [
                ("replica", &text("10.0.0.7:6379")),
                ("lag_bytes", &Value::Integer(0)),
                ("max_offset_lag", &Value::Integer(1024)),
                ("duration_s", &Value::Integer(10)),
                ("state", &text("left")),
            ]
        );
        // The other one disconnects while behind: its condition ends too
        // (with the drop reported separately).
        let events = w.observe(&master(
            12_000,
            20_000,
            &[("10.0.0.7", 6379, "online", 20_000)],
        ));
        assert_eq!(events.len(), 2, "{events:?}");
        assert_eq!(events[0].get("lost"), Some(&text("10.0.0.8:6379")));
        assert_eq!(
            events[1].msg,
            "replica 10.0.0.8:6379 no longer online, after 10 s behind the master"
        );
        assert_eq!(state(&events[1]), "left");
        assert!(w.replicas_behind().is_empty());
    }

    #[test]
    fn replicas_still_syncing_are_not_behind() {
        let mut w = watcher(0, 0);
        let s = master(
            0,
            1 << 30,
            &[
                ("10.0.0.7", 6379, "wait_bgsave", 0),
                ("10.0.0.8", 6379, "send_bulk", 0),
            ],
        );
        assert!(w.observe(&s).is_empty());
        // max_offset_lag 0: any byte behind counts.
        let events = w.observe(&master(1_000, 100, &[("10.0.0.7", 6379, "online", 99)]));
        assert_eq!(events.len(), 2, "{events:?}");
        assert_eq!(state(&events[0]), "entered");
        assert_eq!(events[0].get("lost"), Some(&text("10.0.0.8:6379")));
        assert_eq!(events[1].get("lag_bytes"), Some(&Value::Integer(1)));
        assert!(
            w.observe(&master(2_000, 100, &[("10.0.0.7", 6379, "online", 99)]))
                .is_empty()
        );
    }

    #[test]
    fn a_replica_ahead_of_the_polled_offset_is_not_behind() {
        let mut w = watcher(0, 0);
        assert!(
            w.observe(&master(0, 100, &[("10.0.0.7", 6379, "online", 150)]))
                .is_empty()
        );
    }

    #[test]
    fn missing_or_bad_fields_change_nothing() {
        let mut w = watcher(1024, 1);
        assert!(w.observe(&SnapshotBuilder::new().build()).is_empty());
        w.observe(&info(RUN, 0, REPLICA_DOWN));
        w.observe(&master(0, 10_000, &[("10.0.0.7", 6379, "online", 0)]));
        let mut w = watcher(1024, 1);
        w.observe(&info(RUN, 0, REPLICA_DOWN));
        assert!(w.link_is_down());
        // No role, no status, garbage counts: no events, state kept.
        for text in [
            "",
            "role:slave\nmaster_host:127.0.0.1\nmaster_port:21379",
            "role:\nconnected_slaves:lots\nmaster_repl_offset:-5",
            "role:slave\nmaster_link_status:down\nmaster_link_down_since_seconds:x",
        ] {
            assert!(w.observe(&info(RUN, 1_000, text)).is_empty(), "{text}");
        }
        assert!(w.link_is_down());
        // A master without master_repl_offset: its replicas are not judged.
        let mut w = watcher(0, 0);
        let s = SnapshotBuilder::new()
            .info("replication", "role", "master")
            .info("replication", "connected_slaves", "1")
            .info(
                "replication",
                "slave0",
                "ip=10.0.0.7,port=6379,state=online,offset=1",
            )
            .build();
        assert!(w.observe(&s).is_empty());
        // Without run_id (not declared): no restarts seen, counts compared.
        assert_eq!(
            w.observe(
                &SnapshotBuilder::new()
                    .info("replication", "role", "master")
                    .info("replication", "connected_slaves", "0")
                    .build()
            )
            .len(),
            1
        );
    }

    #[test]
    fn exported_glue_keeps_state_between_calls() {
        assert_eq!(Replication::describe().name, "replication");
        assert_eq!(
            Replication::configure(vec![setting("min_replicas", -1i64)]).unwrap_err(),
            "key `min_replicas` must be >= 0, got -1"
        );
        Replication::configure(vec![setting("min_replicas", 0i64)]).unwrap();
        assert!(<Replication as Guest>::observe(info(RUN, 0, REPLICA_UP)).is_empty());
        assert_eq!(
            <Replication as Guest>::observe(info(RUN, 1, REPLICA_DOWN)).len(),
            1
        );
        assert!(<Replication as Guest>::observe(info(RUN, 2, REPLICA_DOWN)).is_empty());
        assert_eq!(
            <Replication as Guest>::observe(info(RUN, 3, REPLICA_UP)).len(),
            1
        );
    }
}

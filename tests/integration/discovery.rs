//! Discovery against real servers: a six-node Redis Cluster and a
//! master, replica and sentinel, asked through the library's discovery; also
//! the helpers that start them, for other tests to reuse.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use lookout::{Node, Role, discover_cluster, discover_sentinel, node_url};

use crate::support::{Redis, free_port, wait_for};

/// Node timeout of test clusters, in milliseconds: failures are marked
/// (and failovers start) within a few seconds.
const NODE_TIMEOUT_MS: &str = "1000";

const CONNECT: Duration = Duration::from_secs(2);
const RESPONSE: Duration = Duration::from_secs(2);

/// A Redis Cluster of three masters with a replica each, on free ports;
/// every node is killed on drop.
pub(crate) struct Cluster {
    /// The nodes, in creation order (`redis-cli` picks which are masters).
    pub(crate) nodes: Vec<Redis>,
}

impl Cluster {
    /// Every node's port.
    pub(crate) fn ports(&self) -> Vec<u16> {
        self.nodes.iter().map(|n| n.port).collect()
    }

    /// Every node's `redis://127.0.0.1:PORT`.
    pub(crate) fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(Redis::url).collect()
    }
}

/// Starts six cluster-enabled redis-servers, joins them with
/// `redis-cli --cluster create --cluster-replicas 1`, and waits until every
/// node sees three masters holding all slots and three replicas.
pub(crate) fn start_cluster() -> Cluster {
    let nodes: Vec<Redis> = (0..6)
        .map(|_| {
            // The bus port is its own free port: PORT + 10000 may be taken,
            // or beyond 65535.
            let bus = free_port().to_string();
            Redis::start(&[
                "--cluster-enabled",
                "yes",
                "--cluster-port",
                &bus,
                "--cluster-node-timeout",
                NODE_TIMEOUT_MS,
            ])
        })
        .collect();
    let addrs: Vec<String> = nodes
        .iter()
        .map(|n| format!("127.0.0.1:{}", n.port))
        .collect();
    let out = Command::new("redis-cli")
        .args(["--cluster", "create"])
        .args(&addrs)
        .args(["--cluster-replicas", "1", "--cluster-yes"])
        .stdin(Stdio::null())
        .output()
        .expect("redis-cli must be installed: run `make deps`");
    assert!(
        out.status.success(),
        "redis-cli --cluster create: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let cluster = Cluster { nodes };
    wait_for("the cluster to settle", Duration::from_secs(20), || {
        cluster.nodes.iter().all(settled).then_some(())
    });
    cluster
}

/// Whether `node` sees the cluster as ok with three masters and three
/// replicas, none failing or in handshake, and, if it is a replica, has
/// its link to its master up (a replica that never synced is not failed
/// over to).
fn settled(node: &Redis) -> bool {
    let mut conn = node.conn();
    let Ok(replication) = redis::cmd("INFO")
        .arg("replication")
        .query::<String>(&mut conn)
    else {
        return false;
    };
    if replication.contains("role:slave") && !replication.contains("master_link_status:up") {
        return false;
    }
    let Ok(info) = redis::cmd("CLUSTER").arg("INFO").query::<String>(&mut conn) else {
        return false;
    };
    let Ok(nodes) = redis::cmd("CLUSTER")
        .arg("NODES")
        .query::<String>(&mut conn)
    else {
        return false;
    };
    let flags: Vec<&str> = nodes
        .lines()
        .filter_map(|l| l.split_ascii_whitespace().nth(2))
        .collect();
    let count = |role: &str| {
        flags
            .iter()
            .filter(|f| f.split(',').any(|x| x == role))
            .count()
    };
    info.contains("cluster_state:ok")
        && flags.len() == 6
        && count("master") == 3
        && count("slave") == 3
        && !flags
            .iter()
            .any(|f| f.contains("fail") || f.contains("handshake"))
}

/// A master, its replica, and one sentinel monitoring the master as `m`
/// (quorum 1), on free ports; all killed on drop.
pub(crate) struct SentinelSet {
    /// The master's port at start.
    pub(crate) master_port: u16,
    /// The replica's port at start.
    pub(crate) replica_port: u16,
    /// The sentinel's port.
    pub(crate) sentinel_port: u16,
    /// The data nodes, kept alive with the set.
    _servers: [Redis; 2],
    sentinel: Child,
    _dir: tempfile::TempDir,
}

impl SentinelSet {
    /// The name the sentinel monitors the master under.
    pub(crate) const MASTER: &'static str = "m";

    /// `redis://127.0.0.1:SENTINEL_PORT`.
    pub(crate) fn sentinel_url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.sentinel_port)
    }

    /// A command to the sentinel.
    pub(crate) fn sentinel_cmd(&self, cmd: &redis::Cmd) -> redis::RedisResult<redis::Value> {
        let client = redis::Client::open(self.sentinel_url())?;
        let mut conn = client.get_connection_with_timeout(Duration::from_secs(2))?;
        conn.set_read_timeout(Some(Duration::from_secs(5)))?;
        cmd.query(&mut conn)
    }
}

impl Drop for SentinelSet {
    fn drop(&mut self) {
        let _ = self.sentinel.kill();
        let _ = self.sentinel.wait();
    }
}

/// Starts a master, a replica of it (waiting for the link to be up, so the
/// sentinel's first INFO of the master lists it), then a sentinel
/// monitoring the master with a one-second down-after; waits until the
/// sentinel answers PING.
pub(crate) fn start_sentinel_set() -> SentinelSet {
    let master = Redis::start(&[]);
    let replica = Redis::start(&["--replicaof", "127.0.0.1", &master.port.to_string()]);
    wait_for(
        "the replica's link to be up",
        Duration::from_secs(10),
        || {
            let info: String = redis::cmd("INFO")
                .arg("replication")
                .query(&mut replica.conn())
                .ok()?;
            info.contains("master_link_status:up").then_some(())
        },
    );
    let dir = tempfile::tempdir().unwrap();
    let sentinel_port = free_port();
    let conf = dir.path().join("sentinel.conf");
    std::fs::write(
        &conf,
        format!(
            "port {sentinel_port}\nbind 127.0.0.1\ndir {dir}\n\
             sentinel monitor {m} 127.0.0.1 {master} 1\n\
             sentinel down-after-milliseconds {m} 1000\n\
             sentinel failover-timeout {m} 5000\n",
            dir = dir.path().display(),
            m = SentinelSet::MASTER,
            master = master.port,
        ),
    )
    .unwrap();
    let sentinel = Command::new("redis-server")
        .arg(&conf)
        .arg("--sentinel")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("redis-server must be installed: run `make deps`");
    let set = SentinelSet {
        master_port: master.port,
        replica_port: replica.port,
        sentinel_port,
        _servers: [master, replica],
        sentinel,
        _dir: dir,
    };
    wait_for(
        "the sentinel to answer PING",
        Duration::from_secs(10),
        || set.sentinel_cmd(&redis::cmd("PING")).ok(),
    );
    set
}

fn block_on<T>(future: impl Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(future)
}

/// Ports by role, masters then replicas, each sorted.
fn by_role(nodes: &[Node]) -> (Vec<u16>, Vec<u16>) {
    let ports = |role| {
        let mut p: Vec<u16> = nodes
            .iter()
            .filter(|n| n.role == role)
            .map(|n| n.port)
            .collect();
        p.sort_unstable();
        p
    };
    (ports(Role::Master), ports(Role::Replica))
}

/// The `role:` line of INFO replication at `url`.
fn role_at(url: &str) -> String {
    let client = redis::Client::open(url).unwrap();
    let mut conn = client
        .get_connection_with_timeout(Duration::from_secs(2))
        .unwrap();
    let info: String = redis::cmd("INFO")
        .arg("replication")
        .query(&mut conn)
        .unwrap();
    info.lines()
        .find_map(|l| l.strip_prefix("role:"))
        .unwrap()
        .trim()
        .to_owned()
}

/// Any seed of a six-node cluster yields all six nodes, each with the role
/// it reports itself and a URL that reaches it; a seed whose ACL forbids
/// CLUSTER SHARDS falls back to CLUSTER NODES with the seed's credentials;
/// a dead seed is skipped for the next one, and its password is hidden
/// when no seed answers; after a master is SIGKILLed and the cluster marks
/// it failed, it is left out and its replica is found as a master.
#[test]
fn cluster_nodes_from_any_seed_without_failed_ones() {
    let mut cluster = start_cluster();
    let mut all = cluster.ports();
    all.sort_unstable();
    let mut masters = Vec::new();
    for seed in cluster.urls() {
        let nodes = block_on(discover_cluster(
            std::slice::from_ref(&seed),
            CONNECT,
            RESPONSE,
        ))
        .unwrap();
        let (m, r) = by_role(&nodes);
        assert_eq!((m.len(), r.len()), (3, 3), "from {seed}: {nodes:?}");
        let mut found: Vec<u16> = nodes.iter().map(|n| n.port).collect();
        found.sort_unstable();
        assert_eq!(found, all, "from {seed}");
        for node in &nodes {
            assert_eq!(node.host, "127.0.0.1");
            let want = if node.role == Role::Master {
                "master"
            } else {
                "slave"
            };
            assert_eq!(role_at(&node_url(&seed, node).unwrap()), want);
        }
        masters = m;
    }

    // CLUSTER SHARDS refused: CLUSTER NODES, as the seed's user.
    let first = &cluster.nodes[0];
    redis::cmd("ACL")
        .arg(&["SETUSER", "old", "on", ">pw", "+@all", "-cluster|shards"][..])
        .query::<()>(&mut first.conn())
        .unwrap();
    let seed = format!("redis://old:pw@127.0.0.1:{}", first.port);
    let nodes = block_on(discover_cluster(
        std::slice::from_ref(&seed),
        CONNECT,
        RESPONSE,
    ))
    .unwrap();
    assert_eq!(by_role(&nodes).0, masters, "{nodes:?}");
    assert_eq!(nodes.len(), 6, "{nodes:?}");
    let node = &nodes[0];
    assert_eq!(
        node_url(&seed, node).unwrap(),
        format!("redis://old:pw@127.0.0.1:{}", node.port)
    );

    // Kill a master; wait for the cluster to fail it over.
    let victim = masters[0];
    let at = cluster.ports().iter().position(|p| *p == victim).unwrap();
    cluster.nodes[at].kill();
    let dead = format!("redis://:secret@127.0.0.1:{victim}");
    let live = cluster.nodes[(at + 1) % 6].url();
    let seeds = [dead.clone(), live];
    let nodes = wait_for(
        "the killed master to be failed over",
        Duration::from_secs(20),
        || {
            let nodes = block_on(discover_cluster(&seeds, CONNECT, RESPONSE)).unwrap();
            let (m, r) = by_role(&nodes);
            (m.len() == 3 && r.len() == 2).then_some(nodes)
        },
    );
    assert!(nodes.iter().all(|n| n.port != victim), "{nodes:?}");
    let promoted: Vec<&Node> = nodes
        .iter()
        .filter(|n| n.role == Role::Master && !masters.contains(&n.port))
        .collect();
    assert_eq!(
        promoted.len(),
        1,
        "the replica of {victim} is a master: {nodes:?}"
    );

    let e = block_on(discover_cluster(&[dead], CONNECT, RESPONSE))
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with(&format!(
            "no cluster seed answered: redis://:***@127.0.0.1:{victim}: "
        )),
        "{e}"
    );
    assert!(!e.contains("secret"), "{e}");
}

/// A sentinel yields its master and the replica, each with the role it
/// reports itself; an unknown master name is an error naming it; after
/// SENTINEL FAILOVER the replica is found as the master and the old master
/// as its replica.
#[test]
fn sentinel_master_and_replicas_follow_a_failover() {
    let set = start_sentinel_set();
    let url = set.sentinel_url();
    let dead = format!("redis://127.0.0.1:{}", free_port());
    let sentinels = [dead, url.clone()];
    let ask = || {
        block_on(discover_sentinel(
            &sentinels,
            SentinelSet::MASTER,
            CONNECT,
            RESPONSE,
        ))
    };

    let nodes = wait_for(
        "the sentinel to list the replica",
        Duration::from_secs(15),
        || {
            let nodes = ask().unwrap();
            (nodes.len() == 2).then_some(nodes)
        },
    );
    assert_eq!(
        by_role(&nodes),
        (vec![set.master_port], vec![set.replica_port])
    );
    for node in &nodes {
        let want = if node.role == Role::Master {
            "master"
        } else {
            "slave"
        };
        assert_eq!(role_at(&node_url(&url, node).unwrap()), want);
    }

    let e = block_on(discover_sentinel(
        std::slice::from_ref(&url),
        "nope",
        CONNECT,
        RESPONSE,
    ))
    .unwrap_err()
    .to_string();
    assert!(e.contains("`nope`"), "{e}");

    // The sentinel may refuse (NOGOODSLAVE) until it has seen the replica
    // answer; ask again until it starts.
    wait_for(
        "the sentinel to start a failover",
        Duration::from_secs(15),
        || {
            set.sentinel_cmd(
                redis::cmd("SENTINEL")
                    .arg("FAILOVER")
                    .arg(SentinelSet::MASTER),
            )
            .ok()
        },
    );
    let swapped = (vec![set.replica_port], vec![set.master_port]);
    wait_for("the roles to be swapped", Duration::from_secs(20), || {
        (by_role(&ask().unwrap()) == swapped).then_some(())
    });
}

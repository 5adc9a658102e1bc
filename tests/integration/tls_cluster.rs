//! Discovery beyond plain TCP: a Redis Cluster that serves only TLS, found
//! through a `rediss://` seed and watched node by node; a sentinel whose
//! password never reaches the nodes it names; a `tls` table on a plain
//! `redis://` target refused at start.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::*;
use crate::tls::Certs;

/// A redis-server started with exactly the arguments its caller builds
/// (given its own temp dir), logging into that dir; killed on drop.
struct Server {
    child: Child,
    dir: tempfile::TempDir,
}

impl Server {
    /// Starts `redis-server` with `args(dir)` and waits (10 s) until
    /// `ready` says it answers; panics with its log if it exits first.
    fn start(
        what: &str,
        args: impl FnOnce(&Path) -> Vec<String>,
        ready: impl FnMut() -> bool,
    ) -> Self {
        Self::try_start(what, args, ready).unwrap_or_else(|log| {
            panic!("{what}: redis-server exited: {log}");
        })
    }

    /// [`Server::start`], giving back the log of a server that exited
    /// before it answered (a port another test took in the meantime).
    fn try_start(
        what: &str,
        args: impl FnOnce(&Path) -> Vec<String>,
        mut ready: impl FnMut() -> bool,
    ) -> Result<Self, String> {
        let dir = tempfile::tempdir().unwrap();
        let log = std::fs::File::create(dir.path().join("server.log")).unwrap();
        let child = Command::new("redis-server")
            .args(args(dir.path()))
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server must be installed: run `make deps`");
        let mut server = Self { child, dir };
        let exited = wait_for(what, Duration::from_secs(10), || {
            if let Some(status) = server.child.try_wait().unwrap() {
                return Some(Some(format!("({status}) {}", server.log())));
            }
            ready().then_some(None)
        });
        match exited {
            Some(log) => Err(log),
            None => Ok(server),
        }
    }

    /// Its log so far.
    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Arguments every test server takes: loopback only, its dir, no
/// persistence, in the foreground.
fn common(dir: &Path) -> Vec<String> {
    [
        "--bind",
        "127.0.0.1",
        "--dir",
        &dir.display().to_string(),
        "--save",
        "",
        "--appendonly",
        "no",
        "--daemonize",
        "no",
    ]
    .map(str::to_owned)
    .to_vec()
}

/// `redis-cli --tls --cacert CA -h 127.0.0.1 -p PORT ARGS...` with a
/// ten-second deadline: its stdout when it exits 0.
fn tls_cli(certs: &Certs, port: u16, args: &[&str]) -> Option<String> {
    let out = Command::new("timeout")
        .args(["10", "redis-cli", "--tls", "--cacert"])
        .arg(certs.path("ca.crt"))
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("redis-cli must be installed: run `make deps`");
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// One node of a TLS-only cluster on a free port: no plain port, TLS for
/// clients, the cluster bus and replication; tried again on other ports
/// when another test took one of them first.
fn tls_node(certs: &Certs) -> (Server, u16) {
    let mut last = String::new();
    for _ in 0..5 {
        let port = free_port();
        match try_tls_node(certs, port) {
            Ok(server) => return (server, port),
            Err(log) if log.contains("Address already in use") => last = log,
            Err(log) => panic!("a TLS-only cluster node: redis-server exited: {log}"),
        }
    }
    panic!("a TLS-only cluster node found no free port in 5 tries: {last}");
}

fn try_tls_node(certs: &Certs, port: u16) -> Result<Server, String> {
    let bus = free_port().to_string();
    let (p, cert, key, ca) = (
        port.to_string(),
        certs.path("server.crt"),
        certs.path("server.key"),
        certs.path("ca.crt"),
    );
    Server::try_start(
        "a TLS-only cluster node to answer PING",
        |dir| {
            let mut args: Vec<String> = [
                "--port",
                "0",
                "--tls-port",
                &p,
                "--tls-cluster",
                "yes",
                "--tls-replication",
                "yes",
                "--tls-cert-file",
                &cert,
                "--tls-key-file",
                &key,
                "--tls-ca-cert-file",
                &ca,
                "--tls-auth-clients",
                "no",
                "--cluster-enabled",
                "yes",
                "--cluster-port",
                &bus,
                "--cluster-node-timeout",
                "1000",
            ]
            .map(str::to_owned)
            .to_vec();
            args.extend(common(dir));
            args
        },
        || tls_cli(certs, port, &["ping"]).is_some_and(|o| o.trim() == "PONG"),
    )
}

/// The flags of each node in a CLUSTER NODES reply, by port.
fn flags_by_port(nodes: &str) -> BTreeMap<u16, String> {
    nodes
        .lines()
        .filter_map(|l| {
            let mut words = l.split_ascii_whitespace();
            let addr = words.nth(1)?;
            let flags = words.next()?;
            let addr = addr.split('@').next()?;
            let port = addr.rsplit_once(':')?.1.parse().ok()?;
            Some((port, flags.to_owned()))
        })
        .collect()
}

/// Whether the TLS node on `port` sees the cluster as ok with three
/// masters and three replicas, none failing or in handshake, and, as a
/// replica, has its link to its master up; its view of the masters'
/// ports when it does.
fn settled(certs: &Certs, port: u16) -> Option<BTreeSet<u16>> {
    let replication = tls_cli(certs, port, &["info", "replication"])?;
    if replication.contains("role:slave") && !replication.contains("master_link_status:up") {
        return None;
    }
    if !tls_cli(certs, port, &["cluster", "info"])?.contains("cluster_state:ok") {
        return None;
    }
    let flags = flags_by_port(&tls_cli(certs, port, &["cluster", "nodes"])?);
    let with = |role: &str| -> BTreeSet<u16> {
        flags
            .iter()
            .filter(|(_, f)| f.split(',').any(|x| x == role))
            .map(|(p, _)| *p)
            .collect()
    };
    let masters = with("master");
    (flags.len() == 6
        && masters.len() == 3
        && with("slave").len() == 3
        && !flags
            .values()
            .any(|f| f.contains("fail") || f.contains("handshake")))
    .then_some(masters)
}

/// `lookout targets --json --config CONFIG` with a deadline: exit status,
/// the listed lines, stderr.
fn targets_json(tmp: &Path, config: &Path) -> (std::process::ExitStatus, Vec<Value>, String) {
    let mut cmd = lookout_cmd(tmp);
    cmd.args(["targets", "--json", "--config"]).arg(config);
    let (status, stdout, stderr) = run_to_end(cmd, Duration::from_secs(60));
    let listed = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    (status, listed, stderr)
}

/// The ticker envelopes in `all` by instance.
fn ticks_by_instance(all: &[Value]) -> BTreeMap<String, Vec<Value>> {
    let mut out: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for e in by_target(all, "ticker") {
        let instance = e["fields"]["instance"].as_str().unwrap().to_owned();
        out.entry(instance).or_default().push(e);
    }
    out
}

/// Six redis-servers serving only TLS (port 0) joined into a cluster of
/// three masters with a replica each: a `rediss://` seed with the CA lists
/// all six at their TLS ports with their roles, and `lookout run` watches
/// every one of them, publishing to a plain bus; a plain `redis://` seed
/// cannot be asked, and `lookout targets` says so and exits non-zero.
#[test]
fn a_tls_only_cluster_is_discovered_and_watched() {
    let tmp = tempfile::tempdir().unwrap();
    let certs = Certs::generate(tmp.path(), true);
    let (nodes, ports): (Vec<Server>, Vec<u16>) = (0..6).map(|_| tls_node(&certs)).unzip();
    let addrs: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
    let out = Command::new("timeout")
        .args(["60", "redis-cli", "--tls", "--cacert"])
        .arg(certs.path("ca.crt"))
        .args(["--cluster", "create"])
        .args(&addrs)
        .args(["--cluster-replicas", "1", "--cluster-yes"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "redis-cli --tls --cluster create: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let masters = wait_for(
        "the TLS cluster to settle on every node",
        Duration::from_secs(30),
        || {
            let views: Vec<BTreeSet<u16>> = ports
                .iter()
                .map(|p| settled(&certs, *p))
                .collect::<Option<_>>()?;
            views
                .windows(2)
                .all(|w| w[0] == w[1])
                .then(|| views[0].clone())
        },
    );

    let bus = Redis::start(&[]);
    let seed = ports[0];
    let config = bus_config(
        tmp.path(),
        &bus,
        "",
        &format!(
            "[[discover]]\ncluster = 'rediss://127.0.0.1:{seed}'\ntls = {{ ca_file = '{}' }}\n",
            certs.path("ca.crt")
        ),
    );
    let started = Instant::now();
    let (status, listed, stderr) = targets_json(tmp.path(), &config);
    let targets_took = started.elapsed();
    assert!(status.success(), "lookout targets: {stderr}");
    let urls: BTreeSet<String> = listed
        .iter()
        .map(|l| l["url"].as_str().unwrap().to_owned())
        .collect();
    let want: BTreeSet<String> = ports
        .iter()
        .map(|p| format!("rediss://127.0.0.1:{p}"))
        .collect();
    assert_eq!(listed.len(), 6, "{listed:?}");
    assert_eq!(urls, want, "{listed:?}");
    let listed_masters: BTreeSet<u16> = listed
        .iter()
        .filter(|l| l["labels"]["role"] == "master")
        .map(|l| {
            let url = l["url"].as_str().unwrap();
            url.rsplit_once(':').unwrap().1.parse().unwrap()
        })
        .collect();
    assert_eq!(listed_masters, masters, "{listed:?}");
    assert_eq!(
        listed
            .iter()
            .filter(|l| l["labels"]["role"] == "replica")
            .count(),
        3,
        "{listed:?}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");

    // Watched: ticks from every node, each labelled with its role.
    let plugins = plugins_with(tmp.path(), &[], &["ticker"]);
    let mut lookout = run_config(tmp.path(), &plugins, &config, &[]);
    lookout.wait_started();
    let started = Instant::now();
    let by_instance = wait_for(
        "ticks from all six TLS-only nodes on the bus",
        Duration::from_secs(60),
        || {
            let ticks = ticks_by_instance(&bus.stream(STREAM));
            addrs
                .iter()
                .all(|a| ticks.get(a).is_some_and(|t| t.len() >= 2))
                .then_some(ticks)
        },
    );
    let run_took = started.elapsed();
    for (port, addr) in ports.iter().zip(&addrs) {
        let role = if masters.contains(port) {
            "master"
        } else {
            "replica"
        };
        for e in &by_instance[addr] {
            assert_eq!(e["fields"]["labels"]["role"], role, "{e}");
        }
    }
    assert!(
        by_instance.keys().all(|i| addrs.contains(i)),
        "ticks only from the cluster's nodes: {:?}",
        by_instance.keys()
    );
    assert!(lookout.terminate().success());
    let stderr = lookout.stderr.all().join("\n");
    assert!(!stderr.contains("panicked"), "{stderr}");
    eprintln!("lookout targets took {targets_took:?}; all six ticked within {run_took:?}");

    // A plain seed: the TLS port does not speak plain RESP.
    let plain = tmp.path().join("plain");
    std::fs::create_dir_all(&plain).unwrap();
    let config = config_file(
        &plain,
        &format!(
            "[publish]\nurl = '{}'\n[[discover]]\ncluster = 'redis://127.0.0.1:{seed}'\n",
            bus.url()
        ),
    );
    let started = Instant::now();
    let (status, listed, stderr) = targets_json(tmp.path(), &config);
    let took = started.elapsed();
    assert!(!status.success(), "a plain seed on a TLS port: {listed:?}");
    assert_eq!(status.code(), Some(1), "an error exit, no crash: {stderr}");
    assert!(listed.is_empty(), "{listed:?}");
    assert!(stderr.contains("discovery failed"), "{stderr}");
    assert!(
        stderr.contains(&format!("redis://127.0.0.1:{seed}")),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    eprintln!("the plain seed failed in {took:?}: {stderr}");
    drop(nodes);
}

/// A data node on `port` requiring `password`, with `extra` arguments;
/// ready when it answers PING with that password.
fn password_node(port: u16, password: &str, extra: &[&str]) -> Server {
    let p = port.to_string();
    Server::start(
        "a password-protected node to answer PING",
        |dir| {
            let mut args: Vec<String> = ["--port", &p, "--requirepass", password]
                .map(str::to_owned)
                .to_vec();
            args.extend(extra.iter().map(|s| (*s).to_owned()));
            args.extend(common(dir));
            args
        },
        || query(port, password, &redis::cmd("PING")).is_some(),
    )
}

/// `cmd` on 127.0.0.1:`port` as the default user with `password`; its
/// text reply, or `None` on any failure.
fn query(port: u16, password: &str, cmd: &redis::Cmd) -> Option<String> {
    let client = redis::Client::open(format!("redis://:{password}@127.0.0.1:{port}")).ok()?;
    let mut conn = client
        .get_connection_with_timeout(Duration::from_millis(500))
        .ok()?;
    conn.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    cmd.query::<String>(&mut conn).ok()
}

/// Failed AUTH attempts on each of `ports` (a wrong password is one): the
/// entries of its ACL LOG, where Redis records them.
fn denied_auth(ports: &[u16]) -> Vec<usize> {
    ports
        .iter()
        .map(|p| {
            let client = redis::Client::open(format!("redis://:nodepw@127.0.0.1:{p}")).unwrap();
            let mut conn = client
                .get_connection_with_timeout(Duration::from_secs(2))
                .unwrap();
            conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let log: Vec<redis::Value> = redis::cmd("ACL").arg("LOG").query(&mut conn).unwrap();
            log.len()
        })
        .collect()
}

/// A master and its replica requiring `nodepw`, a sentinel requiring
/// `sentpw`. With `password_file` (the sentinel's) and `node_password_file`
/// (the nodes'), both nodes are watched and neither password shows in the
/// config, stderr or the stream. With the sentinel's password in its URL
/// and no node password, the nodes are dialled without any: each refuses
/// with NOAUTH (never WRONGPASS: sentpw was not offered), and no AUTH ever
/// failed on them.
#[test]
fn sentinel_and_node_credentials_stay_apart() {
    let tmp = tempfile::tempdir().unwrap();
    let (mport, rport, sport) = (free_port(), free_port(), free_port());
    let _master = password_node(mport, "nodepw", &["--masterauth", "nodepw"]);
    let m = mport.to_string();
    let _replica = password_node(
        rport,
        "nodepw",
        &["--replicaof", "127.0.0.1", &m, "--masterauth", "nodepw"],
    );
    wait_for(
        "the replica's link to be up",
        Duration::from_secs(10),
        || {
            query(rport, "nodepw", redis::cmd("INFO").arg("replication"))?
                .contains("master_link_status:up")
                .then_some(())
        },
    );
    let _sentinel = Server::start(
        "the sentinel to answer PING",
        |dir| {
            let conf = dir.join("sentinel.conf");
            std::fs::write(
                &conf,
                format!(
                    "port {sport}\nbind 127.0.0.1\ndir {dir}\nrequirepass sentpw\n\
                     sentinel monitor m 127.0.0.1 {mport} 1\n\
                     sentinel auth-pass m nodepw\n",
                    dir = dir.display(),
                ),
            )
            .unwrap();
            vec![conf.display().to_string(), "--sentinel".to_owned()]
        },
        || query(sport, "sentpw", &redis::cmd("PING")).is_some(),
    );
    wait_for(
        "the sentinel to list the replica",
        Duration::from_secs(20),
        || {
            let client = redis::Client::open(format!("redis://:sentpw@127.0.0.1:{sport}")).ok()?;
            let mut conn = client
                .get_connection_with_timeout(Duration::from_millis(500))
                .ok()?;
            let replicas: Vec<redis::Value> = redis::cmd("SENTINEL")
                .arg("REPLICAS")
                .arg("m")
                .query(&mut conn)
                .ok()?;
            (replicas.len() == 1).then_some(())
        },
    );
    let secrets = tmp.path().join("secrets");
    std::fs::create_dir_all(&secrets).unwrap();
    let (sent_pw, node_pw): (PathBuf, PathBuf) = (secrets.join("sentinel"), secrets.join("nodes"));
    std::fs::write(&sent_pw, "sentpw\n").unwrap();
    std::fs::write(&node_pw, "nodepw\n").unwrap();
    let instances = [format!("127.0.0.1:{mport}"), format!("127.0.0.1:{rport}")];
    let plugins = plugins_with(tmp.path(), &[], &["ticker"]);

    // Each side with its own file.
    let bus = Redis::start(&[]);
    let config = bus_config(
        tmp.path(),
        &bus,
        "",
        &format!(
            "[[discover]]\nsentinel = 'redis://127.0.0.1:{sport}'\nmaster = 'm'\nrefresh_s = 1\n\
             password_file = '{}'\nnode_password_file = '{}'\n",
            sent_pw.display(),
            node_pw.display()
        ),
    );
    let text = std::fs::read_to_string(&config).unwrap();
    assert!(
        !text.contains("sentpw") && !text.contains("nodepw"),
        "{text}"
    );
    let mut lookout = run_config(tmp.path(), &plugins, &config, &[]);
    lookout.wait_started();
    let started = Instant::now();
    let ticks = wait_for(
        "ticks from the master and the replica",
        Duration::from_secs(60),
        || {
            let ticks = ticks_by_instance(&bus.stream(STREAM));
            instances
                .iter()
                .all(|i| ticks.get(i).is_some_and(|t| t.len() >= 2))
                .then_some(ticks)
        },
    );
    eprintln!("both nodes ticked within {:?}", started.elapsed());
    assert_eq!(
        ticks[&instances[0]][0]["fields"]["labels"]["role"],
        "master"
    );
    assert_eq!(
        ticks[&instances[1]][0]["fields"]["labels"]["role"],
        "replica"
    );
    assert!(lookout.terminate().success());
    let stderr = lookout.stderr.all().join("\n");
    let stream = serde_json::to_string(&bus.stream(STREAM)).unwrap();
    for secret in ["sentpw", "nodepw"] {
        assert!(!stderr.contains(secret), "{secret} in stderr: {stderr}");
        assert!(!stream.contains(secret), "{secret} in the stream: {stream}");
    }
    assert_eq!(denied_auth(&[mport, rport]), [0, 0]);

    // The sentinel's password in its URL, none for the nodes.
    let bus = Redis::start(&[]);
    let config = bus_config(
        tmp.path(),
        &bus,
        "",
        &format!(
            "[[discover]]\nsentinel = 'redis://:sentpw@127.0.0.1:{sport}'\nmaster = 'm'\n\
             refresh_s = 1\n"
        ),
    );
    let mut lookout = run_config(tmp.path(), &plugins, &config, &[]);
    lookout.wait_started();
    let refusals = wait_for(
        "the master and the replica to refuse lookout",
        Duration::from_secs(60),
        || {
            let all = bus.stream(STREAM);
            let refusals: Vec<Value> = instances
                .iter()
                .filter_map(|i| {
                    all.iter()
                        .find(|e| {
                            e["fields"]["instance"] == i.as_str()
                                && e["msg"].as_str().unwrap().starts_with("instance refused")
                        })
                        .cloned()
                })
                .collect();
            (refusals.len() == 2).then_some(refusals)
        },
    );
    for (refusal, instance) in refusals.iter().zip(&instances) {
        let error = refusal["fields"]["error"].as_str().unwrap();
        assert_eq!(refusal["level"], "error", "{refusal}");
        assert!(error.contains("NOAUTH"), "{error}");
        assert!(!error.contains("WRONGPASS"), "{error}");
        assert!(error.contains(instance.as_str()), "{error}");
    }
    assert!(lookout.terminate().success());
    let all = bus.stream(STREAM);
    assert!(
        by_target(&all, "ticker").is_empty(),
        "no node answered without its password"
    );
    let stderr = lookout.stderr.all().join("\n");
    let stream = serde_json::to_string(&all).unwrap();
    assert!(!stderr.contains("sentpw"), "{stderr}");
    assert!(!stream.contains("sentpw"), "{stream}");
    assert_eq!(
        denied_auth(&[mport, rport]),
        [0, 0],
        "the sentinel's password was never offered to the nodes"
    );
}

/// A `tls` table beside a plain `redis://` URL would be ignored: `lookout
/// run` stops at once naming the key and rediss://, for a target and for
/// a discover entry.
#[test]
fn a_tls_table_on_a_plain_url_stops_start_up() {
    let tmp = tempfile::tempdir().unwrap();
    let certs = Certs::generate(tmp.path(), true);
    let plugins = plugins_with(tmp.path(), &[], &["ticker"]);
    let (port, bus) = (free_port(), free_port());
    let ca = certs.path("ca.crt");
    for (table, key) in [
        (
            format!(
                "[[targets]]\nurl = 'redis://127.0.0.1:{port}'\ntls = {{ ca_file = '{ca}' }}\n"
            ),
            "targets[0].tls",
        ),
        (
            format!(
                "[[discover]]\ncluster = 'redis://127.0.0.1:{port}'\ntls = {{ ca_file = '{ca}' }}\n"
            ),
            "discover[0].tls",
        ),
    ] {
        let config = config_file(
            tmp.path(),
            &format!("[publish]\nurl = 'redis://127.0.0.1:{bus}'\n{table}"),
        );
        let started = Instant::now();
        let mut cmd = lookout_cmd(tmp.path());
        cmd.args(["run", "--poll-interval", "0.2", "--plugins"])
            .arg(&plugins)
            .arg("--config")
            .arg(&config);
        let (status, _, stderr) = run_to_end(cmd, Duration::from_secs(30));
        let took = started.elapsed();
        assert!(!status.success(), "{table}: {stderr}");
        assert_eq!(status.code(), Some(1), "{table}: {stderr}");
        assert!(stderr.contains(key), "{key}: {stderr}");
        assert!(stderr.contains("rediss://"), "{key}: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
        assert!(took < Duration::from_secs(10), "{key}: refused in {took:?}");
    }
}

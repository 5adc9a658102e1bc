//! What a cluster or a server says is not trusted: discovered nodes
//! outside a discover entry's `allow` are never dialled (so they never see
//! its password), `max_nodes` bounds how many are watched, a node that
//! fits no URL is skipped alone, and server text (errors, discovery
//! replies) reaches events, errors and logs cut and escaped. Credentials
//! can stay out of the configuration file (`password_file`).

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::ExitStatus;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::fake_resp::{FakeRedis, Shard, ShardNode, bulk, cluster_shards, error};
use crate::support::*;

/// A seed answering CLUSTER SHARDS with `shards` and INFO with what the
/// ticker reads; the defaults for the rest.
fn seed_handler(shards: Vec<u8>) -> impl Fn(&[Vec<u8>]) -> Option<Vec<u8>> + Send + Sync {
    move |args| {
        let word = |i: usize| {
            args.get(i)
                .map(|a| String::from_utf8_lossy(a).to_ascii_uppercase())
                .unwrap_or_default()
        };
        match (word(0).as_str(), word(1).as_str()) {
            ("CLUSTER", "SHARDS") => Some(shards.clone()),
            ("INFO", _) => Some(bulk(
                "# Server\r\nredis_version:7.2.0\r\n# Clients\r\nconnected_clients:1\r\n",
            )),
            _ => None,
        }
    }
}

/// A fake seed on 127.0.0.1 announcing itself as a master, then `others`.
fn seed_with(others: Vec<ShardNode>) -> FakeRedis {
    FakeRedis::start_with("127.0.0.1", move |port| {
        let mut shards = vec![Shard::of(vec![ShardNode::master("127.0.0.1", port)])];
        shards.extend(others.into_iter().map(|n| Shard::of(vec![n])));
        seed_handler(cluster_shards(&shards))
    })
}

/// `lookout targets --json --config CONFIG`: exit status, the listed
/// targets' keys and roles, and stderr.
fn targets_json(tmp: &Path, config: &Path) -> (ExitStatus, Vec<(String, String)>, String) {
    let mut cmd = lookout_cmd(tmp);
    cmd.args(["targets", "--json", "--config"]).arg(config);
    let (status, stdout, stderr) = run_to_end(cmd, Duration::from_secs(60));
    let listed = stdout
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"));
            (
                v["target"].as_str().unwrap().to_owned(),
                v["labels"]["role"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    (status, listed, stderr)
}

/// A config with only a discover entry (`entry` holds its keys after
/// `cluster`) and a bus that `lookout targets` never dials.
fn discover_only(tmp: &Path, seed: &FakeRedis, entry: &str) -> std::path::PathBuf {
    config_file(
        tmp,
        &format!(
            "[publish]\nurl = 'redis://127.0.0.1:{}'\n[[discover]]\ncluster = '{}'\n{entry}\n",
            free_port(),
            seed.url()
        ),
    )
}

/// Host events (target `lookout`) on `bus` whose message contains `needle`.
fn host_events(bus: &Redis, needle: &str) -> Vec<Value> {
    events_of(bus, "lookout")
        .into_iter()
        .filter(|e| e["msg"].as_str().is_some_and(|m| m.contains(needle)))
        .collect()
}

/// The ticker's events about `instance` on `bus`.
fn ticks_from(bus: &Redis, instance: &str) -> usize {
    events_of(bus, "ticker")
        .iter()
        .filter(|e| e["fields"]["instance"] == instance)
        .count()
}

/// `GET /metrics` on `port`, once it answers 200.
fn metrics(port: u16) -> prometheus_parse::Scrape {
    let body = wait_for("/metrics to answer", Duration::from_secs(30), || {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
        stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        write!(
            stream,
            "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
        )
        .ok()?;
        let mut response = String::new();
        stream.read_to_string(&mut response).ok()?;
        let (head, body) = response.split_once("\r\n\r\n")?;
        head.starts_with("HTTP/1.1 200").then(|| body.to_owned())
    });
    prometheus_parse::Scrape::parse(body.lines().map(|l| Ok(l.to_owned()))).unwrap()
}

/// The value of the gauge `metric` labelled `discover = discover`.
fn discover_gauge(scrape: &prometheus_parse::Scrape, metric: &str, discover: &str) -> Option<f64> {
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == metric && s.labels.get("discover") == Some(discover))
        .find_map(|s| match s.value {
            prometheus_parse::Value::Gauge(v) | prometheus_parse::Value::Untyped(v) => Some(v),
            _ => None,
        })
}

/// A cluster whose seed announces a node at 127.0.0.2, outside `allow =
/// ["127.0.0.1/32"]`: over several discoveries that node is never
/// connected to (the seed's password never leaves for it), one warn host
/// event names it and the key to set, and /metrics counts it as refused;
/// the seed itself is watched. With the default `allow`, a node announced
/// at a public address (203.0.113.5) is left out of `lookout targets`
/// with a warning naming it and `allow`.
#[test]
fn a_node_outside_allow_never_receives_the_password() {
    let stranger = FakeRedis::start("127.0.0.2", |_| None);
    let stranger_addr = stranger.addr();
    let seed = seed_with(vec![ShardNode::master("127.0.0.2", stranger.port())]);
    let seed_instance = seed.addr();
    let bus = Redis::start(&[]);
    let tmp = tempfile::tempdir().unwrap();
    let plugins = plugins_with(tmp.path(), &[], &["ticker"]);
    let metrics_port = free_port();
    let config = bus_config(
        tmp.path(),
        &bus,
        &format!("metrics_addr = '127.0.0.1:{metrics_port}'"),
        &format!(
            "[[discover]]\ncluster = 'redis://:s3cret@{seed_instance}'\n\
             allow = ['127.0.0.1/32']\nrefresh_s = 0.3\n"
        ),
    );
    let mut lookout = run_config(tmp.path(), &plugins, &config, &[]);
    let shards = || seed.count(&["CLUSTER", "SHARDS"]);
    wait_for("three discoveries", Duration::from_secs(30), || {
        (shards() >= 3).then_some(())
    });
    wait_for(
        "three ticks from the seed, watched",
        Duration::from_secs(30),
        || (ticks_from(&bus, &seed_instance) >= 3).then_some(()),
    );
    wait_for("the refusal on the bus", Duration::from_secs(30), || {
        (!host_events(&bus, &stranger_addr).is_empty()).then_some(())
    });
    // Three more discoveries, and deliveries caught up past them.
    let asked = shards();
    wait_for("three more discoveries", Duration::from_secs(30), || {
        (shards() >= asked + 3).then_some(())
    });
    let ticked = ticks_from(&bus, &seed_instance);
    wait_for("three more ticks", Duration::from_secs(30), || {
        (ticks_from(&bus, &seed_instance) >= ticked + 3).then_some(())
    });
    assert_eq!(stranger.connections(), 0, "{:?}", stranger.commands());
    let refused = host_events(&bus, &stranger_addr);
    assert_eq!(refused.len(), 1, "reported once: {refused:#?}");
    let event = &refused[0];
    assert_envelope(event);
    assert_eq!(event["level"], "warn", "{event}");
    let msg = event["msg"].as_str().unwrap();
    assert!(msg.contains("discover[0].allow"), "{msg}");
    assert!(!msg.contains("s3cret"), "{msg}");

    let discover = format!("cluster {seed_instance}");
    let scrape = metrics(metrics_port);
    assert_eq!(
        discover_gauge(&scrape, "lookout_discover_nodes_refused", &discover),
        Some(1.0),
        "{:?}",
        scrape.samples
    );
    assert_eq!(
        discover_gauge(&scrape, "lookout_discover_nodes_cut", &discover),
        Some(0.0),
        "{:?}",
        scrape.samples
    );
    assert!(lookout.terminate().success());
    assert_eq!(stranger.connections(), 0);
    let logs = lookout.stderr.all().join("\n");
    assert!(!logs.contains("s3cret"), "{logs}");
    assert!(
        logs.contains(&stranger_addr),
        "the log names it too: {logs}"
    );

    // The default allow: loopback and private ranges, not a public address.
    let tmp = tempfile::tempdir().unwrap();
    let seed = seed_with(vec![ShardNode::replica("203.0.113.5", 7000)]);
    let config = discover_only(tmp.path(), &seed, "");
    let (status, listed, stderr) = targets_json(tmp.path(), &config);
    assert!(status.success(), "{stderr}");
    assert_eq!(listed, [(seed.addr(), "master".to_owned())], "{stderr}");
    let warning = stderr
        .lines()
        .find(|l| l.contains("203.0.113.5"))
        .unwrap_or_else(|| panic!("no line names the node: {stderr}"));
    assert!(warning.contains("allow"), "{warning}");
}

/// A seed announcing 5,000 nodes (a master and a replica per shard, the
/// replica on the lower port): `lookout targets` lists the first 1000 by
/// default, all masters, lowest addresses first, and says `max_nodes` on
/// stderr; `max_nodes = 10` lists ten.
#[test]
fn five_thousand_announced_nodes_are_cut_to_max_nodes() {
    let shards: Vec<Shard> = (0..2500u16)
        .map(|i| {
            Shard::of(vec![
                ShardNode::master("127.0.0.1", 20_001 + 2 * i),
                ShardNode::replica("127.0.0.1", 20_000 + 2 * i),
            ])
        })
        .collect();
    let reply = cluster_shards(&shards);
    let seed = FakeRedis::start("127.0.0.1", seed_handler(reply));
    let tmp = tempfile::tempdir().unwrap();
    for (entry, count) in [("", 1000u16), ("max_nodes = 10", 10)] {
        let config = discover_only(tmp.path(), &seed, entry);
        let (status, listed, stderr) = targets_json(tmp.path(), &config);
        assert!(status.success(), "{entry}: {stderr}");
        assert_eq!(listed.len(), usize::from(count), "{entry}: {stderr}");
        assert!(
            listed.iter().all(|(_, role)| role == "master"),
            "{entry}: masters first: {listed:?}"
        );
        let got: BTreeSet<String> = listed.into_iter().map(|(t, _)| t).collect();
        let want: BTreeSet<String> = (0..count)
            .map(|i| format!("127.0.0.1:{}", 20_001 + 2 * i))
            .collect();
        assert_eq!(got, want, "{entry}: the lowest addresses");
        assert!(
            stderr.lines().any(|l| l.contains("max_nodes")),
            "{entry}: no line names max_nodes: {stderr}"
        );
    }
}

/// Whether `text` has a control character other than a line break.
fn has_control(text: &str) -> bool {
    text.chars().any(|c| c.is_control() && c != '\n')
}

/// Every string in `value`, recursively.
fn strings(value: &Value) -> Vec<&str> {
    match value {
        Value::String(s) => vec![s.as_str()],
        Value::Array(items) => items.iter().flat_map(strings).collect(),
        Value::Object(map) => map.values().flat_map(strings).collect(),
        _ => Vec::new(),
    }
}

/// A seed answering CLUSTER SHARDS and CLUSTER NODES with a 1 MB error
/// reply holding an escape sequence: `lookout targets` fails with a short
/// message holding no raw control character; `lookout run` reports the
/// failure in a short host event and log line, escaped.
#[test]
fn a_megabyte_error_reply_is_cut_and_escaped() {
    let mut huge = error("ERR \x1b[31m");
    huge.truncate(huge.len() - 2);
    huge.extend(std::iter::repeat_n(b'x', 1_000_000));
    huge.extend_from_slice(b"\r\n");
    let seed = FakeRedis::start("127.0.0.1", move |args| {
        let cluster = args
            .first()
            .is_some_and(|a| a.eq_ignore_ascii_case(b"CLUSTER"));
        cluster.then(|| huge.clone())
    });
    let tmp = tempfile::tempdir().unwrap();
    let config = discover_only(tmp.path(), &seed, "");
    let mut cmd = lookout_cmd(tmp.path());
    cmd.args(["targets", "--config"]).arg(&config);
    let (status, stdout, stderr) = run_to_end(cmd, Duration::from_secs(60));
    assert!(!status.success(), "{stdout}");
    assert!(seed.count(&["CLUSTER", "SHARDS"]) >= 1);
    assert!(
        seed.count(&["CLUSTER", "NODES"]) >= 1,
        "the fallback was asked"
    );
    assert!(
        stderr.len() < 4096,
        "{} bytes: {stderr:.8000}",
        stderr.len()
    );
    assert!(!has_control(&stderr), "{stderr:?}");
    assert!(stderr.contains("\\u{1b}"), "the escape is shown: {stderr}");
    assert!(stderr.contains(&seed.addr()), "{stderr}");

    let bus = Redis::start(&[]);
    let tmp = tempfile::tempdir().unwrap();
    let plugins = plugins_with(tmp.path(), &[], &["ticker"]);
    let config = bus_config(
        tmp.path(),
        &bus,
        "",
        &format!(
            "[[discover]]\ncluster = '{}'\nrefresh_s = 0.3\n",
            seed.url()
        ),
    );
    let mut lookout = run_config(tmp.path(), &plugins, &config, &[]);
    let event = wait_for(
        "the discovery failure on the bus",
        Duration::from_secs(30),
        || host_events(&bus, "discovery failed").into_iter().next(),
    );
    assert_envelope(&event);
    let msg = event["msg"].as_str().unwrap();
    assert!(msg.len() < 3072, "{} bytes: {msg:.8000}", msg.len());
    assert!(!has_control(msg), "{msg:?}");
    for s in strings(&event["fields"]) {
        assert!(s.len() < 3072, "a field of {} bytes: {s:.8000}", s.len());
        assert!(!has_control(s), "{s:?}");
    }
    let line = wait_for("the failure in the log", Duration::from_secs(30), || {
        lookout
            .stderr
            .matching("discovery failed")
            .into_iter()
            .next()
    });
    assert!(line.len() < 4096, "{} bytes: {line:.8000}", line.len());
    assert!(!has_control(&line), "{line:?}");
    assert!(lookout.terminate().success());
    for line in lookout.stderr.all() {
        assert!(line.len() < 4096, "{} bytes: {line:.8000}", line.len());
        assert!(!has_control(&line), "{line:?}");
    }
}

/// A server that answers INFO with 192 MiB (more than any honest reply) is
/// read no further than 64 MiB a call: the poll fails naming the server and
/// the bound, the connection is dropped, and the daemon's peak memory stays
/// below the reply's size.
#[test]
fn a_reply_past_64_mib_breaks_the_connection() {
    let huge = bulk(vec![b'x'; 192 << 20]);
    let liar = FakeRedis::start("127.0.0.1", move |args| {
        let info = args
            .first()
            .is_some_and(|a| a.eq_ignore_ascii_case(b"INFO"));
        info.then(|| huge.clone())
    });
    let tmp = tempfile::tempdir().unwrap();
    let plugins = plugins_with(tmp.path(), &[], &["ticker"]);
    // A poll interval that leaves the read its whole response timeout.
    let mut cmd = lookout_cmd(tmp.path());
    cmd.args(["run", "--poll-interval", "5", "--dry-run", "--plugins"])
        .arg(&plugins)
        .env("REDIS_URL", liar.url());
    let mut lookout = Lookout::spawn(cmd);
    let line = wait_for("the bounded read", Duration::from_secs(60), || {
        lookout
            .stderr
            .matching("more than 64 MiB")
            .into_iter()
            .next()
    });
    assert!(line.contains(&liar.addr()), "{line}");
    wait_for("a second INFO sent", Duration::from_secs(60), || {
        (liar.count(&["INFO"]) >= 2).then_some(())
    });
    let peak_kib: u64 = std::fs::read_to_string(format!("/proc/{}/status", lookout.pid()))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    assert!(peak_kib < 176 * 1024, "peak RSS {peak_kib} KiB");
    assert!(lookout.alive());
    assert!(lookout.terminate().success());
}

/// A node announced at a link-local address with a zone (`fe80::1%eth0`)
/// is skipped with a warning naming it, and the seed is still listed; so
/// is an allowed name that fits no URL (`bad host.example.com`); a node
/// with neither endpoint nor address is skipped without a word.
#[test]
fn a_node_that_fits_no_url_is_skipped() {
    let tmp = tempfile::tempdir().unwrap();
    let zoned = seed_with(vec![
        ShardNode::replica("fe80::1%eth0", 7001).at("fe80::1%eth0", "fe80::1%eth0"),
    ]);
    let config = discover_only(tmp.path(), &zoned, "");
    let (status, listed, stderr) = targets_json(tmp.path(), &config);
    assert!(status.success(), "{stderr}");
    assert_eq!(listed, [(zoned.addr(), "master".to_owned())], "{stderr}");
    assert!(
        stderr.lines().any(|l| l.contains("fe80::1%eth0")),
        "a warning names the node: {stderr}"
    );

    let spaced = seed_with(vec![
        ShardNode::replica("10.0.0.3", 7003).at("10.0.0.3", "bad host.example.com"),
    ]);
    let config = discover_only(tmp.path(), &spaced, "allow = ['*.example.com']");
    let (status, listed, stderr) = targets_json(tmp.path(), &config);
    assert!(status.success(), "{stderr}");
    assert_eq!(listed, [(spaced.addr(), "master".to_owned())], "{stderr}");
    let warning = stderr
        .lines()
        .find(|l| l.contains("bad host.example.com"))
        .unwrap_or_else(|| panic!("a warning names the node: {stderr}"));
    assert!(!warning.contains("allow"), "it is allowed: {warning}");

    let blank = seed_with(vec![ShardNode::replica("", 7002).at("", "")]);
    let config = discover_only(tmp.path(), &blank, "");
    let (status, listed, stderr) = targets_json(tmp.path(), &config);
    assert!(status.success(), "{stderr}");
    assert_eq!(listed, [(blank.addr(), "master".to_owned())], "{stderr}");
    assert!(!stderr.contains("7002"), "skipped silently: {stderr}");
}

/// A connection to `port` as `user` (the default user when `None`) with
/// `password`.
fn authed(port: u16, user: Option<&str>, password: &str) -> redis::Connection {
    let url = format!(
        "redis://{}:{password}@127.0.0.1:{port}",
        user.unwrap_or_default()
    );
    let client = redis::Client::open(url).unwrap();
    let conn = client
        .get_connection_with_timeout(Duration::from_secs(2))
        .unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    conn
}

/// The ticker's events about `instance` in the stream, read with `conn`.
fn ticks_with(conn: &mut redis::Connection, instance: &str) -> usize {
    let entries: Vec<(String, Vec<String>)> = redis::cmd("XRANGE")
        .arg(STREAM)
        .arg("-")
        .arg("+")
        .query(conn)
        .unwrap();
    entries
        .iter()
        .map(|(_, kv)| {
            let map = kv.chunks(2).map(|p| (p[0].clone(), p[1].clone())).collect();
            envelope_from_stream(&map)
        })
        .filter(|e| e["target"] == "ticker" && e["fields"]["instance"] == instance)
        .count()
}

/// Passwords in files: the watched Redis's (`[[targets]] password_file`)
/// and the bus's (`[publish] username` and `password_file`, an ACL user);
/// the ticker's events arrive on the bus, and no password is in the
/// configuration or lookout's output. After the watched Redis's password
/// changes (file rewritten, connections killed), polling resumes with the
/// new one: the file is read at every dial.
#[test]
fn password_file_keeps_the_password_out_of_the_config() {
    const WATCHED_1: &str = "w-first-9f3a1c";
    const WATCHED_2: &str = "w-second-77be02";
    const BUS: &str = "b-pass-4410dd";
    const BUS_DEFAULT: &str = "b-default-0c9e1f";
    let watched = Redis::start(&[]);
    let bus = Redis::start(&[]);
    let bus_pass = format!(">{BUS}");
    redis_cmd(
        &bus,
        &[
            "ACL", "SETUSER", "bususer", "on", &bus_pass, "~*", "&*", "+@all",
        ],
    );
    redis_cmd(&bus, &["CONFIG", "SET", "requirepass", BUS_DEFAULT]);
    redis_cmd(&watched, &["CONFIG", "SET", "requirepass", WATCHED_1]);
    let tmp = tempfile::tempdir().unwrap();
    let secrets = tmp.path().join("secrets");
    std::fs::create_dir_all(&secrets).unwrap();
    let (f1, f2) = (secrets.join("watched.pw"), secrets.join("bus.pw"));
    std::fs::write(&f1, format!("{WATCHED_1}\n")).unwrap();
    std::fs::write(&f2, format!("{BUS}\n")).unwrap();
    let text = format!(
        "[publish]\nurl = 'redis://127.0.0.1:{}'\nusername = 'bususer'\npassword_file = '{}'\n\
         [[targets]]\nurl = '{}'\npassword_file = '{}'\n",
        bus.port,
        f2.display(),
        watched.url(),
        f1.display()
    );
    let config = config_file(tmp.path(), &text);
    let written = std::fs::read_to_string(&config).unwrap();
    for secret in [WATCHED_1, WATCHED_2, BUS, BUS_DEFAULT] {
        assert!(!written.contains(secret), "{written}");
    }
    let plugins = plugins_with(tmp.path(), &[], &["ticker"]);
    let mut lookout = run_config(tmp.path(), &plugins, &config, &[]);
    lookout.wait_started();
    let instance = format!("127.0.0.1:{}", watched.port);
    let mut reader = authed(bus.port, Some("bususer"), BUS);
    wait_for("three ticks on the bus", Duration::from_secs(30), || {
        (ticks_with(&mut reader, &instance) >= 3).then_some(())
    });

    // A new password, in the file first, then on the server; the open
    // connections are cut.
    std::fs::write(&f1, format!("{WATCHED_2}\n")).unwrap();
    let mut admin = authed(watched.port, None, WATCHED_1);
    redis::cmd("CONFIG")
        .arg(&["SET", "requirepass", WATCHED_2][..])
        .exec(&mut admin)
        .unwrap();
    let killed: i64 = redis::cmd("CLIENT")
        .arg(&["KILL", "TYPE", "normal"][..])
        .query(&mut admin)
        .unwrap();
    assert!(killed >= 1, "lookout's connection was open");
    let before = ticks_with(&mut reader, &instance);
    wait_for(
        "three ticks after the password changed",
        Duration::from_secs(30),
        || (ticks_with(&mut reader, &instance) >= before + 3).then_some(()),
    );
    let clients: String = redis::cmd("CLIENT")
        .arg("LIST")
        .query(&mut authed(watched.port, None, WATCHED_2))
        .unwrap();
    assert!(clients.contains("name=lookout"), "{clients}");
    assert!(lookout.terminate().success());
    let output = [lookout.stdout.all(), lookout.stderr.all()]
        .concat()
        .join("\n");
    for secret in [WATCHED_1, WATCHED_2, BUS, BUS_DEFAULT] {
        assert!(!output.contains(secret), "{secret} in: {output}");
    }
}

/// A password file that cannot be read stops `lookout run` at once with a
/// message naming the key and the file, for a target, the bus and a
/// discover entry alike.
#[test]
fn a_missing_password_file_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let plugins = plugins_with(tmp.path(), &[], &["ticker"]);
    let missing = tmp.path().join("no-such-dir").join("redis.pw");
    let file = missing.display().to_string();
    let port = free_port();
    for (text, key) in [
        (
            format!("[[targets]]\nurl = 'redis://127.0.0.1:{port}'\npassword_file = '{file}'\n"),
            "targets[0].password_file",
        ),
        (
            format!(
                "[publish]\nurl = 'redis://127.0.0.1:{port}'\npassword_file = '{file}'\n\
                 [[targets]]\nurl = 'redis://127.0.0.1:{port}'\n"
            ),
            "publish.password_file",
        ),
        (
            format!(
                "[publish]\nurl = 'redis://127.0.0.1:{port}'\n\
                 [[discover]]\ncluster = 'redis://127.0.0.1:{port}'\npassword_file = '{file}'\n"
            ),
            "discover[0].password_file",
        ),
    ] {
        let config = config_file(tmp.path(), &text);
        let mut cmd = lookout_cmd(tmp.path());
        cmd.args(["run", "--poll-interval", "0.2", "--plugins"])
            .arg(&plugins)
            .arg("--config")
            .arg(&config);
        let start = Instant::now();
        let (status, _, stderr) = run_to_end(cmd, Duration::from_secs(30));
        assert!(!status.success(), "{key}: {stderr}");
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "{key}: took {:?}",
            start.elapsed()
        );
        assert!(stderr.contains(key), "{key}: {stderr}");
        assert!(stderr.contains(&file), "{key}: {stderr}");
    }
}

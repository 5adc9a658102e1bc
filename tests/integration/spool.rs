//! The durable spool: envelopes survive a `kill -9` of the host while the
//! bus is down, the file holds the newest envelopes when the outbox is
//! full and never replays what was dropped, the accounting holds across the
//! kill and restart, and a damaged spool file is skipped record by record.
//! One daemon per spool folder; its files are `0600` whatever the umask,
//! and a symbolic link planted in it is refused, never followed.

use std::collections::HashSet;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::support::{
    Lookout, Redis, STREAM, by_target, lookout_env, plugins_with, run_lookout, run_to_end, stop,
    ticks, wait_for,
};

/// What a spool file holds: the envelopes a restart would replay (notes
/// applied: settled ones left out) and the drop count it carries.
fn spool_state(path: &Path) -> (Vec<Value>, u64) {
    let bytes = std::fs::read(path).unwrap_or_default();
    let mut envelopes: Vec<Value> = Vec::new();
    let mut drops = 0;
    let mut at = 0;
    while at + 12 <= bytes.len() {
        let magic = &bytes[at..at + 4];
        let len = u32::from_le_bytes(bytes[at + 4..at + 8].try_into().unwrap()) as usize;
        if at + 12 + len > bytes.len() {
            break; // torn by the kill
        }
        let payload: Value = serde_json::from_slice(&bytes[at + 12..at + 12 + len]).unwrap();
        match magic {
            b"LKSP" => envelopes.push(payload),
            b"LKSN" => {
                let settled: HashSet<&str> = payload["settled"]
                    .as_array()
                    .map(|a| a.iter().map(|v| v.as_str().unwrap()).collect())
                    .unwrap_or_default();
                envelopes.retain(|e| !settled.contains(e["id"].as_str().unwrap()));
                drops = payload["drops"]["count"].as_u64().unwrap_or(0);
            }
            other => panic!("record magic {other:?} at {at}"),
        }
        at += 12 + len;
    }
    (envelopes, drops)
}

/// Envelopes (as JSON) a restart would replay from a spool file.
fn spooled(path: &Path) -> Vec<Value> {
    spool_state(path).0
}

fn record(json: &str) -> Vec<u8> {
    let mut out = b"LKSP".to_vec();
    out.extend_from_slice(&u32::try_from(json.len()).unwrap().to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(json.as_bytes()).to_le_bytes());
    out.extend_from_slice(json.as_bytes());
    out
}

fn config(dir: &Path, bus: &Redis) -> std::path::PathBuf {
    let path = dir.join("lookout.toml");
    std::fs::write(
        &path,
        format!(
            "[publish]\nurl = '{}'\n[buffer]\ndir = '{}'\n[breaker]\nrecovery_s = 0.3\n",
            bus.url(),
            dir.join("spool").display()
        ),
    )
    .unwrap();
    path
}

fn start(tmp: &Path, watched: &Redis, config: &Path, plugins: &Path) -> Lookout {
    let lookout = run_lookout(
        tmp,
        &watched.url(),
        plugins,
        &["--config", config.to_str().unwrap()],
    );
    lookout.wait_started();
    lookout
}

/// With the bus down, envelopes go to the spool; `kill -9` of the host and
/// a restart with the bus up deliver every spooled envelope.
#[test]
fn spool_survives_kill_9() {
    let watched = Redis::start(&[]);
    let mut bus = Redis::start(&[]);
    let tmp = tempfile::tempdir().unwrap();
    let plugins = plugins_with(tmp.path(), &[], &["ticker"]);
    let config = config(tmp.path(), &bus);
    let file = tmp.path().join("spool/spool.log");
    bus.kill();
    let lookout = start(tmp.path(), &watched, &config, &plugins);
    let before = wait_for(
        "ten ticker envelopes in the spool",
        Duration::from_secs(30),
        || {
            let records = spooled(&file);
            (by_target(&records, "ticker").len() >= 10).then_some(records)
        },
    );
    drop(lookout); // SIGKILL: no drain, no goodbye
    let records = spooled(&file);
    assert!(records.len() >= before.len());

    bus.restart();
    let mut lookout = start(tmp.path(), &watched, &config, &plugins);
    let delivered = wait_for(
        "the spooled envelopes on the bus",
        Duration::from_secs(30),
        || {
            let all = bus.stream("logs:stream:redis");
            let ids: std::collections::HashSet<&str> =
                all.iter().map(|e| e["id"].as_str().unwrap()).collect();
            records
                .iter()
                .all(|r| ids.contains(r["id"].as_str().unwrap()))
                .then_some(all)
        },
    );
    let replay = by_target(&delivered, "lookout")
        .into_iter()
        .find(|e| e["msg"].as_str().unwrap().starts_with("replaying"))
        .expect("the replay is reported");
    assert_eq!(replay["fields"]["replayed"], records.len());
    assert_eq!(replay["fields"]["corrupt"], 0);
    // Replayed in their original order, before the new run's envelopes.
    let first_new = delivered
        .iter()
        .position(|e| e["pid"] != records[0]["pid"])
        .unwrap();
    let spooled_ids: Vec<&str> = records.iter().map(|r| r["id"].as_str().unwrap()).collect();
    let head: Vec<&str> = delivered[..first_new]
        .iter()
        .map(|e| e["id"].as_str().unwrap())
        .collect();
    assert_eq!(head, spooled_ids);
    assert!(lookout.terminate().success());
    wait_for(
        "the spool removed once delivered",
        Duration::from_secs(10),
        || (!file.exists()).then_some(()),
    );
}

/// A spool file with a corrupt record in the middle and a torn tail: the
/// intact records are delivered, the damaged ones skipped and counted.
#[test]
fn corrupt_spool_records_are_skipped_and_counted() {
    let watched = Redis::start(&[]);
    let bus = Redis::start(&[]);
    let tmp = tempfile::tempdir().unwrap();
    let plugins = plugins_with(tmp.path(), &[], &["ticker"]);
    let config = config(tmp.path(), &bus);
    let envelope = |n: u32| {
        serde_json::json!({
            "v": 2, "id": format!("0190a0a0-0000-7000-8000-{n:012}"), "ts": "2026-01-01T00:00:00.000Z",
            "service": "redis", "host": "old", "level": "info", "pid": 1, "target": "spooled",
            "msg": format!("from the spool {n}"), "fields": {"instance": "127.0.0.1:1"}
        })
        .to_string()
    };
    let mut bytes = record(&envelope(1));
    let mut bad = record(&envelope(2));
    let last = bad.len() - 3;
    bad[last] ^= 0x55; // a flipped bit: CRC mismatch
    bytes.extend(bad);
    bytes.extend(record(&envelope(3)));
    let torn = record(&envelope(4));
    bytes.extend(&torn[..torn.len() / 2]);
    std::fs::create_dir_all(tmp.path().join("spool")).unwrap();
    std::fs::write(tmp.path().join("spool/spool.log"), bytes).unwrap();

    let mut lookout = start(tmp.path(), &watched, &config, &plugins);
    let all = wait_for(
        "the intact records on the bus",
        Duration::from_secs(30),
        || {
            let all = bus.stream("logs:stream:redis");
            (by_target(&all, "spooled").len() >= 2).then_some(all)
        },
    );
    let msgs: Vec<String> = by_target(&all, "spooled")
        .iter()
        .map(|e| e["msg"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(msgs, ["from the spool 1", "from the spool 3"]);
    let replay = by_target(&all, "lookout")
        .into_iter()
        .find(|e| e["msg"].as_str().unwrap().starts_with("replaying"))
        .expect("the replay is reported");
    assert_eq!(replay["level"], "warn");
    assert_eq!(replay["fields"]["replayed"], 2);
    assert_eq!(replay["fields"]["corrupt"], 2);
    assert!(lookout.alive());
    assert!(lookout.terminate().success());
}

/// An outage longer than the outbox (20 envelopes, drop_oldest), with a
/// spool, then `kill -9` of the host: the spool holds exactly the 20 newest
/// envelopes and carries the count of the dropped ones. After a restart
/// with the bus back, every envelope the first run emitted up to its last
/// spooling is either on the stream or counted in the drop report, never
/// both: `emitted = delivered + buffered + dropped` across the kill, and
/// nothing reported dropped is replayed.
#[test]
fn a_full_spool_keeps_the_newest_and_accounts_across_kill_9() {
    let watched = Redis::start(&[]);
    let mut bus = Redis::start(&["--appendonly", "yes", "--appendfsync", "always"]);
    let tmp = tempfile::tempdir().unwrap();
    let plugins = plugins_with(tmp.path(), &[], &["ticker"]);
    let config = tmp.path().join("lookout.toml");
    std::fs::write(
        &config,
        format!(
            "[publish]\nurl = '{}'\n[buffer]\ndir = '{}'\nmax_envelopes = 20\n\
             policy = 'drop_oldest'\n[breaker]\nrecovery_s = 0.3\n",
            bus.url(),
            tmp.path().join("spool").display()
        ),
    )
    .unwrap();
    let file = tmp.path().join("spool/spool.log");
    let args = [
        "--config",
        config.to_str().unwrap(),
        "--poll-interval",
        "0.1",
    ];
    let first = run_lookout(tmp.path(), &watched.url(), &plugins, &args);
    first.wait_started();
    let first_pid = wait_for("ticks on the bus", Duration::from_secs(20), || {
        let all = bus.stream(STREAM);
        let tick = by_target(&all, "ticker").into_iter().last()?;
        (tick["fields"]["n"].as_i64()? >= 3).then(|| tick["pid"].clone())
    });
    bus.kill();
    let (live, carried) = wait_for(
        "40 ticks past the outbox while the bus is down",
        Duration::from_secs(30),
        || {
            let (live, drops) = spool_state(&file);
            (drops >= 40).then_some((live, drops))
        },
    );
    drop(first); // SIGKILL: no drain, no report
    let (live, carried) = {
        // The last spooling before the kill may be newer than the one seen.
        let (after, drops) = spool_state(&file);
        if after.is_empty() {
            (live, carried)
        } else {
            (after, drops)
        }
    };
    let live_ticks = ticks(&live);
    assert_eq!(
        live.len(),
        20,
        "the spool holds a full outbox: {live_ticks:?}"
    );
    assert_eq!(live_ticks.len(), 20, "only ticks during the outage");
    assert!(
        live_ticks.windows(2).all(|w| w[1] == w[0] + 1),
        "the newest, in order: {live_ticks:?}"
    );
    let newest = *live_ticks.last().unwrap();

    bus.restart();
    let mut second = run_lookout(tmp.path(), &watched.url(), &plugins, &args);
    second.wait_started();
    let is_report =
        |e: &Value| e["target"] == "lookout" && e["msg"].as_str().unwrap().starts_with("dropped ");
    let live_ids: HashSet<&str> = live.iter().map(|e| e["id"].as_str().unwrap()).collect();
    wait_for(
        "the spooled envelopes and the drop report on the bus",
        Duration::from_secs(30),
        || {
            let all = bus.stream(STREAM);
            let ids: HashSet<&str> = all.iter().map(|e| e["id"].as_str().unwrap()).collect();
            (live_ids.is_subset(&ids) && all.iter().any(is_report)).then_some(())
        },
    );
    let counts = stop(&mut second);
    let all = bus.stream(STREAM);
    let reported: u64 = all
        .iter()
        .filter(|e| is_report(e))
        .map(|e| e["fields"]["dropped"].as_u64().unwrap())
        .sum();
    assert!(
        reported >= carried,
        "{reported} reported, {carried} carried"
    );

    // Every tick of the first run up to the newest spooled one is on the
    // stream or reported dropped: never both, never neither.
    let first_run: Vec<Value> = all
        .iter()
        .filter(|e| e["pid"] == first_pid)
        .cloned()
        .collect();
    let delivered: HashSet<i64> = ticks(&first_run).into_iter().collect();
    assert!(
        delivered.iter().all(|n| *n <= newest),
        "nothing after the last spooling"
    );
    let missing: Vec<i64> = (1..=newest).filter(|n| !delivered.contains(n)).collect();
    assert_eq!(
        missing.len() as u64,
        reported,
        "emitted = delivered + dropped across kill -9: missing {missing:?}"
    );
    assert!(
        missing.windows(2).all(|w| w[1] == w[0] + 1),
        "the oldest of the outage were dropped: {missing:?}"
    );
    let mut ids = HashSet::new();
    let replayed: Vec<&Value> = first_run
        .iter()
        .filter(|e| live_ids.contains(e["id"].as_str().unwrap()))
        .collect();
    assert!(
        replayed
            .iter()
            .all(|e| ids.insert(e["id"].as_str().unwrap())),
        "each spooled envelope replayed once"
    );
    assert_eq!(counts["replayed"], 20);
    assert_eq!(
        (replayed.len(), counts["dropped"]),
        (20, 0),
        "the replay goes out before the new run's envelopes can push it out"
    );
    assert_eq!(counts["lost"], 0);
    assert_eq!(
        counts["emitted"],
        counts["delivered"] + counts["dropped"],
        "{counts:?}"
    );
    wait_for(
        "the spool removed once delivered",
        Duration::from_secs(10),
        || (!file.exists()).then_some(()),
    );
}

/// `lookout run` of `config` watching `watched` (not started).
fn run_cmd(tmp: &Path, watched: &Redis, config: &Path, plugins: &Path) -> Command {
    let mut cmd = crate::support::lookout_cmd(tmp);
    cmd.args(["run", "--poll-interval", "0.2", "--plugins"])
        .arg(plugins)
        .arg("--config")
        .arg(config)
        .env("REDIS_URL", watched.url());
    cmd
}

/// A second daemon given the same `[buffer] dir` while the first runs
/// exits 1 at start, naming the folder and the first one's pid; the first
/// runs on. Once the first has stopped, the folder is free again.
#[test]
fn a_second_daemon_on_the_same_spool_folder_exits_1() {
    let watched = Redis::start(&[]);
    let bus = Redis::start(&[]);
    let tmp = tempfile::tempdir().unwrap();
    let plugins = plugins_with(tmp.path(), &[], &["ticker"]);
    let config = config(tmp.path(), &bus);
    let mut first = start(tmp.path(), &watched, &config, &plugins);
    let (status, _, stderr) = run_to_end(
        run_cmd(tmp.path(), &watched, &config, &plugins),
        Duration::from_secs(30),
    );
    assert_eq!(status.code(), Some(1), "{stderr}");
    let dir = tmp.path().join("spool");
    assert!(
        stderr.contains(&format!(
            "spool folder {} is in use by another lookout (pid {}",
            dir.display(),
            first.pid()
        )),
        "{stderr}"
    );
    assert!(first.alive(), "the first daemon runs on");
    assert_eq!(
        std::fs::read_to_string(dir.join("lock")).unwrap().trim(),
        first.pid().to_string()
    );
    assert!(first.terminate().success());
    let mut next = start(tmp.path(), &watched, &config, &plugins);
    assert!(next.terminate().success());
}

/// Spool files are created `0600` (the folder `0700`) even under
/// `umask 000`, where a plain create would make them readable and
/// writable by everyone.
#[test]
fn spool_files_are_private_whatever_the_umask() {
    let watched = Redis::start(&[]);
    let mut bus = Redis::start(&[]);
    let tmp = tempfile::tempdir().unwrap();
    let plugins = plugins_with(tmp.path(), &[], &["ticker"]);
    let config = config(tmp.path(), &bus);
    bus.kill();
    let mut cmd = Command::new("sh");
    lookout_env(&mut cmd, tmp.path());
    cmd.arg("-c")
        .arg("umask 000; exec \"$0\" \"$@\"")
        .arg(env!("CARGO_BIN_EXE_lookout"))
        .args(["run", "--poll-interval", "0.2", "--plugins"])
        .arg(&plugins)
        .arg("--config")
        .arg(&config)
        .env("REDIS_URL", watched.url());
    let lookout = Lookout::spawn(cmd);
    lookout.wait_started();
    let dir = tmp.path().join("spool");
    let file = dir.join("spool.log");
    wait_for("envelopes in the spool", Duration::from_secs(30), || {
        (!spooled(&file).is_empty()).then_some(())
    });
    let mode = |path: &Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&file), 0o600, "spool.log");
    assert_eq!(mode(&dir.join("lock")), 0o600, "lock");
    assert_eq!(mode(&dir), 0o700, "the folder");
    drop(lookout);
}

/// A symbolic link planted where the spool file or the lock file goes
/// stops start-up with an error naming it (exit 1), and is not followed:
/// the file it points to is neither written nor created.
#[test]
fn a_link_planted_in_the_spool_folder_is_refused_and_not_followed() {
    let watched = Redis::start(&[]);
    let bus = Redis::start(&[]);
    let tmp = tempfile::tempdir().unwrap();
    let plugins = plugins_with(tmp.path(), &[], &["ticker"]);
    let config = config(tmp.path(), &bus);
    let dir = tmp.path().join("spool");
    std::fs::create_dir(&dir).unwrap();
    let victim = tmp.path().join("victim");
    std::fs::write(&victim, "precious").unwrap();
    let refused = |link: &Path| {
        let (status, _, stderr) = run_to_end(
            run_cmd(tmp.path(), &watched, &config, &plugins),
            Duration::from_secs(30),
        );
        assert_eq!(status.code(), Some(1), "{stderr}");
        assert!(
            stderr.contains(&format!("{} is a symbolic link", link.display())),
            "{stderr}"
        );
    };

    let spool = dir.join("spool.log");
    std::os::unix::fs::symlink(&victim, &spool).unwrap();
    refused(&spool);
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
    std::fs::remove_file(&spool).unwrap();

    // The first run took the lock (a regular file) before it refused.
    let lock = dir.join("lock");
    std::fs::remove_file(&lock).unwrap();
    let target = tmp.path().join("made-through-the-link");
    std::os::unix::fs::symlink(&target, &lock).unwrap();
    refused(&lock);
    assert!(!target.exists(), "nothing created through the link");
    std::fs::remove_file(&lock).unwrap();

    // Without the links it starts.
    let mut lookout = start(tmp.path(), &watched, &config, &plugins);
    assert!(lookout.terminate().success());
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
}

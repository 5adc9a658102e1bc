//! The durable spool: envelopes survive a `kill -9` of the host while the
//! bus is down, and a damaged spool file is skipped record by record.

use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use crate::support::{Lookout, Redis, by_target, plugins_with, run_lookout, wait_for};

/// Envelopes (as JSON) of the intact records of a spool file.
fn spooled(path: &Path) -> Vec<Value> {
    let bytes = std::fs::read(path).unwrap_or_default();
    let mut out = Vec::new();
    let mut at = 0;
    while at + 12 <= bytes.len() {
        assert_eq!(&bytes[at..at + 4], b"LKSP", "record magic at {at}");
        let len = u32::from_le_bytes(bytes[at + 4..at + 8].try_into().unwrap()) as usize;
        if at + 12 + len > bytes.len() {
            break; // torn by the kill
        }
        out.push(serde_json::from_slice(&bytes[at + 12..at + 12 + len]).unwrap());
        at += 12 + len;
    }
    out
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
